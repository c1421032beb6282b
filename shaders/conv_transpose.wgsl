// Transposed convolution (1-D/2-D/3-D seen as 3-D), gathered per output element so no two
// invocations write the same place: out[n, co, o] = sum over input pixels i and taps k with
// o = i * stride - pad + k * dilation of x[n, ci, i] * w[ci, co % (Cout/groups), k].
//   x [N, Cin, D, H, W], w [Cin, Cout/groups, KD, KH, KW], out [N, Cout, OD, OH, OW].
// X_T / OUT_T: f32, or f16 storage (shader-f16); the arithmetic is f32.
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"
#include "conv_io"

// Input index along one axis feeding output o through tap k, or -1.
fn source(o: u32, k: u32, stride: u32, dil: u32, pad: u32, extent: u32) -> i32 {
    let t = i32(o + pad) - i32(k * dil);
    if (t < 0 || t % i32(stride) != 0) {
        return -1;
    }
    let i = t / i32(stride);
    return select(-1, i, i < i32(extent));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = linear_index(wid, nwg, lid, WG);
    if (idx >= p.pad.w) {
        return;
    }
    let ow = idx % p.out_dims.w;
    let oh = (idx / p.out_dims.w) % p.out_dims.z;
    let od = (idx / (p.out_dims.w * p.out_dims.z)) % p.out_dims.y;
    let co = (idx / (p.out_dims.w * p.out_dims.z * p.out_dims.y)) % p.out_dims.x;
    let n = idx / (p.out_dims.w * p.out_dims.z * p.out_dims.y * p.out_dims.x);
    let groups = p.kernel.w;
    let cout_g = p.out_dims.x / groups;
    let cin_g = p.in_dims.x / groups;
    let g = co / cout_g;
    let kvol = p.kernel.x * p.kernel.y * p.kernel.z;
    let in_plane = p.in_dims.y * p.in_dims.z * p.in_dims.w;
    var acc = 0.0;
    for (var kz = 0u; kz < p.kernel.x; kz++) {
        let iz = source(od, kz, p.stride.x, p.dilation.x, p.pad.x, p.in_dims.y);
        if (iz < 0) { continue; }
        for (var ky = 0u; ky < p.kernel.y; ky++) {
            let iy = source(oh, ky, p.stride.y, p.dilation.y, p.pad.y, p.in_dims.z);
            if (iy < 0) { continue; }
            for (var kx = 0u; kx < p.kernel.z; kx++) {
                let ix = source(ow, kx, p.stride.z, p.dilation.z, p.pad.z, p.in_dims.w);
                if (ix < 0) { continue; }
                let pix = (u32(iz) * p.in_dims.z + u32(iy)) * p.in_dims.w + u32(ix);
                let tap = (kz * p.kernel.y + ky) * p.kernel.z + kx;
                for (var ci = 0u; ci < cin_g; ci++) {
                    let c = g * cin_g + ci;
                    acc += f32(x[(n * p.in_dims.x + c) * in_plane + pix]) * load_w((c * cout_g + co % cout_g) * kvol + tap);
                }
            }
        }
    }
#ifdef W_I8
    acc *= scales[co];
#endif
#ifdef HAS_BIAS
    acc += bias[co];
#endif
    out[idx] = OUT_T(activation(acc, p.act_alpha));
}
