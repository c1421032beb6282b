//! FIFO-Diffusion: endless text-to-video by diagonal denoising.
//!
//! The scheduler (`fifo`, `schedule`, `rng`) is free of GPU types so that it runs and is tested
//! on the CPU, natively and in the browser (wasm32); `gpu` is the WebGPU runtime and its kernels.

pub mod fifo;
pub mod gpu;
pub mod rng;
pub mod schedule;

// The shapes-world evaluator: scores decoded videos against their prompts (pure Rust).
pub mod eval;

// The ONNX executor: tensors, ops with their CPU reference, graph phases and sessions.
pub mod cpu;
pub mod gpu_backend;
pub mod graph;
pub mod onnx;
pub mod ops;
pub mod session;
pub mod tensor;

// Text to video: model packages and the generation pipeline.
pub mod model;
pub mod pipeline;
