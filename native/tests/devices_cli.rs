//! `fifo generate --devices` through the real binary, on the micro test package (a UNet of a few
//! ops, so that lavapipe runs it in seconds): two devices write one device's video byte for byte,
//! `--stats` reports the split, and bad device settings fail clearly before any work.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

const PROMPT: &str = "a red circle moving right";

fn micro_package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/loop/micro-t2v")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fifo-devices-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn generate(dir: &Path, name: &str, args: &[&str]) -> std::process::Output {
    let out = dir.join(format!("{name}.y4m"));
    let stats = dir.join(format!("{name}.json"));
    Command::cargo_bin("fifo")
        .unwrap()
        .args(["generate", PROMPT, "--quiet", "--frames", "10", "--seed", "4"])
        .arg("--model")
        .arg(micro_package())
        .args(["--out", out.to_str().unwrap(), "--stats", stats.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn two_devices_write_one_devices_video_byte_for_byte() {
    let dir = temp_dir("split");
    let one = generate(&dir, "one", &["--devices", "0"]);
    if !one.status.success() {
        let err = String::from_utf8_lossy(&one.stderr);
        assert!(std::env::var("FIFO_REQUIRE_GPU").is_err(), "FIFO_REQUIRE_GPU=1 but: {err}");
        eprintln!("\n!!!!!!!! SKIPPING: no GPU adapter for --devices ({err}) !!!!!!!!\n");
        return;
    }
    let want = std::fs::read(dir.join("one.y4m")).unwrap();
    for (name, args) in [
        ("even", vec!["--devices", "0,0"]),
        ("fixed", vec!["--devices", "0,0", "--split", "1,3"]),
        // The first device takes no window: the second is the head and decodes.
        ("moved head", vec!["--devices", "0,0,0", "--split", "0,2,2"]),
    ] {
        let o = generate(&dir, name, &args);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let got = std::fs::read(dir.join(format!("{name}.y4m"))).unwrap();
        assert!(got == want, "{args:?}: the video differs from one device's");
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let devices = if name == "moved head" { 3 } else { 2 };
        assert_eq!(stats["devices"].as_array().unwrap().len(), devices, "{stats}");
        assert_eq!(stats["traffic"].as_array().unwrap().len(), devices, "{stats}");
        assert_eq!(stats["peak_device_bytes"].as_array().unwrap().len(), devices, "{stats}");
        let windows: Vec<u64> =
            stats["split"]["windows"].as_array().unwrap().iter().map(|w| w.as_u64().unwrap()).collect();
        // The micro package's default layout: f = 4, n = 2 with lookahead, 4 windows.
        assert_eq!(windows.iter().sum::<u64>(), 4, "{stats}");
        let used: Vec<u64> =
            stats["split"]["devices"].as_array().unwrap().iter().map(|w| w.as_u64().unwrap()).collect();
        match name {
            "fixed" => assert_eq!((used, windows), (vec![0, 1], vec![1, 3])),
            "moved head" => assert_eq!((used, windows), (vec![1, 2], vec![2, 2])),
            _ => {}
        }
    }

    // The sidecar records the devices and the split; `--from` runs there again without flags.
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("fixed.y4m.json")).unwrap()).unwrap();
    let ran_on = &side["ran_on"];
    assert_eq!((&ran_on["backend"], &ran_on["device_list"]), (&"gpu".into(), &"0,0".into()), "{side}");
    assert_eq!(ran_on["split"], serde_json::json!([1, 3]), "{side}");
    assert_eq!(ran_on["devices"].as_array().unwrap().len(), 2, "{side}");
    let (out, stats) = (dir.join("again.y4m"), dir.join("again.json"));
    let o = Command::cargo_bin("fifo")
        .unwrap()
        .args(["generate", "--quiet", "--from", dir.join("fixed.y4m.json").to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--stats", stats.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "--from: {}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&out).unwrap() == want, "--from: the video differs");
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap();
    assert_eq!(stats["split"]["windows"], serde_json::json!([1, 3]), "{stats}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Bad device settings: non-zero exit, an error naming the fix, no output written.
#[test]
fn bad_device_settings_fail_clearly() {
    let dir = temp_dir("bad");
    for (args, expected) in [
        (vec!["--devices", "9"], "adapter index 9 does not exist"),
        (vec!["--devices", "9"], "fifo devices"),
        (vec!["--devices", "zero"], "is not a device list: use `all` or adapter indices"),
        (vec!["--devices", "0", "--backend", "cpu"], "--devices picks GPU adapters"),
        (vec!["--split", "2,2"], "--devices"),
        (vec!["--devices", "0,0", "--split", "3,3"], "does not add up to the 4 windows"),
        (vec!["--devices", "0,0", "--split", "0,0"], "does not add up to the 4 windows"),
        (vec!["--devices", "0,0", "--split", "4"], "needs one count per device (2 devices)"),
    ] {
        let o = generate(&dir, "bad", &args);
        let err = String::from_utf8_lossy(&o.stderr);
        if err.contains("no GPU adapter") || err.contains("cannot open adapter 0") {
            assert!(std::env::var("FIFO_REQUIRE_GPU").is_err(), "FIFO_REQUIRE_GPU=1 but: {err}");
            continue;
        }
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(expected), "{args:?}: expected `{expected}` in:\n{err}");
        assert!(!dir.join("bad.y4m").exists(), "{args:?} wrote a video");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// `generate`'s 10 frames on `devices` (split `split`), with device D destroyed after frame F
/// (`lost` = "D@F"). The split is fixed: a balanced one may give a device no windows (on a busy
/// machine one device can time faster than two), and a device out of the run loses nothing.
fn losing(lost: &str, devices: &str, split: &str, out: &Path) -> std::process::Output {
    Command::cargo_bin("fifo")
        .unwrap()
        .env("FIFO_TEST_LOSE_DEVICE", lost)
        .args(["generate", PROMPT, "--frames", "10", "--seed", "4", "--devices", devices, "--split", split])
        .arg("--model")
        .arg(micro_package())
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap()
}

/// A device lost mid-run (destroyed through the binary's test hook after frame 4): with two
/// devices the other one finishes the video, identical to one device's; with one device the
/// run stops, the frames written stay playable and the error says how to make a run resumable.
#[test]
fn a_lost_device_is_survived_with_two_devices_and_reported_with_one() {
    let dir = temp_dir("lost");
    let one = generate(&dir, "one", &["--devices", "0"]);
    if !one.status.success() {
        assert!(std::env::var("FIFO_REQUIRE_GPU").is_err(), "{}", String::from_utf8_lossy(&one.stderr));
        return;
    }
    let want = std::fs::read(dir.join("one.y4m")).unwrap();
    for lost in ["0@4", "1@4"] {
        let o = losing(lost, "0,0", "2,2", &dir.join("two.y4m"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "device {lost}: {err}");
        assert!(err.contains("continuing on the devices left from frame 0"), "{err}");
        assert!(std::fs::read(dir.join("two.y4m")).unwrap() == want, "device {lost}: the video differs");
    }
    let o = losing("0@4", "0", "4", &dir.join("single.y4m"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("generating frame 5 failed") && err.contains("lost"), "{err}");
    assert!(err.contains("the 5 frames before it are in") && err.contains("--checkpoint-every K"), "{err}");
    let kept = std::fs::read(dir.join("single.y4m")).unwrap();
    assert!(kept.len() < want.len() && want.starts_with(&kept), "the 5 frames kept are the run's first 5");
    std::fs::remove_dir_all(dir).unwrap();
}
