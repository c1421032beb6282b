//! The WebGPU runtime: device, kernels, programs. Independent of the ONNX graph IR, which lowers
//! onto `ops::*` calls recorded in a `ProgramBuilder`.
//!
//! ```text
//! let ctx = GpuContext::new(&GpuOptions::default()).await?;
//! let mut b = ProgramBuilder::new(&ctx);
//! ops::matmul::matmul(&mut b, &MatMul::new(&a_view, &w, &out_view))?;
//! let program = b.build().await?;        // compile once
//! x.write_f32(&ctx, &latents)?;           // then per iteration: upload,
//! program.run(&ctx).await?;               // one submission,
//! let y = ctx.read_f32(&out).await?;      // read back only what is needed
//! ```

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
mod context;
mod error;
pub mod memory;
pub mod ops;
mod pipeline;
mod program;
mod shader;
mod tensor;

pub use context::{AdapterChoice, AdapterSummary, GpuContext, GpuOptions, KernelStyle};
pub use error::{GpuError, GpuResult};
pub use ops::Activation;
pub use pipeline::UNIFORM_SLOT;
pub use program::{Program, ProgramBuilder};
pub use shader::ShaderVariant;
pub use tensor::{coalesce, contiguous_strides, DType, GpuTensor, View};
/// The wgpu this layer is built on, so callers need no version-matched dependency of their own.
pub use wgpu;

impl GpuContext {
    /// Keys of the pipelines compiled so far, sorted.
    pub fn pipeline_keys(&self) -> Vec<String> {
        self.pipelines.keys()
    }
}
