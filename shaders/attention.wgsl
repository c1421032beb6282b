// Streaming attention: out = softmax(scale * q k^T) v, never materialising the [Lq, Lk] score
// matrix. Keys are visited two at a time: their scores first, then the running max, the running
// sum and the output accumulator are rescaled (online softmax, as flash attention). No barriers.
//   q [B0, B1, Lq, D], k [B0, B1, Lk, D], v [B0, B1, Lk, Dv], out [B0, B1, Lq, Dv], all strided.
// Register blocking for CPU adapters:
// - each invocation serves ROWS query rows (WG apart), so every key/value load feeds them all;
// - the head is walked in DQ4 (= ceil(D/4)) and DV4 chunks of four with constant trip counts, so
//   queries and accumulators stay in registers (a dynamically indexed private array becomes
//   per-lane scratch memory on CPU adapters, ~10x slower); VEC4: D and Dv are contiguous and
//   4-aligned, so each chunk is one vec4 load;
// - a workgroup serves ROWS*WG query rows of ONE batch entry (x: row blocks, y and z: batch), so
//   key and value addresses are the same for every invocation of the workgroup;
// - PACKED, for sequences shorter than that (temporal attention over a few frames, small spatial
//   levels): each invocation takes ROWS consecutive rows of one entry and a workgroup spans
//   entries, where the layout above would leave most invocations idle on clamped rows.
// TILED (GPUs, flash-attention style; see the section below): a workgroup serves one batch entry
// and a block of query rows, key/value tiles go through workgroup memory, and the keys may be
// split over several workgroups whose partial results COMBINE merges.
#ifdef ENABLE_F16
enable f16;
#endif
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
    splits: u32, // TILED: key ranges (workgroups along the keys) per row block
    chunk: u32,  // TILED: keys per range, a multiple of BK
    row_blocks: u32, // TILED: workgroups along the query rows
    _pad0: u32,
    _pad1: u32,
}

// Q_T, K_T, V_T, OUT_T: storage types (f32, or f16 where the adapter has shader-f16). Loads
// convert to f32: the scores, the running max and sum and the weighted values are f32 (an
// f16 running sum over thousands of keys, or exp of an f16 score, would lose what f32 keeps).
@group(0) @binding(0) var<uniform> p: Params;
#ifdef COMBINE
// Merges the key ranges of TILED + SPLIT: one invocation per output element.
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<OUT_T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.batches * p.lq * p.dv) {
        return;
    }
    let col = i % p.dv;
    let row = (i / p.dv) % p.lq;
    let b = i / p.dv / p.lq;
    let stride = p.dv + 2u;
    let base = (b * p.lq + row) * p.splits * stride;
    var mx = -3.0e38;
    for (var r = 0u; r < p.splits; r++) {
        mx = max(mx, part[base + r * stride]);
    }
    var l = 0.0;
    var o = 0.0;
    for (var r = 0u; r < p.splits; r++) {
        let at = base + r * stride;
        let w = exp(part[at] - mx);
        l += part[at + 1u] * w;
        o += part[at + 2u + col] * w;
    }
    let b0 = b / p.batch1;
    let b1 = b % p.batch1;
    out[p.offsets.w + b0 * p.o_strides.x + b1 * p.o_strides.y + row * p.o_strides.z + col * p.o_strides.w] =
        OUT_T(o / l);
}
#else
#ifdef VEC4
@group(0) @binding(1) var<storage, read> q: array<vec4<Q_T>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<K_T>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<V_T>>;
#else
@group(0) @binding(1) var<storage, read> q: array<Q_T>;
@group(0) @binding(2) var<storage, read> k: array<K_T>;
@group(0) @binding(3) var<storage, read> v: array<V_T>;
#endif
#ifdef SPLIT
// Partial results of each key range: [batch, row, range] x (max, sum, Dv accumulators), f32.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#else
@group(0) @binding(4) var<storage, read_write> out: array<OUT_T>;
#endif

// Chunk c4 of a row starting at element `base`; elements past `n` read as 0.
fn load_q(base: u32, c4: u32) -> vec4<f32> {
#ifdef VEC4
    return vec4<f32>(q[(base >> 2u) + c4]);
#else
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let c = c4 * 4u + i;
        r[i] = select(0.0, f32(q[base + min(c, p.d - 1u) * p.q_strides.w]), c < p.d);
    }
    return r;
#endif
}

fn load_k(base: u32, c4: u32) -> vec4<f32> {
#ifdef VEC4
    return vec4<f32>(k[(base >> 2u) + c4]);
#else
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let c = c4 * 4u + i;
        r[i] = select(0.0, f32(k[base + min(c, p.d - 1u) * p.k_strides.w]), c < p.d);
    }
    return r;
#endif
}

fn load_v(base: u32, c4: u32) -> vec4<f32> {
#ifdef VEC4
    return vec4<f32>(v[(base >> 2u) + c4]);
#else
    var r = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        let c = c4 * 4u + i;
        r[i] = select(0.0, f32(v[base + min(c, p.dv - 1u) * p.v_strides.w]), c < p.dv);
    }
    return r;
#endif
}

#ifdef TILED
// Flash-attention style for GPUs: a workgroup of WG invocations serves one batch entry and
// WG / LANES query rows. LANES invocations share a row (head sizes over 64, or short sequences
// that would leave most rows of a block empty): lane `l` keeps chunks l, l + LANES, ... of the
// query and of the accumulator in registers (DQL and DVL chunks of four), and the lanes' partial
// scores are summed through workgroup memory (SPLIT_HEAD). Per tile of BK keys the workgroup
// loads K and V cooperatively into workgroup memory (converted to f32), then every row updates
// its running max and sum once per tile (online softmax, f32, -3e38 masking as above).
// Parallelism for small batch * Lq on a big GPU: the keys are split into p.splits ranges of
// p.chunk keys, one workgroup each (SPLIT); each writes its unnormalised (max, sum, acc) to a
// scratch buffer and the COMBINE kernel merges the ranges (as flash-decoding does).
var<workgroup> tile_k: array<vec4<f32>, BK * DQ4>; // [key][chunk]
var<workgroup> tile_v: array<vec4<f32>, BK * DV4>;
#ifdef SPLIT_HEAD
var<workgroup> tile_s: array<f32, WG * BK>; // [invocation][key]: partial scores of each lane
#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // Workgroup index -> (row block, key range, batch entry); all uniform across the workgroup.
    let g = wid.y * nwg.x + wid.x;
    let block = g % p.row_blocks;
    let range = (g / p.row_blocks) % p.splits;
    let b = g / p.row_blocks / p.splits;
    if (b >= p.batches) {
        return;
    }
    let b0 = b / p.batch1;
    let b1 = b % p.batch1;
    let row = block * (WG / LANES) + lid / LANES;
    let lane = lid % LANES;
    // Rows past the end compute on the last row (never stored) so that every invocation reaches
    // the barriers.
    let q_base = p.offsets.x + b0 * p.q_strides.x + b1 * p.q_strides.y + min(row, p.lq - 1u) * p.q_strides.z;
    let k_base = p.offsets.y + b0 * p.k_strides.x + b1 * p.k_strides.y;
    let v_base = p.offsets.z + b0 * p.v_strides.x + b1 * p.v_strides.y;
    var qr: array<vec4<f32>, DQL>;
    for (var c = 0u; c < DQL; c++) {
        let cc = c * LANES + lane;
        // Chunks past the head (when LANES does not divide DQ4) are zero and so add nothing.
        qr[c] = select(vec4<f32>(0.0), load_q(q_base, min(cc, DQ4 - 1u)) * p.scale, cc < DQ4);
    }
    let neg_inf = -3.0e38;
    var m = neg_inf;
    var l = 0.0;
    var acc: array<vec4<f32>, DVL>;
    for (var c = 0u; c < DVL; c++) {
        acc[c] = vec4<f32>(0.0);
    }
    let ones = vec4<f32>(1.0);
    let last = p.lk - 1u;
    let j_begin = range * p.chunk;
    let j_end = min(j_begin + p.chunk, p.lk);
    for (var j0 = j_begin; j0 < j_end; j0 += BK) {
        // Keys past the end load the last key again; their scores are masked below.
        for (var e = lid; e < BK * DQ4; e += WG) {
            tile_k[e] = load_k(k_base + min(j0 + e / DQ4, last) * p.k_strides.z, e % DQ4);
        }
        for (var e = lid; e < BK * DV4; e += WG) {
            tile_v[e] = load_v(v_base + min(j0 + e / DV4, last) * p.v_strides.z, e % DV4);
        }
        workgroupBarrier();
        // Zeroed by hand each pass: SwiftShader does not re-zero a `var` declared inside a loop
        // on every iteration, as WGSL requires.
        var s: array<f32, BK>;
        for (var j = 0u; j < BK; j++) {
            var part = vec4<f32>(0.0);
            for (var c = 0u; c < DQL; c++) {
                part += qr[c] * tile_k[j * DQ4 + min(c * LANES + lane, DQ4 - 1u)];
            }
            s[j] = dot(part, ones);
        }
#ifdef SPLIT_HEAD
        for (var j = 0u; j < BK; j++) {
            tile_s[lid * BK + j] = s[j];
        }
        workgroupBarrier();
        // Every lane of a row sums the lanes in the same order, so all hold the same scores.
        let first = (lid / LANES) * LANES;
        for (var j = 0u; j < BK; j++) {
            var t = 0.0;
            for (var n = 0u; n < LANES; n++) {
                t += tile_s[(first + n) * BK + j];
            }
            s[j] = t;
        }
#endif
        var bm = m;
        for (var j = 0u; j < BK; j++) {
            s[j] = select(neg_inf, s[j], j0 + j < j_end);
            bm = max(bm, s[j]);
        }
        let corr = exp(m - bm);
        l *= corr;
        for (var c = 0u; c < DVL; c++) {
            acc[c] *= corr;
        }
        for (var j = 0u; j < BK; j++) {
            let e = exp(s[j] - bm);
            l += e;
            for (var c = 0u; c < DVL; c++) {
                acc[c] += e * tile_v[j * DV4 + min(c * LANES + lane, DV4 - 1u)];
            }
        }
        m = bm;
        // The next tile overwrites what this one read.
        workgroupBarrier();
    }
    if (row >= p.lq) {
        return;
    }
#ifdef SPLIT
    let base = ((b * p.lq + row) * p.splits + range) * (p.dv + 2u);
    if (lane == 0u) {
        out[base] = m;
        out[base + 1u] = l;
    }
    for (var c = 0u; c < DVL; c++) {
        for (var e = 0u; e < 4u; e++) {
            let col = (c * LANES + lane) * 4u + e;
            if (col < p.dv) {
                out[base + 2u + col] = acc[c][e];
            }
        }
    }
#else
    let o_row = p.offsets.w + b0 * p.o_strides.x + b1 * p.o_strides.y + row * p.o_strides.z;
    let inv = 1.0 / l;
    for (var c = 0u; c < DVL; c++) {
        for (var e = 0u; e < 4u; e++) {
            let col = (c * LANES + lane) * 4u + e;
            if (col < p.dv) {
                out[o_row + col * p.o_strides.w] = OUT_T(acc[c][e] * inv);
            }
        }
    }
#endif
}
#else
#ifdef SG8
// CPU adapters whose subgroups are 8 SIMD lanes (llvmpipe on AVX2), which run a storage-buffer
// load lane by lane: in this layout every invocation of a workgroup walks the same keys, so the
// 8 lanes of a subgroup each load a different key (8 keys per load) and take the others' from
// their lanes by subgroupBroadcast (a register move): a head chunk of 8 keys costs one load, not
// eight. Scores of 8 keys per step (two vec4s per row), then one online-softmax rescale.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    let b = wid.z * 65535u + wid.y;
    if (b >= p.batches) {
        return; // the whole workgroup: the subgroups stay whole
    }
    let row0 = wid.x * ROWS * WG + lid;
    let row_step = u32(WG);
    let b0 = b / p.batch1;
    let b1 = b % p.batch1;
    let k_base = p.offsets.y + b0 * p.k_strides.x + b1 * p.k_strides.y;
    let v_base = p.offsets.z + b0 * p.v_strides.x + b1 * p.v_strides.y;
    var q: array<array<vec4<f32>, DQ4>, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        let row = min(row0 + r * row_step, p.lq - 1u);
        let base = p.offsets.x + b0 * p.q_strides.x + b1 * p.q_strides.y + row * p.q_strides.z;
        for (var c = 0u; c < DQ4; c++) {
            q[r][c] = load_q(base, c) * p.scale;
        }
    }
    var acc: array<array<vec4<f32>, DV4>, ROWS>;
    let neg_inf = -3.0e38; // as in the kernel below
    var m: array<f32, ROWS>;
    var l: array<f32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        m[r] = neg_inf;
        l[r] = 0.0;
    }
    let ones = vec4<f32>(1.0);
    let last = p.lk - 1u;
    for (var j0 = 0u; j0 < p.lk; j0 += 8u) {
        // This lane's key: j0 + lane, clamped (a key past the end scores -3e38 below).
        let kl = k_base + min(j0 + lane, last) * p.k_strides.z;
        let vl = v_base + min(j0 + lane, last) * p.v_strides.z;
        var sa: array<vec4<f32>, ROWS>; // keys j0..j0+3
        var sb: array<vec4<f32>, ROWS>; // keys j0+4..j0+7
        for (var r = 0u; r < ROWS; r++) {
            sa[r] = vec4<f32>(0.0);
            sb[r] = vec4<f32>(0.0);
        }
        for (var c = 0u; c < DQ4; c++) {
            let x = load_k(kl, c);
            let x0 = subgroupBroadcast(x, 0u);
            let x1 = subgroupBroadcast(x, 1u);
            let x2 = subgroupBroadcast(x, 2u);
            let x3 = subgroupBroadcast(x, 3u);
            let x4 = subgroupBroadcast(x, 4u);
            let x5 = subgroupBroadcast(x, 5u);
            let x6 = subgroupBroadcast(x, 6u);
            let x7 = subgroupBroadcast(x, 7u);
            for (var r = 0u; r < ROWS; r++) {
                let qc = q[r][c];
                sa[r] += vec4<f32>(dot(qc, x0), dot(qc, x1), dot(qc, x2), dot(qc, x3));
                sb[r] += vec4<f32>(dot(qc, x4), dot(qc, x5), dot(qc, x6), dot(qc, x7));
            }
        }
        let inside_a = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.lk);
        let inside_b = vec4<u32>(j0) + vec4<u32>(4u, 5u, 6u, 7u) < vec4<u32>(p.lk);
        var ea: array<vec4<f32>, ROWS>;
        var eb: array<vec4<f32>, ROWS>;
        var corr: array<f32, ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            let a = select(vec4<f32>(neg_inf), sa[r], inside_a);
            let c = select(vec4<f32>(neg_inf), sb[r], inside_b);
            let top = max(a, c);
            let bm = max(m[r], max(max(top.x, top.y), max(top.z, top.w)));
            corr[r] = exp(m[r] - bm);
            ea[r] = exp(a - vec4<f32>(bm));
            eb[r] = exp(c - vec4<f32>(bm));
            l[r] = l[r] * corr[r] + dot(ea[r], ones) + dot(eb[r], ones);
            m[r] = bm;
        }
        for (var c = 0u; c < DV4; c++) {
            let y = load_v(vl, c);
            let y0 = subgroupBroadcast(y, 0u);
            let y1 = subgroupBroadcast(y, 1u);
            let y2 = subgroupBroadcast(y, 2u);
            let y3 = subgroupBroadcast(y, 3u);
            let y4 = subgroupBroadcast(y, 4u);
            let y5 = subgroupBroadcast(y, 5u);
            let y6 = subgroupBroadcast(y, 6u);
            let y7 = subgroupBroadcast(y, 7u);
            for (var r = 0u; r < ROWS; r++) {
                let e = ea[r];
                let f = eb[r];
                acc[r][c] = acc[r][c] * corr[r] + e.x * y0 + e.y * y1 + e.z * y2 + e.w * y3
                    + f.x * y4 + f.y * y5 + f.z * y6 + f.w * y7;
            }
        }
    }
    let o_batch = p.offsets.w + b0 * p.o_strides.x + b1 * p.o_strides.y;
    for (var r = 0u; r < ROWS; r++) {
        let row = row0 + r * row_step;
        let inv = 1.0 / l[r];
        for (var c = 0u; c < DV4; c++) {
            for (var e = 0u; e < 4u; e++) {
                let col = c * 4u + e;
                if (col < p.dv && row < p.lq) {
                    out[o_batch + row * p.o_strides.z + col * p.o_strides.w] = OUT_T(acc[r][c][e] * inv);
                }
            }
        }
    }
}
#else
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
#ifdef PACKED
    let blocks = (p.lq + ROWS - 1u) / ROWS;
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.batches * blocks) {
        return;
    }
    let b = i / blocks;
    let row0 = (i % blocks) * ROWS;
    let row_step = 1u;
#else
    let b = wid.z * 65535u + wid.y;
    if (b >= p.batches) {
        return;
    }
    let row0 = wid.x * ROWS * WG + lid;
    let row_step = u32(WG);
#endif
    // ROWS query rows per invocation (row_step apart), so every key and value loaded serves them all.
    // Rows past the end still run (on the last row) so that control flow stays uniform.
    let b0 = b / p.batch1;
    let b1 = b % p.batch1;
    let k_base = p.offsets.y + b0 * p.k_strides.x + b1 * p.k_strides.y;
    let v_base = p.offsets.z + b0 * p.v_strides.x + b1 * p.v_strides.y;
    var q: array<array<vec4<f32>, DQ4>, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        let row = min(row0 + r * row_step, p.lq - 1u);
        let base = p.offsets.x + b0 * p.q_strides.x + b1 * p.q_strides.y + row * p.q_strides.z;
        for (var c = 0u; c < DQ4; c++) {
            q[r][c] = load_q(base, c) * p.scale;
        }
    }
    var acc: array<array<vec4<f32>, DV4>, ROWS>;
    // The running max starts at, and a masked key scores, -3e38 (near the lowest f32) rather than
    // -inf: WGSL lets implementations assume finite math (Tint does), and exp(-inf - -inf) is NaN.
    let neg_inf = -3.0e38;
    var m: array<f32, ROWS>;
    var l: array<f32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        m[r] = neg_inf;
        l[r] = 0.0;
    }
    let ones = vec4<f32>(1.0);
    let last = p.lk - 1u;
    for (var j0 = 0u; j0 < p.lk; j0 += 2u) {
        // Two keys at a time; past the last key, recompute it and mask its score to -3e38.
        let k0 = k_base + j0 * p.k_strides.z;
        let k1 = k_base + min(j0 + 1u, last) * p.k_strides.z;
        // Zeroed by hand each pass: SwiftShader (Chromium's software WebGPU) does not re-zero a
        // `var` declared inside a loop on every iteration, as WGSL requires.
        var s0: array<vec4<f32>, ROWS>;
        var s1: array<vec4<f32>, ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            s0[r] = vec4<f32>(0.0);
            s1[r] = vec4<f32>(0.0);
        }
        for (var c = 0u; c < DQ4; c++) {
            let x0 = load_k(k0, c);
            let x1 = load_k(k1, c);
            for (var r = 0u; r < ROWS; r++) {
                s0[r] += q[r][c] * x0;
                s1[r] += q[r][c] * x1;
            }
        }
        let second = j0 + 1u < p.lk;
        var e0: array<f32, ROWS>;
        var e1: array<f32, ROWS>;
        var corr: array<f32, ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            let a = dot(s0[r], ones);
            let c1 = select(neg_inf, dot(s1[r], ones), second);
            let bm = max(m[r], max(a, c1));
            corr[r] = exp(m[r] - bm);
            e0[r] = exp(a - bm);
            e1[r] = exp(c1 - bm);
            l[r] = l[r] * corr[r] + e0[r] + e1[r];
            m[r] = bm;
        }
        let v0 = v_base + j0 * p.v_strides.z;
        let v1 = v_base + min(j0 + 1u, last) * p.v_strides.z;
        for (var c = 0u; c < DV4; c++) {
            let y0 = load_v(v0, c);
            let y1 = load_v(v1, c);
            for (var r = 0u; r < ROWS; r++) {
                acc[r][c] = acc[r][c] * corr[r] + e0[r] * y0 + e1[r] * y1;
            }
        }
    }
    let o_batch = p.offsets.w + b0 * p.o_strides.x + b1 * p.o_strides.y;
    for (var r = 0u; r < ROWS; r++) {
        let row = row0 + r * row_step;
        let inv = 1.0 / l[r];
        for (var c = 0u; c < DV4; c++) {
            for (var e = 0u; e < 4u; e++) {
                let col = c * 4u + e;
                if (col < p.dv && row < p.lq) {
                    out[o_batch + row * p.o_strides.z + col * p.o_strides.w] = OUT_T(acc[r][c][e] * inv);
                }
            }
        }
    }
}
#endif // SG8
#endif // TILED
#endif // COMBINE
