//! Invariants of the FIFO loop that hold for any model.

mod common;

use common::{Recorder, ToyDenoiser, ZeroDenoiser};
use fifo_diffusion::fifo::{FifoConfig, FifoError, FifoScheduler, InitMode, PromptSchedule};
use fifo_diffusion::schedule::{DiffusionSchedule, FinalAlpha};
use pollster::block_on;

fn config(lookahead: bool, init: InitMode) -> FifoConfig {
    FifoConfig {
        window: 4,
        partitions: 3,
        lookahead,
        eta: 1.0,
        guidance: 2.5,
        seed: 7,
        init,
        frame_shape: vec![2, 3, 3],
        schedule: DiffusionSchedule::videocrafter(),
    }
}

fn toy(config: &FifoConfig) -> ToyDenoiser {
    ToyDenoiser::new(config.schedule.alphas_cumprod(), vec![0.0, 0.4, -0.3])
}

fn prompts() -> PromptSchedule {
    PromptSchedule::parse("0: a red circle\n6..10: a blue square").unwrap()
}

/// Frames from `scheduler.step` with all windows in one call.
fn frames_batched(config: &FifoConfig, windows_per_call: usize, count: usize) -> Vec<Vec<f32>> {
    let mut model = toy(config);
    let mut s = block_on(FifoScheduler::start(config.clone(), prompts(), &mut model)).unwrap();
    s.set_windows_per_call(windows_per_call);
    (0..count).map(|_| block_on(s.next_frame(&mut model)).unwrap().latent.to_vec()).collect()
}

/// Frames with windows in reverse order, split over two "devices" (two model instances).
fn frames_split(config: &FifoConfig, count: usize) -> Vec<Vec<f32>> {
    let (mut a, mut b) = (toy(config), toy(config));
    let mut s = block_on(FifoScheduler::start(config.clone(), prompts(), &mut a)).unwrap();
    let mut frames = Vec::new();
    while frames.len() < count {
        let ids: Vec<usize> = (0..s.windows().len()).rev().collect();
        let (odd, even): (Vec<usize>, Vec<usize>) = ids.iter().partition(|&&id| id % 2 == 1);
        block_on(s.denoise_windows(&mut b, &odd)).unwrap();
        block_on(s.denoise_windows(&mut a, &even)).unwrap();
        if let Some(frame) = s.finish_iteration().unwrap() {
            frames.push(frame.latent.to_vec());
        }
    }
    frames
}

#[test]
fn batching_order_and_device_split_give_identical_frames() {
    for lookahead in [false, true] {
        for init in [InitMode::Noise, InitMode::Clip] {
            let c = config(lookahead, init);
            let reference = frames_batched(&c, usize::MAX, 20);
            assert_eq!(reference, frames_batched(&c, 1, 20), "one window per call, {lookahead} {init:?}");
            assert_eq!(reference, frames_batched(&c, 2, 20), "two windows per call, {lookahead} {init:?}");
            assert_eq!(reference, frames_split(&c, 20), "reversed and split, {lookahead} {init:?}");
        }
    }
}

/// With a zero noise prediction and eta = 0 a DDIM step multiplies a latent by its index's
/// `c_x`, distinct for every index; so each slot shows how many steps, at which index, it got.
#[test]
fn every_ddim_index_is_applied_exactly_once_per_iteration() {
    for lookahead in [false, true] {
        for init in [InitMode::Noise, InitMode::Clip] {
            let mut c = config(lookahead, init);
            c.eta = 0.0;
            c.schedule.final_alpha = FinalAlpha::One;
            let mut s = block_on(FifoScheduler::start(c.clone(), prompts(), &mut ZeroDenoiser)).unwrap();
            let layout = s.layout().clone();
            for _ in 0..40 {
                let it = s.iteration();
                let before: Vec<Vec<f32>> = (0..layout.len()).map(|p| s.slot(p).to_vec()).collect();
                let emitted = block_on(s.step(&mut ZeroDenoiser)).unwrap().map(|e| e.latent.to_vec());
                let mut seen = vec![0; layout.steps];
                // The head frame leaves the queue: only the emitted copy shows its step.
                if let Some(emitted) = emitted {
                    let cx = s.table().entry(layout.label(layout.head, it)).c_x as f32;
                    let expected: Vec<f32> = before[layout.head].iter().map(|v| cx * v).collect();
                    assert_eq!(emitted, expected, "emitted frame at iteration {it}");
                    if layout.head == 0 {
                        seen[0] += 1;
                    }
                }
                for (p, old) in before.iter().enumerate().skip(1) {
                    let expected: Vec<f32> = if layout.written_slots().contains(&p) {
                        let label = layout.label(p, it);
                        seen[label] += 1;
                        let cx = s.table().entry(label).c_x as f32;
                        old.iter().map(|v| cx * v).collect()
                    } else {
                        old.clone()
                    };
                    assert_eq!(s.slot(p - 1), &expected[..], "slot {p} at iteration {it}");
                }
                if it as usize >= layout.len() {
                    assert!(seen.iter().all(|&n| n == 1), "indices written {seen:?}");
                }
            }
        }
    }
}

/// Each frame keeps the conditioning of the output frame it becomes, so a prompt change moves
/// through the queue with its frames instead of switching the whole queue at once.
#[test]
fn each_frame_carries_its_own_conditioning_and_timestep() {
    let c = config(true, InitMode::Noise);
    let schedule = prompts();
    let mut model = Recorder::default();
    let mut s = FifoScheduler::from_noise(c.clone(), schedule.clone()).unwrap();
    let layout = s.layout().clone();
    let (f, copies) = (c.window, 2);
    let mut mixed_queue_seen = false;
    for _ in 0..60 {
        let it = s.iteration();
        block_on(s.step(&mut model)).unwrap();
        let conds = model.conditioning.last().unwrap();
        let times = model.timesteps.last().unwrap();
        assert_eq!(conds.len(), layout.windows().len() * f * copies);
        let mut prompts_in_queue = std::collections::BTreeSet::new();
        for (w, window) in layout.windows().iter().enumerate() {
            for j in 0..f {
                let slot = window.start + j;
                let cond = conds[w * f + j];
                assert_eq!(cond, schedule.at(layout.frame_id(slot, it)), "iteration {it} slot {slot}");
                let uncond = conds[(layout.windows().len() + w) * f + j];
                assert_eq!((uncond.from, uncond.to), (0, 0));
                let t = times[w * f + j];
                assert_eq!(t, s.table().entry(layout.label(slot, it)).timestep as f32);
                prompts_in_queue.insert(cond.to);
            }
        }
        mixed_queue_seen |= prompts_in_queue.len() > 1;
    }
    assert!(mixed_queue_seen, "the queue never held frames of two prompts at once");
}

#[test]
fn misuse_of_the_window_api_is_an_error() {
    let c = config(true, InitMode::Noise);
    let mut model = toy(&c);
    let mut s = FifoScheduler::from_noise(c, prompts()).unwrap();
    block_on(s.denoise_windows(&mut model, &[1])).unwrap();
    assert!(matches!(block_on(s.denoise_windows(&mut model, &[1])), Err(FifoError::WindowTwice { .. })));
    assert!(matches!(block_on(s.denoise_windows(&mut model, &[2, 2])), Err(FifoError::WindowTwice { .. })));
    assert!(matches!(block_on(s.denoise_windows(&mut model, &[99])), Err(FifoError::WindowTwice { .. })));
    assert!(matches!(s.finish_iteration(), Err(FifoError::WindowMissing { window: 0 })));
}

#[test]
fn impossible_settings_are_clear_errors() {
    let mut c = config(true, InitMode::Noise);
    c.window = 5;
    let err = FifoScheduler::from_noise(c, prompts()).err().unwrap().to_string();
    assert!(err.contains("even window"), "{err}");
    let mut c = config(false, InitMode::Noise);
    c.partitions = 300;
    let err = FifoScheduler::from_noise(c, prompts()).err().unwrap().to_string();
    assert!(err.contains("at most 1000 steps"), "{err}");
    let c = config(false, InitMode::Clip);
    let err = FifoScheduler::from_clip(c, prompts(), &[0.0; 3]).err().unwrap().to_string();
    assert!(err.contains("must hold 4 frames of 18 values"), "{err}");
}

struct Failing;
impl fifo_diffusion::fifo::Denoiser for Failing {
    async fn denoise(
        &mut self,
        _: &fifo_diffusion::fifo::DenoiseRequest<'_>,
        out: &mut [f32],
    ) -> Result<(), fifo_diffusion::fifo::DenoiserError> {
        out.fill(f32::NAN);
        Ok(())
    }
}

#[test]
fn a_model_returning_nan_stops_the_run_without_touching_the_queue() {
    let c = config(false, InitMode::Noise);
    let mut s = FifoScheduler::from_noise(c, prompts()).unwrap();
    let before: Vec<f32> = s.slot(3).to_vec();
    assert!(matches!(block_on(s.step(&mut Failing)), Err(FifoError::NonFiniteModelOutput)));
    assert_eq!(s.slot(3), &before[..]);
    assert_eq!(s.iteration(), 0);
}

/// The same frames, bit for bit, on every target: CI runs this natively and on wasm32 (WASI).
#[test]
fn frames_are_bit_identical_on_every_target() {
    let mut digests = Vec::new();
    for (lookahead, init) in [(true, InitMode::Noise), (false, InitMode::Clip)] {
        // Cosine betas put libm's cos into the schedule; v-prediction keeps it stable.
        let schedule = DiffusionSchedule {
            betas: fifo_diffusion::schedule::BetaSchedule::Cosine,
            prediction: fifo_diffusion::schedule::Prediction::VPrediction,
            ..DiffusionSchedule::videocrafter()
        };
        let c = FifoConfig { schedule, ..config(lookahead, init) };
        let mut model = common::LinearDenoiser;
        let mut s = block_on(FifoScheduler::start(c, prompts(), &mut model)).unwrap();
        let mut bytes = Vec::new();
        for _ in 0..30 {
            let frame = block_on(s.next_frame(&mut model)).unwrap();
            frame.latent.iter().for_each(|v| bytes.extend_from_slice(&v.to_bits().to_le_bytes()));
        }
        digests.push(crc32fast::hash(&bytes));
    }
    assert_eq!(digests, [1_139_435_059, 1_324_459_950], "digests of 30 frames");
}
