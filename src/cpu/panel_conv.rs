//! Convolution as one GEMM per panel of output columns: the batch's output positions, image
//! after image, are cut into panels of about `PANEL_COLUMNS`; each panel's im2col block
//! (`channels x taps` rows) stays in cache while one GEMM with the whole kernel as its inner
//! dimension reads it. Panels span short images (a temporal conv over 8 frames of thousands of
//! pixels) and split long ones (one 32x32 image over two threads), and the threads take panels.

use super::gemm::{sgemm_serial, MatRef};
use super::im2col::im2col_columns;
use super::parallel;
use crate::ops::nn::window::Window;

/// Output columns per panel: measured best (64-256) for inner dimensions 36..1728 with the
/// `gemm` crate, where a single GEMM over thousands of columns ran at half the speed.
const PANEL_COLUMNS: usize = 128;
/// Columns per panel at least when panels are cut smaller for the threads.
const MIN_PANEL_COLUMNS: usize = 32;

/// `y[n, grp*mg + m, o] = sum_{c, tap} w[grp*mg + m, c, tap] * x[n, grp*cg + c, o·tap]` (+ bias),
/// for `x` `[batch, groups * cg, input...]` and `w` `[groups * mg, cg, kernel...]`.
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
    // Two panels per thread where the columns allow: a 16x16 output is 2 panels of 128, which
    // would leave all threads but two idle. The cut does not change the bits (the GEMMs' column
    // count never does).
    let threads = parallel::num_threads();
    let columns = if threads > 1 {
        PANEL_COLUMNS.min((batch * w.output_len()).div_ceil(2 * threads).max(MIN_PANEL_COLUMNS))
    } else {
        PANEL_COLUMNS
    };
    conv_in_panels(w, batch, groups, cg, mg, x, weights, bias, out, columns)
}

#[allow(clippy::too_many_arguments)]
fn conv_in_panels(
    w: &Window,
    batch: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    x: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    panel_columns: usize,
) {
    let (in_len, out_len, k) = (w.input_len(), w.output_len(), cg * w.kernel_len());
    let oc = groups * mg;
    assert_eq!(out.len(), batch * oc * out_len, "conv output size");
    let total = batch * out_len;
    if total == 0 || mg == 0 {
        return;
    }
    let per_panel = panel_columns.max(1);
    let panels = total.div_ceil(per_panel);
    // A few tasks per thread, each with its own buffers, taking consecutive panels.
    let per_task = parallel::chunk_len(panels, mg * k * per_panel);
    let out = DisjointOutput(out.as_mut_ptr(), out.len());
    // The panels `range`, with this task's im2col block and GEMM output.
    let conv_panels = |range: std::ops::Range<usize>, col: &mut [f32], y: &mut [f32]| {
        for panel in range {
            let first = panel * per_panel;
            let cols = per_panel.min(total - first);
            let (col, y) = (&mut col[..k * cols], &mut y[..mg * cols]);
            for grp in 0..groups {
                im2col_columns(&x[grp * cg * in_len..], groups * cg * in_len, cg, w, first, col);
                let a = MatRef::row_major(&weights[grp * mg * k..][..mg * k], mg, k);
                sgemm_serial(1.0, a, MatRef::row_major(col, k, cols), 0.0, y);
                // Back to [n, channel, position], image by image, with the bias.
                let mut j = 0;
                while j < cols {
                    let (n, o) = ((first + j) / out_len, (first + j) % out_len);
                    let len = (out_len - o).min(cols - j);
                    for m in 0..mg {
                        let at = (n * oc + grp * mg + m) * out_len + o;
                        // SAFETY: the panels cut the batch's columns into disjoint ranges, so
                        // no other task writes this row's columns o..o + len.
                        let dst = unsafe { out.slice(at, len) };
                        let src = &y[m * cols + j..][..len];
                        match bias {
                            Some(b) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s + b[grp * mg + m]),
                            None => dst.copy_from_slice(src),
                        }
                    }
                    j += len;
                }
            }
        }
    };
    parallel::for_each_index(panels.div_ceil(per_task), |task| {
        with_scratch((k + mg) * per_panel, |scratch| {
            let (col, y) = scratch.split_at_mut(k * per_panel);
            conv_panels(task * per_task..((task + 1) * per_task).min(panels), col, y)
        })
    });
}

thread_local! {
    /// Each thread's im2col block and GEMM output, kept from conv to conv (at most
    /// `(k + mg) * PANEL_COLUMNS` floats, under 1 MB per thread for the shipped UNet): a fresh
    /// zeroed one per conv cost a memset of the whole block and, past glibc's mmap threshold,
    /// new pages to fault in.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Calls `f` with `len` floats of this thread's scratch space (a fresh buffer if a caller up
/// the stack holds it). The contents are whatever the last conv left: `f` writes before it reads.
pub(super) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) => {
            if kept.len() < len {
                kept.resize(len, 0.0);
            }
            if cfg!(test) {
                // Tests see stale floats as NaN, so a panel element left unwritten fails them.
                kept[..len].fill(f32::NAN);
            }
            f(&mut kept[..len])
        }
        Err(_) => f(&mut vec![f32::NAN; len]),
    })
}

/// The output, written by tasks that own disjoint parts of it.
pub(super) struct DisjointOutput(pub(super) *mut f32, pub(super) usize);

// SAFETY: tasks write disjoint elements (see `DisjointOutput::slice`), and `conv_in_panels`
// holds `&mut` to the whole output while they run.
unsafe impl Sync for DisjointOutput {}

impl DisjointOutput {
    /// Elements `at..at + len`.
    ///
    /// # Safety
    /// No one else may access them while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.1, "conv output slice out of bounds");
        std::slice::from_raw_parts_mut(self.0.add(at), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv_reference::direct;

    #[test]
    fn panels_match_the_definition() {
        // (input, kernel, strides, dilations, pad_begin, pad_end, batch, groups, cg, mg)
        type Case<'a> = (
            &'a [usize],
            &'a [usize],
            &'a [usize],
            &'a [usize],
            &'a [usize],
            &'a [usize],
            usize,
            usize,
            usize,
            usize,
        );
        let cases: &[Case] = &[
            // A temporal conv: short images, panels span several.
            (&[8], &[3], &[1], &[1], &[1], &[1], 5, 1, 3, 4),
            (&[7, 9], &[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 3, 1, 4, 5),
            (&[6, 5], &[2, 3], &[1, 1], &[2, 1], &[0, 2], &[1, 0], 2, 2, 3, 2),
            (&[4, 5, 6], &[3, 1, 2], &[1, 1, 1], &[1, 1, 2], &[1, 0, 1], &[1, 0, 1], 2, 1, 2, 3),
            (&[5, 5], &[5, 5], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 2, 1, 2, 2),
            // Strided, and pointwise.
            (&[9, 8], &[3, 3], &[2, 3], &[1, 1], &[1, 0], &[1, 2], 2, 1, 3, 2),
            (&[6, 5], &[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 3, 3, 2, 2),
            // More output channels than one GEMM tile row block.
            (&[7, 9], &[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 3, 1, 4, 9),
            (&[6, 5], &[2, 3], &[1, 2], &[2, 1], &[0, 2], &[1, 0], 2, 2, 3, 16),
            (&[8], &[3], &[1], &[1], &[1], &[1], 5, 1, 3, 8),
            // Wide enough for several tasks when the tests run on more than one thread.
            (&[24, 40], &[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1, 1, 3, 4),
        ];
        for &(input, kernel, st, dil, pb, pe, batch, groups, cg, mg) in cases {
            let output: Vec<usize> = (0..input.len())
                .map(|d| (input[d] + pb[d] + pe[d] - (kernel[d] - 1) * dil[d] - 1) / st[d] + 1)
                .collect();
            let w = Window {
                input: input.to_vec(),
                kernel: kernel.to_vec(),
                strides: st.to_vec(),
                dilations: dil.to_vec(),
                pad_begin: pb.to_vec(),
                pad_end: pe.to_vec(),
                output,
            };
            let taps = w.kernel_len();
            let x: Vec<f32> =
                (0..batch * groups * cg * w.input_len()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let k: Vec<f32> =
                (0..groups * mg * cg * taps).map(|i| ((i * 5 % 11) as f32 - 5.0) / 7.0).collect();
            let b: Vec<f32> = (0..groups * mg).map(|i| i as f32 * 0.25 - 0.5).collect();
            let want = direct(&w, batch, groups, cg, mg, &x, &k, &b);
            // One column per panel, panels cutting rows and images, one panel for everything.
            for panel in [1, 5, 13, want.len()] {
                let mut got = vec![f32::NAN; want.len()];
                conv_in_panels(&w, batch, groups, cg, mg, &x, &k, Some(&b), &mut got, panel);
                let worst = got.iter().zip(&want).map(|(&g, w)| (g as f64 - w).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-4, "{input:?} {kernel:?} panel {panel}: max error {worst}");
            }
        }
    }
}
