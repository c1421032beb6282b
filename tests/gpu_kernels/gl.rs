//! The f32 kernels on a second, different adapter: wgpu's GL backend (EGL on Mesa llvmpipe; no
//! shader-f16, no subgroups, so f16 weights take the packed path). Skips loudly when there is no
//! GL adapter; FIFO_REQUIRE_GL=1 makes that a failure.

use fifo_diffusion::gpu::ops::attention::{attention, Attention};
use fifo_diffusion::gpu::ops::conv::{conv, Conv, Geometry};
use fifo_diffusion::gpu::ops::matmul::{matmul, MatMul};
use fifo_diffusion::gpu::ops::norm::group_norm;
use fifo_diffusion::gpu::ops::reduce::softmax;
use fifo_diffusion::gpu::{
    Activation, AdapterChoice, DType, GpuContext, GpuOptions, GpuTensor, KernelStyle, ProgramBuilder,
};

use fifo_diffusion::gpu::wgpu;

use crate::{assert_close, run, Rng, F32, F32_TRANSCENDENTAL};

fn gl() -> Option<GpuContext> {
    let options = GpuOptions {
        adapter: AdapterChoice::Fallback,
        backends: Some(wgpu::Backends::GL),
        ..Default::default()
    };
    match run(GpuContext::new(&options)) {
        Ok(ctx) => {
            eprintln!("GL tests on {}", ctx.describe());
            Some(ctx)
        }
        Err(e) if std::env::var("FIFO_REQUIRE_GL").is_ok_and(|v| v == "1") => {
            panic!("FIFO_REQUIRE_GL=1 but: {e}")
        }
        Err(e) => {
            eprintln!("\n!!!!!!!! SKIPPING GL TEST: {e} !!!!!!!!\n");
            None
        }
    }
}

#[test]
fn f32_kernels_on_gl() {
    let Some(ctx) = gl() else { return };
    assert!(!ctx.has_shader_f16());
    // f16 activations need shader-f16: a clear error here, not a shader compile failure.
    let h = GpuTensor::new(&ctx, "h", DType::F16, 4).unwrap();
    let mut probe = ProgramBuilder::new(&ctx);
    let err = fifo_diffusion::gpu::ops::elementwise::unary(
        &mut probe,
        fifo_diffusion::gpu::ops::elementwise::Unary::Neg,
        &h.view(&[4]),
        &h.view(&[4]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("cast it to f32"), "{err}");
    let mut rng = Rng::new(100);
    let mut b = ProgramBuilder::new(&ctx);
    // Matmul, both styles, plus f16 weights (packed on GL).
    let (m, k, n) = (9, 13, 10);
    let a = rng.vec(m * k, -1.0, 1.0);
    let w = rng.vec(k * n, -1.0, 1.0);
    let ga = GpuTensor::from_f32(&ctx, "a", &a).unwrap();
    let gw = GpuTensor::from_f32(&ctx, "w", &w).unwrap();
    let gw16 = GpuTensor::from_f32_as(&ctx, "w16", DType::F16, &w).unwrap();
    let mut mm_outs = Vec::new();
    for (style, wt) in [
        (KernelStyle::RegisterBlocked, &gw),
        (KernelStyle::Tiled, &gw),
        (KernelStyle::RegisterBlocked, &gw16),
    ] {
        let out = GpuTensor::new(&ctx, "mm", DType::F32, m * n).unwrap();
        let mut mm = MatMul::new(ga.view(&[m, k]), wt.view(&[k, n]), out.view(&[m, n]));
        mm.style = Some(style);
        matmul(&mut b, &mm).unwrap();
        mm_outs.push((wt.dtype(), out));
    }
    // Conv 3x3 with padding and SiLU.
    let xs = [1, 3, 6, 5];
    let x = rng.vec(90, -1.0, 1.0);
    let cw = rng.vec(4 * 3 * 9, -1.0, 1.0);
    let c = Conv {
        x: GpuTensor::from_f32(&ctx, "x", &x).unwrap(),
        x_shape: xs.to_vec(),
        w: GpuTensor::from_f32(&ctx, "cw", &cw).unwrap(),
        scales: None,
        bias: None,
        out: GpuTensor::new(&ctx, "conv", DType::F32, 4 * 30).unwrap(),
        out_channels: 4,
        groups: 1,
        geometry: Geometry::new(&[3, 3]).with_pads(&[1, 1], &[1, 1]),
        activation: Activation::Silu,
        packed_weights: false,
        style: None,
        residual: None,
    };
    conv(&mut b, &c).unwrap();
    let sm = GpuTensor::new(&ctx, "softmax", DType::F32, 90).unwrap();
    softmax(&mut b, &c.x, &[3, 30], 1, false, &sm).unwrap();
    let gn = GpuTensor::new(&ctx, "gn", DType::F32, 90).unwrap();
    group_norm(&mut b, &c.x, &xs, 3, None, 1e-5, Activation::None, &gn).unwrap();
    let att = GpuTensor::new(&ctx, "att", DType::F32, 90).unwrap();
    let q = c.x.view(&[1, 3, 6, 5]);
    attention(
        &mut b,
        &Attention { q: q.clone(), k: q.clone(), v: q, out: att.view(&[1, 3, 6, 5]), scale: 0.5 },
    )
    .unwrap();
    run(run(b.build()).unwrap().run(&ctx)).unwrap();

    for (dtype, out) in &mm_outs {
        let wq: Vec<f32> = if *dtype == DType::F16 {
            w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
        } else {
            w.clone()
        };
        let want: Vec<f32> =
            (0..m * n).map(|i| (0..k).map(|kk| a[i / n * k + kk] * wq[kk * n + i % n]).sum()).collect();
        assert_close(
            &format!("gl matmul {dtype:?}"),
            &run(ctx.read_f32(out)).unwrap(),
            &want,
            F32.accumulating(k),
        );
    }
    let want_conv: Vec<f32> = (0..120)
        .map(|i| {
            let (co, y, xx) = (i / 30, (i / 5) % 6, i % 5);
            let mut s = 0.0;
            for ci in 0..3 {
                for (ky, kx) in (0..3).flat_map(|a| (0..3).map(move |b| (a, b))) {
                    let (iy, ix) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                    if (0..6).contains(&iy) && (0..5).contains(&ix) {
                        s += x[ci * 30 + iy as usize * 5 + ix as usize]
                            * cw[((co * 3 + ci) * 3 + ky) * 3 + kx];
                    }
                }
            }
            Activation::Silu.apply(s)
        })
        .collect();
    assert_close("gl conv", &run(ctx.read_f32(&c.out)).unwrap(), &want_conv, F32.accumulating(27));
    let want_sm: Vec<f32> = (0..90)
        .map(|i| {
            let row = &x[i / 30 * 30..i / 30 * 30 + 30];
            let m = row.iter().cloned().fold(f32::MIN, f32::max);
            (x[i] - m).exp() / row.iter().map(|v| (v - m).exp()).sum::<f32>()
        })
        .collect();
    assert_close(
        "gl softmax",
        &run(ctx.read_f32(&sm)).unwrap(),
        &want_sm,
        F32_TRANSCENDENTAL.accumulating(30),
    );
    // Self-attention per head h over the 6 rows of 5 of x[h].
    let want_att: Vec<f32> = (0..90)
        .map(|i| {
            let (h, r, col) = (i / 30, (i / 5) % 6, i % 5);
            let row = |j: usize| &x[h * 30 + j * 5..h * 30 + j * 5 + 5];
            let s: Vec<f32> =
                (0..6).map(|j| 0.5 * row(r).iter().zip(row(j)).map(|(a, b)| a * b).sum::<f32>()).collect();
            let m = s.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f32> = s.iter().map(|v| (v - m).exp()).collect();
            (0..6).map(|j| e[j] * row(j)[col]).sum::<f32>() / e.iter().sum::<f32>()
        })
        .collect();
    assert_close(
        "gl attention",
        &run(ctx.read_f32(&att)).unwrap(),
        &want_att,
        F32_TRANSCENDENTAL.accumulating(11),
    );
    let gn_out = run(ctx.read_f32(&gn)).unwrap();
    for g in 0..3 {
        let mean: f32 = gn_out[g * 30..(g + 1) * 30].iter().sum::<f32>() / 30.0;
        assert!(mean.abs() < 1e-5, "gl group norm mean {mean}");
    }
}
