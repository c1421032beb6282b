//! Every per-op fixture (tools/onnx_fixtures/make_op_fixtures.py) on the CPU backend and on the
//! GPU backend against onnxruntime's outputs, with the tolerance each fixture names (the GPU's
//! named tolerances are in `Tolerance::named_gpu`).

mod onnx_common;

use fifo_diffusion::gpu::GpuContext;
use fifo_diffusion::onnx::model_metadata;
use fifo_diffusion::ops::supported_op_types;
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use onnx_common::{compare, fixtures_root, gpu_context, load_fixture, Tolerance};
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

/// Runs one fixture on the CPU backend, or on the GPU one with `gpu`; `Err` says what went wrong.
fn check(dir: &std::path::Path, gpu: Option<&Arc<GpuContext>>) -> Result<(), String> {
    let f = load_fixture(dir);
    let bytes = std::fs::read(&f.model).map_err(|e| e.to_string())?;
    let meta = model_metadata(&bytes).map_err(|e| e.to_string())?;
    let tol_name = meta.get("tolerance").ok_or("no tolerance in the model metadata")?;
    let named = if gpu.is_some() { Tolerance::named_gpu } else { Tolerance::named };
    let tol = named(tol_name).ok_or_else(|| format!("unknown tolerance '{tol_name}'"))?;
    let model = ModelSource::Bytes(&bytes);
    let outputs = match gpu {
        None => Session::build(model, &f.input_shapes(), &SessionOptions::default())
            .and_then(|s| s.run(f.input_map()))
            .map_err(|e| e.to_string())?,
        Some(ctx) => pollster::block_on(async {
            let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
            let s = Session::build_on(ctx.clone(), model, &f.input_shapes(), &options).await?;
            s.run_async(f.input_map()).await
        })
        .map_err(|e| e.to_string())?,
    };
    if outputs.len() != f.outputs.len() {
        return Err(format!("{} outputs, want {}", outputs.len(), f.outputs.len()));
    }
    for ((name, got), (_, want)) in outputs.iter().zip(&f.outputs) {
        if let Some(diff) = compare(got, want, tol) {
            return Err(format!("output '{name}': {diff}"));
        }
    }
    Ok(())
}

/// Fixtures of integer arithmetic, integer casts and quantizing: the GPU backend holds integers
/// only for data movement and refuses these at build, naming the node (checked below).
const GPU_REFUSES: &[&str] = &[
    "add_int64",
    "cast_float_to_int8",
    "cast_float_to_uint8",
    "div_int64_truncates",
    "equal_int64",
    "mod_int_python_sign",
    "neg_int64",
    "quantize_per_axis_int8",
    "quantize_per_tensor_int8",
    "quantize_uint8_ties_even",
    "where_int64",
];

fn check_all(gpu: Option<&Arc<GpuContext>>) {
    let dirs = fixture_dirs();
    assert!(dirs.len() > 150, "expected the full fixture set, found {}", dirs.len());
    let failures: Vec<String> = dirs
        .iter()
        .filter_map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().to_string();
            let result = check(d, gpu);
            if gpu.is_some() && GPU_REFUSES.contains(&name.as_str()) {
                return match result {
                    Ok(()) => Some(format!("{name}: runs on the GPU now; remove it from GPU_REFUSES")),
                    Err(e)
                        if e.contains("cannot run on the GPU backend")
                            && e.contains(&format!("'{name}_node'")) =>
                    {
                        None
                    }
                    Err(e) => Some(format!("{name}: expected a clear refusal, got: {e}")),
                };
            }
            result.err().map(|e| format!("{name}: {e}"))
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
