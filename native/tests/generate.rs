//! `fifo generate` through the real binary on the CPU backend, with the shipped model package
//! (or the one FIFO_MODEL_DIR names). Runs use n = 1 without lookahead (one window, one UNet call
//! of batch 2 per frame) to stay fast on the 2-core CI machine.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn model_dir() -> PathBuf {
    std::env::var_os("FIFO_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shapes-t2v-tiny"))
}

const PROMPT: &str = "a red circle moving right on a black background";
/// The fast setting every run of this suite uses.
const FAST: [&str; 5] = ["--partitions", "1", "--no-lookahead", "--quiet", "--backend=cpu"];

fn temp_dir(name: &str) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("fifo-generate-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fifo() -> Command {
    let mut cmd = Command::cargo_bin("fifo").unwrap();
    cmd.env_remove("FIFO_MODEL_DIR").arg("generate").arg("--model").arg(model_dir());
    cmd
}

fn generate(args: &[&str]) -> std::process::Output {
    let out = fifo().args(FAST).args(args).output().unwrap();
    assert!(out.status.success(), "fifo generate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Continues the checkpoint `ckpt` up to frame 12 into `out`.
fn resume_to(ckpt: &Path, out: &Path) {
    let args =
        ["--quiet", "--resume", ckpt.to_str().unwrap(), "--frames", "12", "--out", out.to_str().unwrap()];
    let run = fifo().args(args).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

/// Mean absolute luma difference (0..255) allowed between H.264 and the lossless Y4M frames.
const MP4_LUMA_TOLERANCE: f64 = 8.0;

/// Top-level boxes of an MP4 as (type, body).
fn boxes(bytes: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        assert!(size >= 8 && at + size <= bytes.len(), "a broken box at {at}");
        out.push((bytes[at + 4..at + 8].try_into().unwrap(), &bytes[at + 8..at + size]));
        at += size;
    }
    assert_eq!(at, bytes.len(), "trailing bytes");
    out
}

/// Decodes a fragmented MP4 of one H.264 track with openh264; returns each frame's luma (64x64).
fn decode_mp4(bytes: &[u8]) -> Vec<Vec<u8>> {
    use openh264::formats::YUVSource;
    let top = boxes(bytes);
    let kinds: Vec<&[u8; 4]> = top.iter().map(|(k, _)| k).collect();
    assert_eq!(kinds[..2], [b"ftyp", b"moov"]);
    assert!(top[2..].chunks(2).all(|p| &p[0].0 == b"moof" && &p[1].0 == b"mdat"), "fragments");
    let moov = top[1].1;
    let at = moov.windows(4).position(|w| w == b"avcC").unwrap() + 4;
    let avcc = &moov[at..];
    let sps_len = u16::from_be_bytes([avcc[6], avcc[7]]) as usize;
    let sps = &avcc[8..8 + sps_len];
    let pps_len = u16::from_be_bytes([avcc[9 + sps_len], avcc[10 + sps_len]]) as usize;
    let pps = &avcc[11 + sps_len..11 + sps_len + pps_len];
    let mut stream = Vec::new();
    for nal in [sps, pps] {
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(nal);
    }
    let mut decoder = openh264::decoder::Decoder::new().unwrap();
    let mut frames = Vec::new();
    for (_, mdat) in top[2..].iter().filter(|(k, _)| k == b"mdat") {
        let mut at = 0;
        while at < mdat.len() {
            let len = u32::from_be_bytes(mdat[at..at + 4].try_into().unwrap()) as usize;
            stream.extend_from_slice(&[0, 0, 0, 1]);
            stream.extend_from_slice(&mdat[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        if let Some(image) = decoder.decode(&stream).unwrap() {
            assert_eq!(image.dimensions(), (64, 64));
            let stride = image.strides().0;
            frames.push((0..64).flat_map(|r| image.y()[r * stride..r * stride + 64].to_vec()).collect());
        }
        stream.clear();
    }
    frames
}

/// Frames of a Y4M file (width, height, planes of every frame), checked against its header.
fn read_y4m(bytes: &[u8]) -> (usize, usize, Vec<&[u8]>) {
    let header_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let header = std::str::from_utf8(&bytes[..header_end]).unwrap();
    assert!(header.starts_with("YUV4MPEG2 ") && header.contains(" C444"), "{header}");
    let field = |tag: char| -> usize {
        header.split(' ').find_map(|f| f.strip_prefix(tag)).unwrap().parse().unwrap()
    };
    let (w, h) = (field('W'), field('H'));
    let frame = 6 + 3 * w * h;
    let body = &bytes[header_end + 1..];
    assert_eq!(body.len() % frame, 0, "a partial frame in the Y4M");
    let frames: Vec<&[u8]> = body.chunks(frame).inspect(|f| assert_eq!(&f[..6], b"FRAME\n")).collect();
    (w, h, frames.iter().map(|f| &f[6..]).collect())
}

#[test]
fn short_video_decodes_with_its_frame_count_and_size_and_resumes_bit_for_bit() {
    let dir = temp_dir("video");
    let full = dir.join("full.y4m");
    let stats = dir.join("stats.json");
    let full_path = full.to_str().unwrap();
    generate(&[
        PROMPT,
        "--frames",
        "12",
        "--checkpoint-every",
        "5",
        "--out",
        full_path,
        "--stats",
        stats.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&full).unwrap();
    let (w, h, frames) = read_y4m(&bytes);
    assert_eq!((w, h, frames.len()), (64, 64, 12));
    // Not a blank video: the luma of the first frame varies.
    let luma = &frames[0][..w * h];
    assert!(luma.iter().max().unwrap() - luma.iter().min().unwrap() > 20, "flat first frame");

    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(s["frames"], 12);
    assert_eq!(s["backend"], "cpu");
    // Clip start: 8 steps of the start clip, then one call per frame (n = 1, first frame at once).
    assert_eq!(s["model_calls"], 8 + 12);
    assert!(s["peak_host_rss_bytes"].as_u64().unwrap() > 0);
    for stage in ["text", "unet", "decode", "write", "scheduler"] {
        assert!(s["stages"][stage].as_f64().unwrap() >= 0.0, "{stage}");
    }
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("full.y4m.json")).unwrap()).unwrap();
    assert_eq!(side["settings"]["partitions"], 1);
    assert_eq!(side["prompt_schedule"][0]["prompt"], PROMPT);
    assert_eq!(side["frames"]["end"], 12);
    assert_eq!(side["ran_on"]["backend"], "cpu");
    assert!(side["ran_on"]["devices"][0].as_str().unwrap().starts_with("cpu ("), "{side}");

    // The checkpoint the run left at frame 10, resumed to frame 12 in a new file.
    let ckpt = dir.join("full.y4m.ckpt");
    let rest = dir.join("rest.y4m");
    resume_to(&ckpt, &rest);
    let rest_bytes = std::fs::read(&rest).unwrap();
    let (_, _, resumed) = read_y4m(&rest_bytes);
    assert_eq!(resumed.len(), 2, "frames 10 and 11");
    assert!(resumed[..] == frames[10..], "a resumed run equals the uninterrupted one bit for bit");

    // The same two frames as H.264 in a fragmented MP4: ftyp, moov, then one moof + mdat per frame.
    let mp4 = dir.join("rest.mp4");
    resume_to(&ckpt, &mp4);
    let decoded = decode_mp4(&std::fs::read(&mp4).unwrap());
    assert_eq!(decoded.len(), 2);
    for (luma, want) in decoded.iter().zip(&resumed) {
        let diff = luma.iter().zip(&want[..64 * 64]).map(|(&a, &b)| (a as f64 - b as f64).abs()).sum::<f64>();
        let mean = diff / (64.0 * 64.0);
        assert!(mean < MP4_LUMA_TOLERANCE, "H.264 luma differs from the Y4M by {mean} on average");
    }

    // A checkpoint of another model is refused, and nothing is written.
    let other = dir.join("other-model");
    std::fs::create_dir(&other).unwrap();
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "model.json" {
            std::os::unix::fs::symlink(entry.path().canonicalize().unwrap(), other.join(entry.file_name()))
                .unwrap();
        }
    }
    let json = std::fs::read_to_string(model_dir().join("model.json")).unwrap();
    let mut package: serde_json::Value = serde_json::from_str(&json).unwrap();
    package["name"] = "another-model".into();
    std::fs::write(other.join("model.json"), package.to_string()).unwrap();
    let never = dir.join("never.y4m");
    let out = Command::cargo_bin("fifo")
        .unwrap()
        .args(["generate", "--quiet", "--model", other.to_str().unwrap(), "--resume", ckpt.to_str().unwrap()])
        .args(["--out", never.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("made with model `shapes-t2v-tiny` but `another-model` is loaded"), "{err}");
    assert!(!never.exists());

    // The sidecar reproduces the run: the first 3 frames again, as a GIF.
    let gif_path = dir.join("again.gif");
    let side = dir.join("full.y4m.json");
    generate(&["--from", side.to_str().unwrap(), "--frames", "3", "--out", gif_path.to_str().unwrap()]);
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::RGBA);
    let mut decoder = options.read_info(std::fs::File::open(&gif_path).unwrap()).unwrap();
    assert_eq!((decoder.width(), decoder.height()), (64, 64));
    let mut count = 0;
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        assert_eq!((frame.width, frame.height), (64, 64));
        assert_eq!(frame.delay, 13, "8 fps is 12.5 hundredths of a second, rounded");
        count += 1;
    }
    assert_eq!(count, 3);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Runs `fifo generate` with bad input: it must fail, say `expected`, and write nothing.
fn refuses(args: &[&str], expected: &str) {
    let dir = temp_dir("bad");
    let out_file = dir.join("out.y4m");
    let out = fifo()
        .current_dir(&dir)
        .args(["--quiet", "--out", out_file.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(err.contains(expected), "{args:?}: expected `{expected}` in:\n{err}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.iter().all(|n| n.to_string_lossy().ends_with(".txt")), "{args:?} wrote {left:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_prompts_and_settings_fail_clearly_before_any_work() {
    refuses(&["a purple circle"], "unknown word `purple`");
    refuses(&["a purple circle"], "the model knows: a, moving");
    refuses(&["   "], "the prompt is empty");
    refuses(&[], "no prompt: pass one");
    refuses(&[PROMPT, "--frames", "0"], "--frames must be at least 1");
    refuses(&[PROMPT, "--frames", "ten"], "`ten` is not a frame count");
    refuses(&[PROMPT, "--partitions", "0"], "partitions must be at least 1");
    refuses(&[PROMPT, "--partitions", "200"], "--partitions 200 does not fit this model");
    refuses(&[PROMPT, "--steps", "12"], "use --steps 8 or 16");
    refuses(&[PROMPT, "--steps", "0"], "FIFO-Diffusion takes f*n steps");
    refuses(&[PROMPT, "--steps", "8", "--partitions", "1"], "cannot be used with");
    refuses(&[PROMPT, "--eta=-1"], "eta must be a finite number >= 0");
    refuses(&[PROMPT, "--checkpoint-every", "0"], "--checkpoint-every must be at least 1");
    let int8 = std::fs::read_to_string(model_dir().join("model.json")).unwrap().contains("\"int8\"");
    if !int8 {
        refuses(&[PROMPT, "--weights", "int8"], "has no int8 UNet");
    }
}

#[test]
fn the_default_model_is_found_without_flags() {
    // target/<profile>/fifo looks for models/<default> in the folders above it.
    let out = Command::cargo_bin("fifo")
        .unwrap()
        .env_remove("FIFO_MODEL_DIR")
        .args(["generate", "--quiet", "a purple circle", "--out", "/tmp/never-written.y4m"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("unknown word `purple`"), "{err}");
    assert!(!Path::new("/tmp/never-written.y4m").exists());
}

#[test]
fn malformed_prompt_schedules_name_line_and_column() {
    let dir = temp_dir("schedule");
    let file = dir.join("prompts.txt");
    std::fs::write(&file, format!("0: {PROMPT}\n  x1: a blue square moving up on a gray background\n"))
        .unwrap();
    refuses(&["--prompt-schedule", file.to_str().unwrap()], "line 2, column 3: `x1` is not a frame number");
    std::fs::write(&file, format!("0: {PROMPT}\n10..20: a blue squar moving up on a gray background\n"))
        .unwrap();
    refuses(&["--prompt-schedule", file.to_str().unwrap()], "unknown word `squar`");
    refuses(&["--prompt-schedule", "/nonexistent/prompts.txt"], "cannot read --prompt-schedule");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_outputs_fail_clearly() {
    let refuse_out = |out: &str, expected: &str| {
        let o = fifo().args(["--quiet", PROMPT, "--out", out]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(expected), "--out {out}: {err}");
    };
    refuse_out("/tmp/video.avi", "unknown output extension `.avi`");
    refuse_out("/nonexistent-folder/video.y4m", "the output folder /nonexistent-folder does not exist");
    refuse_out("/proc/video.y4m", "cannot write into /proc");
    assert!(!Path::new("/tmp/video.avi").exists());
}

#[test]
fn missing_or_corrupt_model_files_fail_clearly() {
    let dir = temp_dir("package");
    let package = |name: &str, skip: &str, corrupt: Option<&str>| {
        let p = dir.join(name);
        std::fs::create_dir(&p).unwrap();
        for entry in std::fs::read_dir(model_dir()).unwrap() {
            let entry = entry.unwrap();
            let file = entry.file_name();
            if file == skip {
                continue;
            }
            if Some(file.to_str().unwrap()) == corrupt {
                std::fs::write(p.join(&file), b"not a model at all").unwrap();
            } else {
                std::os::unix::fs::symlink(entry.path().canonicalize().unwrap(), p.join(&file)).unwrap();
            }
        }
        p
    };
    let json = std::fs::read_to_string(model_dir().join("model.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let decoder = v["graphs"]["decoder"]["file"].as_str().unwrap().to_string();
    let unet = v["graphs"]["unet"]["file"].as_str().unwrap().to_string();
    let cases = [
        (package("no-decoder", &decoder, None), "is missing or unreadable"),
        (package("bad-unet", "", Some(&unet)), "the UNet graph"),
        (package("bad-json", "", Some("model.json")), "is not a valid model.json"),
        (dir.join("nothing-here"), "no model package at"),
    ];
    for (model, expected) in cases {
        let out_file = dir.join("out.y4m");
        let o = Command::cargo_bin("fifo")
            .unwrap()
            .args(["generate", PROMPT, "--model", model.to_str().unwrap()])
            .args(FAST)
            .args(["--out", out_file.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(expected), "{}: {err}", model.display());
        assert!(!out_file.exists(), "{}", model.display());
    }
    // `--backend gpu` where wgpu finds no adapter (only a backend this OS lacks is allowed) fails
    // with the fix named, and writes nothing.
    let absent = if cfg!(target_os = "macos") { "dx12" } else { "metal" };
    let out_file = dir.join("gpu.y4m");
    let o = fifo()
        .env("WGPU_BACKEND", absent)
        .args(["--quiet", PROMPT, "--backend", "gpu", "--out", out_file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--backend cpu"), "{err}");
    assert!(!out_file.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// The GPU backend (lavapipe in CI) writes the CPU backend's frames with the queue resident on
/// the device (one submission per iteration, only frames read back), and `--stats` names the
/// device, its peak tensor memory and the traffic.
#[test]
fn the_gpu_backend_writes_the_frames_of_the_cpu_backend() {
    let dir = temp_dir("gpu-frames");
    let run = |backend: &str| {
        let (out, stats) = (dir.join(format!("{backend}.y4m")), dir.join(format!("{backend}.json")));
        let o = fifo()
            .args([PROMPT, "--frames", "2", "--partitions", "1", "--no-lookahead", "--guidance", "1"])
            .args(["--quiet", "--backend", backend, "--out", out.to_str().unwrap()])
            .args(["--stats", stats.to_str().unwrap()])
            .output()
            .unwrap();
        let stats = o
            .status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&std::fs::read(&stats).unwrap()).unwrap());
        (std::fs::read(&out).ok(), stats, String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (Some(gpu), Some(stats), _) = run("gpu") else {
        let (_, _, err) = run("gpu");
        assert!(std::env::var("FIFO_REQUIRE_GPU").is_err(), "FIFO_REQUIRE_GPU=1 but: {err}");
        eprintln!("\n!!!!!!!! SKIPPING: no GPU adapter for fifo generate ({err}) !!!!!!!!\n");
        return;
    };
    let (cpu, _, err) = run("cpu");
    let cpu = cpu.unwrap_or_else(|| panic!("the CPU run failed: {err}"));
    let (_, _, cpu_frames) = read_y4m(&cpu);
    let (_, _, gpu_frames) = read_y4m(&gpu);
    assert_eq!(gpu_frames.len(), 2);
    // The two backends sum in different orders; lavapipe has matched to the byte so far.
    let worst = cpu_frames
        .iter()
        .zip(&gpu_frames)
        .flat_map(|(c, g)| c.iter().zip(g.iter()).map(|(a, b)| a.abs_diff(*b)))
        .max()
        .unwrap();
    assert!(worst <= 2, "GPU frames differ from the CPU's by up to {worst} levels");
    assert_eq!(stats["backend"], "gpu");
    assert_eq!(stats["devices"].as_array().unwrap().len(), 1);
    let peak = stats["peak_device_bytes"][0].as_u64().unwrap();
    // At least the UNet's weights (~10 MB of f32) live on the device.
    assert!(peak > 8 << 20, "peak_device_bytes {peak}");
    // tests/device_loop.rs checks the device loop's traffic exactly.
    assert_eq!(stats["queue"], "device");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `--steps S` is `--partitions S/f`: the sidecar records n and the frames are those of
/// `--partitions`.
#[test]
fn steps_set_the_partitions() {
    let dir = temp_dir("steps");
    let run = |flag: [&str; 2], name: &str| {
        let out = dir.join(name);
        let o = fifo()
            .args([PROMPT, "--frames", "1", "--no-lookahead", "--guidance", "1", "--quiet", "--backend=cpu"])
            .args(flag)
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{flag:?}: {}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(&out).unwrap()
    };
    let by_steps = run(["--steps", "8"], "steps.y4m");
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("steps.y4m.json")).unwrap()).unwrap();
    assert_eq!(side["settings"]["partitions"], 1);
    assert!(by_steps == run(["--partitions", "1"], "partitions.y4m"));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Largest per-byte difference (0..255 levels, over every Y4M byte) allowed between the f16 and
/// the f32 UNet's frames. f16 keeps 11 significant bits (weight error under 5e-4 of a weight's
/// largest |w|, as `fifo quantize` reports), which moves a few pixels by a rounding step: measured
/// 1 level at most over 2 frames (mean 0.005). 4 leaves room for other CPUs' summation orders
/// while still catching a wrong cast or scale, which moves whole frames.
const F16_MAX_ABS_LEVELS: u8 = 4;

#[test]
fn f16_weights_give_the_f32_frames_and_a_package_without_them_says_how_to_make_them() {
    let dir = temp_dir("f16");
    let json = std::fs::read_to_string(model_dir().join("model.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    if v["graphs"]["unet"]["f16"].is_string() {
        let run = |weights: &str| {
            let out = dir.join(format!("{weights}.y4m"));
            generate(&[PROMPT, "--frames", "2", "--weights", weights, "--out", out.to_str().unwrap()]);
            std::fs::read(out).unwrap()
        };
        let (f32_video, f16_video) = (run("f32"), run("f16"));
        let (w, h, f32_frames) = read_y4m(&f32_video);
        let (w16, h16, f16_frames) = read_y4m(&f16_video);
        assert_eq!((f32_frames.len(), w16, h16), (2, w, h));
        let worst = f32_frames
            .iter()
            .zip(&f16_frames)
            .flat_map(|(a, b)| a.iter().zip(b.iter()).map(|(x, y)| x.abs_diff(*y)))
            .max()
            .unwrap();
        assert!(worst <= F16_MAX_ABS_LEVELS, "f16 frames differ from f32 by up to {worst} levels");
        assert!(f32_video != f16_video, "the f16 run must actually use the f16 weights");
    } else {
        eprintln!("\n!!!!!!!! {}: no f16 UNet; only its error is checked !!!!!!!!\n", model_dir().display());
    }

    // The same package without graphs.unet.f16: the error names the variant and how to make it.
    let package = dir.join("no-f16");
    std::fs::create_dir(&package).unwrap();
    for entry in std::fs::read_dir(model_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "model.json" {
            std::os::unix::fs::symlink(entry.path().canonicalize().unwrap(), package.join(entry.file_name()))
                .unwrap();
        }
    }
    v["graphs"]["unet"].as_object_mut().unwrap().remove("f16");
    std::fs::write(package.join("model.json"), serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let out_file = dir.join("out.y4m");
    let o = Command::cargo_bin("fifo")
        .unwrap()
        .args(["generate", PROMPT, "--model", package.to_str().unwrap(), "--weights", "f16"])
        .args(FAST)
        .args(["--out", out_file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    for expected in [
        "has no f16 UNet (no graphs.unet.f16 in model.json)",
        "use --weights f32",
        &format!("fifo quantize --weights f16 {0}/unet.onnx {0}/unet.f16.onnx", package.display()),
        r#"`"f16": "unet.f16.onnx"` to graphs.unet in model.json"#,
    ] {
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
    }
    assert!(!out_file.exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A full disk mid-run (stdout on /dev/full: every write fails with ENOSPC) stops with an error
/// that names the frame, what was kept and how to go on; no panic.
#[test]
#[cfg(target_os = "linux")]
fn a_full_disk_stops_with_an_error_naming_what_was_kept() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("no /dev/full here; skipped");
        return;
    };
    let o = std::process::Command::new(assert_cmd::cargo::cargo_bin("fifo"))
        .env_remove("FIFO_MODEL_DIR")
        .args(["generate", "--model", model_dir().to_str().unwrap()])
        .args(FAST)
        .args([PROMPT, "--frames", "3", "--out", "-"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for expected in ["cannot write frame 0 to -", "No space left on device", "--checkpoint-every K"] {
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// A package whose decoder carries state (the reduced Wan: 1 frame from the first latent, 4
/// from each later one): `--checkpoint-every` in the middle of a latent's frames, then `--resume`,
/// writes the frames of the uninterrupted run.
#[test]
fn a_causal_decoder_run_resumes_bit_for_bit_from_mid_latent() {
    let wan = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/packages/wan-tiny");
    let dir = temp_dir("causal");
    let (full, rest) = (dir.join("full.y4m"), dir.join("rest.y4m"));
    let wan_generate = |args: &[&str]| {
        let out = Command::cargo_bin("fifo")
            .unwrap()
            .env_remove("FIFO_MODEL_DIR")
            .args(["generate", "--quiet", "--backend=cpu", "--model", wan.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "fifo generate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // The last checkpoint is after frame 7: latents 0-2 decoded (frames 0-8), 7 and 8 pending.
    let prompt = "a red panda walking through snow";
    wan_generate(&[
        prompt,
        "--partitions",
        "2",
        "--frames",
        "11",
        "--checkpoint-every",
        "7",
        "--out",
        full.to_str().unwrap(),
    ]);
    let ckpt = dir.join("full.y4m.ckpt");
    // Frames 7 and 8 come from the checkpoint, 9 and 10 from the next latent and the saved state.
    wan_generate(&["--resume", ckpt.to_str().unwrap(), "--frames", "11", "--out", rest.to_str().unwrap()]);
    let (full_bytes, rest_bytes) = (std::fs::read(&full).unwrap(), std::fs::read(&rest).unwrap());
    let (w, h, frames) = read_y4m(&full_bytes);
    assert_eq!((w, h, frames.len()), (32, 32, 11));
    let (_, _, resumed) = read_y4m(&rest_bytes);
    assert_eq!(resumed.len(), 4, "frames 7 to 10");
    assert!(resumed[..] == frames[7..], "a resumed causal run equals the uninterrupted one bit for bit");
    std::fs::remove_dir_all(dir).unwrap();
}
