//! `fifo eval` and `fifo quantize` end to end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fifo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fifo")).args(args).output().expect("the fifo binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fifo-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Splits the first eval fixture clip (8 frames side by side) into a folder of PNG frames.
fn png_folder(dir: &Path) -> String {
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("tests/fixtures/eval/truth.json")).unwrap())
            .unwrap();
    let clip = &truth["clips"][0];
    let file =
        std::fs::File::open(root().join("tests/fixtures/eval").join(clip["file"].as_str().unwrap())).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    for f in 0..w / h {
        let rgb: Vec<u8> =
            (0..h).flat_map(|y| buf[(y * w + f * h) * 3..(y * w + (f + 1) * h) * 3].to_vec()).collect();
        let out = std::fs::File::create(dir.join(format!("frame_{f:03}.png"))).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(out), h as u32, h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.write_header().unwrap().write_image_data(&rgb).unwrap();
    }
    clip["prompt"].as_str().unwrap().to_string()
}

#[test]
fn eval_scores_a_png_folder_and_refuses_unknown_words() {
    let dir = temp_dir("eval");
    let prompt = png_folder(&dir);
    let out = fifo(&["eval", dir.to_str().unwrap(), "--prompt", &prompt, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["frames"], 8);
    for metric in ["colour", "shape", "background", "direction", "present"] {
        assert_eq!(report["overall"][metric], 1.0, "{metric}: {report}");
    }
    let out =
        fifo(&["eval", dir.to_str().unwrap(), "--prompt", "a purple circle moving up on a gray background"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown colour 'purple'"));
    let out = fifo(&["eval", "/nonexistent.y4m", "--prompt", &prompt]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn quantize_writes_a_model_our_loader_runs_and_refuses_garbage() {
    let dir = temp_dir("quantize");
    let model = root().join("tests/fixtures/models/unet_dynamo_op18/model.onnx");
    let out_model = dir.join("q.onnx");
    let out = fifo(&[
        "quantize",
        model.to_str().unwrap(),
        out_model.to_str().unwrap(),
        "--weights",
        "int8",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["converted"].as_array().unwrap().len(), 17);
    let inspect = fifo(&["onnx", "inspect", "--json", out_model.to_str().unwrap()]);
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let info: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let ops: Vec<&str> =
        info["ops"].as_array().unwrap().iter().map(|o| o["op_type"].as_str().unwrap()).collect();
    assert!(ops.contains(&"DequantizeLinear"), "{ops:?}");
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"not a model").unwrap();
    let out = fifo(&["quantize", garbage.to_str().unwrap(), out_model.to_str().unwrap(), "--weights", "f16"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an ONNX model"));
    std::fs::remove_dir_all(dir).unwrap();
}
