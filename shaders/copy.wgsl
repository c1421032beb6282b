// Generic strided copy of elements of type E (u32: the bits of f32 or i32; f16 where the adapter
// has shader-f16, for f16 activations): transpose/permute, slice with (negative) steps, concat
// (a strided output window), expand (step 0), tile (wrap), constant pad (out of range -> value).
// For output multi-index i, input coordinate c[d] = i[d] * step[d] + start[d]; with wrap bit d
// set, c[d] is taken modulo in_dims[d]; otherwise a coordinate outside [0, in_dims[d]) reads
// pad_value.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    shape: array<vec4<u32>, 2>,
    out_strides: array<vec4<u32>, 2>,
    in_dims: array<vec4<u32>, 2>,
    in_strides: array<vec4<u32>, 2>,
    step: array<vec4<i32>, 2>,
    start: array<vec4<i32>, 2>,
    out_offset: u32,
    in_offset: u32,
    total: u32,
    rank: u32,
    pad_value: u32, // the bits of the value (f32 or i32; f32 for f16 elements)
    wrap: u32,      // bit d: dimension d tiles
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<E>;
@group(0) @binding(2) var<storage, read_write> dst: array<E>;

// Each invocation copies a run of up to RUN consecutive elements along the innermost output
// dimension: the index arithmetic of the outer dimensions (a division per dimension) is paid
// once per run instead of once per element.
const RUN: u32 = 4u;

// c modulo extent in [0, extent). Only unsigned `%`: GLSL, which wgpu's GL backend runs, leaves
// `%` of a negative operand undefined (llvmpipe's GL gave wrong pads for "wrap").
fn wrap_index(c: i32, extent: i32) -> i32 {
    let r = i32(u32(abs(c)) % u32(extent));
    return select(r, (extent - r) % extent, c < 0);
}

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
    var o = p.out_offset;
    var s = p.in_offset;
    var inside = true;
    for (var d = i32(last) - 1; d >= 0; d--) {
        let du = u32(d);
        let n = p.shape[du >> 2u][du & 3u];
        let idx = rest % n;
        rest = rest / n;
        o += idx * p.out_strides[du >> 2u][du & 3u];
        let extent = i32(p.in_dims[du >> 2u][du & 3u]);
        var c = i32(idx) * p.step[du >> 2u][du & 3u] + p.start[du >> 2u][du & 3u];
        if (((p.wrap >> du) & 1u) == 1u) {
            c = wrap_index(c, extent);
        }
        inside = inside && c >= 0 && c < extent;
        s += u32(max(c, 0)) * p.in_strides[du >> 2u][du & 3u];
    }
    let out_stride = p.out_strides[last >> 2u][last & 3u];
    let in_stride = p.in_strides[last >> 2u][last & 3u];
    let extent = i32(p.in_dims[last >> 2u][last & 3u]);
    let step = p.step[last >> 2u][last & 3u];
    let start = p.start[last >> 2u][last & 3u];
    let wraps = ((p.wrap >> last) & 1u) == 1u;
    let pad = PAD_VALUE;
    let first = (i % runs) * RUN;
    for (var idx = first; idx < min(first + RUN, n_last); idx++) {
        var c = i32(idx) * step + start;
        if (wraps) {
            c = wrap_index(c, extent);
        }
        let ok = inside && c >= 0 && c < extent;
        dst[o + idx * out_stride] = select(pad, src[s + u32(max(c, 0)) * in_stride], ok);
    }
}
