//! Whole models exported by both torch exporters (tools/onnx_fixtures/make_model_fixtures.py)
//! on the CPU and GPU backends against onnxruntime.

mod onnx_common;

use fifo_diffusion::gpu::GpuTensor;
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::{compare, fixtures_root, load_fixture, relative_l2, Tolerance};
use std::collections::HashMap;

fn check_model(name: &str) {
    let f = load_fixture(&fixtures_root().join("models").join(name));
    let session = Session::build(ModelSource::Path(&f.model), &f.input_shapes(), &SessionOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", f.name));
    let info = session.info();
    assert!(info.unsupported.is_empty());
    assert!(info.planned_peak_bytes.unwrap() <= info.unshared_bytes.unwrap());
    let outputs = session.run(f.input_map()).unwrap();
    assert_eq!(outputs.len(), f.outputs.len());
    for ((name, got), (_, want)) in outputs.iter().zip(&f.outputs) {
        let rel = relative_l2(got, want);
        assert!(rel < 1e-5, "{}: output '{name}' relative L2 error {rel:.2e}", f.name);
        if let Some(diff) = compare(got, want, Tolerance::named("model").unwrap()) {
            panic!("{}: output '{name}': {diff}", f.name);
        }
    }
}

#[test]
fn torchscript_opset17_unet_matches_onnxruntime() {
    check_model("unet_torchscript_op17");
}

#[test]
fn dynamo_opset18_unet_with_external_data_matches_onnxruntime() {
    check_model("unet_dynamo_op18");
}

#[test]
fn external_data_file_beside_the_model_is_read() {
    check_model("unet_external_data");
}

#[test]
fn external_data_needs_a_model_path() {
    let path = fixtures_root().join("models/unet_external_data/model.onnx");
    let bytes = std::fs::read(path).unwrap();
    let err = Session::build(ModelSource::Bytes(&bytes), &Default::default(), &SessionOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("file path"), "{err}");
}

/// Folding removes torch's shape arithmetic: fewer nodes run than were loaded.
#[test]
fn torchscript_shape_chains_fold_away() {
    let f = load_fixture(&fixtures_root().join("models/unet_torchscript_op17"));
    let session =
        Session::build(ModelSource::Path(&f.model), &f.input_shapes(), &SessionOptions::default()).unwrap();
    let info = session.info();
    let ran: Vec<&str> = session.graph().graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert!(info.nodes_to_run.unwrap() < info.nodes_loaded, "{info:?}");
    for folded in ["Shape", "Gather", "Constant"] {
        assert!(!ran.contains(&folded), "{folded} should have been folded");
    }
}

/// The same models on the GPU backend (lavapipe in CI), against onnxruntime and against the CPU
/// backend; skips loudly without an adapter unless `FIFO_REQUIRE_GPU=1`.
fn check_model_on_gpu(name: &str) {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let f = load_fixture(&fixtures_root().join("models").join(name));
    let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
    let gpu =
        pollster::block_on(Session::build_on(ctx, ModelSource::Path(&f.model), &f.input_shapes(), &options))
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
    assert_eq!(gpu.backend(), Backend::Gpu);
    // The fused forms reach their kernels: streaming attention and the norm with SiLU.
    let keys = gpu.gpu().unwrap().kernel_keys().join(" ");
    assert!(keys.contains("attention"), "{}: no attention kernel in {keys}", f.name);
    assert!(keys.contains("act=silu"), "{}: no fused SiLU in {keys}", f.name);
    let cpu =
        Session::build(ModelSource::Path(&f.model), &f.input_shapes(), &SessionOptions::default()).unwrap();
    let got = pollster::block_on(gpu.run_async(f.input_map())).unwrap();
    let reference = cpu.run(f.input_map()).unwrap();
    assert_eq!(got.len(), f.outputs.len());
    for (((name, got), (_, want)), (_, cpu_out)) in got.iter().zip(&f.outputs).zip(&reference) {
        let rel = relative_l2(got, want);
        assert!(rel < 1e-5, "{}: gpu output '{name}' relative L2 error {rel:.2e} vs onnxruntime", f.name);
        assert!(relative_l2(got, cpu_out) < 1e-5, "{}: gpu and cpu backends differ on '{name}'", f.name);
        if let Some(diff) = compare(got, want, Tolerance::named("model").unwrap()) {
            panic!("{}: gpu output '{name}': {diff}", f.name);
        }
    }
}

#[test]
fn torchscript_opset17_unet_matches_onnxruntime_on_gpu() {
    check_model_on_gpu("unet_torchscript_op17");
}

#[test]
fn dynamo_opset18_unet_matches_onnxruntime_on_gpu() {
    check_model_on_gpu("unet_dynamo_op18");
}

#[test]
fn external_data_unet_matches_onnxruntime_on_gpu() {
    check_model_on_gpu("unet_external_data");
}

/// Device-resident I/O: run on uploaded tensors, feed an output back as the next input without
/// reading it back, and compare both steps with the CPU backend doing the same.
#[test]
fn device_tensors_chain_runs_without_readback() {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let f = load_fixture(&fixtures_root().join("models/unet_torchscript_op17"));
    let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
    let gpu =
        pollster::block_on(Session::build_on(ctx, ModelSource::Path(&f.model), &f.input_shapes(), &options))
            .unwrap();
    let cpu =
        Session::build(ModelSource::Path(&f.model), &f.input_shapes(), &SessionOptions::default()).unwrap();
    let info = cpu.info().clone();
    let (x_name, out_name) = (info.inputs[0].name.clone(), info.outputs[0].name.clone());
    assert_eq!(info.inputs[0].shape, info.outputs[0].shape, "the chain feeds the output back as input 0");
    let mut host = f.input_map();
    let mut device: HashMap<String, GpuTensor> =
        host.iter().map(|(n, t)| (n.clone(), gpu.upload(n, t).unwrap())).collect();
    for step in 0..2 {
        let outs = pollster::block_on(gpu.run_device(device.clone())).unwrap();
        let want = cpu.run(host.clone()).unwrap();
        let (name, y) = &outs[0];
        assert_eq!(name, &out_name);
        let got = pollster::block_on(gpu.download(name, y)).unwrap();
        let rel = relative_l2(&got, &want[0].1);
        assert!(rel < 1e-5, "step {step}: relative L2 {rel:.2e}");
        device.insert(x_name.clone(), y.clone());
        host.insert(x_name.clone(), want[0].1.clone());
    }
    // Wrong inputs are errors, not panics.
    let err = pollster::block_on(gpu.run_device(HashMap::new())).unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
    assert!(cpu.upload(&x_name, &host[&x_name]).is_err(), "a cpu session has no device tensors");
}

/// Builds a model for the GPU and CPU backends and compares them; times both. Not a CI test: the
/// model comes from `FIFO_GPU_MODEL` (e.g. the video UNet with inputs latents [B,8,4,16,16],
/// timesteps [B,8], context [B,8,12,128]) and the batch sizes from `FIFO_GPU_BATCHES` (e.g. 2,16):
/// `FIFO_GPU_MODEL=/tmp/unet/unet.onnx cargo test --test model_parity video_unet -- --ignored --nocapture`
#[test]
#[ignore]
fn video_unet_gpu_matches_cpu() {
    let Some(path) = std::env::var_os("FIFO_GPU_MODEL") else { return };
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let path = std::path::PathBuf::from(path);
    let batches: Vec<usize> = std::env::var("FIFO_GPU_BATCHES")
        .unwrap_or_else(|_| "2".into())
        .split(',')
        .map(|b| b.trim().parse().unwrap())
        .collect();
    for b in batches {
        let dims: [(&str, Vec<usize>); 3] =
            [("latents", vec![b, 8, 4, 16, 16]), ("timesteps", vec![b, 8]), ("context", vec![b, 8, 12, 128])];
        let shapes: HashMap<String, Vec<usize>> =
            dims.iter().map(|(n, s)| (n.to_string(), s.clone())).collect();
        let mut seed = 1u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let inputs: HashMap<String, Tensor> = dims
            .iter()
            .map(|(n, s)| {
                let len = s.iter().product();
                let scale = if *n == "timesteps" { 500.0 } else { 1.0 };
                let v: Vec<f32> = (0..len)
                    .map(|_| if *n == "timesteps" { (next() * scale).abs().round() } else { next() })
                    .collect();
                (n.to_string(), Tensor::from_f32(s.clone(), v).unwrap())
            })
            .collect();
        let t = std::time::Instant::now();
        let cpu = Session::build(ModelSource::Path(&path), &shapes, &SessionOptions::default()).unwrap();
        let cpu_build = t.elapsed().as_secs_f64();
        let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
        let t = std::time::Instant::now();
        let gpu =
            pollster::block_on(Session::build_on(ctx.clone(), ModelSource::Path(&path), &shapes, &options))
                .unwrap_or_else(|e| panic!("B={b}: {e}"));
        let gpu_build = t.elapsed().as_secs_f64();
        let want = cpu.run(inputs.clone()).unwrap();
        let t = std::time::Instant::now();
        let want2 = cpu.run(inputs.clone()).unwrap();
        let cpu_run = t.elapsed().as_secs_f64();
        let got = pollster::block_on(gpu.run_async(inputs.clone())).unwrap();
        let t = std::time::Instant::now();
        let _ = pollster::block_on(gpu.run_async(inputs.clone())).unwrap();
        let gpu_run = t.elapsed().as_secs_f64();
        assert_eq!(want[0].1, want2[0].1);
        let rel = relative_l2(&got[0].1, &want[0].1);
        let g = gpu.gpu().unwrap();
        eprintln!(
            "B={b}: cpu build {cpu_build:.2}s run {cpu_run:.3}s | gpu build {gpu_build:.2}s run {gpu_run:.3}s \
             ({} dispatches, {:.1} MiB pooled in {} buffers) | relative L2 gpu vs cpu {rel:.2e}",
            g.dispatches(),
            g.pool_bytes as f64 / (1 << 20) as f64,
            g.pool_buffers
        );
        assert!(rel < 1e-4, "B={b}: relative L2 {rel:.2e}");
    }
}
