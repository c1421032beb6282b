//! Errors of the GPU layer. Each message says what went wrong and how to fix it.

use thiserror::Error;

/// Everything that can fail on the GPU path. No GPU call in this layer panics.
#[derive(Debug, Error)]
pub enum GpuError {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        error(
            "no GPU adapter found ({wanted}); on Linux without a GPU install Mesa lavapipe \
             (`apt-get install -y mesa-vulkan-drivers libvulkan1`) or use the CPU backend"
        )
    )]
    #[cfg_attr(
        target_arch = "wasm32",
        error(
            "the browser gives no WebGPU adapter ({wanted}): WebGPU is missing, disabled or \
             blocklisted here (Chrome/Edge 113+ have it; headless Chromium needs \
             --enable-unsafe-webgpu); use the CPU backend"
        )
    )]
    NoAdapter { wanted: String },
    #[error("adapter index {index} does not exist: {count} adapter(s) found; list them with `fifo devices`")]
    AdapterIndex { index: usize, count: usize },
    #[error("could not open a device on adapter '{adapter}': {reason}")]
    RequestDevice { adapter: String, reason: String },
    #[error("the GPU device was lost ({reason}); create a new GpuContext")]
    DeviceLost { reason: String },
    #[error("GPU validation error in {during}: {message}")]
    Validation { during: String, message: String },
    #[error("GPU out of memory in {during}; use smaller shapes or int8/f16 weights")]
    OutOfMemory { during: String },
    #[error(
        "tensor '{name}' needs {bytes} bytes but one storage binding on this device holds at most \
         {limit} bytes (max_storage_buffer_binding_size, or the cap GpuOptions::max_binding_bytes / \
         FIFO_MAX_BINDING_BYTES); only an embedding table read by an axis-0 Gather is split into \
         row chunks automatically: use smaller shapes (e.g. fewer frames per batch), an adapter or \
         browser with a larger limit, or the CPU backend"
    )]
    TooLarge { name: String, bytes: u64, limit: u64 },
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    #[error("{op}: {message}")]
    Unsupported { op: &'static str, message: String },
    #[error("shader '{key}' failed to preprocess: {message}")]
    Shader { key: String, message: String },
    #[error("reading back tensor '{name}' failed: {reason}")]
    Readback { name: String, reason: String },
}

pub type GpuResult<T> = Result<T, GpuError>;

/// Shorthand for a shape error from an op builder.
pub(crate) fn shape_err(op: &'static str, message: impl Into<String>) -> GpuError {
    GpuError::Shape { op, message: message.into() }
}
