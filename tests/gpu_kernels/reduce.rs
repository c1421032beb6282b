//! Reductions and softmax vs f64 CPU loops.

use fifo_diffusion::gpu::ops::reduce::{reduce, softmax, ReduceOp};
use fifo_diffusion::gpu::{DType, GpuTensor, ProgramBuilder};

use crate::{assert_close, ctx, run, tiled_ctx, Rng, F32, F32_TRANSCENDENTAL};

/// Reduces contiguous `x` over the adjacent run of axes [first, last].
fn cpu_reduce(op: ReduceOp, x: &[f32], shape: &[usize], first: usize, last: usize) -> Vec<f32> {
    let outer: usize = shape[..first].iter().product();
    let axis: usize = shape[first..=last].iter().product();
    let inner: usize = shape[last + 1..].iter().product();
    (0..outer * inner)
        .map(|i| {
            let vals = (0..axis).map(|j| x[(i / inner) * axis * inner + j * inner + i % inner] as f64);
            (match op {
                ReduceOp::Sum => vals.sum::<f64>(),
                ReduceOp::Mean => vals.sum::<f64>() / axis as f64,
                ReduceOp::SumSquare => vals.map(|v| v * v).sum(),
                ReduceOp::L2 => vals.map(|v| v * v).sum::<f64>().sqrt(),
                ReduceOp::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                ReduceOp::Min => vals.fold(f64::INFINITY, f64::min),
                ReduceOp::Prod => vals.product(),
            }) as f32
        })
        .collect()
}

#[test]
fn reductions_over_axis_runs() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(50);
    let shape = [3, 5, 7, 2];
    let x = rng.vec(210, -2.0, 2.0);
    let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
    let ops = [
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::SumSquare,
        ReduceOp::L2,
        ReduceOp::Prod,
    ];
    let runs = [(0, 0), (1, 2), (3, 3), (0, 3), (1, 3)];
    let mut b = ProgramBuilder::new(ctx);
    let mut outs = Vec::new();
    for op in ops {
        for &(f, l) in &runs {
            let want = cpu_reduce(op, &x, &shape, f, l);
            let out = GpuTensor::new(ctx, "r", DType::F32, want.len()).unwrap();
            let axes: Vec<usize> = (f..=l).collect();
            reduce(&mut b, op, &gx, &shape, &axes, &out).unwrap();
            outs.push((
                format!("{op:?} axes {axes:?}"),
                out,
                want,
                (f..=l).map(|d| shape[d]).product::<usize>(),
            ));
        }
    }
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    for (what, out, want, n) in outs {
        assert_close(&what, &run(ctx.read_f32(&out)).unwrap(), &want, F32.accumulating(n));
    }
    let bad = GpuTensor::new(ctx, "bad", DType::F32, 10).unwrap();
    let err = reduce(&mut ProgramBuilder::new(ctx), ReduceOp::Sum, &gx, &shape, &[0, 2], &bad).unwrap_err();
    assert!(err.to_string().contains("adjacent"), "{err}");
}

#[test]
fn softmax_and_log_softmax_on_any_axis() {
    let Some(ctx) = ctx() else { return };
    let tiled = tiled_ctx().expect("a second device");
    // One invocation per line (CPU adapters) and a workgroup per line (GPUs), on short lines and
    // on lines longer than the workgroup, not a multiple of it.
    for (style, ctx) in [("register-blocked", ctx), ("tiled", tiled)] {
        // Contiguous lines of a multiple of 4 (the last axis of the third shape) read vec4s on CPU
        // adapters.
        for (seed, shape) in [(51, [2usize, 9, 5]), (52, [3, 133, 2]), (53, [3, 5, 12])] {
            let mut rng = Rng::new(seed);
            let len: usize = shape.iter().product();
            // Large logits: the max-shift must keep exp from overflowing.
            let x: Vec<f32> = rng
                .vec(len, -30.0, 30.0)
                .iter()
                .enumerate()
                .map(|(i, v)| if i % 7 == 0 { v + 80.0 } else { *v })
                .collect();
            let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
            for axis in 0..3 {
                for log in [false, true] {
                    let out = GpuTensor::new(ctx, "s", DType::F32, len).unwrap();
                    let mut b = ProgramBuilder::new(ctx);
                    softmax(&mut b, &gx, &shape, axis, log, &out).unwrap();
                    let program = run(b.build()).unwrap();
                    assert_eq!(
                        program.keys()[0].contains("line_per_wg"),
                        style == "tiled",
                        "{:?}",
                        program.keys()
                    );
                    let inner: usize = shape[axis + 1..].iter().product();
                    let n = shape[axis];
                    let vec4 = style != "tiled" && inner == 1 && n % 4 == 0;
                    assert_eq!(program.keys()[0].contains(".vec4"), vec4, "{:?}", program.keys());
                    run(program.run(ctx)).unwrap();
                    let want: Vec<f32> = (0..len)
                        .map(|i| {
                            let base = (i / (n * inner)) * n * inner + i % inner;
                            let line: Vec<f64> = (0..n).map(|j| x[base + j * inner] as f64).collect();
                            let m = line.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                            let s: f64 = line.iter().map(|v| (v - m).exp()).sum();
                            let v = x[i] as f64 - m;
                            (if log { v - s.ln() } else { v.exp() / s }) as f32
                        })
                        .collect();
                    // log-softmax rounds `max + log(sum)` at the logits' magnitude (~110 here).
                    let mut tol = F32_TRANSCENDENTAL.accumulating(n);
                    if log {
                        let largest = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                        tol.abs = tol.abs.max(2.0 * f32::EPSILON * largest);
                    }
                    assert_close(
                        &format!("softmax {style} {shape:?} axis {axis} log {log}"),
                        &run(ctx.read_f32(&out)).unwrap(),
                        &want,
                        tol,
                    );
                }
            }
        }
    }
}
