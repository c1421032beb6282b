//! Streaming attention vs a CPU that materialises the full score matrix in f64: the register-
//! blocked kernel (CPU adapters) and, on a second device forced to `KernelStyle::Tiled`, the
//! GPU's flash-attention tiles with and without the key split.

use fifo_diffusion::gpu::ops::attention::{attention, Attention};
use fifo_diffusion::gpu::{DType, GpuContext, GpuTensor, ProgramBuilder, View};

use crate::{assert_close, ctx, run, tiled_ctx, Rng, F16, F32_TRANSCENDENTAL};

/// Element (b0, b1, row, col) of a strided view's data.
fn at(data: &[f32], v: &View, i: [usize; 4]) -> f64 {
    data[v.offset + (0..4).map(|d| i[d] * v.strides[d]).sum::<usize>()] as f64
}

fn cpu_attention(q: (&[f32], &View), k: (&[f32], &View), v: (&[f32], &View), scale: f32) -> Vec<f32> {
    let (b0, b1, lq, d) = (q.1.shape[0], q.1.shape[1], q.1.shape[2], q.1.shape[3]);
    let (lk, dv) = (k.1.shape[2], v.1.shape[3]);
    let mut out = Vec::new();
    for (x, y, i) in (0..b0).flat_map(|x| (0..b1).flat_map(move |y| (0..lq).map(move |i| (x, y, i)))) {
        let s: Vec<f64> = (0..lk)
            .map(|j| {
                (0..d).map(|c| at(q.0, q.1, [x, y, i, c]) * at(k.0, k.1, [x, y, j, c])).sum::<f64>()
                    * scale as f64
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for c in 0..dv {
            out.push(((0..lk).map(|j| e[j] * at(v.0, v.1, [x, y, j, c])).sum::<f64>() / z) as f32);
        }
    }
    out
}

/// One attention shape: batch, heads, query and key lengths, head sizes, layout.
#[derive(Clone, Copy)]
struct Shape {
    b: usize,
    h: usize,
    lq: usize,
    lk: usize,
    d: usize,
    dv: usize,
    /// torch's [B, L, H, D], permuted to [B, H, L, D] by the view.
    torch_layout: bool,
    /// One key/value head broadcast over all query heads.
    shared_kv: bool,
}

impl Shape {
    /// [B, H, L, D] tensors, one key/value head per query head.
    fn new(b: usize, h: usize, lq: usize, lk: usize, d: usize, dv: usize) -> Self {
        Shape { b, h, lq, lk, d, dv, torch_layout: false, shared_kv: false }
    }
    fn torch_layout(self) -> Self {
        Shape { torch_layout: true, ..self }
    }
    fn shared_kv(self) -> Self {
        Shape { shared_kv: true, ..self }
    }
}

fn case(shape: Shape, seed: u64) {
    let Some(ctx) = ctx() else { return };
    let keys = check(ctx, shape, DType::F32, seed);
    let Shape { lq, d, dv, .. } = shape;
    // Short sequences pack several batch entries into a workgroup (64 invocations of up to 4 rows).
    let rows = if d.max(dv) <= 64 {
        4
    } else if d.max(dv) <= 128 {
        2
    } else {
        1
    };
    assert_eq!(keys[0].contains(".packed"), lq < rows * 64, "{keys:?}");
}

/// Runs one shape with `dtype` storage (q, k, v and out) on `ctx` against the f64 reference (on
/// the inputs as stored); returns the program's kernel keys.
fn check(ctx: &GpuContext, s: Shape, dtype: DType, seed: u64) -> Vec<String> {
    let Shape { b, h, lq, lk, d, dv, torch_layout, shared_kv } = s;
    let mut rng = Rng::new(seed);
    let hk = if shared_kv { 1 } else { h };
    let stored = |x: Vec<f32>| -> Vec<f32> {
        if dtype == DType::F16 {
            x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
        } else {
            x
        }
    };
    let qd = stored(rng.vec(b * h * lq * d, -2.0, 2.0));
    let kd = stored(rng.vec(b * hk * lk * d, -2.0, 2.0));
    let vd = stored(rng.vec(b * hk * lk * dv, -1.0, 1.0));
    let (gq, gk, gv) = (
        GpuTensor::from_f32_as(ctx, "q", dtype, &qd).unwrap(),
        GpuTensor::from_f32_as(ctx, "k", dtype, &kd).unwrap(),
        GpuTensor::from_f32_as(ctx, "v", dtype, &vd).unwrap(),
    );
    // torch keeps [B, L, H, D]; the kernel sees [B, H, L, D] through a permuted view.
    let view = |t: &GpuTensor, heads: usize, l: usize, dd: usize| {
        if torch_layout {
            t.view(&[b, l, heads, dd]).permute(&[0, 2, 1, 3]).unwrap()
        } else {
            t.view(&[b, heads, l, dd])
        }
    };
    let (q, k, v) = (view(&gq, h, lq, d), view(&gk, hk, lk, d), view(&gv, hk, lk, dv));
    let out = GpuTensor::new(ctx, "out", dtype, b * h * lq * dv).unwrap();
    let scale = 1.0 / (d as f32).sqrt();
    let mut pb = ProgramBuilder::new(ctx);
    attention(
        &mut pb,
        &Attention { q: q.clone(), k: k.clone(), v: v.clone(), out: out.view(&[b, h, lq, dv]), scale },
    )
    .unwrap();
    let program = run(pb.build()).unwrap();
    let keys: Vec<String> = program.keys().iter().map(|k| k.to_string()).collect();
    run(program.run(ctx)).unwrap();
    let kb = k.broadcast_to(&[b, h, lk, d]).unwrap();
    let vb = v.broadcast_to(&[b, h, lk, dv]).unwrap();
    let want = cpu_attention((&qd, &q), (&kd, &kb), (&vd, &vb), scale);
    // f16 storage: the output's rounding (the arithmetic is f32 either way).
    let tol = if dtype == DType::F16 { F16 } else { F32_TRANSCENDENTAL.accumulating(lk + d) };
    assert_close(
        &format!("attention {} b{b} h{h} lq{lq} lk{lk} d{d} dv{dv} {keys:?}", dtype.name()),
        &run(ctx.read_f32(&out)).unwrap(),
        &want,
        tol,
    );
    keys
}

#[test]
fn odd_lengths_not_multiple_of_the_key_block() {
    case(Shape::new(2, 3, 5, 19, 7, 6), 70);
}

#[test]
fn torch_layout_and_head_sizes_40_80_160() {
    case(Shape::new(1, 2, 9, 11, 40, 40).torch_layout(), 71);
    case(Shape::new(1, 1, 3, 17, 80, 80).torch_layout(), 72);
    // Stable Diffusion's 160 (one row per invocation).
    case(Shape::new(1, 2, 5, 9, 160, 160).torch_layout(), 75);
}

#[test]
fn keys_and_values_shared_across_heads() {
    case(Shape::new(2, 4, 6, 9, 16, 8).shared_kv(), 73);
}

#[test]
fn sharp_scores_do_not_overflow() {
    // Scores of ~+-400 would overflow exp without the running max.
    case(Shape::new(1, 1, 4, 33, 64, 32), 74);
}

#[test]
fn long_queries_take_one_batch_entry_per_workgroup() {
    case(Shape::new(1, 2, 300, 7, 16, 16), 76);
    case(Shape::new(2, 1, 70, 5, 160, 160).torch_layout(), 77);
}

#[test]
fn many_short_sequences_pack_into_workgroups() {
    // Temporal attention: 120 entries of 8 frames; the last workgroup is partly past the end.
    case(Shape::new(3, 40, 8, 8, 32, 32), 78);
    case(Shape::new(5, 7, 3, 5, 12, 8).torch_layout().shared_kv(), 79);
}

/// Long query sequences on a CPU adapter whose subgroups are 8 lanes take the kernel whose lanes
/// share each load of 8 keys ("sg8"): key counts below, at and past a multiple of 8, head sizes
/// 16 to 160, unequal D and Dv, the torch layout (vec4 loads), shared keys, scores sharp enough to
/// overflow exp without the running max, f16 storage; and the same shapes without subgroups.
#[test]
fn subgroups_share_key_loads_on_long_queries() {
    let Some(ctx) = ctx() else { return };
    let plain = crate::no_subgroups_ctx().expect("a second device on the adapter");
    let shapes = [
        Shape::new(1, 2, 260, 19, 40, 40).torch_layout(),
        Shape::new(2, 1, 300, 8, 16, 8),
        Shape::new(1, 2, 130, 33, 80, 80).shared_kv(),
        Shape::new(1, 1, 64, 17, 160, 160).torch_layout(),
        Shape::new(1, 1, 256, 45, 64, 32),
    ];
    let sg8 = ctx.fixed_subgroup_size() == Some(8);
    for (seed, shape) in (80..).zip(shapes) {
        let keys = check(ctx, shape, DType::F32, seed);
        assert_eq!(keys[0].contains(".sg8"), sg8, "{keys:?}");
        assert!(!keys[0].contains(".packed"), "{keys:?}");
        let keys = check(plain, shape, DType::F32, seed);
        assert!(!keys[0].contains(".sg8"), "{keys:?}");
        if ctx.has_shader_f16() {
            check(ctx, shape, DType::F16, seed);
        }
    }
}

/// What the tiled kernel is checked on: (shape, expect the key split).
fn tiled_shapes() -> Vec<(Shape, bool)> {
    vec![
        // The peer benchmark's spatial attention (one head): 16 row blocks, keys split 8 ways.
        (Shape::new(1, 1, 1024, 1024, 40, 40), true),
        // Odd head sizes (not multiples of 4: scalar loads), lengths not multiples of the tile.
        (Shape::new(1, 1, 7, 13, 5, 3), false),
        // Temporal-like: 512 entries of 8 frames, head 64 over 8 lanes per row, no split.
        (Shape::new(8, 64, 8, 8, 64, 64).torch_layout(), false),
        // Split with a ragged last range (300 keys in ranges of 160), torch layout, shared K/V.
        (Shape::new(1, 3, 33, 300, 12, 20).torch_layout().shared_kv(), true),
        // One query, one key.
        (Shape::new(2, 1, 1, 1, 8, 8), false),
        // One query, many keys: split, with lanes sharing the row.
        (Shape::new(1, 2, 1, 1000, 16, 16), true),
        // Head 160 (four lanes for the registers, tile of 8), split, torch layout.
        (Shape::new(1, 2, 5, 600, 160, 160).torch_layout(), true),
        // Long queries over a few keys: one entry per workgroup, no split.
        (Shape::new(2, 1, 70, 5, 160, 160).torch_layout(), false),
    ]
}

fn tiled_case(dtype: DType) {
    let Some(ctx) = tiled_ctx() else { return };
    if dtype == DType::F16 && !ctx.has_shader_f16() {
        eprintln!("SKIPPING f16 tiled attention: {} has no shader-f16", ctx.describe());
        return;
    }
    for (i, (shape, split)) in tiled_shapes().into_iter().enumerate() {
        let keys = check(ctx, shape, dtype, 90 + i as u64);
        assert!(keys[0].contains(".tiled."), "{keys:?}");
        assert_eq!(keys.len(), if split { 2 } else { 1 }, "{keys:?}");
        assert_eq!(keys[0].contains(".split"), split, "{keys:?}");
        if split {
            assert!(keys[1].contains(".combine"), "{keys:?}");
        }
    }
}

#[test]
fn tiled_matches_the_reference_f32() {
    tiled_case(DType::F32);
}

#[test]
fn tiled_matches_the_reference_f16() {
    tiled_case(DType::F16);
}

#[test]
fn sharp_scores_do_not_overflow_tiled() {
    // A split into five ranges over 16 lanes per row: the ranges' maxima differ.
    let Some(ctx) = tiled_ctx() else { return };
    let shape = Shape::new(1, 1, 4, 330, 64, 32);
    let keys = check(ctx, shape, DType::F32, 74);
    assert!(keys[0].contains(".split"), "{keys:?}");
}
