//! `fifo quantize`: the Rust quantizer against an independent numpy transcription with
//! onnxruntime's outputs (tools/onnx_fixtures/make_quantize_fixtures.py -> tests/fixtures/quantize/).

mod onnx_common;

use fifo_diffusion::onnx::proto::{ModelProto, OperatorSetIdProto};
use fifo_diffusion::onnx::{quantize_weights, save_model, QuantizeError, WeightFormat};
use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::{compare, fixtures_root, load_fixture, relative_l2, Tolerance};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Relative L2 error budget of a quantized model's output against the f32 model's (the same
/// budgets as the fixture generator's, which asserts them for onnxruntime).
const INT8_BUDGET: f64 = 2e-2;
const F16_BUDGET: f64 = 1e-3;

fn source_dir() -> PathBuf {
    fixtures_root().join("models/unet_dynamo_op18")
}

fn quantized(format: WeightFormat) -> ModelProto {
    let mut model =
        ModelProto::decode(std::fs::read(source_dir().join("model.onnx")).unwrap().as_slice()).unwrap();
    let report = quantize_weights(&mut model, Some(&source_dir()), format).unwrap();
    assert_eq!(report.converted.len(), 17, "9 Conv, 4 MatMul and 4 Gemm weights");
    assert!(report.kept.is_empty(), "{:?}", report.kept);
    model
}

fn fixture_name(format: WeightFormat) -> &'static str {
    match format {
        WeightFormat::Int8 => "unet_dynamo_op18_int8",
        WeightFormat::F16 => "unet_dynamo_op18_f16",
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fifo-quantize-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(model: &Path) -> Vec<(String, Tensor)> {
    let f = load_fixture(&source_dir());
    let session = Session::build(ModelSource::Path(model), &f.input_shapes(), &SessionOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", model.display()));
    session.run(f.input_map()).unwrap()
}

/// op type, inputs, outputs, integer attributes.
type NodeSummary = (String, Vec<String>, Vec<String>, Vec<i64>);

/// Same initializers, bit for bit, and the same DequantizeLinear / Cast nodes as the reference.
fn check_same_as_reference(format: WeightFormat) {
    let ours = quantized(format);
    let path = fixtures_root().join("quantize").join(fixture_name(format)).join("model.onnx");
    let reference = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let (g, r) = (ours.graph.unwrap(), reference.graph.unwrap());
    let inits = |g: &fifo_diffusion::onnx::proto::GraphProto| -> HashMap<String, (Vec<i64>, i32, Vec<u8>)> {
        g.initializer
            .iter()
            .map(|t| {
                (
                    t.name().to_string(),
                    (t.dims.clone(), t.data_type(), t.raw_data.clone().unwrap_or_default()),
                )
            })
            .collect()
    };
    let (gi, ri) = (inits(&g), inits(&r));
    assert_eq!(gi.len(), ri.len());
    for (name, want) in &ri {
        assert_eq!(gi.get(name), Some(want), "initializer {name}");
    }
    let nodes = |g: &fifo_diffusion::onnx::proto::GraphProto| -> Vec<NodeSummary> {
        g.node
            .iter()
            .map(|n| {
                (
                    n.op_type().to_string(),
                    n.input.clone(),
                    n.output.clone(),
                    n.attribute.iter().filter_map(|a| a.i).collect(),
                )
            })
            .collect()
    };
    assert_eq!(nodes(&g), nodes(&r));
}

#[test]
fn int8_weights_match_the_numpy_reference_bit_for_bit() {
    check_same_as_reference(WeightFormat::Int8);
}

#[test]
fn f16_weights_match_the_numpy_reference_bit_for_bit() {
    check_same_as_reference(WeightFormat::F16);
}

/// Our CPU backend on our quantized model vs onnxruntime on the reference quantized model, and
/// vs the f32 model's output within the budget.
fn check_outputs(format: WeightFormat, budget: f64, external: bool) {
    let dir = temp_dir(&format!("{format:?}-{external}"));
    let path = dir.join("model.onnx");
    let files = save_model(quantized(format), &path, external).unwrap();
    assert_eq!(files.len(), if external { 2 } else { 1 });
    let got = run(&path);
    let ort = load_fixture(&fixtures_root().join("quantize").join(fixture_name(format)));
    let f32_reference = load_fixture(&source_dir());
    for (((name, got), (_, want)), (_, f32_want)) in got.iter().zip(&ort.outputs).zip(&f32_reference.outputs)
    {
        if let Some(diff) = compare(got, want, Tolerance::named("model").unwrap()) {
            panic!("{format:?} output '{name}' vs onnxruntime: {diff}");
        }
        let rel = relative_l2(got, f32_want);
        assert!(rel <= budget, "{format:?} output '{name}': relative L2 {rel:.2e} vs the f32 model");
        println!("{format:?}: relative L2 vs f32 {rel:.2e} (budget {budget:.0e})");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
#[cfg_attr(target_arch = "wasm32", ignore = "no writable temp dir under the WASI test runner")]
fn int8_model_runs_on_our_cpu_backend_like_onnxruntime() {
    check_outputs(WeightFormat::Int8, INT8_BUDGET, false);
}

#[test]
#[cfg_attr(target_arch = "wasm32", ignore = "no writable temp dir under the WASI test runner")]
fn f16_model_runs_on_our_cpu_backend_like_onnxruntime() {
    check_outputs(WeightFormat::F16, F16_BUDGET, false);
}

#[test]
#[cfg_attr(target_arch = "wasm32", ignore = "no writable temp dir under the WASI test runner")]
fn int8_model_with_external_data_round_trips_through_the_loader() {
    check_outputs(WeightFormat::Int8, INT8_BUDGET, true);
}

#[test]
fn old_opsets_are_refused_for_int8_with_a_way_out() {
    let mut model =
        ModelProto::decode(std::fs::read(source_dir().join("model.onnx")).unwrap().as_slice()).unwrap();
    model.opset_import = vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(11) }];
    let err = quantize_weights(&mut model, Some(&source_dir()), WeightFormat::Int8).unwrap_err();
    assert!(matches!(err, QuantizeError::Opset(11)));
    assert!(err.to_string().contains("--weights f16"), "{err}");
    // External data needs the model's folder.
    let mut model =
        ModelProto::decode(std::fs::read(source_dir().join("model.onnx")).unwrap().as_slice()).unwrap();
    let err = quantize_weights(&mut model, None, WeightFormat::Int8).unwrap_err();
    assert!(err.to_string().contains("file path"), "{err}");
}
