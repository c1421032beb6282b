// LayerNorm over the last `d` elements of each row: two passes (mean, then centred variance)
// for stability, then (x - mean) * rstd * gamma + beta; with MODULATE then * scale + shift, one
// value of each per (row / n_div, j) (adaLN's conditioning). One invocation per row, no barriers.
// X_T, OUT_T: f32 or f16 storage; mean, variance and the normalised value are f32 (gamma and
// beta are f32 parameters).
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    rows: u32,
    d: u32,
    eps: f32,
    act_alpha: f32,
    n_div: u32,               // MODULATE: rows per modulation row
    _pad: u32,
    scale_strides: vec2<u32>, // MODULATE: over (row / n_div, j)
    shift_strides: vec2<u32>,
    _pad2: vec2<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X_T>;
#ifdef AFFINE
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
#endif
#ifdef MODULATE
@group(0) @binding(BIND_SCALE) var<storage, read> mod_scale: array<M_T>;
@group(0) @binding(BIND_SHIFT) var<storage, read> mod_shift: array<M_T>;
#endif
@group(0) @binding(BIND_OUT) var<storage, read_write> out: array<OUT_T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = linear_index(wid, nwg, lid, WG);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.d;
    var s = 0.0;
    for (var j = 0u; j < p.d; j++) {
        s += f32(x[base + j]);
    }
    let mean = s / f32(p.d);
    var v = 0.0;
    for (var j = 0u; j < p.d; j++) {
        let c = f32(x[base + j]) - mean;
        v += c * c;
    }
    let rstd = inverseSqrt(v / f32(p.d) + p.eps);
    for (var j = 0u; j < p.d; j++) {
        var y = (f32(x[base + j]) - mean) * rstd;
#ifdef AFFINE
        y = y * gamma[j] + beta[j];
#endif
#ifdef MODULATE
        let mrow = row / p.n_div;
        y = y * f32(mod_scale[mrow * p.scale_strides.x + j * p.scale_strides.y]);
        y = y + f32(mod_shift[mrow * p.shift_strides.x + j * p.shift_strides.y]);
#endif
        out[base + j] = OUT_T(activation(y, p.act_alpha));
    }
}
