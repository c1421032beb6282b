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

/// Output positions `lo..hi` along dim `d` whose tap `k` lands inside the input.
fn valid_range(w: &Window, d: usize, k: usize) -> (usize, usize) {
    let (s, out) = (w.strides[d] as isize, w.output[d] as isize);
    let shift = w.pad_begin[d] as isize - (k * w.dilations[d]) as isize;
    let ceil_div = |a: isize| if a <= 0 { 0 } else { (a + s - 1) / s };
    let lo = ceil_div(shift).min(out);
    let hi = ceil_div(w.input[d] as isize + shift).clamp(lo, out);
    (lo as usize, hi as usize)
}

/// One im2col row: kernel tap `k_idx` of one channel plane `src`, for every output position.
/// Walks output rows along the last dim, copying the valid span in one go.
fn fill_row(dst: &mut [f32], src: &[f32], w: &Window, in_strides: &[usize], k_idx: &[usize]) {
    let last = w.output.len() - 1;
    let inner = w.output[last];
    let (lo, hi) = valid_range(w, last, k_idx[last]);
    let step = w.strides[last];
    let mut o_idx = vec![0; last];
    for row in dst.chunks_mut(inner.max(1)) {
        let base = (0..last).try_fold(0usize, |acc, d| {
            let c = w.input_coord(d, o_idx[d], k_idx[d]);
            (c >= 0 && (c as usize) < w.input[d]).then(|| acc + c as usize * in_strides[d])
        });
        match base {
            Some(base) if lo < hi => {
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                let first = base + w.input_coord(last, lo, k_idx[last]) as usize;
                if step == 1 {
                    row[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                } else {
                    for (j, v) in row[lo..hi].iter_mut().enumerate() {
                        *v = src[first + j * step];
                    }
                }
            }
            _ => row.fill(0.0),
        }
        advance(&mut o_idx, &w.output[..last]);
    }
}

/// Fills `col` (rows `channels * kernel_len`, columns `output_len`) from `x` (`channels` planes).
pub fn im2col(x: &[f32], channels: usize, w: &Window, col: &mut [f32]) {
    let (plane, cols) = (w.input_len(), w.output_len());
    let taps = w.kernel_positions();
    let in_strides = strides(&w.input);
    debug_assert_eq!(col.len(), channels * taps.len() * cols);
    if cols == 0 || w.output.is_empty() {
        return;
    }
    let rows_per_chunk = parallel::chunk_len(channels * taps.len(), cols);
    parallel::for_each_chunk_mut(col, rows_per_chunk * cols, |chunk, rows| {
        for (r, dst) in rows.chunks_mut(cols).enumerate() {
            let row = chunk * rows_per_chunk + r;
            let (c, k_idx) = (row / taps.len(), &taps[row % taps.len()]);
            fill_row(dst, &x[c * plane..(c + 1) * plane], w, &in_strides, k_idx);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nn::window::{AutoPad, WindowAttrs};

    /// The span-copying im2col agrees with the per-element definition, strides, dilations and
    /// asymmetric pads included.
    #[test]
    fn im2col_matches_per_element_taps() {
        let attrs = WindowAttrs {
            kernel_shape: Some(vec![3, 2]),
            strides: Some(vec![2, 3]),
            dilations: Some(vec![1, 2]),
            pads: Some(vec![2, 1, 0, 3]),
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        };
        let w = attrs.resolve(&[7, 9], None).unwrap();
        let x: Vec<f32> = (0..2 * 63).map(|i| i as f32 + 1.0).collect();
        let mut col = vec![f32::NAN; 2 * w.kernel_len() * w.output_len()];
        im2col(&x, 2, &w, &mut col);
        let in_strides = strides(&w.input);
        let taps = w.kernel_positions();
        for (row, dst) in col.chunks(w.output_len()).enumerate() {
            let (c, k_idx) = (row / taps.len(), &taps[row % taps.len()]);
            let mut o_idx = vec![0; 2];
            for &v in dst {
                let want = tap_offset(&w, &in_strides, &o_idx, k_idx).map_or(0.0, |o| x[c * 63 + o]);
                assert_eq!(v, want, "row {row} at {o_idx:?}");
                advance(&mut o_idx, &w.output);
            }
        }
    }
}
