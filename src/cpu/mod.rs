//! The CPU reference backend: shared kernels (GEMM, broadcasting, threading) and the executor
//! that runs a built graph. Ops' CPU code lives beside each op in `crate::ops`.

pub mod broadcast;
#[cfg(test)]
mod conv_reference;
pub mod executor;
pub mod gemm;
pub mod im2col;
pub mod math;
pub mod narrow_conv;
pub mod panel_conv;
pub mod parallel;
pub mod prepared;
pub mod simd;
pub mod strided;
pub mod uninit;
pub mod winograd;
