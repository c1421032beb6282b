//! Conv 1-D/2-D/3-D, ConvTranspose and pooling vs direct CPU loops (everything seen as 3-D).

use fifo_diffusion::gpu::ops::conv::{conv, conv_transpose, pack_weights, Conv, ConvTranspose, Geometry};
use fifo_diffusion::gpu::ops::pool::{pool, PoolKind};
use fifo_diffusion::gpu::{Activation, DType, GpuContext, GpuTensor, KernelStyle, ProgramBuilder};

use crate::{assert_close, ctx, run, unravel, Rng, F32};

fn pad3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut o = [fill; 3];
    o[3 - v.len()..].copy_from_slice(v);
    o
}

/// Direct convolution; `wt` indexed [co][ci_g][k].
fn cpu_conv(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    cout: usize,
    groups: usize,
    g: &Geometry,
    bias: &[f32],
) -> (Vec<f32>, Vec<usize>) {
    let (n, cin) = (xs[0], xs[1]);
    let sp = pad3(&xs[2..], 1);
    let os = pad3(&g.output(&xs[2..]), 1);
    let (k, s, dl, pb) =
        (pad3(&g.kernel, 1), pad3(&g.strides, 1), pad3(&g.dilations, 1), pad3(&g.pads_begin, 0));
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let kvol = k[0] * k[1] * k[2];
    let total = n * cout * os.iter().product::<usize>();
    let out = (0..total)
        .map(|i| {
            let ix = unravel(i, &[n, cout, os[0], os[1], os[2]]);
            let (b, co) = (ix[0], ix[1]);
            let gi = co / cout_g;
            let mut acc = bias.get(co).copied().unwrap_or(0.0) as f64;
            for ci in 0..cin_g {
                for t in 0..kvol {
                    let kk = unravel(t, &k);
                    let c: Vec<isize> = (0..3)
                        .map(|d| (ix[2 + d] * s[d] + kk[d] * dl[d]) as isize - pb[d] as isize)
                        .collect();
                    if (0..3).all(|d| c[d] >= 0 && (c[d] as usize) < sp[d]) {
                        let xi = (((b * cin + gi * cin_g + ci) * sp[0] + c[0] as usize) * sp[1]
                            + c[1] as usize)
                            * sp[2]
                            + c[2] as usize;
                        acc += x[xi] as f64 * w[(co * cin_g + ci) * kvol + t] as f64;
                    }
                }
            }
            acc as f32
        })
        .collect();
    let shape = [&xs[..1], &[cout], &g.output(&xs[2..])[..]].concat();
    (out, shape)
}

struct Case {
    xs: Vec<usize>,
    cout: usize,
    groups: usize,
    g: Geometry,
    act: Activation,
    int8: bool,
}

fn check_conv(ctx: &GpuContext, case: &Case, seed: u64) {
    let mut rng = Rng::new(seed);
    let kvol: usize = case.g.kernel.iter().product();
    let cin_g = case.xs[1] / case.groups;
    let x = rng.vec(case.xs.iter().product(), -1.0, 1.0);
    let w = rng.vec(case.cout * cin_g * kvol, -1.0, 1.0);
    let bias = rng.vec(case.cout, -1.0, 1.0);
    let per = cin_g * kvol;
    let scales: Vec<f32> = (0..case.cout)
        .map(|c| w[c * per..(c + 1) * per].iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0)
        .collect();
    let (stored, used): (Vec<f32>, Vec<f32>) = if case.int8 {
        let q: Vec<f32> = (0..w.len()).map(|i| (w[i] / scales[i / per]).round()).collect();
        let d = (0..w.len()).map(|i| q[i] * scales[i / per]).collect();
        (q, d)
    } else {
        (w.clone(), w.clone())
    };
    let (mut want, shape) = cpu_conv(&x, &case.xs, &used, case.cout, case.groups, &case.g, &bias);
    want.iter_mut().for_each(|v| *v = case.act.apply(*v));
    let dtype = if case.int8 { DType::I8 } else { DType::F32 };
    let plain = Conv {
        x: GpuTensor::from_f32(ctx, "x", &x).unwrap(),
        x_shape: case.xs.clone(),
        w: GpuTensor::from_f32_as(ctx, "w", dtype, &stored).unwrap(),
        scales: case.int8.then(|| GpuTensor::from_f32(ctx, "scales", &scales).unwrap()),
        bias: Some(GpuTensor::from_f32(ctx, "bias", &bias).unwrap()),
        out: GpuTensor::new(ctx, "out", DType::F32, want.len()).unwrap(),
        out_channels: case.cout,
        groups: case.groups,
        geometry: case.g.clone(),
        activation: case.act,
        packed_weights: false,
        style: None,
        residual: None,
    };
    assert_eq!(plain.out_shape(), shape);
    // The same through pre-packed weights (f32 or int8), where they apply.
    let packed = (case.cout / case.groups).is_multiple_of(4).then(|| Conv {
        w: GpuTensor::from_f32_as(ctx, "w_packed", dtype, &pack_weights(&stored, case.cout, case.groups))
            .unwrap(),
        packed_weights: true,
        ..plain.clone()
    });
    let g = &case.g;
    let pointwise = g.kernel.iter().all(|&k| k == 1) && g.strides.iter().all(|&k| k == 1);
    // Kernels 3 wide with unit stride and dilation along the row take the row kernel on CPU
    // adapters; GPUs take workgroup tiles where a group has 16+ output and 8+ input channels.
    let row3 = g.kernel.last() == Some(&3) && g.strides.last() == Some(&1) && g.dilations.last() == Some(&1);
    let tiles = case.cout / case.groups >= 16 && case.xs[1] / case.groups >= 8 && !pointwise;
    for style in [KernelStyle::RegisterBlocked, KernelStyle::Tiled] {
        for c in [Some(plain.clone()), packed.clone()].into_iter().flatten() {
            let c = Conv {
                style: Some(style),
                out: GpuTensor::new(ctx, "out", DType::F32, want.len()).unwrap(),
                ..c
            };
            let mut b = ProgramBuilder::new(ctx);
            conv(&mut b, &c).unwrap();
            let program = run(b.build()).unwrap();
            let key = &program.keys()[0];
            let label = format!("conv {:?} {g:?} {style:?} packed={}: {key}", case.xs, c.packed_weights);
            let tiled = style == KernelStyle::Tiled && tiles;
            if c.packed_weights {
                let family = match (case.int8, pointwise) {
                    (true, _) => "w=i8.packed",
                    (false, true) => "matmul.",
                    (false, false) => "w=f32.packed",
                };
                assert!(key.contains(family), "{label}");
                assert_eq!(key.contains(".row3"), row3 && !tiled, "{label}");
                // 3x3 and 1x3 windows one deep: with 8-lane subgroups the lanes share weight loads.
                let k3 = pad3(&g.kernel, 1);
                let window = k3[0] == 1 && (k3[1] == 3 || k3[1] == 1);
                let sg8 = row3 && !tiled && window && ctx.fixed_subgroup_size() == Some(8);
                assert_eq!(key.contains(".sg8"), sg8, "{label}");
            }
            assert_eq!(key.starts_with("conv_tiled."), tiled, "{label}");
            run(program.run(ctx)).unwrap();
            let got = run(ctx.read_f32(&c.out)).unwrap();
            assert_close(&label, &got, &want, F32.accumulating(per));
        }
    }
}

/// 3x3 and 1x3 windows on the row kernel, with and without 8-lane subgroups (the lanes of one
/// share the weight loads, over the pixel blocks of every batch item): vertical stride and
/// dilation, asymmetric pads, pads wider than the kernel, rows narrower than a 4-pixel block, a
/// (1, 3, 3) window with a depth stride, groups, int8 weights, 36 output channels (not a multiple
/// of 32), batches; a temporal 1-D conv over 8 frames of 5 items.
#[test]
fn row_kernel_3x3_with_and_without_subgroups() {
    let Some(ctx) = ctx() else { return };
    let plain = crate::no_subgroups_ctx().expect("a second device on the adapter");
    let cases = [
        Case {
            xs: vec![2, 6, 9, 11],
            cout: 36,
            groups: 1,
            g: Geometry::new(&[3, 3])
                .with_strides(&[2, 1])
                .with_dilations(&[2, 1])
                .with_pads(&[2, 1], &[0, 2]),
            act: Activation::Silu,
            int8: false,
        },
        Case {
            xs: vec![1, 4, 3, 2],
            cout: 8,
            groups: 2,
            g: Geometry::new(&[3, 3]).with_pads(&[3, 2], &[2, 3]),
            act: Activation::None,
            int8: true,
        },
        Case {
            xs: vec![2, 3, 4, 5, 6],
            cout: 4,
            groups: 1,
            g: Geometry::new(&[1, 3, 3]).with_strides(&[2, 1, 1]).with_pads(&[0, 1, 1], &[1, 1, 1]),
            act: Activation::Gelu,
            int8: false,
        },
        Case {
            xs: vec![5, 8, 8],
            cout: 16,
            groups: 1,
            g: Geometry::new(&[3]).with_pads(&[1], &[1]),
            act: Activation::None,
            int8: false,
        },
        Case {
            xs: vec![2, 4, 5, 7],
            cout: 12,
            groups: 2,
            g: Geometry::new(&[1, 3]).with_strides(&[2, 1]).with_pads(&[0, 2], &[1, 0]),
            act: Activation::Relu,
            int8: true,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        check_conv(ctx, case, 60 + i as u64);
        check_conv(plain, case, 60 + i as u64);
    }
}

#[test]
fn conv_1d_2d_3d_groups_strides_pads_dilations() {
    let Some(ctx) = ctx() else { return };
    let cases = [
        // 2-D, groups, stride 2, asymmetric pads, SiLU.
        Case {
            xs: vec![2, 4, 7, 9],
            cout: 6,
            groups: 2,
            g: Geometry::new(&[3, 3]).with_strides(&[2, 2]).with_pads(&[1, 0], &[1, 2]),
            act: Activation::Silu,
            int8: false,
        },
        // 1-D with dilation.
        Case {
            xs: vec![1, 3, 11],
            cout: 5,
            groups: 1,
            g: Geometry::new(&[4]).with_dilations(&[2]).with_pads(&[3], &[1]),
            act: Activation::None,
            int8: false,
        },
        // 3-D, int8 weights with per-channel scales.
        Case {
            xs: vec![1, 2, 3, 5, 4],
            cout: 3,
            groups: 1,
            g: Geometry::new(&[2, 3, 3]).with_strides(&[1, 2, 1]).with_pads(&[1, 1, 1], &[0, 1, 1]),
            act: Activation::Relu,
            int8: true,
        },
        // int8 weights, 4 output channels per group: packed as one word per tap too.
        Case {
            xs: vec![1, 6, 5, 7],
            cout: 8,
            groups: 2,
            g: Geometry::new(&[3, 3]).with_strides(&[1, 2]).with_pads(&[1, 1], &[1, 1]),
            act: Activation::None,
            int8: true,
        },
        // Depthwise 3x3, odd channel count over 32-channel blocks.
        Case {
            xs: vec![1, 37, 5, 6],
            cout: 37,
            groups: 37,
            g: Geometry::new(&[3, 3]).with_pads(&[1, 1], &[1, 1]),
            act: Activation::Gelu,
            int8: false,
        },
        // Groups with 4 output channels each (the packed-weight path too).
        Case {
            xs: vec![1, 6, 5, 7],
            cout: 8,
            groups: 2,
            g: Geometry::new(&[3, 3]).with_strides(&[1, 2]).with_pads(&[1, 1], &[1, 1]),
            act: Activation::Silu,
            int8: false,
        },
        // The row kernel (3 wide, stride 1 along rows): a row width that is not a multiple of 4.
        Case {
            xs: vec![2, 5, 6, 7],
            cout: 8,
            groups: 1,
            g: Geometry::new(&[3, 3]).with_pads(&[1, 1], &[1, 1]),
            act: Activation::Silu,
            int8: false,
        },
        // The row kernel in 3-D with int8 weights, dilation and stride on the other axes, groups,
        // and rows narrower than the 6 inputs a block reads.
        Case {
            xs: vec![1, 4, 4, 5, 2],
            cout: 8,
            groups: 2,
            g: Geometry::new(&[3, 3, 3])
                .with_strides(&[1, 2, 1])
                .with_dilations(&[2, 1, 1])
                .with_pads(&[2, 1, 1], &[1, 0, 2]),
            act: Activation::None,
            int8: true,
        },
        // The row kernel in 1-D (a temporal conv over frames), no padding on the left.
        Case {
            xs: vec![3, 8, 9],
            cout: 12,
            groups: 1,
            g: Geometry::new(&[3]).with_pads(&[0], &[2]),
            act: Activation::None,
            int8: false,
        },
        // 1x1 conv lowered to the vec4 matmul (Cin and H*W multiples of 4).
        Case {
            xs: vec![2, 8, 4, 5],
            cout: 12,
            groups: 1,
            g: Geometry::new(&[1, 1]),
            act: Activation::Silu,
            int8: false,
        },
        // 1x1 conv with strides stays a convolution.
        Case {
            xs: vec![1, 4, 5, 5],
            cout: 8,
            groups: 1,
            g: Geometry::new(&[1, 1]).with_strides(&[2, 2]),
            act: Activation::None,
            int8: false,
        },
        // Tiles on GPUs: 36 output channels (one partial 64-channel tile), 20 input channels (16
        // and a padded 4 per tap), columns crossing batch items (3 x 25 pixels > one 64 tile).
        Case {
            xs: vec![3, 20, 5, 5],
            cout: 36,
            groups: 1,
            g: Geometry::new(&[3, 3]).with_pads(&[1, 1], &[1, 1]),
            act: Activation::Silu,
            int8: false,
        },
        // Tiles: 3-D with strides, dilation and asymmetric pads, int8 weights, 70 output channels
        // (two channel tiles, the second partial; not a multiple of 4: unpacked weights only).
        Case {
            xs: vec![1, 9, 4, 6, 7],
            cout: 70,
            groups: 1,
            g: Geometry::new(&[2, 3, 3])
                .with_strides(&[1, 2, 1])
                .with_dilations(&[2, 1, 2])
                .with_pads(&[1, 1, 2], &[0, 1, 1]),
            act: Activation::None,
            int8: true,
        },
        // Tiles per group: 2 groups of 8 input and 16 output channels, int8 packed, 1-D temporal.
        Case {
            xs: vec![2, 16, 67],
            cout: 32,
            groups: 2,
            g: Geometry::new(&[3]).with_pads(&[1], &[1]),
            act: Activation::Gelu,
            int8: true,
        },
        // Tiles: a strided 1x1 conv (not a matmul), 48 input channels (three 16-channel steps).
        Case {
            xs: vec![2, 48, 9, 9],
            cout: 16,
            groups: 1,
            g: Geometry::new(&[1, 1]).with_strides(&[2, 2]),
            act: Activation::Relu,
            int8: false,
        },
        // 1x1 conv (a matmul) with many output channels.
        Case {
            xs: vec![2, 8, 3, 3],
            cout: 40,
            groups: 1,
            g: Geometry::new(&[1, 1]),
            act: Activation::None,
            int8: false,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        check_conv(ctx, case, 30 + i as u64);
    }
}

#[test]
fn conv_transpose_2d() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(40);
    let (n, cin, h, w, cout, groups) = (1, 4, 3, 5, 6, 2);
    let g = Geometry::new(&[3, 3]).with_strides(&[2, 2]).with_pads(&[1, 1], &[1, 1]);
    let x = rng.vec(n * cin * h * w, -1.0, 1.0);
    let wt = rng.vec(cin * (cout / groups) * 9, -1.0, 1.0);
    let bias = rng.vec(cout, -1.0, 1.0);
    let ct = ConvTranspose {
        x: GpuTensor::from_f32(ctx, "x", &x).unwrap(),
        x_shape: vec![n, cin, h, w],
        w: GpuTensor::from_f32(ctx, "w", &wt).unwrap(),
        scales: None,
        bias: Some(GpuTensor::from_f32(ctx, "bias", &bias).unwrap()),
        out: GpuTensor::new(ctx, "out", DType::F32, n * cout * 6 * 10).unwrap(),
        out_channels: cout,
        groups,
        geometry: g,
        output_padding: vec![1, 1],
        activation: Activation::None,
    };
    assert_eq!(ct.out_shape(), vec![1, 6, 6, 10]);
    // Scatter form on the CPU: every input pixel adds into the outputs it reaches.
    let (oh, ow, cout_g, cin_g) = (6, 10, cout / groups, cin / groups);
    let mut want = vec![0.0f32; n * cout * oh * ow];
    for (i, v) in want.iter_mut().enumerate() {
        *v = bias[(i / (oh * ow)) % cout];
    }
    for ci in 0..cin {
        let gi = ci / cin_g;
        for (iy, ix) in (0..h).flat_map(|a| (0..w).map(move |b| (a, b))) {
            for co_g in 0..cout_g {
                for (ky, kx) in (0..3).flat_map(|a| (0..3).map(move |b| (a, b))) {
                    let (oy, ox) = ((iy * 2 + ky) as isize - 1, (ix * 2 + kx) as isize - 1);
                    if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                        let co = gi * cout_g + co_g;
                        want[(co * oh + oy as usize) * ow + ox as usize] +=
                            x[(ci * h + iy) * w + ix] * wt[((ci * cout_g + co_g) * 3 + ky) * 3 + kx];
                    }
                }
            }
        }
    }
    let mut b = ProgramBuilder::new(ctx);
    conv_transpose(&mut b, &ct).unwrap();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    assert_close("conv_transpose", &run(ctx.read_f32(&ct.out)).unwrap(), &want, F32.accumulating(cin_g * 9));
}

#[test]
fn max_and_average_pools() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(41);
    let xs = [2, 3, 7, 6];
    let x = rng.vec(xs.iter().product(), -1.0, 1.0);
    let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
    let g = Geometry::new(&[3, 2]).with_strides(&[2, 2]).with_pads(&[1, 0], &[1, 1]);
    let os = g.output(&xs[2..]);
    let total = 6 * os[0] * os[1];
    let kinds = [
        PoolKind::Max,
        PoolKind::Average { count_include_pad: false },
        PoolKind::Average { count_include_pad: true },
    ];
    let mut b = ProgramBuilder::new(ctx);
    let outs: Vec<GpuTensor> = kinds
        .iter()
        .map(|&k| {
            let o = GpuTensor::new(ctx, "pool", DType::F32, total).unwrap();
            pool(&mut b, k, &gx, &xs, &g, &o).unwrap();
            o
        })
        .collect();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    for (kind, out) in kinds.iter().zip(&outs) {
        let want: Vec<f32> = (0..total)
            .map(|i| {
                let ix = unravel(i, &[6, os[0], os[1]]);
                let (mut mx, mut sum, mut count, mut padded) = (f32::NEG_INFINITY, 0.0, 0, 0);
                for (ky, kx) in (0..3).flat_map(|a| (0..2).map(move |b| (a, b))) {
                    let (y, xx) = ((ix[1] * 2 + ky) as isize - 1, (ix[2] * 2 + kx) as isize);
                    if (-1..8).contains(&y) && xx < 7 {
                        padded += 1;
                    }
                    if (0..7).contains(&y) && xx < 6 {
                        let v = x[(ix[0] * 7 + y as usize) * 6 + xx as usize];
                        mx = mx.max(v);
                        sum += v;
                        count += 1;
                    }
                }
                match kind {
                    PoolKind::Max => mx,
                    PoolKind::Average { count_include_pad: false } => sum / count as f32,
                    PoolKind::Average { count_include_pad: true } => sum / padded as f32,
                }
            })
            .collect();
        assert_close(&format!("{kind:?}"), &run(ctx.read_f32(out)).unwrap(), &want, F32.accumulating(6));
    }
}
