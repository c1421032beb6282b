//! `fifo generate --init-image` / `--init-video` through the real binary on the CPU backend with
//! the shipped model: the start clip goes through the model's encoder onto the diagonal. With
//! n = 1 and no lookahead the first frame leaves the queue after one step at the cleanest noise
//! level, so it is the start clip's first frame through the encoder and decoder.

mod common;

use assert_cmd::Command;
use common::{fresh_temp_dir, mean_diff, png_pixels};
use std::path::{Path, PathBuf};

const PROMPT: &str = "a red circle moving right on a black background";
const OTHER: &str = "a blue square moving left on a white background";
const FAST: [&str; 5] = ["--partitions", "1", "--no-lookahead", "--quiet", "--backend=cpu"];
/// Mean absolute difference (levels, 0..255) allowed between a start frame and the frame the
/// model makes of it: one encoder-decoder round trip of the shipped autoencoder plus one
/// denoising step at the lowest noise level (measured: 0.26).
const ROUND_TRIP_MEAN: f64 = 2.0;

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    fresh_temp_dir(&format!("init-{name}"))
}

fn fifo(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::cargo_bin("fifo").unwrap();
    cmd.env_remove("FIFO_MODEL_DIR").arg("generate").args(args).output().unwrap()
}

fn generate(args: &[&str]) {
    let mut all = vec!["--model", "../models/shapes-t2v-tiny"];
    all.extend(FAST);
    all.extend(args);
    let out = Command::cargo_bin("fifo")
        .unwrap()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("FIFO_MODEL_DIR")
        .arg("generate")
        .args(&all)
        .output()
        .unwrap();
    assert!(out.status.success(), "fifo generate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn frame(dir: &Path, id: u64) -> Vec<u8> {
    png_pixels(&dir.join(format!("frame_{id:06}.png")))
}

#[test]
fn an_init_image_starts_the_video_and_an_init_video_is_continued() {
    let dir = temp_dir("start");
    let source = dir.join("source");
    generate(&[PROMPT, "--frames", "12", "--seed", "3", "--out", &format!("{}/", source.display())]);

    // The image starts the video, whatever the prompt then asks for.
    let image = source.join("frame_000005.png");
    let from_image = dir.join("from-image");
    generate(&[
        OTHER,
        "--frames",
        "2",
        "--init-image",
        image.to_str().unwrap(),
        "--out",
        &format!("{}/", from_image.display()),
    ]);
    let start = frame(&from_image, 0);
    let d_image = mean_diff(&start, &png_pixels(&image));
    let d_other = mean_diff(&start, &frame(&source, 11));
    assert!(d_image < ROUND_TRIP_MEAN, "frame 0 is {d_image:.2} levels from the init image");
    assert!(
        d_image < d_other / 2.0,
        "frame 0 is as close to another frame ({d_other:.2}) as to the image ({d_image:.2})"
    );

    // A video is continued from its last f = 8 frames: frame 0 re-renders source frame 4.
    let from_video = dir.join("from-video");
    generate(&[
        PROMPT,
        "--frames",
        "10",
        "--init-video",
        source.to_str().unwrap(),
        "--out",
        &format!("{}/", from_video.display()),
    ]);
    let d_video = mean_diff(&frame(&from_video, 0), &frame(&source, 4));
    assert!(d_video < ROUND_TRIP_MEAN, "frame 0 is {d_video:.2} levels from source frame 4");
    assert!(from_video.join("frame_000009.png").is_file());

    // The sidecar names the start video, and `--from` reproduces the run from it.
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("from-video.json")).unwrap()).unwrap();
    assert!(sidecar["init_video"].as_str().unwrap().ends_with("source"), "{sidecar}");
    let again = dir.join("again");
    let from = dir.join("from-video.json");
    generate(&["--from", from.to_str().unwrap(), "--frames", "3", "--out", &format!("{}/", again.display())]);
    for id in 0..3 {
        assert!(frame(&again, id) == frame(&from_video, id), "--from frame {id} differs");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_start_files_fail_clearly() {
    let dir = temp_dir("bad");
    let out = dir.join("out.y4m");
    let out = out.to_str().unwrap();
    let shipped = model_dir("models/shapes-t2v-tiny");
    let shipped = shipped.to_str().unwrap();
    let micro = model_dir("tests/fixtures/loop/micro-t2v");
    let micro = micro.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--model", shipped, "--init-image", "/nonexistent.png"],
            "cannot read --init-image /nonexistent.png",
        ),
        (&["--model", shipped, "--init-video", "clip.mp4"], "ffmpeg -i IN.mp4 OUT.y4m"),
        (&["--model", shipped, "--init-image", "x.png", "--init", "noise"], "cannot be used with"),
        (&["--model", micro, "--init-image", "x.png"], "has no image encoder"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["a red circle", "--quiet", "--out", out];
        all.extend(args);
        let o = fifo(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(expected), "{args:?}: expected `{expected}` in:\n{err}");
        assert!(!Path::new(out).exists(), "{args:?} wrote output");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
