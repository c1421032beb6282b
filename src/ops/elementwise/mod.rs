//! Elementwise ops with numpy broadcasting.

pub mod binary;
pub mod cast;
pub mod classify;
pub mod clip;
pub mod unary;
pub mod where_op;

use crate::tensor::{DType, Tensor, TensorData};
use half::f16;

/// Runs a float function on a float tensor of either precision; f16 computes in f32.
pub(crate) fn map_float(x: &Tensor, f: impl Fn(f32) -> f32 + Sync + Send) -> Option<Tensor> {
    use crate::cpu::broadcast::map;
    let data = match x.data() {
        TensorData::F32(v) => TensorData::F32(map(v, f)),
        TensorData::F16(v) => TensorData::F16(map(v, |h| f16::from_f32(f(h.to_f32())))),
        _ => return None,
    };
    Tensor::new(x.shape().to_vec(), data).ok()
}

pub(crate) const NUMERIC: &[DType] = &[DType::F32, DType::F16, DType::I8, DType::U8, DType::I32, DType::I64];

pub(crate) const DEFS: &[&[crate::ops::OpDef]] =
    &[binary::DEFS, cast::DEFS, classify::DEFS, clip::DEFS, unary::DEFS, where_op::DEFS];
