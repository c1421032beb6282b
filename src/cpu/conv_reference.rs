//! The convolution by its definition (any rank), in f64, one output element at a time: the
//! oracle of the CPU conv kernels' unit tests (im2col panels, Winograd, narrow).

use crate::ops::nn::window::{multi_indices, Window};
use crate::tensor::shape::strides;

/// `y[n, grp*mg + m, o] = b[..] + sum_{c, tap} w[grp*mg + m, c, tap] * x[n, grp*cg + c, i(o,
/// tap)]` over the taps inside the input, for `x` `[batch, groups * cg, input...]` and `k`
/// `[groups * mg, cg, kernel...]`; row-major output.
#[allow(clippy::too_many_arguments)]
pub fn direct(
    w: &Window,
    batch: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    x: &[f32],
    k: &[f32],
    b: &[f32],
) -> Vec<f64> {
    let (in_len, in_strides, taps) = (w.input_len(), strides(&w.input), w.kernel_positions());
    let mut out = Vec::new();
    for n in 0..batch {
        for oc in 0..groups * mg {
            let grp = oc / mg;
            for o in multi_indices(&w.output) {
                let mut acc = b[oc] as f64;
                for c in 0..cg {
                    for (t, tap) in taps.iter().enumerate() {
                        // The tap's input offset, where every coordinate is inside the input.
                        let offset = (0..o.len()).try_fold(0, |offset, d| {
                            let i = w.input_coord(d, o[d], tap[d]);
                            (i >= 0 && (i as usize) < w.input[d]).then(|| offset + i as usize * in_strides[d])
                        });
                        if let Some(offset) = offset {
                            let xv = x[(n * groups * cg + grp * cg + c) * in_len + offset];
                            acc += k[(oc * cg + c) * taps.len() + t] as f64 * xv as f64;
                        }
                    }
                }
                out.push(acc);
            }
        }
    }
    out
}
