//! Every per-op fixture (tools/onnx_fixtures/make_op_fixtures.py) on the CPU backend and on the
//! GPU backend against onnxruntime's outputs, with the tolerance each fixture names (the GPU's
//! named tolerances are in `Tolerance::named_gpu`).

mod onnx_common;

use fifo_diffusion::gpu::GpuContext;
use fifo_diffusion::ops::supported_op_types;
use onnx_common::{fixtures_root, gpu_context, load_fixture, run_fixture, verdict};
use std::collections::BTreeSet;
use std::sync::Arc;

fn fixture_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures_root().join("ops"))
        .expect("tests/fixtures/ops is missing: run tools/onnx_fixtures/make_op_fixtures.py")
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

/// Runs one fixture folder; `Err` says what went wrong.
fn check(dir: &std::path::Path, gpu: Option<&Arc<GpuContext>>) -> Result<(), String> {
    let f = load_fixture(dir);
    let bytes = std::fs::read(&f.model).map_err(|e| e.to_string())?;
    pollster::block_on(run_fixture(&bytes, &f.inputs, &f.outputs, gpu))
}

fn check_all(gpu: Option<&Arc<GpuContext>>) {
    let dirs = fixture_dirs();
    assert!(dirs.len() > 150, "expected the full fixture set, found {}", dirs.len());
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().to_string();
            verdict(&name, check(d, gpu), gpu.is_some())
        })
        .collect();
    let backend = if gpu.is_some() { "gpu" } else { "cpu" };
    assert!(
        failures.is_empty(),
        "{backend}: {} of {} fixtures failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}

#[test]
fn every_op_fixture_matches_onnxruntime() {
    check_all(None);
}

/// The same fixtures lowered onto the GPU kernels (lavapipe in CI): a wrongly lowered op fails
/// here with the fixture's name.
#[test]
fn every_op_fixture_matches_onnxruntime_on_gpu() {
    if let Some(ctx) = gpu_context() {
        check_all(Some(&ctx));
    }
}

/// A supported op without a fixture is untested: keep the generator in step with the registry.
#[test]
fn every_supported_op_has_a_fixture() {
    let mut covered = BTreeSet::new();
    for dir in fixture_dirs() {
        let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
        let graph = fifo_diffusion::onnx::load_model(&bytes, None).unwrap();
        covered.extend(graph.nodes.iter().map(|n| n.op_type.clone()));
    }
    let missing: Vec<&str> = supported_op_types().into_iter().filter(|op| !covered.contains(*op)).collect();
    assert!(missing.is_empty(), "supported ops without a fixture: {missing:?}");
}
