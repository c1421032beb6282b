//! `Generator`: a model package loaded in the page (or its worker), generating frame by frame.

use crate::settings::{parse_load_options, resolve};
use fifo_diffusion::gpu::{GpuContext, GpuOptions};
use fifo_diffusion::model::ModelPackage;
use fifo_diffusion::pipeline::{Generation, Models, PipelineError, RunOptions};
use fifo_diffusion::session::Backend;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// An error with every cause it carries, as one line (the page shows it verbatim).
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
        source = e.source();
    }
    text
}

fn js_error(error: PipelineError) -> JsError {
    JsError::new(&describe(&error))
}

enum State {
    Ready(Box<Models>),
    Running(Box<Generation>),
    /// Only while a call moves the models between the other two.
    Moving,
}

/// A model package with its graphs built on one backend; runs one generation at a time.
#[wasm_bindgen]
pub struct Generator {
    state: State,
    info: serde_json::Value,
}

/// One decoded frame: `width * height` RGBA pixels (alpha 255), ready for `ImageData`.
#[wasm_bindgen]
pub struct Frame {
    id: u64,
    width: usize,
    height: usize,
    rgba: Vec<u8>,
}

#[wasm_bindgen]
impl Frame {
    /// Position in the video (0 = first frame).
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> f64 {
        self.id as f64
    }
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> usize {
        self.width
    }
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> usize {
        self.height
    }
    /// A copy of the pixels as a `Uint8Array`.
    #[wasm_bindgen(getter)]
    pub fn rgba(&self) -> Vec<u8> {
        self.rgba.clone()
    }
}

#[wasm_bindgen]
impl Generator {
    /// Builds the package's graphs from its files: `names[i]` is the path of `files[i]` inside
    /// the package folder (`model.json`, the graphs it names and their `.data` files).
    /// `options`: `{"backend": "gpu"|"cpu", "weights": "f32"|"f16"|"int8", "precision":
    /// "auto"|"f32"|"f16"}`. `info().precision` says what the UNet computes in once a video
    /// has started (`null` on the CPU backend, which computes in f32).
    pub async fn load(
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
        options: String,
    ) -> Result<Generator, JsError> {
        console_error_panic_hook::set_once();
        if names.len() != files.len() {
            return Err(JsError::new(&format!("{} names for {} files", names.len(), files.len())));
        }
        let options = parse_load_options(&options).map_err(|e| JsError::new(&e))?;
        let files: BTreeMap<String, Vec<u8>> =
            names.into_iter().zip(files.iter().map(|f| f.to_vec())).collect();
        let package = ModelPackage::from_files(files).map_err(|e| JsError::new(&describe(&e)))?;
        let gpu = match options.backend {
            Backend::Gpu => Some(Arc::new(
                GpuContext::new(&GpuOptions::default())
                    .await
                    .map_err(|e| JsError::new(&format!("cannot open WebGPU: {}", describe(&e))))?,
            )),
            Backend::Cpu => None,
        };
        let adapter = gpu.as_ref().map(|g| {
            json!({ "name": g.name(), "backend": format!("{:?}", g.info().backend), "fallback": g.is_cpu_adapter() })
        });
        let p = &package;
        let info = json!({
            "name": p.name,
            "description": p.description,
            // The window in latent frames; a causal video decoder (Wan) makes several video
            // frames from each.
            "frames": p.frames,
            "frames_per_latent": p.graphs.decoder.frames_per_latent,
            "fps": p.fps,
            "width": p.image.width,
            "height": p.image.height,
            "vocabulary": p.text.vocabulary,
            "grammar": p.text.grammar,
            "defaults": p.defaults,
            "weights": options.weights,
            "int8": p.graphs.unet.int8.is_some(),
            "f16": p.graphs.unet.f16.is_some(),
            "backend": options.backend,
            "adapter": adapter,
            "precision": null,
        });
        let run = RunOptions {
            backend: options.backend,
            weights: options.weights,
            precision: options.precision,
            gpu,
            ..Default::default()
        };
        let models = Models::load(package, run).await.map_err(js_error)?;
        Ok(Generator { state: State::Ready(Box::new(models)), info })
    }

    /// The model and backend as JSON: name, frames, fps, width, height, vocabulary, grammar,
    /// defaults, weights, backend, adapter (`null` on the CPU).
    pub fn info(&self) -> String {
        self.info.to_string()
    }

    /// Starts a new video (ending the one running, if any). `settings`: `{"prompt"}` or
    /// `{"schedule"}` (`FRAME: prompt` lines), and optionally seed, partitions, lookahead,
    /// guidance, eta, init (`"clip"`/`"noise"`); the rest from the model's defaults.
    pub async fn start(&mut self, settings: String) -> Result<(), JsError> {
        let models = self.take_models()?;
        let (config, prompts) = match resolve(models.package(), &settings) {
            Ok(run) => run,
            Err(e) => {
                self.state = State::Ready(Box::new(models));
                return Err(JsError::new(&e));
            }
        };
        // A failed start (an unknown word, say) loses the built graphs; the page reloads them.
        let generation = Generation::start(models, config, prompts).await.map_err(js_error)?;
        self.started(generation);
        Ok(())
    }

    /// Continues a video from `checkpoint()` bytes, frame for frame as if never stopped.
    pub async fn resume(&mut self, checkpoint: Vec<u8>) -> Result<(), JsError> {
        let models = self.take_models()?;
        let generation = Generation::resume(models, &checkpoint).await.map_err(js_error)?;
        self.started(generation);
        Ok(())
    }

    /// Runs the queue until the next frame leaves it and decodes that frame.
    pub async fn next_frame(&mut self) -> Result<Frame, JsError> {
        let State::Running(generation) = &mut self.state else {
            return Err(JsError::new("no video is running: call start() or resume() first"));
        };
        let frame = generation.next_frame().await.map_err(js_error)?;
        let mut rgba = Vec::with_capacity(frame.width * frame.height * 4);
        for px in frame.rgb.chunks_exact(3) {
            rgba.extend_from_slice(&[px[0], px[1], px[2], 255]);
        }
        Ok(Frame { id: frame.id, width: frame.width, height: frame.height, rgba })
    }

    /// The running video's whole state, between frames.
    pub async fn checkpoint(&mut self) -> Result<Vec<u8>, JsError> {
        match &mut self.state {
            State::Running(g) => g.checkpoint().await.map_err(js_error),
            _ => Err(JsError::new("no video is running: nothing to checkpoint")),
        }
    }

    /// `{frames, unet_calls, seconds: {text, unet, scheduler, decode}}` of the running video.
    pub fn stats(&self) -> String {
        match &self.state {
            State::Running(g) => {
                let t = g.times();
                json!({
                    "frames": g.frames_emitted(),
                    "unet_calls": g.model_calls(),
                    "queue": g.queue_placement(),
                    "seconds": { "text": t.text, "unet": t.unet, "scheduler": t.scheduler, "decode": t.decode },
                })
                .to_string()
            }
            _ => json!({ "frames": 0, "unet_calls": 0 }).to_string(),
        }
    }
}

impl Generator {
    /// Runs `generation`; its UNet is built now, so the precision it computes in is known.
    fn started(&mut self, generation: Generation) {
        self.info["precision"] = json!(generation.models().unet_precision().map(|p| p.name()));
        self.state = State::Running(Box::new(generation));
    }

    fn take_models(&mut self) -> Result<Models, JsError> {
        match std::mem::replace(&mut self.state, State::Moving) {
            State::Ready(models) => Ok(*models),
            State::Running(g) => Ok(g.into_models()),
            State::Moving => {
                Err(JsError::new("the generator was lost by an earlier failed start; load the model again"))
            }
        }
    }
}

/// Whether WebGPU gives this page an adapter: `{available, name, backend, fallback, reason}`.
/// `fallback` marks a software adapter (SwiftShader), where the wasm CPU backend is faster.
#[wasm_bindgen]
pub async fn gpu_probe() -> String {
    match GpuContext::new(&GpuOptions::default()).await {
        Ok(g) => json!({
            "available": true,
            "name": g.name(),
            "backend": format!("{:?}", g.info().backend),
            "fallback": g.is_cpu_adapter(),
            "reason": null,
        }),
        Err(e) => json!({ "available": false, "name": "", "backend": "", "fallback": false, "reason": describe(&e) }),
    }
    .to_string()
}
