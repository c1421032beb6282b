//! Checkpoints of a run whose decoder carries state (the reduced Wan package: 1 frame from the
//! first latent, 4 from each later one): resumed after any frame, in a fresh run, the frames equal
//! those of an uninterrupted run bit for bit; a checkpoint that does not fit the package resuming
//! it is refused with the mismatch named. On the CPU backend (host queue), and on the GPU
//! backend's device loop (a software adapter), where the state stays on the device.

mod checkpoint_bytes;
mod onnx_common;

use checkpoint_bytes::edit_header;
use fifo_diffusion::fifo::{CheckpointError, FifoScheduler, PromptSchedule};
use fifo_diffusion::model::ModelPackage;
use fifo_diffusion::pipeline::{Frame, Generation, Models, PipelineError, RunOptions};
use fifo_diffusion::session::Backend;
use pollster::block_on;
use std::path::Path;

const PROMPT: &str = "a red panda walking through snow";
/// Frames of the reference run: latents 0 (frame 0), 1 (frames 1-4), 2 (5-8) and 3 (9-12).
const FRAMES: usize = 11;

fn wan_tiny() -> ModelPackage {
    ModelPackage::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/packages/wan-tiny"))
        .unwrap()
}

/// The same package with its first-latent graph as a plain (stateless) decoder of one frame per
/// latent: same name and settings, a decoder that is not causal.
fn wan_tiny_stateless() -> ModelPackage {
    let mut package = wan_tiny();
    let d = &mut package.graphs.decoder;
    d.file = d.first.take().unwrap();
    d.state.clear();
    d.next_state.clear();
    (d.frames_per_latent, d.first_frames) = (1, 1);
    package
}

fn start(package: ModelPackage) -> Generation {
    start_with(package, RunOptions::default())
}

fn start_with(package: ModelPackage, options: RunOptions) -> Generation {
    let mut config = Generation::config(&package);
    // Two partitions keep the queue short; guidance and lookahead stay on.
    (config.partitions, config.seed) = (2, 7);
    block_on(async {
        let models = Models::load(package, options).await.unwrap();
        Generation::start(models, config, PromptSchedule::single(PROMPT).unwrap()).await.unwrap()
    })
}

fn resume(package: ModelPackage, checkpoint: &[u8]) -> Result<Generation, PipelineError> {
    resume_with(package, RunOptions::default(), checkpoint)
}

fn resume_with(
    package: ModelPackage,
    options: RunOptions,
    checkpoint: &[u8],
) -> Result<Generation, PipelineError> {
    block_on(async {
        let models = Models::load(package, options).await?;
        Generation::resume(models, checkpoint).await
    })
}

fn frames(run: &mut Generation, n: usize) -> Vec<Frame> {
    (0..n).map(|_| block_on(run.next_frame()).unwrap()).collect()
}

fn header(bytes: &[u8]) -> serde_json::Value {
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    serde_json::from_slice(&bytes[12..12 + len]).unwrap()
}

#[test]
fn a_causal_run_resumed_after_any_frame_equals_the_uninterrupted_run() {
    let mut whole = start(wan_tiny());
    let reference = frames(&mut whole, FRAMES);
    let ids: Vec<u64> = reference.iter().map(|f| f.id).collect();
    assert_eq!(ids, (0..FRAMES as u64).collect::<Vec<_>>());
    assert!(reference.windows(2).any(|w| w[0].rgb != w[1].rgb), "the frames differ from each other");

    // Before the first latent; right after it (its 1 frame); mid-way through the second latent's
    // 4 frames (1 and 2 handed out, 3 and 4 pending); right after it.
    for k in [0usize, 1, 3, 5] {
        let mut first = start(wan_tiny());
        let mut got = frames(&mut first, k);
        let checkpoint = block_on(first.checkpoint()).unwrap();
        drop(first);
        let h = header(&checkpoint);
        if k == 0 {
            // Nothing decoded yet: the queue alone, as earlier builds wrote it.
            assert_eq!(h["format"], 1);
            assert!(h.get("decoder").is_none());
        } else {
            assert_eq!(h["format"], 2);
            let pending = if k == 3 { 2 } else { 0 };
            assert_eq!(h["decoder"]["pending"].as_array().unwrap().len(), pending, "k = {k}");
            assert_eq!(h["decoder"]["state"].as_array().unwrap().len(), 24);
            // Only a whole run restores the decoder's side.
            let bare = FifoScheduler::from_checkpoint(&checkpoint, Some("wan-tiny")).err();
            assert!(matches!(bare, Some(CheckpointError::DecoderState)), "k = {k}");
        }
        let mut resumed = resume(wan_tiny(), &checkpoint).unwrap();
        assert_eq!(resumed.frames_emitted(), k as u64);
        got.extend(frames(&mut resumed, FRAMES - k));
        for (g, want) in got.iter().zip(&reference) {
            assert!(g == want, "checkpoint after {k} frames: frame {} differs", want.id);
        }
        assert_eq!(got.len(), FRAMES);

        // A checkpoint of the resumed run, resumed again, still continues the same video.
        if k == 3 {
            let mut resumed = resume(wan_tiny(), &checkpoint).unwrap();
            frames(&mut resumed, 3);
            let again = block_on(resumed.checkpoint()).unwrap();
            let mut twice = resume(wan_tiny(), &again).unwrap();
            assert_eq!(twice.frames_emitted(), 6);
            assert!(frames(&mut twice, FRAMES - 6)[..] == reference[6..], "resumed twice");
        }
    }
}

#[test]
fn a_checkpoint_that_does_not_fit_the_decoder_is_refused_naming_the_mismatch() {
    let mut run = start(wan_tiny());
    frames(&mut run, 3);
    let causal = block_on(run.checkpoint()).unwrap();
    let refused = |package: ModelPackage, bytes: &[u8], expected: &str| {
        let err = resume(package, bytes).err().expect("refused").to_string();
        assert!(err.contains(expected), "{err}\n  should say: {expected}");
        assert!(err.contains("model `wan-tiny`"), "{err}");
    };

    // A causal run's checkpoint resumed with a stateless decoder, and the reverse.
    refused(wan_tiny_stateless(), &causal, "is not causal");
    let mut stateless = start(wan_tiny_stateless());
    frames(&mut stateless, 2);
    let plain = block_on(stateless.checkpoint()).unwrap();
    assert_eq!(header(&plain)["format"], 1);
    refused(wan_tiny(), &plain, "holds no decoder state after 2 latents");
    // The stateless package resumes its own checkpoint as before.
    let mut resumed = resume(wan_tiny_stateless(), &plain).unwrap();
    assert_eq!(resumed.frames_emitted(), 2);
    frames(&mut resumed, 1);

    // State that names other inputs, or has other shapes, than the package's decoder.
    let renamed = edit_header(&causal, |h| h["decoder"]["state"][5]["name"] = "cache_5".into());
    refused(wan_tiny(), &renamed, "names the inputs");
    let reshaped = edit_header(&causal, |h| {
        let shape = h["decoder"]["state"][0]["shape"].as_array_mut().unwrap();
        shape.reverse();
    });
    refused(wan_tiny(), &reshaped, "its decoder state `state_0` has shape");
    let dropped = edit_header(&causal, |h| {
        let state = h["decoder"]["state"].as_array_mut().unwrap();
        let last = state.pop().unwrap();
        // Keep the byte count: the previous tensor takes the last one's values.
        let extra: u64 = last["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product();
        let prev = state.last_mut().unwrap();
        let n: u64 = prev["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product();
        prev["shape"] = serde_json::json!([n + extra]);
    });
    refused(wan_tiny(), &dropped, "names the inputs");
    // Frame counts the decoder cannot have made, frames out of order, frames of another size.
    let miscounted = edit_header(&causal, |h| h["decoder"]["decoded"] = 9.into());
    refused(wan_tiny(), &miscounted, "its decoder made 9 frames from 2 latents");
    let reordered = edit_header(&causal, |h| h["decoder"]["pending"][0]["id"] = 4.into());
    refused(wan_tiny(), &reordered, "its pending frame 4 should be frame 3");
    let resized = edit_header(&causal, |h| {
        let f = &mut h["decoder"]["pending"][0];
        (f["width"], f["height"]) = (16.into(), 64.into());
    });
    refused(wan_tiny(), &resized, "is 16x64, the package's frames are 32x32");
}

#[test]
fn a_causal_run_on_the_device_loop_resumes_bit_for_bit() {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let options = RunOptions { backend: Backend::Gpu, gpu: Some(ctx), ..Default::default() };
    let mut whole = start_with(wan_tiny(), options.clone());
    assert_eq!(whole.queue_placement(), "device", "{:?}", whole.host_queue_reason());
    let reference = frames(&mut whole, FRAMES);
    for k in [1usize, 3] {
        let mut first = start_with(wan_tiny(), options.clone());
        let mut got = frames(&mut first, k);
        let checkpoint = block_on(first.checkpoint()).unwrap();
        drop(first);
        assert_eq!(header(&checkpoint)["format"], 2);
        let mut resumed = resume_with(wan_tiny(), options.clone(), &checkpoint).unwrap();
        assert_eq!(resumed.queue_placement(), "device");
        assert_eq!(resumed.frames_emitted(), k as u64);
        got.extend(frames(&mut resumed, FRAMES - k));
        for (g, want) in got.iter().zip(&reference) {
            assert!(g == want, "device loop, checkpoint after {k} frames: frame {} differs", want.id);
        }
    }
}
