//! Rectified-flow (flow-matching) sampling, as Wan 2.1 is sampled: the step table against
//! diffusers' `FlowMatchEulerDiscreteScheduler` (`tests/fixtures/flow/flow_match_euler.json`,
//! written by `tools/reference/flow_schedule_fixtures.py`), and whole FIFO runs against the
//! float64 flow reference loop (`tests/fixtures/flow/fifo_*.json`, written by
//! `tools/reference/fifo_flow.py` with a toy velocity model).

mod common;

use common::parity::assert_close;
use fifo_diffusion::fifo::{
    sample_clip, DenoiseRequest, Denoiser, DenoiserError, FifoConfig, FifoScheduler, FrameConditioning,
    InitMode, PromptSchedule,
};
use fifo_diffusion::rng::{NoiseKey, NoisePurpose};
use fifo_diffusion::schedule::{DiffusionSchedule, StepTable};
use pollster::block_on;
use serde::Deserialize;

/// Our grid is computed in f64, diffusers' in f32 (torch/numpy): noise levels and model
/// timesteps must agree to this, relative.
const SCHEDULE_TOLERANCE: f64 = 1e-6;
/// One Euler step on f32 latents: ours folds `s' - s` in f64 then rounds it, diffusers subtracts
/// its f32 sigmas; relative to max(1, |x'|).
const EULER_TOLERANCE: f64 = 1e-6;

fn dir() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/flow")
}

#[derive(Deserialize)]
struct DiffusersFixture {
    cases: Vec<DiffusersCase>,
}

#[derive(Deserialize)]
struct DiffusersCase {
    steps: usize,
    shift: f64,
    train_timesteps: usize,
    /// Descending, `steps + 1` values with the final 0.
    sigmas: Vec<f32>,
    /// Descending, `steps` values.
    timesteps: Vec<f32>,
    euler: Vec<EulerCase>,
}

#[derive(Deserialize)]
struct EulerCase {
    /// diffusers' step position (0 = the noisiest level).
    k: usize,
    x: Vec<f32>,
    v: Vec<f32>,
    prev: Vec<f32>,
}

fn diffusers_cases() -> Vec<DiffusersCase> {
    let text = std::fs::read_to_string(format!("{}/flow_match_euler.json", dir())).unwrap();
    let fixture: DiffusersFixture = serde_json::from_str(&text).unwrap();
    assert!(fixture.cases.len() >= 4, "flow fixture missing cases");
    fixture.cases
}

fn table(steps: usize, shift: f64, train: usize) -> StepTable {
    let schedule = DiffusionSchedule { train_timesteps: train, ..DiffusionSchedule::rectified_flow(shift) };
    StepTable::new(&schedule, steps, 0.0).unwrap()
}

fn assert_relative(what: &str, got: f64, want: f64, tolerance: f64) {
    let err = (got - want).abs() / want.abs();
    assert!(err <= tolerance, "{what}: {got} vs diffusers {want} (relative error {err:.2e})");
}

/// Noise levels, the level each step goes to and the model timesteps are diffusers'.
#[test]
fn table_matches_diffusers_flow_match_euler() {
    for c in diffusers_cases() {
        let t = table(c.steps, c.shift, c.train_timesteps);
        assert_eq!((t.len(), c.sigmas.len(), c.timesteps.len()), (c.steps, c.steps + 1, c.steps));
        assert_eq!(*c.sigmas.last().unwrap(), 0.0);
        for i in 0..c.steps {
            // Our index i (0 = cleanest) is diffusers' step k = S - 1 - i.
            let (k, e) = (c.steps - 1 - i, t.entry(i));
            let what = |name: &str| format!("steps {} shift {} index {i}: {name}", c.steps, c.shift);
            assert_relative(&what("sigma"), e.noise_scale, c.sigmas[k].into(), SCHEDULE_TOLERANCE);
            assert_relative(&what("timestep"), e.timestep, c.timesteps[k].into(), SCHEDULE_TOLERANCE);
            let told = f64::from(e.timestep as f32);
            assert_relative(&what("f32 timestep"), told, c.timesteps[k].into(), SCHEDULE_TOLERANCE);
            let next = e.noise_scale + e.c_model;
            match k + 1 == c.steps {
                true => assert_eq!(next, 0.0, "{}", what("the last step goes to 0")),
                false => {
                    assert_relative(&what("next sigma"), next, c.sigmas[k + 1].into(), SCHEDULE_TOLERANCE)
                }
            }
            assert_eq!((e.c_x, e.c_noise, e.signal), (1.0, 0.0, 1.0 - e.noise_scale), "{}", what("step"));
        }
    }
}

/// `StepTable::apply` at diffusers' step k is `scheduler.step(v, timesteps[k], x)`.
#[test]
fn euler_step_matches_diffusers_step() {
    let mut checked = 0;
    for c in diffusers_cases() {
        let t = table(c.steps, c.shift, c.train_timesteps);
        for s in &c.euler {
            let mut x = s.x.clone();
            t.apply(c.steps - 1 - s.k, &mut x, &s.v, None);
            for (j, (&got, &want)) in x.iter().zip(&s.prev).enumerate() {
                let err = (f64::from(got) - f64::from(want)).abs() / f64::from(want).abs().max(1.0);
                assert!(
                    err <= EULER_TOLERANCE,
                    "steps {} shift {} k {} element {j}: {got} vs diffusers {want} ({err:.2e})",
                    c.steps,
                    c.shift,
                    s.k
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 12);
}

/// The clip start forward-noises on the straight path: slot at index i holds
/// `(1 - s_i) x0 + s_i z`, and the noisiest index (s = 1) exactly its noise.
#[test]
fn a_flow_queue_is_filled_with_one_minus_sigma_x0_plus_sigma_z() {
    for lookahead in [false, true] {
        let config = flow_config(4, 3, lookahead, InitMode::Clip, 2.0, 17, 3.0, vec![2, 3]);
        let clip: Vec<f32> = (0..4 * 6).map(|i| (i as f32 * 0.61).cos() * 1.3).collect();
        let prompts = PromptSchedule::single("a prompt").unwrap();
        let s = FifoScheduler::from_clip(config.clone(), prompts, &clip).unwrap();
        let (layout, frame_len) = (s.layout(), config.frame_len());
        let steps = config.steps();
        for slot in 0..layout.len() {
            let index = layout.base_label(slot);
            let source = if slot < layout.head { 0 } else { index.saturating_sub(steps - 4) };
            let key = NoiseKey {
                seed: 17,
                frame: layout.frame_id(slot, 0),
                index: index as u16,
                purpose: NoisePurpose::Renoise,
            };
            let mut z = vec![0.0f32; frame_len];
            key.fill_normal(&mut z);
            let sigma = s.table().entry(index).noise_scale;
            for (e, (&got, &z)) in s.slot(slot).iter().zip(&z).enumerate() {
                let x0 = f64::from(clip[source * frame_len + e]);
                let want = (1.0 - sigma) * x0 + sigma * f64::from(z);
                assert!((f64::from(got) - want).abs() < 1e-6, "slot {slot} element {e}: {got} vs {want}");
            }
            if index == steps - 1 {
                assert_eq!(sigma, 1.0);
                assert_eq!(s.slot(slot), &z[..], "slot {slot}: pure noise at sigma 1");
            }
        }
    }
}

#[test]
fn a_stochastic_flow_run_is_refused_with_the_fix() {
    let config = FifoConfig { eta: 1.0, ..flow_config(4, 2, true, InitMode::Noise, 1.0, 1, 3.0, vec![2]) };
    let prompts = PromptSchedule::single("a prompt").unwrap();
    let err =
        FifoScheduler::from_noise(config, prompts).err().expect("eta 1 with flow must fail").to_string();
    assert!(err.contains("eta must be 0"), "{err}");
}

#[allow(clippy::too_many_arguments)]
fn flow_config(
    f: usize,
    n: usize,
    lookahead: bool,
    init: InitMode,
    guidance: f64,
    seed: u64,
    shift: f64,
    frame_shape: Vec<usize>,
) -> FifoConfig {
    FifoConfig {
        window: f,
        partitions: n,
        lookahead,
        eta: 0.0,
        guidance,
        seed,
        init,
        frame_shape,
        schedule: DiffusionSchedule::rectified_flow(shift),
    }
}

/// The toy velocity model of `tools/reference/fifo_flow.py` (`toy_velocity`): deterministic,
/// mixes the frames of a window, depends on each frame's (non-integer) timestep and prompt.
struct ToyVelocity {
    prompt_values: Vec<f64>,
}

impl Denoiser for ToyVelocity {
    async fn denoise(&mut self, r: &DenoiseRequest<'_>, out: &mut [f32]) -> Result<(), DenoiserError> {
        let (f, d) = (r.frames, r.frame_len);
        let condition = |c: FrameConditioning| {
            let v = |id: u32| self.prompt_values[id as usize];
            (1.0 - f64::from(c.mix)) * v(c.from) + f64::from(c.mix) * v(c.to)
        };
        for w in 0..r.windows {
            let x = |j: usize, e: usize| f64::from(r.latents[(w * f + j) * d + e]);
            for e in 0..d {
                let mean = (0..f).map(|j| x(j, e)).sum::<f64>() / f as f64;
                for j in 0..f {
                    let t = f64::from(r.timesteps[w * f + j]);
                    let c = condition(r.conditioning[w * f + j]);
                    let arg = 0.5 * mean
                        + 0.3 * x((j + 1) % f, e)
                        + 0.05 * j as f64
                        + c
                        + 0.001 * t
                        + 0.01 * e as f64;
                    out[(w * f + j) * d + e] = ((0.5 + 0.0003 * t) * x(j, e) + 0.2 * arg.tanh()) as f32;
                }
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct LoopCase {
    case: String,
    f: usize,
    n: usize,
    lookahead: bool,
    init: String,
    guidance: f64,
    seed: u64,
    shift: f64,
    frame_shape: Vec<usize>,
    #[serde(rename = "T")]
    train_steps: usize,
    prompt_value: f64,
    frames: usize,
    sigmas: Vec<f64>,
    timesteps: Vec<f64>,
    initial_queue: Vec<Vec<f64>>,
    clip: Option<Vec<Vec<f64>>>,
    output: Vec<Vec<f64>>,
}

/// Whole FIFO runs with a flow schedule (both starts, lookahead on and off, with and without
/// guidance) emit the reference loop's frames, within the DDIM parity tolerance (1e-5).
#[test]
fn fifo_with_a_flow_schedule_matches_the_reference_loop() {
    let mut cases: Vec<LoopCase> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("fifo_"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        .collect();
    cases.sort_by(|a, b| a.case.cmp(&b.case));
    assert!(cases.len() >= 4, "flow loop fixtures missing");
    for c in &cases {
        let init = if c.init == "clip" { InitMode::Clip } else { InitMode::Noise };
        let mut config =
            flow_config(c.f, c.n, c.lookahead, init, c.guidance, c.seed, c.shift, c.frame_shape.clone());
        config.schedule.train_timesteps = c.train_steps;
        let t = StepTable::new(&config.schedule, config.steps(), 0.0).unwrap();
        for (i, e) in t.entries().iter().enumerate() {
            assert!((e.noise_scale - c.sigmas[i]).abs() < 1e-12, "{}: sigma {i}", c.case);
            assert!((e.timestep - c.timesteps[i]).abs() < 1e-9, "{}: timestep {i}", c.case);
        }
        let prompts = PromptSchedule::single("the prompt").unwrap();
        let mut model = ToyVelocity { prompt_values: vec![0.0, c.prompt_value] };
        if let Some(clip) = &c.clip {
            let got = block_on(sample_clip(&config, &prompts, &mut model)).unwrap();
            let want: Vec<f64> = clip.iter().flatten().copied().collect();
            assert_close(&format!("{}: clip", c.case), &got, &want);
        }
        let mut s = block_on(FifoScheduler::start(config, prompts, &mut model)).unwrap();
        for (slot, want) in c.initial_queue.iter().enumerate() {
            assert_close(&format!("{}: initial slot {slot}", c.case), s.slot(slot), want);
        }
        for (k, want) in c.output.iter().enumerate() {
            let frame = block_on(s.next_frame(&mut model)).unwrap();
            assert_eq!(frame.id, k as u64);
            assert_close(&format!("{}: frame {k}", c.case), frame.latent, want);
        }
        assert_eq!(c.output.len(), c.frames);
    }
}

/// A `model.json` says rectified flow as `tools/export/wan.py` writes it; a stochastic default
/// or DDPM keys next to it are refused with the fix; the DDPM form reads as before.
#[test]
fn model_json_with_a_flow_schedule() {
    use fifo_diffusion::model::ModelPackage;
    let shipped = include_str!("../models/shapes-t2v-tiny/model.json");
    let ddpm = ModelPackage::parse(shipped, "model.json").unwrap();
    assert!(!ddpm.schedule.is_flow());
    let with = |schedule: &str, eta: f64| {
        let mut json: serde_json::Value = serde_json::from_str(shipped).unwrap();
        json["schedule"] = serde_json::from_str(schedule).unwrap();
        json["defaults"]["eta"] = eta.into();
        ModelPackage::parse(&json.to_string(), "model.json")
    };
    let flow = r#"{"train_timesteps": 1000, "process": {"kind": "rectified_flow", "shift": 5.0}}"#;
    let package = with(flow, 0.0).unwrap();
    assert_eq!(package.schedule, DiffusionSchedule::rectified_flow(5.0));
    let err = with(flow, 1.0).unwrap_err().to_string();
    assert!(err.contains("defaults.eta") && err.contains("eta must be 0"), "{err}");
    let err = with(r#"{"train_timesteps": 1000, "process": {"kind": "rectified_flow", "shift": 0.0}}"#, 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("shift must be a finite number > 0"), "{err}");
    let err = with(
        r#"{"train_timesteps": 1000, "process": {"kind": "rectified_flow", "shift": 3.0},
            "spacing": {"kind": "trailing"}}"#,
        0.0,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("remove `spacing`"), "{err}");
}
