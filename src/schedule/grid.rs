//! Which training timesteps the sampler visits.

use serde::{Deserialize, Serialize};

use super::{linspace, ScheduleError};

/// The sampler's grid of noise levels, listed ascending (index 0 = cleanest).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimestepSpacing {
    /// `round(linspace(0, T-1, S))` with round-half-to-even: FIFO-Diffusion's official grid.
    OfficialLinspace,
    /// diffusers "leading": `i * (T // S) + offset`.
    Leading { offset: usize },
    /// diffusers "trailing": `round(T - i * T / S) - 1`, so the noisiest step is `T - 1`.
    Trailing,
    /// Rectified flow only: the noise levels of diffusers' `FlowMatchEulerDiscreteScheduler`
    /// (`use_dynamic_shifting` off): `linspace(1, shift(1/T), S)` shifted by
    /// `shift(s) = shift s / (1 + (shift - 1) s)`, then a final step to 0. See [`flow_sigmas`].
    /// `model.json` writes it as `"process": {"kind": "rectified_flow", "shift": ..}`.
    #[serde(skip)]
    FlowShift { shift: f64 },
}

/// The `S` noise levels of a [`TimestepSpacing::FlowShift`] grid, ascending (index 0 = cleanest,
/// index `S - 1` = 1), in f64. diffusers (in f32) builds its training sigmas as `shift(t / T)`
/// for `t = 1..=T`, then samples `linspace(T shift(1), T shift(1/T), S) / T` and shifts that
/// again; the sampler's last step goes to 0.
pub fn flow_sigmas(shift: f64, train: usize, steps: usize) -> Vec<f64> {
    let shifted = |s: f64| shift * s / (1.0 + (shift - 1.0) * s);
    let t = train as f64;
    let (sigma_max, sigma_min) = (shifted(1.0), shifted(1.0 / t));
    let mut sigmas: Vec<f64> =
        linspace(sigma_max * t, sigma_min * t, steps).map(|x| shifted(x / t)).collect();
    sigmas.reverse();
    sigmas
}

impl TimestepSpacing {
    /// `steps` training timesteps in ascending order.
    pub fn timesteps(&self, train: usize, steps: usize) -> Result<Vec<usize>, ScheduleError> {
        let too_many = |max: usize| ScheduleError::TooManySteps { steps, train, max, spacing: *self };
        if steps == 0 || steps > train {
            return Err(too_many(train));
        }
        let grid = match *self {
            Self::OfficialLinspace => {
                linspace(0.0, (train - 1) as f64, steps).map(|t| t.round_ties_even() as usize).collect()
            }
            Self::Leading { offset } => {
                let ratio = train / steps;
                if (steps - 1) * ratio + offset >= train {
                    return Err(too_many(((train - offset) / ratio.max(1)).max(1)));
                }
                (0..steps).map(|i| i * ratio + offset).collect()
            }
            Self::FlowShift { .. } => return Err(ScheduleError::NotATimestepGrid(*self)),
            Self::Trailing => {
                let ratio = train as f64 / steps as f64;
                let mut grid: Vec<usize> = (0..steps)
                    .map(|i| (train as f64 - i as f64 * ratio).round_ties_even() as usize - 1)
                    .collect();
                grid.reverse();
                grid
            }
        };
        if grid.windows(2).any(|w| w[1] <= w[0]) {
            return Err(too_many(train));
        }
        Ok(grid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_grid_for_64_steps_matches_the_spec() {
        let spec: [usize; 64] = [
            0, 16, 32, 48, 63, 79, 95, 111, 127, 143, 159, 174, 190, 206, 222, 238, 254, 270, 285, 301, 317,
            333, 349, 365, 381, 396, 412, 428, 444, 460, 476, 492, 507, 523, 539, 555, 571, 587, 603, 618,
            634, 650, 666, 682, 698, 714, 729, 745, 761, 777, 793, 809, 825, 840, 856, 872, 888, 904, 920,
            936, 951, 967, 983, 999,
        ];
        assert_eq!(TimestepSpacing::OfficialLinspace.timesteps(1000, 64).unwrap(), spec);
    }

    #[test]
    fn official_grid_rounds_half_to_even_like_numpy() {
        // linspace(0, 999, 667) has exact halves: 1.5 -> 2, 4.5 -> 4 under round-half-to-even.
        let g = TimestepSpacing::OfficialLinspace.timesteps(1000, 667).unwrap();
        assert_eq!(&g[..4], &[0, 2, 3, 4]);
    }

    #[test]
    fn diffusers_leading_and_trailing_grids() {
        // diffusers DDIMScheduler, T = 1000, 10 steps.
        let leading = TimestepSpacing::Leading { offset: 1 }.timesteps(1000, 10).unwrap();
        assert_eq!(leading, [1, 101, 201, 301, 401, 501, 601, 701, 801, 901]);
        let trailing = TimestepSpacing::Trailing.timesteps(1000, 10).unwrap();
        assert_eq!(trailing, [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]);
        let trailing = TimestepSpacing::Trailing.timesteps(1000, 64).unwrap();
        assert_eq!((trailing[0], trailing[62], trailing[63]), (15, 983, 999));
    }

    #[test]
    fn impossible_grids_are_errors() {
        assert!(TimestepSpacing::OfficialLinspace.timesteps(1000, 0).is_err());
        assert!(TimestepSpacing::OfficialLinspace.timesteps(1000, 1001).is_err());
        assert!(TimestepSpacing::Leading { offset: 1 }.timesteps(1000, 1000).is_err());
        assert!(TimestepSpacing::Leading { offset: 0 }.timesteps(1000, 1000).is_ok());
    }
}
