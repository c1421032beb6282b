//! Normalisations: Group, Instance, Layer (statistics per row) and Batch (running statistics).

pub mod batch_norm;
pub mod group_norm;
pub mod instance_norm;
pub mod layer_norm;

use crate::cpu::{math, parallel, simd, uninit};
use crate::ops::{OpDef, OpError};
use crate::tensor::{DType, Tensor};
use std::mem::MaybeUninit;

pub(crate) const DEFS: &[&[OpDef]] =
    &[batch_norm::DEFS, group_norm::DEFS, instance_norm::DEFS, layer_norm::DEFS];

/// Normalises each `row_len` row of `x` to zero mean and unit variance (statistics in f64),
/// then lets `affine(row, normalised_row)` scale and shift the row in place.
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
