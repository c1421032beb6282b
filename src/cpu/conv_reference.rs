//! The 2-D convolution by its definition, in f64, one output element at a time: the oracle of
//! the CPU conv kernels' unit tests (Winograd, narrow).

use crate::ops::nn::window::Window;

/// `y[n, grp*mg + m, oy, ox] = b[..] + sum_{c, ky, kx} w[grp*mg + m, c, ky, kx] * x[n, grp*cg + c,
/// iy, ix]` over the taps inside the input, for `x` `[batch, groups * cg, h, w]` and `k`
/// `[groups * mg, cg, kh, kw]`; row-major output.
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
    let ([h, wd], [oh, ow]) = ([w.input[0], w.input[1]], [w.output[0], w.output[1]]);
    let (kh, kw) = (w.kernel[0], w.kernel[1]);
    let mut out = Vec::new();
    for n in 0..batch {
        for oc in 0..groups * mg {
            let grp = oc / mg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b[oc] as f64;
                    for c in 0..cg {
                        for (ky, kx) in (0..kh).flat_map(|ky| (0..kw).map(move |kx| (ky, kx))) {
                            let (iy, ix) = (w.input_coord(0, oy, ky), w.input_coord(1, ox, kx));
                            if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < wd {
                                let xv = x
                                    [((n * groups * cg + grp * cg + c) * h + iy as usize) * wd + ix as usize];
                                acc += k[((oc * cg + c) * kh + ky) * kw + kx] as f64 * xv as f64;
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    out
}
