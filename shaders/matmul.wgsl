// Batched matmul with broadcasting through strides (two batch dims after collapsing):
//   out[b, m, n] = act(alpha * sum_k a[b, m, k] * w[b, k, n] * scale[n] + beta * d[b, m, n] + bias[n])
//                  + res[b, m, n]   (HAS_RES: a residual, broadcast through its strides)
// Any M, N, K (edges are clamped on load and masked on store). Variants:
//   RB4X4: each invocation keeps a 4x4 block in registers, no barriers (CPU adapters).
//   RB4X4V: the same with vec4 loads along K (and along N when the weights are N-contiguous):
//          a quarter of the loads, for contiguous 4-aligned operands (CPU adapters).
//   TILED: 64x64 workgroup tiles through workgroup memory, 4x4 per invocation (GPUs).
// Products and sums are f32 in every variant, whatever the storage (A_T: f32 or f16 activations;
// weights f32, f16 or int8): operands are converted on load (into the tiles for TILED). An f16
// product loses what falls below f16's normal range (2^-14) and rounds to 2^-11 relative; a K
// of several thousand summed in f16 loses about sqrt(K) * 2^-11. f32 keeps f16 mode within the
// f16 rounding of its inputs. OUT_T and D_T are the output's and Gemm C's storage types.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    a_strides: vec4<u32>, // batch0, batch1, m, k
    w_strides: vec4<u32>, // batch0, batch1, k, n
    o_strides: vec4<u32>, // batch0, batch1, m, n
    d_strides: vec4<u32>, // batch0, batch1, m, n
    r_strides: vec4<u32>, // batch0, batch1, m, n
    offsets: vec4<u32>,   // a, w, out, d
    m: u32,
    n: u32,
    k: u32,
    batch1: u32,
    alpha: f32,
    beta: f32,
    act_alpha: f32,
    r_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in_a: array<A_T>;
#include "weights"
#ifdef HAS_BIAS
@group(0) @binding(BIND_BIAS) var<storage, read> bias: array<f32>;
#endif
#ifdef HAS_D
@group(0) @binding(BIND_D) var<storage, read> dmat: array<D_T>;
#endif
#ifdef HAS_RES
@group(0) @binding(BIND_RES) var<storage, read> res: array<R_T>;
#endif
#ifdef OUT_VEC4
// SG8 with an output contiguous along N in rows of whole vec4s: one store per four columns.
@group(0) @binding(BIND_OUT) var<storage, read_write> out: array<vec4<OUT_T>>;
#else
@group(0) @binding(BIND_OUT) var<storage, read_write> out: array<OUT_T>;
#endif

// The epilogue of one output element: scales, alpha, beta * C, bias, activation, residual.
fn finish(b0: u32, b1: u32, row: u32, col: u32, acc: f32) -> f32 {
    var v = acc;
#ifdef W_I8
    v *= scales[col];
#endif
    v *= p.alpha;
#ifdef HAS_D
    v += p.beta * f32(dmat[p.offsets.w + b0 * p.d_strides.x + b1 * p.d_strides.y + row * p.d_strides.z + col * p.d_strides.w]);
#endif
#ifdef HAS_BIAS
    v += bias[col];
#endif
    v = activation(v, p.act_alpha);
#ifdef HAS_RES
    v += f32(res[p.r_offset + b0 * p.r_strides.x + b1 * p.r_strides.y + row * p.r_strides.z + col * p.r_strides.w]);
#endif
    return v;
}

#ifdef OUT_VEC4
// Columns col..col+3 of one row (col a multiple of 4, all four inside the output).
fn store4(b0: u32, b1: u32, row: u32, col: u32, acc: vec4<f32>) {
    let v = vec4<f32>(finish(b0, b1, row, col, acc.x), finish(b0, b1, row, col + 1u, acc.y),
                      finish(b0, b1, row, col + 2u, acc.z), finish(b0, b1, row, col + 3u, acc.w));
    let at = p.offsets.z + b0 * p.o_strides.x + b1 * p.o_strides.y + row * p.o_strides.z + col;
    out[at >> 2u] = vec4<OUT_T>(v);
}
#else
fn store(b0: u32, b1: u32, row: u32, col: u32, acc: f32) {
    let at = p.offsets.z + b0 * p.o_strides.x + b1 * p.o_strides.y + row * p.o_strides.z + col * p.o_strides.w;
    out[at] = OUT_T(finish(b0, b1, row, col, acc));
}
#endif

#ifdef RB4X4
@compute @workgroup_size(WGX, WGY)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b0 = gid.z / p.batch1;
    let b1 = gid.z % p.batch1;
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    if (row0 >= p.m || col0 >= p.n) {
        return;
    }
    let a_base = p.offsets.x + b0 * p.a_strides.x + b1 * p.a_strides.y;
    let w_base = p.offsets.y + b0 * p.w_strides.x + b1 * p.w_strides.y;
    // Edge rows/columns repeat the last valid one; their results are never stored. Named
    // registers: one dynamic index anywhere sends a private array to scratch memory on CPU
    // adapters that do not unroll (SwiftShader).
    let arow0 = a_base + min(row0, p.m - 1u) * p.a_strides.z;
    let arow1 = a_base + min(row0 + 1u, p.m - 1u) * p.a_strides.z;
    let arow2 = a_base + min(row0 + 2u, p.m - 1u) * p.a_strides.z;
    let arow3 = a_base + min(row0 + 3u, p.m - 1u) * p.a_strides.z;
    let wcol0 = w_base + min(col0, p.n - 1u) * p.w_strides.w;
    let wcol1 = w_base + min(col0 + 1u, p.n - 1u) * p.w_strides.w;
    let wcol2 = w_base + min(col0 + 2u, p.n - 1u) * p.w_strides.w;
    let wcol3 = w_base + min(col0 + 3u, p.n - 1u) * p.w_strides.w;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let ak = k * p.a_strides.w;
        let wk = k * p.w_strides.z;
        let w = vec4<f32>(load_w(wcol0 + wk), load_w(wcol1 + wk), load_w(wcol2 + wk), load_w(wcol3 + wk));
        acc0 += f32(in_a[arow0 + ak]) * w;
        acc1 += f32(in_a[arow1 + ak]) * w;
        acc2 += f32(in_a[arow2 + ak]) * w;
        acc3 += f32(in_a[arow3 + ak]) * w;
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            if (row0 + i < p.m && col0 + j < p.n) {
                store(b0, b1, row0 + i, col0 + j, acc[i][j]);
            }
        }
    }
}
#endif

#ifdef RB4X4V
// A is [.., M, K] with K contiguous; W is N-contiguous (W_ALONG_N) or K-contiguous. All the
// strides and offsets are multiples of 4 (checked by the caller), so vec4 indices are exact;
// `load_w4` reads four weights of any storage type (f32, f16, int8) at once.
@compute @workgroup_size(WGX, WGY)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b0 = gid.z / p.batch1;
    let b1 = gid.z % p.batch1;
    let row0 = gid.y * 4u;
    let col0 = gid.x * 4u;
    if (row0 >= p.m || col0 >= p.n) {
        return;
    }
    let a_base = p.offsets.x + b0 * p.a_strides.x + b1 * p.a_strides.y;
    let w_base = p.offsets.y + b0 * p.w_strides.x + b1 * p.w_strides.y;
    // Named registers throughout: a dynamically indexed private array becomes scratch memory on
    // CPU adapters that do not unroll (SwiftShader).
    let a0r = ((a_base + min(row0, p.m - 1u) * p.a_strides.z) >> 2u);
    let a1r = ((a_base + min(row0 + 1u, p.m - 1u) * p.a_strides.z) >> 2u);
    let a2r = ((a_base + min(row0 + 2u, p.m - 1u) * p.a_strides.z) >> 2u);
    let a3r = ((a_base + min(row0 + 3u, p.m - 1u) * p.a_strides.z) >> 2u);
    var acc0 = vec4<f32>(0.0); // row0, four columns
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
#ifndef W_ALONG_N
    let w0c = (w_base + min(col0, p.n - 1u) * p.w_strides.w) >> 2u;
    let w1c = (w_base + min(col0 + 1u, p.n - 1u) * p.w_strides.w) >> 2u;
    let w2c = (w_base + min(col0 + 2u, p.n - 1u) * p.w_strides.w) >> 2u;
    let w3c = (w_base + min(col0 + 3u, p.n - 1u) * p.w_strides.w) >> 2u;
#endif
    for (var k4 = 0u; k4 < p.k / 4u; k4++) {
        let a0 = vec4<f32>(in_a[a0r + k4]);
        let a1 = vec4<f32>(in_a[a1r + k4]);
        let a2 = vec4<f32>(in_a[a2r + k4]);
        let a3 = vec4<f32>(in_a[a3r + k4]);
#ifdef W_ALONG_N
        // Rows k..k+3 of W, four columns each.
        let wr = (w_base + k4 * 4u * p.w_strides.z + col0) >> 2u;
        let step = p.w_strides.z >> 2u;
        let w0 = load_w4(wr);
        let w1 = load_w4(wr + step);
        let w2 = load_w4(wr + 2u * step);
        let w3 = load_w4(wr + 3u * step);
        acc0 += a0.x * w0 + a0.y * w1 + a0.z * w2 + a0.w * w3;
        acc1 += a1.x * w0 + a1.y * w1 + a1.z * w2 + a1.w * w3;
        acc2 += a2.x * w0 + a2.y * w1 + a2.z * w2 + a2.w * w3;
        acc3 += a3.x * w0 + a3.y * w1 + a3.z * w2 + a3.w * w3;
#else
        // Columns col0..col0+3 of W, four K values each.
        let w0 = load_w4(w0c + k4);
        let w1 = load_w4(w1c + k4);
        let w2 = load_w4(w2c + k4);
        let w3 = load_w4(w3c + k4);
        acc0 += vec4<f32>(dot(a0, w0), dot(a0, w1), dot(a0, w2), dot(a0, w3));
        acc1 += vec4<f32>(dot(a1, w0), dot(a1, w1), dot(a1, w2), dot(a1, w3));
        acc2 += vec4<f32>(dot(a2, w0), dot(a2, w1), dot(a2, w2), dot(a2, w3));
        acc3 += vec4<f32>(dot(a3, w0), dot(a3, w1), dot(a3, w2), dot(a3, w3));
#endif
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            if (row0 + i < p.m && col0 + j < p.n) {
                store(b0, b1, row0 + i, col0 + j, acc[i][j]);
            }
        }
    }
}
#endif

#ifdef SG8
// One K step of one row: a's 4 values (K) times this lane's 4 columns' weights w0..w3, which
// are rows k..k+3 of W (W_ALONG_N) or its columns' 4 values along K.
fn row_step(a: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> vec4<f32> {
#ifdef W_ALONG_N
    return a.x * w0 + a.y * w1 + a.z * w2 + a.w * w3;
#else
    return vec4<f32>(dot(a, w0), dot(a, w1), dot(a, w2), dot(a, w3));
#endif
}

// RB4X4V's layouts (A K-contiguous, W N- or K-contiguous, 4-aligned) for CPU adapters whose
// subgroups are 8 SIMD lanes (llvmpipe on AVX2). Such an adapter runs a storage-buffer load
// lane by lane, so loads, not multiply-adds, bound a matmul. One workgroup is one subgroup; it
// computes 8 rows x 32 columns. Each K step every lane loads one row's 4 values of A (its own
// row: 8 distinct rows in one load) and 4 values of W for each of its 4 columns, and takes the
// other rows' A values from their lanes by subgroupBroadcast (a register move): 5 loads per 128
// multiply-adds, against RB4X4V's 8 per 64. No lane returns early: the broadcasts need them all.
@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let b0 = wid.z / p.batch1;
    let b1 = wid.z % p.batch1;
    let row0 = wid.y * 8u;
    let col0 = (wid.x * 8u + lane) * 4u;
    let a_base = p.offsets.x + b0 * p.a_strides.x + b1 * p.a_strides.y;
    let w_base = p.offsets.y + b0 * p.w_strides.x + b1 * p.w_strides.y;
    // Rows and columns past the edge repeat the last valid one; their results are not stored.
    let ar = (a_base + min(row0 + lane, p.m - 1u) * p.a_strides.z) >> 2u;
    var acc0 = vec4<f32>(0.0); // row0, this lane's four columns
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
#ifdef W_ALONG_N
    let colw = min(col0, p.n - 4u);
    let step = p.w_strides.z >> 2u;
#else
    let w0c = (w_base + min(col0, p.n - 1u) * p.w_strides.w) >> 2u;
    let w1c = (w_base + min(col0 + 1u, p.n - 1u) * p.w_strides.w) >> 2u;
    let w2c = (w_base + min(col0 + 2u, p.n - 1u) * p.w_strides.w) >> 2u;
    let w3c = (w_base + min(col0 + 3u, p.n - 1u) * p.w_strides.w) >> 2u;
#endif
    for (var k4 = 0u; k4 < p.k / 4u; k4++) {
        let av = vec4<f32>(in_a[ar + k4]);
#ifdef W_ALONG_N
        let wr = (w_base + k4 * 4u * p.w_strides.z + colw) >> 2u;
        let w0 = load_w4(wr);
        let w1 = load_w4(wr + step);
        let w2 = load_w4(wr + 2u * step);
        let w3 = load_w4(wr + 3u * step);
#else
        let w0 = load_w4(w0c + k4);
        let w1 = load_w4(w1c + k4);
        let w2 = load_w4(w2c + k4);
        let w3 = load_w4(w3c + k4);
#endif
        acc0 += row_step(subgroupBroadcast(av, 0u), w0, w1, w2, w3);
        acc1 += row_step(subgroupBroadcast(av, 1u), w0, w1, w2, w3);
        acc2 += row_step(subgroupBroadcast(av, 2u), w0, w1, w2, w3);
        acc3 += row_step(subgroupBroadcast(av, 3u), w0, w1, w2, w3);
        acc4 += row_step(subgroupBroadcast(av, 4u), w0, w1, w2, w3);
        acc5 += row_step(subgroupBroadcast(av, 5u), w0, w1, w2, w3);
        acc6 += row_step(subgroupBroadcast(av, 6u), w0, w1, w2, w3);
        acc7 += row_step(subgroupBroadcast(av, 7u), w0, w1, w2, w3);
    }
    let acc = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
#ifdef OUT_VEC4
    for (var i = 0u; i < 8u; i++) {
        if (row0 + i < p.m && col0 < p.n) {
            store4(b0, b1, row0 + i, col0, acc[i]);
        }
    }
#else
    for (var i = 0u; i < 8u; i++) {
        for (var j = 0u; j < 4u; j++) {
            if (row0 + i < p.m && col0 + j < p.n) {
                store(b0, b1, row0 + i, col0 + j, acc[i][j]);
            }
        }
    }
#endif
}
#endif

#ifdef TILED
const TILE: u32 = 64u;
const BK: u32 = 16u;
// Quads of 4 rows (of A) and 4 columns (of W) per K step: every invocation reads one vec4 of each
// per step (2 workgroup-memory reads per 16 multiply-adds).
var<workgroup> tile_a: array<vec4<f32>, 256>; // [k][row / 4]
var<workgroup> tile_w: array<vec4<f32>, 256>; // [k][col / 4]

// Element (row, col) of A or W through strides, 0 outside `rows` x `cols`.
fn a_at(base: u32, row: u32, k: u32) -> f32 {
    if (row >= p.m || k >= p.k) {
        return 0.0;
    }
    return f32(in_a[base + row * p.a_strides.z + k * p.a_strides.w]);
}
fn w_at(base: u32, k: u32, col: u32) -> f32 {
    if (k >= p.k || col >= p.n) {
        return 0.0;
    }
    return load_w(base + k * p.w_strides.z + col * p.w_strides.w);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let b0 = wid.z / p.batch1;
    let b1 = wid.z % p.batch1;
    let row_base = wid.y * TILE;
    let col_base = wid.x * TILE;
    let a_base = p.offsets.x + b0 * p.a_strides.x + b1 * p.a_strides.y;
    let w_base = p.offsets.y + b0 * p.w_strides.x + b1 * p.w_strides.y;
    // This invocation fills row quad `t / 16` of A's tile at k `t % 16` (consecutive invocations
    // read consecutive k), and column quad `t % 16` of W's tile at k `t / 16` (consecutive
    // invocations read consecutive columns).
    let ar = row_base + 4u * (t / BK);
    let ak = t % BK;
    let wc = col_base + 4u * (t % 16u);
    let wk = t / 16u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        let ka = k0 + ak;
        tile_a[ak * 16u + t / BK] =
            vec4<f32>(a_at(a_base, ar, ka), a_at(a_base, ar + 1u, ka), a_at(a_base, ar + 2u, ka), a_at(a_base, ar + 3u, ka));
        let kw = k0 + wk;
        tile_w[t] = vec4<f32>(w_at(w_base, kw, wc), w_at(w_base, kw, wc + 1u), w_at(w_base, kw, wc + 2u), w_at(w_base, kw, wc + 3u));
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a = tile_a[kk * 16u + lid.y];
            let w = tile_w[kk * 16u + lid.x];
            acc[0] += a.x * w;
            acc[1] += a.y * w;
            acc[2] += a.z * w;
            acc[3] += a.w * w;
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let row = row_base + lid.y * 4u + i;
            let col = col_base + lid.x * 4u + j;
            if (row < p.m && col < p.n) {
                store(b0, b1, row, col, acc[i][j]);
            }
        }
    }
}
#endif
