//! `fifo generate --model DIR` on the packages the family exporters wrote (tests/fixtures/packages,
//! reduced configs with random weights) against the reference FIFO loop on the same graphs
//! (tools/reference/package_fifo.py: float64 loop, onnxruntime graphs, the same Philox noise),
//! whose frames and settings are in each package's `reference/` folder.

mod common;

use assert_cmd::Command;
use common::{fresh_temp_dir, png_files, read_png};
use std::path::{Path, PathBuf};

/// Frames are compared in 8-bit levels: the loop runs in f32 here and in float64 there, and the
/// graphs sum in different orders, so a level can flip at a rounding boundary.
const MAX_LEVEL_DIFF: u8 = 3;
const MEAN_LEVEL_DIFF: f64 = 0.25;

fn packages() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/packages");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    dirs
}

/// Runs the reference settings, stopping after `frames` frames when given (a FIFO run's first
/// frames do not depend on how many follow).
fn generate(package: &Path, backend: &str, out: &Path, frames: Option<usize>) -> Result<(), String> {
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(package.join("reference/run.json")).unwrap()).unwrap();
    let arg = |k: &str| settings[k].to_string();
    let mut cmd = Command::cargo_bin("fifo").unwrap();
    cmd.args(["generate", "--quiet", "--model"]).arg(package).arg(settings["prompt"].as_str().unwrap());
    let frames = frames.map_or(arg("frames"), |n| n.to_string());
    cmd.args(["--frames", &frames, "--partitions", &arg("partitions"), "--seed", &arg("seed")]);
    cmd.args(["--guidance", &arg("guidance"), "--eta", &arg("eta")]);
    cmd.args(["--init", settings["init"].as_str().unwrap(), "--backend", backend]);
    if settings["lookahead"] == false {
        cmd.arg("--no-lookahead");
    }
    let run = cmd.arg("--out").arg(format!("{}/", out.display())).output().unwrap();
    if run.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&run.stderr).into_owned())
    }
}

/// Compares the `count` frames in `out` (all of the reference's when `None`) with the reference's.
fn compare(package: &Path, out: &Path, what: &str, count: Option<usize>) {
    let got = png_files(out);
    let want = png_files(&package.join("reference"));
    assert_eq!(got.len(), count.unwrap_or(want.len()), "{what}: frame count");
    let (mut worst, mut sum, mut count) = (0u8, 0u64, 0usize);
    for (g, w) in got.iter().zip(&want) {
        let (gw, gh, g) = read_png(g);
        let (ww, wh, w) = read_png(w);
        assert_eq!((gw, gh), (ww, wh), "{what}: frame size");
        for (a, b) in g.iter().zip(&w) {
            let d = a.abs_diff(*b);
            worst = worst.max(d);
            sum += d as u64;
            count += 1;
        }
    }
    let mean = sum as f64 / count as f64;
    eprintln!("{what}: max {worst} levels, mean {mean:.4}");
    assert!(
        worst <= MAX_LEVEL_DIFF && mean <= MEAN_LEVEL_DIFF,
        "{what}: frames differ from the reference loop's by up to {worst} levels (mean {mean:.3})"
    );
}

fn temp_dir(tag: &str) -> PathBuf {
    fresh_temp_dir(&format!("exported-{tag}"))
}

#[test]
fn exported_packages_generate_the_reference_loops_frames_on_cpu() {
    for package in packages() {
        let name = package.file_name().unwrap().to_string_lossy().into_owned();
        let out = temp_dir(&format!("{name}-cpu"));
        generate(&package, "cpu", &out, None).unwrap_or_else(|e| panic!("{name}: fifo generate failed: {e}"));
        compare(&package, &out, &format!("{name} cpu"), None);
        std::fs::remove_dir_all(out).ok();
    }
}

#[test]
fn exported_packages_generate_the_reference_loops_frames_on_gpu() {
    for package in packages() {
        let name = package.file_name().unwrap().to_string_lossy().into_owned();
        let out = temp_dir(&format!("{name}-gpu"));
        // Two frames: lavapipe runs the UNet ~25x slower than the CPU backend.
        if let Err(e) = generate(&package, "gpu", &out, Some(2)) {
            let no_adapter = e.contains("adapter");
            assert!(
                no_adapter && std::env::var("FIFO_REQUIRE_GPU").is_err(),
                "{name}: fifo generate failed: {e}"
            );
            eprintln!("\n!!!!!!!! SKIPPING: no GPU adapter ({e}) !!!!!!!!\n");
            return;
        }
        compare(&package, &out, &format!("{name} gpu"), Some(2));
        std::fs::remove_dir_all(out).ok();
    }
}
