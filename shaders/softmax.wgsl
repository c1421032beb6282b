// Softmax (or log-softmax) along one axis of a tensor viewed as [outer, axis, inner]: the max,
// then the sum of exponentials, then the output.
//   default (CPU adapters): one invocation per line, no barriers.
//   LINE_PER_WORKGROUP (GPUs): a workgroup of 64 per line, each invocation taking every 64th
//   element and a workgroup reduction (max, then sum) joining them; lines of a few thousand
//   elements keep the GPU busy where one invocation per line would leave most of it idle.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    outer: u32,
    axis: u32,
    inner: u32,
    total: u32, // lines
}

@group(0) @binding(0) var<uniform> p: Params;
// X_T, OUT_T: f32 or f16 storage; the max, the sum of exponentials and the output are f32.
#ifdef VEC4
// CPU adapters, contiguous lines of a multiple of 4: each pass reads (and writes) vec4s, a
// quarter of the load and store instructions (a CPU adapter runs each one lane by lane).
@group(0) @binding(1) var<storage, read> x: array<vec4<X_T>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<OUT_T>>;
#else
@group(0) @binding(1) var<storage, read> x: array<X_T>;
@group(0) @binding(2) var<storage, read_write> out: array<OUT_T>;
#endif

#ifdef LINE_PER_WORKGROUP
var<workgroup> partial: array<f32, 64>;

// The max (MAX) or the sum over the workgroup of each invocation's `v`.
fn workgroup_reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var step = 32u; step > 0u; step >>= 1u) {
        if (lid < step) {
            let o = partial[lid + step];
            partial[lid] = select(partial[lid] + o, max(partial[lid], o), is_max);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let line = wid.x + wid.y * 65535u;
    if (line >= p.total) {
        return; // the same for the whole workgroup, so the barriers stay uniform
    }
    let base = (line / p.inner) * p.axis * p.inner + line % p.inner;
    var m = f32_from_bits(0xff800000u); // -inf
    for (var j = lid; j < p.axis; j += 64u) {
        m = max(m, f32(x[base + j * p.inner]));
    }
    m = workgroup_reduce(m, lid, true);
    var s = 0.0;
    for (var j = lid; j < p.axis; j += 64u) {
        s += exp(f32(x[base + j * p.inner]) - m);
    }
    s = workgroup_reduce(s, lid, false);
#ifdef LOG
    let shift = m + log(s);
    for (var j = lid; j < p.axis; j += 64u) {
        out[base + j * p.inner] = OUT_T(f32(x[base + j * p.inner]) - shift);
    }
#else
    let r = 1.0 / s;
    for (var j = lid; j < p.axis; j += 64u) {
        out[base + j * p.inner] = OUT_T(exp(f32(x[base + j * p.inner]) - m) * r);
    }
#endif
}
#else
#ifdef VEC4
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let base = i * (p.axis / 4u);
    let n4 = p.axis / 4u;
    var m4 = vec4<f32>(x[base]);
    for (var j = 1u; j < n4; j++) {
        m4 = max(m4, vec4<f32>(x[base + j]));
    }
    let m = max(max(m4.x, m4.y), max(m4.z, m4.w));
    var s4 = vec4<f32>(0.0);
    for (var j = 0u; j < n4; j++) {
        s4 += exp(vec4<f32>(x[base + j]) - m);
    }
    let s = (s4.x + s4.y) + (s4.z + s4.w);
#ifdef LOG
    let shift = m + log(s);
    for (var j = 0u; j < n4; j++) {
        out[base + j] = vec4<OUT_T>(vec4<f32>(x[base + j]) - shift);
    }
#else
    let r = 1.0 / s;
    for (var j = 0u; j < n4; j++) {
        out[base + j] = vec4<OUT_T>(exp(vec4<f32>(x[base + j]) - m) * r);
    }
#endif
}
#else
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let base = (i / p.inner) * p.axis * p.inner + i % p.inner;
    var m = f32(x[base]);
    for (var j = 1u; j < p.axis; j++) {
        m = max(m, f32(x[base + j * p.inner]));
    }
    var s = 0.0;
    for (var j = 0u; j < p.axis; j++) {
        s += exp(f32(x[base + j * p.inner]) - m);
    }
#ifdef LOG
    let shift = m + log(s);
    for (var j = 0u; j < p.axis; j++) {
        out[base + j * p.inner] = OUT_T(f32(x[base + j * p.inner]) - shift);
    }
#else
    let r = 1.0 / s;
    for (var j = 0u; j < p.axis; j++) {
        out[base + j * p.inner] = OUT_T(exp(f32(x[base + j * p.inner]) - m) * r);
    }
#endif
}
#endif // VEC4
#endif
