//! Diffusion noise schedules, DDIM timestep grids and the per-index DDIM step table.

mod grid;
mod table;

pub use grid::{flow_sigmas, TimestepSpacing};
pub use table::{DdimEntry, StepTable};

use serde::{Deserialize, Serialize};

/// How the training betas were laid out over the training timesteps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(sqrt(start), sqrt(end), T)^2`: Stable Diffusion, VideoCrafter, zeroscope.
    ScaledLinear { start: f64, end: f64 },
    /// `linspace(start, end, T)`: the original DDPM.
    Linear { start: f64, end: f64 },
    /// Nichol & Dhariwal's cosine alpha-bar, betas capped at 0.999 (diffusers `squaredcos_cap_v2`).
    Cosine,
}

/// What the denoiser predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The added noise (DDPM, VideoCrafter, zeroscope).
    Epsilon,
    /// `v = sqrt(a) eps - sqrt(1-a) x0` (Salimans & Ho).
    VPrediction,
    /// The clean sample x0.
    Sample,
    /// Rectified flow (Wan 2.1): the latent at noise level `s` is `x_s = (1 - s) x0 + s z` and the
    /// model predicts the velocity `v = z - x0`, told the timestep `s * T` (not an integer).
    /// Goes with [`TimestepSpacing::FlowShift`]; `model.json` writes the pair as
    /// `"process": {"kind": "rectified_flow", "shift": ..}`, not as a `prediction`.
    #[serde(skip)]
    FlowVelocity,
}

/// What the last DDIM step (index 0) steps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalAlpha {
    /// `alphabar[0]`: index 0 is an identity step (VideoCrafter, diffusers `set_alpha_to_one=False`).
    FirstTrainStep,
    /// 1.0: index 0 steps to a clean x0 (guided-diffusion, Latte, diffusers `set_alpha_to_one=True`).
    One,
}

/// The training noise process and how the sampler walks it.
///
/// Two processes. DDPM (VideoCrafter, ModelScope, Latte): `betas`, `prediction` (`epsilon`,
/// `v_prediction`, `sample`), a DDIM `spacing` and `final_alpha`. Rectified flow (Wan 2.1):
/// [`Prediction::FlowVelocity`] with [`TimestepSpacing::FlowShift`], written in `model.json` as
/// `{"train_timesteps": 1000, "process": {"kind": "rectified_flow", "shift": 3.0}}` alone; its
/// `betas` and `final_alpha` are unused. A schedule without `process` is DDPM, so every
/// `model.json` written before flow support reads as it did.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "ScheduleJson", into = "ScheduleJson")]
pub struct DiffusionSchedule {
    pub train_timesteps: usize,
    /// The training betas (DDPM processes; unused by rectified flow).
    pub betas: BetaSchedule,
    pub prediction: Prediction,
    pub spacing: TimestepSpacing,
    /// What the last DDIM step steps to (DDPM processes; flow always ends at a clean x0).
    pub final_alpha: FinalAlpha,
}

/// Equal schedules walk the same steps: the unused `betas` and `final_alpha` of a flow schedule
/// do not count.
impl PartialEq for DiffusionSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.train_timesteps == other.train_timesteps
            && self.prediction == other.prediction
            && self.spacing == other.spacing
            && (self.is_flow() || (self.betas == other.betas && self.final_alpha == other.final_alpha))
    }
}

/// The serde form: a DDPM schedule needs `betas`, `prediction`, `spacing` and `final_alpha`; a
/// rectified-flow one is `process` alone (velocity prediction and the shifted grid implied).
#[derive(Serialize, Deserialize)]
struct ScheduleJson {
    train_timesteps: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    process: Option<ProcessJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    betas: Option<BetaSchedule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prediction: Option<Prediction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spacing: Option<TimestepSpacing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    final_alpha: Option<FinalAlpha>,
}

/// `schedule.process`: the training noise process.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ProcessJson {
    /// The default when `process` is absent.
    Ddpm,
    RectifiedFlow {
        shift: f64,
    },
}

impl TryFrom<ScheduleJson> for DiffusionSchedule {
    type Error = ScheduleError;

    fn try_from(j: ScheduleJson) -> Result<Self, ScheduleError> {
        let train_timesteps = j.train_timesteps;
        if let Some(ProcessJson::RectifiedFlow { shift }) = j.process {
            let extra = [
                ("betas", j.betas.is_some()),
                ("prediction", j.prediction.is_some()),
                ("spacing", j.spacing.is_some()),
                ("final_alpha", j.final_alpha.is_some()),
            ];
            if let Some(&(field, _)) = extra.iter().find(|(_, present)| *present) {
                return Err(ScheduleError::FlowWithDdpmField(field));
            }
            return Ok(Self { train_timesteps, ..Self::rectified_flow(shift) });
        }
        let missing = ScheduleError::MissingField;
        Ok(Self {
            train_timesteps,
            betas: j.betas.ok_or(missing("betas"))?,
            prediction: j.prediction.ok_or(missing("prediction"))?,
            spacing: j.spacing.ok_or(missing("spacing"))?,
            final_alpha: j.final_alpha.ok_or(missing("final_alpha"))?,
        })
    }
}

impl From<DiffusionSchedule> for ScheduleJson {
    fn from(s: DiffusionSchedule) -> Self {
        match s.spacing {
            TimestepSpacing::FlowShift { shift } if s.is_flow() => Self {
                train_timesteps: s.train_timesteps,
                process: Some(ProcessJson::RectifiedFlow { shift }),
                betas: None,
                prediction: None,
                spacing: None,
                final_alpha: None,
            },
            // A mismatched pair (refused by validate) fails here if it holds a flow-only variant.
            _ => Self {
                train_timesteps: s.train_timesteps,
                process: None,
                betas: Some(s.betas),
                prediction: Some(s.prediction),
                spacing: Some(s.spacing),
                final_alpha: Some(s.final_alpha),
            },
        }
    }
}

impl DiffusionSchedule {
    /// The VideoCrafter2 setting that FIFO-Diffusion's official code uses.
    pub fn videocrafter() -> Self {
        Self {
            train_timesteps: 1000,
            betas: BetaSchedule::ScaledLinear { start: 0.00085, end: 0.012 },
            prediction: Prediction::Epsilon,
            spacing: TimestepSpacing::OfficialLinspace,
            final_alpha: FinalAlpha::FirstTrainStep,
        }
    }

    /// Rectified flow as Wan 2.1 was trained (T = 1000, velocity prediction), sampled on
    /// diffusers' `FlowMatchEulerDiscreteScheduler` grid shifted by `shift` (Wan: 3.0 at 480p,
    /// 5.0 at 720p). Needs eta 0.
    pub fn rectified_flow(shift: f64) -> Self {
        Self {
            prediction: Prediction::FlowVelocity,
            spacing: TimestepSpacing::FlowShift { shift },
            ..Self::videocrafter()
        }
    }

    /// Whether this is a rectified-flow schedule (prediction `flow_velocity`) rather than DDPM.
    pub fn is_flow(&self) -> bool {
        self.prediction == Prediction::FlowVelocity
    }

    /// Checks a DDIM eta against the schedule: the flow step is the deterministic Euler step.
    pub fn check_eta(&self, eta: f64) -> Result<(), ScheduleError> {
        if !(eta.is_finite() && eta >= 0.0) {
            return Err(ScheduleError::BadEta(eta));
        }
        if self.is_flow() && eta != 0.0 {
            return Err(ScheduleError::StochasticFlow(eta));
        }
        Ok(())
    }

    /// Cumulative products of `1 - beta` over the training timesteps, in f64 (DDPM processes;
    /// a flow schedule's `betas` are unused and so is this).
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let steps = self.train_timesteps;
        let betas: Vec<f64> = match self.betas {
            BetaSchedule::ScaledLinear { start, end } => {
                linspace(start.sqrt(), end.sqrt(), steps).map(|b| b * b).collect()
            }
            BetaSchedule::Linear { start, end } => linspace(start, end, steps).collect(),
            BetaSchedule::Cosine => {
                let alpha_bar = |t: f64| {
                    let c = libm::cos((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2);
                    c * c
                };
                (0..steps)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / steps as f64, (i + 1) as f64 / steps as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                    })
                    .collect()
            }
        };
        betas
            .iter()
            .scan(1.0, |acc, &b| {
                *acc *= 1.0 - b;
                Some(*acc)
            })
            .collect()
    }

    pub(crate) fn validate(&self) -> Result<(), ScheduleError> {
        if self.train_timesteps < 2 {
            return Err(ScheduleError::TooFewTrainSteps(self.train_timesteps));
        }
        let flow_spacing = matches!(self.spacing, TimestepSpacing::FlowShift { .. });
        if self.is_flow() != flow_spacing {
            return Err(ScheduleError::FlowMismatch { prediction: self.prediction, spacing: self.spacing });
        }
        if let TimestepSpacing::FlowShift { shift } = self.spacing {
            if !(shift.is_finite() && shift > 0.0) {
                return Err(ScheduleError::BadShift(shift));
            }
            return Ok(());
        }
        match self.betas {
            BetaSchedule::ScaledLinear { start, end } | BetaSchedule::Linear { start, end } => {
                let ok = |b: f64| b.is_finite() && b > 0.0 && b < 1.0;
                if !ok(start) || !ok(end) {
                    return Err(ScheduleError::BadBetas { start, end });
                }
            }
            BetaSchedule::Cosine => {}
        }
        Ok(())
    }
}

/// numpy's `linspace(start, end, n)`: `start + i * step`, the last point exactly `end`.
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> impl Iterator<Item = f64> {
    let step = if n > 1 { (end - start) / (n - 1) as f64 } else { 0.0 };
    (0..n).map(move |i| if i + 1 == n && n > 1 { end } else { start + i as f64 * step })
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("a diffusion schedule needs at least 2 training timesteps, got {0}")]
    TooFewTrainSteps(usize),
    #[error("betas must lie in (0, 1), got start {start} and end {end}")]
    BadBetas { start: f64, end: f64 },
    #[error(
        "{steps} sampling steps do not fit a {train} step schedule with {spacing:?} spacing: \
         use at most {max} steps (fewer partitions or a smaller window)"
    )]
    TooManySteps { steps: usize, train: usize, max: usize, spacing: TimestepSpacing },
    #[error("eta must be a finite number >= 0, got {0}")]
    BadEta(f64),
    #[error(
        "rectified-flow sampling takes the deterministic Euler step, so eta must be 0 (got {0}): \
         set eta to 0 (--eta 0, or `defaults.eta` 0 in model.json)"
    )]
    StochasticFlow(f64),
    #[error("the flow shift must be a finite number > 0 (Wan 2.1: 3.0 at 480p, 5.0 at 720p), got {0}")]
    BadShift(f64),
    #[error(
        "prediction {prediction:?} does not go with spacing {spacing:?}: rectified flow is \
         Prediction::FlowVelocity with TimestepSpacing::FlowShift (DiffusionSchedule::rectified_flow; \
         in model.json \"process\": {{\"kind\": \"rectified_flow\", \"shift\": ..}}), and neither goes \
         with the other kinds"
    )]
    FlowMismatch { prediction: Prediction, spacing: TimestepSpacing },
    #[error(
        "a rectified-flow schedule is `train_timesteps` and `process` only (velocity prediction and \
         the shifted sigma grid are implied): remove `{0}`"
    )]
    FlowWithDdpmField(&'static str),
    #[error(
        "the schedule needs `{0}`; a rectified-flow model says \"process\": \
         {{\"kind\": \"rectified_flow\", \"shift\": ..}} instead"
    )]
    MissingField(&'static str),
    #[error("spacing {0:?} lays out flow noise levels, not training timesteps (see flow_sigmas)")]
    NotATimestepGrid(TimestepSpacing),
    #[error("a sampler needs at least one step")]
    NoSteps,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn videocrafter_alphabar_matches_the_spec() {
        let a = DiffusionSchedule::videocrafter().alphas_cumprod();
        assert_eq!(a.len(), 1000);
        assert!((a[0] - 0.99915).abs() < 5e-6, "{}", a[0]);
        assert!((a[999] - 0.0046601).abs() < 5e-8, "{}", a[999]);
    }

    #[test]
    fn linear_and_cosine_schedules_decrease_from_near_one() {
        for betas in [BetaSchedule::Linear { start: 1e-4, end: 0.02 }, BetaSchedule::Cosine] {
            let s = DiffusionSchedule { betas, ..DiffusionSchedule::videocrafter() };
            let a = s.alphas_cumprod();
            assert!(a.windows(2).all(|w| w[1] < w[0]));
            assert!(a[0] > 0.999 && a[999] < 0.001, "{betas:?}: {} {}", a[0], a[999]);
        }
        // DDPM linear: alphabar[999] = 4.04e-5 (Ho et al., T=1000).
        let ddpm = DiffusionSchedule {
            betas: BetaSchedule::Linear { start: 1e-4, end: 0.02 },
            ..DiffusionSchedule::videocrafter()
        };
        let last = ddpm.alphas_cumprod()[999];
        assert!((last - 4.0358e-5).abs() < 1e-8, "{last}");
    }

    /// Every existing `model.json` form still parses; the flow form is `process` alone.
    #[test]
    fn serde_forms_of_both_processes() {
        let ddpm = r#"{"train_timesteps": 1000,
            "betas": {"kind": "scaled_linear", "start": 0.00085, "end": 0.012},
            "prediction": "epsilon", "spacing": {"kind": "official_linspace"},
            "final_alpha": "first_train_step"}"#;
        let s: DiffusionSchedule = serde_json::from_str(ddpm).unwrap();
        assert_eq!(s, DiffusionSchedule::videocrafter());
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::from_str::<serde_json::Value>(ddpm).unwrap()
        );

        let explicit = ddpm.replace(
            r#""train_timesteps": 1000,"#,
            r#""train_timesteps": 1000, "process": {"kind": "ddpm"},"#,
        );
        assert_eq!(serde_json::from_str::<DiffusionSchedule>(&explicit).unwrap(), s);

        // The form tools/export/wan.py writes.
        let flow = r#"{"train_timesteps": 1000, "process": {"kind": "rectified_flow", "shift": 3.0}}"#;
        let s: DiffusionSchedule = serde_json::from_str(flow).unwrap();
        assert_eq!(s, DiffusionSchedule::rectified_flow(3.0));
        assert_eq!(
            (s.prediction, s.spacing),
            (Prediction::FlowVelocity, TimestepSpacing::FlowShift { shift: 3.0 })
        );
        assert!(s.validate().is_ok() && s.is_flow());
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::from_str::<serde_json::Value>(flow).unwrap()
        );
        let config =
            crate::fifo::FifoConfig { schedule: s.clone(), ..crate::fifo::FifoConfig::official(vec![4]) };
        let back: crate::fifo::FifoConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config, "a flow config round-trips (checkpoints, sidecars)");

        let err = |json: &str| serde_json::from_str::<DiffusionSchedule>(json).unwrap_err().to_string();
        let with_betas = flow.replace(r#""process""#, r#""betas": {"kind": "cosine"}, "process""#);
        assert!(err(&with_betas).contains("remove `betas`"), "{}", err(&with_betas));
        let with_prediction = flow.replace(r#""process""#, r#""prediction": "epsilon", "process""#);
        assert!(err(&with_prediction).contains("remove `prediction`"), "{}", err(&with_prediction));
        let no_betas = r#"{"train_timesteps": 1000, "prediction": "epsilon",
            "spacing": {"kind": "trailing"}, "final_alpha": "one"}"#;
        assert!(err(no_betas).contains("needs `betas`"), "{}", err(no_betas));
        // The Rust-side pair is not a JSON form of its own.
        let pair = r#"{"train_timesteps": 1000, "betas": {"kind": "cosine"}, "final_alpha": "one",
            "prediction": "flow_velocity", "spacing": {"kind": "flow_shift", "shift": 3.0}}"#;
        assert!(err(pair).contains("unknown variant"), "{}", err(pair));
    }
}
