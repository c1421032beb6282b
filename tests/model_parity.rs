//! Whole models exported by both torch exporters (tools/onnx_fixtures/make_model_fixtures.py)
//! on the CPU backend against onnxruntime.

mod onnx_common;

use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::{compare, fixtures_root, load_fixture, Tolerance};

fn relative_l2(got: &Tensor, want: &Tensor) -> f64 {
    let (g, w) = (got.to_f32_vec(), want.to_f32_vec());
    let err: f64 = g.iter().zip(&w).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let norm: f64 = w.iter().map(|b| (*b as f64).powi(2)).sum();
    (err / norm).sqrt()
}

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
