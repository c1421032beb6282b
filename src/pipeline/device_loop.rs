//! The FIFO loop with the queue resident on the GPU(s): one submission per device and iteration.
//!
//! Each iteration the host draws the plan ([`IterationPlan`]: rows, timesteps, prompt blends,
//! written slots, noise) and uploads only those small tables and the noise; one command buffer
//! then gathers the windows into the UNet's input, blends the contexts, runs the UNet, applies
//! guidance and the DDIM step in place, moves the emitted head into the decoder, runs it and
//! refills the tail. Only the decoded frame is read back. The scheduler's own copy of the queue
//! goes stale and is read back for checkpoints ([`DeviceLoop::sync`]).
//!
//! With several devices each takes a contiguous range of windows ([`WindowSplit`]) and runs its
//! share of the plan on its own copy of the queue; between iterations only the frames of the
//! split's transfers move (through the host), a few per device boundary whatever the queue
//! length. The first iterations run the devices one after another and time them; the split is
//! then balanced by measured window time ([`DeviceLoop::balanced_split`]).

use super::stats::Clock;
use super::{PipelineError, StageTimes};
use crate::fifo::{FifoScheduler, IterationPlan, Transfer, WindowSplit};
use crate::gpu::ops::copy::gather;
use crate::gpu::ops::fifo::{blend_contexts, ddim_step, move_frame, NO_NOISE};
use crate::gpu::{DType, GpuContext, GpuError, GpuTensor, Program, ProgramBuilder};
use crate::gpu_backend::{DeviceValue, GpuSession};
use crate::model::{ModelPackage, PromptContexts};
use std::ops::Range;
use std::sync::Arc;

/// The sessions one device runs: the UNet for its share of the windows, and the decoder on the
/// device that holds the head.
#[derive(Clone, Copy)]
pub(crate) struct DeviceSessions<'a> {
    pub unet: &'a GpuSession,
    pub decoder: Option<&'a GpuSession>,
    /// A causal decoder's graph for the first latent (with `decoder`).
    pub decoder_first: Option<&'a GpuSession>,
}

/// Iterations at the start that run the devices one after another; the last two are timed.
const TIMED_ITERATIONS: usize = 3;

fn gpu_err(e: GpuError) -> PipelineError {
    PipelineError::Device(Box::new(e.into()))
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

fn map_read_buffer(ctx: &GpuContext, label: &str, size: u64) -> wgpu::Buffer {
    ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The head device's extra work: move the emitted frame into the decoder, decode, read back.
struct Emit {
    program: Program,
    decoded: GpuTensor,
    /// The frame's bytes only: the decoder's output may sit in a larger pooled buffer.
    staging: wgpu::Buffer,
    /// A causal decoder's state, copied from its outputs to the next step's inputs on the
    /// device after each decode (`(from, to)`), through `relay`: the memory plan may keep an
    /// output in the buffer of a state input that was dead by then.
    state: Vec<(GpuTensor, GpuTensor)>,
    relay: Option<wgpu::Buffer>,
}

impl Emit {
    /// Moves the emitted frame (queue slot given in `moves`) into `decoder_in`, scaled.
    async fn new(
        ctx: &GpuContext,
        queue: &GpuTensor,
        moves: &GpuTensor,
        frame_len: usize,
        scale: f32,
        (decoder_in, decoded, state): (&GpuTensor, GpuTensor, Vec<(GpuTensor, GpuTensor)>),
    ) -> Result<Self, GpuError> {
        let mut b = ProgramBuilder::new(ctx);
        move_frame(&mut b, queue, moves, 0, frame_len, scale, decoder_in)?;
        let program = b.build().await?;
        let size = decoded.dtype().storage_bytes(decoded.len());
        let staging = map_read_buffer(ctx, "decoded frame", size);
        let bytes: u64 = state.iter().map(|(_, to)| DType::F32.storage_bytes(to.len())).sum();
        let relay = (bytes > 0).then(|| {
            ctx.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("decoder state relay"),
                size: bytes,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Ok(Emit { program, decoded, staging, state, relay })
    }

    /// Copies the decoder's new state into its state inputs (all read before any is written).
    fn relay_state(&self, encoder: &mut wgpu::CommandEncoder) {
        let Some(relay) = &self.relay else { return };
        let mut at = 0;
        for (from, to) in &self.state {
            let size = DType::F32.storage_bytes(to.len());
            encoder.copy_buffer_to_buffer(from.buffer(), 0, relay, at, size);
            at += size;
        }
        at = 0;
        for (_, to) in &self.state {
            let size = DType::F32.storage_bytes(to.len());
            encoder.copy_buffer_to_buffer(relay, at, to.buffer(), 0, size);
            at += size;
        }
    }
}

/// A causal decoder's emits: the first latent's graph once, then the other one.
struct CausalEmit {
    first: Emit,
    first_done: bool,
    /// The state inputs of the later latents' graph (written on resume).
    inputs: Vec<GpuTensor>,
}

/// The pairs `(output next_state[i] of from, input state[i] of to)` of a causal decoder.
fn state_pairs(
    package: &ModelPackage,
    from: &GpuSession,
    to: &GpuSession,
) -> Result<Vec<(GpuTensor, GpuTensor)>, String> {
    let d = &package.graphs.decoder;
    d.next_state
        .iter()
        .zip(&d.state)
        .map(|(out, input)| {
            let src = named(from.outputs(), out, "decoder")?;
            let dst = named(to.inputs(), input, "decoder")?;
            if src.tensor.dtype() != DType::F32 || src.tensor.len() != dst.tensor.len() {
                return Err(format!("the decoder state `{out}` does not match its input `{input}`"));
            }
            Ok((src.tensor.clone(), dst.tensor.clone()))
        })
        .collect()
}

/// The frames a device sends to others after each iteration.
struct Outbox {
    /// Logical slots, in the order they are copied into `staging`.
    slots: Vec<usize>,
    staging: wgpu::Buffer,
}

/// One device's part of the loop: its copy of the queue (only the slots its windows read are
/// current), tables and programs.
struct Share {
    ctx: Arc<GpuContext>,
    windows: Range<usize>,
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
    emit: Option<Emit>,
    causal: Option<CausalEmit>,
    /// Whether the last submitted emit was the causal first one.
    emitted_first: bool,
    refill: Option<Program>,
    outbox: Option<Outbox>,
    words: Vec<u32>,
}

/// What a device's iteration brought back: the decoded frame (head device, emitting iterations)
/// and the bytes of its outbox.
#[derive(Default)]
struct Collected {
    frame: Option<Vec<f32>>,
    outbox: Vec<u8>,
}

impl Share {
    #[allow(clippy::too_many_arguments)]
    async fn new(
        package: &ModelPackage,
        sessions: DeviceSessions<'_>,
        scheduler: &FifoScheduler,
        contexts: &PromptContexts,
        windows: Range<usize>,
        refills: bool,
        sends: Vec<usize>,
    ) -> Result<Result<Self, String>, PipelineError> {
        let ctx = sessions.unet.context().clone();
        let config = scheduler.config();
        let frame_len = config.frame_len();
        let mut plan = IterationPlan::default();
        scheduler.plan_windows(windows.clone(), &mut plan);
        let (rows, updates) = (plan.rows.len(), plan.updates.len());
        let slots = scheduler.layout().len();
        let g = &package.graphs.unet;
        let unet = sessions.unet;
        let io = (|| {
            let timesteps = named(unet.inputs(), &g.timesteps, "UNet")?.clone();
            if timesteps.tensor.len() != rows || !matches!(timesteps.tensor.dtype(), DType::F32 | DType::I32)
            {
                return Err("the UNet's timesteps are neither f32 nor integers, one per row".to_string());
            }
            let latents = f32_value(unet.inputs(), &g.latents, "UNet", rows * frame_len)?;
            let context = f32_value(unet.inputs(), &g.context, "UNet", rows * contexts.len())?;
            let output = f32_value(unet.outputs(), &g.output, "UNet", rows * frame_len)?;
            let d = &package.graphs.decoder;
            let plane = package.image.height * package.image.width;
            let decoder = match sessions.decoder {
                Some(decoder) => Some((
                    f32_value(decoder.inputs(), &d.input, "decoder", frame_len)?,
                    f32_value(decoder.outputs(), &d.output, "decoder", d.frames_per_latent * 3 * plane)?
                        .clone(),
                    if d.is_causal() { state_pairs(package, decoder, decoder)? } else { Vec::new() },
                )),
                None => None,
            };
            let first = match (sessions.decoder, sessions.decoder_first) {
                (Some(decoder), Some(first)) if d.is_causal() => Some((
                    f32_value(first.inputs(), &d.input, "decoder", frame_len)?,
                    f32_value(first.outputs(), &d.output, "decoder", d.first_frames * 3 * plane)?.clone(),
                    state_pairs(package, first, decoder)?,
                )),
                (Some(_), _) if d.is_causal() => {
                    return Err("the causal decoder's first graph is missing".into())
                }
                _ => None,
            };
            let decoder = decoder.map(|decoder| (decoder, first));
            Ok((timesteps, latents, context, output, decoder))
        })();
        let (timesteps, latents, context, output, decoder) = match io {
            Ok(io) => io,
            Err(why) => return Ok(Err(why)),
        };

        let new =
            |name: &str, dtype: DType, len: usize| GpuTensor::new(&ctx, name, dtype, len).map_err(gpu_err);
        let queue = GpuTensor::from_f32(&ctx, "fifo queue", scheduler.queue()).map_err(gpu_err)?;
        let prompts = GpuTensor::from_f32(&ctx, "prompt contexts", contexts.data()).map_err(gpu_err)?;
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
        let coefficients = GpuTensor::from_f32(&ctx, "ddim coefficients", &coefficients).map_err(gpu_err)?;

        let mut b = ProgramBuilder::new(&ctx);
        gather(&mut b, &queue, &[slots, frame_len], 0, &row_slots, latents).map_err(gpu_err)?;
        blend_contexts(&mut b, &prompts, &blends, rows, contexts.len(), context).map_err(gpu_err)?;
        let before_unet = b.build().await.map_err(gpu_err)?;
        let mut b = ProgramBuilder::new(&ctx);
        let guidance = config.uses_guidance().then_some((config.guidance as f32, rows / 2));
        ddim_step(&mut b, output, &noise, &update_table, &coefficients, &queue, updates, frame_len, guidance)
            .map_err(gpu_err)?;
        let after_unet = b.build().await.map_err(gpu_err)?;
        let scale = package.latent.scale_factor;
        let (emit, causal) = match decoder {
            Some((main, first)) => {
                let emit = Emit::new(&ctx, &queue, &moves, frame_len, scale, main).await.map_err(gpu_err)?;
                let causal = match first {
                    Some(first) => Some(CausalEmit {
                        inputs: emit.state.iter().map(|(_, to)| to.clone()).collect(),
                        first: Emit::new(&ctx, &queue, &moves, frame_len, scale, first)
                            .await
                            .map_err(gpu_err)?,
                        first_done: false,
                    }),
                    None => None,
                };
                (Some(emit), causal)
            }
            None => (None, None),
        };
        let refill = if refills {
            let mut b = ProgramBuilder::new(&ctx);
            move_frame(&mut b, &noise, &moves, 1, frame_len, 1.0, &queue).map_err(gpu_err)?;
            Some(b.build().await.map_err(gpu_err)?)
        } else {
            None
        };
        let outbox = (!sends.is_empty()).then(|| {
            let size = DType::F32.storage_bytes(sends.len() * frame_len);
            Outbox { staging: map_read_buffer(&ctx, "fifo outbox", size), slots: sends }
        });
        Ok(Ok(Self {
            ctx,
            windows,
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
            causal,
            emitted_first: false,
            refill,
            outbox,
            words: Vec::new(),
        }))
    }

    /// Writes this iteration's tables and noise (they land before the next submission).
    fn upload(&mut self, plan: &IterationPlan) {
        let Self { ctx, words, rows, blends, updates, noise, moves, timesteps, .. } = self;
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

    /// Encodes and submits this device's iteration in one command buffer. With `time_windows`
    /// (the iterations timed for balancing) the windows go in a command buffer of their own,
    /// waited for, so that what the device does beyond its windows (decoding the emitted frame,
    /// moving frames) is timed apart: returns the windows' seconds then.
    async fn submit(
        &mut self,
        sessions: DeviceSessions<'_>,
        plan: &IterationPlan,
        scheduler: &FifoScheduler,
        frame_len: usize,
        time_windows: bool,
    ) -> Result<Option<f64>, GpuError> {
        self.upload(plan);
        self.ctx.check_fault()?;
        let ctx = self.ctx.clone();
        let emits = plan.emit.is_some();
        let encode_windows = |encoder: &mut wgpu::CommandEncoder| {
            self.before_unet.encode(encoder);
            sessions.unet.encode(encoder);
            self.after_unet.encode(encoder);
        };
        let mut window_seconds = None;
        if time_windows {
            let clock = Clock::start();
            ctx.scoped("running a FIFO iteration's windows", || {
                let mut encoder = ctx
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("fifo windows") });
                encode_windows(&mut encoder);
                ctx.submit(encoder.finish());
            })
            .await?;
            ctx.wait_idle().await?;
            window_seconds = Some(clock.seconds());
        }
        ctx.scoped("running a FIFO iteration", || {
            let mut encoder = ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("fifo iteration") });
            if !time_windows {
                encode_windows(&mut encoder);
            }
            if let (Some(emit), Some(decoder), true) = (&self.emit, sessions.decoder, emits) {
                // A causal decoder decodes its first latent with its own graph.
                let first = self.causal.as_ref().filter(|c| !c.first_done);
                let (emit, decoder) = match (first, sessions.decoder_first) {
                    (Some(c), Some(first)) => (&c.first, first),
                    _ => (emit, decoder),
                };
                emit.program.encode(&mut encoder);
                decoder.encode(&mut encoder);
                let size = emit.staging.size();
                encoder.copy_buffer_to_buffer(emit.decoded.buffer(), 0, &emit.staging, 0, size);
                emit.relay_state(&mut encoder);
                self.emitted_first = first.is_some();
            }
            // The outbox is copied after the step and before the refill: the frames as this
            // iteration left them.
            if let Some(outbox) = &self.outbox {
                let bytes = DType::F32.storage_bytes(frame_len);
                for (n, &slot) in outbox.slots.iter().enumerate() {
                    let at = scheduler.physical_slot(slot) as u64 * bytes;
                    encoder.copy_buffer_to_buffer(
                        self.queue.buffer(),
                        at,
                        &outbox.staging,
                        n as u64 * bytes,
                        bytes,
                    );
                }
            }
            if let Some(refill) = &self.refill {
                refill.encode(&mut encoder);
            }
            ctx.submit(encoder.finish());
        })
        .await?;
        Ok(window_seconds)
    }

    /// Waits for the submitted iteration and reads back its frame and outbox.
    async fn collect(&mut self, emits: bool) -> Result<Collected, GpuError> {
        let mut collected = Collected::default();
        let first = self.causal.as_mut().filter(|_| emits && self.emitted_first);
        let emit = match first {
            Some(c) => {
                c.first_done = true;
                Some(&c.first)
            }
            None => self.emit.as_ref(),
        };
        if let (Some(emit), true) = (emit, emits) {
            let bytes = self.ctx.read_staging(&emit.staging, "decoded frame").await?;
            collected.frame = Some(bytemuck::cast_slice::<u8, f32>(&bytes)[..emit.decoded.len()].to_vec());
        }
        if let Some(outbox) = &self.outbox {
            collected.outbox = self.ctx.read_staging(&outbox.staging, "fifo outbox").await?;
        }
        Ok(collected)
    }
}

pub(crate) struct DeviceLoop {
    shares: Vec<Share>,
    split: WindowSplit,
    transfers: Vec<Transfer>,
    frame_len: usize,
    plan: IterationPlan,
    /// Whether the scheduler's host copy of the queue is current.
    synced: bool,
    /// Iterations still to run one device after another (with several devices, when balancing).
    sequential_left: usize,
    /// Per device, (seconds per window, seconds of the rest) of each timed iteration.
    timings: Vec<Vec<(f64, f64)>>,
}

/// What the timed iterations measured, per device of the loop (head first).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct MeasuredCosts {
    /// Seconds per window (the fastest timed iteration's).
    pub per_window: Vec<f64>,
    /// Seconds the head spends beyond its windows: moving the emitted frame, decoding it and
    /// reading it back.
    pub head_extra: f64,
}

impl DeviceLoop {
    /// Builds each device's share of the loop around its sessions (`sessions[d]` runs the UNet
    /// for `split.windows(d)`; the first device also decodes) and uploads the queue and contexts.
    /// With `balance`, the first iterations are timed for [`Self::balanced_split`].
    /// `Ok(Err(why))` when the graphs' inputs and outputs do not fit the loop (the scheduler's
    /// host loop then runs them).
    pub(crate) async fn new(
        package: &ModelPackage,
        sessions: &[DeviceSessions<'_>],
        scheduler: &FifoScheduler,
        contexts: &PromptContexts,
        split: WindowSplit,
        balance: bool,
    ) -> Result<Result<Self, String>, PipelineError> {
        let layout = scheduler.layout();
        let transfers = split.transfers(layout);
        let mut shares = Vec::with_capacity(split.devices());
        for (d, &device) in sessions.iter().enumerate().take(split.devices()) {
            let sends = transfers.iter().filter(|t| t.from == d).map(|t| t.slot).collect();
            let refills = d == split.tail_device();
            let device = DeviceSessions {
                decoder: device.decoder.filter(|_| d == split.head_device()),
                decoder_first: device.decoder_first.filter(|_| d == split.head_device()),
                ..device
            };
            match Share::new(package, device, scheduler, contexts, split.windows(d), refills, sends).await? {
                Ok(share) => shares.push(share),
                Err(why) => return Ok(Err(why)),
            }
        }
        if shares.first().is_none_or(|s| s.emit.is_none()) {
            return Ok(Err("the decoder was not built on the head device".into()));
        }
        Ok(Ok(Self {
            timings: vec![Vec::new(); shares.len()],
            sequential_left: if shares.len() > 1 && balance { TIMED_ITERATIONS } else { 0 },
            shares,
            split,
            transfers,
            frame_len: scheduler.config().frame_len(),
            plan: IterationPlan::default(),
            synced: true,
        }))
    }

    pub(crate) fn split(&self) -> &WindowSplit {
        &self.split
    }

    /// Frames moved between devices per iteration.
    pub(crate) fn transfers_per_iteration(&self) -> usize {
        self.transfers.len()
    }

    /// One iteration, one submission per device; returns the emitted frame's id and decoded
    /// values (`3 * height * width`, planar, in the decoder's range) once the queue emits.
    pub(crate) async fn iterate(
        &mut self,
        sessions: &[DeviceSessions<'_>],
        scheduler: &mut FifoScheduler,
        times: &mut StageTimes,
    ) -> Result<Option<(u64, Vec<f32>)>, PipelineError> {
        let clock = Clock::start();
        let sequential = self.sequential_left > 0;
        let timed = sequential && self.sequential_left < TIMED_ITERATIONS;
        let mut emit = None;
        let mut collected = Vec::with_capacity(self.shares.len());
        let mut scheduler_seconds = 0.0;
        for (share, &device) in self.shares.iter_mut().zip(sessions) {
            let planning = Clock::start();
            scheduler.plan_windows(share.windows.clone(), &mut self.plan);
            emit = self.plan.emit;
            scheduler_seconds += planning.seconds();
            let device_clock = Clock::start();
            let windows_seconds =
                share.submit(device, &self.plan, scheduler, self.frame_len, timed).await.map_err(gpu_err)?;
            if sequential {
                collected.push(share.collect(emit.is_some()).await.map_err(gpu_err)?);
                // A device that reads nothing back this iteration has not been waited for yet.
                share.ctx.wait_idle().await.map_err(gpu_err)?;
                if let Some(windows_seconds) = windows_seconds {
                    let per_window = windows_seconds / share.windows.len().max(1) as f64;
                    let rest = (device_clock.seconds() - windows_seconds).max(0.0);
                    self.timings[collected.len() - 1].push((per_window, rest));
                }
            }
        }
        if !sequential {
            for share in &mut self.shares {
                collected.push(share.collect(emit.is_some()).await.map_err(gpu_err)?);
            }
        }
        self.sequential_left = self.sequential_left.saturating_sub(1);
        self.exchange(scheduler, &collected);
        self.synced = false;
        let frame = match (emit, collected.into_iter().next().and_then(|c| c.frame)) {
            (Some((id, _)), Some(values)) => {
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(PipelineError::Output {
                        graph: "UNet",
                        message: "NaN or infinite values in the decoded frame: the model diverged".into(),
                    });
                }
                Some((id, values))
            }
            _ => None,
        };
        times.scheduler += scheduler_seconds;
        times.unet += clock.seconds() - scheduler_seconds;
        let id = scheduler.finish_external_iteration();
        debug_assert_eq!(id, emit.map(|(id, _)| id));
        Ok(frame)
    }

    /// Writes each transferred frame into its receiver's queue (lands before its next submission).
    fn exchange(&self, scheduler: &FifoScheduler, collected: &[Collected]) {
        let bytes = DType::F32.storage_bytes(self.frame_len) as usize;
        let mut sent = vec![0usize; self.shares.len()];
        for t in &self.transfers {
            let n = sent[t.from];
            sent[t.from] += 1;
            let frame = &collected[t.from].outbox[n * bytes..(n + 1) * bytes];
            let at = (scheduler.physical_slot(t.slot) * bytes) as u64;
            self.shares[t.to].ctx.write_buffer(self.shares[t.to].queue.buffer(), at, frame);
        }
    }

    /// After the timed iterations, what they measured (once; `None` before and afterwards).
    pub(crate) fn measured_costs(&mut self) -> Option<MeasuredCosts> {
        if self.sequential_left > 0 || self.timings.iter().all(Vec::is_empty) {
            return None;
        }
        let fastest = |t: &Vec<(f64, f64)>, part: fn(&(f64, f64)) -> f64| {
            t.iter().map(part).fold(f64::INFINITY, f64::min)
        };
        let per_window = self.timings.iter().map(|t| fastest(t, |x| x.0)).collect();
        // The others' rest (copying out the frames their neighbours need) is small and also
        // the head's: the head's own extra is what it does beyond theirs.
        let others = self.timings[1..].iter().map(|t| fastest(t, |x| x.1)).fold(f64::INFINITY, f64::min);
        let head_rest = fastest(&self.timings[0], |x| x.1);
        let head_extra = if others.is_finite() { (head_rest - others).max(0.0) } else { head_rest };
        self.timings.iter_mut().for_each(Vec::clear);
        Some(MeasuredCosts { per_window, head_extra })
    }

    /// A causal decoder's state as the head device holds it (`None` before the first latent).
    pub(crate) async fn decoder_state(&self) -> Result<Option<Vec<Vec<f32>>>, PipelineError> {
        let Some(causal) = self.shares.first().and_then(|s| s.causal.as_ref()) else { return Ok(None) };
        if !causal.first_done {
            return Ok(None);
        }
        let ctx = &self.shares[0].ctx;
        let mut state = Vec::with_capacity(causal.inputs.len());
        for input in &causal.inputs {
            state.push(ctx.read_f32(input).await.map_err(gpu_err)?);
        }
        Ok(Some(state))
    }

    /// Continues a causal decoder from `state` (a resumed run past its first latent).
    pub(crate) fn load_decoder_state(&mut self, state: &[Vec<f32>]) -> Result<(), PipelineError> {
        let Some(share) = self.shares.first_mut() else { return Ok(()) };
        let Some(causal) = share.causal.as_mut() else { return Ok(()) };
        if state.len() != causal.inputs.len() {
            return Err(PipelineError::Output {
                graph: "decoder",
                message: format!(
                    "{} state tensors where the decoder takes {}",
                    state.len(),
                    causal.inputs.len()
                ),
            });
        }
        for (input, values) in causal.inputs.iter().zip(state) {
            input.write_f32(&share.ctx, values).map_err(gpu_err)?;
        }
        causal.first_done = true;
        Ok(())
    }

    /// Reads the device queues back into the scheduler (for a checkpoint or a new split): each
    /// slot from the device that holds it.
    pub(crate) async fn sync(&mut self, scheduler: &mut FifoScheduler) -> Result<(), PipelineError> {
        if self.synced {
            return Ok(());
        }
        let layout = scheduler.layout().clone();
        let len = self.frame_len;
        let mut queue = scheduler.queue().to_vec();
        for (d, share) in self.shares.iter().enumerate() {
            let data = share.ctx.read_f32(&share.queue).await.map_err(gpu_err)?;
            for slot in (0..layout.len()).filter(|&s| self.split.holder(&layout, s) == d) {
                let p = scheduler.physical_slot(slot) * len;
                queue[p..p + len].copy_from_slice(&data[p..p + len]);
            }
        }
        scheduler.load_queue(&queue)?;
        self.synced = true;
        Ok(())
    }
}
