//! Denoisers shared by the scheduler tests.
#![allow(dead_code)]

pub mod parity;

use fifo_diffusion::fifo::{DenoiseRequest, Denoiser, DenoiserError, FrameConditioning};

/// The toy model of `tools/reference/fifo_official.py`: deterministic, mixes frames of a window,
/// depends on each frame's timestep, position and conditioning.
pub struct ToyDenoiser {
    pub alphas_cumprod: Vec<f64>,
    /// Scalar "embedding" of each prompt id; id 0 (unconditional) is 0.
    pub prompt_values: Vec<f64>,
    pub calls: usize,
}

impl ToyDenoiser {
    pub fn new(alphas_cumprod: Vec<f64>, prompt_values: Vec<f64>) -> Self {
        Self { alphas_cumprod, prompt_values, calls: 0 }
    }

    fn condition(&self, c: FrameConditioning) -> f64 {
        let v = |id: u32| self.prompt_values[id as usize];
        (1.0 - f64::from(c.mix)) * v(c.from) + f64::from(c.mix) * v(c.to)
    }
}

impl Denoiser for ToyDenoiser {
    async fn denoise(&mut self, r: &DenoiseRequest<'_>, out: &mut [f32]) -> Result<(), DenoiserError> {
        self.calls += 1;
        let (f, d) = (r.frames, r.frame_len);
        for w in 0..r.windows {
            let x = |j: usize, e: usize| f64::from(r.latents[(w * f + j) * d + e]);
            for e in 0..d {
                let mean = (0..f).map(|j| x(j, e)).sum::<f64>() / f as f64;
                for j in 0..f {
                    let t = f64::from(r.timesteps[w * f + j]);
                    let c = self.condition(r.conditioning[w * f + j]);
                    let a = self.alphas_cumprod[t as usize];
                    let arg = 0.5 * mean
                        + 0.3 * x((j + 1) % f, e)
                        + 0.05 * j as f64
                        + c
                        + 0.001 * t
                        + 0.01 * e as f64;
                    out[(w * f + j) * d + e] = (0.9 * (1.0 - a).sqrt() * x(j, e) + 0.2 * arg.tanh()) as f32;
                }
            }
        }
        Ok(())
    }
}

/// Predicts zero noise: one DDIM step then scales each latent by its index's `c_x`.
pub struct ZeroDenoiser;

impl Denoiser for ZeroDenoiser {
    async fn denoise(&mut self, _: &DenoiseRequest<'_>, out: &mut [f32]) -> Result<(), DenoiserError> {
        out.fill(0.0);
        Ok(())
    }
}

/// Records the per-frame inputs of every call.
#[derive(Default)]
pub struct Recorder {
    pub timesteps: Vec<Vec<f32>>,
    pub conditioning: Vec<Vec<FrameConditioning>>,
    pub windows: Vec<usize>,
}

impl Denoiser for Recorder {
    async fn denoise(&mut self, r: &DenoiseRequest<'_>, out: &mut [f32]) -> Result<(), DenoiserError> {
        self.timesteps.push(r.timesteps.to_vec());
        self.conditioning.push(r.conditioning.to_vec());
        self.windows.push(r.windows);
        out.iter_mut().zip(r.latents).for_each(|(o, &x)| *o = 0.5 * x);
        Ok(())
    }
}

/// A model made of exactly rounded operations only (+, *, /), so its output is the same bits on
/// every target: what is left to differ between native and wasm32 is the scheduler itself.
pub struct LinearDenoiser;

impl Denoiser for LinearDenoiser {
    async fn denoise(&mut self, r: &DenoiseRequest<'_>, out: &mut [f32]) -> Result<(), DenoiserError> {
        let (f, d) = (r.frames, r.frame_len);
        for w in 0..r.windows {
            for e in 0..d {
                let mean = (0..f).map(|j| r.latents[(w * f + j) * d + e]).sum::<f32>() / f as f32;
                for j in 0..f {
                    let i = (w * f + j) * d + e;
                    let c = r.conditioning[w * f + j];
                    let cond = (1.0 - c.mix) * c.from as f32 + c.mix * c.to as f32;
                    out[i] = 0.5 * r.latents[i] + 0.1 * mean + r.timesteps[w * f + j] / 2000.0 + 0.1 * cond;
                }
            }
        }
        Ok(())
    }
}
