//! Checkpoint / resume: the whole run state in one self-checking file.
//!
//! Layout: `FIFOCKPT` magic, u32 LE header length, JSON header (settings, prompts, iteration,
//! model id, versions), the queue latents head first as f32 LE, then (format 2 only) a causal
//! video decoder's side of the run, and a CRC-32 of everything before it. Noise is
//! counter-based, so this is all the state there is: resuming is bit-exact.
//!
//! Format 2 adds a `decoder` object to the header ([`DecoderCheckpoint`]: frames decoded, the
//! pending frames' ids and sizes, the state tensors' names and shapes) and its data after the
//! latents: the pending frames' RGB bytes in order, then each state tensor as f32 LE. A
//! checkpoint without decoder state is still written as format 1, byte for byte what earlier
//! builds wrote and read.

use serde::{Deserialize, Serialize};

use super::conditioning::PromptSchedule;
use super::config::FifoConfig;
use super::scheduler::FifoScheduler;

const MAGIC: &[u8; 8] = b"FIFOCKPT";
/// Bumped whenever the meaning of a checkpoint changes; every format up to it is read.
pub const CHECKPOINT_FORMAT: u32 = 2;
/// The format of a checkpoint without decoder state (the queue only).
const QUEUE_ONLY_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    writer: String,
    model: String,
    config: FifoConfig,
    prompts: PromptSchedule,
    iteration: u64,
    slots: usize,
    frame_len: usize,
    /// Format 2: the layout of the decoder's data after the latents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decoder: Option<DecoderLayout>,
}

#[derive(Serialize, Deserialize)]
struct DecoderLayout {
    decoded: u64,
    pending: Vec<FrameLayout>,
    state: Vec<TensorLayout>,
}

#[derive(Serialize, Deserialize)]
struct FrameLayout {
    id: u64,
    width: usize,
    height: usize,
}

#[derive(Serialize, Deserialize)]
struct TensorLayout {
    name: String,
    shape: Vec<usize>,
}

impl DecoderLayout {
    /// Bytes of the data after the latents; `None` on overflow.
    fn bytes(&self) -> Option<usize> {
        let frames = self.pending.iter().try_fold(0usize, |sum, f| {
            f.width.checked_mul(f.height)?.checked_mul(3).and_then(|n| sum.checked_add(n))
        })?;
        let state = self.state.iter().try_fold(0usize, |sum, t| {
            t.shape.iter().try_fold(4usize, |n, &d| n.checked_mul(d)).and_then(|n| sum.checked_add(n))
        })?;
        frames.checked_add(state)
    }
}

/// A causal video decoder's side of a run (Wan's VAE): what a checkpoint needs besides the
/// queue for the frames after it to equal those of an uninterrupted run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecoderCheckpoint {
    /// Frames decoded so far (the id of the next frame decoded).
    pub decoded: u64,
    /// Frames decoded but not handed out yet, in order.
    pub pending: Vec<PendingFrame>,
    /// The state the next latent is decoded with, in the order of the decoder's state inputs.
    pub state: Vec<StateTensor>,
}

/// A decoded frame not handed out yet: `height * width * 3` RGB bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingFrame {
    pub id: u64,
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// One f32 state tensor of a causal decoder, named by the graph input it feeds.
#[derive(Clone, Debug, PartialEq)]
pub struct StateTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a FIFO checkpoint (wrong magic bytes); pass a file written by --checkpoint-every")]
    NotACheckpoint,
    #[error("the checkpoint is truncated ({got} bytes, expected {expected}); use an earlier checkpoint")]
    Truncated { got: usize, expected: usize },
    #[error("the checkpoint is corrupt (CRC mismatch); use an earlier checkpoint")]
    Corrupt,
    #[error("checkpoint format {found} is not supported by this build (formats 1 to {CHECKPOINT_FORMAT}); written by {writer}")]
    Format { found: u32, writer: String },
    #[error("the checkpoint was made with model `{found}` but `{expected}` is loaded; resume with --model pointing at `{found}`")]
    ModelMismatch { found: String, expected: String },
    #[error("the checkpoint header is unreadable: {0}")]
    Header(String),
    #[error("a checkpoint can only be taken between iterations")]
    MidIteration,
    #[error("the checkpoint holds a causal video decoder's state, which only a whole run restores (`Generation::resume`)")]
    DecoderState,
    #[error("cannot checkpoint the decoder state: {0}")]
    BadDecoderState(String),
}

impl FifoScheduler {
    /// Serialises the whole state. `model` identifies the model package the run uses.
    pub fn checkpoint(&self, model: &str) -> Result<Vec<u8>, CheckpointError> {
        self.checkpoint_with(model, None)
    }

    /// [`Self::checkpoint`] with a causal decoder's side of the run (format 2); without it, the
    /// format-1 bytes of [`Self::checkpoint`].
    pub fn checkpoint_with(
        &self,
        model: &str,
        decoder: Option<&DecoderCheckpoint>,
    ) -> Result<Vec<u8>, CheckpointError> {
        if !self.between_iterations() {
            return Err(CheckpointError::MidIteration);
        }
        let layout = decoder.map(layout_of).transpose()?;
        let header = Header {
            format: if decoder.is_some() { CHECKPOINT_FORMAT } else { QUEUE_ONLY_FORMAT },
            writer: concat!("fifo-diffusion ", env!("CARGO_PKG_VERSION")).to_string(),
            model: model.to_string(),
            config: self.config.clone(),
            prompts: self.prompts.clone(),
            iteration: self.iteration,
            slots: self.ring.slots(),
            frame_len: self.ring.frame_len(),
            decoder: layout,
        };
        let json = serde_json::to_vec(&header).map_err(|e| CheckpointError::Header(e.to_string()))?;
        let extra = header.decoder.as_ref().and_then(DecoderLayout::bytes).unwrap_or(0);
        let mut bytes = Vec::with_capacity(16 + json.len() + 4 * header.slots * header.frame_len + extra);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&json);
        for frame in self.ring.logical_frames() {
            frame.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        }
        if let Some(decoder) = decoder {
            decoder.pending.iter().for_each(|f| bytes.extend_from_slice(&f.rgb));
            for tensor in &decoder.state {
                tensor.data.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
            }
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        Ok(bytes)
    }

    /// Restores a scheduler from [`Self::checkpoint`] bytes; with `model`, refuses a checkpoint
    /// of another model, and one holding a causal decoder's state (see
    /// [`Self::from_checkpoint_with`]).
    pub fn from_checkpoint(bytes: &[u8], model: Option<&str>) -> Result<Self, CheckpointError> {
        match Self::from_checkpoint_with(bytes, model)? {
            (scheduler, None) => Ok(scheduler),
            (_, Some(_)) => Err(CheckpointError::DecoderState),
        }
    }

    /// Restores a scheduler and, from a format-2 checkpoint, the causal decoder's side of the
    /// run; with `model`, refuses a checkpoint of another model.
    pub fn from_checkpoint_with(
        bytes: &[u8],
        model: Option<&str>,
    ) -> Result<(Self, Option<DecoderCheckpoint>), CheckpointError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(CheckpointError::NotACheckpoint);
        }
        let truncated = |expected| CheckpointError::Truncated { got: bytes.len(), expected };
        let json_len =
            u32::from_le_bytes(bytes.get(8..12).ok_or(truncated(12))?.try_into().unwrap()) as usize;
        let json_end = json_len.checked_add(12).ok_or(CheckpointError::Corrupt)?;
        let json = bytes.get(12..json_end).ok_or(truncated(json_end))?;
        let header: Header =
            serde_json::from_slice(json).map_err(|e| CheckpointError::Header(e.to_string()))?;
        if header.format == 0 || header.format > CHECKPOINT_FORMAT {
            return Err(CheckpointError::Format { found: header.format, writer: header.writer });
        }
        if header.format == QUEUE_ONLY_FORMAT && header.decoder.is_some() {
            return Err(CheckpointError::Header("a format-1 checkpoint with decoder state".into()));
        }
        let payload = header.slots.checked_mul(header.frame_len).and_then(|n| n.checked_mul(4));
        let decoder_bytes = match &header.decoder {
            Some(layout) => layout.bytes(),
            None => Some(0),
        };
        let latents_end = payload.and_then(|p| p.checked_add(json_end)).ok_or(CheckpointError::Corrupt)?;
        let end = decoder_bytes.and_then(|d| d.checked_add(latents_end)).ok_or(CheckpointError::Corrupt)?;
        if end.checked_add(4) != Some(bytes.len()) {
            return Err(truncated(end.saturating_add(4)));
        }
        let crc = u32::from_le_bytes(bytes[end..].try_into().unwrap());
        if crc32fast::hash(&bytes[..end]) != crc {
            return Err(CheckpointError::Corrupt);
        }
        if let Some(expected) = model {
            if header.model != expected {
                return Err(CheckpointError::ModelMismatch {
                    found: header.model,
                    expected: expected.to_string(),
                });
            }
        }
        let init = header.config.init;
        let mut scheduler = Self::empty(header.config, header.prompts)
            .map_err(|e| CheckpointError::Header(format!("{e} (init {init:?})")))?;
        if scheduler.ring.slots() != header.slots || scheduler.ring.frame_len() != header.frame_len {
            return Err(CheckpointError::Header("queue size does not match its settings".into()));
        }
        let latents = &bytes[json_end..latents_end];
        for (slot, chunk) in latents.chunks_exact(4 * header.frame_len).enumerate() {
            for (dst, src) in scheduler.ring.frame_mut(slot).iter_mut().zip(chunk.chunks_exact(4)) {
                *dst = f32::from_le_bytes(src.try_into().unwrap());
            }
        }
        scheduler.iteration = header.iteration;
        let decoder = header.decoder.map(|layout| read_decoder(layout, &bytes[latents_end..end]));
        Ok((scheduler, decoder))
    }
}

/// The header's description of `decoder`, checked to describe its data.
fn layout_of(decoder: &DecoderCheckpoint) -> Result<DecoderLayout, CheckpointError> {
    let bad = CheckpointError::BadDecoderState;
    for f in &decoder.pending {
        if Some(f.rgb.len()) != f.width.checked_mul(f.height).and_then(|n| n.checked_mul(3)) {
            return Err(bad(format!(
                "frame {} holds {} bytes, not {}x{} RGB",
                f.id,
                f.rgb.len(),
                f.width,
                f.height
            )));
        }
    }
    for t in &decoder.state {
        if Some(t.data.len()) != t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) {
            return Err(bad(format!("`{}` holds {} values, not shape {:?}", t.name, t.data.len(), t.shape)));
        }
    }
    Ok(DecoderLayout {
        decoded: decoder.decoded,
        pending: decoder
            .pending
            .iter()
            .map(|f| FrameLayout { id: f.id, width: f.width, height: f.height })
            .collect(),
        state: decoder
            .state
            .iter()
            .map(|t| TensorLayout { name: t.name.clone(), shape: t.shape.clone() })
            .collect(),
    })
}

/// The decoder's data after the latents; `data` holds exactly `layout.bytes()`.
fn read_decoder(layout: DecoderLayout, mut data: &[u8]) -> DecoderCheckpoint {
    let mut take = |n: usize| {
        let (head, rest) = data.split_at(n);
        data = rest;
        head
    };
    let pending = layout
        .pending
        .into_iter()
        .map(|FrameLayout { id, width, height }| PendingFrame {
            id,
            width,
            height,
            rgb: take(width * height * 3).to_vec(),
        })
        .collect();
    let state = layout
        .state
        .into_iter()
        .map(|TensorLayout { name, shape }| {
            let len = shape.iter().product::<usize>();
            let data =
                take(4 * len).chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            StateTensor { name, shape, data }
        })
        .collect();
    DecoderCheckpoint { decoded: layout.decoded, pending, state }
}
