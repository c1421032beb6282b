//! The sidecar `<out>.json` (everything needed to reproduce a video) and `--stats`.

use super::settings::Plan;
use super::Source;
use anyhow::{Context, Result};
use fifo_diffusion::fifo::{FifoConfig, PromptSchedule};
use fifo_diffusion::gpu::Traffic;
use fifo_diffusion::model::Weights;
use fifo_diffusion::pipeline::StageTimes;
use fifo_diffusion::session::Backend;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub dir: String,
    pub weights: Weights,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PromptEntry {
    pub start: u64,
    /// Frames over which this prompt blends in from the previous one (0 = a cut).
    pub blend: u64,
    pub prompt: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FrameRange {
    /// Id of the first frame in this file (non-zero after --resume).
    pub first: u64,
    /// Frames emitted by the scheduler so far (the id after the last frame written).
    pub end: u64,
    /// What was asked for: a number or `inf`.
    pub requested: String,
}

fn absolute(path: &Path) -> String {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// How the frames were made: FIFO-Diffusion, or the naive baseline of consecutive clips each
/// sampled from fresh noise (`--independent-clips`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Fifo,
    IndependentClips,
}

/// `<out>.json`, written when the output opens and again when it is finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sidecar {
    pub generator: String,
    pub model: ModelRef,
    pub prompt_schedule: Vec<PromptEntry>,
    /// `fifo` or `independent-clips` (older sidecars lack it: FIFO).
    #[serde(default)]
    pub mode: Mode,
    pub settings: FifoConfig,
    pub fps: u32,
    pub frames: FrameRange,
    pub out: String,
    /// The start files (`--init-image` / `--init-video`), absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_video: Option<String>,
    /// Where the video was computed; `--from` runs there again unless flags choose (older
    /// sidecars lack it: then the usual `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<RanOn>,
}

/// The backend and devices of a run: the GPU and CPU backends agree only within a tolerance, so
/// reproducing a video byte for byte needs the same place.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RanOn {
    pub backend: Backend,
    /// As `fifo devices` names them (for the reader; the CPU backend gives its thread count).
    pub devices: Vec<String>,
    /// `--devices` as given (`all` or adapter indices), when the run split windows over adapters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_list: Option<String>,
    /// `--split`, when the run fixed the windows per device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Vec<usize>>,
    /// The UNet's activation precision on the GPU backend (`f32` or `f16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

impl Sidecar {
    pub fn new(plan: &Plan, generation: &Source, out: &str, first: u64) -> Self {
        let prompts = generation.prompts();
        let prompt_schedule = prompts
            .changes()
            .iter()
            .map(|c| PromptEntry {
                start: c.start,
                blend: c.blend,
                prompt: prompts.prompts()[c.prompt as usize].clone(),
            })
            .collect();
        let dir = plan.package.dir.canonicalize().unwrap_or_else(|_| plan.package.dir.clone());
        Self {
            generator: concat!("fifo-diffusion ", env!("CARGO_PKG_VERSION")).into(),
            model: ModelRef {
                name: plan.package.name.clone(),
                dir: dir.display().to_string(),
                weights: plan.weights,
            },
            prompt_schedule,
            mode: generation.mode(),
            settings: generation.config().clone(),
            fps: plan.fps,
            frames: FrameRange { first, end: first, requested: plan.frames.to_string() },
            out: out.into(),
            init_image: plan.init_image.as_deref().map(absolute),
            init_video: plan.init_video.as_deref().map(absolute),
            ran_on: Some(RanOn {
                backend: generation.models().backend(),
                devices: device_names(generation, generation.models().backend()),
                device_list: plan.place.devices.as_ref().map(|list| list.to_string()),
                split: plan.place.split.clone(),
                precision: generation.models().unet_precision().map(|p| p.name().to_string()),
            }),
        }
    }

    pub fn path_for(out: &Path) -> PathBuf {
        let name = out.file_name().map(|n| n.to_string_lossy().trim_end_matches('/').to_string());
        out.with_file_name(format!("{}.json", name.unwrap_or_else(|| "video".into())))
    }

    pub fn write(&self, out: &Path, end: u64) -> Result<()> {
        let mut s = self.clone();
        s.frames.end = end;
        let path = Self::path_for(out);
        std::fs::write(&path, serde_json::to_vec_pretty(&s)?)
            .with_context(|| format!("cannot write the sidecar {}", path.display()))
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --from {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!("--from {} is not a sidecar written by fifo generate (<video>.json)", path.display())
        })
    }

    pub fn prompt_schedule(&self) -> Result<PromptSchedule> {
        let entries = self.prompt_schedule.iter().map(|e| (e.start, e.blend, e.prompt.clone()));
        PromptSchedule::from_entries(entries).context("the sidecar's prompt schedule")
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Stages {
    /// Reading the package and building the text encoder and decoder.
    pub load: f64,
    #[serde(flatten)]
    pub run: StageTimes,
    pub write: f64,
}

/// `--stats FILE.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub frames: u64,
    /// Wall time of the whole command.
    pub seconds: f64,
    /// Steady-state frames per second: frames after the first over the time they took.
    pub frames_per_second: f64,
    /// From a filled queue to the first frame written (the warm-up iterations of a clip start
    /// with n > 1, or of a noise start, fall here).
    pub first_frame_seconds: f64,
    pub model_calls: u64,
    /// FIFO iterations, or with independent clips the DDIM steps of all clips.
    pub iterations: u64,
    /// `fifo` or `independent-clips`.
    pub mode: Mode,
    /// Clips sampled (independent clips only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clips: Option<u64>,
    pub stages: Stages,
    pub peak_host_rss_bytes: Option<u64>,
    /// Most tensor bytes held at once on each of `devices` (GPU backend; empty on the CPU).
    pub peak_device_bytes: Vec<u64>,
    pub backend: Backend,
    /// The UNet's activation precision on the GPU backend (`f32` or `f16`; absent on the CPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<&'static str>,
    pub devices: Vec<String>,
    /// Where the FIFO queue lived: `device` (one submission per iteration, only frames read
    /// back) or `host`; with `host_queue_reason` on the GPU backend (`none` for independent clips).
    pub queue: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_queue_reason: Option<String>,
    /// Host-device traffic per device (GPU backend): submissions and bytes each way.
    pub traffic: Vec<Traffic>,
    /// With several devices: how the windows were split at the end of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
}

/// Windows per iteration on each device of the run (indices into `devices`) and the frames
/// moved between them per iteration.
#[derive(Clone, Debug, Serialize)]
pub struct Split {
    pub devices: Vec<usize>,
    pub windows: Vec<usize>,
    pub frames_exchanged_per_iteration: usize,
}

/// The run's devices as `fifo devices` names them, or the CPU backend's thread count.
fn device_names(generation: &Source, backend: Backend) -> Vec<String> {
    let gpus = generation.models().devices();
    match backend {
        Backend::Gpu if !gpus.is_empty() => gpus.iter().map(|ctx| ctx.describe()).collect(),
        _ => {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            vec![format!("cpu ({threads} threads)")]
        }
    }
}

/// VmHWM from /proc (Linux); None elsewhere.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Stats {
    #[allow(clippy::too_many_arguments)]
    pub fn collect(
        generation: &Source,
        frames: u64,
        seconds: f64,
        loop_seconds: f64,
        first_frame_seconds: f64,
        load: f64,
        write: f64,
        backend: Backend,
    ) -> Self {
        let gpus = generation.models().devices();
        let devices = device_names(generation, backend);
        let peak_device_bytes = gpus.iter().map(|ctx| ctx.memory().peak_bytes()).collect();
        let fifo = match generation {
            Source::Fifo(g) => Some(g),
            Source::Clips(_) => None,
        };
        let split = fifo.and_then(|g| g.device_split()).filter(|_| gpus.len() > 1).map(
            |(devices, windows, moved)| Split { devices, windows, frames_exchanged_per_iteration: moved },
        );
        let (iterations, clips, times, queue, host_queue_reason) = match generation {
            Source::Fifo(g) => (
                g.scheduler().iteration(),
                None,
                *g.times(),
                g.queue_placement(),
                g.host_queue_reason().map(str::to_string),
            ),
            Source::Clips(c) => {
                (c.clips() * c.config().steps() as u64, Some(c.clips()), *c.times(), "none", None)
            }
        };
        Self {
            frames,
            seconds,
            frames_per_second: if frames > 1 && loop_seconds > first_frame_seconds {
                (frames - 1) as f64 / (loop_seconds - first_frame_seconds)
            } else {
                0.0
            },
            first_frame_seconds,
            model_calls: generation.model_calls(),
            iterations,
            mode: generation.mode(),
            clips,
            stages: Stages { load, run: times, write },
            peak_host_rss_bytes: peak_rss(),
            peak_device_bytes,
            backend,
            precision: generation.models().unet_precision().map(|p| p.name()),
            devices,
            queue,
            host_queue_reason,
            traffic: gpus.iter().map(|ctx| ctx.traffic()).collect(),
            split,
        }
    }
}
