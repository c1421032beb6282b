//! Batched matmul / Gemm vs a CPU triple loop: both kernel styles, odd sizes, broadcasting,
//! transposed weights, alpha/beta/bias/activation, f16 and int8 weights.

use fifo_diffusion::gpu::ops::matmul::{matmul, MatMul};
use fifo_diffusion::gpu::{
    Activation, AdapterChoice, DType, GpuContext, GpuOptions, GpuTensor, KernelStyle, ProgramBuilder, View,
};

use crate::{assert_close, at_broadcast, ctx, run, unravel, Rng, F16, F32};

/// out[.., m, n] = sum_k a[.., m, k] * w[.., k, n] with numpy batch broadcasting.
fn cpu_matmul(a: &[f32], sa: &[usize], w: &[f32], sw: &[usize], so: &[usize]) -> Vec<f32> {
    let r = so.len();
    let (m, n, k) = (so[r - 2], so[r - 1], sa[sa.len() - 1]);
    let total: usize = so.iter().product();
    (0..total)
        .map(|i| {
            let idx = unravel(i, so);
            let mut s = 0.0f64;
            for kk in 0..k {
                let mut ia = idx.clone();
                ia[r - 1] = kk;
                let mut iw = idx.clone();
                iw[r - 2] = kk;
                let _ = (m, n);
                s += at_broadcast(a, sa, &ia) as f64 * at_broadcast(w, sw, &iw) as f64;
            }
            s as f32
        })
        .collect()
}

fn run_case(ctx: &GpuContext, style: KernelStyle, sa: &[usize], sw: &[usize], so: &[usize], seed: u64) {
    let mut rng = Rng::new(seed);
    let a = rng.vec(sa.iter().product(), -1.0, 1.0);
    let w = rng.vec(sw.iter().product(), -1.0, 1.0);
    let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
    let gw = GpuTensor::from_f32(ctx, "w", &w).unwrap();
    let out = GpuTensor::new(ctx, "out", DType::F32, so.iter().product()).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    let mut mm = MatMul::new(ga.view(sa), gw.view(sw), out.view(so));
    mm.style = Some(style);
    matmul(&mut b, &mm).unwrap();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    let want = cpu_matmul(&a, sa, &w, sw, so);
    let k = sa[sa.len() - 1];
    assert_close(
        &format!("{style:?} {sa:?}@{sw:?}"),
        &run(ctx.read_f32(&out)).unwrap(),
        &want,
        F32.accumulating(k),
    );
}

#[test]
fn odd_sizes_and_broadcasting_both_styles() {
    let Some(ctx) = ctx() else { return };
    for style in [KernelStyle::RegisterBlocked, KernelStyle::Tiled] {
        run_case(ctx, style, &[37, 19], &[19, 33], &[37, 33], 20);
        run_case(ctx, style, &[2, 3, 5, 7], &[7, 9], &[2, 3, 5, 9], 21);
        run_case(ctx, style, &[1, 3, 6, 4], &[2, 1, 4, 5], &[2, 3, 6, 5], 22);
        run_case(ctx, style, &[1, 1], &[1, 1], &[1, 1], 23);
        run_case(ctx, style, &[70, 3], &[3, 66], &[70, 66], 24);
    }
}

/// Gemm as torch exports Linear: w is [N, K] used transposed, plus bias, alpha, beta * C, act.
#[test]
fn gemm_transposed_with_epilogue() {
    let Some(ctx) = ctx() else { return };
    let (m, k, n) = (9, 13, 11);
    let mut rng = Rng::new(25);
    let a = rng.vec(m * k, -1.0, 1.0);
    let wt = rng.vec(n * k, -1.0, 1.0); // [N, K]
    let c = rng.vec(n, -1.0, 1.0); // broadcast over rows
    let bias = rng.vec(n, -1.0, 1.0);
    let (alpha, beta) = (0.5, 2.0);
    let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
    let gw = GpuTensor::from_f32(ctx, "w", &wt).unwrap();
    let gc = GpuTensor::from_f32(ctx, "c", &c).unwrap();
    let gb = GpuTensor::from_f32(ctx, "bias", &bias).unwrap();
    for (act, style) in [
        (Activation::Silu, KernelStyle::RegisterBlocked),
        (Activation::Gelu, KernelStyle::Tiled),
        (Activation::LeakyRelu(0.2), KernelStyle::RegisterBlocked),
    ] {
        let out = GpuTensor::new(ctx, "out", DType::F32, m * n).unwrap();
        let mut mm =
            MatMul::new(ga.view(&[m, k]), gw.view(&[n, k]).permute(&[1, 0]).unwrap(), out.view(&[m, n]));
        mm.bias = Some(gb.clone());
        mm.d = Some(gc.view(&[n]));
        mm.alpha = alpha;
        mm.beta = beta;
        mm.activation = act;
        mm.style = Some(style);
        let mut b = ProgramBuilder::new(ctx);
        matmul(&mut b, &mm).unwrap();
        run(run(b.build()).unwrap().run(ctx)).unwrap();
        let want: Vec<f32> = (0..m * n)
            .map(|i| {
                let (r, col) = (i / n, i % n);
                let dot: f32 = (0..k).map(|kk| a[r * k + kk] * wt[col * k + kk]).sum();
                act.apply(alpha * dot + beta * c[col] + bias[col])
            })
            .collect();
        assert_close(&format!("gemm {act:?}"), &run(ctx.read_f32(&out)).unwrap(), &want, F32.accumulating(k));
    }
}

fn quantized_case(ctx: &GpuContext, dtype: DType, tol: crate::Tolerance, what: &str) {
    // (K, N, weights stored [N, K] as torch's Linear): scalar path, then both vec4 layouts.
    for (k, n, transposed) in [(21, 10, false), (24, 12, false), (24, 10, true)] {
        let m = 7;
        let mut rng = Rng::new(26);
        let a = rng.vec(m * k, -1.0, 1.0);
        let w = rng.vec(k * n, -1.0, 1.0); // logical [K, N]
                                           // Symmetric per-output-channel int8: scale[n] = max|w[:, n]| / 127.
        let scales: Vec<f32> =
            (0..n).map(|c| (0..k).map(|r| w[r * n + c].abs()).fold(0.0, f32::max) / 127.0).collect();
        let (stored, deq): (Vec<f32>, Vec<f32>) = match dtype {
            DType::I8 => {
                let q: Vec<f32> = (0..k * n).map(|i| (w[i] / scales[i % n]).round()).collect();
                let d = (0..k * n).map(|i| q[i] * scales[i % n]).collect();
                (q, d)
            }
            _ => (w.clone(), w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()),
        };
        let physical: Vec<f32> =
            if transposed { (0..k * n).map(|i| stored[(i % k) * n + i / k]).collect() } else { stored };
        let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
        let gw = GpuTensor::from_f32_as(ctx, "w", dtype, &physical).unwrap();
        let wv = if transposed { gw.view(&[n, k]).permute(&[1, 0]).unwrap() } else { gw.view(&[k, n]) };
        for style in [KernelStyle::RegisterBlocked, KernelStyle::Tiled] {
            let out = GpuTensor::new(ctx, "out", DType::F32, m * n).unwrap();
            let mut mm = MatMul::new(ga.view(&[m, k]), wv.clone(), out.view(&[m, n]));
            if dtype == DType::I8 {
                mm.scales = Some(GpuTensor::from_f32(ctx, "scales", &scales).unwrap());
            }
            mm.style = Some(style);
            let mut b = ProgramBuilder::new(ctx);
            matmul(&mut b, &mm).unwrap();
            let program = run(b.build()).unwrap();
            let key = program.keys()[0];
            assert!(key.contains(what), "{key}");
            let vec4 = style == KernelStyle::RegisterBlocked && k % 4 == 0;
            assert_eq!(key.contains(vec4_kernel(ctx)), vec4, "{key}");
            run(program.run(ctx)).unwrap();
            let want = cpu_matmul(&a, &[m, k], &deq, &[k, n], &[m, n]);
            let got = run(ctx.read_f32(&out)).unwrap();
            assert_close(&format!("{key} k={k} n={n}"), &got, &want, tol.accumulating(k));
        }
    }
}

/// int8 budget: the kernel must match the dequantised weights to f32 accuracy (the
/// quantisation error itself belongs to the model, not the kernel).
#[test]
fn int8_weights_with_per_channel_scales() {
    let Some(ctx) = ctx() else { return };
    quantized_case(ctx, DType::I8, F32, "w=i8");
    quantized_case(crate::no_subgroups_ctx().unwrap(), DType::I8, F32, "w=i8");
}

#[test]
fn f16_weights_native_and_packed() {
    let Some(ctx) = ctx() else { return };
    let native = if ctx.has_shader_f16() { "w=f16." } else { "w=f16p" };
    quantized_case(ctx, DType::F16, F32, native);
    let options = GpuOptions { adapter: AdapterChoice::Fallback, disable_f16: true, ..Default::default() };
    let packed = run(GpuContext::new(&options)).unwrap();
    quantized_case(&packed, DType::F16, F32, "w=f16p");
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let Some(ctx) = ctx() else { return };
    let a = GpuTensor::new(ctx, "a", DType::F32, 6).unwrap();
    let w = GpuTensor::new(ctx, "w", DType::F32, 6).unwrap();
    let out = GpuTensor::new(ctx, "out", DType::F32, 4).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    let mm = MatMul::new(a.view(&[2, 3]), w.view(&[2, 3]), out.view(&[2, 2]));
    let err = matmul(&mut b, &mm).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
    let i8w = GpuTensor::new(ctx, "q", DType::I8, 6).unwrap();
    let mm = MatMul::new(a.view(&[2, 3]), View::contiguous(&i8w, &[3, 2]), out.view(&[2, 2]));
    assert!(matmul(&mut b, &mm).unwrap_err().to_string().contains("scales"));
}

/// f16 activations and weights (where the adapter has shader-f16; a clear error where it has
/// not): f32 products and sums. The operands are exact f16 values, so every product is exact in
/// f32 and the result is the f32 one, rounded once to f16 for an f16 output (f16 products would
/// round each of the K terms: about 1e-3 here, 20x the f32 bound).
#[test]
fn f16_arithmetic_matmul() {
    let Some(ctx) = ctx() else { return };
    let (m, k, n) = (6, 19, 9);
    let mut rng = Rng::new(27);
    let h = |v: Vec<f32>| -> Vec<f32> { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() };
    let a = h(rng.vec(m * k, -1.0, 1.0));
    let w = h(rng.vec(k * n, -1.0, 1.0));
    let want = cpu_matmul(&a, &[m, k], &w, &[k, n], &[m, n]);
    let ga = GpuTensor::from_f32_as(ctx, "a", DType::F16, &a).unwrap();
    let gw = GpuTensor::from_f32_as(ctx, "w", DType::F16, &w).unwrap();
    if !ctx.has_shader_f16() {
        let out = GpuTensor::new(ctx, "out", DType::F32, m * n).unwrap();
        let mm = MatMul::new(ga.view(&[m, k]), gw.view(&[k, n]), out.view(&[m, n]));
        assert!(matmul(&mut ProgramBuilder::new(ctx), &mm).is_err());
        return;
    }
    for (style, out_dtype) in [(KernelStyle::RegisterBlocked, DType::F16), (KernelStyle::Tiled, DType::F32)] {
        let out = GpuTensor::new(ctx, "out", out_dtype, m * n).unwrap();
        let mut mm = MatMul::new(ga.view(&[m, k]), gw.view(&[k, n]), out.view(&[m, n]));
        mm.style = Some(style);
        let mut b = ProgramBuilder::new(ctx);
        matmul(&mut b, &mm).unwrap();
        let program = run(b.build()).unwrap();
        assert!(
            program.keys()[0].starts_with("matmul.f32.a=f16.") && program.keys()[0].contains(".w=f16."),
            "{:?}",
            program.keys()
        );
        run(program.run(ctx)).unwrap();
        // f32 arithmetic; an f16 output rounds once (11-bit mantissa).
        let tol = if out_dtype == DType::F16 { F16 } else { F32.accumulating(k) };
        assert_close(
            &format!("f16 operands {style:?} out {out_dtype:?}"),
            &run(ctx.read_f32(&out)).unwrap(),
            &want,
            tol,
        );
    }
}

/// The vec4 register-blocked kernel of a CPU adapter: "sg8" where its subgroups are 8 wide
/// (lavapipe on AVX2), "rb4x4v" without subgroups.
fn vec4_kernel(ctx: &GpuContext) -> &'static str {
    if ctx.fixed_subgroup_size() == Some(8) {
        "sg8"
    } else {
        "rb4x4v"
    }
}

/// The vec4 register-blocked paths (with and without subgroups): weights contiguous along N, and
/// torch's [N, K] weights (contiguous along K); M and N around the 8 x 32 blocks of the subgroup
/// kernel (one row, a partial block, several), a batch, bias, activation and a residual.
#[test]
fn vec4_paths_both_weight_layouts() {
    let Some(ctx) = ctx() else { return };
    let plain = crate::no_subgroups_ctx().expect("a second device on the adapter");
    assert_eq!(vec4_kernel(plain), "rb4x4v");
    let mut rng = Rng::new(28);
    let (batch, k) = (2, 12);
    for ctx in [ctx, plain] {
        for (m, n, along_n) in
            [(9, 8, true), (9, 10, false), (9, 5, false), (1, 36, true), (17, 68, true), (8, 33, false)]
        {
            let a = rng.vec(batch * m * k, -1.0, 1.0);
            let w = rng.vec(k * n, -1.0, 1.0);
            let bias = rng.vec(n, -1.0, 1.0);
            let residual = rng.vec(m * n, -1.0, 1.0);
            let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
            let gw = GpuTensor::from_f32(ctx, "w", &w).unwrap();
            // Along N: w is [K, N]. Along K: w holds [N, K] and is used transposed.
            let wv = if along_n { gw.view(&[k, n]) } else { gw.view(&[n, k]).permute(&[1, 0]).unwrap() };
            let out = GpuTensor::new(ctx, "out", DType::F32, batch * m * n).unwrap();
            let mut mm = MatMul::new(ga.view(&[batch, m, k]), wv, out.view(&[batch, m, n]));
            mm.bias = Some(GpuTensor::from_f32(ctx, "bias", &bias).unwrap());
            mm.activation = Activation::GeluTanh;
            // One residual row block for both batch items (broadcast through a zero stride).
            let gr = GpuTensor::from_f32(ctx, "residual", &residual).unwrap();
            mm.residual = Some(gr.view(&[m, n]).broadcast_to(&[batch, m, n]).unwrap());
            mm.style = Some(KernelStyle::RegisterBlocked);
            let mut b = ProgramBuilder::new(ctx);
            matmul(&mut b, &mm).unwrap();
            let program = run(b.build()).unwrap();
            let expect = format!(".{}.{}.", vec4_kernel(ctx), if along_n { "wn" } else { "wk" });
            assert!(program.keys()[0].contains(&expect), "{:?}", program.keys());
            run(program.run(ctx)).unwrap();
            let want: Vec<f32> = (0..batch * m * n)
                .map(|i| {
                    let (row, col) = ((i / n) % m, i % n);
                    let wat = |kk: usize| if along_n { w[kk * n + col] } else { w[col * k + kk] };
                    let dot = (0..k).map(|kk| a[(i / n) * k + kk] * wat(kk)).sum::<f32>();
                    Activation::GeluTanh.apply(dot + bias[col]) + residual[row * n + col]
                })
                .collect();
            assert_close(
                &format!("{} m={m} n={n} along_n={along_n}", program.keys()[0]),
                &run(ctx.read_f32(&out)).unwrap(),
                &want,
                F32.accumulating(k),
            );
        }
    }
}

/// The subgroup kernel stores whole vec4s only into rows of them; an output with a row stride
/// that is not a multiple of 4, or at an odd offset, is written element by element, and nothing
/// outside the view is touched.
#[test]
fn vec4_paths_into_strided_outputs() {
    let Some(ctx) = ctx() else { return };
    let plain = crate::no_subgroups_ctx().expect("a second device on the adapter");
    let mut rng = Rng::new(29);
    let (m, k, n) = (11, 8, 36);
    let a = rng.vec(m * k, -1.0, 1.0);
    let w = rng.vec(k * n, -1.0, 1.0);
    let want = cpu_matmul(&a, &[m, k], &w, &[k, n], &[m, n]);
    for ctx in [ctx, plain] {
        let ga = GpuTensor::from_f32(ctx, "a", &a).unwrap();
        let gw = GpuTensor::from_f32(ctx, "w", &w).unwrap();
        // (row stride, offset): rows of vec4s, then two layouts that are not.
        for (row_stride, offset, vec4_rows) in [(40, 4, true), (37, 0, false), (40, 3, false)] {
            let len = offset + m * row_stride;
            let out = GpuTensor::from_f32(ctx, "out", &vec![-7.0; len]).unwrap();
            let view = View { tensor: out.clone(), offset, shape: vec![m, n], strides: vec![row_stride, 1] };
            let mut mm = MatMul::new(ga.view(&[m, k]), gw.view(&[k, n]), view);
            mm.style = Some(KernelStyle::RegisterBlocked);
            let mut b = ProgramBuilder::new(ctx);
            matmul(&mut b, &mm).unwrap();
            let program = run(b.build()).unwrap();
            let key = program.keys()[0].to_string();
            assert_eq!(key.contains("out4"), vec4_rows && vec4_kernel(ctx) == "sg8", "{key}");
            run(program.run(ctx)).unwrap();
            let got = run(ctx.read_f32(&out)).unwrap();
            let inside: Vec<f32> = (0..m * n).map(|i| got[offset + (i / n) * row_stride + i % n]).collect();
            assert_close(
                &format!("{key} stride {row_stride} offset {offset}"),
                &inside,
                &want,
                F32.accumulating(k),
            );
            let untouched =
                (0..len).filter(|e| e < &offset || (e - offset) % row_stride >= n).all(|e| got[e] == -7.0);
            assert!(untouched, "{key}: wrote outside the view");
        }
    }
}
