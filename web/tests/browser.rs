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
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::{run_fixture, verdict};
use std::collections::{BTreeMap, HashMap};
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

/// The shipped model's three graphs on WebGPU against the wasm CPU backend: what the page runs.
/// Timesteps reach 999, so the sinusoidal embeddings take sin/cos of large arguments.
#[wasm_bindgen_test]
async fn the_shipped_graphs_agree_on_webgpu_and_the_wasm_cpu_backend() {
    /// Relative L2 distance allowed between the backends (natively on lavapipe: 5e-7).
    const MODEL_REL_L2: f64 = 1e-4;
    macro_rules! package_file {
        ($name:literal) => {
            ($name.to_string(), include_bytes!(concat!("../../models/shapes-t2v-tiny/", $name)).to_vec())
        };
    }
    let files = BTreeMap::from([
        package_file!("text_encoder.onnx"),
        package_file!("text_encoder.onnx.data"),
        package_file!("unet.onnx"),
        package_file!("unet.onnx.data"),
        package_file!("decoder.onnx"),
        package_file!("decoder.onnx.data"),
    ]);
    let ctx = Arc::new(GpuContext::new(&GpuOptions::default()).await.expect("a WebGPU adapter"));
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let (f, tokens, dim) = (8, 12, 128);
    let ids: Vec<i64> = (0..tokens as i64).map(|i| (i * 7 + 3) % 28).collect();
    let cases: Vec<(&str, Vec<(&str, Tensor)>)> = vec![
        ("text_encoder.onnx", vec![("ids", Tensor::from_i64(vec![1, tokens], ids).unwrap())]),
        (
            "unet.onnx",
            vec![
                ("latents", Tensor::from_f32(vec![1, f, 4, 16, 16], noise(f * 4 * 256, 1.5)).unwrap()),
                (
                    "timesteps",
                    Tensor::from_f32(vec![1, f], vec![999.0, 870.0, 640.0, 501.0, 333.0, 120.0, 21.0, 0.0])
                        .unwrap(),
                ),
                ("context", Tensor::from_f32(vec![1, f, tokens, dim], noise(f * tokens * dim, 1.0)).unwrap()),
            ],
        ),
        (
            "decoder.onnx",
            vec![("latents", Tensor::from_f32(vec![1, 4, 16, 16], noise(4 * 256, 1.5)).unwrap())],
        ),
    ];
    for (file, inputs) in cases {
        let model = ModelSource::Memory { model: &files[file], files: &files };
        let shapes: HashMap<String, Vec<usize>> =
            inputs.iter().map(|(n, t)| (n.to_string(), t.shape().to_vec())).collect();
        let feed = || inputs.iter().map(|(n, t)| (n.to_string(), t.clone())).collect::<HashMap<_, _>>();
        let cpu = Session::build(model, &shapes, &SessionOptions::default()).unwrap().run(feed()).unwrap();
        let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
        let gpu = Session::build_on(ctx.clone(), model, &shapes, &options).await.unwrap();
        let gpu = gpu.run_async(feed()).await.unwrap();
        let (want, got) = (cpu[0].1.to_f32_vec(), gpu[0].1.to_f32_vec());
        let num: f64 = want.iter().zip(&got).map(|(a, b)| f64::from(a - b).powi(2)).sum();
        let den: f64 = want.iter().map(|a| f64::from(*a).powi(2)).sum();
        let rel = (num / den.max(1e-30)).sqrt();
        web_sys_log(&format!("{file}: WebGPU vs wasm CPU relative L2 {rel:.2e}"));
        assert!(
            rel < MODEL_REL_L2,
            "{file}: WebGPU vs wasm CPU relative L2 {rel:.2e} (allowed {MODEL_REL_L2:e})"
        );
    }
}

fn web_sys_log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}
