// Convolution for GPUs (KernelStyle::Tiled): conv.wgsl's implicit GEMM through workgroup tiles.
// A workgroup computes 64 output channels of one group x 64 output columns (a column is one
// output pixel of one batch item, so small feature maps at a large batch still fill the tiles)
// and walks K = kernel taps x input channels 16 at a time, tap-major: the 16 channels of one tap
// share one input position per column, so gathering the input tile costs no index division.
// Input channels are padded to a multiple of 16 in K (the padding reads zeros). Each invocation
// keeps 4 channels x 4 columns in registers; input loads and output stores are coalesced along
// columns, packed weights are one vec4 (one int8 word) per invocation and step, and tile reads
// are broadcast (weights, one vec4) or conflict-free (inputs).
// Weights: as conv.wgsl (W_PACKED: [groups, Cin/groups * kernel volume, Cout/groups]).
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"
#include "conv_io"

const TM: u32 = 64u; // output channels per workgroup
const TN: u32 = 64u; // output columns per workgroup
const BK: u32 = 16u; // input channels (of one tap) per step
var<workgroup> tile_w: array<vec4<f32>, 256>; // [k][channel / 4]: 16 x 16 quads of channels
var<workgroup> tile_x: array<array<f32, 64>, 16>; // [k][column]

#ifndef W_PACKED
// Weight [Cout, Cin/groups, kernel] of channel `co` of group `g` (0 past the group's channels).
fn unpacked_w(g: u32, co: u32, ci: u32, tap: u32) -> f32 {
    let cout_g = p.out_dims.x / p.kernel.w;
    if (co >= cout_g) {
        return 0.0;
    }
    let kvol = p.kernel.x * p.kernel.y * p.kernel.z;
    return load_w(((g * cout_g + co) * (p.in_dims.x / p.kernel.w) + ci) * kvol + tap);
}
#endif

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
    let g = wid.z;
    let cout_g = p.out_dims.x / p.kernel.w;
    let cin_g = p.in_dims.x / p.kernel.w;
    let npx = p.out_dims.y * p.out_dims.z * p.out_dims.w;
    let columns = p.stride.w * npx;
    let kvol = p.kernel.x * p.kernel.y * p.kernel.z;
    let co_base = wid.y * TM;
    let col_base = wid.x * TN;
    // For the input tile this invocation gathers column `lc`, K rows lk, lk + 4, lk + 8, lk + 12;
    // for the weight tile, the quad of channels `wq` of K row `wk`.
    let lc = t % TN;
    let lk = t / TN;
    let wq = t % 16u;
    let wk = t / 16u;
    let col_ok = col_base + lc < columns;
    let col = min(col_base + lc, columns - 1u);
    let n = col / npx;
    let c0 = corner(col % npx);
    let dims = vec3<i32>(p.in_dims.yzw);
    let plane = p.in_dims.y * p.in_dims.z * p.in_dims.w;
    let x_base = (n * p.in_dims.x + g * cin_g) * plane;
    var acc0 = vec4<f32>(0.0); // column lid.x, channels 4 * lid.y ..
    var acc1 = vec4<f32>(0.0); // column lid.x + 16
    var acc2 = vec4<f32>(0.0); // column lid.x + 32
    var acc3 = vec4<f32>(0.0); // column lid.x + 48
    for (var tap = 0u; tap < kvol; tap++) {
        let kx = tap % p.kernel.z;
        let ky = (tap / p.kernel.z) % p.kernel.y;
        let kz = tap / (p.kernel.z * p.kernel.y);
        let at = c0 + vec3<i32>(vec3<u32>(kz, ky, kx) * p.dilation.xyz);
        let inside = col_ok && all(at >= vec3<i32>(0)) && all(at < dims);
        let spatial = select(0u, u32((at.x * dims.y + at.y) * dims.z + at.z), inside);
        for (var ci0 = 0u; ci0 < cin_g; ci0 += BK) {
            for (var l = 0u; l < 4u; l++) {
                let kk = lk + 4u * l;
                let ci = ci0 + kk;
                var xv = 0.0;
                if (inside && ci < cin_g) {
                    xv = f32(x[x_base + ci * plane + spatial]);
                }
                tile_x[kk][lc] = xv;
            }
            let ci = ci0 + wk;
            let co = co_base + 4u * wq;
            var wv = vec4<f32>(0.0);
            if (ci < cin_g && co < cout_g) {
#ifdef W_PACKED
                // Four channels of one tap are one vec4 (one int8 word): Cout/groups is a multiple of 4.
                wv = load_w4((((g * cin_g + ci) * kvol + tap) * cout_g + co) >> 2u);
#else
                wv = vec4<f32>(unpacked_w(g, co, ci, tap), unpacked_w(g, co + 1u, ci, tap),
                               unpacked_w(g, co + 2u, ci, tap), unpacked_w(g, co + 3u, ci, tap));
#endif
            }
            tile_w[wk * 16u + wq] = wv;
            workgroupBarrier();
            for (var kk = 0u; kk < BK; kk++) {
                let wv = tile_w[kk * 16u + lid.y];
                acc0 += tile_x[kk][lid.x] * wv;
                acc1 += tile_x[kk][lid.x + 16u] * wv;
                acc2 += tile_x[kk][lid.x + 32u] * wv;
                acc3 += tile_x[kk][lid.x + 48u] * wv;
            }
            workgroupBarrier();
        }
    }
    let acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var j = 0u; j < 4u; j++) {
        let c = col_base + lid.x + 16u * j;
        for (var i = 0u; i < 4u; i++) {
            let co = co_base + 4u * lid.y + i;
            if (c < columns && co < cout_g) {
                store_output(c / npx, g * cout_g + co, c % npx, acc[j][i]);
            }
        }
    }
}
