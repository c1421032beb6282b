// Softmax (or log-softmax) along one axis of a tensor viewed as [outer, axis, inner]; one
// invocation per line: max, then the sum of exponentials, then the output. No barriers.
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
@group(0) @binding(1) var<storage, read> x: array<X_T>;
// X_T, OUT_T: f32 or f16 storage; the max, the sum of exponentials and the output are f32.
@group(0) @binding(2) var<storage, read_write> out: array<OUT_T>;

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
