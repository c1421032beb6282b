// The FIFO loop's own kernels, recorded around the UNet and the decoder so that the queue never
// leaves the device: blend each model row's prompt context, apply guidance and the DDIM step to
// every written slot, and move single frames (the emitted head into the decoder, fresh noise into
// the tail). Which rows, slots and frames change every iteration: they come from small tables
// uploaded each iteration, never from the parameter block, so the program is built once.
#include "common"

struct Params {
    // Values per frame (per context for CONTEXT).
    frame_len: u32,
    // Invocations that do work.
    total: u32,
    // Values between a row's conditional and unconditional prediction; 0 without guidance.
    uncond_offset: u32,
    // MOVE: which entry of the move table.
    entry: u32,
    guidance: f32,
    // MOVE: the frame is divided by this (the latent scale factor, or 1).
    divisor: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

#ifdef CONTEXT
// Per row: prompt ids `first`, `second` and the blend (as bits), then a pad word.
@group(0) @binding(1) var<storage, read> prompts: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let row = i / p.frame_len;
    let k = i % p.frame_len;
    let first = table[4u * row];
    let second = table[4u * row + 1u];
    let blend = bitcast<f32>(table[4u * row + 2u]);
    let a = prompts[first * p.frame_len + k];
    if (first == second || blend == 0.0) {
        dst[i] = a;
    } else {
        dst[i] = (1.0 - blend) * a + blend * prompts[second * p.frame_len + k];
    }
}
#endif

#ifdef STEP
// Per update: physical slot, model row, DDIM index, noise frame (NO_NOISE for none).
// Per DDIM index: c_x, c_model, c_noise, pad.
const NO_NOISE: u32 = 0xffffffffu;
@group(0) @binding(1) var<storage, read> model: array<f32>;
@group(0) @binding(2) var<storage, read> noise: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read> coefficients: array<f32>;
@group(0) @binding(5) var<storage, read_write> queue: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let u = i / p.frame_len;
    let k = i % p.frame_len;
    let slot = table[4u * u];
    let row = table[4u * u + 1u];
    let index = table[4u * u + 2u];
    let noise_frame = table[4u * u + 3u];
    var m = model[row * p.frame_len + k];
    if (p.uncond_offset != 0u) {
        let uncond = model[row * p.frame_len + k + p.uncond_offset];
        m = uncond + p.guidance * (m - uncond);
    }
    let at = slot * p.frame_len + k;
    var x = coefficients[4u * index] * queue[at] + coefficients[4u * index + 1u] * m;
    if (noise_frame != NO_NOISE) {
        x = x + coefficients[4u * index + 2u] * noise[noise_frame * p.frame_len + k];
    }
    queue[at] = x;
}
#endif

#ifdef MOVE
// Per entry: source frame, destination frame.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wid, nwg, lid, WG);
    if (i >= p.total) {
        return;
    }
    let source = table[2u * p.entry];
    let dest = table[2u * p.entry + 1u];
    dst[dest * p.frame_len + i] = src[source * p.frame_len + i] / p.divisor;
}
#endif
