//! Stage clocks. `web-time` reads the browser's monotonic clock on wasm32.

use serde::Serialize;

/// Seconds spent in each stage of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Text encoder (once per run).
    pub text: f64,
    /// UNet calls (session builds included).
    pub unet: f64,
    /// Decoder, one call per frame.
    pub decode: f64,
    /// The scheduler's own work: gathering windows, DDIM updates, noise.
    pub scheduler: f64,
}

/// A started stopwatch.
#[derive(Clone, Copy, Debug)]
pub struct Clock(web_time::Instant);

impl Clock {
    pub fn start() -> Self {
        Self(web_time::Instant::now())
    }

    pub fn seconds(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}
