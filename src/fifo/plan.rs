//! One iteration described as data, for an executor that keeps the queue itself (on a GPU).
//!
//! The queue stays a ring of `L` frames in physical order, exactly as [`LatentRing`] stores it;
//! the plan names physical slots, so the executor moves no data to dequeue or enqueue. The
//! scheduler keeps the indices (iteration, ring head) and draws the noise on the host: noise is
//! counter-based, so the executor sees the same values as [`FifoScheduler::step`] and a run
//! resumes bit for bit whichever loop made its checkpoint.
//!
//! [`LatentRing`]: super::ring::LatentRing

use super::conditioning::FrameConditioning;
use super::scheduler::FifoScheduler;
use crate::rng::{NoiseKey, NoisePurpose};

/// One written slot of an iteration: `x' = c_x x + c_model m + c_noise z` with `m` the guided
/// model output of `row`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlotUpdate {
    /// Physical ring slot read and written.
    pub slot: u32,
    /// Model-output row (conditional pass) holding this slot's prediction; the unconditional
    /// prediction is `rows / 2` rows later when guidance is on.
    pub row: u32,
    /// DDIM index, the row of the step table.
    pub index: u32,
    /// The frame of the plan's noise this step adds, if it adds any.
    pub noise: Option<u32>,
}

/// What iteration [`Self::iteration`] does, as tables an executor uploads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IterationPlan {
    pub iteration: u64,
    /// Physical ring slot of each model-input row: conditional rows (windows in order, `f`
    /// frames each), then the unconditional copies when guidance is on.
    pub rows: Vec<u32>,
    /// The per-frame timestep of each row.
    pub timesteps: Vec<f32>,
    /// The prompt (blend) of each row.
    pub conditioning: Vec<FrameConditioning>,
    /// Every written slot, in window order; each slot exactly once.
    pub updates: Vec<SlotUpdate>,
    /// The frame leaving the queue at the end of this iteration: its id and physical slot.
    pub emit: Option<(u64, u32)>,
    /// Physical slot of the new tail after the dequeue (the old head's storage); its fresh noise
    /// is frame [`Self::tail_noise`] of the plan's noise.
    pub tail: u32,
    /// Noise frames: one per noisy update (in update order), then the tail's.
    pub noise: Vec<f32>,
    pub tail_noise: u32,
}

impl IterationPlan {
    /// Row count of one model call.
    pub fn batch_rows(&self) -> usize {
        self.rows.len()
    }
}

/// Appends one frame drawn from `key` to `noise` and returns its frame number.
fn draw(noise: &mut Vec<f32>, frame_len: usize, key: NoiseKey) -> u32 {
    let at = noise.len();
    noise.resize(at + frame_len, 0.0);
    key.fill_normal(&mut noise[at..]);
    (at / frame_len) as u32
}

impl FifoScheduler {
    /// Fills `plan` with the current iteration (allocations are reused).
    pub fn plan_iteration(&self, plan: &mut IterationPlan) {
        self.plan_windows(0..self.layout.windows().len(), plan);
    }

    /// [`Self::plan_iteration`] for some windows only (one device's share of a split): rows and
    /// updates of those windows, the emitted head and the new tail as always.
    pub fn plan_windows(&self, windows: std::ops::Range<usize>, plan: &mut IterationPlan) {
        let it = self.iteration;
        let (f, frame_len) = (self.layout.window, self.config.frame_len());
        let passes = if self.config.uses_guidance() { 2 } else { 1 };
        plan.iteration = it;
        plan.rows.clear();
        plan.timesteps.clear();
        plan.conditioning.clear();
        plan.updates.clear();
        let windows = &self.layout.windows()[windows];
        for pass in 0..passes {
            for window in windows {
                for slot in window.start..window.start + f {
                    plan.rows.push(self.ring.physical(slot) as u32);
                    plan.timesteps.push(self.table.entry(self.layout.label(slot, it)).timestep as f32);
                    plan.conditioning.push(match pass {
                        0 => self.prompts.at(self.layout.frame_id(slot, it)),
                        _ => FrameConditioning::UNCONDITIONAL,
                    });
                }
            }
        }
        plan.noise.clear();
        for (position, window) in windows.iter().enumerate() {
            for offset in window.write_from..f {
                let slot = window.start + offset;
                let index = self.layout.label(slot, it);
                let noise = (self.table.entry(index).c_noise != 0.0).then(|| {
                    let key = NoiseKey {
                        seed: self.config.seed,
                        frame: self.layout.frame_id(slot, it),
                        index: index as u16,
                        purpose: NoisePurpose::Step,
                    };
                    draw(&mut plan.noise, frame_len, key)
                });
                plan.updates.push(SlotUpdate {
                    slot: self.ring.physical(slot) as u32,
                    row: (position * f + offset) as u32,
                    index: index as u32,
                    noise,
                });
            }
        }
        let head = self.layout.head;
        plan.emit = (it >= self.layout.first_emit)
            .then(|| (it - self.layout.first_emit, self.ring.physical(head) as u32));
        // After the dequeue, logical slot L - 1 is the old head's storage: physical slot 0.
        plan.tail = self.ring.physical(0) as u32;
        let tail = NoiseKey {
            seed: self.config.seed,
            frame: self.layout.frame_id(self.layout.len() - 1, it + 1),
            index: (self.table.len() - 1) as u16,
            purpose: NoisePurpose::Enqueue,
        };
        plan.tail_noise = draw(&mut plan.noise, frame_len, tail);
    }

    /// Ends an iteration that an executor carried out on its own copy of the queue: advances the
    /// indices as [`Self::finish_iteration`] does, without touching this scheduler's latents
    /// (they are stale until [`Self::load_queue`]). Returns the id of the frame that left.
    pub fn finish_external_iteration(&mut self) -> Option<u64> {
        let emit = self.iteration >= self.layout.first_emit;
        let id = emit.then(|| self.iteration - self.layout.first_emit);
        self.iteration += 1;
        self.ring.advance();
        id
    }

    /// Physical ring slot of a logical slot (0 = head) in the current iteration.
    pub fn physical_slot(&self, slot: usize) -> usize {
        self.ring.physical(slot)
    }

    /// The queue in physical order (the layout [`IterationPlan`] indexes), `L * frame_len` values.
    pub fn queue(&self) -> &[f32] {
        self.ring.data()
    }

    /// Replaces the queue with `data` in physical order, e.g. read back from an executor.
    pub fn load_queue(&mut self, data: &[f32]) -> Result<(), super::FifoError> {
        let expected = self.ring.data().len();
        if data.len() != expected {
            return Err(super::FifoError::Config(format!(
                "a queue of {} values was loaded where {expected} are held",
                data.len()
            )));
        }
        self.ring.data_mut().copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fifo::{DenoiseRequest, Denoiser, DenoiserError, FifoConfig, InitMode, PromptSchedule};

    /// A model whose output depends on latent, timestep and conditioning, so that a wrong row,
    /// timestep or prompt in the plan changes the result.
    struct Mixer;
    impl Denoiser for Mixer {
        async fn denoise(&mut self, r: &DenoiseRequest<'_>, out: &mut [f32]) -> Result<(), DenoiserError> {
            let len = r.frame_len;
            for (row, chunk) in out.chunks_exact_mut(len).enumerate() {
                let x = &r.latents[row * len..(row + 1) * len];
                // The window's first frame mixes in, so that its context frames matter too.
                let first = row / r.frames * r.frames * len;
                let c = r.conditioning[row];
                let bias = r.timesteps[row] * 1e-3 + c.from as f32 * 0.1 + c.to as f32 * 0.01 + c.mix;
                for (i, (o, &v)) in chunk.iter_mut().zip(x).enumerate() {
                    *o = 0.5 * v + 0.2 * r.latents[first + i] + bias + (i % 3) as f32 * 0.05;
                }
            }
            Ok(())
        }
    }

    /// Executes a plan on a plain host copy of the queue, as a GPU executor does on the device.
    fn execute(
        plan: &IterationPlan,
        queue: &mut [f32],
        frame_len: usize,
        f: usize,
        table: &crate::schedule::StepTable,
        guidance: Option<f32>,
    ) -> Option<Vec<f32>> {
        let rows = plan.batch_rows();
        let mut model = vec![0.0f32; rows * frame_len];
        let mut latents = Vec::new();
        for &s in &plan.rows {
            latents.extend_from_slice(&queue[s as usize * frame_len..(s as usize + 1) * frame_len]);
        }
        let request = DenoiseRequest {
            windows: rows / f,
            frames: f,
            frame_len,
            latents: &latents,
            timesteps: &plan.timesteps,
            conditioning: &plan.conditioning,
        };
        pollster::block_on(Mixer.denoise(&request, &mut model)).unwrap();
        let noise = |k: u32| &plan.noise[k as usize * frame_len..(k as usize + 1) * frame_len];
        for u in &plan.updates {
            let at = u.row as usize * frame_len;
            let m: Vec<f32> = match guidance {
                Some(g) => (0..frame_len)
                    .map(|i| {
                        let (c, un) = (model[at + i], model[at + rows / 2 * frame_len + i]);
                        un + g * (c - un)
                    })
                    .collect(),
                None => model[at..at + frame_len].to_vec(),
            };
            let z = u.noise.map(noise);
            let x = &mut queue[u.slot as usize * frame_len..(u.slot as usize + 1) * frame_len];
            table.apply(u.index as usize, x, &m, z);
        }
        let emitted =
            plan.emit.map(|(_, s)| queue[s as usize * frame_len..(s as usize + 1) * frame_len].to_vec());
        let tail = noise(plan.tail_noise);
        queue[plan.tail as usize * frame_len..(plan.tail as usize + 1) * frame_len].copy_from_slice(tail);
        let used = plan.updates.iter().filter(|u| u.noise.is_some()).count() + 1;
        assert_eq!(used * frame_len, plan.noise.len(), "the plan drew noise nobody used");
        emitted
    }

    /// Running the plans on an outside copy of the queue emits exactly the frames of the
    /// scheduler's own loop, for every layout and guidance setting.
    #[test]
    fn plans_executed_outside_reproduce_the_host_loop() {
        for (lookahead, guidance, init, eta) in [
            (true, 3.0, InitMode::Noise, 1.0),
            (false, 1.0, InitMode::Noise, 0.5),
            (true, 1.0, InitMode::Clip, 1.0),
            (false, 7.5, InitMode::Clip, 0.0),
        ] {
            let config = FifoConfig {
                window: 4,
                partitions: 2,
                lookahead,
                guidance,
                eta,
                init,
                seed: 11,
                frame_shape: vec![2, 3],
                ..FifoConfig::official(vec![2, 3])
            };
            let prompts = PromptSchedule::parse("0: a b\n5..8: c d").unwrap();
            let start = |c: FifoConfig| match init {
                InitMode::Noise => FifoScheduler::from_noise(c, prompts.clone()).unwrap(),
                InitMode::Clip => {
                    let clip: Vec<f32> = (0..4 * 6).map(|i| (i as f32 * 0.37).sin()).collect();
                    FifoScheduler::from_clip(c, prompts.clone(), &clip).unwrap()
                }
            };
            let mut host = start(config.clone());
            let mut planned = start(config.clone());
            let mut queue = planned.queue().to_vec();
            let mut plan = IterationPlan::default();
            let frame_len = config.frame_len();
            let g = config.uses_guidance().then_some(guidance as f32);
            let (mut host_frames, mut planned_frames) = (Vec::new(), Vec::new());
            for _ in 0..30 {
                if let Some(frame) = pollster::block_on(host.step(&mut Mixer)).unwrap() {
                    host_frames.push((frame.id, frame.latent.to_vec()));
                }
                planned.plan_iteration(&mut plan);
                let emitted = execute(&plan, &mut queue, frame_len, config.window, planned.table(), g);
                let id = planned.finish_external_iteration();
                assert_eq!(id, plan.emit.map(|(id, _)| id));
                if let (Some(id), Some(latent)) = (id, emitted) {
                    planned_frames.push((id, latent));
                }
            }
            assert!(!host_frames.is_empty());
            assert_eq!(host_frames, planned_frames, "lookahead {lookahead} guidance {guidance} {init:?}");
            planned.load_queue(&queue).unwrap();
            assert_eq!(planned.queue(), host.queue(), "the loaded queue is the host loop's queue");
            assert!(planned.load_queue(&queue[1..]).is_err());
        }
    }

    /// Each device's share of the plan executed on its own copy of the queue, with the split's
    /// transfers between iterations, emits exactly the frames of the scheduler's own loop.
    #[test]
    fn split_plans_with_transfers_reproduce_the_host_loop() {
        use crate::fifo::WindowSplit;
        for (lookahead, guidance, counts) in [
            (true, 3.0, vec![1, 3]),
            (true, 1.0, vec![2, 1, 1]),
            (false, 7.5, vec![1, 2]),
            (true, 2.0, vec![3, 0, 1]),
        ] {
            let config = FifoConfig {
                window: 4,
                partitions: if lookahead { 2 } else { 3 },
                lookahead,
                guidance,
                eta: 1.0,
                init: InitMode::Noise,
                seed: 5,
                frame_shape: vec![2, 3],
                ..FifoConfig::official(vec![2, 3])
            };
            let prompts = PromptSchedule::parse("0: a b\n3..9: c d").unwrap();
            let mut host = FifoScheduler::from_noise(config.clone(), prompts.clone()).unwrap();
            let mut planned = FifoScheduler::from_noise(config.clone(), prompts).unwrap();
            let split = WindowSplit::new(planned.layout(), &counts).unwrap();
            let transfers = split.transfers(planned.layout());
            let frame_len = config.frame_len();
            let mut copies = vec![planned.queue().to_vec(); split.devices()];
            let g = config.uses_guidance().then_some(guidance as f32);
            let mut plan = IterationPlan::default();
            let (mut host_frames, mut planned_frames) = (Vec::new(), Vec::new());
            for _ in 0..30 {
                if let Some(frame) = pollster::block_on(host.step(&mut Mixer)).unwrap() {
                    host_frames.push((frame.id, frame.latent.to_vec()));
                }
                let mut emitted = None;
                for (d, copy) in copies.iter_mut().enumerate() {
                    if split.windows(d).is_empty() {
                        continue;
                    }
                    planned.plan_windows(split.windows(d), &mut plan);
                    let frame = execute(&plan, copy, frame_len, config.window, planned.table(), g);
                    if d == split.head_device() {
                        emitted = frame;
                    }
                }
                let snapshot = copies.clone();
                for t in &transfers {
                    let p = planned.physical_slot(t.slot) * frame_len;
                    copies[t.to][p..p + frame_len].copy_from_slice(&snapshot[t.from][p..p + frame_len]);
                }
                if let (Some(id), Some(latent)) = (planned.finish_external_iteration(), emitted) {
                    planned_frames.push((id, latent));
                }
            }
            assert!(host_frames.len() > 5);
            assert_eq!(host_frames, planned_frames, "lookahead {lookahead} split {counts:?}");
        }
    }
}
