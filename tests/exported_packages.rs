//! Packages written by the model-family exporters (tools/export/, reduced configs with random
//! weights, in tests/fixtures/packages/): every graph on the CPU and GPU backends against the
//! PyTorch outputs the exporter saved, with f32 weights and with the UNet's weights quantized.

mod onnx_common;

use fifo_diffusion::model::ModelPackage;
use fifo_diffusion::onnx::proto::ModelProto;
use fifo_diffusion::onnx::{quantize_weights, save_model, WeightFormat};
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::{fixtures_root, read_tensors, relative_l2};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Relative L2 error budgets against PyTorch (f32). The CPU backend sums in a different order
/// than PyTorch; the GPU kernels tile reductions differently again.
const F32_CPU: f64 = 1e-5;
const F32_GPU: f64 = 1e-4;
/// A graph with quantized weights against PyTorch's f32 output.
const F16_WEIGHTS: f64 = 2e-3;
const INT8_WEIGHTS: f64 = 5e-2;

struct Golden {
    package: String,
    graph: &'static str,
    model: PathBuf,
    inputs: Vec<(String, Tensor)>,
    /// By name: a causal decoder also writes its next state.
    outputs: Vec<(String, Tensor)>,
}

impl Golden {
    fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect()
    }
    fn feeds(&self) -> HashMap<String, Tensor> {
        self.inputs.iter().cloned().collect()
    }
}

fn packages() -> Vec<(PathBuf, ModelPackage)> {
    let root = fixtures_root().join("packages");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| {
            let package = ModelPackage::load(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            (d, package)
        })
        .collect()
}

/// Every graph of every package with its PyTorch input/output pair (`golden/<graph>/`).
fn goldens() -> Vec<Golden> {
    let mut all = Vec::new();
    for (dir, package) in packages() {
        let g = &package.graphs;
        let mut graphs = vec![
            ("text_encoder", &g.text_encoder.file),
            ("unet", &g.unet.file),
            ("decoder", &g.decoder.file),
        ];
        graphs.extend(g.decoder.first.as_ref().map(|f| ("decoder_first", f)));
        graphs.extend(g.encoder.as_ref().map(|e| ("encoder", &e.file)));
        for (graph, file) in graphs {
            let data = dir.join("golden").join(graph);
            assert!(data.is_dir(), "{}: no golden pair for {graph}; export with --golden", dir.display());
            let outputs = read_tensors(&data, "output");
            assert!(!outputs.is_empty(), "{}", data.display());
            all.push(Golden {
                package: package.name.clone(),
                graph,
                model: dir.join(file),
                inputs: read_tensors(&data, "input"),
                outputs,
            });
        }
    }
    assert!(!all.is_empty(), "no exported packages in tests/fixtures/packages");
    all
}

/// Every output the golden pair names against what the session returned.
fn check(what: &str, golden: &Golden, got: &[(String, Tensor)], budget: f64) {
    for (name, want) in &golden.outputs {
        let (pkg, graph) = (&golden.package, golden.graph);
        let got = got.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        let got = got.unwrap_or_else(|| panic!("{what}: {pkg}/{graph} has no output `{name}`"));
        assert_eq!(got.shape(), want.shape(), "{what}: {pkg}/{graph} output {name}");
        let rel = relative_l2(got, want);
        eprintln!("{what}: {pkg}/{graph} {name} relative L2 {rel:.2e}");
        assert!(
            rel <= budget,
            "{what}: {pkg}/{graph} output {name}: relative L2 error {rel:.2e} against PyTorch (budget {budget:.0e})"
        );
    }
}

fn run_cpu(model: &Path, golden: &Golden) -> Vec<(String, Tensor)> {
    let session = Session::build(ModelSource::Path(model), &golden.shapes(), &SessionOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    session.run(golden.feeds()).unwrap()
}

fn run_gpu(model: &Path, golden: &Golden) -> Option<Vec<(String, Tensor)>> {
    let ctx = onnx_common::gpu_context()?;
    // f32 activations: the budgets here are the weight formats' (f16 mode: tests/gpu_f16.rs).
    let gpu = fifo_diffusion::gpu::GpuOptions {
        precision: fifo_diffusion::gpu::Precision::F32,
        ..Default::default()
    };
    let options = SessionOptions { backend: Backend::Gpu, gpu, ..Default::default() };
    let session =
        pollster::block_on(Session::build_on(ctx, ModelSource::Path(model), &golden.shapes(), &options))
            .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    assert_eq!(session.backend(), Backend::Gpu);
    Some(pollster::block_on(session.run_async(golden.feeds())).unwrap())
}

#[test]
fn every_exported_graph_matches_pytorch_on_cpu() {
    for golden in goldens() {
        check("cpu", &golden, &run_cpu(&golden.model, &golden), F32_CPU);
    }
}

#[test]
fn every_exported_graph_matches_pytorch_on_gpu() {
    for golden in goldens() {
        let Some(got) = run_gpu(&golden.model, &golden) else { return };
        check("gpu", &golden, &got, F32_GPU);
    }
}

/// Every graph with `fifo quantize`'s int8 and f16 weights (Conv/MatMul/Gemm weights; a graph
/// without any keeps f32 and is skipped), on both backends.
#[test]
fn quantized_graphs_stay_within_their_budgets() {
    let mut quantized = 0;
    for golden in goldens() {
        let dir = golden.model.parent().unwrap();
        // Under the target folder: the WASI runner preopens only the repository (and WASI has no
        // process ids, so the folder is named by the package and graph alone).
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("quantized-{}-{}", golden.package, golden.graph));
        std::fs::create_dir_all(&out).unwrap();
        for (format, budget) in [(WeightFormat::Int8, INT8_WEIGHTS), (WeightFormat::F16, F16_WEIGHTS)] {
            let mut model = ModelProto::decode(std::fs::read(&golden.model).unwrap().as_slice()).unwrap();
            let report = quantize_weights(&mut model, Some(dir), format).unwrap();
            if report.converted.is_empty() {
                continue;
            }
            quantized += 1;
            let path = out.join(format!("{}.{format:?}.onnx", golden.graph));
            save_model(model, &path, false).unwrap();
            check(&format!("cpu {format:?}"), &golden, &run_cpu(&path, &golden), budget);
            if let Some(got) = run_gpu(&path, &golden) {
                check(&format!("gpu {format:?}"), &golden, &got, budget);
            }
        }
        std::fs::remove_dir_all(&out).ok();
    }
    assert!(quantized > 0, "no graph had weights to quantize");
}
