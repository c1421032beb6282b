//! `fifo generate`: text to an endless video on the CPU (and, when it lands, the GPU).

mod init;
mod mp4;
mod output;
mod report;
mod settings;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use fifo_diffusion::fifo::{FifoConfig, InitMode, PromptSchedule};
use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions, Precision};
use fifo_diffusion::model::{ModelError, ModelPackage, Tokenizer, Weights};
use fifo_diffusion::pipeline::{
    Clock, Frame, Generation, IndependentClips, Models, PipelineError, RunOptions,
};
use fifo_diffusion::session::Backend;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use settings::{default_model_dir, model_roots, FrameCount};

#[derive(Args)]
pub struct GenerateArgs {
    /// The prompt, in the model's words (e.g. "a red circle moving right on a black background").
    /// Not needed with --prompt-schedule, --resume or --from.
    pub prompt: Option<String>,
    /// Frames to write: a number, or `inf` to run until Ctrl-C [default: 64].
    #[arg(long)]
    pub frames: Option<FrameCount>,
    /// Output: FILE.y4m, FILE.gif, FILE.mp4, a folder for PNG frames (ending in `/`), or `-` for Y4M on stdout.
    #[arg(long, short, default_value = "video.gif")]
    pub out: String,
    /// Frames per second written into the video [default: the model's].
    #[arg(long)]
    pub fps: Option<u32>,
    /// Random seed [default: 0].
    #[arg(long, conflicts_with = "resume")]
    pub seed: Option<u64>,
    /// Latent partitions n (the diagonal has f*n noise levels) [default: the model's].
    #[arg(long, conflicts_with = "resume")]
    pub partitions: Option<usize>,
    /// DDIM steps, f*n in FIFO-Diffusion: a multiple of the model's window f, setting n = steps/f.
    #[arg(long, conflicts_with_all = ["resume", "partitions"])]
    pub steps: Option<usize>,
    /// Turn lookahead denoising off.
    #[arg(long, conflicts_with = "resume")]
    pub no_lookahead: bool,
    /// Classifier-free guidance scale (1 = no guidance) [default: the model's].
    #[arg(long, conflicts_with = "resume")]
    pub guidance: Option<f64>,
    /// DDIM eta (0 = deterministic) [default: the model's].
    #[arg(long, conflicts_with = "resume")]
    pub eta: Option<f64>,
    /// Queue start: `clip` (re-noise a sampled clip) or `noise` (warm up from pure noise).
    #[arg(long, value_enum, conflicts_with = "resume")]
    pub init: Option<InitArg>,
    /// Start from an image (PNG, JPEG, GIF, WebP): fitted to the model's size, encoded, repeated
    /// over the window and re-noised onto the diagonal (needs the model's image encoder).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["resume", "init", "init_video"])]
    pub init_image: Option<PathBuf>,
    /// Continue a video (animated GIF, Y4M, or a folder of images): its last f frames are
    /// encoded and re-noised onto the diagonal, so the output re-renders them and goes on.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["resume", "init"])]
    pub init_video: Option<PathBuf>,
    /// A prompt schedule file: `FRAME: prompt` cuts and `FRAME..END: prompt` blends, one a line.
    #[arg(long, conflicts_with_all = ["resume", "prompt"])]
    pub prompt_schedule: Option<PathBuf>,
    /// The model package folder [default: $FIFO_MODEL_DIR, else models/shapes-t2v-tiny].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// UNet weights: f32, or the package's int8 or f16 variant (`fifo models` lists them).
    #[arg(long, value_enum, default_value_t = WeightsArg::F32)]
    pub weights: WeightsArg,
    /// Where the model runs: `auto` takes the GPU when one is available, else the CPU.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Activation precision on the GPU backend: f32, f16 (needs shader-f16) or auto (f16 for
    /// int8 / f16 weights where the adapter has shader-f16, else f32).
    #[arg(long, default_value = "auto", value_parser = str::parse::<Precision>)]
    pub precision: Precision,
    /// GPU adapters that split each iteration's windows: `all`, or indices from `fifo devices`
    /// (`0,1`; an index may repeat to open two devices on one adapter). The first also runs the
    /// text encoder and decoder. Implies the GPU backend.
    #[arg(long, value_name = "all|I,J")]
    pub devices: Option<DeviceList>,
    /// With --devices: windows per iteration on each device, in order (e.g. `6,2`) [default:
    /// even, then balanced by measured window time].
    #[arg(long, value_name = "W,W", value_delimiter = ',', requires = "devices")]
    pub split: Option<Vec<usize>>,
    /// On the GPU backend, keep the FIFO queue on the host (an upload and a read-back per
    /// iteration) instead of on the device; for comparing the two loops.
    #[arg(long)]
    pub host_queue: bool,
    /// Write a checkpoint every K frames (to --checkpoint).
    #[arg(long, value_name = "K")]
    pub checkpoint_every: Option<u64>,
    /// Checkpoint file [default: OUT.ckpt].
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Continue from a checkpoint: frames from its position on, identical to an uninterrupted run.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt", "from"])]
    pub resume: Option<PathBuf>,
    /// Write timing and memory figures as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub stats: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Take prompt and settings from a sidecar `<video>.json` of an earlier run (flags override).
    #[arg(long, value_name = "SIDE.json")]
    pub from: Option<PathBuf>,
    /// The naive baseline instead of FIFO-Diffusion: consecutive f-frame clips, each sampled from
    /// fresh noise by the ordinary DDIM sampler (S = f*n steps, as --steps / --partitions set;
    /// same prompts and guidance), concatenated. Clip k's noise comes from the seed and its frames.
    #[arg(
        long,
        conflicts_with_all = [
            "resume", "no_lookahead", "init", "init_image", "init_video", "checkpoint_every",
            "checkpoint", "devices", "split", "host_queue",
        ]
    )]
    pub independent_clips: bool,
}

/// What makes the frames: the FIFO queue, or the independent-clips baseline.
pub enum Source {
    Fifo(Box<Generation>),
    Clips(Box<IndependentClips>),
}

impl Source {
    fn frames_emitted(&self) -> u64 {
        match self {
            Self::Fifo(g) => g.frames_emitted(),
            Self::Clips(c) => c.frames_emitted(),
        }
    }

    async fn next_frame(&mut self) -> Result<Frame, PipelineError> {
        match self {
            Self::Fifo(g) => g.next_frame().await,
            Self::Clips(c) => c.next_frame().await,
        }
    }

    pub fn models(&self) -> &Models {
        match self {
            Self::Fifo(g) => g.models(),
            Self::Clips(c) => c.models(),
        }
    }

    pub fn config(&self) -> &FifoConfig {
        match self {
            Self::Fifo(g) => g.scheduler().config(),
            Self::Clips(c) => c.config(),
        }
    }

    pub fn prompts(&self) -> &PromptSchedule {
        match self {
            Self::Fifo(g) => g.scheduler().prompts(),
            Self::Clips(c) => c.prompts(),
        }
    }

    pub fn model_calls(&self) -> u64 {
        match self {
            Self::Fifo(g) => g.model_calls(),
            Self::Clips(c) => c.model_calls(),
        }
    }

    pub fn mode(&self) -> report::Mode {
        match self {
            Self::Fifo(_) => report::Mode::Fifo,
            Self::Clips(_) => report::Mode::IndependentClips,
        }
    }

    async fn checkpoint(&mut self) -> Result<Vec<u8>, PipelineError> {
        match self {
            Self::Fifo(g) => g.checkpoint().await,
            Self::Clips(_) => Err(PipelineError::Unsupported("independent clips take no checkpoints".into())),
        }
    }

    async fn recover(&mut self, checkpoint: &[u8], upto: u64) -> Result<(), PipelineError> {
        match self {
            Self::Fifo(g) => g.recover(checkpoint, upto).await,
            Self::Clips(_) => Err(PipelineError::Unsupported("independent clips run on one device".into())),
        }
    }
}

/// `--devices`: every adapter, or adapter indices in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceList {
    All,
    Indices(Vec<usize>),
}

impl std::str::FromStr for DeviceList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(Self::All);
        }
        let indices: Result<Vec<usize>, _> = s.split(',').map(|i| i.trim().parse::<usize>()).collect();
        match indices {
            Ok(list) if !list.is_empty() => Ok(Self::Indices(list)),
            _ => Err(format!(
                "`{s}` is not a device list: use `all` or adapter indices like `0,1` (see `fifo devices`)"
            )),
        }
    }
}

impl std::fmt::Display for DeviceList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => write!(f, "all"),
            Self::Indices(list) => {
                let list: Vec<String> = list.iter().map(|i| i.to_string()).collect();
                write!(f, "{}", list.join(","))
            }
        }
    }
}

/// Opens one device per entry of `--devices`.
fn open_devices(list: &DeviceList) -> Result<Vec<Arc<GpuContext>>> {
    let indices = match list {
        DeviceList::Indices(list) => list.clone(),
        DeviceList::All => {
            let count = pollster::block_on(GpuContext::adapters()).len();
            if count == 0 {
                bail!("--devices all: no GPU adapter found; `fifo devices` says how to get one, or use --backend cpu");
            }
            (0..count).collect()
        }
    };
    indices
        .iter()
        .map(|&index| {
            let options = GpuOptions { adapter: AdapterChoice::Index(index), ..Default::default() };
            pollster::block_on(GpuContext::new(&options))
                .map(Arc::new)
                .with_context(|| format!("--devices: cannot open adapter {index}"))
        })
        .collect()
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum InitArg {
    Noise,
    Clip,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum WeightsArg {
    F32,
    Int8,
    F16,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum BackendArg {
    Auto,
    Cpu,
    Gpu,
}

/// Loads the graphs on the chosen backend. `auto` takes a hardware GPU when wgpu finds one and the
/// CPU backend otherwise: on a CPU adapter (lavapipe, SwiftShader) the CPU backend runs the
/// shipped UNet about 12x faster (session 9), and a GPU build that fails falls back too.
fn load_models(
    package: &ModelPackage,
    tokenizer: Option<Tokenizer>,
    place: &settings::Placement,
    weights: Weights,
) -> Result<Models> {
    let (backend, host_queue, precision) = (place.backend, place.host_queue, place.precision);
    if let Some(list) = &place.devices {
        if backend == BackendArg::Cpu {
            bail!("--devices picks GPU adapters; leave out --backend cpu, or --devices");
        }
        let mut devices = open_devices(list)?;
        let gpu = Some(devices.remove(0));
        let options = RunOptions {
            backend: Backend::Gpu,
            weights,
            gpu,
            extra_gpus: devices,
            window_split: place.split.clone(),
            host_queue,
            precision,
        };
        return pollster::block_on(async {
            match tokenizer {
                Some(tokenizer) => Models::load_with(package.clone(), tokenizer, options).await,
                None => Models::load(package.clone(), options).await,
            }
        })
        .map_err(|e| anyhow::anyhow!("{e}; `fifo devices` lists the adapters"));
    }
    let load = |backend, gpu| {
        let options = RunOptions { backend, weights, gpu, host_queue, precision, ..Default::default() };
        pollster::block_on(async {
            match tokenizer.clone() {
                Some(tokenizer) => Models::load_with(package.clone(), tokenizer, options).await,
                None => Models::load(package.clone(), options).await,
            }
        })
    };
    match backend {
        BackendArg::Cpu => Ok(load(Backend::Cpu, None)?),
        BackendArg::Gpu => load(Backend::Gpu, None).map_err(|e| {
            anyhow::anyhow!("{e}; `fifo devices` lists the adapters, `--backend cpu` runs without one")
        }),
        BackendArg::Auto => match pollster::block_on(GpuContext::new(&GpuOptions::default())) {
            Ok(ctx) if !ctx.is_cpu_adapter() => match load(Backend::Gpu, Some(Arc::new(ctx))) {
                Ok(models) => Ok(models),
                Err(e) => {
                    eprintln!("warning: the GPU backend failed ({e}); running on the CPU backend");
                    Ok(load(Backend::Cpu, None)?)
                }
            },
            _ => Ok(load(Backend::Cpu, None)?),
        },
    }
}

/// Frames between the in-memory checkpoints of a run on several devices (without
/// --checkpoint-every): at most this many frames are recomputed after a device is lost.
const RECOVERY_EVERY: u64 = 16;

mod test_hooks {
    /// `FIFO_TEST_LOSE_DEVICE=D@F` destroys device D of the run once frame F is written, as a
    /// driver reset would lose it: how the device-lost path is tested through the binary.
    pub fn lose_device() -> Option<(usize, u64)> {
        let spec = std::env::var("FIFO_TEST_LOSE_DEVICE").ok()?;
        let (device, frame) = spec.split_once('@')?;
        Some((device.parse().ok()?, frame.parse().ok()?))
    }
}

fn progress(quiet: bool, total: Option<u64>, done: u64) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} frames {per_sec} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} {pos} frames {per_sec} (Ctrl-C to stop)",
            )
            .expect("a valid template"),
        ),
    };
    bar.set_position(done);
    bar
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), path.display()))
}

/// The start clip's RGB frames of `--init-image` / `--init-video`, read (and checked against the
/// model) before any model is loaded.
fn read_init_clip(plan: &settings::Plan) -> Result<Option<Vec<Vec<u8>>>> {
    if plan.init_image.is_none() && plan.init_video.is_none() {
        return Ok(None);
    }
    let p = &plan.package;
    if p.graphs.encoder.is_none() {
        return Err(ModelError::NoEncoder { name: p.name.clone() }.into());
    }
    let (f, w, h) = (p.frames, p.image.width, p.image.height);
    Ok(Some(match (&plan.init_image, &plan.init_video) {
        (Some(image), _) => init::clip_from_image(image, f, w, h)?,
        (None, Some(video)) => init::clip_from_video(video, f, w, h)?,
        (None, None) => unreachable!("checked above"),
    }))
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let total_clock = Clock::start();
    let mut plan = settings::resolve(&args)?;
    let kind = output::OutputKind::parse(&args.out)?;
    let checkpoint_path = match (args.checkpoint_every, &args.checkpoint, kind.path()) {
        (Some(0), ..) => bail!("--checkpoint-every must be at least 1 frame"),
        (Some(_), Some(p), _) => Some(p.clone()),
        (Some(_), None, Some(out)) => Some(PathBuf::from(format!("{}.ckpt", out.display()))),
        (Some(_), None, None) => bail!("--checkpoint-every with --out - needs --checkpoint FILE"),
        (None, ..) => None,
    };
    let init_clip = if plan.resume.is_some() { None } else { read_init_clip(&plan)? };
    let load_clock = Clock::start();
    let models = load_models(&plan.package, plan.tokenizer.take(), &plan.place, plan.weights)?;
    let backend = models.backend();
    let load_seconds = load_clock.seconds();
    let mut generation = match (&plan.resume, init_clip) {
        _ if plan.mode == report::Mode::IndependentClips => Source::Clips(Box::new(pollster::block_on(
            IndependentClips::start(models, plan.config.clone(), plan.prompts.clone()),
        )?)),
        (Some(bytes), _) => Source::Fifo(Box::new(pollster::block_on(Generation::resume(models, bytes))?)),
        (None, Some(frames)) => pollster::block_on(async {
            let mut models = models;
            let clip = models.encode_frames(&frames).await?;
            let config = FifoConfig { init: InitMode::Clip, ..plan.config.clone() };
            Generation::start_from_clip(models, config, plan.prompts.clone(), &clip).await
        })
        .map(|g| Source::Fifo(Box::new(g)))?,
        (None, None) => Source::Fifo(Box::new(pollster::block_on(Generation::start(
            models,
            plan.config.clone(),
            plan.prompts.clone(),
        ))?)),
    };
    let first = generation.frames_emitted();
    let end = match plan.frames {
        FrameCount::Count(n) if n <= first => {
            bail!("the checkpoint is already at frame {first}; ask for more --frames than that")
        }
        FrameCount::Count(n) => Some(n),
        FrameCount::Infinite => None,
    };
    let (image, fps) = (&plan.package.image, plan.fps);
    let mut writer = output::open(&kind, image.width, image.height, fps)?;
    let sidecar = report::Sidecar::new(&plan, &generation, &args.out, first);
    if let Some(path) = kind.path() {
        sidecar.write(path, first)?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;

    let bar = progress(args.quiet, end, first);
    let mut write_seconds = 0.0;
    let mut first_frame_seconds = None;
    let loop_clock = Clock::start();
    // A failure mid-run (a full disk, a lost device) still finalises the output and the sidecar:
    // the frames already written stay playable, and the error says how to go on.
    let mut failure: Option<anyhow::Error> = None;
    let mut written = 0u64;
    // With several devices a recent checkpoint stays in memory: a lost device then leaves the
    // run to the others, which recompute from it the frames already written.
    let several = generation.models().devices().len() > 1;
    let recovery_every = several.then(|| args.checkpoint_every.unwrap_or(RECOVERY_EVERY));
    // The output is open: a failure here only means no recovery point yet, the loop reports it.
    let mut recovery = match several {
        true => pollster::block_on(generation.checkpoint()).ok().map(|bytes| (first, bytes)),
        false => None,
    };
    let lose_device = test_hooks::lose_device();
    while end.is_none_or(|end| generation.frames_emitted() < end) && !stop.load(Ordering::SeqCst) {
        let id = generation.frames_emitted();
        let frame = match pollster::block_on(generation.next_frame()) {
            Ok(frame) => frame,
            Err(e) => {
                let lost = generation.models().devices().iter().any(|c| c.is_lost());
                if let (true, Some((at, checkpoint))) = (lost, &recovery) {
                    if !args.quiet {
                        eprintln!("warning: {e}; continuing on the devices left from frame {at}");
                    }
                    match pollster::block_on(generation.recover(checkpoint, id)) {
                        Ok(()) => continue,
                        Err(again) => {
                            failure = Some(anyhow::Error::from(again).context(format!(
                                "a device was lost at frame {id} ({e}) and the devices left could not go on"
                            )));
                            break;
                        }
                    }
                }
                failure = Some(anyhow::Error::from(e).context(format!("generating frame {id} failed")));
                break;
            }
        };
        first_frame_seconds.get_or_insert_with(|| loop_clock.seconds());
        let clock = Clock::start();
        if let Err(e) = writer.write(&frame) {
            failure = Some(e.context(format!("cannot write frame {id} to {}", args.out)));
            break;
        }
        written += 1;
        write_seconds += clock.seconds();
        let done = generation.frames_emitted();
        if let Some((device, _)) = lose_device.filter(|&(_, at)| at == id) {
            if let Some(ctx) = generation.models().devices().get(device) {
                ctx.destroy();
            }
        }
        let to_file = args.checkpoint_every.is_some_and(|k| done % k == 0);
        if to_file || recovery_every.is_some_and(|k| done % k == 0) {
            let bytes = match pollster::block_on(generation.checkpoint()) {
                Ok(bytes) => bytes,
                Err(e) => {
                    failure = Some(
                        anyhow::Error::from(e).context(format!("cannot take a checkpoint after frame {id}")),
                    );
                    break;
                }
            };
            if let (true, Some(path)) = (to_file, &checkpoint_path) {
                if let Err(e) = write_atomic(path, &bytes) {
                    failure = Some(e.context(format!("cannot write the checkpoint after frame {id}")));
                    break;
                }
            }
            if several {
                recovery = Some((done, bytes));
            }
        }
        bar.set_position(done);
    }
    let clock = Clock::start();
    let finished = writer.finish();
    write_seconds += clock.seconds();
    bar.finish_and_clear();
    let sidecar_written = match kind.path() {
        Some(path) => sidecar.write(path, generation.frames_emitted()),
        None => Ok(()),
    };
    if let Some(error) = failure {
        let kept = match (&finished, kind.path()) {
            (Ok(()), Some(_)) => format!("the {written} frames before it are in {}, finalised", args.out),
            (Ok(()), None) => format!("the {written} frames before it went to stdout"),
            (Err(_), _) => format!("the {written} frames before it were written to {}", args.out),
        };
        let next = match &checkpoint_path {
            Some(path) if path.is_file() => {
                format!("continue with `fifo generate --resume {} --out NEW_FILE`", path.display())
            }
            _ => "--checkpoint-every K makes a run resumable".to_string(),
        };
        bail!("{error:#}; {kept}; {next}");
    }
    finished?;
    sidecar_written?;
    if stop.load(Ordering::SeqCst) && !args.quiet {
        eprintln!("interrupted: {written} frames written and the output finalised");
    }
    if let Some(path) = &args.stats {
        let figures = report::Stats::collect(
            &generation,
            written,
            total_clock.seconds(),
            loop_clock.seconds(),
            first_frame_seconds.unwrap_or(0.0),
            load_seconds,
            write_seconds,
            backend,
        );
        std::fs::write(path, serde_json::to_vec_pretty(&figures)?)
            .with_context(|| format!("cannot write --stats {}", path.display()))?;
    }
    Ok(())
}
