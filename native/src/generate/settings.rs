//! Resolving a run's settings: flags, then a `--from` sidecar, then the model's defaults.

use super::report::{Mode, Sidecar};
use super::{BackendArg, DeviceList, GenerateArgs, InitArg, WeightsArg};
use anyhow::{bail, Context, Result};
use fifo_diffusion::fifo::{FifoConfig, InitMode, PromptSchedule};
use fifo_diffusion::model::{ModelPackage, Tokenizer, Weights};
use fifo_diffusion::pipeline::Generation;
use fifo_diffusion::schedule::StepTable;
use fifo_diffusion::session::Backend;
use std::path::{Path, PathBuf};

/// The model used when neither --model nor FIFO_MODEL_DIR names one.
pub const DEFAULT_MODEL: &str = "shapes-t2v-tiny";
const DEFAULT_FRAMES: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCount {
    Count(u64),
    Infinite,
}

impl std::str::FromStr for FrameCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "inf" | "infinite" => Ok(Self::Infinite),
            _ => match s.parse::<u64>() {
                Ok(0) => Err("--frames must be at least 1 (or `inf`)".into()),
                Ok(n) => Ok(Self::Count(n)),
                Err(_) => Err(format!("`{s}` is not a frame count: use a number >= 1 or `inf`")),
            },
        }
    }
}

impl std::fmt::Display for FrameCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Infinite => write!(f, "inf"),
        }
    }
}

/// Everything a run needs, resolved and checked before any work starts.
pub struct Plan {
    pub package: ModelPackage,
    pub weights: Weights,
    pub config: FifoConfig,
    pub prompts: PromptSchedule,
    pub frames: FrameCount,
    pub fps: u32,
    /// Checkpoint bytes for --resume.
    pub resume: Option<Vec<u8>>,
    /// The package's tokenizer, loaded once to check the prompts and kept for the run.
    pub tokenizer: Option<Tokenizer>,
    /// `--init-image` / `--init-video`, or the `--from` sidecar's.
    pub init_image: Option<PathBuf>,
    pub init_video: Option<PathBuf>,
    pub place: Placement,
    /// FIFO-Diffusion, or `--independent-clips` (also from a `--from` sidecar).
    pub mode: Mode,
}

/// Where the model runs: the flags, else where the `--from` sidecar's video was made.
#[derive(Clone, Debug)]
pub struct Placement {
    pub backend: BackendArg,
    pub devices: Option<DeviceList>,
    pub split: Option<Vec<usize>>,
    pub host_queue: bool,
    pub precision: fifo_diffusion::gpu::Precision,
}

impl Placement {
    fn resolve(args: &GenerateArgs, sidecar: Option<&Sidecar>) -> Result<Self> {
        let flags = Self {
            backend: args.backend,
            devices: args.devices.clone(),
            split: args.split.clone(),
            host_queue: args.host_queue,
            precision: args.precision,
        };
        let chosen = args.backend != BackendArg::Auto || args.devices.is_some();
        let Some(ran_on) = sidecar.and_then(|s| s.ran_on.as_ref()).filter(|_| !chosen) else {
            return Ok(flags);
        };
        let devices = match &ran_on.device_list {
            Some(list) => Some(list.parse::<DeviceList>().map_err(|e| {
                anyhow::anyhow!("the --from sidecar's device list: {e}; pass --devices or --backend")
            })?),
            None => None,
        };
        let backend = match ran_on.backend {
            Backend::Cpu => BackendArg::Cpu,
            Backend::Gpu => BackendArg::Gpu,
        };
        // The sidecar's precision too, unless --precision chose one.
        let precision = match (&ran_on.precision, args.precision) {
            (Some(p), fifo_diffusion::gpu::Precision::Auto) => p.parse().unwrap_or(args.precision),
            _ => args.precision,
        };
        Ok(Self { backend, split: devices.as_ref().and(ran_on.split.clone()), devices, precision, ..flags })
    }
}

/// The model folder: --model, the sidecar's, $FIFO_MODEL_DIR, `models/` above the executable,
/// then the source tree's `models/`.
fn model_dir(args: &GenerateArgs, sidecar: Option<&Sidecar>) -> PathBuf {
    if let Some(dir) = &args.model {
        return dir.clone();
    }
    if let Some(dir) = sidecar.map(|s| PathBuf::from(&s.model.dir)).filter(|d| d.join("model.json").is_file())
    {
        return dir;
    }
    match sidecar {
        Some(s) if std::env::var_os("FIFO_MODEL_DIR").is_none() => find_model(&s.model.name),
        _ => default_model_dir(),
    }
}

/// The package used without --model: $FIFO_MODEL_DIR, else [`DEFAULT_MODEL`] in the first of
/// [`model_roots`] that holds it.
pub fn default_model_dir() -> PathBuf {
    match std::env::var_os("FIFO_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => find_model(DEFAULT_MODEL),
    }
}

/// The folders searched for packages by name: every `models/` above the executable, then the
/// source tree's `models/` (which need not exist).
pub fn model_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(|a| a.join("models")).filter(|d| d.is_dir()));
    }
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"));
    roots
}

/// The package `name` in the first root holding it, else where the source tree would hold it.
fn find_model(name: &str) -> PathBuf {
    let roots = model_roots();
    roots
        .iter()
        .map(|root| root.join(name))
        .find(|dir| dir.join("model.json").is_file())
        .unwrap_or_else(|| roots[roots.len() - 1].join(name))
}

fn read_prompts(
    args: &GenerateArgs,
    sidecar: Option<&Sidecar>,
    package: &ModelPackage,
) -> Result<(PromptSchedule, Tokenizer)> {
    let tokenizer = Tokenizer::load(package)?;
    let prompts = if let Some(path) = &args.prompt_schedule {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --prompt-schedule {}", path.display()))?;
        PromptSchedule::parse(&text).with_context(|| format!("in {}", path.display()))?
    } else if let Some(prompt) = &args.prompt {
        PromptSchedule::single(prompt).map_err(|_| {
            anyhow::anyhow!(
                "the prompt is empty; describe the video, e.g. \"{}\"",
                example(&package.text.grammar)
            )
        })?
    } else if let Some(s) = sidecar {
        s.prompt_schedule()?
    } else {
        bail!(
            "no prompt: pass one (e.g. fifo generate \"{}\"), or --prompt-schedule FILE, --resume FILE or --from SIDE.json",
            example(&package.text.grammar)
        );
    };
    for text in prompts.prompts() {
        tokenizer.encode(text)?;
    }
    Ok((prompts, tokenizer))
}

/// How the model's prompts look, for error messages.
fn example(grammar: &Option<String>) -> String {
    grammar.clone().unwrap_or_else(|| "a prompt in the model's vocabulary".into())
}

pub fn resolve(args: &GenerateArgs) -> Result<Plan> {
    let sidecar = match &args.from {
        Some(path) => Some(Sidecar::read(path)?),
        None => None,
    };
    let dir = model_dir(args, sidecar.as_ref());
    let package = ModelPackage::load(&dir)?;
    let weights = match (args.weights, sidecar.as_ref()) {
        (WeightsArg::Int8, _) => Weights::Int8,
        (WeightsArg::F16, _) => Weights::F16,
        (WeightsArg::F32, Some(s)) => s.model.weights,
        (WeightsArg::F32, None) => Weights::F32,
    };
    package.unet_path(weights)?;
    let resume = match &args.resume {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read --resume {}", path.display()))?)
        }
        None => None,
    };
    let from = sidecar.as_ref().map(|s| &s.settings);
    let mut config = from.cloned().unwrap_or_else(|| Generation::config(&package));
    if args.resume.is_none() {
        config.partitions = args.partitions.unwrap_or(config.partitions);
        if let Some(steps) = args.steps {
            let f = config.window;
            if steps == 0 || steps % f != 0 {
                let near = (steps / f).max(1) * f;
                bail!(
                    "--steps {steps}: FIFO-Diffusion takes f*n steps (window f = {f} for this model); \
                     use --steps {near} or {} (or --partitions N)",
                    near + f
                );
            }
            config.partitions = steps / f;
        }
        config.lookahead = config.lookahead && !args.no_lookahead;
        config.guidance = args.guidance.unwrap_or(config.guidance);
        config.eta = args.eta.unwrap_or(config.eta);
        config.seed = args.seed.unwrap_or(config.seed);
        config.init = match args.init {
            Some(InitArg::Clip) => InitMode::Clip,
            Some(InitArg::Noise) => InitMode::Noise,
            None => config.init,
        };
        config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        if config.window != package.frames || config.frame_shape != package.latent.frame_shape() {
            bail!("the --from sidecar was made with another model than {}", dir.display());
        }
        StepTable::new(&config.schedule, config.steps(), config.eta).map_err(|e| {
            anyhow::anyhow!("--partitions {} does not fit this model: {e}", config.partitions)
        })?;
    }
    let (prompts, tokenizer) = match args.resume {
        Some(_) => (PromptSchedule::single("unused").expect("a valid prompt"), None),
        None => {
            let (prompts, tokenizer) = read_prompts(args, sidecar.as_ref(), &package)?;
            (prompts, Some(tokenizer))
        }
    };
    let place = Placement::resolve(args, sidecar.as_ref())?;
    let mode = match (args.independent_clips, &sidecar) {
        (true, _) => Mode::IndependentClips,
        (false, Some(s)) if args.resume.is_none() => s.mode,
        _ => Mode::Fifo,
    };
    if mode == Mode::IndependentClips && place.devices.is_some() {
        bail!("independent clips run on one device: leave out --devices");
    }
    let frames = args.frames.or(sidecar.as_ref().and_then(|s| s.frames.requested.parse().ok()));
    let fps = args.fps.or(sidecar.as_ref().map(|s| s.fps)).unwrap_or(package.fps);
    if fps == 0 {
        bail!("--fps must be at least 1");
    }
    Ok(Plan {
        package,
        weights,
        config,
        prompts,
        frames: frames.unwrap_or(FrameCount::Count(DEFAULT_FRAMES)),
        fps,
        resume,
        tokenizer,
        init_image: args
            .init_image
            .clone()
            .or_else(|| sidecar_path(sidecar.as_ref(), |s| &s.init_image, args)),
        init_video: args
            .init_video
            .clone()
            .or_else(|| sidecar_path(sidecar.as_ref(), |s| &s.init_video, args)),
        place,
        mode,
    })
}

/// A start file the `--from` sidecar names, unless the command line chose another start.
fn sidecar_path(
    sidecar: Option<&Sidecar>,
    field: fn(&Sidecar) -> &Option<String>,
    args: &GenerateArgs,
) -> Option<PathBuf> {
    let chosen = args.init.is_some() || args.init_image.is_some() || args.init_video.is_some();
    sidecar.filter(|_| !chosen).and_then(|s| field(s).as_ref().map(PathBuf::from))
}
