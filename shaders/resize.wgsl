// ONNX Resize, nearest and (multi-)linear, any rank <= 8. Per output dim the coordinate is
// mapped back to the input by the coordinate transformation mode; nearest picks one index by the
// nearest mode, linear blends the two neighbours of each resized dim (at most 2^3 taps: the
// caller allows at most three resized dims for linear). Modes are runtime codes in the uniforms.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    in_shape: array<vec4<u32>, 2>,
    out_shape: array<vec4<u32>, 2>,
    scales: array<vec4<f32>, 2>,
    rank: u32,
    total: u32,
    coord_mode: u32,   // 0 half_pixel, 1 asymmetric, 2 align_corners, 3 pytorch_half_pixel, 4 tf_half_pixel_for_nn, 5 half_pixel_symmetric
    nearest_mode: u32, // 0 round_prefer_floor, 1 round_prefer_ceil, 2 floor, 3 ceil
    lerp_mask: u32,    // bit d: dim d is linearly interpolated
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X_T>;
@group(0) @binding(2) var<storage, read_write> out: array<OUT_T>; // X_T, OUT_T: f32 or f16 storage, f32 arithmetic

fn scale_at(d: u32) -> f32 {
    return p.scales[d >> 2u][d & 3u];
}

fn source_coord(o: u32, d: u32) -> f32 {
    let s = scale_at(d);
    let n_in = f32(p.in_shape[d >> 2u][d & 3u]);
    let n_out = f32(p.out_shape[d >> 2u][d & 3u]);
    let pos = f32(o);
    switch p.coord_mode {
        case 1u: { return pos / s; }
        case 2u: { return select(pos * (n_in - 1.0) / (n_out - 1.0), 0.0, n_out <= 1.0); }
        case 3u: { return select((pos + 0.5) / s - 0.5, 0.0, n_out <= 1.0); }
        case 4u: { return (pos + 0.5) / s; }
        case 5u: {
            let adjustment = n_out / (s * n_in);
            let center = n_in / 2.0;
            return center * (1.0 - adjustment) + (pos + 0.5) / s - 0.5;
        }
        default: { return (pos + 0.5) / s - 0.5; }
    }
}

fn nearest(c: f32) -> f32 {
    switch p.nearest_mode {
        case 1u: { return floor(c + 0.5); }
        case 2u: { return floor(c); }
        case 3u: { return ceil(c); }
        default: { return ceil(c - 0.5); }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    var lo: array<u32, 8>;
    var hi: array<u32, 8>;
    var frac: array<f32, 8>;
    var in_strides: array<u32, 8>;
    var rest = i;
    var stride = 1u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let du = u32(d);
        let n_out = p.out_shape[du >> 2u][du & 3u];
        let o = rest % n_out;
        rest /= n_out;
        let n_in = p.in_shape[du >> 2u][du & 3u];
        in_strides[du] = stride;
        stride *= n_in;
        let c = source_coord(o, du);
        let last = f32(n_in - 1u);
        if (((p.lerp_mask >> du) & 1u) == 1u) {
            let cc = clamp(c, 0.0, last);
            let f = floor(cc);
            lo[du] = u32(f);
            hi[du] = min(u32(f) + 1u, n_in - 1u);
            frac[du] = cc - f;
        } else {
            lo[du] = u32(clamp(nearest(c), 0.0, last));
            hi[du] = lo[du];
            frac[du] = 0.0;
        }
    }
    // Every subset pos the interpolated dims is one tap: bit set -> upper neighbour.
    var acc = 0.0;
    var sub = p.lerp_mask;
    loop {
        var w = 1.0;
        var idx = 0u;
        for (var d = 0u; d < p.rank; d++) {
            let upper = ((sub >> d) & 1u) == 1u;
            let interpolated = ((p.lerp_mask >> d) & 1u) == 1u;
            idx += select(lo[d], hi[d], upper) * in_strides[d];
            if (interpolated) {
                w *= select(1.0 - frac[d], frac[d], upper);
            }
        }
        acc += w * f32(x[idx]);
        if (sub == 0u) {
            break;
        }
        sub = (sub - 1u) & p.lerp_mask;
    }
    out[i] = OUT_T(acc);
}
