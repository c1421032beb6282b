//! Elementwise ops with broadcasting vs f32 CPU math.

use fifo_diffusion::gpu::ops::elementwise::{binary, ternary, unary, Binary, Ternary, Unary};
use fifo_diffusion::gpu::{GpuContext, GpuTensor, ProgramBuilder};

use crate::{assert_close, at_broadcast, ctx, run, tiled_ctx, unravel, Rng, F32, F32_TRANSCENDENTAL};

fn cpu_unary(op: Unary, a: f32) -> f32 {
    match op {
        Unary::Identity => a,
        Unary::Neg => -a,
        Unary::Abs => a.abs(),
        Unary::Sqrt => a.sqrt(),
        Unary::Reciprocal => 1.0 / a,
        Unary::Exp => a.exp(),
        Unary::Log => a.ln(),
        Unary::Sin => a.sin(),
        Unary::Cos => a.cos(),
        Unary::Tanh => a.tanh(),
        Unary::Erf => libm::erff(a),
        Unary::Sigmoid => 1.0 / (1.0 + (-a).exp()),
        Unary::Relu => a.max(0.0),
        Unary::LeakyRelu(s) => {
            if a >= 0.0 {
                a
            } else {
                s * a
            }
        }
        Unary::Gelu => 0.5 * a * (1.0 + libm::erff(a / std::f32::consts::SQRT_2)),
        Unary::GeluTanh => 0.5 * a * (1.0 + (0.797_884_6 * (a + 0.044715 * a * a * a)).tanh()),
        Unary::Softplus => (1.0 + (a as f64).exp()).ln() as f32,
        Unary::Silu => a / (1.0 + (-a).exp()),
        Unary::Clip(lo, hi) => a.max(lo).min(hi),
        Unary::Not => (a == 0.0) as u8 as f32,
        Unary::FloatClass { nan, positive_infinity, negative_infinity } => {
            ((nan && a.is_nan())
                || (positive_infinity && a == f32::INFINITY)
                || (negative_infinity && a == f32::NEG_INFINITY)) as u8 as f32
        }
        Unary::Floor => a.floor(),
        Unary::Ceil => a.ceil(),
    }
}

fn cpu_binary(op: Binary, a: f32, b: f32) -> f32 {
    let t = |c: bool| c as u8 as f32;
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::Pow => a.powf(b),
        Binary::Fmod => a % b,
        Binary::Mod => a - b * (a / b).floor(),
        Binary::Min => a.min(b),
        Binary::Max => a.max(b),
        Binary::Equal => t(a == b),
        Binary::Less => t(a < b),
        Binary::LessOrEqual => t(a <= b),
        Binary::Greater => t(a > b),
        Binary::GreaterOrEqual => t(a >= b),
        Binary::And => t(a != 0.0 && b != 0.0),
        Binary::Or => t(a != 0.0 || b != 0.0),
        Binary::Xor => t((a != 0.0) != (b != 0.0)),
    }
}

#[test]
fn unary_ops_match_cpu() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(1);
    let shape = [3, 5, 7];
    let n = 105;
    let signed = rng.vec(n, -4.0, 4.0);
    let positive = rng.vec(n, 0.05, 5.0);
    let ops = [
        Unary::Identity,
        Unary::Neg,
        Unary::Abs,
        Unary::Sqrt,
        Unary::Reciprocal,
        Unary::Exp,
        Unary::Log,
        Unary::Sin,
        Unary::Cos,
        Unary::Tanh,
        Unary::Erf,
        Unary::Sigmoid,
        Unary::Relu,
        Unary::LeakyRelu(0.1),
        Unary::Gelu,
        Unary::GeluTanh,
        Unary::Softplus,
        Unary::Silu,
        Unary::Clip(-1.5, 2.0),
        Unary::Not,
        Unary::Floor,
        Unary::Ceil,
    ];
    let mut b = ProgramBuilder::new(ctx);
    let mut outs = Vec::new();
    let xs = GpuTensor::from_f32(ctx, "signed", &signed).unwrap();
    let xp = GpuTensor::from_f32(ctx, "positive", &positive).unwrap();
    for op in ops {
        let pos = matches!(op, Unary::Sqrt | Unary::Log | Unary::Reciprocal);
        let x = if pos { &xp } else { &xs };
        let out = GpuTensor::new(ctx, "out", fifo_diffusion::gpu::DType::F32, n).unwrap();
        unary(&mut b, op, &x.view(&shape), &out.view(&shape)).unwrap();
        outs.push((op, pos, out));
    }
    let program = run(b.build()).unwrap();
    run(program.run(ctx)).unwrap();
    for (op, pos, out) in outs {
        let input = if pos { &positive } else { &signed };
        let want: Vec<f32> = input.iter().map(|&a| cpu_unary(op, a)).collect();
        let got = run(ctx.read_f32(&out)).unwrap();
        assert_close(&format!("{op:?}"), &got, &want, F32_TRANSCENDENTAL);
    }
}

/// Sinusoidal timestep embeddings take sin/cos of arguments up to ~1e3; our WGSL versions keep
/// them to f32 accuracy there (WGSL's builtins promise only 2^-11 absolute error).
#[test]
fn sin_and_cos_stay_accurate_over_timestep_embedding_arguments() {
    let Some(ctx) = ctx() else { return };
    let x: Vec<f32> =
        Rng::new(9).vec(4096, -1000.0, 1000.0).into_iter().chain([0.0, 1e-30, -3.0e4]).collect();
    let n = x.len();
    let mut b = ProgramBuilder::new(ctx);
    let input = GpuTensor::from_f32(ctx, "x", &x).unwrap();
    let mut outs = Vec::new();
    for op in [Unary::Sin, Unary::Cos] {
        let out = GpuTensor::new(ctx, "out", fifo_diffusion::gpu::DType::F32, n).unwrap();
        unary(&mut b, op, &input.view(&[n]), &out.view(&[n])).unwrap();
        outs.push((op, out));
    }
    let program = run(b.build()).unwrap();
    run(program.run(ctx)).unwrap();
    for (op, out) in outs {
        let got = run(ctx.read_f32(&out)).unwrap();
        // Against f64 math on the f32 argument: the reduction's error grows with |x| (~|x| * 2^-40).
        let worst = x
            .iter()
            .zip(&got)
            .map(|(&a, &g)| {
                let want = if op == Unary::Sin { f64::from(a).sin() } else { f64::from(a).cos() };
                (f64::from(g) - want).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "{op:?}: largest error {worst:.2e} over |x| <= 3e4");
    }
}

#[test]
fn binary_ops_broadcast_like_numpy() {
    let Some(ctx) = ctx() else { return };
    // Both styles: runs of 4 elements per invocation (CPU adapters) and one (GPUs).
    binary_ops_broadcast_like_numpy_on(ctx);
    binary_ops_broadcast_like_numpy_on(tiled_ctx().expect("a second device on the test adapter"));
}

fn binary_ops_broadcast_like_numpy_on(ctx: &GpuContext) {
    let mut rng = Rng::new(2);
    // (a shape, b shape, out shape): odd sizes, leading-dim and middle broadcasting, scalars.
    let cases: [(&[usize], &[usize], &[usize]); 4] = [
        (&[2, 3, 5], &[2, 3, 5], &[2, 3, 5]),
        (&[2, 1, 5], &[3, 1], &[2, 3, 5]),
        (&[7], &[4, 1, 7], &[4, 1, 7]),
        (&[3, 1, 1, 9], &[], &[3, 1, 1, 9]),
    ];
    let ops = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Pow,
        Binary::Fmod,
        Binary::Mod,
        Binary::Min,
        Binary::Max,
        Binary::Equal,
        Binary::Less,
        Binary::LessOrEqual,
        Binary::Greater,
        Binary::GreaterOrEqual,
        Binary::And,
        Binary::Or,
        Binary::Xor,
    ];
    for (case, (sa, sb, so)) in cases.iter().enumerate() {
        let na: usize = sa.iter().product();
        let nb: usize = sb.iter().product();
        let no: usize = so.iter().product();
        // Integral values in part so that Equal and Pow with negative bases are exercised.
        let a: Vec<f32> = rng
            .vec(na, -3.0, 3.0)
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % 3 == 0 { v.round() } else { v })
            .collect();
        let bv: Vec<f32> = rng
            .vec(nb, -3.0, 3.0)
            .iter()
            .enumerate()
            .map(|(i, &v)| if i % 2 == 0 { v.round() } else { v })
            .collect();
        let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
        let gb = GpuTensor::from_f32(ctx, "b", &bv).unwrap();
        let mut prog = ProgramBuilder::new(ctx);
        let mut outs = Vec::new();
        for op in ops {
            let out = GpuTensor::new(ctx, "out", fifo_diffusion::gpu::DType::F32, no).unwrap();
            binary(&mut prog, op, &ga.view(sa), &gb.view(sb), &out.view(so)).unwrap();
            outs.push((op, out));
        }
        run(run(prog.build()).unwrap().run(ctx)).unwrap();
        for (op, out) in outs {
            let want: Vec<f32> = (0..no)
                .map(|i| {
                    let idx = unravel(i, so);
                    cpu_binary(op, at_broadcast(&a, sa, &idx), at_broadcast(&bv, sb, &idx))
                })
                .collect();
            let got = run(ctx.read_f32(&out)).unwrap();
            assert_close(&format!("case {case} {op:?}"), &got, &want, F32_TRANSCENDENTAL);
        }
    }
}

#[test]
fn pow_keeps_the_sign_of_negative_bases() {
    let Some(ctx) = ctx() else { return };
    let a = [-2.0f32, -2.0, -3.0, 0.0, 0.0, -8.0];
    let e = [3.0f32, 2.0, -1.0, 0.0, 2.0, 0.5];
    let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
    let ge = GpuTensor::from_f32(ctx, "e", &e).unwrap();
    let out = GpuTensor::new(ctx, "out", fifo_diffusion::gpu::DType::F32, 6).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    binary(&mut b, Binary::Pow, &ga.view(&[6]), &ge.view(&[6]), &out.view(&[6])).unwrap();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    let got = run(ctx.read_f32(&out)).unwrap();
    assert_close("pow", &got[..5], &[-8.0, 4.0, -1.0 / 3.0, 1.0, 0.0], F32);
    assert!(got[5].is_nan(), "negative base, fractional exponent is NaN as in numpy");
}

#[test]
fn where_selects_with_broadcast_condition() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(3);
    let cond: Vec<f32> = (0..5).map(|i| (i % 2) as f32).collect();
    let x = rng.vec(15, -1.0, 1.0);
    let y = [42.0f32];
    let (gc, gx, gy) = (
        GpuTensor::from_f32(ctx, "c", &cond).unwrap(),
        GpuTensor::from_f32(ctx, "x", &x).unwrap(),
        GpuTensor::from_f32(ctx, "y", &y).unwrap(),
    );
    let out = GpuTensor::new(ctx, "out", fifo_diffusion::gpu::DType::F32, 15).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    ternary(&mut b, Ternary::Where, &gc.view(&[1, 5]), &gx.view(&[3, 5]), &gy.view(&[1]), &out.view(&[3, 5]))
        .unwrap();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    let want: Vec<f32> = (0..15).map(|i| if cond[i % 5] != 0.0 { x[i] } else { 42.0 }).collect();
    assert_close("where", &run(ctx.read_f32(&out)).unwrap(), &want, F32);
}

/// Rank 10 works when contiguous dims merge to at most 8 (here: to one or two).
#[test]
fn high_rank_contiguous_tensors_collapse() {
    let Some(ctx) = ctx() else { return };
    let shape = [2, 1, 3, 1, 2, 2, 1, 2, 1, 3];
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(4);
    let a = rng.vec(n, -1.0, 1.0);
    let bias = rng.vec(3, -1.0, 1.0);
    let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
    let gb = GpuTensor::from_f32(ctx, "bias", &bias).unwrap();
    let out = GpuTensor::new(ctx, "out", fifo_diffusion::gpu::DType::F32, n).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    binary(&mut b, Binary::Add, &ga.view(&shape), &gb.view(&[3]), &out.view(&shape)).unwrap();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    let want: Vec<f32> = (0..n).map(|i| a[i] + bias[i % 3]).collect();
    assert_close("rank 10 add", &run(ctx.read_f32(&out)).unwrap(), &want, F32);
}

/// f16 storage (f32 arithmetic inside) where the adapter has shader-f16.
#[test]
fn f16_elementwise() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(5);
    let h = |v: Vec<f32>| -> Vec<f32> { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() };
    let a = h(rng.vec(15, -2.0, 2.0));
    let bias = h(rng.vec(5, -2.0, 2.0));
    let dt = fifo_diffusion::gpu::DType::F16;
    let ga = GpuTensor::from_f32_as(ctx, "a", dt, &a).unwrap();
    let gb = GpuTensor::from_f32_as(ctx, "bias", dt, &bias).unwrap();
    let sum = GpuTensor::new(ctx, "sum", dt, 15).unwrap();
    let act = GpuTensor::new(ctx, "act", dt, 15).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    let added = binary(&mut b, Binary::Add, &ga.view(&[3, 5]), &gb.view(&[5]), &sum.view(&[3, 5]));
    if !ctx.has_shader_f16() {
        assert!(added.is_err());
        return;
    }
    added.unwrap();
    unary(&mut b, Unary::Silu, &sum.view(&[15]), &act.view(&[15])).unwrap();
    let program = run(b.build()).unwrap();
    assert_eq!(program.keys(), vec!["elementwise.f16.add.wg64.run16", "elementwise.f16.silu.wg64.run16"]);
    run(program.run(ctx)).unwrap();
    let want: Vec<f32> = (0..15).map(|i| a[i] + bias[i % 5]).collect();
    assert_close("f16 add", &run(ctx.read_f32(&sum)).unwrap(), &want, crate::F16);
    let want: Vec<f32> = want.iter().map(|&x| x / (1.0 + (-x).exp())).collect();
    assert_close("f16 silu", &run(ctx.read_f32(&act)).unwrap(), &want, crate::F16);
}

/// Operands contiguous over one flat index (or one broadcast value), 4-aligned, take the
/// whole-vector kernel in both styles; an offset off the 4-element grid falls back to the strided one.
#[test]
fn flat_contiguous_operands_take_whole_vectors() {
    let Some(ctx) = ctx() else { return };
    flat_contiguous_operands_on(ctx);
    flat_contiguous_operands_on(tiled_ctx().expect("a second device on the test adapter"));
}

fn flat_contiguous_operands_on(ctx: &GpuContext) {
    use fifo_diffusion::gpu::{DType, View};
    let mut rng = Rng::new(6);
    // Two workgroups of 64 invocations x 4 vectors, and a partial run of 3 vectors.
    let n = 4 * (2 * 64 * 4 + 3);
    let shape = [n / 20, 4, 5];
    let (a, bv, cond) = (rng.vec(n + 6, -3.0, 3.0), rng.vec(n, -3.0, 3.0), rng.vec(n, -1.0, 1.0));
    let scalar = [0.75f32];
    let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
    let gb = GpuTensor::from_f32(ctx, "b", &bv).unwrap();
    let gc =
        GpuTensor::from_f32(ctx, "cond", &cond.iter().map(|&c| (c > 0.0) as u8 as f32).collect::<Vec<_>>())
            .unwrap();
    let gs = GpuTensor::from_f32(ctx, "scalar", &scalar).unwrap();
    let at = |offset: usize| View { offset, ..ga.view(&shape) };
    let mut prog = ProgramBuilder::new(ctx);
    let mut outs = Vec::new();
    let mut out = |name: &str| {
        let t = GpuTensor::new(ctx, name, DType::F32, n).unwrap();
        outs.push(t.clone());
        t.view(&shape)
    };
    unary(&mut prog, Unary::Sigmoid, &at(4), &out("sigmoid")).unwrap();
    binary(&mut prog, Binary::Sub, &at(0), &gb.view(&shape), &out("sub")).unwrap();
    binary(&mut prog, Binary::Mul, &gs.view(&[1]), &at(4), &out("scaled")).unwrap();
    ternary(&mut prog, Ternary::Where, &gc.view(&shape), &gs.view(&[]), &gb.view(&shape), &out("where"))
        .unwrap();
    binary(&mut prog, Binary::Add, &at(2), &gb.view(&shape), &out("unaligned")).unwrap();
    let program = run(prog.build()).unwrap();
    let flat: Vec<bool> = program.keys().iter().map(|k| k.contains(".flat4")).collect();
    assert_eq!(flat, [true, true, true, true, false], "{:?}", program.keys());
    run(program.run(ctx)).unwrap();
    let wants: [Vec<f32>; 5] = [
        (0..n).map(|i| cpu_unary(Unary::Sigmoid, a[i + 4])).collect(),
        (0..n).map(|i| a[i] - bv[i]).collect(),
        (0..n).map(|i| 0.75 * a[i + 4]).collect(),
        (0..n).map(|i| if cond[i] > 0.0 { 0.75 } else { bv[i] }).collect(),
        (0..n).map(|i| a[i + 2] + bv[i]).collect(),
    ];
    for (t, want) in outs.iter().zip(&wants) {
        assert_close(t.name(), &run(ctx.read_f32(t)).unwrap(), want, F32_TRANSCENDENTAL);
    }
    // f16 storage in whole vectors, where the adapter has shader-f16.
    if ctx.has_shader_f16() {
        let h: Vec<f32> = a[..n].iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
        let gh = GpuTensor::from_f32_as(ctx, "h", DType::F16, &h).unwrap();
        let out = GpuTensor::new(ctx, "silu16", DType::F16, n).unwrap();
        let mut prog = ProgramBuilder::new(ctx);
        unary(&mut prog, Unary::Silu, &gh.view(&shape), &out.view(&shape)).unwrap();
        let program = run(prog.build()).unwrap();
        assert!(program.keys()[0].contains("f16.silu.flat4"), "{:?}", program.keys());
        run(program.run(ctx)).unwrap();
        let want: Vec<f32> = h.iter().map(|&x| x / (1.0 + (-x).exp())).collect();
        assert_close("f16 silu", &run(ctx.read_f32(&out)).unwrap(), &want, crate::F16);
    }
}
