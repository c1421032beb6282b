//! A causal decoder's side of a run in checkpoints: the state it carries from latent to latent,
//! the frames it decoded ahead and how many it made (format 2 of [`crate::fifo`]'s checkpoints).

use super::{CausalDecoding, Frame, Models, PipelineError};
use crate::fifo::{DecoderCheckpoint, PendingFrame, StateTensor};
use crate::model::DecoderGraph;
use crate::tensor::Tensor;

/// Why a checkpoint does not fit the package resuming it.
fn mismatch(model: &str, why: String) -> PipelineError {
    PipelineError::Unsupported(format!(
        "the checkpoint does not fit model `{model}`: {why}; resume with the package that wrote it"
    ))
}

/// Frames a causal decoder makes from the first `latents` latents.
fn frames_from_latents(d: &DecoderGraph, latents: u64) -> Option<u64> {
    match latents {
        0 => Some(0),
        n => (d.frames_per_latent as u64).checked_mul(n - 1)?.checked_add(d.first_frames as u64),
    }
}

impl CausalDecoding {
    /// What a checkpoint holds of this run's decoding; `None` before the first latent is decoded
    /// (the checkpoint is then the queue alone, as for a stateless decoder).
    pub(super) fn checkpoint(&self, models: &Models) -> Result<Option<DecoderCheckpoint>, PipelineError> {
        let model = &models.package.name;
        let refuse = |why: String| {
            PipelineError::Unsupported(format!("cannot checkpoint this run of model `{model}`: {why}"))
        };
        let state = match &self.state {
            None if self.decoded == 0 && self.pending.is_empty() => return Ok(None),
            None => {
                return Err(refuse(
                    "the causal decoder's state was lost in a failed decode; resume from an earlier \
                     checkpoint"
                        .into(),
                ))
            }
            Some(state) => state,
        };
        let names = &models.package.graphs.decoder.state;
        if names.len() != state.len() {
            return Err(refuse(format!("{} decoder state tensors for {} inputs", state.len(), names.len())));
        }
        let state = names
            .iter()
            .zip(state)
            .map(|(name, tensor)| {
                let data = tensor.as_f32().map_err(|e| refuse(format!("the decoder state `{name}`: {e}")))?;
                Ok(StateTensor { name: name.clone(), shape: tensor.shape().to_vec(), data: data.to_vec() })
            })
            .collect::<Result<_, PipelineError>>()?;
        let pending = self
            .pending
            .iter()
            .map(|f| PendingFrame { id: f.id, width: f.width, height: f.height, rgb: f.rgb.clone() })
            .collect();
        Ok(Some(DecoderCheckpoint { decoded: self.decoded, pending, state }))
    }

    /// The decoding of a run resumed after `latents` latents left the queue, from what its
    /// checkpoint saved; refuses a checkpoint whose decoder side does not fit the package.
    pub(super) fn restore(
        models: &Models,
        latents: u64,
        saved: Option<DecoderCheckpoint>,
    ) -> Result<Self, PipelineError> {
        let (p, d) = (&models.package, &models.package.graphs.decoder);
        let fail = |why: String| mismatch(&p.name, why);
        let saved = match (d.is_causal(), saved) {
            (false, None) => return Ok(Self::default()),
            (false, Some(_)) => {
                return Err(fail(format!(
                    "it holds the state of a causal video decoder, but the decoder `{}` is not causal \
                     (no `graphs.decoder.first`)",
                    d.file
                )))
            }
            // Nothing decoded yet: a queue-only checkpoint starts the decoder afresh.
            (true, None) if latents == 0 => return Ok(Self::default()),
            (true, None) => {
                return Err(fail(format!(
                    "it holds no decoder state after {latents} latents, but the decoder `{}` is causal \
                     (its frames depend on the state of the frames before)",
                    d.file
                )))
            }
            (true, Some(saved)) => saved,
        };
        if latents == 0 {
            return Err(fail("it holds decoder state before any latent left the queue".into()));
        }
        let expected = frames_from_latents(d, latents);
        if expected != Some(saved.decoded) {
            return Err(fail(format!(
                "its decoder made {} frames from {latents} latents, the decoder makes {} ({} from the \
                 first latent, {} from each later one)",
                saved.decoded,
                expected.map_or("more than 2^64".into(), |n| n.to_string()),
                d.first_frames,
                d.frames_per_latent
            )));
        }
        let last = if latents == 1 { d.first_frames } else { d.frames_per_latent };
        if saved.pending.len() > last {
            return Err(fail(format!(
                "{} frames of its last latent are pending, more than the {} it decodes into",
                saved.pending.len(),
                last
            )));
        }
        let first_pending = saved.decoded - saved.pending.len() as u64;
        let (width, height) = (p.image.width, p.image.height);
        for (frame, id) in saved.pending.iter().zip(first_pending..) {
            if frame.id != id {
                return Err(fail(format!("its pending frame {} should be frame {id}", frame.id)));
            }
            if (frame.width, frame.height) != (width, height) {
                return Err(fail(format!(
                    "its pending frame {id} is {}x{}, the package's frames are {width}x{height}",
                    frame.width, frame.height
                )));
            }
        }
        let inputs = &models.decoder.info().inputs;
        let names: Vec<&str> = saved.state.iter().map(|t| t.name.as_str()).collect();
        if names != d.state.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(fail(format!(
                "its decoder state names the inputs {names:?}, the decoder's `state` is {:?}",
                d.state
            )));
        }
        let mut state = Vec::with_capacity(saved.state.len());
        for t in saved.state {
            let built = inputs.iter().find(|i| i.name == t.name).and_then(|i| i.shape.as_ref());
            if built != Some(&t.shape) {
                return Err(fail(format!(
                    "its decoder state `{}` has shape {:?}, the decoder's input takes {}",
                    t.name,
                    t.shape,
                    built.map_or("no known shape".into(), |s| format!("{s:?}"))
                )));
            }
            let name = t.name;
            state.push(Tensor::from_f32(t.shape, t.data).map_err(|e| fail(format!("`{name}`: {e}")))?);
        }
        let pending = saved
            .pending
            .into_iter()
            .map(|f| Frame { id: f.id, width: f.width, height: f.height, rgb: f.rgb })
            .collect();
        Ok(Self { state: Some(state), pending, decoded: saved.decoded })
    }
}
