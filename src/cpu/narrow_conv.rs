//! 2-D convolutions with few output channels per group (a diffusion UNet's last conv, down to
//! 4 latent channels): im2col there writes `channels x taps` values per output position for
//! only `mg` products each, and the GEMM's tiles are mostly empty. Here a block of output
//! positions keeps every channel's sums in registers while one loop walks (channel, tap) over a
//! zero-padded copy of the image: each tap is the same image read at a fixed offset, so the
//! positions are computed on the padded width ("wide" rows) and the extra columns dropped.

use super::panel_conv::DisjointOutput;
use super::{parallel, simd};
use crate::ops::nn::window::Window;

/// Output channels per group up to which this kernel runs (beyond, the GEMM's tiles fill).
pub const MAX_CHANNELS: usize = 8;

/// Output positions per register block.
const LANES: usize = 16;

/// The largest zero-padded copy of the input this kernel makes (floats; 32 MiB): a VAE decoder's
/// last conv at full resolution falls back to im2col, whose panels stay small.
const MAX_PADDED_FLOATS: usize = 8 << 20;

/// Whether the kernel takes this conv: 2-D, unit strides (any padding and dilation), few
/// output channels per group, `batch` images of `channels` whose padded copy stays within
/// `MAX_PADDED_FLOATS`.
pub fn applies(w: &Window, batch: usize, channels: usize, mg: usize) -> bool {
    let padded = |d: usize| w.input[d] + w.pad_begin[d] + w.pad_end[d];
    w.kernel.len() == 2
        && w.strides == [1, 1]
        && (1..=MAX_CHANNELS).contains(&mg)
        && w.output_len() > 0
        && batch.saturating_mul(channels).saturating_mul(padded(0)).saturating_mul(padded(1))
            <= MAX_PADDED_FLOATS
}

/// `y[n, grp*mg + m, o] = sum_{c, tap} w[grp*mg + m, c, tap] * x[n, grp*cg + c, o + tap]` (+ bias),
/// for `x` `[batch, groups * cg, h, w]` and `w` `[groups * mg, cg, kh, kw]`; `applies` holds.
#[allow(clippy::too_many_arguments)]
pub fn conv(
    w: &Window,
    batch: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    x: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    match mg {
        1 => conv_with::<1>(w, batch, groups, cg, x, weights, bias, out),
        2 => conv_with::<2>(w, batch, groups, cg, x, weights, bias, out),
        3 => conv_with::<3>(w, batch, groups, cg, x, weights, bias, out),
        4 => conv_with::<4>(w, batch, groups, cg, x, weights, bias, out),
        5 => conv_with::<5>(w, batch, groups, cg, x, weights, bias, out),
        6 => conv_with::<6>(w, batch, groups, cg, x, weights, bias, out),
        7 => conv_with::<7>(w, batch, groups, cg, x, weights, bias, out),
        8 => conv_with::<8>(w, batch, groups, cg, x, weights, bias, out),
        _ => unreachable!("narrow_conv::applies admits 1..={MAX_CHANNELS} channels"),
    }
}

#[allow(clippy::too_many_arguments)]
fn conv_with<const MG: usize>(
    w: &Window,
    batch: usize,
    groups: usize,
    cg: usize,
    x: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (h, wi) = (w.input[0], w.input[1]);
    let (oh, ow) = (w.output[0], w.output[1]);
    let (hp, wp) = (h + w.pad_begin[0] + w.pad_end[0], wi + w.pad_begin[1] + w.pad_end[1]);
    let taps = w.kernel_len();
    let oc = groups * MG;
    assert_eq!(out.len(), batch * oc * oh * ow, "conv output size");
    // Offset of each (channel, tap) in the padded image, and its weights for the MG channels.
    let mut offsets = Vec::with_capacity(cg * taps);
    for c in 0..cg {
        for ky in 0..w.kernel[0] {
            for kx in 0..w.kernel[1] {
                offsets.push(c * hp * wp + ky * w.dilations[0] * wp + kx * w.dilations[1]);
            }
        }
    }
    // Wide positions: every output row on the padded width, the last row only as far as needed.
    let wide = (oh - 1) * wp + ow;
    let blocks = wide.div_ceil(LANES);
    // Blocks per task: whole images where there are many, else an image split over the threads.
    let blocks_per_task = parallel::chunk_len(blocks, cg * taps * MG * LANES);
    let tasks_per_image = blocks.div_ceil(blocks_per_task);
    // Every image zero-padded once (tasks that split an image share it), with LANES floats of
    // slack after the last for the last block's reads; each group's weights as [tap][channel].
    let image_len = cg * hp * wp;
    let mut padded = vec![0.0f32; batch * groups * image_len + LANES];
    parallel::for_each_chunk_mut(&mut padded[..batch * groups * image_len], image_len.max(1), |image, to| {
        let from = &x[image * cg * h * wi..][..cg * h * wi];
        for (c, plane) in from.chunks_exact((wi * h).max(1)).enumerate() {
            for (y, row) in plane.chunks_exact(wi.max(1)).enumerate() {
                let at = c * hp * wp + (y + w.pad_begin[0]) * wp + w.pad_begin[1];
                to[at..at + wi].copy_from_slice(row);
            }
        }
    });
    let w_t: Vec<[f32; MG]> = (0..groups * cg * taps)
        .map(|gj| {
            let (grp, j) = (gj / (cg * taps), gj % (cg * taps));
            std::array::from_fn(|m| weights[(grp * MG + m) * cg * taps + j])
        })
        .collect();
    let out = DisjointOutput(out.as_mut_ptr(), out.len());
    parallel::for_each_index(batch * groups * tasks_per_image, |task| {
        let (image, part) = (task / tasks_per_image, task % tasks_per_image);
        let (n, grp) = (image / groups, image % groups);
        let padded = &padded[image * image_len..];
        let w_t = &w_t[grp * cg * taps..][..cg * taps];
        let first = part * blocks_per_task;
        for block in first..(first + blocks_per_task).min(blocks) {
            let i0 = block * LANES;
            let acc = accumulate_fastest::<MG>(padded, &offsets, w_t, i0);
            for (l, i) in (i0..(i0 + LANES).min(wide)).enumerate() {
                let (y, xo) = (i / wp, i % wp);
                if xo >= ow {
                    continue;
                }
                for (m, sums) in acc.iter().enumerate() {
                    let channel = grp * MG + m;
                    let at = ((n * oc + channel) * oh + y) * ow + xo;
                    // SAFETY: tasks own disjoint (image, block) ranges, so each output element
                    // is written by one task; `slice` checks the bounds.
                    let dst = unsafe { out.slice(at, 1) };
                    dst[0] = sums[l] + bias.map_or(0.0, |b| b[channel]);
                }
            }
        }
    });
}

/// [`accumulate`] through the widest copy the CPU runs. The AVX-512 copy is written with
/// intrinsics: compiled for AVX-512, LLVM turns the portable loop (for MG 4, 6, 7 and 8) into
/// gathers and scatters of the sums, which ran the CPU bench model's 128 -> 4 conv 20x slower.
#[inline(always)]
fn accumulate_fastest<const MG: usize>(
    padded: &[f32],
    offsets: &[usize],
    w_t: &[[f32; MG]],
    i0: usize,
) -> [[f32; LANES]; MG] {
    #[cfg(target_arch = "x86_64")]
    if simd::avx512() {
        // SAFETY: `simd::avx512` checked that the CPU has AVX-512 F.
        return unsafe { accumulate_avx512::<MG>(padded, offsets, w_t, i0) };
    }
    // At most AVX2: no AVX-512 copy of the portable loop is ever built.
    simd::vectorised_256(
        #[inline(always)]
        || accumulate::<MG>(padded, offsets, w_t, i0),
    )
}

/// [`accumulate`] with one 16-float register per channel; the same products and sums in the
/// same order (a multiply then an add, no FMA), so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn accumulate_avx512<const MG: usize>(
    padded: &[f32],
    offsets: &[usize],
    w_t: &[[f32; MG]],
    i0: usize,
) -> [[f32; LANES]; MG] {
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };
    const { assert!(LANES == 16, "one AVX-512 register per channel") };
    let mut acc: [__m512; MG] = [_mm512_setzero_ps(); MG];
    for (&off, wj) in offsets.iter().zip(w_t) {
        let xs: &[f32; LANES] = padded[off + i0..off + i0 + LANES].try_into().expect("a whole block");
        // SAFETY: `xs` holds the 16 floats read.
        let x = unsafe { _mm512_loadu_ps(xs.as_ptr()) };
        for (sums, &wm) in acc.iter_mut().zip(wj) {
            *sums = _mm512_add_ps(*sums, _mm512_mul_ps(_mm512_set1_ps(wm), x));
        }
    }
    // SAFETY: a __m512 is 16 f32s.
    acc.map(|v| unsafe { std::mem::transmute::<__m512, [f32; LANES]>(v) })
}

/// The MG channels' sums at wide positions `i0..i0 + LANES`, over every (channel, tap) in order.
#[inline(always)]
fn accumulate<const MG: usize>(
    padded: &[f32],
    offsets: &[usize],
    w_t: &[[f32; MG]],
    i0: usize,
) -> [[f32; LANES]; MG] {
    let mut acc = [[0.0f32; LANES]; MG];
    for (&off, wj) in offsets.iter().zip(w_t) {
        let xs: &[f32; LANES] = padded[off + i0..off + i0 + LANES].try_into().expect("a whole block");
        for (sums, &wm) in acc.iter_mut().zip(wj) {
            for (s, &v) in sums.iter_mut().zip(xs) {
                *s += wm * v;
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv_reference::direct;
    use crate::ops::nn::window::{AutoPad, WindowAttrs};

    fn window(input: [usize; 2], kernel: [usize; 2], pads: [usize; 4], dilations: [usize; 2]) -> Window {
        let attrs = WindowAttrs {
            kernel_shape: Some(kernel.to_vec()),
            strides: None,
            dilations: Some(dilations.to_vec()),
            pads: Some(pads.to_vec()),
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        };
        attrs.resolve(&input, Some(&kernel)).unwrap()
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    /// Relative L2 tolerance of f32 sums over up to a few hundred terms against f64.
    const TOLERANCE: f64 = 1e-6;

    #[test]
    fn matches_the_definition() {
        // (input, kernel, pads, dilations, batch, groups, cg, mg): a UNet's conv_out, every MG,
        // asymmetric and large padding, dilation, grouped, a 1-wide image, images over blocks.
        let cases = [
            ([16, 16], [3, 3], [1, 1, 1, 1], [1, 1], 2, 1, 48, 4),
            ([5, 7], [3, 3], [1, 1, 1, 1], [1, 1], 1, 1, 3, 1),
            ([9, 4], [2, 3], [0, 2, 1, 0], [1, 1], 1, 1, 5, 7),
            ([8, 8], [3, 3], [2, 2, 2, 2], [2, 2], 1, 2, 3, 3),
            ([6, 1], [3, 1], [1, 0, 1, 0], [1, 1], 3, 1, 2, 8),
            ([1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 2, 3, 2, 5),
            ([20, 33], [3, 3], [1, 1, 1, 1], [1, 1], 1, 1, 17, 6),
            ([7, 9], [1, 1], [0, 0, 0, 0], [1, 1], 2, 1, 9, 2),
        ];
        for (input, kernel, pads, dil, batch, groups, cg, mg) in cases {
            let w = window(input, kernel, pads, dil);
            assert!(applies(&w, batch, groups * cg, mg));
            let x = data(batch * groups * cg * w.input_len(), 1);
            let k = data(groups * mg * cg * w.kernel_len(), 2);
            let b = data(groups * mg, 3);
            let mut got = vec![f32::NAN; batch * groups * mg * w.output_len()];
            conv(&w, batch, groups, cg, mg, &x, &k, Some(&b), &mut got);
            let want = direct(&w, batch, groups, cg, mg, &x, &k, &b);
            let err: f64 = got.iter().zip(&want).map(|(&a, &b)| (a as f64 - b).powi(2)).sum::<f64>().sqrt();
            let norm: f64 = want.iter().map(|v| v.powi(2)).sum::<f64>().sqrt().max(1e-12);
            assert!(
                err / norm < TOLERANCE,
                "{input:?} {kernel:?} {pads:?} mg {mg}: relative L2 {}",
                err / norm
            );
        }
    }

    /// The AVX-512 copy against the portable loop, bit for bit, for every MG (run where the CPU
    /// has AVX-512, whether or not `FIFO_AVX512` selects it).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_copy_computes_the_same_bits() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        fn same<const MG: usize>() {
            let taps = 37;
            let padded = data(taps * 3 + 2 * LANES + 5, 7);
            let offsets: Vec<usize> = (0..taps).map(|j| j * 3 + j % 5).collect();
            let w_t: Vec<[f32; MG]> =
                (0..taps).map(|j| std::array::from_fn(|m| data(MG * taps, 9)[j * MG + m])).collect();
            for i0 in [0, 1, LANES] {
                let want = accumulate::<MG>(&padded, &offsets, &w_t, i0);
                // SAFETY: checked by the caller.
                let got = unsafe { accumulate_avx512::<MG>(&padded, &offsets, &w_t, i0) };
                assert_eq!(
                    got.map(|r| r.map(f32::to_bits)),
                    want.map(|r| r.map(f32::to_bits)),
                    "MG {MG} at {i0}"
                );
            }
        }
        same::<1>();
        same::<2>();
        same::<3>();
        same::<4>();
        same::<5>();
        same::<6>();
        same::<7>();
        same::<8>();
    }

    #[test]
    fn takes_only_unit_stride_2d_convs_with_few_channels_and_a_bounded_copy() {
        let w = window([8, 8], [3, 3], [1, 1, 1, 1], [1, 1]);
        assert!(applies(&w, 2, 16, 4));
        assert!(!applies(&w, 2, 16, MAX_CHANNELS + 1));
        assert!(!applies(&w, 2, 16, 0));
        let mut strided = w.clone();
        strided.strides = vec![2, 1];
        assert!(!applies(&strided, 2, 16, 4));
        // A decoder's last conv at 512x512 from 128 channels: 33.8 M padded floats.
        assert!(!applies(&window([512, 512], [3, 3], [1, 1, 1, 1], [1, 1]), 1, 128, 3));
    }
}
