//! Checkpoint / resume: the whole queue state in one self-checking file.
//!
//! Layout: `FIFOCKPT` magic, u32 LE header length, JSON header (settings, prompts, iteration,
//! model id, versions), the queue latents head first as f32 LE, and a CRC-32 of everything before
//! it. Noise is counter-based, so this is all the state there is: resuming is bit-exact.

use serde::{Deserialize, Serialize};

use super::conditioning::PromptSchedule;
use super::config::FifoConfig;
use super::scheduler::FifoScheduler;

const MAGIC: &[u8; 8] = b"FIFOCKPT";
/// Bumped whenever the meaning of a checkpoint changes.
pub const CHECKPOINT_FORMAT: u32 = 1;

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
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a FIFO checkpoint (wrong magic bytes); pass a file written by --checkpoint-every")]
    NotACheckpoint,
    #[error("the checkpoint is truncated ({got} bytes, expected {expected}); use an earlier checkpoint")]
    Truncated { got: usize, expected: usize },
    #[error("the checkpoint is corrupt (CRC mismatch); use an earlier checkpoint")]
    Corrupt,
    #[error("checkpoint format {found} is not supported by this build (format {CHECKPOINT_FORMAT}); written by {writer}")]
    Format { found: u32, writer: String },
    #[error("the checkpoint was made with model `{found}` but `{expected}` is loaded; resume with --model pointing at `{found}`")]
    ModelMismatch { found: String, expected: String },
    #[error("the checkpoint header is unreadable: {0}")]
    Header(String),
    #[error("a checkpoint can only be taken between iterations")]
    MidIteration,
}

impl FifoScheduler {
    /// Serialises the whole state. `model` identifies the model package the run uses.
    pub fn checkpoint(&self, model: &str) -> Result<Vec<u8>, CheckpointError> {
        if !self.between_iterations() {
            return Err(CheckpointError::MidIteration);
        }
        let header = Header {
            format: CHECKPOINT_FORMAT,
            writer: concat!("fifo-diffusion ", env!("CARGO_PKG_VERSION")).to_string(),
            model: model.to_string(),
            config: self.config.clone(),
            prompts: self.prompts.clone(),
            iteration: self.iteration,
            slots: self.ring.slots(),
            frame_len: self.ring.frame_len(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| CheckpointError::Header(e.to_string()))?;
        let mut bytes = Vec::with_capacity(16 + json.len() + 4 * header.slots * header.frame_len);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&json);
        for frame in self.ring.logical_frames() {
            frame.iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        }
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        Ok(bytes)
    }

    /// Restores a scheduler from [`Self::checkpoint`] bytes; with `model`, refuses a checkpoint
    /// of another model.
    pub fn from_checkpoint(bytes: &[u8], model: Option<&str>) -> Result<Self, CheckpointError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(CheckpointError::NotACheckpoint);
        }
        let truncated = |expected| CheckpointError::Truncated { got: bytes.len(), expected };
        let json_len =
            u32::from_le_bytes(bytes.get(8..12).ok_or(truncated(12))?.try_into().unwrap()) as usize;
        let json = bytes.get(12..12 + json_len).ok_or(truncated(12 + json_len))?;
        let header: Header =
            serde_json::from_slice(json).map_err(|e| CheckpointError::Header(e.to_string()))?;
        if header.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Format { found: header.format, writer: header.writer });
        }
        let payload = header.slots.checked_mul(header.frame_len).and_then(|n| n.checked_mul(4));
        let end = payload.and_then(|p| p.checked_add(12 + json_len)).ok_or(CheckpointError::Corrupt)?;
        if bytes.len() != end + 4 {
            return Err(truncated(end + 4));
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
        let latents = &bytes[12 + json_len..end];
        for (slot, chunk) in latents.chunks_exact(4 * header.frame_len).enumerate() {
            for (dst, src) in scheduler.ring.frame_mut(slot).iter_mut().zip(chunk.chunks_exact(4)) {
                *dst = f32::from_le_bytes(src.try_into().unwrap());
            }
        }
        scheduler.iteration = header.iteration;
        Ok(scheduler)
    }
}
