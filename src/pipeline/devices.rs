//! Several devices in one run: which devices take part and how the windows are split, the
//! sessions each one runs, a split balanced by measured window time, and going on without a
//! device that was lost.

use super::device_loop::{DeviceLoop, DeviceSessions};
use super::stats::Clock;
use super::{build_session, guidance_passes, Generation, Models, PipelineError, RunOptions, UnetDenoiser};
use crate::fifo::{FifoConfig, FifoScheduler, WindowSplit};
use crate::gpu::GpuContext;
use crate::session::{Backend, Session};
use std::collections::HashMap;
use std::sync::Arc;

/// The devices (of `devices`) a run starts on, head first, and their split: the split asked for
/// (a device given no window is left out), else windows shared evenly (a device beyond the window
/// count gets none).
pub(super) fn initial_split(
    config: &FifoConfig,
    devices: usize,
    asked: Option<&[usize]>,
) -> Result<(Vec<usize>, WindowSplit), PipelineError> {
    let layout = crate::fifo::QueueLayout::new(config);
    let counts = match asked {
        None => WindowSplit::even(&layout, devices).counts(),
        Some(counts) if counts.len() == devices => counts.to_vec(),
        Some(counts) => {
            return Err(PipelineError::Devices(format!(
                "a split of {counts:?} windows needs one count per device ({devices} devices)"
            )))
        }
    };
    let active: Vec<usize> = (0..counts.len()).filter(|&d| counts[d] > 0).collect();
    let kept: Vec<usize> = counts.iter().copied().filter(|&c| c > 0).collect();
    let split = WindowSplit::new(&layout, &kept).map_err(|_| {
        PipelineError::Devices(format!(
            "a split of {counts:?} windows does not add up to the {} windows of an iteration \
             (f = {}, n = {}, lookahead {})",
            layout.windows().len(),
            config.window,
            config.partitions,
            if config.lookahead { "on" } else { "off" }
        ))
    })?;
    Ok((active, split))
}

impl Models {
    /// Every device of the run, the head device (text encoder, decoder) first.
    pub fn devices(&self) -> Vec<&Arc<GpuContext>> {
        self.gpu.iter().chain(self.extra.iter().filter_map(|u| u.gpu())).collect()
    }

    /// Leaves out the devices that were lost: the graphs stay built on the others, or, when the
    /// head device (text encoder, decoder) was lost, are built again on the first one left.
    /// A fixed split no longer fits and gives way to a balanced one.
    async fn drop_lost_devices(&mut self) -> Result<(), PipelineError> {
        let devices = self.devices();
        let alive: Vec<Arc<GpuContext>> =
            devices.iter().filter(|c| !c.is_lost()).map(|&c| c.clone()).collect();
        if alive.len() == devices.len() {
            return Ok(());
        }
        if alive.is_empty() {
            return Err(PipelineError::Devices("every device of the run was lost".into()));
        }
        self.window_split = None;
        if self.gpu.as_ref().is_some_and(|c| !c.is_lost()) {
            let extra = std::mem::take(&mut self.extra);
            let decoders = std::mem::take(&mut self.extra_decoders);
            (self.extra, self.extra_decoders) = extra
                .into_iter()
                .zip(decoders)
                .filter(|(u, _)| u.gpu().is_some_and(|c| !c.is_lost()))
                .unzip();
            return Ok(());
        }
        let options = RunOptions {
            backend: Backend::Gpu,
            weights: self.weights,
            gpu: Some(alive[0].clone()),
            extra_gpus: alive[1..].to_vec(),
            window_split: None,
            host_queue: self.host_queue,
            precision: self.unet.options().gpu.precision,
        };
        *self = Self::load_with(self.package.clone(), self.tokenizer.clone(), options).await?;
        Ok(())
    }

    /// Builds the decoder on device `d` of [`Self::devices`] (the head of a split) if not there yet.
    async fn ensure_decoder(&mut self, d: usize) -> Result<(), PipelineError> {
        if d == 0 || self.extra_decoders[d - 1].is_some() {
            return Ok(());
        }
        let (l, g) = (&self.package.latent, &self.package.graphs.decoder);
        let shapes = HashMap::from([(g.input.clone(), vec![1, l.channels, l.height, l.width])]);
        let gpu = self.extra[d - 1].gpu().cloned();
        let source = self.package.graph(&g.file);
        let decoder = build_session("decoder", &gpu, &source, &shapes, &self.session_options).await?;
        self.extra_decoders[d - 1] = Some(decoder);
        Ok(())
    }

    fn decoder_on(&self, d: usize) -> Option<&Session> {
        match d {
            0 => Some(&self.decoder),
            d => self.extra_decoders[d - 1].as_ref(),
        }
    }

    /// The UNet on device `d` of [`Self::devices`].
    fn unet_on(&mut self, d: usize) -> &mut UnetDenoiser {
        match d {
            0 => &mut self.unet,
            d => &mut self.extra[d - 1],
        }
    }

    fn unet_ref(&self, d: usize) -> &UnetDenoiser {
        match d {
            0 => &self.unet,
            d => &self.extra[d - 1],
        }
    }

    /// Builds the UNet of each device in `devices` for its `counts` windows of `config`'s loop.
    pub(super) async fn prepare_split(
        &mut self,
        config: &FifoConfig,
        devices: &[usize],
        counts: &[usize],
    ) -> Result<(), PipelineError> {
        for (&d, &count) in devices.iter().zip(counts) {
            self.unet_on(d).prepare(count * guidance_passes(config), config.window).await?;
        }
        Ok(())
    }

    /// The GPU sessions of the device-resident loop on `devices` with `counts` windows each (built
    /// by [`Self::prepare`] or [`Self::prepare_split`]); the decoder on the first.
    pub(super) fn loop_sessions(
        &self,
        config: &FifoConfig,
        devices: &[usize],
        counts: &[usize],
    ) -> Option<Vec<DeviceSessions<'_>>> {
        let head = *devices.first()?;
        let decoder = self.decoder_on(head)?.gpu()?;
        // A causal decoder runs on the first device only (its state lives there).
        let decoder_first = match &self.decoder_first {
            Some(first) if head == 0 => Some(first.gpu()?),
            Some(_) => return None,
            None => None,
        };
        devices
            .iter()
            .zip(counts)
            .enumerate()
            .map(|(n, (&d, &count))| {
                let unet = self.unet_ref(d).built(count * guidance_passes(config))?.gpu()?;
                Some(DeviceSessions {
                    unet,
                    decoder: (n == 0).then_some(decoder),
                    decoder_first: decoder_first.filter(|_| n == 0),
                })
            })
            .collect()
    }
}

impl Generation {
    /// Puts the queue on the device(s) where the backend and the graphs allow it: the split over
    /// the models' devices, asked for or even (and then balanced by measured time).
    pub(super) async fn place_queue(&mut self) -> Result<(), PipelineError> {
        let models = &self.models;
        let (active, split) =
            initial_split(self.scheduler.config(), models.devices().len(), models.window_split.as_deref())?;
        let balance = models.window_split.is_none();
        self.models.ensure_decoder(active[0]).await?;
        let models = &self.models;
        self.active = active;
        (self.device, self.host_queue_reason) = (None, None);
        if models.gpu.is_none() {
            return Ok(());
        }
        if models.host_queue {
            self.host_queue_reason = Some("asked for".into());
        } else if models.package.graphs.decoder.is_causal() && models.devices().len() > 1 {
            self.host_queue_reason = Some("a causal decoder's state stays on one device".into());
        } else {
            match self.device_loop(split, balance).await? {
                Ok(mut device) => {
                    // A resumed causal run continues from its decoder's saved state.
                    if let Some(state) = &self.causal.state {
                        let values: Vec<Vec<f32>> = state.iter().map(|t| t.to_f32_vec()).collect();
                        device.load_decoder_state(&values)?;
                    }
                    self.device = Some(device)
                }
                Err(why) => self.host_queue_reason = Some(why),
            }
        }
        if self.device.is_none() && self.models.devices().len() > 1 {
            return Err(PipelineError::Devices(format!(
                "splitting the windows over several devices needs the queue on the devices, but it \
                 stays on the host ({}); run on one device",
                self.host_queue_reason.as_deref().unwrap_or("")
            )));
        }
        Ok(())
    }

    /// Continues after a device of the run was lost: the devices left restart from `checkpoint`
    /// (taken earlier in this run) and run up to frame `upto` again, dropping the frames that
    /// were already delivered, so that the next frame is frame `upto`. On devices of the lost
    /// one's kind these are the frames the lost run would have made, bit for bit.
    pub async fn recover(&mut self, checkpoint: &[u8], upto: u64) -> Result<(), PipelineError> {
        self.device = None;
        self.models.drop_lost_devices().await?;
        let scheduler = FifoScheduler::from_checkpoint(checkpoint, Some(&self.models.package.name))?;
        if scheduler.frames_emitted() > upto {
            return Err(PipelineError::Devices(format!(
                "the recovery checkpoint is at frame {}, past frame {upto}",
                scheduler.frames_emitted()
            )));
        }
        self.scheduler = scheduler;
        let clock = Clock::start();
        let config = self.scheduler.config().clone();
        self.models.prepare(&config).await?;
        self.times.unet += clock.seconds();
        self.place_queue().await?;
        while self.frames_emitted() < upto {
            self.next_frame().await?;
        }
        Ok(())
    }

    /// The device-resident loop on the active devices with `split`, where the graphs allow it.
    async fn device_loop(
        &self,
        split: WindowSplit,
        balance: bool,
    ) -> Result<Result<DeviceLoop, String>, PipelineError> {
        let Some(sessions) =
            self.models.loop_sessions(self.scheduler.config(), &self.active, &split.counts())
        else {
            return Ok(Err("the graphs were not built on the GPU".into()));
        };
        let package = &self.models.package;
        DeviceLoop::new(package, &sessions, &self.scheduler, &self.contexts, split, balance).await
    }

    /// Moves the loop to the split balanced by measured window time once the devices are timed:
    /// the queue is read back, each device gets the UNet for its new share, and a device given no
    /// window leaves the run.
    pub(super) async fn rebalance(&mut self) -> Result<(), PipelineError> {
        let Some(device) = &mut self.device else { return Ok(()) };
        let Some(costs) = device.measured_costs() else { return Ok(()) };
        // The head also decodes: the device (and the share of windows) that finishes an iteration
        // soonest with that on top; then each window goes where it finishes first.
        let (order, split) =
            WindowSplit::placed(self.scheduler.layout(), &costs.per_window, costs.head_extra);
        let counts = split.counts();
        let active: Vec<usize> =
            order.iter().zip(&counts).filter(|(_, &c)| c > 0).map(|(&i, _)| self.active[i]).collect();
        let counts: Vec<usize> = counts.into_iter().filter(|&c| c > 0).collect();
        if active == self.active && counts == device.split().counts() {
            return Ok(());
        }
        let clock = Clock::start();
        device.sync(&mut self.scheduler).await?;
        let config = self.scheduler.config().clone();
        self.models.prepare_split(&config, &active, &counts).await?;
        self.models.ensure_decoder(active[0]).await?;
        self.active = active;
        let split = WindowSplit::new(self.scheduler.layout(), &counts)?;
        let device = self.device_loop(split, false).await?.map_err(PipelineError::Devices)?;
        self.device = Some(device);
        self.times.unet += clock.seconds();
        Ok(())
    }

    /// The devices running the loop (indices of [`Models::devices`], head first), with their
    /// windows per iteration, and the frames moved between them per iteration.
    pub fn device_split(&self) -> Option<(Vec<usize>, Vec<usize>, usize)> {
        let device = self.device.as_ref()?;
        Some((self.active.clone(), device.split().counts(), device.transfers_per_iteration()))
    }
}
