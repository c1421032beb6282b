//! Every per-op fixture (tools/onnx_fixtures/make_op_fixtures.py) on the CPU backend and on the
//! GPU backend against onnxruntime's outputs, with the tolerance each fixture names (the GPU's
//! named tolerances are in `Tolerance::named_gpu`), and on the GPU backend in its f16 compute
//! mode (`Precision::F16`) with the f16 tolerances (`Tolerance::f16_name`).

mod onnx_common;

use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions};
use fifo_diffusion::ops::supported_op_types;
use onnx_common::{
    beyond_f16_range, fixtures_root, gpu_context, load_fixture, open_gpu_context, run_fixture,
    run_fixture_f16, verdict,
};
use std::collections::{BTreeMap, BTreeSet};
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

/// The same on the GL adapter where there is one beside the one above (llvmpipe in CI, beside
/// lavapipe): wgpu translates the kernels to GLSL there, whose integer rules differ from WGSL's
/// (`%` of a negative operand is undefined: the "wrap" pads came out wrong).
#[test]
fn every_op_fixture_matches_onnxruntime_on_the_gl_adapter() {
    let Some(first) = gpu_context() else { return };
    let adapters = pollster::block_on(GpuContext::adapters());
    let Some(gl) = adapters.iter().find(|a| a.backend == "Gl") else {
        eprintln!("no GL adapter: the GL run of the fixtures skipped");
        return;
    };
    if first.info().backend == wgpu::Backend::Gl {
        return; // the test above ran on it
    }
    let options = GpuOptions { adapter: AdapterChoice::Index(gl.index), ..Default::default() };
    if let Some(ctx) = open_gpu_context(&options) {
        check_all(Some(&ctx));
    }
}

/// Per op type: the largest error over the output's scale, the largest relative L2, and how many
/// float outputs.
type F16Families = BTreeMap<String, (f64, f64, usize)>;

/// Runs every fixture in f16 mode on `ctx`; returns the failures and the errors per op type.
fn check_all_f16(ctx: &Arc<GpuContext>) -> (Vec<String>, F16Families) {
    let dirs = fixture_dirs();
    assert!(dirs.len() > 150, "expected the full fixture set, found {}", dirs.len());
    let (mut failures, mut families, mut skipped) = (Vec::new(), BTreeMap::new(), Vec::new());
    for dir in &dirs {
        let f = load_fixture(dir);
        if beyond_f16_range(&f.inputs) || beyond_f16_range(&f.outputs) {
            skipped.push(f.name.clone());
            continue;
        }
        let bytes = std::fs::read(&f.model).unwrap();
        let op = fifo_diffusion::onnx::load_model(&bytes, None).unwrap().nodes[0].op_type.clone();
        let result = pollster::block_on(run_fixture_f16(&bytes, &f.inputs, &f.outputs, ctx));
        let errors = result.as_ref().map_or(Vec::new(), |e| e.clone());
        failures.extend(verdict(&f.name, result.map(|_| ()), true));
        for e in errors {
            let entry: &mut (f64, f64, usize) = families.entry(op.clone()).or_default();
            *entry = (entry.0.max(e.of_scale), entry.1.max(e.rel_l2), entry.2 + 1);
        }
    }
    if !skipped.is_empty() {
        eprintln!("f16: not run (values beyond f16's range): {skipped:?}");
    }
    (failures, families)
}

/// The fixtures in the GPU's f16 compute mode: float activations in f16 buffers, the outputs
/// against onnxruntime's f32 ones with the f16 tolerances (`Tolerance::named("f16")`,
/// `"f16_accumulate"`), integer and boolean outputs exact, the integer-only fixtures refused as in
/// f32. On lavapipe's own kernel style (register-blocked, subgroup reductions) and on the one
/// GPUs get (workgroup-tiled matmul, portable reductions), so both sets of f16 variants run.
#[test]
fn every_op_fixture_matches_onnxruntime_in_f16_on_gpu() {
    use fifo_diffusion::gpu::{AdapterChoice, GpuOptions, KernelStyle};
    let Some(ctx) = gpu_context() else { return };
    if !ctx.has_shader_f16() {
        eprintln!("\n!!!!!!!! SKIPPING f16 fixtures: {} has no shader-f16 !!!!!!!!\n", ctx.describe());
        return;
    }
    let options = GpuOptions {
        adapter: AdapterChoice::Fallback,
        style: Some(KernelStyle::Tiled),
        disable_subgroups: true,
        ..Default::default()
    };
    let tiled = onnx_common::open_gpu_context(&options).expect("a second device on the adapter");
    let mut failures = Vec::new();
    for (style, ctx) in [("register-blocked", &ctx), ("tiled, no subgroups", &tiled)] {
        let (failed, families) = check_all_f16(ctx);
        eprintln!(
            "f16 mode, {style} kernels: largest error per op type (of the output's scale, relative L2)"
        );
        for (op, (of_scale, rel_l2, outputs)) in &families {
            eprintln!("  {op:<22} {of_scale:.2e} {rel_l2:.2e}  ({outputs} outputs)");
        }
        failures.extend(failed.into_iter().map(|f| format!("{style}: {f}")));
    }
    assert!(failures.is_empty(), "f16: {} fixtures failed:\n{}", failures.len(), failures.join("\n"));
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
