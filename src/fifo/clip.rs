//! Ordinary clip sampling: all f frames of one window at the same noise level.
//!
//! The official VideoCrafter2 path samples such a clip and forward-noises it onto the diagonal;
//! it is also the "independent clips" baseline that FIFO-Diffusion is compared with.

use super::conditioning::PromptSchedule;
use super::config::FifoConfig;
use super::denoiser::Denoiser;
use super::scheduler::Batch;
use super::FifoError;
use crate::rng::{NoiseKey, NoisePurpose};
use crate::schedule::StepTable;

/// Samples an f-frame clip with `S = f * n` DDIM steps, frame `j` conditioned as output frame
/// `first_frame + j`. Returns the frame-major clip at the cleanest level.
pub async fn sample_clip_at<D: Denoiser>(
    config: &FifoConfig,
    prompts: &PromptSchedule,
    first_frame: i64,
    denoiser: &mut D,
) -> Result<Vec<f32>, FifoError> {
    config.validate()?;
    let table = StepTable::new(&config.schedule, config.steps(), config.eta)?;
    let (f, frame_len, seed) = (config.window, config.frame_len(), config.seed);
    let key = |j: usize, index: usize, purpose| NoiseKey {
        seed,
        frame: first_frame + j as i64,
        index: index as u16,
        purpose,
    };
    let mut clip = vec![0.0f32; f * frame_len];
    let last = table.len() - 1;
    for (j, frame) in clip.chunks_mut(frame_len).enumerate() {
        key(j, last, NoisePurpose::ClipInit).fill_normal(frame);
    }
    let passes = if config.uses_guidance() { 2 } else { 1 };
    let mut batch = Batch::with_capacity(passes, f, frame_len);
    let mut noise = vec![0.0f32; frame_len];
    for index in (0..table.len()).rev() {
        batch.clear();
        for pass in 0..passes {
            batch.latents.extend_from_slice(&clip);
            for j in 0..f {
                batch.timesteps.push(table.entry(index).timestep as f32);
                batch.conditioning.push(match pass {
                    0 => prompts.at(first_frame + j as i64),
                    _ => super::FrameConditioning::UNCONDITIONAL,
                });
            }
        }
        batch.run(denoiser, f, frame_len).await?;
        if config.uses_guidance() {
            batch.guide(config.guidance as f32);
        }
        for (j, frame) in clip.chunks_mut(frame_len).enumerate() {
            let model = &batch.output[j * frame_len..(j + 1) * frame_len];
            let z = if table.entry(index).c_noise != 0.0 {
                key(j, index, NoisePurpose::ClipStep).fill_normal(&mut noise);
                Some(&noise[..])
            } else {
                None
            };
            table.apply(index, frame, model, z);
        }
    }
    Ok(clip)
}

/// The clip that starts a FIFO run: its frames become output frames `0..f`.
pub async fn sample_clip<D: Denoiser>(
    config: &FifoConfig,
    prompts: &PromptSchedule,
    denoiser: &mut D,
) -> Result<Vec<f32>, FifoError> {
    sample_clip_at(config, prompts, 0, denoiser).await
}
