// Streaming attention: out = softmax(scale * q k^T) v, one invocation per query row, never
// materialising the [Lq, Lk] score matrix. Keys are visited in blocks of KB: the block's scores
// are computed first, then the running max, the running sum and the output accumulator are
// rescaled once per block (online softmax, as flash attention). No barriers. KB = 4.
//   q [B0, B1, Lq, D], k [B0, B1, Lk, D], v [B0, B1, Lk, Dv], out [B0, B1, Lq, Dv], all strided.
// The head is walked in DQ4 (= ceil(D/4)) and DV4 chunks of four: constant trip counts, so the
// query and the accumulator stay in registers (a dynamically indexed private array becomes
// per-lane scratch memory on CPU adapters, ~10x slower). VEC4: D and Dv are contiguous and
// 4-aligned, so each chunk is one vec4 load. A workgroup serves WG query rows of ONE batch entry
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
    let i = wid.x * WG + lid;
    if (b >= p.batches) {
        return;
    }
    // Rows past the end still run (on the last row) so that control flow stays uniform.
    let valid = i < p.lq;
    let i_row = min(i, p.lq - 1u);
    let b0 = b / p.batch1;
    let b1 = b % p.batch1;
    let q_base = p.offsets.x + b0 * p.q_strides.x + b1 * p.q_strides.y + i_row * p.q_strides.z;
    let k_base = p.offsets.y + b0 * p.k_strides.x + b1 * p.k_strides.y;
    let v_base = p.offsets.z + b0 * p.v_strides.x + b1 * p.v_strides.y;
    var qr: array<vec4<f32>, DQ4>;
    for (var c = 0u; c < DQ4; c++) {
        qr[c] = load_q(q_base, c) * p.scale;
    }
    var acc: array<vec4<f32>, DV4>;
    var m = bitcast<f32>(0xff800000u); // -inf
    var l = 0.0;
    for (var j0 = 0u; j0 < p.lk; j0 += 4u) {
        // Four keys at a time, each in its own registers; past the last key, recompute the last
        // one and mask its score to -inf.
        let last = p.lk - 1u;
        let k0 = k_base + min(j0, last) * p.k_strides.z;
        let k1 = k_base + min(j0 + 1u, last) * p.k_strides.z;
        let k2 = k_base + min(j0 + 2u, last) * p.k_strides.z;
        let k3 = k_base + min(j0 + 3u, last) * p.k_strides.z;
        var d0 = vec4<f32>(0.0);
        var d1 = vec4<f32>(0.0);
        var d2 = vec4<f32>(0.0);
        var d3 = vec4<f32>(0.0);
        for (var c = 0u; c < DQ4; c++) {
            let qc = qr[c];
            d0 += qc * load_k(k0, c);
            d1 += qc * load_k(k1, c);
            d2 += qc * load_k(k2, c);
            d3 += qc * load_k(k3, c);
        }
        let ones = vec4<f32>(1.0);
        let live = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) < vec4<u32>(p.lk);
        let s = select(vec4<f32>(bitcast<f32>(0xff800000u)),
                       vec4<f32>(dot(d0, ones), dot(d1, ones), dot(d2, ones), dot(d3, ones)), live);
        let bm = max(m, max(max(s.x, s.y), max(s.z, s.w)));
        // exp(-inf - finite) = 0 on the first block, which clears nothing yet accumulated.
        let correction = exp(m - bm);
        let e = exp(s - vec4<f32>(bm));
        l = l * correction + dot(e, ones);
        m = bm;
        let v0 = v_base + min(j0, last) * p.v_strides.z;
        let v1 = v_base + min(j0 + 1u, last) * p.v_strides.z;
        let v2 = v_base + min(j0 + 2u, last) * p.v_strides.z;
        let v3 = v_base + min(j0 + 3u, last) * p.v_strides.z;
        for (var c = 0u; c < DV4; c++) {
            acc[c] = acc[c] * correction + e.x * load_v(v0, c) + e.y * load_v(v1, c) + e.z * load_v(v2, c)
                + e.w * load_v(v3, c);
        }
    }
    if (!valid) {
        return;
    }
    let o_base = p.offsets.w + b0 * p.o_strides.x + b1 * p.o_strides.y + i * p.o_strides.z;
    let r = 1.0 / l;
    for (var c = 0u; c < DV4; c++) {
        for (var e = 0u; e < 4u; e++) {
            let col = c * 4u + e;
            if (col < p.dv) {
                out[o_base + col * p.o_strides.w] = acc[c][e] * r;
            }
        }
    }
}
