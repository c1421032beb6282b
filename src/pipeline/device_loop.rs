//! The FIFO loop with the queue resident on the GPU: one submission per iteration.
//!
//! Each iteration the host draws the plan ([`IterationPlan`]: rows, timesteps, prompt blends,
//! written slots, noise) and uploads only those small tables and the noise; one command buffer
//! then gathers the windows into the UNet's input, blends the contexts, runs the UNet, applies
//! guidance and the DDIM step in place, moves the emitted head into the decoder, runs it and
//! refills the tail. Only the decoded frame is read back. The scheduler's own copy of the queue
//! goes stale and is read back for checkpoints ([`DeviceLoop::sync`]).

use super::stats::Clock;
use super::{PipelineError, StageTimes};
use crate::fifo::{FifoScheduler, IterationPlan};
use crate::gpu::ops::copy::gather;
use crate::gpu::ops::fifo::{blend_contexts, ddim_step, move_frame, NO_NOISE};
use crate::gpu::{DType, GpuContext, GpuError, GpuTensor, Program, ProgramBuilder};
use crate::gpu_backend::{DeviceValue, GpuSession};
use crate::model::{ModelPackage, PromptContexts};
use std::sync::Arc;

/// The graphs' device inputs and outputs the loop writes and reads.
struct Io<'a> {
    latents: &'a GpuTensor,
    context: &'a GpuTensor,
    output: &'a GpuTensor,
    timesteps: DeviceValue,
    decoder_in: &'a GpuTensor,
    decoded: GpuTensor,
}

pub(crate) struct DeviceLoop {
    ctx: Arc<GpuContext>,
    /// The queue, `L` frames in the scheduler's physical order.
    queue: GpuTensor,
    rows: GpuTensor,
    blends: GpuTensor,
    updates: GpuTensor,
    noise: GpuTensor,
    moves: GpuTensor,
    timesteps: DeviceValue,
    before_unet: Program,
    after_unet: Program,
    emit: Program,
    refill: Program,
    decoded: GpuTensor,
    staging: wgpu::Buffer,
    plan: IterationPlan,
    words: Vec<u32>,
    /// Whether the scheduler's host copy of the queue is current.
    synced: bool,
}

fn named<'a>(values: &'a [DeviceValue], name: &str, graph: &str) -> Result<&'a DeviceValue, String> {
    values.iter().find(|v| v.name == name).ok_or_else(|| format!("the {graph} graph has no value `{name}`"))
}

fn f32_value<'a>(
    values: &'a [DeviceValue],
    name: &str,
    graph: &str,
    len: usize,
) -> Result<&'a GpuTensor, String> {
    let v = named(values, name, graph)?;
    if v.tensor.dtype() != DType::F32 || v.tensor.len() != len {
        return Err(format!(
            "the {graph} value `{name}` is {} x {} on the device, not f32 x {len}",
            v.tensor.len(),
            v.tensor.dtype().name()
        ));
    }
    Ok(&v.tensor)
}

/// Finds the values the loop feeds, or says why this package's graphs do not fit it.
fn io<'a>(
    package: &ModelPackage,
    unet: &'a GpuSession,
    decoder: &'a GpuSession,
    rows: usize,
    frame_len: usize,
    context_len: usize,
) -> Result<Io<'a>, String> {
    let g = &package.graphs.unet;
    let timesteps = named(unet.inputs(), &g.timesteps, "UNet")?.clone();
    if timesteps.tensor.len() != rows || !matches!(timesteps.tensor.dtype(), DType::F32 | DType::I32) {
        return Err("the UNet's timesteps are neither f32 nor integers, one per row".into());
    }
    let d = &package.graphs.decoder;
    let plane = package.image.height * package.image.width;
    Ok(Io {
        latents: f32_value(unet.inputs(), &g.latents, "UNet", rows * frame_len)?,
        context: f32_value(unet.inputs(), &g.context, "UNet", rows * context_len)?,
        output: f32_value(unet.outputs(), &g.output, "UNet", rows * frame_len)?,
        timesteps,
        decoder_in: f32_value(decoder.inputs(), &d.input, "decoder", frame_len)?,
        decoded: f32_value(decoder.outputs(), &d.output, "decoder", 3 * plane)?.clone(),
    })
}

impl DeviceLoop {
    /// Builds the loop's buffers and programs around the UNet session for the scheduler's
    /// whole-iteration batch and the decoder session, and uploads the queue and the contexts.
    /// `Ok(Err(why))` when the graphs' inputs and outputs do not fit the loop (the scheduler's
    /// host loop then runs them).
    pub(crate) async fn new(
        package: &ModelPackage,
        unet: &GpuSession,
        decoder: &GpuSession,
        scheduler: &FifoScheduler,
        contexts: &PromptContexts,
    ) -> Result<Result<Self, String>, PipelineError> {
        let ctx = unet.context().clone();
        let gpu = |e: GpuError| PipelineError::Device(Box::new(e.into()));
        let config = scheduler.config();
        let frame_len = config.frame_len();
        let mut plan = IterationPlan::default();
        scheduler.plan_iteration(&mut plan);
        let (rows, updates) = (plan.rows.len(), plan.updates.len());
        let slots = scheduler.layout().len();
        let Io { latents, context, output, timesteps, decoder_in, decoded } =
            match io(package, unet, decoder, rows, frame_len, contexts.len()) {
                Ok(io) => io,
                Err(why) => return Ok(Err(why)),
            };

        let new = |name: &str, dtype: DType, len: usize| GpuTensor::new(&ctx, name, dtype, len).map_err(gpu);
        let queue = GpuTensor::from_f32(&ctx, "fifo queue", scheduler.queue()).map_err(gpu)?;
        let prompts = GpuTensor::from_f32(&ctx, "prompt contexts", contexts.data()).map_err(gpu)?;
        let row_slots = new("fifo rows", DType::I32, rows)?;
        let blends = new("fifo blends", DType::I32, 4 * rows)?;
        let update_table = new("fifo updates", DType::I32, 4 * updates)?;
        let noise = new("fifo noise", DType::F32, (updates + 1) * frame_len)?;
        let moves = new("fifo moves", DType::I32, 4)?;
        let table = scheduler.table();
        let mut coefficients = Vec::with_capacity(4 * table.len());
        for e in table.entries() {
            coefficients.extend([e.c_x as f32, e.c_model as f32, e.c_noise as f32, 0.0]);
        }
        let coefficients = GpuTensor::from_f32(&ctx, "ddim coefficients", &coefficients).map_err(gpu)?;

        let mut b = ProgramBuilder::new(&ctx);
        gather(&mut b, &queue, &[slots, frame_len], 0, &row_slots, latents).map_err(gpu)?;
        blend_contexts(&mut b, &prompts, &blends, rows, contexts.len(), context).map_err(gpu)?;
        let before_unet = b.build().await.map_err(gpu)?;
        let mut b = ProgramBuilder::new(&ctx);
        let guidance = config.uses_guidance().then_some((config.guidance as f32, rows / 2));
        ddim_step(&mut b, output, &noise, &update_table, &coefficients, &queue, updates, frame_len, guidance)
            .map_err(gpu)?;
        let after_unet = b.build().await.map_err(gpu)?;
        let mut b = ProgramBuilder::new(&ctx);
        move_frame(&mut b, &queue, &moves, 0, frame_len, package.latent.scale_factor, decoder_in)
            .map_err(gpu)?;
        let emit = b.build().await.map_err(gpu)?;
        let mut b = ProgramBuilder::new(&ctx);
        move_frame(&mut b, &noise, &moves, 1, frame_len, 1.0, &queue).map_err(gpu)?;
        let refill = b.build().await.map_err(gpu)?;
        let staging = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("decoded frame"),
            // The frame's bytes only: the decoder's output may sit in a larger pooled buffer.
            size: decoded.dtype().storage_bytes(decoded.len()),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Ok(Self {
            ctx,
            queue,
            rows: row_slots,
            blends,
            updates: update_table,
            noise,
            moves,
            timesteps,
            before_unet,
            after_unet,
            emit,
            refill,
            decoded,
            staging,
            plan,
            words: Vec::new(),
            synced: true,
        }))
    }

    /// Writes this iteration's tables and noise (they land before the next submission).
    fn upload_plan(&mut self) {
        let Self { ctx, plan, words, rows, blends, updates, noise, moves, timesteps, .. } = self;
        let mut put = |tensor: &GpuTensor, fill: &dyn Fn(&mut Vec<u32>)| {
            words.clear();
            fill(words);
            ctx.write_buffer(tensor.buffer(), 0, bytemuck::cast_slice(words));
        };
        put(rows, &|w| w.extend(&plan.rows));
        put(&timesteps.tensor, &|w| match timesteps.tensor.dtype() {
            DType::I32 => w.extend(plan.timesteps.iter().map(|&t| t as i32 as u32)),
            _ => w.extend(plan.timesteps.iter().map(|t| t.to_bits())),
        });
        put(blends, &|w| plan.conditioning.iter().for_each(|c| w.extend([c.from, c.to, c.mix.to_bits(), 0])));
        put(updates, &|w| {
            plan.updates.iter().for_each(|u| w.extend([u.slot, u.row, u.index, u.noise.unwrap_or(NO_NOISE)]))
        });
        put(moves, &|w| w.extend([plan.emit.map_or(0, |(_, slot)| slot), 0, plan.tail_noise, plan.tail]));
        ctx.write_buffer(noise.buffer(), 0, bytemuck::cast_slice(&plan.noise));
    }

    /// One iteration in one submission; returns the emitted frame's id and decoded values
    /// (`3 * height * width`, planar, in the decoder's range) once the queue emits.
    pub(crate) async fn iterate(
        &mut self,
        unet: &GpuSession,
        decoder: &GpuSession,
        scheduler: &mut FifoScheduler,
        times: &mut StageTimes,
    ) -> Result<Option<(u64, Vec<f32>)>, PipelineError> {
        let gpu = |e: GpuError| PipelineError::Device(Box::new(e.into()));
        let clock = Clock::start();
        scheduler.plan_iteration(&mut self.plan);
        self.upload_plan();
        let emit = self.plan.emit;
        times.scheduler += clock.seconds();
        let clock = Clock::start();
        self.ctx.check_fault().map_err(gpu)?;
        let ctx = self.ctx.clone();
        ctx.scoped("running a FIFO iteration", || {
            let mut encoder = ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("fifo iteration") });
            self.before_unet.encode(&mut encoder);
            unet.encode(&mut encoder);
            self.after_unet.encode(&mut encoder);
            if emit.is_some() {
                self.emit.encode(&mut encoder);
                decoder.encode(&mut encoder);
                let size = self.staging.size();
                encoder.copy_buffer_to_buffer(self.decoded.buffer(), 0, &self.staging, 0, size);
            }
            self.refill.encode(&mut encoder);
            ctx.submit(encoder.finish());
        })
        .await
        .map_err(gpu)?;
        self.synced = false;
        let frame = match emit {
            Some((id, _)) => {
                let values = self.read_frame().await.map_err(gpu)?;
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(PipelineError::Output {
                        graph: "UNet",
                        message: "NaN or infinite values in the decoded frame: the model diverged".into(),
                    });
                }
                Some((id, values))
            }
            None => None,
        };
        times.unet += clock.seconds();
        let id = scheduler.finish_external_iteration();
        debug_assert_eq!(id, emit.map(|(id, _)| id));
        Ok(frame)
    }

    async fn read_frame(&self) -> Result<Vec<f32>, GpuError> {
        let bytes = self.ctx.read_staging(&self.staging, "decoded frame").await?;
        Ok(bytemuck::cast_slice::<u8, f32>(&bytes)[..self.decoded.len()].to_vec())
    }

    /// Reads the device queue back into the scheduler (for a checkpoint).
    pub(crate) async fn sync(&mut self, scheduler: &mut FifoScheduler) -> Result<(), PipelineError> {
        if !self.synced {
            let data = self
                .ctx
                .read_f32(&self.queue)
                .await
                .map_err(|e| PipelineError::Device(Box::new(e.into())))?;
            scheduler.load_queue(&data[..scheduler.queue().len()])?;
            self.synced = true;
        }
        Ok(())
    }
}
