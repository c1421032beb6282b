//! Browser bindings (wasm32): the same scheduler and executor as natively, driving WebGPU or the
//! wasm CPU backend in the page. `web/www/fifo.js` wraps them in a Web Worker; see web/README.md.

mod generator;
mod onnx_session;
mod settings;

pub use generator::{gpu_probe, Frame, Generator};
pub use onnx_session::OnnxSession;

use fifo_diffusion::fifo::{FifoConfig, QueueLayout};
use fifo_diffusion::schedule::StepTable;
use wasm_bindgen::prelude::*;

/// The model timesteps and DDIM noise levels the scheduler uses for a JSON `FifoConfig`.
#[wasm_bindgen]
pub fn fifo_plan(config_json: &str) -> Result<String, JsError> {
    let config: FifoConfig = serde_json::from_str(config_json)?;
    config.validate()?;
    let table = StepTable::new(&config.schedule, config.steps(), config.eta)?;
    let layout = QueueLayout::new(&config);
    let timesteps: Vec<f64> = table.entries().iter().map(|e| e.timestep).collect();
    let sigmas: Vec<f64> = table.entries().iter().map(|e| e.sigma).collect();
    Ok(serde_json::json!({
        "queue_slots": layout.len(),
        "windows": layout.windows().len(),
        "timesteps": timesteps,
        "sigmas": sigmas,
    })
    .to_string())
}
