// Convolution 1-D/2-D/3-D (always seen as 3-D) with groups, stride, padding and dilation, as an
// implicit GEMM: rows = output channels of a group, columns = output pixels, K = input channels
// of the group x kernel volume. Each invocation keeps 4 channels x 4 pixels in registers and
// never waits at a barrier. Bias, int8 scales and the activation are fused in the epilogue.
//   x [N, Cin, D, H, W], w [Cout, Cin/groups, KD, KH, KW], out [N, Cout, OD, OH, OW], contiguous.
// W_PACKED: weights (f32, f16 or int8) pre-packed as [groups, Cin/groups * KD*KH*KW, Cout/groups]
// (see `conv::pack_weights`, Cout/groups a multiple of 4), so the four channels' weights of one
// tap are one vec4 load (one word of int8) instead of four gathers.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"

struct Params {
    in_dims: vec4<u32>,  // cin, d, h, w
    out_dims: vec4<u32>, // cout, od, oh, ow
    kernel: vec4<u32>,   // kd, kh, kw, groups
    stride: vec4<u32>,   // sd, sh, sw, batch
    dilation: vec4<u32>, // dd, dh, dw, _
    pad: vec4<u32>,      // pd, ph, pw (leading pads), _
    act_alpha: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#include "weights"
#ifdef HAS_BIAS
@group(0) @binding(BIND_BIAS) var<storage, read> bias: array<f32>;
#endif
@group(0) @binding(BIND_OUT) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WGX, WGY)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let groups = p.kernel.w;
    let n = gid.z / groups;
    let g = gid.z % groups;
    let cout_g = p.out_dims.x / groups;
    let cin_g = p.in_dims.x / groups;
    let npx = p.out_dims.y * p.out_dims.z * p.out_dims.w;
    let co0 = gid.y * 4u;
    let px0 = gid.x * 4u;
    if (co0 >= cout_g || px0 >= npx) {
        return;
    }
    // Top-left-front input corner of each of the 4 pixels (edge pixels repeat the last one).
    var z0: array<i32, 4>;
    var y0: array<i32, 4>;
    var x0: array<i32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let pix = min(px0 + j, npx - 1u);
        let ox = pix % p.out_dims.w;
        let oy = (pix / p.out_dims.w) % p.out_dims.z;
        let oz = pix / (p.out_dims.w * p.out_dims.z);
        z0[j] = i32(oz * p.stride.x) - i32(p.pad.x);
        y0[j] = i32(oy * p.stride.y) - i32(p.pad.y);
        x0[j] = i32(ox * p.stride.z) - i32(p.pad.z);
    }
    var wrow: array<u32, 4>; // first weight of each output channel
    let kvol = p.kernel.x * p.kernel.y * p.kernel.z;
    for (var i = 0u; i < 4u; i++) {
        wrow[i] = (g * cout_g + min(co0 + i, cout_g - 1u)) * cin_g * kvol;
    }
    let d = i32(p.in_dims.y);
    let h = i32(p.in_dims.z);
    let w = i32(p.in_dims.w);
    var acc: array<vec4<f32>, 4>; // [pixel] -> 4 channels
    for (var ci = 0u; ci < cin_g; ci++) {
        let plane = (n * p.in_dims.x + g * cin_g + ci) * p.in_dims.y * p.in_dims.z * p.in_dims.w;
        var kidx = ci * kvol;
        for (var kz = 0u; kz < p.kernel.x; kz++) {
            for (var ky = 0u; ky < p.kernel.y; ky++) {
                for (var kx = 0u; kx < p.kernel.z; kx++) {
#ifdef W_PACKED
                    let wv = load_w4(((g * cin_g * kvol + kidx) * cout_g + co0) >> 2u);
#else
                    let wv = vec4<f32>(load_w(wrow[0] + kidx), load_w(wrow[1] + kidx), load_w(wrow[2] + kidx),
                                       load_w(wrow[3] + kidx));
#endif
                    kidx++;
                    let dz = i32(kz * p.dilation.x);
                    let dy = i32(ky * p.dilation.y);
                    let dx = i32(kx * p.dilation.z);
                    for (var j = 0u; j < 4u; j++) {
                        let iz = z0[j] + dz;
                        let iy = y0[j] + dy;
                        let ix = x0[j] + dx;
                        if (iz >= 0 && iz < d && iy >= 0 && iy < h && ix >= 0 && ix < w) {
                            acc[j] += x[plane + u32((iz * h + iy) * w + ix)] * wv;
                        }
                    }
                }
            }
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let co = g * cout_g + co0 + i;
        if (co0 + i >= cout_g) {
            break;
        }
        var scale = 1.0;
#ifdef W_I8
        scale = scales[co];
#endif
        var shift = 0.0;
#ifdef HAS_BIAS
        shift = bias[co];
#endif
        for (var j = 0u; j < 4u; j++) {
            if (px0 + j < npx) {
                out[(n * p.out_dims.x + co) * npx + px0 + j] = activation(acc[j][i] * scale + shift, p.act_alpha);
            }
        }
    }
}
