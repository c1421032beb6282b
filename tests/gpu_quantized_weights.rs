//! int8 and f16 weights stay in their stored form on the GPU: `DequantizeLinear(int8 constant)`
//! and `Cast(f16 constant)` (or the f16-exact f32 constant a folded Cast leaves) feeding MatMul,
//! Gemm, Conv and ConvTranspose become the kernels' int8 / f16 weight variants (dequantised inside
//! the kernel, f32 arithmetic), checked against the CPU backend, which dequantizes exactly. A
//! weight that another op reads too stays on the f32 path. Runs on lavapipe;
//! `FIFO_REQUIRE_GPU=1` turns a missing adapter into a failure.

mod onnx_common;

use fifo_diffusion::gpu::{GpuContext, GpuOptions, Precision};
use fifo_diffusion::graph::Dim;
use fifo_diffusion::onnx::proto::ModelProto;
use fifo_diffusion::onnx::{quantize_weights, WeightFormat};
use fifo_diffusion::session::{inspect, Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::{DType, Tensor};
use onnx_common::graph::{
    f32_initializer, float_info, graph, initializer, int_attr, model_bytes, node, untyped, DataType,
    GraphProto, NodeProto, TensorProto,
};
use onnx_common::{compare, fixtures_root, load_fixture, Tolerance};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Inputs for a model's declared shapes (symbolic dims become `batch`), deterministic values.
fn synthetic_inputs(source: ModelSource, batch: usize) -> HashMap<String, Tensor> {
    let info = inspect(source, &HashMap::new(), &SessionOptions::default()).unwrap();
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    };
    info.inputs
        .iter()
        .map(|t| {
            let dims = t.declared_shape.clone().unwrap_or_default();
            let shape: Vec<usize> = dims
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => *n,
                    Dim::Symbolic(_) => batch,
                })
                .collect();
            let len = shape.iter().product();
            let tensor = match t.dtype {
                Some(DType::I64) => {
                    Tensor::from_i64(shape, (0..len).map(|i| (i as i64 * 37) % 900).collect())
                }
                _ => Tensor::from_f32(shape, (0..len).map(|_| next()).collect()),
            };
            (t.name.clone(), tensor.unwrap())
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A model's bytes with its Conv/MatMul/Gemm weights as `fifo quantize` writes them (external
/// data read from the model's folder and written inline).
fn quantized_bytes(path: &Path, format: WeightFormat) -> Vec<u8> {
    let mut model = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    quantize_weights(&mut model, path.parent(), format).unwrap();
    model.encode_to_vec()
}

/// Device bytes and run time of each model as f32, int8 and f16 (quantized in memory), each on
/// a device of its own (so the device's meter holds that session alone):
/// `FIFO_MEASURE_MODELS=models/shapes-t2v-tiny/unet.onnx FIFO_MEASURE_RUNS=5 cargo test --release
/// --test gpu_quantized_weights measure -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_device_bytes_and_run_time() {
    let Ok(models) = std::env::var("FIFO_MEASURE_MODELS") else { return };
    let runs: usize = std::env::var("FIFO_MEASURE_RUNS").map_or(3, |r| r.parse().unwrap());
    let batch: usize = std::env::var("FIFO_MEASURE_BATCH").map_or(1, |r| r.parse().unwrap());
    for model in models.split(',') {
        let path = repo_root().join(model);
        let inputs = synthetic_inputs(ModelSource::Path(&path), batch);
        let shapes: HashMap<String, Vec<usize>> =
            inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect();
        for format in [None, Some(WeightFormat::Int8), Some(WeightFormat::F16)] {
            let bytes = format.map(|f| quantized_bytes(&path, f));
            let source = bytes.as_deref().map_or(ModelSource::Path(&path), ModelSource::Bytes);
            let Some(ctx) = onnx_common::open_gpu_context(&Default::default()) else { return };
            let gpu = GpuOptions { precision: Precision::F32, ..Default::default() };
            let options = SessionOptions { backend: Backend::Gpu, gpu, ..Default::default() };
            let session = pollster::block_on(Session::build_on(ctx.clone(), source, &shapes, &options))
                .unwrap_or_else(|e| panic!("{model}: {e}"));
            let gpu = session.gpu().unwrap();
            let (live, peak) = (ctx.memory().live_bytes(), ctx.memory().peak_bytes());
            pollster::block_on(session.run_async(inputs.clone())).unwrap();
            let times: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = std::time::Instant::now();
                    pollster::block_on(session.run_async(inputs.clone())).unwrap();
                    t.elapsed().as_secs_f64()
                })
                .collect();
            let (lo, hi) = times.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &t| (lo.min(t), hi.max(t)));
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            eprintln!(
                "{model} {format:?} B={batch}: device peak {:.2} MiB, live after build {:.2} MiB ({:.2} MiB \
                 pooled, {:.2} MiB constants; {} int8 and {} f16 weights), {} dispatches | run median \
                 {:.3} s of {runs} (min {lo:.3}, max {hi:.3})",
                mib(peak),
                mib(live),
                mib(gpu.pool_bytes),
                mib(gpu.constant_bytes),
                gpu.int8_weights,
                gpu.f16_weights,
                gpu.dispatches(),
                median(times),
            );
        }
    }
}

// ---- small hand-made graphs ----

/// Values in [-1, 1) that differ from element to element, so a misplaced one shows.
fn pattern(len: usize, salt: usize) -> Vec<f32> {
    (0..len).map(|i| (((i + salt) * 7919) % 2003) as f32 / 1001.5 - 1.0).collect()
}

fn int8_weight(name: &str, dims: &[i64]) -> TensorProto {
    let len = dims.iter().product::<i64>() as usize;
    let q: Vec<u8> = pattern(len, 3).iter().map(|v| ((v * 127.0).round() as i8) as u8).collect();
    initializer(name, DataType::Int8, dims, q)
}

fn f16_initializer(name: &str, dims: &[i64]) -> TensorProto {
    let len = dims.iter().product::<i64>() as usize;
    let raw = pattern(len, 5).iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    initializer(name, DataType::Float16, dims, raw)
}

/// A graph with one float input `x` of `x_dims`.
fn model(nodes: Vec<NodeProto>, init: Vec<TensorProto>, x_dims: &[i64], outputs: &[&str]) -> Vec<u8> {
    let outputs = outputs.iter().map(|o| untyped(o)).collect();
    let graph = graph(nodes, init, vec![float_info("x", x_dims)], outputs);
    model_bytes(GraphProto { name: Some("stored_weights".into()), ..graph })
}

/// `DequantizeLinear(q, s[, zp])` along `axis` into `out`, with the constants it reads.
fn dequantized(
    out: &str,
    dims: &[i64],
    axis: i64,
    scales: usize,
    zero_point: bool,
) -> (NodeProto, Vec<TensorProto>) {
    let (q, s, z) = (format!("{out}.q"), format!("{out}.s"), format!("{out}.zp"));
    let scale_dims: Vec<i64> = if scales == 1 { vec![] } else { vec![scales as i64] };
    let scale: Vec<f32> = (0..scales).map(|i| 0.01 + 0.003 * i as f32).collect();
    let mut init = vec![int8_weight(&q, dims), f32_initializer(&s, &scale_dims, &scale)];
    let mut inputs = vec![q.as_str(), s.as_str()];
    if zero_point {
        init.push(initializer(&z, DataType::Int8, &scale_dims, vec![0; scales]));
        inputs.push(z.as_str());
    }
    (node("DequantizeLinear", &inputs, out, vec![int_attr("axis", axis)]), init)
}

struct Run {
    session: Session,
    outputs: Vec<(String, Tensor)>,
}

fn x_input(dims: &[usize]) -> HashMap<String, Tensor> {
    let len = dims.iter().product();
    HashMap::from([("x".to_string(), Tensor::from_f32(dims.to_vec(), pattern(len, 11)).unwrap())])
}

fn gpu() -> Option<Arc<GpuContext>> {
    onnx_common::gpu_context()
}

/// Runs `source` on the GPU (on `ctx`) and on the CPU and checks every output against the CPU's
/// within `tolerance` (a name of `Tolerance::named_gpu`).
fn run_both(
    ctx: &Arc<GpuContext>,
    source: ModelSource,
    inputs: &HashMap<String, Tensor>,
    options: &SessionOptions,
    tolerance: &str,
) -> Run {
    let shapes = inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect();
    let cpu = Session::build(source, &shapes, options).unwrap_or_else(|e| panic!("cpu: {e}"));
    let want = cpu.run(inputs.clone()).unwrap();
    // f32 activations: this file checks the stored weights against f32 tolerances (f16 mode,
    // which `Precision::Auto` picks for these models on shader-f16 adapters, is tests/gpu_f16.rs).
    let gpu = GpuOptions { precision: Precision::F32, ..options.gpu.clone() };
    let gpu_options = SessionOptions { backend: Backend::Gpu, gpu, ..options.clone() };
    let session = pollster::block_on(Session::build_on(ctx.clone(), source, &shapes, &gpu_options))
        .unwrap_or_else(|e| panic!("gpu: {e}"));
    let outputs = pollster::block_on(session.run_async(inputs.clone())).unwrap();
    for ((name, got), (_, want)) in outputs.iter().zip(&want) {
        if let Some(diff) = compare(got, want, Tolerance::named_gpu(tolerance).unwrap()) {
            panic!("output '{name}' on the GPU against the CPU: {diff}");
        }
    }
    Run { session, outputs }
}

fn stored_counts(run: &Run) -> (usize, usize) {
    let g = run.session.gpu().unwrap();
    (g.int8_weights, g.f16_weights)
}

fn keys_with(run: &Run, tag: &str) -> usize {
    run.session.gpu().unwrap().kernel_keys().iter().filter(|k| k.contains(tag)).count()
}

#[test]
fn int8_matmul_and_gemm_weights_run_as_int8() {
    let Some(ctx) = gpu() else { return };
    // MatMul [K, N] with scales along N (with an all-zero zero point), Gemm transB [N, K] with
    // scales along N (axis 0), and a MatMul with one scale for the whole weight.
    let (d1, mut init) = dequantized("w1", &[8, 12], 1, 12, true);
    let (d2, i2) = dequantized("w2", &[16, 12], 0, 16, false);
    let (d3, i3) = dequantized("w3", &[16, 8], 1, 1, false);
    init.extend(i2.into_iter().chain(i3));
    init.push(f32_initializer("c", &[16], &pattern(16, 2)));
    let nodes = vec![
        d1,
        d2,
        d3,
        node("MatMul", &["x", "w1"], "h", vec![]),
        node("Gemm", &["h", "w2", "c"], "g", vec![int_attr("transB", 1)]),
        node("MatMul", &["g", "w3"], "y", vec![]),
    ];
    let bytes = model(nodes, init, &[5, 8], &["y"]);
    let run =
        run_both(&ctx, ModelSource::Bytes(&bytes), &x_input(&[5, 8]), &Default::default(), "accumulate");
    assert_eq!(stored_counts(&run), (3, 0));
    assert_eq!(keys_with(&run, "w=i8"), 3, "{:?}", run.session.gpu().unwrap().kernel_keys());
}

#[test]
fn int8_conv_and_grouped_conv_transpose_weights_run_as_int8() {
    let Some(ctx) = gpu() else { return };
    // Conv [Cout 8, Cin 4, 3, 3] along axis 0; ConvTranspose with 2 groups [Cin 8, Cout/g 3, 2, 2]
    // along axis 1: each group's output channels take the same 3 scales.
    let (d1, mut init) = dequantized("wc", &[8, 4, 3, 3], 0, 8, false);
    let (d2, i2) = dequantized("wt", &[8, 3, 2, 2], 1, 3, false);
    init.extend(i2);
    init.push(f32_initializer("bc", &[8], &pattern(8, 4)));
    let nodes = vec![
        d1,
        d2,
        node("Conv", &["x", "wc", "bc"], "h", vec![int_attr("group", 1)]),
        node("ConvTranspose", &["h", "wt"], "y", vec![int_attr("group", 2)]),
    ];
    let bytes = model(nodes, init, &[2, 4, 6, 6], &["y"]);
    let x = x_input(&[2, 4, 6, 6]);
    let run = run_both(&ctx, ModelSource::Bytes(&bytes), &x, &Default::default(), "accumulate");
    assert_eq!(stored_counts(&run), (2, 0));
    assert_eq!(keys_with(&run, "w=i8"), 2, "{:?}", run.session.gpu().unwrap().kernel_keys());
}

#[test]
fn a_weight_another_op_reads_too_stays_f32() {
    let Some(ctx) = gpu() else { return };
    // w feeds MatMul and Relu; v's scales run along K (axis 0), not along the MatMul's N.
    let (d1, mut init) = dequantized("w", &[8, 8], 1, 8, false);
    let (d2, i2) = dequantized("v", &[8, 4], 0, 8, false);
    init.extend(i2);
    let nodes = vec![
        d1,
        d2,
        node("MatMul", &["x", "w"], "h", vec![]),
        node("Relu", &["w"], "r", vec![]),
        node("MatMul", &["h", "v"], "y", vec![]),
    ];
    let bytes = model(nodes, init, &[3, 8], &["y", "r"]);
    let run =
        run_both(&ctx, ModelSource::Bytes(&bytes), &x_input(&[3, 8]), &Default::default(), "accumulate");
    assert_eq!(stored_counts(&run), (0, 0));
    assert_eq!(keys_with(&run, "w=i8"), 0);
    assert_eq!(run.outputs.len(), 2);
}

#[test]
fn f16_weights_run_as_f16_folded_or_not() {
    let Some(ctx) = gpu() else { return };
    let nodes = vec![
        node("Cast", &["w16"], "w", vec![int_attr("to", DataType::Float as i64)]),
        node("MatMul", &["x", "w"], "y", vec![]),
    ];
    let bytes = model(nodes, vec![f16_initializer("w16", &[8, 12])], &[5, 8], &["y"]);
    // Folded at build (an f32 constant that f16 holds exactly), and kept as a Cast node.
    let mut unfolded = SessionOptions::default();
    unfolded.build.fold_limit_bytes = 0;
    for options in [SessionOptions::default(), unfolded] {
        let run = run_both(&ctx, ModelSource::Bytes(&bytes), &x_input(&[5, 8]), &options, "accumulate");
        assert_eq!(stored_counts(&run), (0, 1));
        assert_eq!(keys_with(&run, "w=f16"), 1, "{:?}", run.session.gpu().unwrap().kernel_keys());
    }
}

// ---- whole models quantized by `fifo quantize` ----

/// The dynamo UNet fixture (9 Conv, 4 MatMul, 4 Gemm weights) quantized in memory: every weight
/// runs in its stored format, the outputs match the CPU backend on the same model within the
/// model tolerance, and the constants take about 1/4 (int8) and 1/2 (f16) of the f32 model's
/// device bytes (the f32 biases and norms stay).
#[test]
fn quantized_unet_fixture_runs_its_weights_int8_and_f16() {
    let Some(ctx) = gpu() else { return };
    let dir = fixtures_root().join("models/unet_dynamo_op18");
    let f = load_fixture(&dir);
    let f32_run = run_both(&ctx, ModelSource::Path(&f.model), &f.input_map(), &Default::default(), "model");
    let f32_bytes = f32_run.session.gpu().unwrap().constant_bytes;
    for (format, counts, tag, ratio) in
        [(WeightFormat::Int8, (17, 0), "w=i8", 0.25), (WeightFormat::F16, (0, 17), "w=f16", 0.5)]
    {
        let bytes = quantized_bytes(&f.model, format);
        let run = run_both(&ctx, ModelSource::Bytes(&bytes), &f.input_map(), &Default::default(), "model");
        assert_eq!(stored_counts(&run), counts, "{format:?}");
        assert!(keys_with(&run, tag) >= 17, "{format:?}: {:?}", run.session.gpu().unwrap().kernel_keys());
        let got = run.session.gpu().unwrap().constant_bytes as f64 / f32_bytes as f64;
        eprintln!("{format:?}: constants {got:.3} of the f32 model's device bytes");
        assert!(got < ratio + 0.1, "{format:?}: constants are {got:.3} of the f32 model's");
    }
}

/// The shipped model's int8 and f16 UNets, as `fifo quantize` wrote them.
#[test]
fn shipped_int8_and_f16_unets_run_their_weights_stored() {
    let dir = repo_root().join("models/shapes-t2v-tiny");
    if !dir.join("unet.int8.onnx").exists() {
        eprintln!("models/shapes-t2v-tiny has no quantized UNet: skipped");
        return;
    }
    let Some(ctx) = gpu() else { return };
    let inputs = synthetic_inputs(ModelSource::Path(&dir.join("unet.onnx")), 1);
    let f32_run =
        run_both(&ctx, ModelSource::Path(&dir.join("unet.onnx")), &inputs, &Default::default(), "model");
    let f32_bytes = f32_run.session.gpu().unwrap().constant_bytes;
    for (file, tag, ratio) in [("unet.int8.onnx", "w=i8", 0.25), ("unet.f16.onnx", "w=f16", 0.5)] {
        let run = run_both(&ctx, ModelSource::Path(&dir.join(file)), &inputs, &Default::default(), "model");
        let (int8, f16) = stored_counts(&run);
        assert!(int8 + f16 > 0 && keys_with(&run, tag) > 0, "{file}: no stored weights");
        let got = run.session.gpu().unwrap().constant_bytes as f64 / f32_bytes as f64;
        eprintln!(
            "{file}: {int8} int8 and {f16} f16 weights, constants {got:.3} of the f32 model's device bytes"
        );
        assert!(got < ratio + 0.1, "{file}: constants are {got:.3} of the f32 model's");
    }
}
