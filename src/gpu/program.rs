//! "Compile once, replay": a `ProgramBuilder` records dispatches (variant, parameters, buffers);
//! `build` compiles the pipelines, writes every parameter block into one uniform arena and makes
//! the bind groups; `Program::run` then encodes all dispatches into one command buffer and one
//! submission. Inputs are written with `GpuTensor::write_f32`, outputs read back only on request.

use std::collections::HashMap;

use super::context::GpuContext;
use super::error::{GpuError, GpuResult};
use super::pipeline::UNIFORM_SLOT;
use super::shader::ShaderVariant;
use super::tensor::{DType, GpuTensor};

/// Workgroups per dimension guaranteed by every adapter.
pub const MAX_WORKGROUPS: u32 = 65535;

/// One recorded kernel launch, before `build`.
struct Step {
    variant: ShaderVariant,
    params: Vec<u8>,
    reads: Vec<GpuTensor>,
    writes: Vec<GpuTensor>,
    workgroups: [u32; 3],
}

/// One ready kernel launch.
struct Dispatch {
    key: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    uniform_offset: u32,
    workgroups: [u32; 3],
}

/// Records dispatches; the op builders in `gpu::ops` add to it.
pub struct ProgramBuilder<'a> {
    pub(crate) ctx: &'a GpuContext,
    steps: Vec<Step>,
    scratch: Vec<GpuTensor>,
}

/// A built program: replay it with `run` as often as needed.
pub struct Program {
    dispatches: Vec<Dispatch>,
    _uniforms: wgpu::Buffer,
    // Intermediate buffers the ops asked for (e.g. group-norm statistics); kept alive here.
    _scratch: Vec<GpuTensor>,
    /// Every tensor the dispatches bind, once: the bind groups keep their buffers alive anyway,
    /// and holding them here keeps the device's meter (`DeviceMemory`) counting them.
    _bound: Vec<GpuTensor>,
}

impl<'a> ProgramBuilder<'a> {
    pub fn new(ctx: &'a GpuContext) -> Self {
        Self { ctx, steps: Vec::new(), scratch: Vec::new() }
    }

    pub fn context(&self) -> &'a GpuContext {
        self.ctx
    }

    /// Number of dispatches recorded so far.
    pub fn len(&self) -> usize {
        self.steps.len()
    }
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// A buffer owned by the program (for intermediate results of multi-pass kernels).
    pub(crate) fn scratch(&mut self, name: &str, dtype: DType, len: usize) -> GpuResult<GpuTensor> {
        let t = GpuTensor::new(self.ctx, name, dtype, len)?;
        self.scratch.push(t.clone());
        Ok(t)
    }

    /// Records one dispatch. `params` is the kernel's uniform struct (at most 256 bytes).
    /// `loops` bounds the loop iterations one invocation runs, summed over all the kernel's loops
    /// (nested ones multiplied; loops of at most [`UNROLLED_TRIPS`] constant trips the shader
    /// compiler unrolls count 0): the op builders compute it from the parameters, and a launch
    /// over the adapter's [`GpuContext::loop_iteration_limit`] is refused here, before it could
    /// give a silently wrong result.
    pub(crate) fn push<P: bytemuck::Pod>(
        &mut self,
        variant: ShaderVariant,
        params: &P,
        reads: &[&GpuTensor],
        writes: &[&GpuTensor],
        workgroups: [u32; 3],
        loops: u64,
    ) -> GpuResult<()> {
        let bytes = bytemuck::bytes_of(params);
        debug_assert!(bytes.len() as u64 <= UNIFORM_SLOT, "{}: parameters over 256 bytes", variant.key);
        if !workgroups.contains(&0) {
            self.check_loops(&variant.key, loops)?;
        }
        if let Some(&n) = workgroups.iter().find(|&&n| n > MAX_WORKGROUPS) {
            return Err(GpuError::Unsupported {
                op: "dispatch",
                message: format!(
                    "{} needs {n} workgroups in one dimension (max {MAX_WORKGROUPS})",
                    variant.key
                ),
            });
        }
        if workgroups.contains(&0) {
            return Ok(()); // empty tensor: nothing to do
        }
        self.steps.push(Step {
            variant,
            params: bytes.to_vec(),
            reads: reads.iter().map(|&t| t.clone()).collect(),
            writes: writes.iter().map(|&t| t.clone()).collect(),
            workgroups,
        });
        Ok(())
    }

    /// Whether one invocation of `kernel` may loop `loops` times on this adapter (see
    /// [`GpuContext::loop_iteration_limit`]): the one place every launch's bound is checked.
    pub(crate) fn check_loops(&self, kernel: &str, loops: u64) -> GpuResult<()> {
        match self.ctx.loop_iteration_limit() {
            Some(limit) if !self.loops_fit(loops) => Err(loop_limit_error(kernel, loops, limit)),
            _ => Ok(()),
        }
    }

    /// Whether a launch of `loops` iterations per invocation fits this adapter (for op builders
    /// choosing between kernel forms).
    pub(crate) fn loops_fit(&self, loops: u64) -> bool {
        self.ctx.loop_iteration_limit().is_none_or(|limit| loops.saturating_add(LOOP_MARGIN) <= limit)
    }

    /// Compiles what is new, uploads the parameter arena and makes the bind groups.
    pub async fn build(self) -> GpuResult<Program> {
        let ctx = self.ctx;
        let steps = self.steps;
        let bound = distinct_tensors(&steps);
        let mark = ctx.pipelines.mark();
        let built = ctx.scoped("building a GPU program", || build_inner(ctx, &steps)).await;
        if !matches!(built, Ok(Ok(_))) {
            ctx.pipelines.forget_since(mark);
        }
        built?.map(|(dispatches, uniforms)| Program {
            dispatches,
            _uniforms: uniforms,
            _scratch: self.scratch,
            _bound: bound,
        })
    }
}

/// The tensors the steps read or write, each buffer once (aliases of one buffer count once).
fn distinct_tensors(steps: &[Step]) -> Vec<GpuTensor> {
    let mut seen = std::collections::HashSet::new();
    steps
        .iter()
        .flat_map(|s| s.reads.iter().chain(&s.writes))
        .filter(|t| seen.insert(t.id()))
        .cloned()
        .collect()
}

fn build_inner(ctx: &GpuContext, steps: &[Step]) -> GpuResult<(Vec<Dispatch>, wgpu::Buffer)> {
    let device = &ctx.device;
    let mut arena = vec![0u8; (steps.len().max(1) as u64 * UNIFORM_SLOT) as usize];
    for (i, step) in steps.iter().enumerate() {
        let at = i * UNIFORM_SLOT as usize;
        arena[at..at + step.params.len()].copy_from_slice(&step.params);
    }
    let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("uniform arena"),
        size: arena.len() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    ctx.write_buffer(&uniforms, 0, &arena);
    // The same kernel on the same buffers (e.g. a repeated block) shares one bind group.
    let mut groups: HashMap<(u32, u32, Vec<u64>), wgpu::BindGroup> = HashMap::new();
    let mut dispatches = Vec::with_capacity(steps.len());
    for (i, step) in steps.iter().enumerate() {
        let (nr, nw) = (step.reads.len() as u32, step.writes.len() as u32);
        let pipeline = ctx.pipelines.pipeline(device, &step.variant, nr, nw)?;
        let ids: Vec<u64> = step.reads.iter().chain(&step.writes).map(GpuTensor::id).collect();
        let bind_group = groups
            .entry((nr, nw, ids))
            .or_insert_with(|| {
                let layout = ctx.pipelines.layout(device, nr, nw);
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: 0,
                        size: wgpu::BufferSize::new(UNIFORM_SLOT),
                    }),
                }];
                for (b, t) in step.reads.iter().chain(&step.writes).enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: b as u32 + 1,
                        resource: t.buffer().as_entire_binding(),
                    });
                }
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&step.variant.key),
                    layout: &layout,
                    entries: &entries,
                })
            })
            .clone();
        dispatches.push(Dispatch {
            key: step.variant.key.clone(),
            pipeline,
            bind_group,
            uniform_offset: (i as u64 * UNIFORM_SLOT) as u32,
            workgroups: step.workgroups,
        });
    }
    Ok((dispatches, uniforms))
}

impl Program {
    /// Records every dispatch into `encoder` (one compute pass), for callers that add copies.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("program"),
            timestamp_writes: None,
        });
        for d in &self.dispatches {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[d.uniform_offset]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// [`Self::encode`] in a compute pass of its own whose start and end are written to
    /// `queries` at `first` and `first + 1` (for timing on the device).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn encode_timed(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        queries: &wgpu::QuerySet,
        first: u32,
    ) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("timed"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: queries,
                beginning_of_pass_write_index: Some(first),
                end_of_pass_write_index: Some(first + 1),
            }),
        });
        for d in &self.dispatches {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[d.uniform_offset]);
            let [x, y, z] = d.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }

    /// One command buffer, one submission. Does not wait for the GPU.
    pub async fn run(&self, ctx: &GpuContext) -> GpuResult<()> {
        ctx.check_fault()?;
        ctx.scoped("running a GPU program", || {
            let mut encoder =
                ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
            self.encode(&mut encoder);
            ctx.submit(encoder.finish());
        })
        .await
    }

    /// The pipeline keys of the dispatches, in order (e.g. `matmul.f32.rb4x4.wg8x8.act=none`).
    pub fn keys(&self) -> Vec<&str> {
        self.dispatches.iter().map(|d| d.key.as_str()).collect()
    }
    pub fn len(&self) -> usize {
        self.dispatches.len()
    }
    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }
}

/// Constant-trip loops of at most this many iterations are unrolled by lavapipe's compiler, so
/// they add no loop iterations. Measured (Mesa 22.3, LLVM 15) with the register-blocked attention
/// kernel, whose key loop runs head loops of DQ4 = DV4 trips: with heads of 16 (4 trips) 30,000
/// keys came out right; with heads of 32 (8 trips) 6,000 keys right and 8,000 wrong; with heads of
/// 64 (16 trips) 3,600 right and 3,900 wrong, which is 1 + 17 + 17 = 35 per pair of keys: a loop
/// that is not unrolled costs its trips plus one (its last, exiting, test).
pub(crate) const UNROLLED_TRIPS: u64 = 4;

/// Iterations the loop limiter counts beyond the kernels' modelled loops (short setup loops,
/// exit tests): a margin below the limit.
const LOOP_MARGIN: u64 = 256;

/// Loop iterations of a constant-trip loop (a head-size or tile loop fixed when the kernel is
/// built): 0 when the compiler unrolls it, else its trips and the exiting test.
pub(crate) fn fixed_loop(trips: u64) -> u64 {
    if trips <= UNROLLED_TRIPS {
        0
    } else {
        trips + 1
    }
}

/// Loop iterations of a nest of loops with these trip counts, outermost first: each level runs
/// its trips and its exiting test once per iteration of the levels around it
/// ((a + 1) + a (b + 1) + ab (c + 1) ..).
pub(crate) fn nested_loops(trips: &[u64]) -> u64 {
    let mut product = 1u64;
    let mut total = 0u64;
    for &t in trips {
        total = total.saturating_add(product.saturating_mul(t.saturating_add(1)));
        product = product.saturating_mul(t);
    }
    total
}

fn loop_limit_error(kernel: &str, loops: u64, limit: u64) -> GpuError {
    GpuError::Unsupported {
        op: "loop limit",
        message: format!(
            "kernel '{kernel}' runs up to {loops} loop iterations per invocation for this tensor, \
             but Mesa's llvmpipe/lavapipe (this adapter) stops any shader loop after {limit} \
             iterations and would return a silently wrong result, so this launch is not supported \
             here: run this model with --backend cpu (Backend::Cpu), or on a real GPU, or use \
             smaller shapes"
        ),
    }
}

/// A workgroup count for [`ProgramBuilder::push`], which refuses counts over the limit with an
/// error naming the kernel: saturating, so a huge count cannot wrap into a small one.
pub(crate) fn workgroup_count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Workgroup counts for `threads` invocations in groups of `wg`, folded into y past 65535.
pub(crate) fn linear_workgroups(threads: usize, wg: u32) -> [u32; 3] {
    let groups = threads.div_ceil(wg as usize) as u64;
    if groups <= MAX_WORKGROUPS as u64 {
        return [groups as u32, 1, 1];
    }
    let y = groups.div_ceil(MAX_WORKGROUPS as u64);
    [MAX_WORKGROUPS, y.min(u32::MAX as u64) as u32, 1]
}

impl GpuContext {
    /// Device-to-device copy of `len` 32-bit elements (e.g. shifting the FIFO queue's latents
    /// between a program's output and the next input), one small submission, no CPU round trip.
    pub async fn copy_elements(
        &self,
        src: &GpuTensor,
        src_start: usize,
        dst: &GpuTensor,
        dst_start: usize,
        len: usize,
    ) -> GpuResult<()> {
        let word = |t: &GpuTensor| matches!(t.dtype(), DType::F32 | DType::I32);
        if !word(src) || !word(dst) || src_start + len > src.len() || dst_start + len > dst.len() {
            return Err(GpuError::Shape {
                op: "copy_elements",
                message: format!(
                    "{len} elements from '{}'[{src_start}..] ({} of {}) to '{}'[{dst_start}..] ({} of {})",
                    src.name(),
                    src.dtype().name(),
                    src.len(),
                    dst.name(),
                    dst.dtype().name(),
                    dst.len()
                ),
            });
        }
        self.scoped("copying a tensor on the device", || {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            let (from, to, bytes) = (src_start as u64 * 4, dst_start as u64 * 4, len as u64 * 4);
            encoder.copy_buffer_to_buffer(src.buffer(), from, dst.buffer(), to, bytes);
            self.submit(encoder.finish());
        })
        .await
    }

    /// Copies `tensor` back and converts it to f32 (f16 widened, i32/i8 converted).
    pub async fn read_f32(&self, tensor: &GpuTensor) -> GpuResult<Vec<f32>> {
        let n = tensor.len();
        // Converted straight from the mapped range: one pass over the bytes, no copy before it.
        self.read_tensor(tensor, |bytes| match tensor.dtype() {
            DType::F32 => bytemuck::pod_collect_to_vec::<u8, f32>(&bytes[..n * 4]),
            DType::I32 => bytes
                .chunks_exact(4)
                .take(n)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .take(n)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::I8 => bytes[..n].iter().map(|&b| b as i8 as f32).collect(),
        })
        .await
    }

    pub async fn read_i32(&self, tensor: &GpuTensor) -> GpuResult<Vec<i32>> {
        if tensor.dtype() != DType::I32 {
            return Err(GpuError::Readback {
                name: tensor.name().into(),
                reason: format!("is {}, not i32", tensor.dtype().name()),
            });
        }
        let n = tensor.len();
        self.read_tensor(tensor, |bytes| bytemuck::pod_collect_to_vec::<u8, i32>(&bytes[..n * 4])).await
    }

    /// The raw bytes of `tensor` (whole words), after all submitted work.
    pub async fn read_bytes(&self, tensor: &GpuTensor) -> GpuResult<Vec<u8>> {
        self.read_tensor(tensor, <[u8]>::to_vec).await
    }

    /// Copies `tensor` (after all submitted work) into a pooled staging buffer and hands its
    /// mapped bytes (whole words) to `convert`.
    async fn read_tensor<T>(&self, tensor: &GpuTensor, convert: impl FnOnce(&[u8]) -> T) -> GpuResult<T> {
        // The tensor's own bytes: a pooled buffer may be larger (shared with bigger values).
        let size = tensor.dtype().storage_bytes(tensor.len()).min(tensor.buffer().size());
        let staging = self.staging.take(&self.device, size);
        self.scoped("reading back a tensor", || {
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(tensor.buffer(), 0, &staging, 0, size);
            self.submit(encoder.finish());
        })
        .await?;
        let value = self.map_read(&staging, size, tensor.name(), convert).await?;
        // Only a buffer that was mapped and unmapped cleanly goes back (a failed one is dropped).
        self.staging.give(staging);
        Ok(value)
    }

    /// Maps a `MAP_READ` buffer whose copy was submitted, returns its bytes and unmaps it (so it
    /// can be reused), counting them as read back. `name` names the data in errors.
    pub(crate) async fn read_staging(&self, staging: &wgpu::Buffer, name: &str) -> GpuResult<Vec<u8>> {
        self.map_read(staging, staging.size(), name, <[u8]>::to_vec).await
    }

    async fn map_read<T>(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        name: &str,
        convert: impl FnOnce(&[u8]) -> T,
    ) -> GpuResult<T> {
        let err = |reason: String| GpuError::Readback { name: name.to_string(), reason };
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            let _ = tx.send(r);
        });
        self.poll_wait()?;
        rx.await
            .map_err(|_| err("the device dropped the mapping".into()))?
            .map_err(|e| err(e.to_string()))?;
        let value = convert(&staging.get_mapped_range(..size).map_err(|e| err(e.to_string()))?);
        staging.unmap();
        self.count_read(size);
        self.check_fault()?;
        Ok(value)
    }
}

// Native only: WASI has no WebGPU (the browser tests cover wasm32 with a device).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::gpu::{AdapterChoice, GpuOptions};

    fn context() -> Option<GpuContext> {
        let options = GpuOptions { adapter: AdapterChoice::Fallback, ..Default::default() };
        match pollster::block_on(GpuContext::new(&options)) {
            Ok(ctx) => Some(ctx),
            Err(e) if std::env::var_os("FIFO_REQUIRE_GPU").is_some_and(|v| v == "1") => {
                panic!("FIFO_REQUIRE_GPU=1 but no adapter: {e}")
            }
            Err(e) => {
                eprintln!("GPU case skipped (no adapter: {e})");
                None
            }
        }
    }

    /// Loop bounds: nests multiply outward in, short constant-trip loops count as unrolled.
    #[test]
    fn loop_bounds_of_nests_and_constant_loops() {
        assert_eq!(nested_loops(&[]), 0);
        assert_eq!(nested_loops(&[7]), 8);
        // conv: 320 input channels x a 3x3 kernel (depth 1): 321 + 640 + 1280 + 3840.
        assert_eq!(nested_loops(&[320, 1, 3, 3]), 6081);
        assert_eq!(nested_loops(&[u64::MAX, 2]), u64::MAX, "saturates, never wraps");
        assert_eq!(fixed_loop(UNROLLED_TRIPS), 0);
        assert_eq!(fixed_loop(UNROLLED_TRIPS + 1), UNROLLED_TRIPS + 2);
    }

    /// lavapipe names itself llvmpipe: its adapters (Vulkan and GL) get Mesa's loop limit.
    #[test]
    fn llvmpipe_adapters_have_the_loop_limit() {
        let info = |name: &str, driver: &str| wgpu::AdapterInfo {
            name: name.into(),
            driver: driver.into(),
            ..wgpu::AdapterInfo::new(wgpu::DeviceType::Cpu, wgpu::Backend::Vulkan)
        };
        let limit = crate::gpu::context::loop_limit_of;
        let lavapipe = info("llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe");
        assert_eq!(limit(&lavapipe), Some(crate::gpu::LLVMPIPE_LOOP_LIMIT));
        assert_eq!(limit(&info("", "llvmpipe Mesa 22.3.6")), Some(65_535));
        assert_eq!(limit(&info("SwiftShader Device (Subzero)", "SwiftShader driver")), None);
        assert_eq!(limit(&info("NVIDIA H200", "NVIDIA")), None);
        if let Some(ctx) = context() {
            let named = ctx.describe().to_ascii_lowercase().contains("llvmpipe");
            assert_eq!(ctx.loop_iteration_limit().is_some(), named, "{}", ctx.describe());
        }
    }

    /// A kernel whose shader fails to compile is not cached: building it again reports the
    /// compile error again (not a stale "invalid pipeline"), and the context keeps working.
    #[test]
    fn a_pipeline_that_fails_to_compile_is_not_cached() {
        let Some(ctx) = context() else { return };
        let src = GpuTensor::from_f32(&ctx, "src", &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let dst = GpuTensor::new(&ctx, "dst", DType::F32, 4).unwrap();
        let broken = || {
            ShaderVariant::new("copy")
                .tag("broken")
                .define("E", "u32")
                .define("PAD_VALUE", "p.pad_value")
                .define("ACT", "x")
                .define("WG", "no_such_constant")
        };
        for attempt in 0..2 {
            let mut b = ProgramBuilder::new(&ctx);
            b.push(broken(), &[0u32; 64], &[&src], &[&dst], [1, 1, 1], 0).unwrap();
            let err = pollster::block_on(b.build()).err().expect("a broken shader fails the build");
            assert!(err.to_string().contains("no_such_constant"), "attempt {attempt}: {err}");
            let kept = ctx.pipelines.keys().contains(&broken().key);
            assert!(!kept, "attempt {attempt}: the broken pipeline was kept");
        }
        let mut b = ProgramBuilder::new(&ctx);
        crate::gpu::ops::copy::copy(&mut b, &src.view(&[4]), &dst.view(&[4])).unwrap();
        let program = pollster::block_on(b.build()).unwrap();
        pollster::block_on(program.run(&ctx)).unwrap();
        assert_eq!(pollster::block_on(ctx.read_f32(&dst)).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    }

    /// Read-back reuses its staging buffers (one kept per size class, not one per read) and every
    /// dtype of odd length comes back exactly, also from a kept buffer larger than the tensor.
    #[test]
    fn readback_reuses_staging_buffers_and_converts_every_dtype() {
        let Some(ctx) = context() else { return };
        let values: Vec<f32> = (0..1001).map(|i| i as f32 * 0.5 - 200.0).collect();
        let big = GpuTensor::from_f32(&ctx, "big", &values).unwrap();
        for _ in 0..3 {
            assert_eq!(pollster::block_on(ctx.read_f32(&big)).unwrap(), values);
        }
        assert_eq!(ctx.staging.kept(), 1, "three reads of one tensor share one staging buffer");
        // Smaller tensors fit the kept buffer (within its size class) and read only their bytes.
        let ints: Vec<i32> = (-7..6).collect();
        let i32s = GpuTensor::from_i32(&ctx, "i32", &ints).unwrap();
        assert_eq!(pollster::block_on(ctx.read_i32(&i32s)).unwrap(), ints);
        let want: Vec<f32> = ints.iter().map(|&v| v as f32).collect();
        assert_eq!(pollster::block_on(ctx.read_f32(&i32s)).unwrap(), want);
        let halves: Vec<half::f16> =
            [1.5f32, -2.25, 65504.0].iter().map(|&v| half::f16::from_f32(v)).collect();
        let f16s = GpuTensor::from_f16(&ctx, "f16", &halves).unwrap();
        assert_eq!(pollster::block_on(ctx.read_f32(&f16s)).unwrap(), vec![1.5, -2.25, 65504.0]);
        let bytes: Vec<i8> = vec![-128, -1, 0, 1, 127];
        let i8s = GpuTensor::from_i8(&ctx, "i8", &bytes).unwrap();
        assert_eq!(pollster::block_on(ctx.read_f32(&i8s)).unwrap(), vec![-128.0, -1.0, 0.0, 1.0, 127.0]);
        assert_eq!(ctx.staging.kept(), 1, "small reads reuse the kept buffer");
        let before = ctx.traffic().bytes_read;
        pollster::block_on(ctx.read_f32(&i8s)).unwrap();
        assert_eq!(
            ctx.traffic().bytes_read - before,
            8,
            "5 i8 values are 2 words, not the kept buffer's size"
        );
    }
}
