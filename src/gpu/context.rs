//! Adapter selection, device creation with the limits and features the kernels need, and the
//! conversion of wgpu's error callbacks into `GpuError`s.

use std::sync::{Arc, Mutex};

use super::error::{GpuError, GpuResult};
use super::pipeline::PipelineCache;

/// Which adapter to open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdapterChoice {
    /// wgpu's default choice (high performance), honouring `WGPU_BACKEND`.
    #[default]
    Default,
    /// A CPU adapter only (lavapipe, llvmpipe, WARP, SwiftShader); errors instead of taking a GPU.
    Fallback,
    /// The n-th adapter of `GpuContext::adapters()`.
    Index(usize),
}

/// How kernels are shaped for this adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelStyle {
    /// Each invocation computes a small block in registers, no workgroup barriers: CPU adapters
    /// (lavapipe runs these ~15x faster than barrier-heavy tiled kernels).
    RegisterBlocked,
    /// Workgroups share tiles through workgroup memory: real GPUs.
    Tiled,
}

/// Arithmetic precision of a GPU session's float activations (the GPU backend's values; model
/// inputs and outputs keep their ONNX types at the API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 buffers and arithmetic.
    F32,
    /// f16 buffers (half the memory and bandwidth), f32 where precision needs it (sums, norms'
    /// statistics, softmax, timestep phases); needs the adapter's shader-f16.
    F16,
    /// f16 when the model stores its weights as int8 or f16 and the adapter has shader-f16,
    /// else f32: an f32 model computes in f32 unless asked otherwise.
    #[default]
    Auto,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Auto => "auto",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "auto" => Ok(Precision::Auto),
            other => Err(format!("precision '{other}': expected f32, f16 or auto")),
        }
    }
}

/// Options of `GpuContext::new`.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    pub adapter: AdapterChoice,
    /// Overrides the kernel style chosen from the adapter type.
    pub style: Option<KernelStyle>,
    /// Keep f16 as packed u32 storage even where `shader-f16` exists.
    pub disable_f16: bool,
    /// Ignore subgroup support (to test the portable reductions on a subgroup adapter).
    pub disable_subgroups: bool,
    /// Restricts the backends (e.g. `wgpu::Backends::GL`); `None` means `WGPU_BACKEND` or all.
    pub backends: Option<wgpu::Backends>,
    /// Caps the bytes one storage binding may hold below what the adapter offers (to test, on any
    /// adapter, what a browser with a small `maxStorageBufferBindingSize` does). Natively the
    /// device is also requested with that limit, so wgpu validates every binding against it.
    /// `FIFO_MAX_BINDING_BYTES` (native) caps it too; the smaller cap wins.
    pub max_binding_bytes: Option<u64>,
    /// Activation precision of the sessions built with these options (`Session::build_async`,
    /// `build_on`); the context itself does not use it.
    pub precision: Precision,
}

impl GpuOptions {
    /// The binding cap of these options and `FIFO_MAX_BINDING_BYTES` (the smaller one), if any.
    pub fn binding_cap(&self) -> Option<u64> {
        let env = if cfg!(target_arch = "wasm32") {
            None
        } else {
            std::env::var("FIFO_MAX_BINDING_BYTES").ok().and_then(|v| v.trim().parse::<u64>().ok())
        };
        match (self.max_binding_bytes, env) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// `FIFO_KERNEL_STYLE=blocked|tiled` (native): the kernel style for every adapter whose options
/// do not set one, to compare both on one GPU (the benchmarks and profiles) or to rule one out.
fn style_from_env() -> GpuResult<Option<KernelStyle>> {
    if cfg!(target_arch = "wasm32") {
        return Ok(None);
    }
    parse_kernel_style(&std::env::var("FIFO_KERNEL_STYLE").unwrap_or_default())
}

/// `FIFO_GPU_SUBGROUPS=off` (native): the kernels without subgroup operations, to compare both
/// on one adapter or to rule the subgroup ones out.
fn subgroups_off_in_env() -> bool {
    !cfg!(target_arch = "wasm32") && std::env::var("FIFO_GPU_SUBGROUPS").is_ok_and(|v| v.trim() == "off")
}

fn parse_kernel_style(value: &str) -> GpuResult<Option<KernelStyle>> {
    match value.trim() {
        "" => Ok(None),
        "blocked" => Ok(Some(KernelStyle::RegisterBlocked)),
        "tiled" => Ok(Some(KernelStyle::Tiled)),
        other => Err(GpuError::Unsupported {
            op: "FIFO_KERNEL_STYLE",
            message: format!("'{other}' is not a kernel style: use blocked or tiled, or unset it"),
        }),
    }
}

/// One enumerated adapter, for `fifo devices`.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub shader_f16: bool,
    pub subgroups: bool,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub max_storage_buffers_per_stage: u32,
    pub max_workgroup_storage: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroups_per_dimension: u32,
    /// WebGPU feature names the adapter offers among those the kernels may use.
    pub features: Vec<&'static str>,
}

/// What went wrong asynchronously (device lost, uncaptured errors); checked before each run.
type FaultSlot = Arc<Mutex<Option<GpuError>>>;

/// A device, its queue, what it can do and the pipeline cache. Cheap to share by reference.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    style: KernelStyle,
    shader_f16: bool,
    subgroups: bool,
    /// Timestamp queries at compute-pass boundaries (native adapters that have them).
    timestamps: bool,
    /// The most loop iterations one shader invocation may run (see [`loop_limit_of`]).
    loop_limit: Option<u64>,
    fault: FaultSlot,
    /// Set once the device is lost (by the driver, or [`GpuContext::destroy`]); never cleared.
    lost: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) pipelines: PipelineCache,
    pub(crate) memory: Arc<DeviceMemory>,
    traffic: TrafficCounters,
    pub(crate) staging: super::staging::StagingPool,
}

/// Host-device traffic of a context since it was opened: what "one submission per iteration,
/// only the frame read back" is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub submissions: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
}

#[derive(Debug, Default)]
struct TrafficCounters {
    submissions: std::sync::atomic::AtomicU64,
    written: std::sync::atomic::AtomicU64,
    read: std::sync::atomic::AtomicU64,
}

/// Bytes of storage buffers (every tensor) alive on a device, and the most there ever were.
/// Uniform arenas and read-back staging buffers are small and transient and not counted.
#[derive(Debug, Default)]
pub struct DeviceMemory {
    live: std::sync::atomic::AtomicU64,
    peak: std::sync::atomic::AtomicU64,
}

impl DeviceMemory {
    pub(crate) fn allocated(&self, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let live = self.live.fetch_add(bytes, Relaxed) + bytes;
        self.peak.fetch_max(live, Relaxed);
    }

    pub(crate) fn freed(&self, bytes: u64) {
        self.live.fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn live_bytes(&self) -> u64 {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn instance(backends: Option<wgpu::Backends>) -> wgpu::Instance {
    // `with_env` makes WGPU_BACKEND=vulkan|gl (and the debug flags) work.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    if let Some(b) = backends {
        desc.backends = b;
    }
    wgpu::Instance::new(desc)
}

fn summary(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterSummary {
        index,
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        max_storage_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        features: [
            (wgpu::Features::SHADER_F16, "shader-f16"),
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
            (wgpu::Features::FLOAT32_FILTERABLE, "float32-filterable"),
        ]
        .into_iter()
        .filter(|(f, _)| features.contains(*f))
        .map(|(_, name)| name)
        .collect(),
    }
}

/// The limits the kernels need: WebGPU defaults, except buffer sizes raised to the adapter's
/// (the storage binding size lowered to `cap` when one is given).
fn needed_limits(adapter: &wgpu::Limits, cap: Option<u64>) -> wgpu::Limits {
    let base = wgpu::Limits::downlevel_defaults();
    let binding = adapter.max_storage_buffer_binding_size;
    wgpu::Limits {
        max_storage_buffer_binding_size: cap.map_or(binding, |c| binding.min(c)),
        max_buffer_size: adapter.max_buffer_size,
        max_storage_buffers_per_shader_stage: adapter.max_storage_buffers_per_shader_stage.min(8),
        max_compute_invocations_per_workgroup: 256,
        max_compute_workgroup_size_x: 256,
        max_compute_workgroup_size_y: 256,
        max_compute_workgroup_storage_size: adapter.max_compute_workgroup_storage_size.min(16384),
        max_compute_workgroups_per_dimension: 65535,
        ..base
    }
    .using_alignment(adapter.clone())
}

impl GpuContext {
    /// Every adapter this build can see, in a stable order (the indices of `AdapterChoice::Index`).
    pub async fn adapters() -> Vec<AdapterSummary> {
        let inst = instance(None);
        let list = inst.enumerate_adapters(wgpu::Backends::all()).await;
        list.iter().enumerate().map(|(i, a)| summary(i, a)).collect()
    }

    /// Opens a device. The same async call natively (block on it with pollster) and on wasm32.
    pub async fn new(options: &GpuOptions) -> GpuResult<Self> {
        let inst = instance(options.backends);
        let adapter = match options.adapter {
            AdapterChoice::Index(index) => {
                let mut list =
                    inst.enumerate_adapters(options.backends.unwrap_or(wgpu::Backends::all())).await;
                let count = list.len();
                if index >= count {
                    return Err(GpuError::AdapterIndex { index, count });
                }
                list.swap_remove(index)
            }
            AdapterChoice::Default | AdapterChoice::Fallback => {
                let fallback = options.adapter == AdapterChoice::Fallback;
                let opts = wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: fallback,
                    compatible_surface: None,
                    ..Default::default()
                };
                inst.request_adapter(&opts).await.map_err(|e| GpuError::NoAdapter {
                    wanted: format!("{} adapter: {e}", if fallback { "fallback (CPU)" } else { "any" }),
                })?
            }
        };
        Self::from_adapter(&adapter, options).await
    }

    async fn from_adapter(adapter: &wgpu::Adapter, options: &GpuOptions) -> GpuResult<Self> {
        let info = adapter.get_info();
        let available = adapter.features();
        // In the browser the WGSL goes to the browser's compiler (Tint), which wants an
        // `enable subgroups;` that naga refuses: the subgroup variants stay native-only.
        let wanted = if cfg!(target_arch = "wasm32") {
            wgpu::Features::SHADER_F16
        } else {
            // Timestamps time each node's kernels under `FIFO_GPU_PROFILE=1` (see `gpu_backend`).
            wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY
        };
        let features = available & wanted;
        let cap = options.binding_cap();
        let desc = wgpu::DeviceDescriptor {
            label: Some("fifo-diffusion"),
            required_features: features,
            // Natively the device itself gets the cap; a browser may refuse or ignore a limit
            // below the WebGPU default, so there only the checks below apply it.
            required_limits: needed_limits(
                &adapter.limits(),
                cap.filter(|_| cfg!(not(target_arch = "wasm32"))),
            ),
            ..Default::default()
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| GpuError::RequestDevice { adapter: info.name.clone(), reason: e.to_string() })?;
        let fault: FaultSlot = Arc::default();
        // wgpu's default handler panics; record the first error instead and fail the next run.
        let slot = fault.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            record_fault(
                &slot,
                GpuError::Validation { during: "an uncaptured GPU call".into(), message: e.to_string() },
            );
        }));
        let slot = fault.clone();
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            if reason != wgpu::DeviceLostReason::Destroyed {
                record_fault(&slot, GpuError::DeviceLost { reason: format!("{reason:?}: {message}") });
            }
        });
        let style = options.style.or(style_from_env()?).unwrap_or(match info.device_type {
            wgpu::DeviceType::Cpu => KernelStyle::RegisterBlocked,
            _ => KernelStyle::Tiled,
        });
        // Browsers raise a requested limit below the WebGPU default back to the default: the cap
        // is applied here too, so every size check of this layer sees it on every target.
        let mut limits = device.limits();
        if let Some(c) = cap {
            limits.max_storage_buffer_binding_size = limits.max_storage_buffer_binding_size.min(c);
        }
        Ok(Self {
            limits,
            loop_limit: loop_limit_of(&info),
            shader_f16: features.contains(wgpu::Features::SHADER_F16) && !options.disable_f16,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            subgroups: features.contains(wgpu::Features::SUBGROUP)
                && !options.disable_subgroups
                && !subgroups_off_in_env(),
            pipelines: PipelineCache::default(),
            device,
            queue,
            info,
            style,
            fault,
            lost,
            memory: Arc::default(),
            traffic: TrafficCounters::default(),
            staging: Default::default(),
        })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    /// Whether the adapter runs on the CPU (lavapipe, llvmpipe, SwiftShader, WARP): there the
    /// project's CPU backend is the faster way to run a model.
    pub fn is_cpu_adapter(&self) -> bool {
        self.info().device_type == wgpu::DeviceType::Cpu
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    /// Bytes one tensor may hold: the largest storage binding (after any cap of `GpuOptions`),
    /// within the largest buffer.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }
    /// The device's tensor memory: live and peak bytes.
    pub fn memory(&self) -> &DeviceMemory {
        &self.memory
    }
    pub fn style(&self) -> KernelStyle {
        self.style
    }
    /// Whether kernels may use native `f16` arithmetic (`enable f16;`).
    /// Whether kernels can be timed on the device (timestamp queries).
    pub fn has_timestamps(&self) -> bool {
        self.timestamps
    }

    pub fn has_shader_f16(&self) -> bool {
        self.shader_f16
    }
    /// The most loop iterations one invocation of a kernel may run on this adapter, summed over
    /// all its loops (nested ones multiplied), where the driver stops loops silently past a cap:
    /// `Some(65535)` on Mesa's llvmpipe (lavapipe, GL llvmpipe), `None` elsewhere. Every launch
    /// declares its bound and `ProgramBuilder::push` refuses one over this limit.
    pub fn loop_iteration_limit(&self) -> Option<u64> {
        self.loop_limit
    }
    pub fn has_subgroups(&self) -> bool {
        self.subgroups
    }
    /// The subgroup size where subgroups are on and the adapter has one fixed size (lavapipe: 8,
    /// its SIMD width on AVX2), for kernels written for one width.
    pub fn fixed_subgroup_size(&self) -> Option<u32> {
        let i = &self.info;
        (self.subgroups && i.subgroup_min_size == i.subgroup_max_size).then_some(i.subgroup_min_size)
    }
    /// The adapter's name; browsers may give none (Chromium's SwiftShader), then its driver or
    /// its kind.
    pub fn name(&self) -> String {
        let i = &self.info;
        let driver = format!("{} {}", i.driver, i.driver_info).trim().to_string();
        match (i.name.trim(), driver.is_empty()) {
            ("", false) => driver,
            ("", true) => format!("unnamed {:?} adapter", i.device_type).replace("Cpu", "CPU"),
            (name, _) => name.to_string(),
        }
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.name(), self.info.backend, self.info.device_type)
    }

    /// Submissions and bytes moved so far.
    pub fn traffic(&self) -> Traffic {
        use std::sync::atomic::Ordering::Relaxed;
        Traffic {
            submissions: self.traffic.submissions.load(Relaxed),
            bytes_written: self.traffic.written.load(Relaxed),
            bytes_read: self.traffic.read.load(Relaxed),
        }
    }

    /// Every submission goes through here, so that [`Self::traffic`] counts it.
    pub(crate) fn submit(&self, commands: wgpu::CommandBuffer) {
        self.traffic.submissions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.queue.submit([commands]);
    }

    /// Every host-to-device write goes through here (lands before the next submission).
    pub(crate) fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) {
        self.traffic.written.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.queue.write_buffer(buffer, offset, bytes);
    }

    pub(crate) fn count_read(&self, bytes: u64) {
        self.traffic.read.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the device was lost: every later use of it fails, and a run that had other
    /// devices continues on them.
    pub fn is_lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Destroys the device, as a driver reset or an unplugged GPU would lose it: every later
    /// submission fails with `GpuError::DeviceLost` (how the device-lost paths are tested).
    pub fn destroy(&self) {
        record_fault(&self.fault, GpuError::DeviceLost { reason: "the device was destroyed".into() });
        self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        self.device.destroy();
    }

    /// Fails with the first asynchronous fault (device lost, uncaptured error) seen so far.
    pub fn check_fault(&self) -> GpuResult<()> {
        let mut slot = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(e) => Err(e),
            None if self.is_lost() => Err(GpuError::DeviceLost { reason: "lost earlier in this run".into() }),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns what they caught into
    /// a `GpuError` naming `during`.
    pub(crate) async fn scoped<T>(&self, during: &str, f: impl FnOnce() -> T) -> GpuResult<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let v = validation.pop().await;
        let o = oom.pop().await;
        if let Some(e) = v {
            return Err(GpuError::Validation { during: during.to_string(), message: e.to_string() });
        }
        if o.is_some() {
            return Err(GpuError::OutOfMemory { during: during.to_string() });
        }
        self.check_fault()?;
        Ok(value)
    }

    /// Blocks natively until the queue is idle; on wasm32 the browser drives the queue.
    pub(crate) fn poll_wait(&self) -> GpuResult<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::DeviceLost { reason: e.to_string() })?;
        Ok(())
    }

    /// Waits until every submitted command has finished (for benchmarks and tests).
    pub async fn wait_idle(&self) -> GpuResult<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.poll_wait()?;
        rx.await.map_err(|_| GpuError::DeviceLost { reason: "queue dropped before idle".into() })?;
        self.check_fault()
    }
}

/// Mesa's gallivm (llvmpipe, lavapipe) ends every loop of a shader invocation once the loops
/// together have run this many iterations: `LP_MAX_TGSI_LOOP_ITERATIONS` in
/// src/gallium/auxiliary/gallivm/lp_bld_limits.h, one counter per invocation shared by every
/// loop the compiler did not unroll. Past it results are silently wrong.
pub const LLVMPIPE_LOOP_LIMIT: u64 = 65_535;

/// The loop-iteration cap of an adapter: llvmpipe's (lavapipe names itself "llvmpipe (LLVM
/// ..)", driver "llvmpipe"), or none.
pub(crate) fn loop_limit_of(info: &wgpu::AdapterInfo) -> Option<u64> {
    let llvmpipe = [&info.name, &info.driver, &info.driver_info]
        .iter()
        .any(|s| s.to_ascii_lowercase().contains("llvmpipe"));
    llvmpipe.then_some(LLVMPIPE_LOOP_LIMIT)
}

fn record_fault(slot: &FaultSlot, error: GpuError) {
    let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
    guard.get_or_insert(error);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_style_from_its_name() {
        assert_eq!(parse_kernel_style("").unwrap(), None);
        assert_eq!(parse_kernel_style(" tiled\n").unwrap(), Some(KernelStyle::Tiled));
        assert_eq!(parse_kernel_style("blocked").unwrap(), Some(KernelStyle::RegisterBlocked));
        let err = parse_kernel_style("fast").unwrap_err().to_string();
        assert!(err.contains("'fast'") && err.contains("blocked or tiled"), "{err}");
    }
}
