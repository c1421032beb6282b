//! The `fifo onnx` commands end to end, on the whole-model fixture.

use fifo_diffusion::onnx::decode_tensor;
use npyz::WriterBuilder;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/unet_torchscript_op17")
}

fn fifo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fifo")).args(args).output().expect("the fifo binary runs")
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

#[test]
fn run_writes_outputs_that_match_onnxruntime() {
    let dir = temp_dir("run");
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
    let out = fifo(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, want) = decode_tensor(&std::fs::read(data.join("output_0.pb")).unwrap()).unwrap();
    let file = std::fs::File::open(dir.join("out/y.npy")).unwrap();
    let got: Vec<f32> = npyz::NpyFile::new(file).unwrap().into_vec().unwrap();
    let worst = got.iter().zip(want.to_f32_vec()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-4, "max |diff| {worst}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gpu_backend_and_bad_inputs_fail_clearly() {
    let model = fixture().join("model.onnx");
    let model = model.to_str().unwrap();
    let out = fifo(&["onnx", "run", model, "--output-dir", "/tmp/unused", "--backend", "gpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not available yet"));
    let out = fifo(&["onnx", "inspect", model, "--input", "x=1,four"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a dimension"));
    let out = fifo(&["onnx", "run", model, "--input", "x=/nonexistent.npy", "--output-dir", "/tmp/unused"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open /nonexistent.npy"));
}
