// Strided elementwise ops with numpy broadcasting: out[i] = op(a[i], b[i], c[i]).
// Broadcast inputs have stride 0 along broadcast dims; the output may be strided too (writing
// into a slice of a concatenation). OP is an expression in a, b, c, alpha, beta. T is the storage
// type (f32, or f16 where the adapter has shader-f16); the arithmetic is f32 either way.
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
@group(0) @binding(1) var<storage, read> in_a: array<T>;
#ifdef ARITY2
@group(0) @binding(2) var<storage, read> in_b: array<T>;
#endif
#ifdef ARITY3
@group(0) @binding(2) var<storage, read> in_b: array<T>;
@group(0) @binding(3) var<storage, read> in_c: array<T>;
#endif
@group(0) @binding(OUT_BINDING) var<storage, read_write> out: array<T>;

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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    var rest = i;
    var o = p.offsets.x;
    var ia = p.offsets.y;
    var ib = p.offsets.z;
    var ic = p.offsets.w;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let n = p.shape[u32(d) >> 2u][u32(d) & 3u];
        let idx = rest % n;
        rest = rest / n;
        o += idx * p.out_strides[u32(d) >> 2u][u32(d) & 3u];
        ia += idx * p.a_strides[u32(d) >> 2u][u32(d) & 3u];
        ib += idx * p.b_strides[u32(d) >> 2u][u32(d) & 3u];
        ic += idx * p.c_strides[u32(d) >> 2u][u32(d) & 3u];
    }
    var b = 0.0;
    var c = 0.0;
#ifdef ARITY2
    b = f32(in_b[ib]);
#endif
#ifdef ARITY3
    b = f32(in_b[ib]);
    c = f32(in_c[ic]);
#endif
    out[o] = T(op(f32(in_a[ia]), b, c, p.alpha, p.beta));
}
