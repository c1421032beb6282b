#![allow(dead_code)] // each test binary uses a different part of these helpers
//! Shared helpers of the integration tests: fixture loading and named tolerances.

use fifo_diffusion::gpu::GpuContext;
use fifo_diffusion::onnx::{decode_tensor, model_metadata};
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::{Tensor, TensorData};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How close an output must be to its reference: `|got - want| <= atol + rtol * |want|`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub atol: f32,
    pub rtol: f32,
}

impl Tolerance {
    /// The tolerances the fixture generator may name.
    pub fn named(name: &str) -> Option<Tolerance> {
        let (atol, rtol) = match name {
            // Layout ops, integers, comparisons: bit-exact.
            "exact" => (0.0, 0.0),
            // One rounding per element.
            "elementwise" => (1e-6, 1e-6),
            // libm vs the reference's math library.
            "transcendental" => (1e-5, 1e-5),
            // Sums over many products (MatMul, Conv, norms): the order of additions differs.
            "accumulate" => (1e-4, 1e-4),
            // float16 results.
            "half" => (1e-3, 1e-2),
            // Whole models: many layers of accumulation.
            "model" => (1e-4, 1e-3),
            _ => return None,
        };
        Some(Tolerance { atol, rtol })
    }

    /// The same names on the GPU backend. WGSL allows more error than libm: exp/log/pow and
    /// division within a few ulps, tanh/erf/sigmoid built from exp; f16 values are held in f32.
    pub fn named_gpu(name: &str) -> Option<Tolerance> {
        let (atol, rtol) = match name {
            "exact" => (0.0, 0.0),
            // Division (2.5 ulp in WGSL) and pow through exp2/log2.
            "elementwise" => (1e-6, 4e-6),
            "transcendental" => (2e-5, 2e-5),
            other => return Tolerance::named(other),
        };
        Some(Tolerance { atol, rtol })
    }
}

const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

/// The shared test device (Vulkan lavapipe when installed), or `None` after a loud skip message;
/// `FIFO_REQUIRE_GPU=1` turns the skip into a failure.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_context() -> Option<std::sync::Arc<fifo_diffusion::gpu::GpuContext>> {
    use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions};
    use std::sync::{Arc, OnceLock};
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    CTX.get_or_init(|| {
        let options = GpuOptions { adapter: AdapterChoice::Fallback, ..Default::default() };
        open_gpu_context(&options)
    })
    .clone()
}

/// A test device of its own opened with `options` (e.g. a capped binding size), with the same
/// adapter choice, skip message and `FIFO_REQUIRE_GPU=1` rule as [`gpu_context`].
#[cfg(not(target_arch = "wasm32"))]
pub fn open_gpu_context(
    options: &fifo_diffusion::gpu::GpuOptions,
) -> Option<std::sync::Arc<fifo_diffusion::gpu::GpuContext>> {
    use fifo_diffusion::gpu::GpuContext;
    static ICD: std::sync::Once = std::sync::Once::new();
    ICD.call_once(|| {
        if std::env::var_os("VK_DRIVER_FILES").is_none() && Path::new(LAVAPIPE_ICD).exists() {
            // Runs once, before any wgpu instance reads the environment.
            std::env::set_var("VK_DRIVER_FILES", LAVAPIPE_ICD);
        }
    });
    match pollster::block_on(GpuContext::new(options)) {
        Ok(ctx) => {
            eprintln!("GPU tests on {}", ctx.describe());
            Some(Arc::new(ctx))
        }
        Err(e) => {
            if std::env::var("FIFO_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("FIFO_REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("\n!!!!!!!! SKIPPING GPU TEST: no adapter ({e}) !!!!!!!!\n");
            None
        }
    }
}

/// Under WASI there is no WebGPU: the GPU cases run in the native test run (on lavapipe), and the
/// wasm32 run checks the CPU backend only.
#[cfg(target_arch = "wasm32")]
pub fn gpu_context() -> Option<std::sync::Arc<fifo_diffusion::gpu::GpuContext>> {
    eprintln!("GPU cases skipped on wasm32-wasip1 (no WebGPU under WASI; they run natively)");
    None
}

#[cfg(target_arch = "wasm32")]
pub fn open_gpu_context(
    _options: &fifo_diffusion::gpu::GpuOptions,
) -> Option<std::sync::Arc<fifo_diffusion::gpu::GpuContext>> {
    gpu_context()
}

fn values(t: &Tensor) -> Vec<f64> {
    match t.data() {
        TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
        _ => t.to_i64_vec().into_iter().map(|x| x as f64).collect(),
    }
}

/// `None` when `got` matches `want`; otherwise what differs.
pub fn compare(got: &Tensor, want: &Tensor, tol: Tolerance) -> Option<String> {
    if got.dtype() != want.dtype() || got.shape() != want.shape() {
        return Some(format!(
            "got {} {:?}, want {} {:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        ));
    }
    let (g, w) = (values(got), values(want));
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok = (a.is_nan() && b.is_nan())
            || a == b
            || (a - b).abs() <= tol.atol as f64 + tol.rtol as f64 * b.abs();
        if !ok && worst.is_none_or(|(_, e)| (a - b).abs() > e) {
            worst = Some((i, (a - b).abs()));
        }
    }
    worst.map(|(i, e)| format!("element {i}: got {} want {} (|diff| {e:.3e}, tolerance {tol:?})", g[i], w[i]))
}

/// ||got - want|| / ||want|| in f64; against an all-zero `want`, the root mean square of `got` (an
/// all-zero output must come out all zero).
pub fn relative_l2(got: &Tensor, want: &Tensor) -> f64 {
    let (g, w) = (got.to_f32_vec(), want.to_f32_vec());
    let err: f64 = g.iter().zip(&w).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let norm: f64 = w.iter().map(|b| (*b as f64).powi(2)).sum();
    if norm == 0.0 {
        return (err / w.len().max(1) as f64).sqrt();
    }
    (err / norm).sqrt()
}

/// A model folder in the ONNX backend-test layout.
pub struct Fixture {
    pub name: String,
    pub model: PathBuf,
    pub inputs: Vec<(String, Tensor)>,
    pub outputs: Vec<(String, Tensor)>,
}

pub fn read_tensors(dir: &Path, prefix: &str) -> Vec<(String, Tensor)> {
    (0..)
        .map(|k| dir.join(format!("{prefix}_{k}.pb")))
        .take_while(|p| p.exists())
        .map(|p| {
            decode_tensor(&std::fs::read(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

pub fn load_fixture(dir: &Path) -> Fixture {
    let data = dir.join("test_data_set_0");
    Fixture {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        model: dir.join("model.onnx"),
        inputs: read_tensors(&data, "input"),
        outputs: read_tensors(&data, "output"),
    }
}

impl Fixture {
    pub fn input_shapes(&self) -> HashMap<String, Vec<usize>> {
        self.inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect()
    }

    pub fn input_map(&self) -> HashMap<String, Tensor> {
        self.inputs.iter().cloned().collect()
    }
}

pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs one fixture (model bytes, inputs, onnxruntime's outputs) on the CPU backend, or on the
/// GPU one with `gpu`, with the tolerance its metadata names; `Err` says what went wrong.
pub async fn run_fixture(
    bytes: &[u8],
    inputs: &[(String, Tensor)],
    expected: &[(String, Tensor)],
    gpu: Option<&Arc<GpuContext>>,
) -> Result<(), String> {
    let meta = model_metadata(bytes).map_err(|e| e.to_string())?;
    let tol_name = meta.get("tolerance").ok_or("no tolerance in the model metadata")?;
    let named = if gpu.is_some() { Tolerance::named_gpu } else { Tolerance::named };
    let tol = named(tol_name).ok_or_else(|| format!("unknown tolerance '{tol_name}'"))?;
    let model = ModelSource::Bytes(bytes);
    let shapes: HashMap<String, Vec<usize>> =
        inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect();
    let input_map: HashMap<String, Tensor> = inputs.iter().cloned().collect();
    let outputs = match gpu {
        None => Session::build(model, &shapes, &SessionOptions::default()).and_then(|s| s.run(input_map)),
        Some(ctx) => {
            // The fixtures' tolerances are f32 ones: f32 activations even for int8 / f16 weights.
            let gpu = fifo_diffusion::gpu::GpuOptions {
                precision: fifo_diffusion::gpu::Precision::F32,
                ..Default::default()
            };
            let options = SessionOptions { backend: Backend::Gpu, gpu, ..Default::default() };
            match Session::build_on(ctx.clone(), model, &shapes, &options).await {
                Ok(s) => s.run_async(input_map).await,
                Err(e) => Err(e),
            }
        }
    }
    .map_err(|e| e.to_string())?;
    if outputs.len() != expected.len() {
        return Err(format!("{} outputs, want {}", outputs.len(), expected.len()));
    }
    for ((name, got), (_, want)) in outputs.iter().zip(expected) {
        if let Some(diff) = compare(got, want, tol) {
            return Err(format!("output '{name}': {diff}"));
        }
    }
    Ok(())
}

/// Fixtures of integer arithmetic, integer casts and quantizing: the GPU backend holds integers
/// only for data movement and refuses these at build, naming the node (checked below). Also
/// GatherND with indices computed at run time (the GPU lowers it with build-time indices only),
/// and ScatterND with a reduction or with run-time indices (the GPU lowers reduction none with
/// build-time indices).
pub const GPU_REFUSES: &[&str] = &[
    "add_int64",
    "cast_float_to_int8",
    "cast_float_to_uint8",
    "div_int64_truncates",
    "equal_int64",
    "gather_nd_runtime_int32_indices",
    "mod_int_python_sign",
    "neg_int64",
    "quantize_per_axis_int8",
    "quantize_per_tensor_int8",
    "quantize_uint8_ties_even",
    "scatter_nd_reduction_add",
    "scatter_nd_reduction_max",
    "scatter_nd_reduction_min",
    "scatter_nd_reduction_mul",
    "scatter_nd_runtime_int64_indices",
    "where_int64",
];

/// `None` when a fixture's result is what it must be on this backend (a match, or on the GPU a
/// clear refusal for the fixtures in [`GPU_REFUSES`]); otherwise what went wrong.
pub fn verdict(name: &str, result: Result<(), String>, on_gpu: bool) -> Option<String> {
    if on_gpu && GPU_REFUSES.contains(&name) {
        return match result {
            Ok(()) => Some(format!("{name}: runs on the GPU now; remove it from GPU_REFUSES")),
            Err(e)
                if e.contains("cannot run on the GPU backend") && e.contains(&format!("'{name}_node'")) =>
            {
                None
            }
            Err(e) => Some(format!("{name}: expected a clear refusal, got: {e}")),
        };
    }
    result.err().map(|e| format!("{name}: {e}"))
}
