//! The settings of a FIFO run.

use serde::{Deserialize, Serialize};

use super::FifoError;
use crate::schedule::DiffusionSchedule;

/// How the queue is filled before the first emitted frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitMode {
    /// Start from pure noise and warm up until the queue is diagonal (the authors' Latte code).
    Noise,
    /// Sample (or take) an ordinary f-frame clip and forward-noise it onto the diagonal (the
    /// official VideoCrafter2 code).
    Clip,
}

/// Everything that determines the frames a run produces, apart from the model and the prompts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FifoConfig {
    /// f: frames the model sees at once.
    pub window: usize,
    /// n: latent partitions; the diagonal has `S = f * n` noise levels.
    pub partitions: usize,
    /// Lookahead denoising: `f/2` extra head slots and `2n` overlapping windows.
    pub lookahead: bool,
    /// DDIM eta: 0 is deterministic, 1 is the official setting.
    pub eta: f64,
    /// Classifier-free guidance scale; 1 runs the conditional pass only.
    pub guidance: f64,
    pub seed: u64,
    pub init: InitMode,
    /// Shape of one frame latent, e.g. `[4, 40, 64]`.
    pub frame_shape: Vec<usize>,
    pub schedule: DiffusionSchedule,
}

impl FifoConfig {
    /// The official defaults (VideoCrafter2, f = 16, n = 4, lookahead, guidance 12, eta 1, seed 321).
    pub fn official(frame_shape: Vec<usize>) -> Self {
        Self {
            window: 16,
            partitions: 4,
            lookahead: true,
            eta: 1.0,
            guidance: 12.0,
            seed: 321,
            init: InitMode::Clip,
            frame_shape,
            schedule: DiffusionSchedule::videocrafter(),
        }
    }

    /// S: DDIM steps, one per noise level on the diagonal.
    pub fn steps(&self) -> usize {
        self.window * self.partitions
    }

    /// Elements in one frame latent.
    pub fn frame_len(&self) -> usize {
        self.frame_shape.iter().product()
    }

    /// Whether the unconditional pass runs at all.
    pub fn uses_guidance(&self) -> bool {
        self.guidance != 1.0
    }

    pub fn validate(&self) -> Result<(), FifoError> {
        let bad = |why: String| Err(FifoError::Config(why));
        if self.window < 2 {
            return bad(format!("the window must hold at least 2 frames, got f = {}", self.window));
        }
        if self.partitions == 0 {
            return bad("partitions must be at least 1".into());
        }
        if self.lookahead && !self.window.is_multiple_of(2) {
            return bad(format!(
                "lookahead denoising needs an even window (it writes back half of it), got f = {}; \
                 turn lookahead off or use a model with an even frame count",
                self.window
            ));
        }
        if self.frame_shape.is_empty() || self.frame_len() == 0 {
            return bad(format!("frame shape {:?} holds no elements", self.frame_shape));
        }
        if !self.guidance.is_finite() {
            return bad(format!("guidance must be finite, got {}", self.guidance));
        }
        if self.steps() > u16::MAX as usize {
            return bad(format!("{} DDIM steps is too many (at most {})", self.steps(), u16::MAX));
        }
        Ok(())
    }
}
