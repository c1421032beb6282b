//! The `fifo onnx` commands end to end, on the whole-model fixture.

use fifo_diffusion::onnx::decode_tensor;
use npyz::WriterBuilder;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/unet_torchscript_op17")
}

const LAVAPIPE_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json";

fn fifo(args: &[&str]) -> Output {
    fifo_with(&[], args)
}

fn fifo_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fifo"));
    if std::env::var_os("VK_DRIVER_FILES").is_none() && Path::new(LAVAPIPE_ICD).exists() {
        cmd.env("VK_DRIVER_FILES", LAVAPIPE_ICD);
    }
    cmd.envs(env.iter().copied()).args(args).output().expect("the fifo binary runs")
}

fn require_gpu() -> bool {
    std::env::var("FIFO_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fifo-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let file = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd().unwrap();
    w.extend(values.iter()).unwrap();
    w.finish().unwrap();
}

#[test]
fn inspect_json_lists_ops_and_planned_memory() {
    let model = fixture().join("model.onnx");
    let out = fifo(&["onnx", "inspect", "--json", model.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ops: Vec<&str> =
        info["ops"].as_array().unwrap().iter().map(|o| o["op_type"].as_str().unwrap()).collect();
    assert!(ops.contains(&"Conv") && ops.contains(&"Einsum"), "{ops:?}");
    assert_eq!(info["inputs"][0]["dtype"], "float32");
    assert!(info["planned_peak_bytes"].as_u64().unwrap() > 0);
    assert!(info["unsupported"].as_array().unwrap().is_empty());
}

/// Runs the fixture through `fifo onnx run` with `extra` arguments; the worst |diff| against
/// onnxruntime, or the failed command's stderr.
fn run_fixture(name: &str, extra: &[&str]) -> Result<f32, String> {
    run_fixture_with(name, extra, &[]).map(|(worst, _)| worst)
}

/// [`run_fixture`] with environment variables set; also returns the command's stderr.
fn run_fixture_with(name: &str, extra: &[&str], env: &[(&str, &str)]) -> Result<(f32, String), String> {
    let dir = temp_dir(name);
    let data = fixture().join("test_data_set_0");
    let mut args: Vec<String> =
        vec!["onnx".into(), "run".into(), fixture().join("model.onnx").display().to_string()];
    for k in 0..2 {
        let (name, t) = decode_tensor(&std::fs::read(data.join(format!("input_{k}.pb"))).unwrap()).unwrap();
        let file = dir.join(format!("{name}.npy"));
        write_npy(&file, t.shape(), &t.to_f32_vec());
        args.extend(["--input".into(), format!("{name}={}", file.display())]);
    }
    args.extend(["--output-dir".into(), dir.join("out").display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = fifo_with(env, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        return Err(stderr);
    }
    let (_, want) = decode_tensor(&std::fs::read(data.join("output_0.pb")).unwrap()).unwrap();
    let file = std::fs::File::open(dir.join("out/y.npy")).unwrap();
    let got: Vec<f32> = npyz::NpyFile::new(file).unwrap().into_vec().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    Ok((got.iter().zip(want.to_f32_vec()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max), stderr))
}

#[test]
fn run_writes_outputs_that_match_onnxruntime() {
    let worst = run_fixture("run", &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(worst < 1e-4, "max |diff| {worst}");
}

#[test]
fn run_on_the_gpu_backend_matches_onnxruntime() {
    match run_fixture("run-gpu", &["--backend", "gpu", "--device", "0"]) {
        Ok(worst) => assert!(worst < 1e-4, "max |diff| {worst}"),
        Err(e) if e.contains("no GPU adapter") || e.contains("0 adapter(s)") => {
            assert!(!require_gpu(), "FIFO_REQUIRE_GPU=1 but: {e}");
            eprintln!("!!!!!!!! SKIPPING GPU CLI TEST: {e}");
        }
        Err(e) => panic!("{e}"),
    }
}

/// `FIFO_GPU_PROFILE=1` times every node on the device (timestamp queries, which lavapipe has):
/// a row per op type whose times add up to the total, the slowest nodes with their kernels, and
/// the run's output unchanged.
#[test]
fn gpu_profile_times_every_node_on_the_device() {
    let extra = ["--backend", "gpu", "--device", "0"];
    let (worst, stderr) = match run_fixture_with("profile", &extra, &[("FIFO_GPU_PROFILE", "1")]) {
        Ok(result) => result,
        Err(e) if e.contains("no GPU adapter") || e.contains("0 adapter(s)") => {
            assert!(!require_gpu(), "FIFO_REQUIRE_GPU=1 but: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert!(worst < 1e-4, "max |diff| {worst}");
    let head = stderr.lines().find(|l| l.starts_with("gpu profile: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(head.contains("kernel time on the device (timestamps"), "{head}");
    let total: f64 = head["gpu profile: ".len()..].split(' ').next().unwrap().parse().unwrap();
    // Rows: op, nodes, dispatches, ms, share (up to the slowest-nodes list).
    let rows: Vec<(String, usize, f64)> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("gpu profile: "))
        .skip(2)
        .take_while(|l| !l.contains("slowest nodes"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect();
    let sum: f64 = rows.iter().map(|r| r.2).sum();
    assert!((sum - total).abs() <= 1e-3 * rows.len() as f64 + 1e-6, "rows add up to {sum}, total {total}");
    let conv = rows.iter().find(|r| r.0 == "Conv").unwrap_or_else(|| panic!("no Conv row:\n{stderr}"));
    assert!(conv.1 > 0 && conv.2 > 0.0, "{conv:?}");
    assert!(total > 0.0 && stderr.contains("slowest nodes") && stderr.contains("conv."), "{stderr}");
}

#[test]
fn devices_lists_adapters_as_json() {
    let out = fifo(&["devices", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = list.as_array().unwrap();
    if list.is_empty() {
        assert!(!require_gpu(), "FIFO_REQUIRE_GPU=1 but `fifo devices` lists no adapter");
        return;
    }
    for (i, a) in list.iter().enumerate() {
        assert_eq!(a["index"], i);
        assert!(!a["name"].as_str().unwrap().is_empty());
        assert!(a["limits"]["max_storage_buffer_binding_size"].as_u64().unwrap() >= 128 << 20);
        assert!(a["shader_f16"].is_boolean() && a["subgroups"].is_boolean());
        let features: Vec<&str> =
            a["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        assert_eq!(features.contains(&"shader-f16"), a["shader_f16"].as_bool().unwrap());
    }
    let text = fifo(&["devices"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("[0] "),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
}

#[test]
fn gpu_backend_and_bad_inputs_fail_clearly() {
    let model = fixture().join("model.onnx");
    let model = model.to_str().unwrap();
    let out =
        fifo(&["onnx", "run", model, "--output-dir", "/tmp/unused", "--backend", "gpu", "--device", "99"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("adapter index 99 does not exist") || err.contains("no GPU adapter"), "{err}");
    let out = fifo(&["onnx", "run", model, "--output-dir", "/tmp/unused", "--device", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not apply to the cpu backend"));
    let out = fifo(&["onnx", "inspect", model, "--input", "x=1,four"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a dimension"));
    let out = fifo(&["onnx", "run", model, "--input", "x=/nonexistent.npy", "--output-dir", "/tmp/unused"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent.npy"));
}

/// `fifo models` with the fixtures folder and a folder holding a broken package added.
#[test]
fn models_lists_packages_their_weights_and_broken_ones() {
    let broken_root = temp_dir("models");
    let broken = broken_root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("model.json"), "{ \"format\": ").unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/packages");
    let out = Command::new(env!("CARGO_BIN_EXE_fifo"))
        .env_remove("FIFO_MODEL_DIR")
        .args(["models", "--json", "--dir", fixtures.to_str().unwrap(), "--dir"])
        .arg(&broken_root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = listing["packages"].as_array().unwrap();
    let find = |name: &str| {
        packages.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no {name} in {listing:#}"))
    };
    let weights = |p: &serde_json::Value| -> Vec<String> {
        p["weights"].as_array().unwrap().iter().map(|w| w.as_str().unwrap().to_string()).collect()
    };

    let modelscope = find("modelscope-tiny");
    assert_eq!(weights(modelscope), ["f32"]);
    assert_eq!(modelscope["family"], "modelscope-t2v");
    assert_eq!(modelscope["tokenizer"], "huggingface");
    assert_eq!(modelscope["default"], false);
    assert!(modelscope["bytes"]["f32"].as_u64().unwrap() > 0);

    // The shipped model is found without --dir, as `fifo generate` finds it, and is the default.
    let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shapes-t2v-tiny");
    let json = std::fs::read_to_string(shipped_dir.join("model.json")).unwrap();
    let shipped = find("shapes-t2v-tiny");
    assert_eq!(shipped["default"], true);
    assert_eq!(shipped["family"], serde_json::Value::Null);
    assert_eq!(
        (shipped["frames"].as_u64(), shipped["image"].clone()),
        (Some(8), serde_json::json!([64, 64]))
    );
    assert_eq!(shipped["latent"], serde_json::json!([4, 16, 16]));
    let mut expected = vec!["f32", "int8"];
    if json.contains("\"f16\"") {
        expected.push("f16");
    }
    assert_eq!(weights(shipped), expected);
    // int8 and f16 UNets read fewer bytes than f32 (the text encoder and decoder are shared).
    let bytes = &shipped["bytes"];
    for w in &expected[1..] {
        assert!(bytes[w].as_u64().unwrap() < bytes["f32"].as_u64().unwrap(), "{bytes}");
    }

    let broken = find("broken");
    assert!(broken["error"].as_str().unwrap().contains("is not a valid model.json"), "{broken}");
    assert!(broken.get("weights").is_none());

    // The text form marks the default and shows the error.
    let out = Command::new(env!("CARGO_BIN_EXE_fifo"))
        .env_remove("FIFO_MODEL_DIR")
        .args(["models", "--dir"])
        .arg(&broken_root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("shapes-t2v-tiny (default)") && text.contains("f32 ("), "{text}");
    assert!(text.contains("error      ") && text.contains("is not a valid model.json"), "{text}");
    std::fs::remove_dir_all(broken_root).unwrap();
}
