// Batched 2-D transpose of elements of type E (u32: the bits of f32 or i32; f16 where the adapter
// has shader-f16): out[b, i, j] = src[b, i, j] where the source is contiguous along i and the
// output along j, so a plain strided copy (copy.wgsl) would read one element per cache line.
//   TILED (GPUs): a workgroup moves a 32x32 block through workgroup memory, reading columns of
//          the source and writing rows of the output, both coalesced (32x8 invocations, 4 each).
//   default (CPU adapters): each invocation moves a 4x4 block in registers, no barriers: four
//          runs of 4 consecutive source elements in, four runs of 4 output elements out.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    dims: vec4<u32>,       // batch, rows (i), cols (j), _
    src_strides: vec4<u32>, // batch, i (1 when chosen), j, offset
    out_strides: vec4<u32>, // batch, i, j (1 when chosen), offset
}

@group(0) @binding(0) var<uniform> p: Params;
// SRC_VEC4 / OUT_VEC4 (CPU adapters): whole runs of 4 are aligned vec4s (every stride, offset
// and the run's dimension multiples of 4), so a run is one load or store: a CPU adapter runs
// each load or store lane by lane, whatever its width.
#ifdef SRC_VEC4
@group(0) @binding(1) var<storage, read> src: array<vec4<E>>;
#else
@group(0) @binding(1) var<storage, read> src: array<E>;
#endif
#ifdef OUT_VEC4
@group(0) @binding(2) var<storage, read_write> out: array<vec4<E>>;
#else
@group(0) @binding(2) var<storage, read_write> out: array<E>;
#endif

fn src_at(b: u32, i: u32, j: u32) -> u32 {
    return p.src_strides.w + b * p.src_strides.x + i * p.src_strides.y + j * p.src_strides.z;
}
fn out_at(b: u32, i: u32, j: u32) -> u32 {
    return p.out_strides.w + b * p.out_strides.x + i * p.out_strides.y + j * p.out_strides.z;
}

#ifdef TILED
var<workgroup> tile: array<array<E, 33>, 32>; // [j][i], padded against bank conflicts

@compute @workgroup_size(32, 8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = wid.z;
    let i0 = wid.y * 32u;
    let j0 = wid.x * 32u;
    for (var k = 0u; k < 4u; k++) {
        let i = i0 + lid.x;
        let j = j0 + lid.y + 8u * k;
        if (i < p.dims.y && j < p.dims.z) {
            tile[lid.y + 8u * k][lid.x] = src[src_at(b, i, j)];
        }
    }
    workgroupBarrier();
    for (var k = 0u; k < 4u; k++) {
        let i = i0 + lid.y + 8u * k;
        let j = j0 + lid.x;
        if (i < p.dims.y && j < p.dims.z) {
            out[out_at(b, i, j)] = tile[lid.x][lid.y + 8u * k];
        }
    }
}
#else
// Elements (i, j..j+3) of one output row, the first `nj` of them inside.
fn store_row(b: u32, i: u32, j: u32, nj: u32, v: vec4<E>) {
#ifdef OUT_VEC4
    out[out_at(b, i, j) >> 2u] = v;
#else
    out[out_at(b, i, j)] = v.x;
    if (nj > 1u) { out[out_at(b, i, j + 1u)] = v.y; }
    if (nj > 2u) { out[out_at(b, i, j + 2u)] = v.z; }
    if (nj > 3u) { out[out_at(b, i, j + 3u)] = v.w; }
#endif
}

// Source elements (i..i+3 clamped into the rows, j): one run of consecutive elements.
fn load_column(b: u32, i: u32, j: u32) -> vec4<E> {
#ifdef SRC_VEC4
    return src[src_at(b, i, j) >> 2u];
#else
    let last = p.dims.y - 1u;
    return vec4<E>(src[src_at(b, i, j)], src[src_at(b, min(i + 1u, last), j)],
                   src[src_at(b, min(i + 2u, last), j)], src[src_at(b, min(i + 3u, last), j)]);
#endif
}

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.z;
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.dims.y || j0 >= p.dims.z) {
        return;
    }
    let ni = min(4u, p.dims.y - i0);
    let nj = min(4u, p.dims.z - j0);
    let last = p.dims.z - 1u;
    // Columns j0..j0+3 (clamped; the copies past the edge are never stored), named registers.
    let c0 = load_column(b, i0, j0);
    let c1 = load_column(b, i0, min(j0 + 1u, last));
    let c2 = load_column(b, i0, min(j0 + 2u, last));
    let c3 = load_column(b, i0, min(j0 + 3u, last));
    store_row(b, i0, j0, nj, vec4<E>(c0.x, c1.x, c2.x, c3.x));
    if (ni > 1u) { store_row(b, i0 + 1u, j0, nj, vec4<E>(c0.y, c1.y, c2.y, c3.y)); }
    if (ni > 2u) { store_row(b, i0 + 2u, j0, nj, vec4<E>(c0.z, c1.z, c2.z, c3.z)); }
    if (ni > 3u) { store_row(b, i0 + 3u, j0, nj, vec4<E>(c0.w, c1.w, c2.w, c3.w)); }
}
#endif
