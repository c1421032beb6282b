//! Checkpoint / resume: a resumed run continues bit for bit; damaged checkpoints are refused, a
//! causal decoder's section (format 2) included.

mod checkpoint_bytes;
mod common;

use checkpoint_bytes::edit_header;
use common::ToyDenoiser;
use fifo_diffusion::fifo::{
    CheckpointError, DecoderCheckpoint, FifoConfig, FifoScheduler, InitMode, PendingFrame, PromptSchedule,
    StateTensor,
};
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

/// A causal video decoder's side of a run: 5 frames decoded, 2 of them pending, two state tensors.
fn decoder_side() -> DecoderCheckpoint {
    let frame =
        |id: u64| PendingFrame { id, width: 3, height: 2, rgb: (0..18).map(|b| b * 7 + id as u8).collect() };
    DecoderCheckpoint {
        decoded: 5,
        pending: vec![frame(3), frame(4)],
        state: vec![
            StateTensor {
                name: "cache_0".into(),
                shape: vec![1, 2, 3],
                data: vec![0.5, -1.0, 2.25, 0.0, -0.0, 1e-30],
            },
            StateTensor { name: "cache_1".into(), shape: vec![4], data: vec![f32::MAX, f32::MIN, 3.0, -7.5] },
        ],
    }
}

#[test]
fn a_decoder_state_section_round_trips_and_damage_to_it_is_refused() {
    let c = config(InitMode::Noise);
    let mut m = model(&c);
    let mut s = FifoScheduler::from_noise(c, prompts()).unwrap();
    block_on(s.step(&mut m)).unwrap();
    let side = decoder_side();
    let good = s.checkpoint_with(MODEL_ID, Some(&side)).unwrap();

    // Without decoder state the bytes are format 1, as before; with it, format 2.
    let plain = s.checkpoint(MODEL_ID).unwrap();
    assert_eq!(s.checkpoint_with(MODEL_ID, None).unwrap(), plain);
    let format = |bytes: &[u8]| {
        let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        serde_json::from_slice::<serde_json::Value>(&bytes[12..12 + len]).unwrap()["format"].clone()
    };
    assert_eq!((format(&plain), format(&good)), (1.into(), 2.into()));
    // After the latents: the pending frames' bytes, then the state as f32 LE, then the CRC.
    let data = &good[good.len() - 4 - 18 * 2 - 4 * 10..good.len() - 4];
    let mut want: Vec<u8> = side.pending.iter().flat_map(|f| f.rgb.clone()).collect();
    want.extend(side.state.iter().flat_map(|t| t.data.iter().flat_map(|v| v.to_le_bytes())));
    assert_eq!(data, &want[..]);

    let (restored, back) = FifoScheduler::from_checkpoint_with(&good, Some(MODEL_ID)).unwrap();
    assert_eq!(back.as_ref(), Some(&side), "the decoder side round-trips bit for bit");
    assert_eq!(restored.checkpoint(MODEL_ID).unwrap(), plain, "and the queue with it");
    let (_, none) = FifoScheduler::from_checkpoint_with(&plain, Some(MODEL_ID)).unwrap();
    assert!(none.is_none());
    // The scheduler alone would drop the decoder's side: refused.
    assert!(matches!(FifoScheduler::from_checkpoint(&good, None), Err(CheckpointError::DecoderState)));

    // Every truncation and a sweep of single-byte corruptions over the whole file (the decoder's
    // data last): errors, never panics.
    for cut in 0..good.len() {
        assert!(FifoScheduler::from_checkpoint_with(&good[..cut], None).is_err(), "cut at {cut}");
    }
    for at in (0..good.len()).step_by(3).chain(good.len() - 100..good.len()) {
        let mut bad = good.clone();
        bad[at] ^= 0x04;
        assert!(FifoScheduler::from_checkpoint_with(&bad, None).is_err(), "byte {at}");
    }
    let mut longer = good.clone();
    longer.insert(good.len() - 4, 0);
    assert!(matches!(
        FifoScheduler::from_checkpoint_with(&longer, None),
        Err(CheckpointError::Truncated { .. })
    ));

    // Headers that are self-consistent (CRC right) but lie about the data: errors, never a panic
    // or a huge allocation (sizes that overflow; where usize is 32 bits, sizes it cannot hold).
    let load = |bytes: &[u8]| FifoScheduler::from_checkpoint_with(bytes, None).err().expect("refused");
    let huge = edit_header(&good, |h| h["decoder"]["pending"][0]["width"] = (u64::MAX / 2).into());
    assert!(matches!(load(&huge), CheckpointError::Corrupt | CheckpointError::Header(_)), "{}", load(&huge));
    let big = edit_header(&good, |h| {
        h["decoder"]["state"][1]["shape"] = serde_json::json!([1u64 << 40, 1u64 << 30])
    });
    assert!(matches!(load(&big), CheckpointError::Corrupt | CheckpointError::Header(_)), "{}", load(&big));
    let longer_state = edit_header(&good, |h| h["decoder"]["state"][1]["shape"] = serde_json::json!([5]));
    assert!(matches!(load(&longer_state), CheckpointError::Truncated { .. }));
    let missing = edit_header(&good, |h| h["decoder"]["pending"].as_array_mut().unwrap().clear());
    assert!(matches!(load(&missing), CheckpointError::Truncated { .. }));
    let future = edit_header(&good, |h| h["format"] = 3.into());
    let err = load(&future).to_string();
    assert!(err.contains("format 3 is not supported") && err.contains("formats 1 to 2"), "{err}");
    let mislabelled = edit_header(&good, |h| h["format"] = 1.into());
    assert!(matches!(load(&mislabelled), CheckpointError::Header(_)));
    let typo = edit_header(&good, |h| h["decoder"]["state"][0]["shape"] = "1x2x3".into());
    assert!(matches!(load(&typo), CheckpointError::Header(_)));
    // Shapes that keep the byte count read back as they say.
    let reshaped = edit_header(&good, |h| h["decoder"]["state"][0]["shape"] = serde_json::json!([6]));
    let (_, back) = FifoScheduler::from_checkpoint_with(&reshaped, None).unwrap();
    assert_eq!(back.unwrap().state[0].shape, [6]);

    // A decoder side that does not describe its own data is not written.
    let mut wrong = decoder_side();
    wrong.state[1].data.pop();
    let err = s.checkpoint_with(MODEL_ID, Some(&wrong)).unwrap_err();
    assert!(
        matches!(&err, CheckpointError::BadDecoderState(m) if m.contains("`cache_1` holds 3 values")),
        "{err}"
    );
    let mut wrong = decoder_side();
    wrong.pending[0].rgb.push(0);
    assert!(matches!(s.checkpoint_with(MODEL_ID, Some(&wrong)), Err(CheckpointError::BadDecoderState(_))));
}
