//! Text to video: the text encoder, the FIFO loop driving the UNet, and the decoder.
//!
//! Prompt contexts are encoded once per run; every UNet call carries all of an iteration's
//! windows, conditional and unconditional passes batched (the scheduler combines them and
//! applies the model's prediction type). Each frame that leaves the queue is decoded at once.
//! Sessions are reached only through [`Session::run_async`], so the GPU backend drops in.

mod causal;
mod clips;
mod denoiser;
mod device_loop;
mod devices;
mod stats;

pub use clips::IndependentClips;
pub use denoiser::UnetDenoiser;
pub use stats::{Clock, StageTimes};

use crate::fifo::{FifoConfig, FifoError, FifoScheduler, PromptSchedule};
use crate::gpu::GpuContext;
use crate::model::{
    GraphSource, ModelError, ModelPackage, PromptContexts, TokenizeError, Tokenizer, Weights,
};
use crate::session::{Backend, Session, SessionError, SessionOptions};
use crate::tensor::Tensor;
use devices::initial_split;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    #[error("cannot open the GPU: {0}")]
    Device(#[source] Box<SessionError>),
    #[error("the {graph} graph: {source}")]
    Session {
        graph: &'static str,
        #[source]
        source: Box<SessionError>,
    },
    #[error("the {graph} graph returned {message}; the package's model.json does not match its graphs")]
    Output { graph: &'static str, message: String },
    #[error(transparent)]
    Fifo(#[from] FifoError),
    #[error(transparent)]
    Checkpoint(#[from] crate::fifo::CheckpointError),
    #[error("{0}")]
    Devices(String),
    #[error("{0}")]
    Unsupported(String),
}

/// A decoded frame, `height * width * 3` RGB bytes, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Position in the video (0 = first frame).
    pub id: u64,
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// How to run the package's graphs.
#[derive(Clone, Default)]
pub struct RunOptions {
    pub backend: Backend,
    pub weights: Weights,
    /// For the GPU backend: an open device to build every graph on; `None` opens the default
    /// adapter.
    pub gpu: Option<Arc<GpuContext>>,
    /// Further devices that share each iteration's windows with `gpu` (native `--devices`); the
    /// text encoder and decoder stay on `gpu`.
    pub extra_gpus: Vec<Arc<GpuContext>>,
    /// Windows per iteration on each device (`gpu` first); `None` starts even and then balances
    /// by measured window time.
    pub window_split: Option<Vec<usize>>,
    /// On the GPU backend, keep the FIFO queue on the host and run the scheduler's own loop (one
    /// upload and read-back per model call) instead of the device-resident loop; for comparisons.
    pub host_queue: bool,
    /// Activation precision of the GPU sessions (`Auto`: f16 for int8 / f16 weights where the
    /// adapter has shader-f16).
    pub precision: crate::gpu::Precision,
}

/// Builds one graph on the CPU, or on the shared GPU device when there is one.
pub(crate) async fn build_session(
    graph: &'static str,
    gpu: &Option<Arc<GpuContext>>,
    source: &GraphSource,
    shapes: &HashMap<String, Vec<usize>>,
    options: &SessionOptions,
) -> Result<Session, PipelineError> {
    let source = source.source()?;
    match gpu {
        Some(ctx) => Session::build_on(ctx.clone(), source, shapes, options).await,
        None => Session::build(source, shapes, options),
    }
    .map_err(session_err(graph))
}

pub(crate) fn session_err(graph: &'static str) -> impl Fn(SessionError) -> PipelineError {
    move |source| PipelineError::Session { graph, source: Box::new(source) }
}

/// Runs `session` and returns its output `name` as f32 values, checked to hold `expected`.
pub(crate) async fn run_graph(
    graph: &'static str,
    session: &Session,
    inputs: HashMap<String, Tensor>,
    name: &str,
    expected: usize,
) -> Result<Vec<f32>, PipelineError> {
    let outputs = session.run_async(inputs).await.map_err(session_err(graph))?;
    output_values(graph, outputs, name, expected)
}

/// The output `name` of a run as f32 values, checked to hold `expected`.
pub(crate) fn output_values(
    graph: &'static str,
    outputs: Vec<(String, Tensor)>,
    name: &str,
    expected: usize,
) -> Result<Vec<f32>, PipelineError> {
    let tensor = outputs
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .ok_or_else(|| PipelineError::Output { graph, message: format!("no output named `{name}`") })?;
    let shape = tensor.shape().to_vec();
    let values = tensor.as_f32().map_err(|e| PipelineError::Output { graph, message: e.to_string() })?;
    if values.len() != expected {
        return Err(PipelineError::Output {
            graph,
            message: format!("shape {shape:?} ({} values) where {expected} were expected", values.len()),
        });
    }
    Ok(values.to_vec())
}

fn f32_tensor(graph: &'static str, shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, PipelineError> {
    Tensor::from_f32(shape, data).map_err(|e| PipelineError::Output { graph, message: e.to_string() })
}

/// Model passes per window: conditional and unconditional with guidance, else conditional only.
fn guidance_passes(config: &FifoConfig) -> usize {
    if config.uses_guidance() {
        2
    } else {
        1
    }
}

/// Windows per UNet call in the FIFO loop: every window of an iteration, every guidance pass.
fn iteration_batch(config: &FifoConfig) -> usize {
    crate::fifo::QueueLayout::new(config).windows().len() * guidance_passes(config)
}

/// The graphs of a package, built for this run's batch sizes (UNet batches on first use).
pub struct Models {
    package: ModelPackage,
    /// The device every graph runs on (GPU backend).
    gpu: Option<Arc<GpuContext>>,
    tokenizer: Tokenizer,
    text: Session,
    decoder: Session,
    /// A causal decoder's graph for the first latent (see [`crate::model::DecoderGraph`]).
    decoder_first: Option<Session>,
    unet: UnetDenoiser,
    /// The UNet on each further device of `RunOptions::extra_gpus`.
    extra: Vec<UnetDenoiser>,
    /// The decoder on each further device, built when the device becomes the head.
    extra_decoders: Vec<Option<Session>>,
    window_split: Option<Vec<usize>>,
    weights: Weights,
    host_queue: bool,
    /// The image encoder, built on first use (`--init-image`, `--init-video`).
    encoder: Option<Session>,
    session_options: SessionOptions,
}

impl Models {
    /// Builds the text encoder and decoder now; UNet sessions are built per batch size on first use.
    /// On the GPU backend every graph shares one device.
    pub async fn load(package: ModelPackage, options: RunOptions) -> Result<Self, PipelineError> {
        let tokenizer = Tokenizer::load(&package)?;
        Self::load_with(package, tokenizer, options).await
    }

    /// [`Self::load`] with the package's tokenizer already loaded (a caller that checked the
    /// prompts with it; a Hugging Face `tokenizer.json` is worth parsing once).
    pub async fn load_with(
        package: ModelPackage,
        tokenizer: Tokenizer,
        options: RunOptions,
    ) -> Result<Self, PipelineError> {
        let unet_graph = package.graph(package.unet_file(options.weights)?);
        unet_graph.source()?; // a package in memory without this UNet fails now, not mid-run
        let gpu_options = crate::gpu::GpuOptions { precision: options.precision, ..Default::default() };
        let session_options =
            SessionOptions { backend: options.backend, gpu: gpu_options, ..Default::default() };
        let gpu = match (options.backend, options.gpu) {
            (Backend::Gpu, Some(ctx)) => Some(ctx),
            (Backend::Gpu, None) => Some(Arc::new(
                GpuContext::new(&session_options.gpu)
                    .await
                    .map_err(|e| PipelineError::Device(Box::new(SessionError::from(e))))?,
            )),
            (Backend::Cpu, _) => None,
        };
        let text_graph = &package.graphs.text_encoder;
        let shapes = HashMap::from([(text_graph.input.clone(), vec![1, package.text.max_tokens])]);
        let source = package.graph(&text_graph.file);
        let text = build_session("text encoder", &gpu, &source, &shapes, &session_options).await?;
        let (l, d) = (&package.latent, &package.graphs.decoder);
        let mut shapes = HashMap::from([(d.input.clone(), vec![1, l.channels, l.height, l.width])]);
        let decoder_first = match &d.first {
            Some(file) => {
                let first =
                    build_session("decoder", &gpu, &package.graph(file), &shapes, &session_options).await?;
                // The state's shapes are those the first graph writes.
                for (input, output) in d.state.iter().zip(&d.next_state) {
                    let info = first.info().outputs.iter().find(|o| &o.name == output);
                    let shape = info.and_then(|o| o.shape.clone()).ok_or_else(|| PipelineError::Output {
                        graph: "decoder",
                        message: format!(
                            "no output named `{output}` in `{file}` (`graphs.decoder.next_state`)"
                        ),
                    })?;
                    shapes.insert(input.clone(), shape);
                }
                Some(first)
            }
            None => None,
        };
        let source = package.graph(&d.file);
        let decoder = build_session("decoder", &gpu, &source, &shapes, &session_options).await?;
        let extra = match options.backend {
            Backend::Gpu => options
                .extra_gpus
                .iter()
                .map(|ctx| {
                    UnetDenoiser::new(
                        &package,
                        unet_graph.clone(),
                        session_options.clone(),
                        Some(ctx.clone()),
                    )
                })
                .collect(),
            Backend::Cpu => Vec::new(),
        };
        let unet = UnetDenoiser::new(&package, unet_graph, session_options.clone(), gpu.clone());
        Ok(Self {
            extra_decoders: extra.iter().map(|_| None).collect(),
            extra,
            window_split: options.window_split,
            weights: options.weights,
            tokenizer,
            package,
            gpu,
            text,
            decoder,
            decoder_first,
            unet,
            host_queue: options.host_queue,
            encoder: None,
            session_options,
        })
    }

    pub fn package(&self) -> &ModelPackage {
        &self.package
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The device the graphs run on, on the GPU backend.
    pub fn gpu(&self) -> Option<&Arc<GpuContext>> {
        self.gpu.as_ref()
    }

    /// Whether this error only says that the chosen backend is not available.
    pub fn backend_unavailable(error: &PipelineError) -> bool {
        matches!(error, PipelineError::Session { source, .. } if matches!(**source, SessionError::Backend(_)))
    }

    pub fn backend(&self) -> Backend {
        self.unet.options().backend
    }

    /// The precision the UNet's GPU sessions run in, once one is built (`None` on the CPU).
    pub fn unet_precision(&self) -> Option<crate::gpu::Precision> {
        self.unet.precision()
    }

    /// The batch sizes the UNet has a session for (the CPU backend's parts included).
    pub fn unet_batches(&self) -> Vec<usize> {
        self.unet.batches()
    }

    /// Builds the UNet for every batch size a run with `config` calls it with (the start clip's
    /// and the FIFO loop's), so that a broken graph fails before any output is written.
    pub async fn prepare(&mut self, config: &FifoConfig) -> Result<(), PipelineError> {
        if config.init == crate::fifo::InitMode::Clip {
            self.unet.prepare(guidance_passes(config), config.window).await?;
        }
        if self.extra.is_empty() || self.host_queue {
            return self.unet.prepare(iteration_batch(config), config.window).await;
        }
        let (devices, split) = initial_split(config, 1 + self.extra.len(), self.window_split.as_deref())?;
        self.prepare_split(config, &devices, &split.counts()).await
    }

    /// Checks every prompt of a schedule against the vocabulary without running anything.
    pub fn check_prompts(&self, prompts: &PromptSchedule) -> Result<(), PipelineError> {
        for p in prompts.prompts() {
            self.tokenizer.encode(p)?;
        }
        Ok(())
    }

    /// Encodes every prompt of a schedule (index 0, the empty prompt, included).
    pub async fn encode_prompts(&self, prompts: &PromptSchedule) -> Result<PromptContexts, PipelineError> {
        let t = &self.package.text;
        let g = &self.package.graphs.text_encoder;
        let len = t.max_tokens * t.dim;
        let mut contexts = Vec::with_capacity(prompts.prompts().len() * len);
        for prompt in prompts.prompts() {
            let ids = self.tokenizer.encode(prompt)?;
            let ids = Tensor::from_i64(vec![1, t.max_tokens], ids)
                .map_err(|e| PipelineError::Output { graph: "text encoder", message: e.to_string() })?;
            let inputs = HashMap::from([(g.input.clone(), ids)]);
            contexts.extend(run_graph("text encoder", &self.text, inputs, &g.output, len).await?);
        }
        Ok(PromptContexts::new(len, contexts))
    }

    /// Decodes one diffusion latent (scaled) into RGB bytes.
    pub async fn decode(&self, id: u64, latent: &[f32]) -> Result<Frame, PipelineError> {
        let (l, i, g) = (&self.package.latent, &self.package.image, &self.package.graphs.decoder);
        let unscaled: Vec<f32> = latent.iter().map(|v| v / l.scale_factor).collect();
        let input = f32_tensor("decoder", vec![1, l.channels, l.height, l.width], unscaled)?;
        let plane = i.height * i.width;
        let rgb = run_graph(
            "decoder",
            &self.decoder,
            HashMap::from([(g.input.clone(), input)]),
            &g.output,
            3 * plane,
        )
        .await?;
        Ok(self.frame_from_planes(id, &rgb))
    }

    /// Decodes one latent with a causal decoder: the first latent through the `first` graph
    /// (`state` is `None` and becomes the initial state), each later one from `state`, which
    /// moves on. Returns the frames, numbered from `first_id`.
    async fn decode_causal(
        &self,
        state: &mut Option<Vec<Tensor>>,
        first_id: u64,
        latent: &[f32],
    ) -> Result<Vec<Frame>, PipelineError> {
        let (l, i, g) = (&self.package.latent, &self.package.image, &self.package.graphs.decoder);
        let unscaled: Vec<f32> = latent.iter().map(|v| v / l.scale_factor).collect();
        let input = f32_tensor("decoder", vec![1, l.channels, l.height, l.width], unscaled)?;
        let mut feeds = HashMap::from([(g.input.clone(), input)]);
        let (session, frames) = match state.take() {
            None => (self.decoder_first.as_ref().expect("built for a causal decoder"), g.first_frames),
            Some(values) => {
                feeds.extend(g.state.iter().cloned().zip(values));
                (&self.decoder, g.frames_per_latent)
            }
        };
        let mut outputs: HashMap<String, Tensor> =
            session.run_async(feeds).await.map_err(session_err("decoder"))?.into_iter().collect();
        let missing = |name: &str| PipelineError::Output {
            graph: "decoder",
            message: format!("no output named `{name}`"),
        };
        let next: Vec<Tensor> = g
            .next_state
            .iter()
            .map(|n| outputs.remove(n).ok_or_else(|| missing(n)))
            .collect::<Result<_, _>>()?;
        let rgb = outputs.remove(&g.output).ok_or_else(|| missing(&g.output))?;
        let plane = 3 * i.height * i.width;
        let values =
            rgb.as_f32().map_err(|e| PipelineError::Output { graph: "decoder", message: e.to_string() })?;
        if values.len() != frames * plane {
            return Err(PipelineError::Output {
                graph: "decoder",
                message: format!(
                    "shape {:?} where {frames} frames of 3x{}x{} were expected",
                    rgb.shape(),
                    i.height,
                    i.width
                ),
            });
        }
        *state = Some(next);
        Ok(values
            .chunks_exact(plane)
            .zip(first_id..)
            .map(|(planes, id)| self.frame_from_planes(id, planes))
            .collect())
    }

    /// Encodes RGB frames (`height * width * 3` bytes each, the package's image size) into a clip
    /// of diffusion latents (scaled), frame-major: the start clip of [`Generation::start_from_clip`].
    pub async fn encode_frames(&mut self, frames: &[Vec<u8>]) -> Result<Vec<f32>, PipelineError> {
        let (l, i) = (&self.package.latent, &self.package.image);
        let Some(g) = self.package.graphs.encoder.clone() else {
            return Err(ModelError::NoEncoder { name: self.package.name.clone() }.into());
        };
        if self.encoder.is_none() {
            let shapes = HashMap::from([(g.input.clone(), vec![1, 3, i.height, i.width])]);
            let source = self.package.graph(&g.file);
            self.encoder =
                Some(build_session("encoder", &self.gpu, &source, &shapes, &self.session_options).await?);
        }
        let encoder = self.encoder.as_ref().expect("built above");
        let (plane, len) = (i.height * i.width, l.channels * l.height * l.width);
        let (low, high) = (i.range[0], i.range[1]);
        let mut clip = Vec::with_capacity(frames.len() * len);
        for (n, rgb) in frames.iter().enumerate() {
            if rgb.len() != 3 * plane {
                return Err(PipelineError::Output {
                    graph: "encoder",
                    message: format!(
                        "frame {n} holds {} bytes, {}x{} RGB needs {}",
                        rgb.len(),
                        i.width,
                        i.height,
                        3 * plane
                    ),
                });
            }
            let mut planar = vec![0f32; 3 * plane];
            for (p, px) in rgb.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    planar[c * plane + p] = low + (high - low) * f32::from(px[c]) / 255.0;
                }
            }
            let input = f32_tensor("encoder", vec![1, 3, i.height, i.width], planar)?;
            let latent =
                run_graph("encoder", encoder, HashMap::from([(g.input.clone(), input)]), &g.output, len)
                    .await?;
            clip.extend(latent.iter().map(|v| v * l.scale_factor));
        }
        Ok(clip)
    }

    /// Planar decoder output in the package's range to interleaved RGB bytes.
    fn frame_from_planes(&self, id: u64, rgb: &[f32]) -> Frame {
        let i = &self.package.image;
        let plane = i.height * i.width;
        let (low, high) = (i.range[0], i.range[1]);
        let mut bytes = vec![0u8; 3 * plane];
        for (p, px) in bytes.chunks_exact_mut(3).enumerate() {
            for (c, out) in px.iter_mut().enumerate() {
                let v = (rgb[c * plane + p] - low) / (high - low);
                *out = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        Frame { id, width: i.width, height: i.height, rgb: bytes }
    }
}

/// A running generation: the FIFO queue, the prompt contexts and the stage clocks.
pub struct Generation {
    models: Models,
    contexts: PromptContexts,
    scheduler: FifoScheduler,
    times: StageTimes,
    /// The device-resident loop (GPU backend, unless the host queue was asked for or the
    /// graphs' inputs are not plain f32 tensors).
    device: Option<device_loop::DeviceLoop>,
    /// The devices (of [`Models::devices`]) that run the device loop, head first.
    active: Vec<usize>,
    /// Why the queue stays on the host on the GPU backend.
    host_queue_reason: Option<String>,
    /// A causal decoder's state and the frames it decoded ahead.
    causal: CausalDecoding,
}

/// The run's side of a causal decoder: each dequeued latent becomes several frames, handed out
/// one per [`Generation::next_frame`].
#[derive(Default)]
struct CausalDecoding {
    state: Option<Vec<Tensor>>,
    pending: std::collections::VecDeque<Frame>,
    /// Frames decoded so far (the id of the next frame decoded).
    decoded: u64,
}

impl Generation {
    /// The FIFO settings for this package: window, frame shape and schedule from `model.json`.
    pub fn config(package: &ModelPackage) -> FifoConfig {
        FifoConfig {
            window: package.frames,
            partitions: package.defaults.partitions,
            lookahead: package.defaults.lookahead,
            eta: package.defaults.eta,
            guidance: package.defaults.guidance,
            seed: 0,
            init: package.defaults.init,
            frame_shape: package.latent.frame_shape(),
            schedule: package.schedule.clone(),
        }
    }

    /// Encodes the prompts and fills the queue (sampling the start clip for `init = clip`).
    pub async fn start(
        models: Models,
        config: FifoConfig,
        prompts: PromptSchedule,
    ) -> Result<Self, PipelineError> {
        Self::check_config(&models, &config)?;
        models.check_prompts(&prompts)?;
        let mut models = models;
        let mut times = StageTimes::default();
        let unet_before = models.unet.seconds();
        models.prepare(&config).await?;
        let clock = Clock::start();
        let contexts = models.encode_prompts(&prompts).await?;
        times.text += clock.seconds();
        let clock = Clock::start();
        let started = models.unet.seconds();
        let scheduler = {
            let mut denoiser = models.unet.with(&contexts);
            FifoScheduler::start(config, prompts, &mut denoiser).await?
        };
        times.unet += models.unet.seconds() - unet_before;
        times.scheduler += clock.seconds() - (models.unet.seconds() - started);
        Self::assemble(models, contexts, scheduler, times, CausalDecoding::default()).await
    }

    /// The run from its parts, on the device-resident loop where the backend and graphs allow
    /// (a causal decoder's side of the run is in place before the queue is).
    async fn assemble(
        models: Models,
        contexts: PromptContexts,
        scheduler: FifoScheduler,
        times: StageTimes,
        causal: CausalDecoding,
    ) -> Result<Self, PipelineError> {
        let mut run = Self {
            models,
            contexts,
            scheduler,
            times,
            device: None,
            active: Vec::new(),
            host_queue_reason: None,
            causal,
        };
        run.place_queue().await?;
        Ok(run)
    }

    /// Where the queue lives between iterations: `"device"` (one submission per iteration) or
    /// `"host"` (the scheduler's own loop).
    pub fn queue_placement(&self) -> &'static str {
        if self.device.is_some() {
            "device"
        } else {
            "host"
        }
    }

    /// On the GPU backend with the queue on the host: why (asked for, or what in the graphs'
    /// inputs and outputs the device loop cannot feed).
    pub fn host_queue_reason(&self) -> Option<&str> {
        self.host_queue_reason.as_deref()
    }

    /// Starts from a given clip of `f` latents (frame-major, scaled; e.g. [`Models::encode_frames`]
    /// of an image repeated or of a video's last frames) forward-noised onto the diagonal, as the
    /// official clip start does with its sampled clip. `config.init` must be `clip`.
    pub async fn start_from_clip(
        models: Models,
        config: FifoConfig,
        prompts: PromptSchedule,
        clip: &[f32],
    ) -> Result<Self, PipelineError> {
        Self::check_config(&models, &config)?;
        models.check_prompts(&prompts)?;
        let mut models = models;
        let mut times = StageTimes::default();
        let clock = Clock::start();
        // The clip is given: only the FIFO loop's batch is needed, not the clip sampler's.
        models.prepare(&FifoConfig { init: crate::fifo::InitMode::Noise, ..config.clone() }).await?;
        times.unet += clock.seconds();
        let clock = Clock::start();
        let contexts = models.encode_prompts(&prompts).await?;
        times.text += clock.seconds();
        let scheduler = FifoScheduler::from_clip(config, prompts, clip)?;
        Self::assemble(models, contexts, scheduler, times, CausalDecoding::default()).await
    }

    /// Restores a run from [`Self::checkpoint`] bytes; refuses a checkpoint of another model, or
    /// one whose causal decoder state does not fit the package's decoder.
    pub async fn resume(mut models: Models, checkpoint: &[u8]) -> Result<Self, PipelineError> {
        let (scheduler, decoder) =
            FifoScheduler::from_checkpoint_with(checkpoint, Some(&models.package.name))?;
        Self::check_config(&models, scheduler.config())?;
        let causal = CausalDecoding::restore(&models, scheduler.frames_emitted(), decoder)?;
        let mut times = StageTimes::default();
        let clock = Clock::start();
        models.prepare(scheduler.config()).await?;
        times.unet += clock.seconds();
        let clock = Clock::start();
        let contexts = models.encode_prompts(scheduler.prompts()).await?;
        times.text += clock.seconds();
        Self::assemble(models, contexts, scheduler, times, causal).await
    }

    fn check_config(models: &Models, config: &FifoConfig) -> Result<(), PipelineError> {
        let p = &models.package;
        if config.window != p.frames
            || config.frame_shape != p.latent.frame_shape()
            || config.schedule != p.schedule
        {
            return Err(FifoError::Config(format!(
                "the settings do not match model `{}` (window {}, latent {:?}, its schedule)",
                p.name,
                p.frames,
                p.latent.frame_shape()
            ))
            .into());
        }
        config.validate()?;
        Ok(())
    }

    /// Runs iterations until the next frame leaves the queue, and decodes it. With a causal
    /// decoder a dequeued latent decodes into several frames, handed out one per call.
    pub async fn next_frame(&mut self) -> Result<Frame, PipelineError> {
        if self.models.package.graphs.decoder.is_causal() {
            return self.next_causal_frame().await;
        }
        if self.device.is_some() {
            return self.next_frame_on_device().await;
        }
        let clock = Clock::start();
        let unet_before = self.models.unet.seconds();
        let (id, latent) = {
            let mut denoiser = self.models.unet.with(&self.contexts);
            let frame = self.scheduler.next_frame(&mut denoiser).await?;
            (frame.id, frame.latent.to_vec())
        };
        let unet = self.models.unet.seconds() - unet_before;
        self.times.unet += unet;
        self.times.scheduler += clock.seconds() - unet;
        let clock = Clock::start();
        let frame = self.models.decode(id, &latent).await?;
        self.times.decode += clock.seconds();
        Ok(frame)
    }

    /// The next latent's iterations run on the host queue (see `place_queue`).
    async fn next_causal_frame(&mut self) -> Result<Frame, PipelineError> {
        if let Some(frame) = self.causal.pending.pop_front() {
            return Ok(frame);
        }
        if self.device.is_some() {
            // The decoder's state stays on the device, next to the queue.
            let (_, rgb) = self.emit_on_device().await?;
            let clock = Clock::start();
            let i = &self.models.package.image;
            let frames: Vec<Frame> = rgb
                .chunks_exact(3 * i.height * i.width)
                .zip(self.causal.decoded..)
                .map(|(planes, id)| self.models.frame_from_planes(id, planes))
                .collect();
            self.times.decode += clock.seconds();
            self.causal.decoded += frames.len() as u64;
            self.causal.pending.extend(frames);
            return Ok(self.causal.pending.pop_front().expect("a decoder graph makes at least one frame"));
        }
        let clock = Clock::start();
        let unet_before = self.models.unet.seconds();
        let latent = {
            let mut denoiser = self.models.unet.with(&self.contexts);
            self.scheduler.next_frame(&mut denoiser).await?.latent.to_vec()
        };
        let unet = self.models.unet.seconds() - unet_before;
        self.times.unet += unet;
        self.times.scheduler += clock.seconds() - unet;
        let clock = Clock::start();
        let frames = self.models.decode_causal(&mut self.causal.state, self.causal.decoded, &latent).await?;
        self.times.decode += clock.seconds();
        self.causal.decoded += frames.len() as u64;
        self.causal.pending.extend(frames);
        Ok(self.causal.pending.pop_front().expect("a decoder graph makes at least one frame"))
    }

    /// [`Self::next_frame`] on the device-resident loop: iterations until one emits.
    async fn next_frame_on_device(&mut self) -> Result<Frame, PipelineError> {
        let (id, rgb) = self.emit_on_device().await?;
        let clock = Clock::start();
        let frame = self.models.frame_from_planes(id, &rgb);
        self.times.decode += clock.seconds();
        Ok(frame)
    }

    /// Iterations of the device-resident loop until one emits: the latent's id and its decoded
    /// planes (several frames' with a causal decoder).
    async fn emit_on_device(&mut self) -> Result<(u64, Vec<f32>), PipelineError> {
        let (mut calls, before) = (0, self.times.unet);
        let emitted = loop {
            if let Err(e) = self.rebalance().await {
                break Err(e);
            }
            let device = self.device.as_mut().expect("checked by the caller");
            let counts = device.split().counts();
            let Some(sessions) = self.models.loop_sessions(self.scheduler.config(), &self.active, &counts)
            else {
                unreachable!("the device loop is only made with its sessions on the GPU");
            };
            calls += 1;
            match device.iterate(&sessions, &mut self.scheduler, &mut self.times).await {
                Ok(Some(frame)) => break Ok(frame),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        };
        self.models.unet.count_calls(calls, self.times.unet - before);
        emitted
    }

    /// The whole run state (between frames): the queue and, with a causal decoder, its state
    /// and the frames it decoded ahead; resuming from it continues bit for bit. On the
    /// device-resident loop the queue is read back first.
    pub async fn checkpoint(&mut self) -> Result<Vec<u8>, PipelineError> {
        self.sync_causal_state().await?;
        if let Some(device) = &mut self.device {
            device.sync(&mut self.scheduler).await?;
        }
        let decoder = self.causal.checkpoint(&self.models)?;
        Ok(self.scheduler.checkpoint_with(&self.models.package.name, decoder.as_ref())?)
    }

    /// On the device-resident loop, reads a causal decoder's state back into `causal.state`.
    async fn sync_causal_state(&mut self) -> Result<(), PipelineError> {
        let Some(device) = &self.device else { return Ok(()) };
        let Some(values) = device.decoder_state().await? else { return Ok(()) };
        let d = &self.models.package.graphs.decoder;
        let inputs = &self.models.decoder.info().inputs;
        let mut state = Vec::with_capacity(values.len());
        for (name, values) in d.state.iter().zip(values) {
            let shape = inputs.iter().find(|i| &i.name == name).and_then(|i| i.shape.clone());
            let shape = shape.unwrap_or_else(|| vec![values.len()]);
            state.push(f32_tensor("decoder", shape, values)?);
        }
        self.causal.state = Some(state);
        Ok(())
    }

    pub fn scheduler(&self) -> &FifoScheduler {
        &self.scheduler
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    /// Ends the run and keeps its built graphs for the next one.
    pub fn into_models(self) -> Models {
        self.models
    }

    /// Frames emitted so far (the id of the next frame).
    pub fn frames_emitted(&self) -> u64 {
        if self.models.package.graphs.decoder.is_causal() {
            self.causal.decoded - self.causal.pending.len() as u64
        } else {
            self.scheduler.frames_emitted()
        }
    }

    pub fn times(&self) -> &StageTimes {
        &self.times
    }

    /// UNet calls so far (each carries all windows of an iteration, or one start-clip step).
    pub fn model_calls(&self) -> u64 {
        self.models.unet.calls()
    }
}
