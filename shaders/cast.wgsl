// Element type conversions. f16 is packed two per u32 word; one invocation writes one output
// word (two halves) when the output is f16, so no two invocations share a word.
#include "common"

struct Params {
    total: u32, // elements
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<SRC_T>;
@group(0) @binding(2) var<storage, read_write> dst: array<DST_T>;

fn load(i: u32) -> f32 {
#ifdef FROM_F32
    return src[i];
#endif
#ifdef FROM_I32
    return f32(src[i]);
#endif
#ifdef FROM_F16
    let pair = unpack2x16float(src[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
#ifdef TO_F16
    let first = i * 2u;
    if (first >= p.total) {
        return;
    }
    let second = select(0.0, load(min(first + 1u, p.total - 1u)), first + 1u < p.total);
    dst[i] = pack2x16float(vec2<f32>(load(first), second));
#else
    if (i >= p.total) {
        return;
    }
#ifdef TO_I32
    dst[i] = i32(trunc(load(i)));
#else
    dst[i] = load(i);
#endif
#endif
}
