// Streaming attention: out = softmax(scale * q k^T) v, one invocation per query row, never
// materialising the [Lq, Lk] score matrix. Keys are visited in blocks of KB: the block's scores
// are computed first, then the running max, the running sum and the output accumulator are
// rescaled once per block (online softmax, as flash attention). No barriers. Blocks are two
// keys, and each invocation serves two query rows, so every key/value load feeds both.
//   q [B0, B1, Lq, D], k [B0, B1, Lk, D], v [B0, B1, Lk, Dv], out [B0, B1, Lq, Dv], all strided.
// The head is walked in DQ4 (= ceil(D/4)) and DV4 chunks of four: constant trip counts, so the
// query and the accumulator stay in registers (a dynamically indexed private array becomes
// per-lane scratch memory on CPU adapters, ~10x slower). VEC4: D and Dv are contiguous and
// 4-aligned, so each chunk is one vec4 load. A workgroup serves 2*WG query rows of ONE batch entry
// (x: row blocks, y and z: batch), so the key and value addresses are the same for every
// invocation: CPU adapters then load each key once for all lanes instead of gathering per lane.
#include "common"

struct Params {
    q_strides: vec4<u32>, // b0, b1, row, col
    k_strides: vec4<u32>,
    v_strides: vec4<u32>,
    o_strides: vec4<u32>,
    offsets: vec4<u32>, // q, k, v, out
    lq: u32,
    lk: u32,
    d: u32,
    dv: u32,
    batch1: u32,
    batches: u32, // B0 * B1
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#ifdef VEC4
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
#endif
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Chunk c4 of a row starting at element `base`; elements past `n` read as 0.
fn load_q(base: u32, c4: u32) -> vec4<f32> {
#ifdef VEC4
    return q[(base >> 2u) + c4];
#else
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let c = c4 * 4u + i;
        r[i] = select(0.0, q[base + min(c, p.d - 1u) * p.q_strides.w], c < p.d);
    }
    return r;
#endif
}

fn load_k(base: u32, c4: u32) -> vec4<f32> {
#ifdef VEC4
    return k[(base >> 2u) + c4];
#else
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let c = c4 * 4u + i;
        r[i] = select(0.0, k[base + min(c, p.d - 1u) * p.k_strides.w], c < p.d);
    }
    return r;
#endif
}

fn load_v(base: u32, c4: u32) -> vec4<f32> {
#ifdef VEC4
    return v[(base >> 2u) + c4];
#else
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let c = c4 * 4u + i;
        r[i] = select(0.0, v[base + min(c, p.dv - 1u) * p.v_strides.w], c < p.dv);
    }
    return r;
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = wid.z * 65535u + wid.y;
    if (b >= p.batches) {
        return;
    }
    // Two query rows per invocation (WG apart), so every key and value loaded serves both.
    // Rows past the end still run (on the last row) so that control flow stays uniform.
    let rows = vec2<u32>(wid.x * 2u * WG + lid, wid.x * 2u * WG + WG + lid);
    let b0 = b / p.batch1;
    let b1 = b % p.batch1;
    let k_base = p.offsets.y + b0 * p.k_strides.x + b1 * p.k_strides.y;
    let v_base = p.offsets.z + b0 * p.v_strides.x + b1 * p.v_strides.y;
    var qa: array<vec4<f32>, DQ4>;
    var qb: array<vec4<f32>, DQ4>;
    let qa_base = p.offsets.x + b0 * p.q_strides.x + b1 * p.q_strides.y + min(rows.x, p.lq - 1u) * p.q_strides.z;
    let qb_base = p.offsets.x + b0 * p.q_strides.x + b1 * p.q_strides.y + min(rows.y, p.lq - 1u) * p.q_strides.z;
    for (var c = 0u; c < DQ4; c++) {
        qa[c] = load_q(qa_base, c) * p.scale;
        qb[c] = load_q(qb_base, c) * p.scale;
    }
    var acc_a: array<vec4<f32>, DV4>;
    var acc_b: array<vec4<f32>, DV4>;
    let neg_inf = bitcast<f32>(0xff800000u);
    var m = vec2<f32>(neg_inf); // running max of rows a, b
    var l = vec2<f32>(0.0);
    let ones = vec4<f32>(1.0);
    let last = p.lk - 1u;
    for (var j0 = 0u; j0 < p.lk; j0 += 2u) {
        // Two keys at a time; past the last key, recompute it and mask its score to -inf.
        let k0 = k_base + j0 * p.k_strides.z;
        let k1 = k_base + min(j0 + 1u, last) * p.k_strides.z;
        var a0 = vec4<f32>(0.0);
        var a1 = vec4<f32>(0.0);
        var b0_ = vec4<f32>(0.0);
        var b1_ = vec4<f32>(0.0);
        for (var c = 0u; c < DQ4; c++) {
            let x0 = load_k(k0, c);
            let x1 = load_k(k1, c);
            a0 += qa[c] * x0;
            a1 += qa[c] * x1;
            b0_ += qb[c] * x0;
            b1_ += qb[c] * x1;
        }
        let second = j0 + 1u < p.lk;
        // s.xy: row a's two scores; s.zw: row b's.
        let s = vec4<f32>(dot(a0, ones), select(neg_inf, dot(a1, ones), second), dot(b0_, ones),
                          select(neg_inf, dot(b1_, ones), second));
        let bm = max(m, max(s.xz, s.yw));
        // exp(-inf - finite) = 0 on the first block, which clears nothing yet accumulated.
        let correction = exp(m - bm);
        let e = exp(s - vec4<f32>(bm.x, bm.x, bm.y, bm.y));
        l = l * correction + vec2<f32>(e.x + e.y, e.z + e.w);
        m = bm;
        let v0 = v_base + j0 * p.v_strides.z;
        let v1 = v_base + min(j0 + 1u, last) * p.v_strides.z;
        for (var c = 0u; c < DV4; c++) {
            let y0 = load_v(v0, c);
            let y1 = load_v(v1, c);
            acc_a[c] = acc_a[c] * correction.x + e.x * y0 + e.y * y1;
            acc_b[c] = acc_b[c] * correction.y + e.z * y0 + e.w * y1;
        }
    }
    let r = 1.0 / l;
    let o_batch = p.offsets.w + b0 * p.o_strides.x + b1 * p.o_strides.y;
    for (var c = 0u; c < DV4; c++) {
        for (var e = 0u; e < 4u; e++) {
            let col = c * 4u + e;
            if (col < p.dv && rows.x < p.lq) {
                out[o_batch + rows.x * p.o_strides.z + col * p.o_strides.w] = acc_a[c][e] * r.x;
            }
            if (col < p.dv && rows.y < p.lq) {
                out[o_batch + rows.y * p.o_strides.z + col * p.o_strides.w] = acc_b[c][e] * r.y;
            }
        }
    }
}
