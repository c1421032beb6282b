// Strided elementwise ops with numpy broadcasting: out[i] = op(a[i], b[i], c[i]).
// Broadcast inputs have stride 0 along broadcast dims; the output may be strided too (writing
// into a slice of a concatenation). OP is an expression in a, b, c, alpha, beta. T is the output's
// storage type and A_T, B_T, C_T the inputs' (f32, or f16 where the adapter has shader-f16; they may
// differ, e.g. an f16 activation plus an f32 timestep embedding); the arithmetic is f32 either way:
// these kernels are bound by memory, and f32 keeps exp/erf/pow as accurate as in f32 mode.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    shape: array<vec4<u32>, 2>,
    out_strides: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
    c_strides: array<vec4<u32>, 2>,
    offsets: vec4<u32>, // out, a, b, c
    total: u32,
    rank: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// FLAT4 binds whole vectors (A_STORE etc. are vec4<T>, or T for an input broadcast from one value).
#ifdef FLAT4
@group(0) @binding(1) var<storage, read> in_a: array<A_STORE>;
#ifdef ARITY2
@group(0) @binding(2) var<storage, read> in_b: array<B_STORE>;
#endif
#ifdef ARITY3
@group(0) @binding(2) var<storage, read> in_b: array<B_STORE>;
@group(0) @binding(3) var<storage, read> in_c: array<C_STORE>;
#endif
@group(0) @binding(OUT_BINDING) var<storage, read_write> out: array<vec4<T>>;
#else
@group(0) @binding(1) var<storage, read> in_a: array<A_T>;
#ifdef ARITY2
@group(0) @binding(2) var<storage, read> in_b: array<B_T>;
#endif
#ifdef ARITY3
@group(0) @binding(2) var<storage, read> in_b: array<B_T>;
@group(0) @binding(3) var<storage, read> in_c: array<C_T>;
#endif
@group(0) @binding(OUT_BINDING) var<storage, read_write> out: array<T>;
#endif

// Pow as numpy does it: negative bases with integral exponents keep their sign.
fn pow_f(a: f32, b: f32) -> f32 {
    if (b == 0.0) {
        return 1.0;
    }
    if (a == 0.0) {
        return select(f32_from_bits(0x7f800000u), 0.0, b > 0.0); // +inf for negative b
    }
    let m = exp2(b * log2(abs(a)));
    if (a > 0.0) {
        return m;
    }
    if (b != floor(b)) {
        return f32_from_bits(0x7fc00000u); // NaN, as numpy
    }
    return select(m, -m, (i32(abs(b) % 2.0) == 1));
}

fn op(a: f32, b: f32, c: f32, alpha: f32, beta: f32) -> f32 {
    return OP;
}

#ifdef FLAT4
// Operands that are contiguous over one flat index (or one broadcast value), 4-aligned: no index
// arithmetic, and whole-vector loads and stores. Each invocation takes RUN vectors.
fn load4_a(q: u32) -> vec4<f32> {
#ifdef A_SPLAT
    return vec4<f32>(f32(in_a[p.offsets.y]));
#else
    return vec4<f32>(in_a[(p.offsets.y >> 2u) + q]);
#endif
}

#ifdef HAS_B
fn load4_b(q: u32) -> vec4<f32> {
#ifdef B_SPLAT
    return vec4<f32>(f32(in_b[p.offsets.z]));
#else
    return vec4<f32>(in_b[(p.offsets.z >> 2u) + q]);
#endif
}

#endif

#ifdef ARITY3
fn load4_c(q: u32) -> vec4<f32> {
#ifdef C_SPLAT
    return vec4<f32>(f32(in_c[p.offsets.w]));
#else
    return vec4<f32>(in_c[(p.offsets.w >> 2u) + q]);
#endif
}

#endif

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n4 = p.total >> 2u;
    let first = linear_index(wid, nwg, lid, WG) * RUN;
    for (var q = first; q < min(first + RUN, n4); q++) {
        let a = load4_a(q);
        var b = vec4<f32>(0.0);
        var c = vec4<f32>(0.0);
#ifdef ARITY2
        b = load4_b(q);
#endif
#ifdef ARITY3
        b = load4_b(q);
        c = load4_c(q);
#endif
        let y = vec4<f32>(op(a.x, b.x, c.x, p.alpha, p.beta), op(a.y, b.y, c.y, p.alpha, p.beta),
                          op(a.z, b.z, c.z, p.alpha, p.beta), op(a.w, b.w, c.w, p.alpha, p.beta));
        out[(p.offsets.x >> 2u) + q] = vec4<T>(y);
    }
}
#else
// Each invocation computes a run of up to RUN consecutive elements along the innermost dimension:
// the index arithmetic of the outer dimensions (a division per dimension) is paid once per run.
// RUN is 16 in the register-blocked style of CPU adapters (lavapipe, SwiftShader), where that
// arithmetic dominates, and 1 on GPUs, where neighbouring invocations should touch neighbouring
// elements.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    let last = p.rank - 1u; // rank >= 1: a scalar comes as shape [1]
    let n_last = p.shape[last >> 2u][last & 3u];
    let runs = (n_last + RUN - 1u) / RUN;
    if (i >= p.total / n_last * runs) {
        return;
    }
    var rest = i / runs;
    var o = p.offsets.x;
    var ia = p.offsets.y;
    var ib = p.offsets.z;
    var ic = p.offsets.w;
    for (var d = i32(last) - 1; d >= 0; d--) {
        let du = u32(d);
        let n = p.shape[du >> 2u][du & 3u];
        let idx = rest % n;
        rest = rest / n;
        o += idx * p.out_strides[du >> 2u][du & 3u];
        ia += idx * p.a_strides[du >> 2u][du & 3u];
        ib += idx * p.b_strides[du >> 2u][du & 3u];
        ic += idx * p.c_strides[du >> 2u][du & 3u];
    }
    let so = p.out_strides[last >> 2u][last & 3u];
    let sa = p.a_strides[last >> 2u][last & 3u];
    let sb = p.b_strides[last >> 2u][last & 3u];
    let sc = p.c_strides[last >> 2u][last & 3u];
    let first = (i % runs) * RUN;
    for (var k = first; k < min(first + RUN, n_last); k++) {
        var b = 0.0;
        var c = 0.0;
#ifdef ARITY2
        b = f32(in_b[ib + k * sb]);
#endif
#ifdef ARITY3
        b = f32(in_b[ib + k * sb]);
        c = f32(in_c[ic + k * sc]);
#endif
        out[o + k * so] = T(op(f32(in_a[ia + k * sa]), b, c, p.alpha, p.beta));
    }
}
#endif
