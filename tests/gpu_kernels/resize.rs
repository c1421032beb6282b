//! Resize nearest/linear vs the ONNX formulas written out on the CPU.

use fifo_diffusion::gpu::ops::resize::{resize, CoordinateMode, NearestMode, ResizeMode};
use fifo_diffusion::gpu::{DType, GpuTensor, ProgramBuilder};

use crate::{assert_close, ctx, run, strides, unravel, Rng, F32};

fn source(o: usize, n_in: usize, n_out: usize, s: f32, mode: CoordinateMode) -> f32 {
    let (o, ni, no) = (o as f32, n_in as f32, n_out as f32);
    match mode {
        CoordinateMode::HalfPixel => (o + 0.5) / s - 0.5,
        CoordinateMode::Asymmetric => o / s,
        CoordinateMode::AlignCorners => {
            if no <= 1.0 {
                0.0
            } else {
                o * (ni - 1.0) / (no - 1.0)
            }
        }
        CoordinateMode::PytorchHalfPixel => {
            if no <= 1.0 {
                0.0
            } else {
                (o + 0.5) / s - 0.5
            }
        }
        CoordinateMode::TfHalfPixelForNn => (o + 0.5) / s,
        CoordinateMode::HalfPixelSymmetric => {
            let adj = no / (s * ni);
            ni / 2.0 * (1.0 - adj) + (o + 0.5) / s - 0.5
        }
    }
}

fn cpu_resize(x: &[f32], si: &[usize], so: &[usize], mode: ResizeMode, coord: CoordinateMode) -> Vec<f32> {
    let st = strides(si);
    (0..so.iter().product())
        .map(|i| {
            let o = unravel(i, so);
            // Per dim: list of (index, weight) taps.
            let taps: Vec<Vec<(usize, f32)>> = (0..si.len())
                .map(|d| {
                    let s = so[d] as f32 / si[d] as f32;
                    let c = source(o[d], si[d], so[d], s, coord);
                    let last = (si[d] - 1) as f32;
                    match mode {
                        ResizeMode::Linear if si[d] != so[d] => {
                            let c = c.clamp(0.0, last);
                            let f = c.floor();
                            vec![(f as usize, 1.0 - (c - f)), (((f as usize) + 1).min(si[d] - 1), c - f)]
                        }
                        ResizeMode::Linear => vec![(c.clamp(0.0, last).round() as usize, 1.0)],
                        ResizeMode::Nearest(n) => {
                            let r = match n {
                                NearestMode::RoundPreferFloor => (c - 0.5).ceil(),
                                NearestMode::RoundPreferCeil => (c + 0.5).floor(),
                                NearestMode::Floor => c.floor(),
                                NearestMode::Ceil => c.ceil(),
                            };
                            vec![(r.clamp(0.0, last) as usize, 1.0)]
                        }
                    }
                })
                .collect();
            let mut acc = 0.0f64;
            let count: usize = taps.iter().map(Vec::len).product();
            for t in 0..count {
                let (mut idx, mut w, mut rest) = (0, 1.0f64, t);
                for d in (0..si.len()).rev() {
                    let (j, wt) = taps[d][rest % taps[d].len()];
                    rest /= taps[d].len();
                    idx += j * st[d];
                    w *= wt as f64;
                }
                acc += w * x[idx] as f64;
            }
            acc as f32
        })
        .collect()
}

#[test]
fn nearest_and_linear_modes() {
    let Some(ctx) = ctx() else { return };
    let cases: [(&[usize], &[usize], ResizeMode, CoordinateMode); 7] = [
        (&[1, 2, 3, 4], &[1, 2, 6, 8], ResizeMode::Nearest(NearestMode::Floor), CoordinateMode::Asymmetric),
        (
            &[1, 1, 5, 7],
            &[1, 1, 8, 3],
            ResizeMode::Nearest(NearestMode::RoundPreferFloor),
            CoordinateMode::HalfPixel,
        ),
        (
            &[1, 1, 5, 7],
            &[1, 1, 8, 3],
            ResizeMode::Nearest(NearestMode::RoundPreferCeil),
            CoordinateMode::TfHalfPixelForNn,
        ),
        (&[1, 2, 5, 4], &[1, 2, 9, 7], ResizeMode::Linear, CoordinateMode::HalfPixel),
        (&[1, 2, 5, 4], &[1, 2, 9, 7], ResizeMode::Linear, CoordinateMode::AlignCorners),
        (&[1, 1, 3, 4, 5], &[1, 1, 6, 8, 10], ResizeMode::Linear, CoordinateMode::PytorchHalfPixel),
        (&[2, 3, 4], &[2, 3, 7], ResizeMode::Linear, CoordinateMode::HalfPixelSymmetric),
    ];
    let mut rng = Rng::new(80);
    for (si, so, mode, coord) in cases {
        let x = rng.vec(si.iter().product(), -1.0, 1.0);
        let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
        let out = GpuTensor::new(ctx, "y", DType::F32, so.iter().product()).unwrap();
        let mut b = ProgramBuilder::new(ctx);
        resize(&mut b, &gx, si, so, None, mode, coord, &out).unwrap();
        run(run(b.build()).unwrap().run(ctx)).unwrap();
        let want = cpu_resize(&x, si, so, mode, coord);
        assert_close(
            &format!("{mode:?} {coord:?} {si:?}->{so:?}"),
            &run(ctx.read_f32(&out)).unwrap(),
            &want,
            F32.accumulating(8),
        );
    }
}
