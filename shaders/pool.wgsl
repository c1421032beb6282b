// Max and average pooling over 1-D/2-D/3-D windows (seen as 3-D), one output per invocation.
//   x [N*C, D, H, W] -> out [N*C, OD, OH, OW], contiguous. Padded cells never win a max; a max
//   window of padding only gives f32's lowest finite value, or -inf in f16 storage (onnxruntime's
//   answers: it computes f16 in f32 and rounds). For the average they count only with
//   count_include_pad (and only inside the padded extent).
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    in_dims: vec4<u32>,  // d, h, w, _
    out_dims: vec4<u32>, // od, oh, ow, _
    kernel: vec4<u32>,   // kd, kh, kw, count_include_pad
    stride: vec4<u32>,   // sd, sh, sw, total outputs
    dilation: vec4<u32>, // dd, dh, dw, _
    pad: vec4<u32>,      // pd, ph, pw (leading), _
    pad_end: vec4<u32>,  // trailing pads, _
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X_T>;
@group(0) @binding(2) var<storage, read_write> out: array<OUT_T>; // X_T, OUT_T: f32 or f16 storage, f32 arithmetic

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wid, nwg, lid, WG);
    if (idx >= p.stride.w) {
        return;
    }
    let ow = idx % p.out_dims.z;
    let oh = (idx / p.out_dims.z) % p.out_dims.y;
    let od = (idx / (p.out_dims.z * p.out_dims.y)) % p.out_dims.x;
    let plane = idx / (p.out_dims.z * p.out_dims.y * p.out_dims.x);
    let dims = vec3<i32>(p.in_dims.xyz);
    let start = vec3<i32>(vec3<u32>(od, oh, ow) * p.stride.xyz) - vec3<i32>(p.pad.xyz);
    let base = plane * p.in_dims.x * p.in_dims.y * p.in_dims.z;
#ifdef MAX
    var acc = f32_from_bits(0xff800000u); // -inf
#else
    var acc = 0.0;
#endif
    var count = 0u;
    var padded_count = 0u;
    for (var kz = 0u; kz < p.kernel.x; kz++) {
        for (var ky = 0u; ky < p.kernel.y; ky++) {
            for (var kx = 0u; kx < p.kernel.z; kx++) {
                let c = start + vec3<i32>(vec3<u32>(kz, ky, kx) * p.dilation.xyz);
                let inside_pad = all(c >= -vec3<i32>(p.pad.xyz)) && all(c < dims + vec3<i32>(p.pad_end.xyz));
                if (inside_pad) {
                    padded_count++;
                }
                if (all(c >= vec3<i32>(0)) && all(c < dims)) {
                    let v = f32(x[base + u32((c.x * dims.y + c.y) * dims.z + c.z)]);
#ifdef MAX
                    acc = max(acc, v);
#else
                    acc += v;
#endif
                    count++;
                }
            }
        }
    }
#ifdef MAX
#ifdef EMPTY_MAX
    if (count == 0u) {
        acc = EMPTY_MAX;
    }
#endif
    out[idx] = OUT_T(acc);
#else
    let divisor = select(count, padded_count, p.kernel.w == 1u);
    out[idx] = OUT_T(acc / f32(max(divisor, 1u)));
#endif
}
