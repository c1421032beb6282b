//! im2col / col2im for N-D windows: convolution becomes GEMMs over panels of output columns.

use super::{parallel, simd};
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

/// A run of panel columns inside one output row (along the last dim) of one image.
struct Run {
    /// Offset of the image's first channel plane in `x`.
    image: usize,
    /// The output row's index over the leading output dims, flattened.
    row: usize,
    /// First position along the last output dim.
    first: usize,
    len: usize,
    /// Its first column in the panel.
    dst: usize,
}

/// The runs of batch columns `first..first + cols` (column `n * output_len + o` is output
/// position `o` of image `n`).
fn runs(w: &Window, image_stride: usize, first: usize, cols: usize) -> Vec<Run> {
    let inner = w.output[w.output.len() - 1].max(1);
    let out_len = w.output_len();
    let mut runs = Vec::with_capacity(cols / inner + 2);
    let mut col = first;
    while col < first + cols {
        let (n, o) = (col / out_len, col % out_len);
        let len = (inner - o % inner).min(first + cols - col);
        runs.push(Run { image: n * image_stride, row: o / inner, first: o % inner, len, dst: col - first });
        col += len;
    }
    runs
}

/// Fills `col` (rows `channels * kernel_len`, `col.len() / rows` columns) with the im2col
/// columns `first..` of a batch: column `n * output_len + o` holds output position `o` of image
/// `n`. `x` holds each image's `channels` planes, images `image_stride` floats apart. A panel of
/// a few hundred columns stays in cache for the GEMM that reads it, and may span several short
/// images (a temporal conv over 8 frames) so that the GEMM is still wide.
pub fn im2col_columns(
    x: &[f32],
    image_stride: usize,
    channels: usize,
    w: &Window,
    first: usize,
    col: &mut [f32],
) {
    let taps = w.kernel_positions();
    let rows = channels * taps.len();
    let cols = col.len().checked_div(rows).unwrap_or(0);
    debug_assert_eq!(rows * cols, col.len());
    if cols == 0 || w.output.is_empty() {
        return;
    }
    let (plane, last, step) = (w.input_len(), w.output.len() - 1, w.strides[w.output.len() - 1]);
    let in_strides = strides(&w.input);
    let lead_strides = strides(&w.output[..last]);
    let runs = runs(w, image_stride, first, cols);
    // Per run, for one tap: the source offset inside a channel plane and the panel columns
    // lo..hi it fills; the rest of the row is padding.
    let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(runs.len());
    let mut gaps: Vec<(usize, usize)> = Vec::with_capacity(runs.len() + 1);
    for (t, k_idx) in taps.iter().enumerate() {
        let (lo, hi) = valid_range(w, last, k_idx[last]);
        spans.clear();
        for r in &runs {
            let base = (0..last).try_fold(r.image, |acc, d| {
                let c = w.input_coord(d, r.row / lead_strides[d] % w.output[d], k_idx[d]);
                (c >= 0 && (c as usize) < w.input[d]).then(|| acc + c as usize * in_strides[d])
            });
            let (a, b) = (lo.clamp(r.first, r.first + r.len), hi.clamp(r.first, r.first + r.len));
            if let (Some(base), true) = (base, a < b) {
                let from = base + w.input_coord(last, a, k_idx[last]) as usize;
                spans.push((from, r.dst + a - r.first, r.dst + b - r.first));
            }
        }
        // The padding between spans, the same for every channel.
        gaps.clear();
        let mut filled = 0;
        for &(_, lo, hi) in spans.iter().chain([&(0, cols, cols)]) {
            if filled < lo {
                gaps.push((filled, lo));
            }
            filled = hi;
        }
        // Spans are short (a row of a 16x16 image, 8 frames): moves inlined, in AVX2 where the
        // CPU has it; a libc call per span and per gap cost more than the data.
        simd::vectorised_256(
            #[inline(always)]
            || {
                for c in 0..channels {
                    let dst = &mut col[(c * taps.len() + t) * cols..][..cols];
                    let src = &x[c * plane..];
                    for &(lo, hi) in &gaps {
                        zero_short(&mut dst[lo..hi]);
                    }
                    for &(from, lo, hi) in &spans {
                        if step == 1 {
                            copy_short(&mut dst[lo..hi], &src[from..from + (hi - lo)]);
                        } else {
                            for (j, v) in dst[lo..hi].iter_mut().enumerate() {
                                *v = src[from + j * step];
                            }
                        }
                    }
                }
            },
        );
    }
}

/// `dst.copy_from_slice(src)` in fixed-size moves, overlapping at the end, so that the
/// compiler inlines it instead of calling `memcpy`.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    #[inline(always)]
    fn moves<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let n = dst.len();
        let mut i = 0;
        while i + N < n {
            dst[i..i + N].copy_from_slice(&src[i..i + N]);
            i += N;
        }
        dst[n - N..].copy_from_slice(&src[n - N..n]);
    }
    match dst.len() {
        0 => {}
        1 => dst[0] = src[0],
        2..=3 => moves::<2>(dst, src),
        4..=7 => moves::<4>(dst, src),
        _ => moves::<8>(dst, src),
    }
}

/// `dst.fill(0.0)` in fixed-size stores, overlapping at the end: the gaps are mostly one
/// float of padding at a row's edge, and the `memset` call a plain fill becomes cost more than
/// the store (half the small UNet's memset time).
#[inline(always)]
fn zero_short(dst: &mut [f32]) {
    #[inline(always)]
    fn stores<const N: usize>(dst: &mut [f32]) {
        let n = dst.len();
        let mut i = 0;
        while i + N < n {
            dst[i..i + N].copy_from_slice(&[0.0; N]);
            i += N;
        }
        dst[n - N..].copy_from_slice(&[0.0; N]);
    }
    match dst.len() {
        0 => {}
        1 => dst[0] = 0.0,
        2..=3 => stores::<2>(dst),
        4..=7 => stores::<4>(dst),
        _ => stores::<8>(dst),
    }
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

    /// Panels of any width, straddling rows and images, agree with the per-element definition,
    /// strides, dilations and asymmetric pads included.
    #[test]
    fn im2col_columns_match_per_element_taps() {
        let attrs = WindowAttrs {
            kernel_shape: Some(vec![3, 2]),
            strides: Some(vec![2, 3]),
            dilations: Some(vec![1, 2]),
            pads: Some(vec![2, 1, 0, 3]),
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        };
        let w = attrs.resolve(&[7, 9], None).unwrap();
        // 3 images of 2 channels, with a gap of 5 between images.
        let (batch, channels, image_stride) = (3, 2, 2 * 63 + 5);
        let x: Vec<f32> = (0..batch * image_stride).map(|i| i as f32 + 1.0).collect();
        let (in_strides, taps) = (strides(&w.input), w.kernel_positions());
        let (rows, total) = (channels * taps.len(), batch * w.output_len());
        for width in [1, 3, 7, w.output_len(), total] {
            for first in (0..total).step_by(width) {
                let cols = width.min(total - first);
                let mut col = vec![f32::NAN; rows * cols];
                im2col_columns(&x, image_stride, channels, &w, first, &mut col);
                for (row, dst) in col.chunks(cols).enumerate() {
                    let (c, k_idx) = (row / taps.len(), &taps[row % taps.len()]);
                    for (j, &v) in dst.iter().enumerate() {
                        let (n, o) = ((first + j) / w.output_len(), (first + j) % w.output_len());
                        let o_idx = [o / w.output[1], o % w.output[1]];
                        let want = tap_offset(&w, &in_strides, &o_idx, k_idx)
                            .map_or(0.0, |off| x[n * image_stride + c * 63 + off]);
                        assert_eq!(v, want, "width {width}, column {}, row {row}", first + j);
                    }
                }
            }
        }
    }

    #[test]
    fn short_copies_cover_every_length() {
        let src: Vec<f32> = (0..40).map(|i| i as f32).collect();
        for n in 0..=40 {
            let mut dst = vec![-1.0; n];
            copy_short(&mut dst, &src[..n]);
            assert_eq!(dst, src[..n], "length {n}");
        }
    }

    #[test]
    fn short_fills_cover_every_length_and_nothing_else() {
        for n in 0..=40 {
            // The fill's neighbours stay as they were.
            let mut buffer = vec![-1.0f32; n + 2];
            zero_short(&mut buffer[1..n + 1]);
            let want: Vec<f32> = (0..n + 2).map(|i| if i == 0 || i == n + 1 { -1.0 } else { 0.0 }).collect();
            assert_eq!(buffer, want, "length {n}");
        }
    }
}
