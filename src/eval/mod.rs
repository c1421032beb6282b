//! The shapes-world evaluator: detects the object in every decoded frame (colour from the palette,
//! shape by template matching, wrap-aware position, area) without looking at the prompt, then
//! scores the video against its per-frame prompts: adherence, temporal consistency, stationarity.
//!
//! ```no_run
//! use fifo_diffusion::eval::{Evaluator, Frame, FramePrompts};
//! # fn frames() -> Vec<Frame> { Vec::new() }
//! let ev = Evaluator::shapes_world();
//! let frames = frames();
//! let prompts =
//!     FramePrompts::single(ev.world(), "a red circle moving left on a gray background", frames.len())?;
//! let report = ev.evaluate(&frames, &prompts)?;
//! println!("colour adherence {:?}", report.overall.colour);
//! # Ok::<(), fifo_diffusion::eval::EvalError>(())
//! ```

mod detect;
mod frame;
mod prompt;
mod score;
mod world;

pub use detect::{Detection, Detector, MIN_AREA};
pub use frame::Frame;
pub use prompt::{FramePrompts, Prompt};
pub use score::{
    direction_of, report, Report, Scores, Segment, Stationarity, Verdict, Window, EARLY, LATE, MIN_MOTION,
};
pub use world::{wrap, Named, Shape, World};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("world description: {0}")]
    World(String),
    #[error("frame: {0}")]
    Frame(String),
    #[error("prompt '{prompt}': {problem}")]
    Prompt { prompt: String, problem: String },
    #[error("{frames} frames but prompts for {prompts}: give one prompt per frame")]
    Length { frames: usize, prompts: usize },
}

/// The detector and the scores for one world.
pub struct Evaluator {
    detector: Detector,
}

impl Evaluator {
    /// The world of the project's default model.
    pub fn shapes_world() -> Evaluator {
        Self::new(World::shapes_world())
    }

    pub fn new(world: World) -> Evaluator {
        Evaluator { detector: Detector::new(world) }
    }

    pub fn world(&self) -> &World {
        self.detector.world()
    }

    pub fn detect(&self, frame: &Frame) -> Result<Detection, EvalError> {
        self.detector.detect(frame)
    }

    /// Detects every frame and scores the video.
    pub fn evaluate(&self, frames: &[Frame], prompts: &FramePrompts) -> Result<Report, EvalError> {
        if frames.len() != prompts.per_frame.len() {
            return Err(EvalError::Length { frames: frames.len(), prompts: prompts.per_frame.len() });
        }
        let det = frames.iter().map(|f| self.detect(f)).collect::<Result<Vec<_>, _>>()?;
        Ok(report(self.world(), &det, prompts))
    }
}
