//! The FIFO-Diffusion loop: diagonal denoising of a queue of frame latents.
//!
//! Each iteration denoises every window of the queue by one DDIM step, emits the head frame and
//! enqueues fresh noise at the tail. Windows read the queue as it was at the start of the
//! iteration (Jacobi): their results go to `pending` and are committed when all windows are done,
//! so windows may be batched, ordered and split across devices freely.

use super::conditioning::{FrameConditioning, PromptSchedule};
use super::config::{FifoConfig, InitMode};
use super::denoiser::{DenoiseRequest, Denoiser};
use super::layout::{QueueLayout, Window};
use super::ring::LatentRing;
use super::FifoError;
use crate::rng::{NoiseKey, NoisePurpose};
use crate::schedule::StepTable;

/// A frame that left the queue: still a latent, to be decoded by the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmittedFrame<'a> {
    /// Position in the output video (0 = first frame).
    pub id: u64,
    pub latent: &'a [f32],
}

/// Reusable buffers for one model call, sized once for the largest batch.
#[derive(Clone, Debug, Default)]
pub(crate) struct Batch {
    pub(crate) latents: Vec<f32>,
    pub(crate) timesteps: Vec<f32>,
    pub(crate) conditioning: Vec<FrameConditioning>,
    pub(crate) output: Vec<f32>,
}

impl Batch {
    pub(crate) fn with_capacity(windows: usize, frames: usize, frame_len: usize) -> Self {
        Self {
            latents: Vec::with_capacity(windows * frames * frame_len),
            timesteps: Vec::with_capacity(windows * frames),
            conditioning: Vec::with_capacity(windows * frames),
            output: Vec::with_capacity(windows * frames * frame_len),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.latents.clear();
        self.timesteps.clear();
        self.conditioning.clear();
    }

    pub(crate) async fn run<D: Denoiser>(
        &mut self,
        denoiser: &mut D,
        frames: usize,
        frame_len: usize,
    ) -> Result<(), FifoError> {
        let windows = self.timesteps.len() / frames;
        self.output.clear();
        self.output.resize(self.latents.len(), 0.0);
        let request = DenoiseRequest {
            windows,
            frames,
            frame_len,
            latents: &self.latents,
            timesteps: &self.timesteps,
            conditioning: &self.conditioning,
        };
        denoiser.denoise(&request, &mut self.output).await?;
        if self.output.iter().any(|v| !v.is_finite()) {
            return Err(FifoError::NonFiniteModelOutput);
        }
        Ok(())
    }

    /// Classifier-free guidance in place: the conditional half becomes `u + s (c - u)`.
    pub(crate) fn guide(&mut self, guidance: f32) {
        let half = self.output.len() / 2;
        let (cond, uncond) = self.output.split_at_mut(half);
        for (c, &u) in cond.iter_mut().zip(uncond.iter()) {
            *c = u + guidance * (*c - u);
        }
    }
}

/// The scheduler: owns the queue, drives a [`Denoiser`], emits latents.
pub struct FifoScheduler {
    pub(crate) config: FifoConfig,
    pub(crate) layout: QueueLayout,
    pub(crate) table: StepTable,
    pub(crate) prompts: PromptSchedule,
    pub(crate) ring: LatentRing,
    pub(crate) iteration: u64,
    /// Results of this iteration's windows for slots `head..L`, committed at the end.
    pending: Vec<f32>,
    /// Which windows of this iteration are done.
    done: Vec<bool>,
    windows_per_call: usize,
    window_ids: Vec<usize>,
    batch: Batch,
    noise: Vec<f32>,
    emitted: Vec<f32>,
}

impl FifoScheduler {
    /// Builds the queue and fills it as the config's [`InitMode`] says; a clip start first
    /// samples an ordinary f-frame clip with the denoiser.
    pub async fn start<D: Denoiser>(
        config: FifoConfig,
        prompts: PromptSchedule,
        denoiser: &mut D,
    ) -> Result<Self, FifoError> {
        match config.init {
            InitMode::Noise => Self::from_noise(config, prompts),
            InitMode::Clip => {
                let clip = super::clip::sample_clip(&config, &prompts, denoiser).await?;
                Self::from_clip(config, prompts, &clip)
            }
        }
    }

    /// A queue of pure noise that warms up into a diagonal (requires `InitMode::Noise`).
    pub fn from_noise(config: FifoConfig, prompts: PromptSchedule) -> Result<Self, FifoError> {
        if config.init != InitMode::Noise {
            return Err(FifoError::Config("from_noise needs init = noise".into()));
        }
        let mut scheduler = Self::empty(config, prompts)?;
        let last = scheduler.table.len() - 1;
        for slot in 0..scheduler.layout.len() {
            let key = scheduler.key(slot, 0, last, NoisePurpose::Enqueue);
            key.fill_normal(scheduler.ring.frame_mut(slot));
        }
        Ok(scheduler)
    }

    /// Forward-noises an f-frame clip (frame-major, at the cleanest level) onto the diagonal:
    /// slot at index `i` gets clip frame `max(0, i - (S - f))`, head slots get frame 0 at index 0,
    /// each as `signal x0 + noise_scale z` of its index (DDPM: `sqrt(a) x0 + sqrt(1-a) z`;
    /// rectified flow: `(1 - s) x0 + s z`).
    /// The clip may come from [`super::sample_clip`], an encoded video or a repeated image.
    pub fn from_clip(config: FifoConfig, prompts: PromptSchedule, clip: &[f32]) -> Result<Self, FifoError> {
        if config.init != InitMode::Clip {
            return Err(FifoError::Config("from_clip needs init = clip".into()));
        }
        let (f, frame_len) = (config.window, config.frame_len());
        if clip.len() != f * frame_len {
            return Err(FifoError::ClipShape {
                expected: f * frame_len,
                got: clip.len(),
                frames: f,
                frame_len,
            });
        }
        let mut scheduler = Self::empty(config, prompts)?;
        let (steps, head) = (scheduler.layout.steps, scheduler.layout.head);
        for slot in 0..scheduler.layout.len() {
            let index = scheduler.layout.base_label(slot);
            let source = if slot < head { 0 } else { index.saturating_sub(steps - f) };
            let entry = scheduler.table.entry(index);
            let (signal, noise_scale) = (entry.signal as f32, entry.noise_scale as f32);
            let key = scheduler.key(slot, 0, index, NoisePurpose::Renoise);
            let frame = scheduler.ring.frame_mut(slot);
            key.fill_normal(frame);
            let base = &clip[source * frame_len..(source + 1) * frame_len];
            for (x, &b) in frame.iter_mut().zip(base) {
                *x = signal * b + noise_scale * *x;
            }
        }
        Ok(scheduler)
    }

    pub(crate) fn empty(config: FifoConfig, prompts: PromptSchedule) -> Result<Self, FifoError> {
        config.validate()?;
        let table = StepTable::new(&config.schedule, config.steps(), config.eta)?;
        let layout = QueueLayout::new(&config);
        let frame_len = config.frame_len();
        let copies = if config.uses_guidance() { 2 } else { 1 };
        let windows = layout.windows().len();
        Ok(Self {
            ring: LatentRing::new(layout.len(), frame_len),
            pending: vec![0.0; layout.steps * frame_len],
            done: vec![false; windows],
            windows_per_call: windows,
            window_ids: (0..windows).collect(),
            batch: Batch::with_capacity(windows * copies, config.window, frame_len),
            noise: vec![0.0; frame_len],
            emitted: vec![0.0; frame_len],
            iteration: 0,
            config,
            layout,
            table,
            prompts,
        })
    }

    pub fn config(&self) -> &FifoConfig {
        &self.config
    }

    pub fn layout(&self) -> &QueueLayout {
        &self.layout
    }

    pub fn table(&self) -> &StepTable {
        &self.table
    }

    pub fn prompts(&self) -> &PromptSchedule {
        &self.prompts
    }

    /// Iterations completed so far.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Frames emitted so far.
    pub fn frames_emitted(&self) -> u64 {
        self.iteration.saturating_sub(self.layout.first_emit)
    }

    /// This iteration's windows, head side first.
    pub fn windows(&self) -> &[Window] {
        self.layout.windows()
    }

    /// Caps the windows sent to the denoiser in one call by [`Self::step`] (memory vs. speed).
    pub fn set_windows_per_call(&mut self, windows: usize) {
        self.windows_per_call = windows.clamp(1, self.layout.windows().len());
    }

    /// The latent in a logical slot (0 = head) as it stands between iterations.
    pub fn slot(&self, slot: usize) -> &[f32] {
        self.ring.frame(slot)
    }

    fn key(&self, slot: usize, iteration: u64, index: usize, purpose: NoisePurpose) -> NoiseKey {
        NoiseKey {
            seed: self.config.seed,
            frame: self.layout.frame_id(slot, iteration),
            index: index as u16,
            purpose,
        }
    }

    /// One iteration with every window, `windows_per_call` windows per model call. Returns the
    /// emitted frame, or `None` while the queue is warming up.
    pub async fn step<D: Denoiser>(
        &mut self,
        denoiser: &mut D,
    ) -> Result<Option<EmittedFrame<'_>>, FifoError> {
        // Taken out and put back so the hot loop allocates nothing.
        let ids = std::mem::take(&mut self.window_ids);
        let mut result = Ok(());
        for chunk in ids.chunks(self.windows_per_call) {
            result = self.denoise_windows(denoiser, chunk).await;
            if result.is_err() {
                break;
            }
        }
        self.window_ids = ids;
        result?;
        self.finish_iteration()
    }

    /// Runs iterations until the next frame leaves the queue.
    pub async fn next_frame<D: Denoiser>(&mut self, denoiser: &mut D) -> Result<EmittedFrame<'_>, FifoError> {
        while self.iteration < self.layout.first_emit {
            self.step(denoiser).await?;
        }
        let frame = self.step(denoiser).await?;
        Ok(frame.expect("iterations from first_emit on always emit"))
    }

    /// Denoises some of this iteration's windows in one model call (conditional and
    /// unconditional passes batched). Any subset, in any order, in as many calls as wanted.
    pub async fn denoise_windows<D: Denoiser>(
        &mut self,
        denoiser: &mut D,
        ids: &[usize],
    ) -> Result<(), FifoError> {
        if ids.is_empty() {
            return Ok(());
        }
        for (n, &id) in ids.iter().enumerate() {
            if id >= self.done.len() || self.done[id] || ids[..n].contains(&id) {
                return Err(FifoError::WindowTwice { window: id, windows: self.done.len() });
            }
        }
        self.gather(ids);
        let (f, frame_len) = (self.config.window, self.config.frame_len());
        self.batch.run(denoiser, f, frame_len).await?;
        if self.config.uses_guidance() {
            self.batch.guide(self.config.guidance as f32);
        }
        self.apply(ids);
        ids.iter().for_each(|&id| self.done[id] = true);
        Ok(())
    }

    /// Copies the windows' latents, per-frame timesteps and conditioning into the batch;
    /// unconditional copies follow the conditional ones.
    fn gather(&mut self, ids: &[usize]) {
        let it = self.iteration;
        let passes = if self.config.uses_guidance() { 2 } else { 1 };
        self.batch.clear();
        for pass in 0..passes {
            for &id in ids {
                let window = self.layout.windows()[id];
                for slot in window.start..window.start + self.layout.window {
                    let label = self.layout.label(slot, it);
                    self.batch.latents.extend_from_slice(self.ring.frame(slot));
                    self.batch.timesteps.push(self.table.entry(label).timestep as f32);
                    self.batch.conditioning.push(match pass {
                        0 => self.prompts.at(self.layout.frame_id(slot, it)),
                        _ => FrameConditioning::UNCONDITIONAL,
                    });
                }
            }
        }
    }

    /// One DDIM step for every written frame of the windows, into `pending`.
    fn apply(&mut self, ids: &[usize]) {
        let (f, frame_len, head) = (self.layout.window, self.config.frame_len(), self.layout.head);
        for (position, &id) in ids.iter().enumerate() {
            let window = self.layout.windows()[id];
            for offset in window.write_from..f {
                let slot = window.start + offset;
                let label = self.layout.label(slot, self.iteration);
                let model_at = (position * f + offset) * frame_len;
                let model = &self.batch.output[model_at..model_at + frame_len];
                let target = &mut self.pending[(slot - head) * frame_len..(slot - head + 1) * frame_len];
                target.copy_from_slice(self.ring.frame(slot));
                let noise = if self.table.entry(label).c_noise != 0.0 {
                    let key = NoiseKey {
                        seed: self.config.seed,
                        frame: self.layout.frame_id(slot, self.iteration),
                        index: label as u16,
                        purpose: NoisePurpose::Step,
                    };
                    key.fill_normal(&mut self.noise);
                    Some(&self.noise[..])
                } else {
                    None
                };
                self.table.apply(label, target, model, noise);
            }
        }
    }

    /// Commits the iteration once every window is done, emits the head frame (after warm-up),
    /// dequeues it and enqueues fresh noise at the tail.
    pub fn finish_iteration(&mut self) -> Result<Option<EmittedFrame<'_>>, FifoError> {
        if let Some(missing) = self.done.iter().position(|d| !d) {
            return Err(FifoError::WindowMissing { window: missing });
        }
        self.done.fill(false);
        let (frame_len, head) = (self.config.frame_len(), self.layout.head);
        for slot in self.layout.written_slots() {
            let i = slot - head;
            self.ring.frame_mut(slot).copy_from_slice(&self.pending[i * frame_len..(i + 1) * frame_len]);
        }
        let emit = self.iteration >= self.layout.first_emit;
        if emit {
            self.emitted.copy_from_slice(self.ring.frame(head));
        }
        self.iteration += 1;
        self.ring.advance();
        let tail = self.layout.len() - 1;
        let key = self.key(tail, self.iteration, self.table.len() - 1, NoisePurpose::Enqueue);
        key.fill_normal(self.ring.frame_mut(tail));
        Ok(emit
            .then(|| EmittedFrame { id: self.iteration - 1 - self.layout.first_emit, latent: &self.emitted }))
    }

    /// True between iterations (no window of the current iteration done yet).
    pub fn between_iterations(&self) -> bool {
        self.done.iter().all(|d| !d)
    }
}
