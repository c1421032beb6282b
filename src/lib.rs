//! FIFO-Diffusion: endless text-to-video by diagonal denoising.
//!
//! The crate is pure Rust and free of GPU types so that the same scheduler runs natively and in
//! the browser (wasm32).

pub mod fifo;
pub mod rng;
pub mod schedule;

// The ONNX executor: tensors, ops with their CPU reference, graph phases and sessions.
pub mod cpu;
pub mod graph;
pub mod onnx;
pub mod ops;
pub mod session;
pub mod tensor;
