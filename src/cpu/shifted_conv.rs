//! Unit-stride convolution without im2col: with the input zero-padded once, every kernel tap
//! reads the padded planes at a fixed offset, so the convolution is one GEMM per tap
//! (`W_tap [M, C] x X_pad[:, shift..]`) accumulated into a wide output, for many images at a
//! time. im2col instead rebuilds a `taps`-times larger matrix from short spans, which costs more
//! than the GEMM on the small planes of a video UNet.

use super::gemm::{column_blocks, MatRef};
use super::parallel;
use super::strided::{gather, View};
use crate::ops::nn::window::Window;
use crate::tensor::shape::strides;

/// Fewest output columns per thread's block.
const MIN_BLOCK_COLUMNS: usize = 128;

/// Floats of padded input (and of the output buffer) per batch of images.
const BUFFER_BUDGET: usize = 1 << 22;

/// Whether [`conv`] handles this window: unit strides and the usual output size.
pub fn applies(w: &Window) -> bool {
    !w.output.is_empty()
        && w.strides.iter().all(|&s| s == 1)
        && (0..w.input.len()).all(|d| {
            let padded = w.input[d] + w.pad_begin[d] + w.pad_end[d];
            let reach = (w.kernel[d] - 1) * w.dilations[d];
            padded > reach && w.output[d] == padded - reach
        })
}

/// `y[n, grp*mg + m, o] = sum_{c, tap} w[grp*mg + m, c, tap] * x_pad[n, grp*cg + c, o + tap]`
/// (+ bias), for `x` `[batch, groups * cg, input...]` and `w` `[groups * mg, cg, kernel...]`.
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
    conv_in_batches(w, batch, groups, cg, mg, x, weights, bias, out, BUFFER_BUDGET)
}

#[allow(clippy::too_many_arguments)]
fn conv_in_batches(
    w: &Window,
    batch: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    x: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    budget: usize,
) {
    let rank = w.input.len();
    let padded: Vec<usize> = (0..rank).map(|d| w.input[d] + w.pad_begin[d] + w.pad_end[d]).collect();
    let pstrides = strides(&padded);
    let plane: usize = padded.iter().product();
    let (in_len, out_len) = (w.input_len(), w.output_len());
    let taps = w.kernel_positions();
    let shifts: Vec<usize> =
        taps.iter().map(|t| (0..rank).map(|d| t[d] * w.dilations[d] * pstrides[d]).sum()).collect();
    // Columns of the last image that hold outputs: up to the last output position.
    let last_out: usize = (0..rank).map(|d| (w.output[d] - 1) * pstrides[d]).sum::<usize>() + 1;
    let per_image = (cg + mg) * plane;
    let nb = (budget / per_image.max(1)).clamp(1, batch.max(1));
    let oc = groups * mg;
    let mut xpad = vec![0.0f32; cg * nb * plane];
    let mut y = vec![0.0f32; mg * nb * plane];
    for n0 in (0..batch).step_by(nb) {
        let nn = nb.min(batch - n0);
        let row = nn * plane; // one channel of all nn images, padded
        let cols = (nn - 1) * plane + last_out;
        for grp in 0..groups {
            pad_into(&mut xpad[..cg * row], x, w, &padded, &pstrides, n0, nn, grp * cg, groups * cg, in_len);
            let y = &mut y[..mg * cols];
            // Each task takes a block of output columns through every tap (one pass of the
            // threads per convolution, not per tap); every block packs the weights again, so
            // blocks stay few.
            let per_block = parallel::blocks_of(cols, MIN_BLOCK_COLUMNS);
            column_blocks(y, cols, per_block, |first, mut block| {
                for (t, &shift) in shifts.iter().enumerate() {
                    let a = MatRef {
                        data: &weights[grp * mg * cg * taps.len() + t..],
                        rows: mg,
                        cols: cg,
                        row_stride: cg * taps.len(),
                        col_stride: taps.len(),
                    };
                    let b = MatRef {
                        data: &xpad[shift..cg * row],
                        rows: cg,
                        cols,
                        row_stride: row,
                        col_stride: 1,
                    };
                    block.sgemm(1.0, a, b.columns(first, block.cols()), if t == 0 { 0.0 } else { 1.0 });
                }
            });
            // Valid columns back to [nn, mg, output...].
            let view = View {
                shape: [vec![nn, mg], w.output.clone()].concat(),
                strides: [
                    vec![plane as isize, cols as isize],
                    pstrides.iter().map(|&s| s as isize).collect(),
                ]
                .concat(),
                offset: 0,
            };
            let valid = gather(y, &view);
            for (j, image) in valid.chunks(mg * out_len).enumerate() {
                let dst = &mut out[((n0 + j) * oc + grp * mg) * out_len..][..mg * out_len];
                dst.copy_from_slice(image);
                if let Some(b) = bias {
                    for (m, plane_out) in dst.chunks_mut(out_len).enumerate() {
                        let bm = b[grp * mg + m];
                        plane_out.iter_mut().for_each(|v| *v += bm);
                    }
                }
            }
        }
    }
}

/// Copies channels `c0..c0+cg` of images `n0..n0+nn` into `dst` laid out `[cg][nn][padded...]`,
/// zeros around.
#[allow(clippy::too_many_arguments)]
fn pad_into(
    dst: &mut [f32],
    x: &[f32],
    w: &Window,
    padded: &[usize],
    pstrides: &[usize],
    n0: usize,
    nn: usize,
    c0: usize,
    channels: usize,
    in_len: usize,
) {
    dst.fill(0.0);
    let rank = w.input.len();
    let plane: usize = padded.iter().product();
    let inner = w.input[rank - 1];
    let rows = in_len / inner.max(1);
    let in_strides = strides(&w.input);
    let cg = dst.len() / (nn * plane);
    for c in 0..cg {
        for j in 0..nn {
            let src = &x[((n0 + j) * channels + c0 + c) * in_len..][..in_len];
            let base = (c * nn + j) * plane;
            for r in 0..rows {
                // Row r of the input plane: its multi-index over the leading dims.
                let mut off = base + w.pad_begin[rank - 1];
                let mut rest = r * inner;
                for d in 0..rank - 1 {
                    let i = rest / in_strides[d];
                    rest %= in_strides[d];
                    off += (i + w.pad_begin[d]) * pstrides[d];
                }
                dst[off..off + inner].copy_from_slice(&src[r * inner..(r + 1) * inner]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nn::window::multi_indices;

    /// The definition, one output element at a time.
    #[allow(clippy::too_many_arguments)]
    fn direct(
        w: &Window,
        batch: usize,
        groups: usize,
        cg: usize,
        mg: usize,
        x: &[f32],
        k: &[f32],
        b: &[f32],
    ) -> Vec<f32> {
        let in_len = w.input_len();
        let in_strides = strides(&w.input);
        let taps = w.kernel_positions();
        let mut out = Vec::new();
        for n in 0..batch {
            for oc in 0..groups * mg {
                let grp = oc / mg;
                for o in multi_indices(&w.output) {
                    let mut acc = b[oc];
                    for c in 0..cg {
                        for (t, tap) in taps.iter().enumerate() {
                            let coords: Option<usize> = (0..o.len()).try_fold(0, |acc, d| {
                                let i = w.input_coord(d, o[d], tap[d]);
                                (i >= 0 && (i as usize) < w.input[d])
                                    .then(|| acc + i as usize * in_strides[d])
                            });
                            if let Some(off) = coords {
                                let xv = x[(n * groups * cg + grp * cg + c) * in_len + off];
                                acc += k[(oc * cg + c) * taps.len() + t] * xv;
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_definition_for_1d_2d_3d_dilations_pads_and_groups() {
        // (input, kernel, dilations, pad_begin, pad_end, batch, groups, cg, mg)
        type Case<'a> =
            (&'a [usize], &'a [usize], &'a [usize], &'a [usize], &'a [usize], usize, usize, usize, usize);
        let cases: &[Case] = &[
            (&[8], &[3], &[1], &[1], &[1], 5, 1, 3, 4),
            (&[7, 9], &[3, 3], &[1, 1], &[1, 1], &[1, 1], 3, 1, 4, 5),
            (&[6, 5], &[2, 3], &[2, 1], &[0, 2], &[1, 0], 2, 2, 3, 2),
            (&[4, 5, 6], &[3, 1, 2], &[1, 1, 2], &[1, 0, 1], &[1, 0, 1], 2, 1, 2, 3),
            (&[5, 5], &[5, 5], &[1, 1], &[0, 0], &[0, 0], 2, 1, 2, 2),
            // Wide enough for several column blocks when the tests run on more than one thread.
            (&[24, 40], &[3, 3], &[1, 1], &[1, 1], &[1, 1], 1, 1, 3, 4),
        ];
        for &(input, kernel, dil, pb, pe, batch, groups, cg, mg) in cases {
            let output: Vec<usize> =
                (0..input.len()).map(|d| input[d] + pb[d] + pe[d] - (kernel[d] - 1) * dil[d]).collect();
            let w = Window {
                input: input.to_vec(),
                kernel: kernel.to_vec(),
                strides: vec![1; input.len()],
                dilations: dil.to_vec(),
                pad_begin: pb.to_vec(),
                pad_end: pe.to_vec(),
                output,
            };
            assert!(applies(&w));
            let taps = w.kernel_len();
            let x: Vec<f32> =
                (0..batch * groups * cg * w.input_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let k: Vec<f32> =
                (0..groups * mg * cg * taps).map(|i| ((i * 5 % 11) as f32 - 5.0) / 7.0).collect();
            let b: Vec<f32> = (0..groups * mg).map(|i| i as f32 * 0.25 - 0.5).collect();
            let want = direct(&w, batch, groups, cg, mg, &x, &k, &b);
            // A tiny budget forces one image per batch; a large one takes them all at once.
            for budget in [1, 1 << 20] {
                let mut got = vec![0.0; want.len()];
                conv_in_batches(&w, batch, groups, cg, mg, &x, &k, Some(&b), &mut got, budget);
                let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
                assert!(worst < 1e-4, "{input:?} {kernel:?} budget {budget}: max error {worst}");
            }
        }
    }

    #[test]
    fn strided_windows_are_left_to_im2col() {
        let w = Window {
            input: vec![8, 8],
            kernel: vec![3, 3],
            strides: vec![2, 2],
            dilations: vec![1, 1],
            pad_begin: vec![1, 1],
            pad_end: vec![1, 1],
            output: vec![4, 4],
        };
        assert!(!applies(&w));
    }
}
