//! Data movement: transpose, slice with negative steps, concat, expand, tile, pad, gather, cast.

use fifo_diffusion::gpu::ops::cast::cast;
use fifo_diffusion::gpu::ops::copy::{concat, copy, gather, pad, slice, tile};
use fifo_diffusion::gpu::{DType, GpuTensor, ProgramBuilder};

use crate::{assert_close, ctx, run, strides, unravel, Rng, F16, F32};

fn build_run(b: ProgramBuilder) {
    let ctx = b.context();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
}

#[test]
fn transpose_slice_expand_tile_pad() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(10);
    let shape = [2, 3, 5];
    let x = rng.vec(30, -1.0, 1.0);
    let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
    let st = strides(&shape);
    let at = |i: usize, j: usize, k: usize| x[i * st[0] + j * st[1] + k * st[2]];
    let mut b = ProgramBuilder::new(ctx);
    // Transpose (2, 0, 1): out [5, 2, 3].
    let t = GpuTensor::new(ctx, "t", DType::F32, 30).unwrap();
    copy(&mut b, &gx.view(&shape).permute(&[2, 0, 1]).unwrap(), &t.view(&[5, 2, 3])).unwrap();
    // Slice [1:2, ::-1, 0:5:2] -> [1, 3, 3].
    let s = GpuTensor::new(ctx, "s", DType::F32, 9).unwrap();
    slice(&mut b, &gx.view(&shape), &[1, 2, 0], &[1, -1, 2], &s.view(&[1, 3, 3])).unwrap();
    // Expand [1, 3, 1] slice of x -> [2, 3, 4] via broadcasting.
    let e = GpuTensor::new(ctx, "e", DType::F32, 24).unwrap();
    let col = fifo_diffusion::gpu::View {
        tensor: gx.clone(),
        offset: 0,
        shape: vec![1, 3, 1],
        strides: vec![0, 5, 1],
    };
    copy(&mut b, &col.broadcast_to(&[2, 3, 4]).unwrap(), &e.view(&[2, 3, 4])).unwrap();
    // Tile x by (1, 2, 2) -> [2, 6, 10].
    let tl = GpuTensor::new(ctx, "tile", DType::F32, 120).unwrap();
    tile(&mut b, &gx.view(&shape), &tl.view(&[2, 6, 10])).unwrap();
    // Pad dims by (0, 1, 2) before and (1, 0, 1) after with 7.5 -> [3, 4, 8].
    let p = GpuTensor::new(ctx, "pad", DType::F32, 96).unwrap();
    pad(&mut b, &gx.view(&shape), &[0, 1, 2], 7.5, &p.view(&[3, 4, 8])).unwrap();
    build_run(b);

    let want_t: Vec<f32> = (0..30)
        .map(|i| {
            let ix = unravel(i, &[5, 2, 3]);
            at(ix[1], ix[2], ix[0])
        })
        .collect();
    assert_close("transpose", &run(ctx.read_f32(&t)).unwrap(), &want_t, F32);
    let want_s: Vec<f32> = (0..9)
        .map(|i| {
            let ix = unravel(i, &[1, 3, 3]);
            at(1, 2 - ix[1], ix[2] * 2)
        })
        .collect();
    assert_close("slice", &run(ctx.read_f32(&s)).unwrap(), &want_s, F32);
    let want_e: Vec<f32> = (0..24)
        .map(|i| {
            let ix = unravel(i, &[2, 3, 4]);
            at(0, ix[1], 0)
        })
        .collect();
    assert_close("expand", &run(ctx.read_f32(&e)).unwrap(), &want_e, F32);
    let want_tl: Vec<f32> = (0..120)
        .map(|i| {
            let ix = unravel(i, &[2, 6, 10]);
            at(ix[0], ix[1] % 3, ix[2] % 5)
        })
        .collect();
    assert_close("tile", &run(ctx.read_f32(&tl)).unwrap(), &want_tl, F32);
    let want_p: Vec<f32> = (0..96)
        .map(|i| {
            let ix = unravel(i, &[3, 4, 8]);
            let (a, bb, c) = (ix[0] as isize, ix[1] as isize - 1, ix[2] as isize - 2);
            if a < 2 && (0..3).contains(&bb) && (0..5).contains(&c) {
                at(a as usize, bb as usize, c as usize)
            } else {
                7.5
            }
        })
        .collect();
    assert_close("pad", &run(ctx.read_f32(&p)).unwrap(), &want_p, F32);
}

#[test]
fn concat_on_a_middle_axis_and_gather() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(11);
    let a = rng.vec(2 * 3 * 4, -1.0, 1.0);
    let c = rng.vec(2 * 5 * 4, -1.0, 1.0);
    let (ga, gc) = (GpuTensor::from_f32(ctx, "a", &a).unwrap(), GpuTensor::from_f32(ctx, "c", &c).unwrap());
    let out = GpuTensor::new(ctx, "cat", DType::F32, 2 * 8 * 4).unwrap();
    let idx = GpuTensor::from_i32(ctx, "idx", &[2, -1, 0, 2, 7]).unwrap();
    let g = GpuTensor::new(ctx, "g", DType::F32, 2 * 5 * 4).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    concat(&mut b, &[ga.view(&[2, 3, 4]), gc.view(&[2, 5, 4])], 1, &out.view(&[2, 8, 4])).unwrap();
    gather(&mut b, &ga, &[2, 3, 4], 1, &idx, &g).unwrap();
    build_run(b);
    let want: Vec<f32> = (0..64)
        .map(|i| {
            let ix = unravel(i, &[2, 8, 4]);
            if ix[1] < 3 {
                a[ix[0] * 12 + ix[1] * 4 + ix[2]]
            } else {
                c[ix[0] * 20 + (ix[1] - 3) * 4 + ix[2]]
            }
        })
        .collect();
    assert_close("concat axis 1", &run(ctx.read_f32(&out)).unwrap(), &want, F32);
    let rows = [2i32, 2, 0, 2, -1];
    let want_g: Vec<f32> = (0..40)
        .map(|i| {
            let ix = unravel(i, &[2, 5, 4]);
            let r = rows[ix[1]];
            if r < 0 {
                0.0
            } else {
                a[ix[0] * 12 + r as usize * 4 + ix[2]]
            }
        })
        .collect();
    assert_close("gather (negative and out-of-range indices)", &run(ctx.read_f32(&g)).unwrap(), &want_g, F32);
}

#[test]
fn cast_roundtrips() {
    let Some(ctx) = ctx() else { return };
    let mut rng = Rng::new(12);
    let x = rng.vec(7, -100.0, 100.0);
    let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
    let h = GpuTensor::new(ctx, "h", DType::F16, 7).unwrap();
    let back = GpuTensor::new(ctx, "back", DType::F32, 7).unwrap();
    let i = GpuTensor::new(ctx, "i", DType::I32, 7).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    cast(&mut b, &gx, &h).unwrap();
    cast(&mut b, &h, &back).unwrap();
    cast(&mut b, &gx, &i).unwrap();
    build_run(b);
    assert_close("f32->f16->f32", &run(ctx.read_f32(&back)).unwrap(), &x, F16);
    let want_i: Vec<i32> = x.iter().map(|&v| v.trunc() as i32).collect();
    assert_eq!(run(ctx.read_i32(&i)).unwrap(), want_i);
}

/// Copies that are batched 2-D transposes (source contiguous along the output's rows) take the
/// transpose kernel: 4x4 register blocks on CPU adapters, 32x32 workgroup tiles on GPUs. Edges
/// that are not multiples of 4 or 32, a batch dim, an output window inside a larger tensor (the
/// elements around it untouched), f32 and f16; rows under 4 stay with the plain strided copy.
#[test]
fn batched_2d_transposes_take_the_transpose_kernel() {
    let Some(ctx) = ctx() else { return };
    let tiled = crate::tiled_ctx().expect("a second device");
    // (input shape, permutation, whether the transpose kernel runs, and on a CPU adapter whether
    // it reads the source's and writes the output's runs of 4 as vec4s: all aligned)
    type Case<'a> = (&'a [usize], &'a [usize], bool, [bool; 2]);
    let cases: [Case; 7] = [
        (&[1, 37, 6, 7], &[0, 2, 3, 1], true, [false, false]), // [37, 42] -> [42, 37]
        (&[3, 5, 9], &[0, 2, 1], true, [false, false]),        // batch 3
        (&[70, 33], &[1, 0], true, [false, false]),            // several workgroups each way
        (&[3, 50], &[1, 0], false, [false, false]),            // three rows: the plain copy
        (&[1, 12, 4, 5], &[0, 2, 3, 1], true, [true, true]),   // [12, 20] -> [20, 12]
        (&[2, 8, 6], &[0, 2, 1], true, [false, true]),         // 6 output rows, 8 columns
        (&[3, 6, 8], &[0, 2, 1], true, [true, false]),         // 8 output rows, 6 columns
    ];
    for (style, ctx) in [("register-blocked", ctx), ("tiled", tiled)] {
        let dtypes: &[DType] = if ctx.has_shader_f16() { &[DType::F32, DType::F16] } else { &[DType::F32] };
        for &dtype in dtypes {
            for (shape, perm, kernel, [src4, out4]) in cases {
                let n: usize = shape.iter().product();
                // Integers: exact in f16 too.
                let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 2001) as f32 - 1000.0).collect();
                let gx = GpuTensor::from_f32_as(ctx, "x", dtype, &x).unwrap();
                let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
                // The output is a window two rows into a larger tensor (zeros around it).
                let row: usize = out_shape[1..].iter().product();
                let big = GpuTensor::from_f32_as(ctx, "big", dtype, &vec![0.0; n + 3 * row]).unwrap();
                let mut window = big.view(&out_shape);
                window.offset = 2 * row;
                let mut b = ProgramBuilder::new(ctx);
                copy(&mut b, &gx.view(shape).permute(perm).unwrap(), &window).unwrap();
                let program = run(b.build()).unwrap();
                let label = format!("{style} {} {shape:?} perm {perm:?}: {:?}", dtype.name(), program.keys());
                assert_eq!(program.keys()[0].starts_with("transpose."), kernel, "{label}");
                let blocked = style == "register-blocked";
                assert_eq!(program.keys()[0].contains(".src4"), blocked && src4, "{label}");
                assert_eq!(program.keys()[0].contains(".out4"), blocked && out4, "{label}");
                run(program.run(ctx)).unwrap();
                let got = run(ctx.read_f32(&big)).unwrap();
                let st = strides(shape);
                let mut want = vec![0.0; n + 3 * row];
                for (i, w) in want[2 * row..2 * row + n].iter_mut().enumerate() {
                    let ix = unravel(i, &out_shape);
                    *w = x[perm.iter().enumerate().map(|(d, &p)| ix[d] * st[p]).sum::<usize>()];
                }
                assert_eq!(got, want, "{label}");
            }
        }
    }
}
