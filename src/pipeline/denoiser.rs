//! The UNet as the scheduler's [`Denoiser`]: one session per batch size, contexts per frame.

use super::stats::Clock;
use super::{build_session, f32_tensor, run_graph};
use crate::fifo::{DenoiseRequest, Denoiser, DenoiserError};
use crate::gpu::GpuContext;
use crate::model::{GraphSource, ModelPackage, PromptContexts, UnetGraph};
use crate::session::{Backend, Session, SessionOptions};
use std::collections::HashMap;
use std::sync::Arc;

/// The package's UNet, built lazily for each batch size the scheduler asks for.
pub struct UnetDenoiser {
    graph: UnetGraph,
    source: GraphSource,
    options: SessionOptions,
    /// The device every batch size's session is built on (GPU backend).
    gpu: Option<Arc<GpuContext>>,
    /// `[C, H, W]` of one frame latent.
    frame_shape: Vec<usize>,
    tokens: usize,
    dim: usize,
    sessions: Vec<(usize, Session)>,
    calls: u64,
    seconds: f64,
    context: Vec<f32>,
}

impl UnetDenoiser {
    pub fn new(
        package: &ModelPackage,
        source: GraphSource,
        options: SessionOptions,
        gpu: Option<Arc<GpuContext>>,
    ) -> Self {
        Self {
            graph: package.graphs.unet.clone(),
            source,
            options,
            gpu,
            frame_shape: package.latent.frame_shape(),
            tokens: package.text.max_tokens,
            dim: package.text.dim,
            sessions: Vec::new(),
            calls: 0,
            seconds: 0.0,
            context: Vec::new(),
        }
    }

    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// The precision of the GPU sessions built so far (all alike), `None` before any or on the CPU.
    pub fn precision(&self) -> Option<crate::gpu::Precision> {
        self.sessions.first().and_then(|(_, s)| s.gpu()).map(|g| g.precision())
    }

    /// The device its sessions are built on (GPU backend).
    pub fn gpu(&self) -> Option<&Arc<GpuContext>> {
        self.gpu.as_ref()
    }

    /// Model calls so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Seconds spent in model calls (session builds included).
    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// This denoiser with the run's prompt contexts, as the scheduler's [`Denoiser`].
    pub fn with<'a>(&'a mut self, contexts: &'a PromptContexts) -> Conditioned<'a> {
        Conditioned { unet: self, contexts }
    }

    /// Builds the session for one batch size now rather than on its first call (on the CPU, the
    /// session of the parts such a call is split into).
    pub async fn prepare(&mut self, batch: usize, frames: usize) -> Result<(), super::PipelineError> {
        let clock = Clock::start();
        let part = self.cpu_parts(batch)[0];
        self.session(part, frames).await?;
        self.seconds += clock.seconds();
        Ok(())
    }

    /// The batch sizes built so far.
    pub fn batches(&self) -> Vec<usize> {
        self.sessions.iter().map(|(b, _)| *b).collect()
    }

    /// The session already built for `batch` windows.
    pub(crate) fn built(&self, batch: usize) -> Option<&Session> {
        self.sessions.iter().find(|(b, _)| *b == batch).map(|(_, s)| s)
    }

    /// Counts model calls made outside [`Conditioned`] (the device-resident loop).
    pub(crate) fn count_calls(&mut self, calls: u64, seconds: f64) {
        self.calls += calls;
        self.seconds += seconds;
    }

    async fn session(&mut self, batch: usize, frames: usize) -> Result<&Session, super::PipelineError> {
        if let Some(i) = self.sessions.iter().position(|(b, _)| *b == batch) {
            return Ok(&self.sessions[i].1);
        }
        let g = &self.graph;
        let mut latents = vec![batch, frames];
        latents.extend(&self.frame_shape);
        let shapes = HashMap::from([
            (g.latents.clone(), latents),
            (g.timesteps.clone(), vec![batch, frames]),
            (g.context.clone(), vec![batch, frames, self.tokens, self.dim]),
        ]);
        let session = build_session("UNet", &self.gpu, &self.source, &shapes, &self.options).await?;
        self.sessions.push((batch, session));
        Ok(&self.sessions.last().expect("just pushed").1)
    }

    async fn run(
        &mut self,
        contexts: &PromptContexts,
        request: &DenoiseRequest<'_>,
        output: &mut [f32],
    ) -> Result<(), super::PipelineError> {
        let (b, f) = (request.windows, request.frames);
        let mut context = std::mem::take(&mut self.context);
        context.clear();
        for &c in request.conditioning {
            contexts.extend_blend(c, &mut context);
        }
        // Natively only: wasm32 has one thread (and its GPU sessions are not `Send`).
        #[cfg(not(target_arch = "wasm32"))]
        {
            let parts = self.cpu_parts(b);
            if parts.len() > 1 {
                let result = self.run_parts(&parts, request, &context, output).await;
                self.context = context;
                return result;
            }
        }
        let mut latent_shape = vec![b, f];
        latent_shape.extend(&self.frame_shape);
        let inputs = HashMap::from([
            (self.graph.latents.clone(), f32_tensor("UNet", latent_shape, request.latents.to_vec())?),
            (self.graph.timesteps.clone(), f32_tensor("UNet", vec![b, f], request.timesteps.to_vec())?),
            (
                self.graph.context.clone(),
                f32_tensor("UNet", vec![b, f, self.tokens, self.dim], context.clone())?,
            ),
        ]);
        self.context = context;
        let name = self.graph.output.clone();
        let values = run_graph("UNet", self.session(b, f).await?, inputs, &name, output.len()).await?;
        output.copy_from_slice(&values);
        Ok(())
    }
}

impl UnetDenoiser {
    /// Batch sizes a CPU call of `b` windows is split into: as many equal parts as there are
    /// threads, or the most that divide `b` (equal parts share one session, so at most one more
    /// copy of the weights). The parts run side by side, each op of a part mostly on its own
    /// thread, instead of every op of one call forking and joining all the threads (a cost that
    /// grows with their number). A GPU call stays whole.
    /// `FIFO_NO_BATCH_SPLIT=1` keeps calls whole (to compare).
    fn cpu_parts(&self, b: usize) -> Vec<usize> {
        let off =
            cfg!(not(target_arch = "wasm32")) && std::env::var("FIFO_NO_BATCH_SPLIT").is_ok_and(|v| v == "1");
        if off || self.gpu.is_some() || self.options.backend != Backend::Cpu {
            return vec![b];
        }
        let threads = crate::cpu::parallel::num_threads();
        let n = (1..=threads.min(b)).rev().find(|n| b.is_multiple_of(*n)).unwrap_or(1);
        vec![b / n; n]
    }

    /// [`Self::run`] as `parts` calls of consecutive windows, run in parallel on the CPU backend.
    #[cfg(not(target_arch = "wasm32"))]
    async fn run_parts(
        &mut self,
        parts: &[usize],
        request: &DenoiseRequest<'_>,
        context: &[f32],
        output: &mut [f32],
    ) -> Result<(), super::PipelineError> {
        let (b, f) = (request.windows, request.frames);
        for &size in parts {
            self.session(size, f).await?;
        }
        let per_window = |values: usize| values / b;
        let (latent, timestep, ctx, out) =
            (per_window(request.latents.len()), f, per_window(context.len()), per_window(output.len()));
        let mut tasks = Vec::with_capacity(parts.len());
        let (mut first, mut rest) = (0, output);
        for &size in parts {
            let (part_out, tail) = std::mem::take(&mut rest).split_at_mut(size * out);
            rest = tail;
            let window = |per: usize, values: &[f32]| values[first * per..(first + size) * per].to_vec();
            let mut latent_shape = vec![size, f];
            latent_shape.extend(&self.frame_shape);
            let inputs = HashMap::from([
                (
                    self.graph.latents.clone(),
                    f32_tensor("UNet", latent_shape, window(latent, request.latents))?,
                ),
                (
                    self.graph.timesteps.clone(),
                    f32_tensor("UNet", vec![size, f], window(timestep, request.timesteps))?,
                ),
                (
                    self.graph.context.clone(),
                    f32_tensor("UNet", vec![size, f, self.tokens, self.dim], window(ctx, context))?,
                ),
            ]);
            let session = self.built(size).expect("built just above");
            tasks.push((session, inputs, part_out, None));
            first += size;
        }
        let name = &self.graph.output;
        crate::cpu::parallel::for_each_item(tasks.iter_mut().collect(), |(session, inputs, out, result)| {
            let run = session.run(std::mem::take(inputs)).map_err(super::session_err("UNet"));
            *result = Some(run.and_then(|outputs| {
                out.copy_from_slice(&super::output_values("UNet", outputs, name, out.len())?);
                Ok(())
            }));
        });
        tasks.into_iter().try_for_each(|(.., result)| result.expect("every part ran"))
    }
}

/// [`UnetDenoiser`] borrowed together with the prompt contexts of a run.
pub struct Conditioned<'a> {
    unet: &'a mut UnetDenoiser,
    contexts: &'a PromptContexts,
}

impl Denoiser for Conditioned<'_> {
    async fn denoise(
        &mut self,
        request: &DenoiseRequest<'_>,
        output: &mut [f32],
    ) -> Result<(), DenoiserError> {
        let clock = Clock::start();
        let result = self.unet.run(self.contexts, request, output).await;
        self.unet.seconds += clock.seconds();
        self.unet.calls += 1;
        result.map_err(|e| DenoiserError(Box::new(e)))
    }
}
