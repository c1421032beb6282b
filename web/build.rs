//! Lists the executor's op fixtures, the scheduler's parity fixtures and the exported model
//! packages' files and reference frames for the browser tests, which cannot read files:
//! `$OUT_DIR/fixtures.rs` embeds each with `include_bytes!`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(list) => list.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    entries.sort();
    entries
}

fn tensors(dir: &Path, prefix: &str) -> String {
    let files: Vec<String> = (0..)
        .map(|k| dir.join(format!("{prefix}_{k}.pb")))
        .take_while(|p| p.exists())
        .map(|p| format!("include_bytes!({:?})", p.display().to_string()))
        .collect();
    format!("&[{}]", files.join(", "))
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let (ops, parity) = (root.join("ops"), root.join("parity"));
    println!("cargo:rerun-if-changed={}", ops.display());
    println!("cargo:rerun-if-changed={}", parity.display());
    let mut out = String::from("pub const OP_FIXTURES: &[OpFixture] = &[\n");
    for dir in sorted(&ops) {
        let data = dir.join("test_data_set_0");
        let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let model = dir.join("model.onnx").display().to_string();
        writeln!(
            out,
            "    OpFixture {{ name: {name:?}, model: include_bytes!({model:?}), inputs: {}, outputs: {} }},",
            tensors(&data, "input"),
            tensors(&data, "output")
        )
        .unwrap();
    }
    out.push_str("];\n\npub const PARITY_CASES: &[&str] = &[\n");
    for file in sorted(&parity) {
        if file.extension().is_some_and(|x| x == "json")
            && file.file_name().is_some_and(|n| n != "noise.json")
        {
            writeln!(out, "    include_str!({:?}),", file.display().to_string()).unwrap();
        }
    }
    out.push_str("];\n\npub const PACKAGES: &[PackageFixture] = &[\n");
    // The reduced packages the browser generates with (tests/fixtures/packages): every file at the
    // package's top level (the test picks what the page would fetch), the reference loop's frames
    // and settings (reference/); not golden/ (the per-graph tensors the native tests use).
    for name in ["wan-tiny", "latte-tiny"] {
        let dir = root.join("packages").join(name);
        println!("cargo:rerun-if-changed={}", dir.display());
        println!("cargo:rerun-if-changed={}", dir.join("reference").display());
        let embed = |p: &PathBuf| format!("include_bytes!({:?})", p.display().to_string());
        let files: Vec<String> = sorted(&dir)
            .iter()
            .filter(|p| p.is_file())
            .map(|p| format!("({:?}, {})", p.file_name().unwrap().to_string_lossy(), embed(p)))
            .collect();
        let reference = dir.join("reference");
        let frames: Vec<String> = sorted(&reference)
            .iter()
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .map(embed)
            .collect();
        assert!(
            !files.is_empty() && !frames.is_empty(),
            "{}: no package files or reference frames",
            dir.display()
        );
        writeln!(
            out,
            "    PackageFixture {{ name: {name:?}, files: &[{}], run: include_str!({:?}), frames: &[{}] }},",
            files.join(", "),
            reference.join("run.json").display().to_string(),
            frames.join(", ")
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("fixtures.rs");
    std::fs::write(dest, out).unwrap();
}
