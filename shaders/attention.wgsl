// Streaming attention: out = softmax(scale * q k^T) v, one invocation per query row, never
// materialising the [Lq, Lk] score matrix. Keys are visited in blocks of KB: the block's scores
// are computed first, then the running max, the running sum and the output accumulator are
// rescaled once per block (online softmax, as flash attention). No barriers.
//   q [B0, B1, Lq, D], k [B0, B1, Lk, D], v [B0, B1, Lk, Dv], out [B0, B1, Lq, Dv], all strided.
#include "common"

const KB: u32 = 8u;

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
    rows: u32, // B0 * B1 * Lq
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = linear_index(wid, nwg, lid, WG);
    if (row >= p.rows) {
        return;
    }
    let i = row % p.lq;
    let b = row / p.lq;
    let b0 = b / p.batch1;
    let b1 = b % p.batch1;
    let q_base = p.offsets.x + b0 * p.q_strides.x + b1 * p.q_strides.y + i * p.q_strides.z;
    let k_base = p.offsets.y + b0 * p.k_strides.x + b1 * p.k_strides.y;
    let v_base = p.offsets.z + b0 * p.v_strides.x + b1 * p.v_strides.y;
    // The query, pre-scaled, lives in registers for the whole key sweep.
    var qr: array<f32, MAXD>;
    for (var c = 0u; c < p.d; c++) {
        qr[c] = q[q_base + c * p.q_strides.w] * p.scale;
    }
    var acc: array<f32, MAXD>;
    var m = bitcast<f32>(0xff800000u); // -inf
    var l = 0.0;
    var s: array<f32, KB>;
    for (var j0 = 0u; j0 < p.lk; j0 += KB) {
        let nb = min(KB, p.lk - j0);
        var bm = m;
        for (var t = 0u; t < nb; t++) {
            let kr = k_base + (j0 + t) * p.k_strides.z;
            var dot = 0.0;
            for (var c = 0u; c < p.d; c++) {
                dot += qr[c] * k[kr + c * p.k_strides.w];
            }
            s[t] = dot;
            bm = max(bm, dot);
        }
        // exp(-inf - finite) = 0 on the first block, which clears nothing yet accumulated.
        let correction = exp(m - bm);
        l *= correction;
        for (var c = 0u; c < p.dv; c++) {
            acc[c] *= correction;
        }
        m = bm;
        for (var t = 0u; t < nb; t++) {
            let e = exp(s[t] - m);
            l += e;
            let vr = v_base + (j0 + t) * p.v_strides.z;
            for (var c = 0u; c < p.dv; c++) {
                acc[c] += e * v[vr + c * p.v_strides.w];
            }
        }
    }
    let o_base = p.offsets.w + b0 * p.o_strides.x + b1 * p.o_strides.y + i * p.o_strides.z;
    let r = 1.0 / l;
    for (var c = 0u; c < p.dv; c++) {
        out[o_base + c * p.o_strides.w] = acc[c] * r;
    }
}
