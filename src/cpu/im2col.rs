//! im2col / col2im for N-D windows: convolution becomes one GEMM per image and group.

use super::parallel;
use crate::ops::nn::window::Window;
use crate::tensor::shape::strides;

/// Source offset (inside one channel plane) of output position `o_idx` for kernel tap `k_idx`,
/// or `None` when it falls in the padding.
#[inline]
fn tap_offset(w: &Window, in_strides: &[usize], o_idx: &[usize], k_idx: &[usize]) -> Option<usize> {
    let mut off = 0;
    for d in 0..o_idx.len() {
        let c = w.input_coord(d, o_idx[d], k_idx[d]);
        if c < 0 || c as usize >= w.input[d] {
            return None;
        }
        off += c as usize * in_strides[d];
    }
    Some(off)
}

fn advance(idx: &mut [usize], shape: &[usize]) {
    for d in (0..shape.len()).rev() {
        idx[d] += 1;
        if idx[d] < shape[d] {
            return;
        }
        idx[d] = 0;
    }
}

/// Fills `col` (rows `channels * kernel_len`, columns `output_len`) from `x` (`channels` planes).
pub fn im2col(x: &[f32], channels: usize, w: &Window, col: &mut [f32]) {
    let (plane, cols) = (w.input_len(), w.output_len());
    let taps = w.kernel_positions();
    let in_strides = strides(&w.input);
    debug_assert_eq!(col.len(), channels * taps.len() * cols);
    let rows_per_chunk = parallel::chunk_len(channels * taps.len(), cols);
    parallel::for_each_chunk_mut(col, rows_per_chunk * cols, |chunk, rows| {
        for (r, dst) in rows.chunks_mut(cols).enumerate() {
            let row = chunk * rows_per_chunk + r;
            let (c, k_idx) = (row / taps.len(), &taps[row % taps.len()]);
            let src = &x[c * plane..(c + 1) * plane];
            let mut o_idx = vec![0; w.output.len()];
            for v in dst.iter_mut() {
                *v = tap_offset(w, &in_strides, &o_idx, k_idx).map_or(0.0, |o| src[o]);
                advance(&mut o_idx, &w.output);
            }
        }
    });
}

/// Scatter-adds `col` (rows `channels * kernel_len`, columns `output_len`) into `y`
/// (`channels` planes of `w.input`): the adjoint of [`im2col`], used by ConvTranspose.
pub fn col2im(col: &[f32], channels: usize, w: &Window, y: &mut [f32]) {
    let (plane, cols) = (w.input_len(), w.output_len());
    let taps = w.kernel_positions();
    let in_strides = strides(&w.input);
    parallel::for_each_chunk_mut(y, plane.max(1), |c, dst| {
        if c >= channels {
            return;
        }
        for (t, k_idx) in taps.iter().enumerate() {
            let src = &col[(c * taps.len() + t) * cols..][..cols];
            let mut o_idx = vec![0; w.output.len()];
            for &v in src {
                if let Some(o) = tap_offset(w, &in_strides, &o_idx, k_idx) {
                    dst[o] += v;
                }
                advance(&mut o_idx, &w.output);
            }
        }
    });
}
