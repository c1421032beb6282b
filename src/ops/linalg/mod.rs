//! Linear algebra: MatMul, Gemm, Einsum.

pub mod einsum;
pub mod gemm;
pub mod matmul;

use crate::ops::OpDef;

pub(crate) const DEFS: &[&[OpDef]] = &[matmul::DEFS, gemm::DEFS, einsum::DEFS];
