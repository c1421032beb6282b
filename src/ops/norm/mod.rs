//! Normalisations: Group, Instance, Layer (statistics per row) and Batch (running statistics).

pub mod batch_norm;
pub mod group_norm;
pub mod instance_norm;
pub mod layer_norm;

use crate::cpu::{math, parallel, simd, uninit};
use crate::ops::elementwise::unary::UnaryKind;
use crate::ops::{OpDef, OpError};
use crate::tensor::{DType, Tensor};
use std::mem::MaybeUninit;

pub(crate) const DEFS: &[&[OpDef]] =
    &[batch_norm::DEFS, group_norm::DEFS, instance_norm::DEFS, layer_norm::DEFS];

/// Normalises each `row_len` row of `x` to zero mean and unit variance (statistics in f64),
/// then lets `affine(row, normalised_row)` scale and shift the row in place (pass an
/// `#[inline(always)]` closure: one left behind a call runs baseline SSE code, see `cpu::simd`).
pub(crate) fn normalize_rows(
    x: &[f32],
    row_len: usize,
    epsilon: f32,
    affine: impl Fn(usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let row_len = row_len.max(1);
    let rows_per_chunk = parallel::chunk_len(x.len() / row_len, row_len * 3);
    // SAFETY: every row of every piece is written by `normalize_row` (pieces are whole rows of
    // `x`'s length) before `affine` sees it.
    unsafe {
        uninit::filled(x.len(), rows_per_chunk * row_len, |c, dst| {
            simd::vectorised(
                #[inline(always)]
                || {
                    for (r, d) in dst.chunks_mut(row_len).enumerate() {
                        let row = c * rows_per_chunk + r;
                        normalize_row(&x[row * row_len..(row + 1) * row_len], epsilon, d);
                        affine(row, uninit::assume_init(d));
                    }
                },
            )
        })
    }
}

/// `d` = `src` normalised, every slot written.
#[inline(always)]
fn normalize_row(src: &[f32], epsilon: f32, d: &mut [MaybeUninit<f32>]) {
    assert_eq!(src.len(), d.len(), "normalised row length");
    let n = src.len() as f64;
    let mean = math::sum_by(src, |v| v as f64) / n;
    let var = math::sum_by(src, |v| (v as f64 - mean) * (v as f64 - mean)) / n;
    let inv_std = 1.0 / (var + epsilon as f64).sqrt();
    for (o, &v) in d.iter_mut().zip(src) {
        o.write(((v as f64 - mean) * inv_std) as f32);
    }
}

/// What a fused node computes after a Group or Instance norm (its affine part included), on each
/// (batch item, channel) plane while it is in cache: `* scale + shift` with one value of each per
/// batch item and channel, then an activation. The ops' own f32 arithmetic in their order, so
/// the bits of the unfused Mul, Add and activation run after the norm.
#[derive(Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    pub modulation: Option<[PerChannel<'a>; 2]>,
    pub activation: Option<UnaryKind>,
}

impl Epilogue<'_> {
    #[inline(always)]
    fn apply(&self, batch: usize, channel: usize, plane: &mut [f32]) {
        if let Some([scale, shift]) = self.modulation {
            let (s, h) = (scale.at(batch, channel), shift.at(batch, channel));
            for v in plane.iter_mut() {
                *v *= s;
            }
            for v in plane.iter_mut() {
                *v += h;
            }
        }
        if let Some(kind) = self.activation {
            kind.apply_in_place(plane);
        }
    }
}

/// A tensor with one value per batch item and channel of an `[N, C, ...]` output, broadcasting
/// to it (`[N, C, 1, 1]`, `[C, 1, 1]`, `[1, C, 1]`, ...).
#[derive(Clone, Copy)]
pub(crate) struct PerChannel<'a> {
    data: &'a [f32],
    batch_stride: usize,
    channel_stride: usize,
}

impl<'a> PerChannel<'a> {
    /// `None` where `shape` does not broadcast to `out` that way.
    pub fn new(data: &'a [f32], shape: &[usize], out: &[usize]) -> Option<PerChannel<'a>> {
        if out.len() < 2 || shape.len() > out.len() || data.len() != shape.iter().product::<usize>() {
            return None;
        }
        let lead = out.len() - shape.len();
        let dim = |axis: usize| if axis < lead { 1 } else { shape[axis - lead] };
        if (2..out.len()).any(|a| dim(a) != 1) || [0, 1].iter().any(|&a| dim(a) != 1 && dim(a) != out[a]) {
            return None;
        }
        let (batch_stride, channel_stride) = match (dim(0), dim(1)) {
            (1, 1) => (0, 0),
            (1, _) => (0, 1),
            (_, 1) => (1, 0),
            (_, c) => (c, 1),
        };
        Some(PerChannel { data, batch_stride, channel_stride })
    }

    #[inline(always)]
    fn at(&self, batch: usize, channel: usize) -> f32 {
        self.data[batch * self.batch_stride + channel * self.channel_stride]
    }
}

/// Wraps f32 results in the input's float dtype.
pub(crate) fn float_output(shape: Vec<usize>, data: Vec<f32>, dtype: DType) -> Result<Tensor, OpError> {
    let out = Tensor::from_f32(shape, data)?;
    Ok(if dtype == DType::F32 { out } else { out.cast(dtype) })
}

/// Checks that a per-channel parameter has exactly `len` elements.
pub(crate) fn check_len(name: &str, shape: &[usize], len: usize) -> Result<(), OpError> {
    if shape.iter().product::<usize>() == len && shape.len() <= 1 {
        Ok(())
    } else {
        Err(OpError::invalid(format!("{name} has shape {shape:?}; expected [{len}]")))
    }
}
