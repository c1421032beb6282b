//! The parity check against the official loop, shared by the native tests
//! (`tests/parity_official.rs`) and the browser tests (`web/tests/browser.rs`).

use super::ToyDenoiser;
use fifo_diffusion::fifo::{FifoConfig, FifoScheduler, InitMode, PromptSchedule};
use fifo_diffusion::schedule::{BetaSchedule, DiffusionSchedule, FinalAlpha, Prediction, TimestepSpacing};
use serde::Deserialize;

/// Frames must match the float64 reference within this, relative to max(1, |reference|): the
/// scheduler keeps latents in f32 as on the device; the drift measured is about 1e-6.
const PARITY_TOLERANCE: f64 = 1e-5;

#[derive(Deserialize)]
pub struct Case {
    pub case: String,
    f: usize,
    n: usize,
    lookahead: bool,
    init: String,
    eta: f64,
    guidance: f64,
    seed: u64,
    frame_shape: Vec<usize>,
    #[serde(rename = "T")]
    train_steps: usize,
    beta_start: f64,
    beta_end: f64,
    pub prompt_value: f64,
    pub frames: usize,
    timesteps: Vec<usize>,
    sigmas: Vec<f64>,
    pub clip: Option<Vec<Vec<f64>>>,
    initial_queue: Vec<Vec<f64>>,
    output: Vec<Vec<f64>>,
}

pub fn config(case: &Case) -> FifoConfig {
    FifoConfig {
        window: case.f,
        partitions: case.n,
        lookahead: case.lookahead,
        eta: case.eta,
        guidance: case.guidance,
        seed: case.seed,
        init: if case.init == "clip" { InitMode::Clip } else { InitMode::Noise },
        frame_shape: case.frame_shape.clone(),
        schedule: DiffusionSchedule {
            train_timesteps: case.train_steps,
            betas: BetaSchedule::ScaledLinear { start: case.beta_start, end: case.beta_end },
            prediction: Prediction::Epsilon,
            spacing: TimestepSpacing::OfficialLinspace,
            final_alpha: FinalAlpha::FirstTrainStep,
        },
    }
}

/// Asserts the tolerance and returns the largest error seen.
pub fn assert_close(what: &str, got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(g) - w).abs() / w.abs().max(1.0);
        assert!(err <= PARITY_TOLERANCE, "{what}[{i}]: {g} vs reference {w} (error {err:.2e})");
        worst = worst.max(err);
    }
    worst
}

/// Runs one fixture's case through the scheduler: timestep grid, noise levels, initial queue
/// and every frame against the reference. Returns the largest relative error.
pub async fn check_case(case: &Case) -> f64 {
    let config = config(case);
    let table =
        fifo_diffusion::schedule::StepTable::new(&config.schedule, config.steps(), config.eta).unwrap();
    let grid: Vec<f64> = table.entries().iter().map(|e| e.timestep).collect();
    let want: Vec<f64> = case.timesteps.iter().map(|&t| t as f64).collect();
    assert_eq!(grid, want, "{}: timestep grid", case.case);
    for (e, &sigma) in table.entries().iter().zip(&case.sigmas) {
        assert!((e.sigma - sigma).abs() < 1e-12, "{}: sigma {} vs {sigma}", case.case, e.sigma);
    }

    let prompts = PromptSchedule::single("the prompt").unwrap();
    let mut model = ToyDenoiser::new(config.schedule.alphas_cumprod(), vec![0.0, case.prompt_value]);
    let mut scheduler = FifoScheduler::start(config, prompts, &mut model).await.unwrap();
    for (slot, want) in case.initial_queue.iter().enumerate() {
        assert_close(&format!("{}: initial slot {slot}", case.case), scheduler.slot(slot), want);
    }
    let mut worst = 0.0f64;
    for (k, want) in case.output.iter().enumerate() {
        let frame = scheduler.next_frame(&mut model).await.unwrap();
        assert_eq!(frame.id, k as u64);
        worst = worst.max(assert_close(&format!("{}: frame {k}", case.case), frame.latent, want));
    }
    assert_eq!(case.output.len(), case.frames);
    worst
}
