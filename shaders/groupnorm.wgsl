// Group normalisation (instance norm is groups == channels) of x [N, C, S], in two dispatches:
//   STATS: one workgroup of 64 per (n, group) computes mean and 1/std in two passes (mean, then
//          centred squares), each ending in a workgroup reduction: a shared-memory tree, or with
//          SUBGROUPS one subgroupAdd per subgroup and a short sum of the partials.
//   APPLY: one invocation per element: (x - mean) * rstd * gamma[c] + beta[c]; with MODULATE
//          then * scale + shift, one value of each per (n / n_div, c) (FiLM's or adaLN's
//          conditioning); then the fused activation (SiLU in the UNet's resnet blocks).
// X_T, OUT_T: f32 or f16 storage; the statistics (f32 partial sums, a two-pass variance) and the
// normalised value are f32, gamma and beta f32 parameters.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    n: u32,
    c: u32,
    s: u32,
    groups: u32,
    eps: f32,
    act_alpha: f32,
    total: u32,
    n_div: u32,         // MODULATE: batch items per modulation row
    scale_strides: vec2<u32>, // MODULATE: over (n / n_div, c)
    shift_strides: vec2<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X_T>;

#ifdef STATS
@group(0) @binding(2) var<storage, read_write> stats: array<f32>; // [N * groups][mean, rstd]

var<workgroup> partial: array<f32, 64>;

#ifdef SUBGROUPS
fn workgroup_sum(v: f32, lid: u32, sg: vec3<u32>) -> f32 {
    // sg: (subgroup id, lane in the subgroup, number of subgroups)
    let s = subgroupAdd(v);
    if (sg.y == 0u) {
        partial[sg.x] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < sg.z; i++) {
        total += partial[i];
    }
    workgroupBarrier();
    return total;
}
#else
fn workgroup_sum(v: f32, lid: u32, sg: vec3<u32>) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var step = 32u; step > 0u; step >>= 1u) {
        if (lid < step) {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
#endif

@compute @workgroup_size(64)
#ifdef SUBGROUPS
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_invocation_id) sg_lane: u32,
        @builtin(num_subgroups) sg_count: u32) {
    let sg = vec3<u32>(sg_id, sg_lane, sg_count);
#else
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let sg = vec3<u32>(0u);
#endif
    let ng = wid.x + wid.y * 65535u;
    if (ng >= p.n * p.groups) {
        return; // uniform across the workgroup, so the barriers below stay uniform
    }
    let count = (p.c / p.groups) * p.s;
    let base = ng * count; // a group's channels are contiguous in [N, C, S]
    var s = 0.0;
    for (var j = lid; j < count; j += 64u) {
        s += f32(x[base + j]);
    }
    let mean = workgroup_sum(s, lid, sg) / f32(count);
    var q = 0.0;
    for (var j = lid; j < count; j += 64u) {
        let d = f32(x[base + j]) - mean;
        q += d * d;
    }
    let var_ = workgroup_sum(q, lid, sg) / f32(count);
    if (lid == 0u) {
        stats[ng * 2u] = mean;
        stats[ng * 2u + 1u] = inverseSqrt(var_ + p.eps);
    }
}
#endif

#ifdef APPLY
@group(0) @binding(2) var<storage, read> stats: array<f32>;
#ifdef AFFINE
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
#endif
#ifdef MODULATE
@group(0) @binding(BIND_SCALE) var<storage, read> mod_scale: array<M_T>;
@group(0) @binding(BIND_SHIFT) var<storage, read> mod_shift: array<M_T>;
#endif
@group(0) @binding(BIND_OUT) var<storage, read_write> out: array<OUT_T>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let ch = (i / p.s) % p.c;
    let ng = (i / (p.s * p.c)) * p.groups + ch / (p.c / p.groups);
    var y = (f32(x[i]) - stats[ng * 2u]) * stats[ng * 2u + 1u];
#ifdef AFFINE
    y = y * gamma[ch] + beta[ch];
#endif
#ifdef MODULATE
    let row = i / (p.s * p.c) / p.n_div;
    y = y * f32(mod_scale[row * p.scale_strides.x + ch * p.scale_strides.y]);
    y = y + f32(mod_shift[row * p.shift_strides.x + ch * p.shift_strides.y]);
#endif
    out[i] = OUT_T(activation(y, p.act_alpha));
}
#endif
