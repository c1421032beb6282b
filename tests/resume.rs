//! Checkpoint / resume: a resumed run continues bit for bit; damaged checkpoints are refused.

mod common;

use common::ToyDenoiser;
use fifo_diffusion::fifo::{CheckpointError, FifoConfig, FifoScheduler, InitMode, PromptSchedule};
use fifo_diffusion::schedule::DiffusionSchedule;
use pollster::block_on;

fn config(init: InitMode) -> FifoConfig {
    FifoConfig {
        window: 4,
        partitions: 2,
        lookahead: true,
        eta: 1.0,
        guidance: 4.0,
        seed: 99,
        init,
        frame_shape: vec![3, 2, 2],
        schedule: DiffusionSchedule::videocrafter(),
    }
}

fn model(config: &FifoConfig) -> ToyDenoiser {
    ToyDenoiser::new(config.schedule.alphas_cumprod(), vec![0.0, 0.3, -0.6])
}

fn prompts() -> PromptSchedule {
    PromptSchedule::parse("0: first prompt\n12..20: second prompt").unwrap()
}

const MODEL_ID: &str = "toy@1";

#[test]
fn resuming_after_k_iterations_equals_an_uninterrupted_run() {
    for init in [InitMode::Noise, InitMode::Clip] {
        let c = config(init);
        let mut m = model(&c);
        let mut whole = block_on(FifoScheduler::start(c.clone(), prompts(), &mut m)).unwrap();
        let mut reference = Vec::new();
        for _ in 0..60 {
            if let Some(frame) = block_on(whole.step(&mut m)).unwrap() {
                reference.push(frame.latent.to_vec());
            }
        }
        // Stop during the warm-up, right at the first emission and mid-video.
        for stop in [3u64, whole.layout().first_emit, 37] {
            let mut first = block_on(FifoScheduler::start(c.clone(), prompts(), &mut m)).unwrap();
            let mut frames = Vec::new();
            for _ in 0..stop {
                if let Some(frame) = block_on(first.step(&mut m)).unwrap() {
                    frames.push(frame.latent.to_vec());
                }
            }
            let bytes = first.checkpoint(MODEL_ID).unwrap();
            drop(first);
            let mut resumed = FifoScheduler::from_checkpoint(&bytes, Some(MODEL_ID)).unwrap();
            assert_eq!(resumed.iteration(), stop);
            let mut fresh_model = model(&c);
            for _ in stop..60 {
                if let Some(frame) = block_on(resumed.step(&mut fresh_model)).unwrap() {
                    frames.push(frame.latent.to_vec());
                }
            }
            assert_eq!(frames, reference, "{init:?}: resumed after {stop} iterations");
        }
    }
}

#[test]
fn damaged_or_foreign_checkpoints_are_refused_with_a_reason() {
    let c = config(InitMode::Noise);
    let mut m = model(&c);
    let mut s = FifoScheduler::from_noise(c, prompts()).unwrap();
    block_on(s.step(&mut m)).unwrap();
    let good = s.checkpoint(MODEL_ID).unwrap();
    let load = |bytes: &[u8]| FifoScheduler::from_checkpoint(bytes, Some(MODEL_ID)).err().unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() - 40;
    flipped[middle] ^= 0x10;
    assert!(matches!(load(&flipped), CheckpointError::Corrupt));
    assert!(matches!(load(&good[..good.len() - 9]), CheckpointError::Truncated { .. }));
    assert!(matches!(load(&good[..10]), CheckpointError::Truncated { .. }));
    assert!(matches!(load(b"PNG\x89 not a checkpoint"), CheckpointError::NotACheckpoint));
    assert!(matches!(load(&[]), CheckpointError::NotACheckpoint));
    let foreign = FifoScheduler::from_checkpoint(&good, Some("another-model")).err().unwrap();
    assert!(foreign.to_string().contains("made with model `toy@1`"), "{foreign}");
    assert!(FifoScheduler::from_checkpoint(&good, None).is_ok());

    // Every truncation and a sweep of single-byte corruptions: errors, never panics.
    for cut in 0..good.len() {
        assert!(FifoScheduler::from_checkpoint(&good[..cut], None).is_err());
    }
    for at in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[at] = bad[at].wrapping_add(1);
        assert!(FifoScheduler::from_checkpoint(&bad, None).is_err(), "byte {at}");
    }

    block_on(s.denoise_windows(&mut m, &[0])).unwrap();
    assert!(matches!(s.checkpoint(MODEL_ID), Err(CheckpointError::MidIteration)));
}
