//! The scheduler's own cost per iteration, with a model that does nothing, in the official
//! setting (f = 16, n = 4, lookahead, guidance, eta = 1, latent 4x40x64 for 320x512 video).
//!
//! `cargo bench --bench scheduler` prints milliseconds per iteration; later benchmarks divide it
//! by a real iteration's time to show the scheduler's share.

use std::time::Instant;

use fifo_diffusion::fifo::{
    DenoiseRequest, Denoiser, DenoiserError, FifoConfig, FifoScheduler, InitMode, PromptSchedule,
};
use fifo_diffusion::rng::{NoiseKey, NoisePurpose};

/// Leaves the model output at zero: only the scheduler's work is timed.
struct NoOp;

impl Denoiser for NoOp {
    async fn denoise(&mut self, _: &DenoiseRequest<'_>, _: &mut [f32]) -> Result<(), DenoiserError> {
        Ok(())
    }
}

fn main() {
    let mut config = FifoConfig::official(vec![4, 40, 64]);
    config.init = InitMode::Noise;
    let frame_len = config.frame_len();
    let prompts = PromptSchedule::parse("0: a red circle\n100..150: a blue square").unwrap();
    let mut scheduler = FifoScheduler::from_noise(config.clone(), prompts).unwrap();
    let queue = scheduler.layout().len();
    let iterations = 40;
    let times = pollster::block_on(async {
        for _ in 0..5 {
            scheduler.step(&mut NoOp).await.unwrap();
        }
        let mut times = Vec::new();
        for _ in 0..iterations {
            let start = Instant::now();
            scheduler.step(&mut NoOp).await.unwrap();
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times
    });
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;

    // The part of it that is noise generation: one frame per written slot plus the new tail.
    let mut noise = vec![0.0f32; frame_len];
    let start = Instant::now();
    for slot in 0..=config.steps() {
        NoiseKey { seed: 1, frame: slot as i64, index: 3, purpose: NoisePurpose::Step }
            .fill_normal(&mut noise);
    }
    let noise_ms = start.elapsed().as_secs_f64() * 1e3;

    let windows = scheduler.windows().len();
    let batch_frames = windows * config.window * 2;
    println!(
        "scheduler overhead, no-op model: f = {}, n = {}, lookahead, guidance {}, eta {}, latent {:?}",
        config.window, config.partitions, config.guidance, config.eta, config.frame_shape
    );
    println!("  queue {queue} slots, {windows} windows, {batch_frames} frames per model call ({:.1} MiB of latents in, same out)", (batch_frames * frame_len * 4) as f64 / (1 << 20) as f64);
    println!(
        "  per iteration over {iterations}: mean {mean:.2} ms, median {:.2} ms, min {:.2} ms, max {:.2} ms",
        sorted[iterations / 2],
        sorted[0],
        sorted[iterations - 1]
    );
    println!(
        "  of which noise generation (Philox + Box-Muller, {} frames): {noise_ms:.2} ms",
        config.steps() + 1
    );
}
