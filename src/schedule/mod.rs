//! Diffusion noise schedules, DDIM timestep grids and the per-index DDIM step table.

mod grid;
mod table;

pub use grid::TimestepSpacing;
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffusionSchedule {
    pub train_timesteps: usize,
    pub betas: BetaSchedule,
    pub prediction: Prediction,
    pub spacing: TimestepSpacing,
    pub final_alpha: FinalAlpha,
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

    /// Cumulative products of `1 - beta` over the training timesteps, in f64.
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
}
