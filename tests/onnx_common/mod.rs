#![allow(dead_code)] // each test binary uses a different part of these helpers
//! Shared helpers of the integration tests: fixture loading and named tolerances.

use fifo_diffusion::gpu::{GpuContext, GpuOptions, Precision};
use fifo_diffusion::onnx::{decode_tensor, model_metadata};
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::{Tensor, TensorData};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// ONNX models written node by node. Not in the browser test crate (web/tests includes this
/// module but does not depend on prost).
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub mod graph;

/// How close an output must be to its reference: every element within
/// `|got - want| <= atol + rtol * |want| + stol * max|want|` (the last term relative to the
/// output's largest finite magnitude), and `||got - want|| / ||want|| <= rel_l2` over the output.
/// The f32 names use only `atol` and `rtol`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub atol: f32,
    pub rtol: f32,
    pub stol: f32,
    pub rel_l2: f32,
}

/// f16's unit roundoff: one rounding to f16 (10 stored fraction bits) moves a value by at most
/// 2^-11 of itself (within f16's normal range).
pub const F16_ROUNDOFF: f32 = 1.0 / 2048.0;

impl Tolerance {
    /// `|got - want| <= atol + rtol * |want|` alone.
    pub const fn elementwise(atol: f32, rtol: f32) -> Tolerance {
        Tolerance { atol, rtol, stol: 0.0, rel_l2: f32::INFINITY }
    }

    /// The tolerances the fixture generator may name, and the GPU's f16 mode's (`f16`,
    /// `f16_accumulate`; see [`Tolerance::f16_name`]).
    pub fn named(name: &str) -> Option<Tolerance> {
        let u = F16_ROUNDOFF;
        Some(match name {
            // Layout ops, integers, comparisons: bit-exact.
            "exact" => Tolerance::elementwise(0.0, 0.0),
            // One rounding per element.
            "elementwise" => Tolerance::elementwise(1e-6, 1e-6),
            // libm vs the reference's math library.
            "transcendental" => Tolerance::elementwise(1e-5, 1e-5),
            // Sums over many products (MatMul, Conv, norms): the order of additions differs.
            "accumulate" => Tolerance::elementwise(1e-4, 1e-4),
            // float16 results.
            "half" => Tolerance::elementwise(1e-3, 1e-2),
            // Whole models: many layers of accumulation.
            "model" => Tolerance::elementwise(1e-4, 1e-3),
            // The GPU's f16 mode on an op that does not accumulate (layout, elementwise,
            // transcendental, max pool, nearest resize), against the f32 reference. Its inputs
            // are rounded to f16 (at most u = 2^-11 relative each; for the fixtures' inputs,
            // |x| < 4, at most 2^-10 absolute), it computes in f32 and rounds its output once
            // more (u). A layout op is then within u of the reference; an elementwise op within
            // u plus its condition times the inputs' rounding: exp/softmax turn 2^-10 absolute
            // into 2^-10 relative, so 3u, and near a zero of the output (x - y with x ~ y, log
            // near 1) the error is relative to the operands, which the output's largest
            // magnitude stands for. Hence 4u of the element plus 2u of the output's scale, and
            // 2u relative L2 (the roundings are independent, so the L2 error is about u).
            // Measured on lavapipe (both kernel styles): at most 0.66e-3 of the scale (mul),
            // 1.9e-3 of the element (sub), 4.2e-4 relative L2.
            "f16" => Tolerance { atol: 0.0, rtol: 4.0 * u, stol: 2.0 * u, rel_l2: 2.0 * u },
            // The same for sums (MatMul, Gemm, Conv, ConvTranspose, Einsum, reductions, norms,
            // average pool, linear resize, float16 fixtures): each product carries the rounding
            // of both operands (2u), the kernels sum in f32, so the K errors add as a random walk:
            // about 2u / sqrt(3) of the root sum of squared products, which the largest output
            // (some 2.5 standard deviations of the outputs) bounds. 4 standard deviations of
            // that, plus the output's own rounding, is about 3u of the scale; 4u of the scale and
            // of the element, and 4u relative L2. A wrong tap, a dropped bias or an f16 sum over
            // K in the hundreds is far outside. Measured: at most 0.80e-3 of the scale
            // (ReduceMean), 1.8e-3 of the element (Conv), 7.2e-4 relative L2 (ReduceMean).
            "f16_accumulate" => Tolerance { atol: 0.0, rtol: 4.0 * u, stol: 4.0 * u, rel_l2: 4.0 * u },
            _ => return None,
        })
    }

    /// The same names on the GPU backend. WGSL allows more error than libm: exp/log/pow and
    /// division within a few ulps, tanh/erf/sigmoid built from exp; f16 values are held in f32.
    pub fn named_gpu(name: &str) -> Option<Tolerance> {
        Some(match name {
            "exact" => Tolerance::elementwise(0.0, 0.0),
            // Division (2.5 ulp in WGSL) and pow through exp2/log2.
            "elementwise" => Tolerance::elementwise(1e-6, 4e-6),
            "transcendental" => Tolerance::elementwise(2e-5, 2e-5),
            other => return Tolerance::named(other),
        })
    }

    /// The tolerance name for one output of a fixture named `fixture_tolerance` run in the GPU's
    /// f16 mode. Integer and boolean outputs stay exact: integers never become f16, and the
    /// fixtures' comparisons, casts to integers and masks do not change when their float inputs
    /// round to f16 (checked by the f16 fixture run).
    pub fn f16_name(fixture_tolerance: &str, output: fifo_diffusion::tensor::DType) -> &'static str {
        use fifo_diffusion::tensor::DType;
        match (output, fixture_tolerance) {
            (DType::F32 | DType::F16, "accumulate" | "half" | "model") => "f16_accumulate",
            (DType::F32 | DType::F16, _) => "f16",
            _ => "exact",
        }
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
    let scale = w.iter().filter(|b| b.is_finite()).fold(0f64, |m, b| m.max(b.abs()));
    let floor = tol.atol as f64 + tol.stol as f64 * scale;
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= floor + tol.rtol as f64 * b.abs();
        if !ok && worst.is_none_or(|(_, e)| (a - b).abs() > e) {
            worst = Some((i, (a - b).abs()));
        }
    }
    if let Some((i, e)) = worst {
        return Some(format!("element {i}: got {} want {} (|diff| {e:.3e}, tolerance {tol:?})", g[i], w[i]));
    }
    if tol.rel_l2.is_finite() {
        let err = relative_l2(got, want);
        if err > tol.rel_l2 as f64 {
            return Some(format!("relative L2 {err:.3e} (tolerance {tol:?})"));
        }
    }
    None
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
/// GPU one with `gpu` (in f32 precision), with the tolerance its metadata names; `Err` says what
/// went wrong.
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
    let outputs = match gpu {
        None => {
            let model = ModelSource::Bytes(bytes);
            let shapes: HashMap<String, Vec<usize>> =
                inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect();
            let input_map: HashMap<String, Tensor> = inputs.iter().cloned().collect();
            Session::build(model, &shapes, &SessionOptions::default())
                .and_then(|s| s.run(input_map))
                .map_err(|e| e.to_string())?
        }
        // The fixtures' tolerances are f32 ones: f32 activations even for int8 / f16 weights.
        Some(ctx) => run_on_gpu(bytes, inputs, ctx, Precision::F32).await?.outputs,
    };
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

/// What a GPU session computed and the pipeline keys of its dispatches.
pub struct GpuRun {
    pub outputs: Vec<(String, Tensor)>,
    pub kernel_keys: Vec<String>,
}

/// Builds `bytes` on `ctx` in `precision` (which the session must resolve to) and runs it.
pub async fn run_on_gpu(
    bytes: &[u8],
    inputs: &[(String, Tensor)],
    ctx: &Arc<GpuContext>,
    precision: Precision,
) -> Result<GpuRun, String> {
    let model = ModelSource::Bytes(bytes);
    let shapes: HashMap<String, Vec<usize>> =
        inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect();
    let input_map: HashMap<String, Tensor> = inputs.iter().cloned().collect();
    let gpu = GpuOptions { precision, ..Default::default() };
    let options = SessionOptions { backend: Backend::Gpu, gpu, ..Default::default() };
    let session =
        Session::build_on(ctx.clone(), model, &shapes, &options).await.map_err(|e| e.to_string())?;
    let gpu = session.gpu().ok_or("not a GPU session")?;
    if gpu.precision() != precision {
        return Err(format!("asked for {precision:?}, the session runs {:?}", gpu.precision()));
    }
    let kernel_keys = gpu.kernel_keys().into_iter().map(String::from).collect();
    let outputs = session.run_async(input_map).await.map_err(|e| e.to_string())?;
    Ok(GpuRun { outputs, kernel_keys })
}

/// How far one float output of an f16-mode run is from its reference.
#[derive(Clone, Debug)]
pub struct F16Error {
    pub output: String,
    /// The tolerance name it was checked with ([`Tolerance::f16_name`]).
    pub tolerance: &'static str,
    /// The largest `|got - want|` over the largest `|want|`.
    pub of_scale: f64,
    /// `||got - want|| / ||want||`.
    pub rel_l2: f64,
}

/// Whether a fixture holds float values f16 cannot represent (finite, beyond +-65504): f16 mode
/// rounds them to infinity at the program's boundary, so such a fixture is not run in f16.
pub fn beyond_f16_range(tensors: &[(String, Tensor)]) -> bool {
    tensors.iter().any(|(_, t)| {
        matches!(t.dtype(), fifo_diffusion::tensor::DType::F32)
            && t.to_f32_vec().iter().any(|x| x.is_finite() && x.abs() > 65504.0)
    })
}

/// Runs one fixture on `ctx` in the f16 compute mode (`Precision::F16`, which the session must
/// resolve to) against onnxruntime's f32 outputs, each checked with the f16 tolerance of its
/// fixture's tolerance name ([`Tolerance::f16_name`]); `Ok` holds the float outputs' errors.
pub async fn run_fixture_f16(
    bytes: &[u8],
    inputs: &[(String, Tensor)],
    expected: &[(String, Tensor)],
    ctx: &Arc<GpuContext>,
) -> Result<Vec<F16Error>, String> {
    let meta = model_metadata(bytes).map_err(|e| e.to_string())?;
    let tol_name = meta.get("tolerance").ok_or("no tolerance in the model metadata")?;
    let run = run_on_gpu(bytes, inputs, ctx, Precision::F16).await?;
    // Float results must come from f16 storage: some dispatch names f16 (a program may be empty
    // when the whole graph folds to constants).
    let floats = expected.iter().any(|(_, t)| t.dtype().is_float());
    if floats && !run.kernel_keys.is_empty() && !run.kernel_keys.iter().any(|k| k.contains("f16")) {
        return Err(format!("float outputs but no f16 kernel ran: {:?}", run.kernel_keys));
    }
    if run.outputs.len() != expected.len() {
        return Err(format!("{} outputs, want {}", run.outputs.len(), expected.len()));
    }
    let mut errors = Vec::new();
    for ((name, got), (_, want)) in run.outputs.iter().zip(expected) {
        let tolerance = Tolerance::f16_name(tol_name, want.dtype());
        let tol = Tolerance::named(tolerance).expect("a named tolerance");
        if let Some(diff) = compare(got, want, tol) {
            return Err(format!("output '{name}' ({tolerance}): {diff}"));
        }
        if tolerance != "exact" {
            let (g, w) = (values(got), values(want));
            let scale = w.iter().filter(|b| b.is_finite()).fold(0f64, |m, b| m.max(b.abs()));
            let worst = g.iter().zip(&w).filter(|(a, b)| a != b).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            let of_scale = if scale > 0.0 { worst / scale } else { worst };
            errors.push(F16Error {
                output: name.clone(),
                tolerance,
                of_scale,
                rel_l2: relative_l2(got, want),
            });
        }
    }
    Ok(errors)
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
    "reduce_max_int32_attr",
    "reduce_mean_int32_truncates",
    "reduce_min_int64_all",
    "reduce_prod_int64",
    "reduce_sum_int64",
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
