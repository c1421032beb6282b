// Gather along one axis: out[o, j, i] = src[o, indices[j], i], with the tensors viewed as
// [outer, axis, inner]. Negative indices count from the end; out-of-range ones give 0.
// `src` may hold only the rows [lo, hi) of the axis (a table split over several bindings, one
// dispatch per chunk): indices outside them are left to the other chunks' dispatches, and only
// the dispatch with `zero_missing` writes the 0 of out-of-range indices.
// E: u32 (the bits of f32 or i32), or f16 where the adapter has shader-f16.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    outer: u32,
    axis_len: u32,
    inner: u32,
    n_indices: u32,
    total: u32,
    lo: u32,
    hi: u32,
    zero_missing: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<E>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> dst: array<E>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let inner = i % p.inner;
    let j = (i / p.inner) % p.n_indices;
    let outer = i / (p.inner * p.n_indices);
    var k = indices[j];
    if (k < 0) {
        k += i32(p.axis_len);
    }
    if (k < 0 || k >= i32(p.axis_len)) {
        if (p.zero_missing != 0u) {
            dst[i] = E(0);
        }
        return;
    }
    let row = u32(k);
    if (row < p.lo || row >= p.hi) {
        return;
    }
    dst[i] = src[(outer * (p.hi - p.lo) + row - p.lo) * p.inner + inner];
}
