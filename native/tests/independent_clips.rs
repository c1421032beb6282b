//! `fifo generate --independent-clips` (the naive long-video baseline) through the real binary on
//! the CPU backend with the shipped model: consecutive f-frame clips, each the ordinary DDIM clip
//! sampler's output from fresh noise, checked against that sampler called through the library.
//! Runs use n = 1 (S = f = 8 steps per clip) to stay fast on the 2-core CI machine.

mod common;

use assert_cmd::Command;
use common::{fresh_temp_dir, mean_diff, png_files, png_pixels, shipped_model_dir};
use fifo_diffusion::fifo::{sample_clip_at, FifoConfig, PromptSchedule};
use fifo_diffusion::model::{ModelPackage, Weights};
use fifo_diffusion::pipeline::{Generation, Models, RunOptions, UnetDenoiser};
use fifo_diffusion::session::{Backend, SessionOptions};
use std::path::Path;

const PROMPT: &str = "a red circle moving right on a black background";
const FAST: [&str; 4] = ["--independent-clips", "--partitions", "1", "--quiet"];

fn fifo() -> Command {
    let mut cmd = Command::cargo_bin("fifo").unwrap();
    cmd.env_remove("FIFO_MODEL_DIR");
    cmd
}

fn generate(args: &[&str]) {
    let out = fifo()
        .arg("generate")
        .arg("--model")
        .arg(shipped_model_dir())
        .args(["--backend=cpu"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "fifo generate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The PNG frames of an output folder, in order.
fn frames(dir: &Path) -> Vec<Vec<u8>> {
    png_files(dir).iter().map(|f| png_pixels(f)).collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The ordinary clip sampler (the one a FIFO clip start uses), called through the library: the
/// decoded RGB frames of the clip whose frame 0 is output frame `first`.
fn library_clip(config: &FifoConfig, first: i64) -> Vec<Vec<u8>> {
    let package = ModelPackage::load(&shipped_model_dir()).unwrap();
    let prompts = PromptSchedule::single(PROMPT).unwrap();
    let options = RunOptions { backend: Backend::Cpu, ..Default::default() };
    let models = pollster::block_on(Models::load(package.clone(), options)).unwrap();
    let contexts = pollster::block_on(models.encode_prompts(&prompts)).unwrap();
    let source = package.graph(package.unet_file(Weights::F32).unwrap());
    let session = SessionOptions { backend: Backend::Cpu, ..Default::default() };
    let mut unet = UnetDenoiser::new(&package, source, session, None);
    let clip =
        pollster::block_on(sample_clip_at(config, &prompts, first, &mut unet.with(&contexts))).unwrap();
    clip.chunks_exact(config.frame_len())
        .enumerate()
        .map(|(j, latent)| pollster::block_on(models.decode(j as u64, latent)).unwrap().rgb)
        .collect()
}

#[test]
fn each_clip_is_an_ordinary_clip_sample_of_its_own_noise_and_from_repeats_the_run() {
    let dir = fresh_temp_dir("clips-clips");
    let out = format!("{}/", dir.join("video").display());
    let stats = dir.join("stats.json");
    // Two clips of f = 8, the second cut short: 15 frames.
    let stats_arg = stats.to_str().unwrap();
    generate(
        &[&FAST[..], &[PROMPT, "--frames", "15", "--seed", "5", "--out", &out, "--stats", stats_arg]]
            .concat(),
    );
    let video = frames(&dir.join("video"));
    assert_eq!(video.len(), 15);

    let package = ModelPackage::load(&shipped_model_dir()).unwrap();
    let config = FifoConfig { partitions: 1, seed: 5, ..Generation::config(&package) };
    let f = config.window;
    assert_eq!(f, 8);
    // Clip 0 is the sampler's clip at output frame 0, clip 1 the one at frame f, bit for bit.
    let first = library_clip(&config, 0);
    assert!(video[..f] == first[..], "clip 0 is not the ordinary clip sample of seed 5");
    let second = library_clip(&config, f as i64);
    assert!(video[f..] == second[..f - 1], "clip 1 is not the ordinary clip sample at frame {f}");
    // Independent noise: the second clip is not the first again (measured: tens of levels).
    for j in 0..f - 1 {
        let d = mean_diff(&video[j], &video[f + j]);
        assert!(d > 1.0, "frame {} repeats frame {j} (mean difference {d:.3})", f + j);
    }

    let s = json(&stats);
    assert_eq!(s["frames"], 15);
    assert_eq!(s["mode"], "independent-clips");
    assert_eq!(s["clips"], 2);
    // S = f steps per clip, one UNet call each (both guidance passes batched).
    assert_eq!(s["model_calls"], 2 * f as u64);
    let side_path = dir.join("video.json");
    let side = json(&side_path);
    assert_eq!(side["mode"], "independent-clips");
    assert_eq!(side["settings"]["seed"], 5);
    assert_eq!(side["settings"]["partitions"], 1);

    // --from repeats the mode and the settings.
    let again = format!("{}/", dir.join("again").display());
    generate(&["--from", side_path.to_str().unwrap(), "--frames", "3", "--quiet", "--out", &again]);
    assert!(frames(&dir.join("again"))[..] == video[..3], "--from did not repeat the run");
    assert_eq!(json(&dir.join("again.json"))["mode"], "independent-clips");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_shipped_model_follows_the_prompt_in_independent_clips() {
    let dir = fresh_temp_dir("clips-eval");
    let video = dir.join("v.y4m");
    let v = video.to_str().unwrap();
    generate(&[PROMPT, "--frames", "16", "--out", v, "--independent-clips", "--quiet"]);
    let out = fifo().args(["eval", v, "--prompt", PROMPT, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let scores = &report["overall"];
    assert_eq!(report["frames"], 16, "{report}");
    for key in ["colour", "shape"] {
        let score = scores[key].as_f64().unwrap_or_else(|| panic!("no {key} score in {report}"));
        assert!(score >= 0.9, "{key} {score}: {report}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn fifo_only_flags_are_refused_with_independent_clips() {
    for flag in
        [&["--no-lookahead"][..], &["--init", "noise"], &["--checkpoint-every", "4"], &["--resume", "x"]]
    {
        let out = fifo()
            .args(["generate", PROMPT, "--independent-clips", "--backend=cpu"])
            .args(flag)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot be used with"), "{flag:?}: {err}");
    }
}
