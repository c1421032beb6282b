//! The scheduler and the executor inside the browser (headless Chromium, `tools/test.sh`): the
//! official loop's numbers, and every op fixture against onnxruntime on the wasm CPU backend and
//! on WebGPU, with the same named tolerances as natively.
#![cfg(target_arch = "wasm32")]

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/onnx_common/mod.rs"]
mod onnx_common;

use fifo_diffusion::gpu::{GpuContext, GpuOptions};
use fifo_diffusion::onnx::decode_tensor;
use fifo_diffusion::tensor::Tensor;
use onnx_common::{run_fixture, verdict};
use std::sync::Arc;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// One op fixture of `tests/fixtures/ops`, embedded by `build.rs`.
pub struct OpFixture {
    name: &'static str,
    model: &'static [u8],
    inputs: &'static [&'static [u8]],
    outputs: &'static [&'static [u8]],
}

include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));

fn decode_all(files: &[&[u8]]) -> Vec<(String, Tensor)> {
    files.iter().map(|b| decode_tensor(b).expect("a fixture tensor")).collect()
}

async fn check_all(gpu: Option<&Arc<GpuContext>>) {
    assert!(OP_FIXTURES.len() > 150, "expected the full fixture set, found {}", OP_FIXTURES.len());
    let mut failures = Vec::new();
    for f in OP_FIXTURES {
        let result = run_fixture(f.model, &decode_all(f.inputs), &decode_all(f.outputs), gpu).await;
        failures.extend(verdict(f.name, result, gpu.is_some()));
    }
    let backend = if gpu.is_some() { "WebGPU" } else { "wasm CPU" };
    assert!(
        failures.is_empty(),
        "{backend}: {} of {} fixtures failed:\n{}",
        failures.len(),
        OP_FIXTURES.len(),
        failures.join("\n")
    );
}

#[wasm_bindgen_test]
async fn scheduler_matches_the_official_loop_in_the_browser() {
    assert!(PARITY_CASES.len() >= 10, "parity fixtures missing");
    for json in PARITY_CASES {
        let case: common::parity::Case = serde_json::from_str(json).expect("a parity fixture");
        common::parity::check_case(&case).await;
    }
}

#[wasm_bindgen_test]
async fn every_op_fixture_matches_onnxruntime_on_the_wasm_cpu_backend() {
    check_all(None).await;
}

/// Chromium's WebGPU (SwiftShader in CI, `--enable-unsafe-webgpu`): our WGSL through the
/// browser's own compiler (Tint), not naga.
#[wasm_bindgen_test]
async fn every_op_fixture_matches_onnxruntime_on_webgpu() {
    let ctx = GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter in the test browser");
    check_all(Some(&Arc::new(ctx))).await;
}
