//! The "independent clips" baseline of FIFO-Diffusion: a long video as consecutive f-frame
//! clips, each sampled from fresh noise by the ordinary DDIM sampler ([`crate::fifo::sample_clip_at`],
//! the sampler of the FIFO clip start) with the run's prompts and guidance, and concatenated.
//!
//! Clip `k` is output frames `k*f .. (k+1)*f`: its noise is keyed by the seed and those frame
//! numbers, so clip 0 is the clip a FIFO clip start samples, and every clip is independent of
//! the others. Compute per frame matches a FIFO run with the same `S = f * n` steps.

use super::stats::{Clock, StageTimes};
use super::{guidance_passes, Frame, Generation, Models, PipelineError};
use crate::fifo::{sample_clip_at, FifoConfig, PromptSchedule};
use crate::model::PromptContexts;
use crate::tensor::Tensor;
use std::collections::VecDeque;

/// A running independent-clips generation; frames come out one at a time like a
/// [`Generation`]'s, a clip sampled whenever the last one is used up.
pub struct IndependentClips {
    models: Models,
    contexts: PromptContexts,
    config: FifoConfig,
    prompts: PromptSchedule,
    times: StageTimes,
    /// Clips sampled so far.
    clips: u64,
    /// Decoded frames of the current clip not handed out yet.
    pending: VecDeque<Frame>,
    /// Frames decoded so far (the id of the next frame decoded).
    decoded: u64,
}

impl IndependentClips {
    /// Encodes the prompts and builds the UNet for the clip sampler's batch; no clip is sampled
    /// before the first [`Self::next_frame`].
    pub async fn start(
        models: Models,
        config: FifoConfig,
        prompts: PromptSchedule,
    ) -> Result<Self, PipelineError> {
        Generation::check_config(&models, &config)?;
        models.check_prompts(&prompts)?;
        let mut models = models;
        let mut times = StageTimes::default();
        let clock = Clock::start();
        models.unet.prepare(guidance_passes(&config), config.window).await?;
        times.unet += clock.seconds();
        let clock = Clock::start();
        let contexts = models.encode_prompts(&prompts).await?;
        times.text += clock.seconds();
        Ok(Self { models, contexts, config, prompts, times, clips: 0, pending: VecDeque::new(), decoded: 0 })
    }

    /// The next frame, sampling and decoding the next clip when the current one is used up.
    pub async fn next_frame(&mut self) -> Result<Frame, PipelineError> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(frame);
        }
        let f = self.config.window;
        let first = (self.clips * f as u64) as i64;
        let clock = Clock::start();
        let unet_before = self.models.unet.seconds();
        let clip = {
            let mut denoiser = self.models.unet.with(&self.contexts);
            sample_clip_at(&self.config, &self.prompts, first, &mut denoiser).await?
        };
        let unet = self.models.unet.seconds() - unet_before;
        self.times.unet += unet;
        self.times.scheduler += clock.seconds() - unet;
        self.clips += 1;
        let clock = Clock::start();
        let frame_len = self.config.frame_len();
        if self.models.package.graphs.decoder.is_causal() {
            // Each clip is a video of its own: the decoder starts afresh.
            let mut state: Option<Vec<Tensor>> = None;
            for latent in clip.chunks_exact(frame_len) {
                let frames = self.models.decode_causal(&mut state, self.decoded, latent).await?;
                self.decoded += frames.len() as u64;
                self.pending.extend(frames);
            }
        } else {
            for latent in clip.chunks_exact(frame_len) {
                let frame = self.models.decode(self.decoded, latent).await?;
                self.decoded += 1;
                self.pending.push_back(frame);
            }
        }
        self.times.decode += clock.seconds();
        Ok(self.pending.pop_front().expect("a clip holds at least one frame"))
    }

    /// Frames handed out so far (the id of the next frame).
    pub fn frames_emitted(&self) -> u64 {
        self.decoded - self.pending.len() as u64
    }

    /// Clips sampled so far.
    pub fn clips(&self) -> u64 {
        self.clips
    }

    pub fn config(&self) -> &FifoConfig {
        &self.config
    }

    pub fn prompts(&self) -> &PromptSchedule {
        &self.prompts
    }

    pub fn models(&self) -> &Models {
        &self.models
    }

    pub fn times(&self) -> &StageTimes {
        &self.times
    }

    /// UNet calls so far: `S` per clip (each carries the clip's frames, both guidance passes).
    pub fn model_calls(&self) -> u64 {
        self.models.unet.calls()
    }
}
