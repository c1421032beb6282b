//! The DDIM step of every index, reduced to three coefficients.
//!
//! Whatever the prediction type, one DDIM step is linear in the current latent `x`, the model
//! output `m` and the fresh noise `z`: `x' = c_x x + c_model m + c_noise z`. Folding the step into
//! three numbers per index lets the host loop and a GPU kernel share one small table.
//!
//! A rectified-flow Euler step `x' = x + (s' - s) v` has the same form (`c_x = 1`,
//! `c_model = s' - s`, `c_noise = 0`), so flow models run on the same table.

use super::{flow_sigmas, DiffusionSchedule, FinalAlpha, Prediction, ScheduleError, TimestepSpacing};

/// One sampler index: the timestep the model is told, noise levels and step coefficients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimEntry {
    /// The timestep the model is told: a training timestep (an integer) for DDPM processes,
    /// `s * T` for rectified flow.
    pub timestep: f64,
    /// alphabar at this index. Flow: the alphabar of the same signal-to-noise ratio,
    /// `(1-s)^2 / ((1-s)^2 + s^2)` (for display; the step does not use it).
    pub alpha: f64,
    /// The same at the next cleaner index (or the final level at index 0).
    pub alpha_prev: f64,
    /// Standard deviation of the fresh noise added by the step (DDIM eta; 0 for flow).
    pub sigma: f64,
    /// Forward noising: a latent at this index is `signal x0 + noise_scale z`
    /// (DDPM: `sqrt(a)`, `sqrt(1-a)`; flow: `1 - s`, `s`).
    pub signal: f64,
    pub noise_scale: f64,
    pub c_x: f64,
    pub c_model: f64,
    pub c_noise: f64,
}

/// The DDIM step table for `S` sampling steps.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTable {
    entries: Vec<DdimEntry>,
    prediction: Prediction,
}

impl StepTable {
    pub fn new(schedule: &DiffusionSchedule, steps: usize, eta: f64) -> Result<Self, ScheduleError> {
        schedule.validate()?;
        schedule.check_eta(eta)?;
        if let TimestepSpacing::FlowShift { shift } = schedule.spacing {
            return Self::flow(schedule, shift, steps);
        }
        let alphabar = schedule.alphas_cumprod();
        let grid = schedule.spacing.timesteps(schedule.train_timesteps, steps)?;
        let final_alpha = match schedule.final_alpha {
            FinalAlpha::FirstTrainStep => alphabar[0],
            FinalAlpha::One => 1.0,
        };
        let entries = grid
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let alpha = alphabar[t];
                let alpha_prev = if i == 0 { final_alpha } else { alphabar[grid[i - 1]] };
                let sigma = eta * ((1.0 - alpha_prev) / (1.0 - alpha) * (1.0 - alpha / alpha_prev)).sqrt();
                let (c_x, c_model) = coefficients(schedule.prediction, alpha, alpha_prev, sigma);
                DdimEntry {
                    timestep: t as f64,
                    alpha,
                    alpha_prev,
                    sigma,
                    signal: alpha.sqrt(),
                    noise_scale: (1.0 - alpha).sqrt(),
                    c_x,
                    c_model,
                    c_noise: sigma,
                }
            })
            .collect();
        Ok(Self { entries, prediction: schedule.prediction })
    }

    /// Rectified flow: index `i` holds `x_s = (1 - s_i) x0 + s_i z`; its Euler step to the next
    /// cleaner level `s'` (0 after index 0) is `x' = x + (s' - s) v`.
    fn flow(schedule: &DiffusionSchedule, shift: f64, steps: usize) -> Result<Self, ScheduleError> {
        if steps == 0 {
            return Err(ScheduleError::NoSteps);
        }
        let train = schedule.train_timesteps;
        let sigmas = flow_sigmas(shift, train, steps);
        let alphabar = |s: f64| (1.0 - s).powi(2) / ((1.0 - s).powi(2) + s * s);
        let entries = sigmas
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let next = if i == 0 { 0.0 } else { sigmas[i - 1] };
                DdimEntry {
                    timestep: s * train as f64,
                    alpha: alphabar(s),
                    alpha_prev: alphabar(next),
                    sigma: 0.0,
                    signal: 1.0 - s,
                    noise_scale: s,
                    c_x: 1.0,
                    c_model: next - s,
                    c_noise: 0.0,
                }
            })
            .collect();
        Ok(Self { entries, prediction: schedule.prediction })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, index: usize) -> &DdimEntry {
        &self.entries[index]
    }

    pub fn entries(&self) -> &[DdimEntry] {
        &self.entries
    }

    pub fn prediction(&self) -> Prediction {
        self.prediction
    }

    /// `x' = c_x x + c_model m + c_noise z`, element-wise, in f32 as on the device.
    pub fn apply(&self, index: usize, x: &mut [f32], model: &[f32], noise: Option<&[f32]>) {
        let e = &self.entries[index];
        let (cx, cm) = (e.c_x as f32, e.c_model as f32);
        match noise {
            Some(z) if e.c_noise != 0.0 => {
                let cz = e.c_noise as f32;
                for ((x, &m), &z) in x.iter_mut().zip(model).zip(z) {
                    *x = cx * *x + cm * m + cz * z;
                }
            }
            _ => {
                for (x, &m) in x.iter_mut().zip(model) {
                    *x = cx * *x + cm * m;
                }
            }
        }
    }
}

/// `(c_x, c_model)` of `x' = sqrt(a_prev) x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z`, with x0
/// and eps written in terms of `x` and the model output `m`.
fn coefficients(prediction: Prediction, alpha: f64, alpha_prev: f64, sigma: f64) -> (f64, f64) {
    let (sa, s1) = (alpha.sqrt(), (1.0 - alpha).sqrt());
    let sp = alpha_prev.sqrt();
    let dir = (1.0 - alpha_prev - sigma * sigma).max(0.0).sqrt();
    match prediction {
        // x0 = (x - s1 m) / sa, eps = m.
        Prediction::Epsilon => (sp / sa, dir - sp * s1 / sa),
        // x0 = sa x - s1 m, eps = s1 x + sa m.
        Prediction::VPrediction => (sp * sa + dir * s1, dir * sa - sp * s1),
        // x0 = m, eps = (x - sa m) / s1.
        Prediction::Sample => (dir / s1, sp - dir * sa / s1),
        Prediction::FlowVelocity => unreachable!("validate pairs flow_velocity with flow_shift spacing"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::BetaSchedule;

    #[test]
    fn sigmas_match_the_spec_for_videocrafter_64_steps() {
        let table = StepTable::new(&DiffusionSchedule::videocrafter(), 64, 1.0).unwrap();
        let sigma = |i: usize| table.entry(i).sigma;
        assert_eq!(sigma(0), 0.0);
        for (i, want) in [(1, 0.02833), (2, 0.08748), (3, 0.10419), (63, 0.41680)] {
            assert!((sigma(i) - want).abs() < 5e-6, "sigma_{i} = {} != {want}", sigma(i));
        }
    }

    #[test]
    fn index_zero_is_an_identity_step_in_the_videocrafter_setting() {
        let table = StepTable::new(&DiffusionSchedule::videocrafter(), 64, 1.0).unwrap();
        let e = table.entry(0);
        assert_eq!((e.timestep, e.sigma), (0.0, 0.0));
        assert!((e.c_x - 1.0).abs() < 1e-15 && e.c_model.abs() < 1e-15, "{e:?}");
    }

    /// The folded coefficients equal the textbook DDIM update for every prediction type.
    #[test]
    fn coefficients_reproduce_the_ddim_update() {
        for prediction in [Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample] {
            for betas in [BetaSchedule::Cosine, BetaSchedule::ScaledLinear { start: 0.00085, end: 0.012 }] {
                let schedule = DiffusionSchedule {
                    prediction,
                    betas,
                    final_alpha: FinalAlpha::One,
                    ..DiffusionSchedule::videocrafter()
                };
                let table = StepTable::new(&schedule, 20, 0.7).unwrap();
                for (i, e) in table.entries().iter().enumerate() {
                    let (x0, eps, z) = (0.3f64, -1.2f64, 0.8f64);
                    let (sa, s1) = (e.alpha.sqrt(), (1.0 - e.alpha).sqrt());
                    let x = sa * x0 + s1 * eps;
                    let m = match prediction {
                        Prediction::Epsilon => eps,
                        Prediction::VPrediction => sa * eps - s1 * x0,
                        Prediction::Sample => x0,
                        Prediction::FlowVelocity => unreachable!("not in this loop"),
                    };
                    let dir = (1.0 - e.alpha_prev - e.sigma * e.sigma).sqrt();
                    let want = e.alpha_prev.sqrt() * x0 + dir * eps + e.sigma * z;
                    let got = e.c_x * x + e.c_model * m + e.c_noise * z;
                    assert!((got - want).abs() < 1e-9, "{prediction:?} {betas:?} index {i}: {got} != {want}");
                }
            }
        }
    }

    #[test]
    fn bad_eta_and_impossible_step_counts_are_errors() {
        let s = DiffusionSchedule::videocrafter();
        assert!(StepTable::new(&s, 64, f64::NAN).is_err());
        assert!(StepTable::new(&s, 64, -1.0).is_err());
        assert!(StepTable::new(&s, 2000, 1.0).is_err());
    }

    /// The flow table's folded coefficients are the Euler step `x' = x + (s' - s) v`, its
    /// forward noising is `(1 - s) x0 + s z`, and the model is told `s * T`.
    #[test]
    fn flow_coefficients_are_the_euler_step() {
        for shift in [1.0, 3.0, 5.0] {
            let table = StepTable::new(&DiffusionSchedule::rectified_flow(shift), 12, 0.0).unwrap();
            let sigmas = flow_sigmas(shift, 1000, 12);
            assert_eq!(sigmas[11], 1.0, "the noisiest level is pure noise");
            for (i, e) in table.entries().iter().enumerate() {
                let (s, next) = (sigmas[i], if i == 0 { 0.0 } else { sigmas[i - 1] });
                assert!(next < s, "levels ascend with the index");
                assert_eq!((e.signal, e.noise_scale, e.timestep), (1.0 - s, s, s * 1000.0));
                let (x0, z) = (0.3f64, -1.2f64);
                let x = (1.0 - s) * x0 + s * z;
                let v = z - x0;
                let got = e.c_x * x + e.c_model * v + e.c_noise * 0.7;
                assert!((got - (x + (next - s) * v)).abs() < 1e-15, "shift {shift} index {i}");
                // The exact velocity takes x_s to x_{s'} on the straight path.
                assert!((got - ((1.0 - next) * x0 + next * z)).abs() < 1e-12, "shift {shift} index {i}");
            }
            let mut x = [0.5f32, -2.0];
            table.apply(3, &mut x, &[1.0, 4.0], Some(&[9.0, 9.0]));
            let dt = table.entry(3).c_model as f32;
            assert_eq!(x, [0.5 + dt, -2.0 + dt * 4.0], "f32 apply, no noise");
        }
    }

    #[test]
    fn impossible_flow_settings_are_errors() {
        let flow = DiffusionSchedule::rectified_flow(3.0);
        assert_eq!(StepTable::new(&flow, 16, 1.0), Err(ScheduleError::StochasticFlow(1.0)));
        assert!(StepTable::new(&flow, 16, 1.0).unwrap_err().to_string().contains("eta to 0"));
        assert_eq!(StepTable::new(&flow, 0, 0.0), Err(ScheduleError::NoSteps));
        for shift in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            let s = DiffusionSchedule::rectified_flow(shift);
            assert!(matches!(StepTable::new(&s, 16, 0.0), Err(ScheduleError::BadShift(_))), "{shift}");
        }
        let half = DiffusionSchedule { prediction: Prediction::Epsilon, ..flow.clone() };
        assert!(matches!(StepTable::new(&half, 16, 0.0), Err(ScheduleError::FlowMismatch { .. })));
        let half =
            DiffusionSchedule { prediction: Prediction::FlowVelocity, ..DiffusionSchedule::videocrafter() };
        assert!(matches!(StepTable::new(&half, 16, 0.0), Err(ScheduleError::FlowMismatch { .. })));
        // Any step count is a flow grid: it is not bound to the training timesteps.
        assert_eq!(StepTable::new(&flow, 1500, 0.0).unwrap().len(), 1500);
    }
}
