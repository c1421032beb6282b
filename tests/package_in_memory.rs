//! A model package held in memory (what the browser fetches) runs exactly like the same package
//! read from its folder, and an incomplete one names the missing file.

use fifo_diffusion::fifo::PromptSchedule;
use fifo_diffusion::model::{ModelError, ModelPackage};
use fifo_diffusion::pipeline::{Frame, Generation, Models, PipelineError, RunOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/shapes-t2v-tiny")
}

fn shipped_files() -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(shipped_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "onnx" || x == "data" || x == "json"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// Two frames with the cheapest settings: one partition, no lookahead, no guidance.
fn two_frames(package: ModelPackage) -> Result<Vec<Frame>, PipelineError> {
    pollster::block_on(async {
        let mut config = Generation::config(&package);
        (config.partitions, config.lookahead, config.guidance, config.seed) = (1, false, 1.0, 3);
        let models = Models::load(package, RunOptions::default()).await?;
        let prompts = PromptSchedule::single("a red circle moving right on a black background").unwrap();
        let mut run = Generation::start(models, config, prompts).await?;
        Ok(vec![run.next_frame().await?, run.next_frame().await?])
    })
}

#[test]
#[cfg_attr(target_arch = "wasm32", ignore = "reads the shipped package from disk")]
fn a_package_in_memory_generates_the_same_frames_as_on_disk() {
    let from_disk = two_frames(ModelPackage::load(&shipped_dir()).unwrap()).unwrap();
    let in_memory = two_frames(ModelPackage::from_files(shipped_files()).unwrap()).unwrap();
    assert_eq!(from_disk.len(), 2);
    assert!(from_disk == in_memory, "frames differ between the package on disk and in memory");
}

#[test]
#[cfg_attr(target_arch = "wasm32", ignore = "reads the shipped package from disk")]
fn a_package_in_memory_names_the_file_it_lacks() {
    let mut files = shipped_files();
    files.remove("decoder.onnx");
    let err = ModelPackage::from_files(files).unwrap_err();
    assert!(matches!(&err, ModelError::FileMissing { file } if file == "decoder.onnx"), "{err}");

    // The UNet of the weights not chosen need not be fetched; the chosen one must be there.
    let mut files = shipped_files();
    files.remove("unet.int8.onnx");
    let package = ModelPackage::from_files(files).unwrap();
    assert!(two_frames(package).is_ok());
    let mut files = shipped_files();
    files.remove("unet.onnx");
    let err = two_frames(ModelPackage::from_files(files).unwrap()).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Model(ModelError::FileMissing { file }) if file == "unet.onnx"),
        "{err}"
    );

    let mut files = shipped_files();
    files.remove("decoder.onnx.data");
    let package = ModelPackage::from_files(files).unwrap();
    let err = two_frames(package).unwrap_err().to_string();
    assert!(err.contains("decoder") && err.contains("decoder.onnx.data"), "{err}");

    let err = ModelPackage::from_files(BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("model.json"), "{err}");
}
