//! FIFO-Diffusion's queue, windows and loop, free of any GPU type.

mod checkpoint;
mod clip;
mod conditioning;
mod config;
mod denoiser;
mod layout;
mod plan;
mod ring;
mod scheduler;
mod split;

pub use checkpoint::{CheckpointError, DecoderCheckpoint, PendingFrame, StateTensor, CHECKPOINT_FORMAT};
pub use clip::{sample_clip, sample_clip_at};
pub use conditioning::{FrameConditioning, PromptChange, PromptId, PromptSchedule, PromptScheduleError};
pub use config::{FifoConfig, InitMode};
pub use denoiser::{DenoiseRequest, Denoiser, DenoiserError};
pub use layout::{QueueLayout, Window};
pub use plan::{IterationPlan, SlotUpdate};
pub use scheduler::{EmittedFrame, FifoScheduler};
pub use split::{Transfer, WindowSplit};

use crate::schedule::ScheduleError;

#[derive(Debug, thiserror::Error)]
pub enum FifoError {
    #[error("invalid FIFO settings: {0}")]
    Config(String),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Prompts(#[from] PromptScheduleError),
    #[error("the model failed: {0}")]
    Denoiser(#[from] DenoiserError),
    #[error("the model returned NaN or infinite values; the queue was left as it was before this call")]
    NonFiniteModelOutput,
    #[error("the start clip must hold {frames} frames of {frame_len} values ({expected} in all), got {got}")]
    ClipShape { expected: usize, got: usize, frames: usize, frame_len: usize },
    #[error("window {window} was asked for twice in one iteration, or does not exist (there are {windows})")]
    WindowTwice { window: usize, windows: usize },
    #[error("window {window} was not denoised before the iteration was finished")]
    WindowMissing { window: usize },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}
