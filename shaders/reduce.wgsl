// Reduction along one axis of a tensor viewed as [outer, axis, inner] (adjacent reduced axes are
// merged by the caller). One invocation per output, no barriers; sums are compensated (Kahan).
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    outer: u32,
    axis: u32,
    inner: u32,
    total: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X_T>;
@group(0) @binding(2) var<storage, read_write> out: array<OUT_T>; // X_T, OUT_T: f32 or f16 storage; sums f32

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let base = (i / p.inner) * p.axis * p.inner + i % p.inner;
#ifdef EXTREME
    var acc = f32(x[base]);
    for (var j = 1u; j < p.axis; j++) {
        acc = PICK(acc, f32(x[base + j * p.inner]));
    }
    out[i] = OUT_T(acc);
#else
    var sum = 0.0;
    var carry = 0.0;
    for (var j = 0u; j < p.axis; j++) {
        let v = f32(x[base + j * p.inner]);
        let y = TERM - carry;
        let t = sum + y;
        carry = (t - sum) - y;
        sum = t;
    }
    out[i] = OUT_T(FINISH);
#endif
}
