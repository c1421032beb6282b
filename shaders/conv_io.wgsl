// What the convolution kernels (conv, conv_tiled, conv_transpose) share, included with
// `#include "conv_io"`: the parameters, the bindings, the window corner of an output pixel and
// the epilogue (int8 scale, bias, activation, then a residual).
//   x [N, Cin, D, H, W], w [Cout, Cin/groups, KD, KH, KW] (or packed, see conv.wgsl),
//   out [N, Cout, OD, OH, OW], contiguous.

struct Params {
    in_dims: vec4<u32>,  // cin, d, h, w
    out_dims: vec4<u32>, // cout, od, oh, ow
    kernel: vec4<u32>,   // kd, kh, kw, groups
    stride: vec4<u32>,   // sd, sh, sw, batch
    dilation: vec4<u32>, // dd, dh, dw, _
    pad: vec4<u32>,      // pd, ph, pw (leading pads), total outputs (conv_transpose)
    act_alpha: f32,
    res_n: u32, // strides of the residual over batch items, output channels and output pixels
    res_c: u32,
    res_pix: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X_T>;
#include "weights"
#ifdef HAS_BIAS
@group(0) @binding(BIND_BIAS) var<storage, read> bias: array<f32>;
#endif
#ifdef HAS_RES
@group(0) @binding(BIND_RES) var<storage, read> res: array<R_T>;
#endif
@group(0) @binding(BIND_OUT) var<storage, read_write> out: array<OUT_T>;

// Output channel `co` (of all Cout) at pixel `pix` of batch item `n`, through the epilogue:
// act(acc * scale + bias) + residual.
fn store_output(n: u32, co: u32, pix: u32, acc: f32) {
    let npx = p.out_dims.y * p.out_dims.z * p.out_dims.w;
    var scale = 1.0;
#ifdef W_I8
    scale = scales[co];
#endif
    var shift = 0.0;
#ifdef HAS_BIAS
    shift = bias[co];
#endif
    let at = (n * p.out_dims.x + co) * npx + pix;
    var v = activation(acc * scale + shift, p.act_alpha);
#ifdef HAS_RES
    v += f32(res[n * p.res_n + co * p.res_c + pix * p.res_pix]);
#endif
    out[at] = OUT_T(v);
}

// The input corner (z, y, x) of output pixel `pix`'s window, before dilation.
fn corner(pix: u32) -> vec3<i32> {
    let ox = pix % p.out_dims.w;
    let oy = (pix / p.out_dims.w) % p.out_dims.z;
    let oz = pix / (p.out_dims.w * p.out_dims.z);
    return vec3<i32>(vec3<u32>(oz, oy, ox) * p.stride.xyz) - vec3<i32>(p.pad.xyz);
}
