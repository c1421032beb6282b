//! The WebGPU runtime: device, kernels, programs. Independent of the ONNX graph IR, which lowers
//! each node onto `ops::*` calls recorded in a `ProgramBuilder`.
//!
//! - `GpuContext`: adapter choice (`AdapterChoice::Index` of `GpuContext::adapters()`, or
//!   `Fallback` for CPU adapters), limits raised to the adapter's buffer sizes, shader-f16 and
//!   subgroups when present, and the kernel style (register-blocked on CPU adapters, tiled on
//!   GPUs). wgpu errors and device loss come back as `GpuError`s, never panics.
//! - `GpuTensor` (a buffer of f32, i32, f16 or i8 elements) and `View` (offset, shape, strides:
//!   transposes and broadcasts cost nothing).
//! - `ops`: one module per kernel family, each matching `shaders/<family>.wgsl`. Variants are
//!   macros with a readable key (`matmul.f32.w=i8.rb4x4.wg8x8.act=silu`); shapes and strides go
//!   into a 256-byte slot of the program's uniform arena, never into the WGSL text.
//! - `Program`: built once (pipelines, bind groups, uniforms), then each `run` is one command
//!   buffer and one submission; buffers stay on the device; read back only what you need.
//! - `memory`: buffer reuse from liveness (`FIFO_NO_BUFFER_REUSE=1` turns it off).
//!
//! How the IR lowers a graph (sketch; every call returns `GpuResult`):
//!
//! ```text
//! let ctx = GpuContext::new(&GpuOptions::default()).await?;           // once per app
//! let plan = memory::plan_reuse(&lifetimes, memory::reuse_enabled());  // from the IR's liveness
//! let pool = memory::BufferPool::new(&ctx, plan)?;
//! let x = GpuTensor::new(&ctx, "latents", DType::F32, b * k)?;         // graph input, on device
//! let h = pool.tensor(0, "h", DType::F32, b * n)?;                      // an intermediate
//! let mut p = ProgramBuilder::new(&ctx);
//! // Gemm(x, W, transB=1) + bias with the following SiLU fused (W is torch's [n, k]):
//! let mut mm = MatMul::new(x.view(&[b, k]), w.view(&[n, k]).permute(&[1, 0])?, h.view(&[b, n]));
//! mm.bias = Some(bias);
//! mm.activation = Activation::Silu;
//! ops::matmul::matmul(&mut p, &mm)?;
//! ops::norm::group_norm(&mut p, &h, &[1, c, s], 32, Some(&affine), 1e-5, Activation::Silu, &y)?;
//! ops::attention::attention(&mut p, &Attention { q, k, v, out, scale: 0.125 })?;
//! let program = p.build().await?;                                      // compile once
//! loop {                                                                // every FIFO iteration:
//!     x.write_f32(&ctx, &latents)?;                                     //   upload the inputs,
//!     program.run(&ctx).await?;                                         //   one submission,
//!     let eps = ctx.read_f32(&y).await?;                                //   read back the output
//! }
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
mod staging;
mod tensor;

pub use context::{
    AdapterChoice, AdapterSummary, DeviceMemory, GpuContext, GpuOptions, KernelStyle, Precision, Traffic,
    LLVMPIPE_LOOP_LIMIT,
};
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
