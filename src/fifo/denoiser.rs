//! The model seen by the scheduler: a batch of windows in, one model output per frame out.

use super::conditioning::FrameConditioning;

/// A batch of windows for one model call. Latents are frame-major: `[windows][f][frame_len]`.
#[derive(Clone, Copy, Debug)]
pub struct DenoiseRequest<'a> {
    /// Windows in the batch (conditional and unconditional copies included).
    pub windows: usize,
    /// f: frames per window.
    pub frames: usize,
    /// Elements per frame latent.
    pub frame_len: usize,
    pub latents: &'a [f32],
    /// `[windows][f]` training timesteps, one per frame.
    pub timesteps: &'a [f32],
    /// `[windows][f]` conditioning, one per frame.
    pub conditioning: &'a [FrameConditioning],
}

/// A denoising model. `output` has the layout of `request.latents` and receives what the model
/// predicts (epsilon, v or x0, as its schedule declares) for every frame.
///
/// Async so that a GPU implementation can await its queue; implementations on the CPU simply
/// return a ready future.
#[allow(async_fn_in_trait)]
pub trait Denoiser {
    async fn denoise(
        &mut self,
        request: &DenoiseRequest<'_>,
        output: &mut [f32],
    ) -> Result<(), DenoiserError>;
}

/// A failure inside the model, passed through the scheduler untouched.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DenoiserError(#[from] pub Box<dyn std::error::Error + Send + Sync>);

impl DenoiserError {
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

impl<D: Denoiser + ?Sized> Denoiser for &mut D {
    async fn denoise(
        &mut self,
        request: &DenoiseRequest<'_>,
        output: &mut [f32],
    ) -> Result<(), DenoiserError> {
        (**self).denoise(request, output).await
    }
}
