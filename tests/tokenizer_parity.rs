//! The `huggingface` tokenizer gives exactly the ids transformers gives for a real CLIP BPE and a
//! T5/umT5-style unigram `tokenizer.json` (tests/fixtures/tokenizers/, made and checked against
//! independent references by tools/tokenizers/make_tokenizer_fixtures.py), read from a package
//! in memory or on disk; a missing or broken tokenizer file, or a model.json that does not fit
//! it, is an error that names the file.

use fifo_diffusion::model::{ModelError, ModelPackage, Tokenizer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

/// The project's shipped package: only its model.json is used, with `text` replaced.
const SHIPPED_MODEL_JSON: &str = include_str!("../models/shapes-t2v-tiny/model.json");

struct Fixture {
    name: &'static str,
    tokenizer_json: Vec<u8>,
    max_tokens: usize,
    pad_id: i64,
    cases: Vec<(String, Vec<i64>)>,
}

// Committed gzip-compressed: the CLIP tokenizer.json is 3.6 MB, 0.6 MB packed.
fn fixture(name: &'static str, gz: &[u8], expected: &str) -> Fixture {
    let mut tokenizer_json = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut tokenizer_json).unwrap();
    let expected: Value = serde_json::from_str(expected).unwrap();
    let cases = expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap().iter().map(|id| id.as_i64().unwrap()).collect();
            (c["prompt"].as_str().unwrap().to_string(), ids)
        })
        .collect();
    Fixture {
        name,
        tokenizer_json,
        max_tokens: expected["max_tokens"].as_u64().unwrap() as usize,
        pad_id: expected["pad_id"].as_i64().unwrap(),
        cases,
    }
}

fn clip() -> Fixture {
    fixture(
        "clip-bpe",
        include_bytes!("fixtures/tokenizers/clip-bpe.tokenizer.json.gz"),
        include_str!("fixtures/tokenizers/clip-bpe.expected.json"),
    )
}

fn t5() -> Fixture {
    fixture(
        "t5-unigram",
        include_bytes!("fixtures/tokenizers/t5-unigram.tokenizer.json.gz"),
        include_str!("fixtures/tokenizers/t5-unigram.expected.json"),
    )
}

/// The shipped model.json with this `text`.
fn model_json(text: Value) -> String {
    let mut package: Value = serde_json::from_str(SHIPPED_MODEL_JSON).unwrap();
    package["text"] = text;
    package.to_string()
}

fn huggingface_text(f: &Fixture) -> Value {
    json!({ "tokenizer": "huggingface", "max_tokens": f.max_tokens, "dim": 8, "pad_id": f.pad_id })
}

/// A package in memory: model.json, placeholder graphs (nothing here runs them) and `extra`.
fn files(model_json: String, extra: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    // Every graph file model.json names (the UNet's weight variants included).
    let package: Value = serde_json::from_str(&model_json).unwrap();
    let graphs = package["graphs"].as_object().unwrap().values();
    let mut files: BTreeMap<String, Vec<u8>> = graphs
        .flat_map(|g| ["file", "int8", "f16"].map(|k| g[k].as_str().map(String::from)))
        .flatten()
        .map(|f| (f, vec![]))
        .collect();
    files.insert("model.json".into(), model_json.into_bytes());
    files.extend(extra.iter().map(|(name, bytes)| (name.to_string(), bytes.to_vec())));
    files
}

fn load_in_memory(f: &Fixture) -> Tokenizer {
    let files = files(model_json(huggingface_text(f)), &[("tokenizer.json", &f.tokenizer_json)]);
    Tokenizer::load(&ModelPackage::from_files(files).unwrap()).unwrap()
}

/// Every prompt of the fixture, all mismatches reported at once.
fn assert_parity(f: &Fixture) {
    let tokenizer = load_in_memory(f);
    assert_eq!(tokenizer.max_tokens(), f.max_tokens);
    assert!(f.cases.len() >= 25, "{}: only {} cases", f.name, f.cases.len());
    let mismatches: Vec<String> = f
        .cases
        .iter()
        .filter_map(|(prompt, expected)| match tokenizer.encode(prompt) {
            Ok(ids) if &ids == expected => None,
            got => Some(format!("{prompt:?}:\n  transformers {expected:?}\n  this crate   {got:?}")),
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{}: {} prompts differ:\n{}",
        f.name,
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn clip_bpe_matches_transformers() {
    let f = clip();
    assert_parity(&f);
    // The unconditional input diffusers encodes: BOS, EOS, then padding (here EOS again).
    let empty = load_in_memory(&f).encode("").unwrap();
    assert_eq!(empty[..3], [49406, 49407, f.pad_id]);
    assert_eq!(empty.len(), 77);
    // A prompt longer than 77 tokens keeps BOS and ends with EOS.
    let long = f.cases.iter().find(|(p, _)| p.split(' ').count() > 100).expect("a long prompt");
    assert_eq!((long.1[0], long.1[76]), (49406, 49407));
}

#[test]
fn t5_unigram_matches_transformers() {
    let f = t5();
    assert_parity(&f);
    // Unigram with EOS and no BOS: the empty prompt is `</s>` then padding.
    assert_eq!(load_in_memory(&f).encode("").unwrap()[..2], [1, 0]);
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fifo-tokenizer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a package folder: model.json, placeholder graphs and `extra`.
fn write_package(dir: &std::path::Path, model_json: String, extra: &[(&str, &[u8])]) {
    for (name, bytes) in files(model_json, extra) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
#[cfg_attr(target_arch = "wasm32", ignore = "writes a package folder")]
fn a_package_folder_reads_its_tokenizer_file() {
    let f = clip();
    let dir = temp_dir("folder");
    let mut text = huggingface_text(&f);
    text["file"] = json!("text/clip.json");
    write_package(&dir, model_json(text.clone()), &[("text/clip.json", &f.tokenizer_json)]);
    let tokenizer = Tokenizer::load(&ModelPackage::load(&dir).unwrap()).unwrap();
    let (prompt, ids) = &f.cases[0];
    assert_eq!(&tokenizer.encode(prompt).unwrap(), ids);

    // Missing: the package does not load, and the error names the file.
    std::fs::remove_file(dir.join("text/clip.json")).unwrap();
    let err = ModelPackage::load(&dir).unwrap_err();
    assert!(matches!(&err, ModelError::GraphMissing { path, .. } if path.ends_with("clip.json")), "{err}");
    assert!(err.to_string().contains("re-export or re-download"), "{err}");

    // Corrupt: the tokenizer does not load, and the error names the file and the fix.
    std::fs::write(dir.join("text/clip.json"), b"{\"model\": ").unwrap();
    let err = Tokenizer::load(&ModelPackage::load(&dir).unwrap()).unwrap_err();
    assert!(matches!(&err, ModelError::Tokenizer { file, .. } if file.ends_with("clip.json")), "{err}");
    assert!(err.to_string().contains("save_pretrained"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_package_in_memory_without_its_tokenizer_file_names_it() {
    let f = t5();
    let err = ModelPackage::from_files(files(model_json(huggingface_text(&f)), &[])).unwrap_err();
    assert!(matches!(&err, ModelError::FileMissing { file } if file == "tokenizer.json"), "{err}");
}

#[test]
fn a_corrupt_tokenizer_file_is_a_clear_error() {
    let f = t5();
    let valid_json_not_a_tokenizer = br#"{"version": "1.0", "model": {"type": "Nope"}}"#;
    let half = &f.tokenizer_json[..f.tokenizer_json.len() / 2];
    for bytes in [&b""[..], b"not json", b"\xff\xfe", valid_json_not_a_tokenizer, half] {
        let files = files(model_json(huggingface_text(&f)), &[("tokenizer.json", bytes)]);
        let err = Tokenizer::load(&ModelPackage::from_files(files).unwrap()).unwrap_err();
        assert!(matches!(&err, ModelError::Tokenizer { file, .. } if file == "tokenizer.json"), "{err}");
        let text = err.to_string();
        assert!(text.contains("'tokenizer.json'") && text.contains("save_pretrained"), "{text}");
    }
}

#[test]
fn model_json_must_fit_the_tokenizer() {
    let f = clip();
    let package = |text: Value| {
        ModelPackage::from_files(files(model_json(text), &[("tokenizer.json", &f.tokenizer_json)])).unwrap()
    };
    let mut text = huggingface_text(&f);
    text["pad_id"] = json!(49408);
    let err = Tokenizer::load(&package(text)).unwrap_err();
    assert!(matches!(&err, ModelError::Invalid { .. }) && err.to_string().contains("49408 tokens"), "{err}");

    // CLIP adds BOS and EOS: two tokens leave no room for the prompt.
    let mut text = huggingface_text(&f);
    text["max_tokens"] = json!(2);
    let err = Tokenizer::load(&package(text)).unwrap_err();
    assert!(err.to_string().contains("`text.max_tokens` 2"), "{err}");

    // Three leave room for one token: truncation keeps BOS and EOS.
    let mut text = huggingface_text(&f);
    text["max_tokens"] = json!(3);
    let ids = Tokenizer::load(&package(text)).unwrap().encode("a red circle").unwrap();
    assert_eq!(ids, [49406, f.cases[0].1[1], 49407]);
}

#[test]
fn unknown_kinds_and_incomplete_words_packages_are_refused() {
    let shipped: Value = serde_json::from_str(SHIPPED_MODEL_JSON).unwrap();
    let refused = |text: Value| {
        let err = ModelPackage::from_files(files(model_json(text), &[])).unwrap_err();
        assert!(matches!(&err, ModelError::Invalid { .. }), "{err}");
        err.to_string()
    };
    let mut text = shipped["text"].clone();
    text["tokenizer"] = json!("sentencepiece");
    let err = refused(text);
    assert!(
        err.contains("`sentencepiece`") && err.contains("`huggingface`") && err.contains("`words`"),
        "{err}"
    );

    let mut text = shipped["text"].clone();
    text.as_object_mut().unwrap().remove("empty_id");
    assert!(refused(text).contains("`text.empty_id` is missing"));

    let mut text = shipped["text"].clone();
    text.as_object_mut().unwrap().remove("vocabulary");
    assert!(refused(text).contains("outside the vocabulary (0 words)"));

    // The shipped words package still loads, and its tokenizer still works.
    let package = ModelPackage::from_files(files(SHIPPED_MODEL_JSON.into(), &[])).unwrap();
    let tokenizer = Tokenizer::load(&package).unwrap();
    let ids = tokenizer.encode("a red circle moving right on a black background").unwrap();
    assert_eq!(ids.len(), package.text.max_tokens);
    assert_eq!(tokenizer.encode("").unwrap()[0], package.text.empty_id.unwrap());
}
