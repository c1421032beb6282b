// Convolution 1-D/2-D/3-D (always seen as 3-D) with groups, stride, padding and dilation, as an
// implicit GEMM: rows = output channels of a group, columns = output pixels, K = input channels
// of the group x kernel volume, for CPU adapters (KernelStyle::RegisterBlocked; GPUs run
// conv_tiled.wgsl). Each invocation keeps 4 channels x 4 pixels in registers and never waits at a
// barrier. Bias, int8 scales and the activation are fused in the epilogue.
//   x [N, Cin, D, H, W], w [Cout, Cin/groups, KD, KH, KW], out [N, Cout, OD, OH, OW], contiguous.
// W_PACKED: weights (f32, f16 or int8) pre-packed as [groups, Cin/groups * KD*KH*KW, Cout/groups]
// (see `conv::pack_weights`, Cout/groups a multiple of 4), so the four channels' weights of one
// tap are one vec4 load (one word of int8) instead of four gathers.
// X_T and OUT_T are the input's and output's storage types (f32, or f16 where the adapter has
// shader-f16); loads convert to f32 and the products and sums are f32 (f16 mode halves the
// memory and bandwidth here, not the arithmetic).
#ifdef ENABLE_F16
enable f16;
#endif
#include "common"
#include "conv_io"

// Writes a block of 4 pixels (`count` of them inside the output) x 4 channels from `co0` of group
// `g`. acc[j] holds pixel j's four channels.
fn store_block(n: u32, g: u32, co0: u32, pix0: u32, count: u32, acc: array<vec4<f32>, 4>) {
    let cout_g = p.out_dims.x / p.kernel.w;
    for (var i = 0u; i < min(4u, cout_g - co0); i++) {
        for (var j = 0u; j < count; j++) {
            store_output(n, g * cout_g + co0 + i, pix0 + j, acc[j][i]);
        }
    }
}

#ifdef ROW3
const PIX: u32 = 4u;
// Kernels 3 wide with horizontal stride and dilation 1 (most convs of a UNet, and temporal ones):
// each invocation takes 4 channels x PIX (4) neighbouring pixels of ONE output row, so the 6
// inputs a kernel row covers are loaded once for its 3 taps x 4 pixels (9 loads per 96
// multiply-adds, not 15 plus 12 bounds checks; 8 pixels measured slower on SwiftShader), and every
// accumulator is a named register (a dynamically indexed private array becomes scratch memory on
// CPU adapters). Needs W_PACKED.

// Column `x0 + k` of an input row clamped into the row, and whether it lies inside (else it is
// padding): the same for every row and channel, so computed once.
fn column(x0: i32, k: i32, w: i32) -> u32 {
    return u32(clamp(x0 + k, 0, w - 1));
}
fn inside(x0: i32, k: i32, w: i32) -> bool {
    return x0 + k >= 0 && x0 + k < w;
}

#ifdef SG8
// 3x3 windows (KH1: 1x3) one deep on CPU adapters whose subgroups are 8 SIMD lanes (llvmpipe on
// AVX2), which run a storage-buffer load lane by lane. The 8 lanes of a subgroup are 8 blocks of
// 4 pixels (of any rows and batch items: the columns run over both, so a temporal conv over 8
// frames fills the lanes) for the same 4 channels, so they need the same weight vec4s per input
// channel: lane l loads tap l, every lane tap 8, and subgroupBroadcast (a register move) hands
// them round: 2 weight loads per input channel instead of 9. No lane returns or branches around
// a broadcast: blocks past the end compute on clamped inputs and are not stored, input rows
// outside the input read as 0. A workgroup is one subgroup of one channel block (y).
// One kernel row of a block: the row's 6 inputs (0 outside the input) times its 3 taps, added to
// the 4 pixels' accumulators (the same sums, in the same order, as the kernel without subgroups).
fn add_row(base: u32, row_in: bool, cols: array<u32, 6>, live: array<bool, 6>, w0: vec4<f32>,
           w1: vec4<f32>, w2: vec4<f32>, acc: ptr<function, array<vec4<f32>, 4>>) {
    let v0 = select(0.0, f32(x[base + cols[0]]), live[0] && row_in);
    let v1 = select(0.0, f32(x[base + cols[1]]), live[1] && row_in);
    let v2 = select(0.0, f32(x[base + cols[2]]), live[2] && row_in);
    let v3 = select(0.0, f32(x[base + cols[3]]), live[3] && row_in);
    let v4 = select(0.0, f32(x[base + cols[4]]), live[4] && row_in);
    let v5 = select(0.0, f32(x[base + cols[5]]), live[5] && row_in);
    (*acc)[0] += v0 * w0 + v1 * w1 + v2 * w2;
    (*acc)[1] += v1 * w0 + v2 * w1 + v3 * w2;
    (*acc)[2] += v2 * w0 + v3 * w1 + v4 * w2;
    (*acc)[3] += v3 * w0 + v4 * w1 + v5 * w2;
}

@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let g = gid.z;
    let cout_g = p.out_dims.x / p.kernel.w;
    let cin_g = p.in_dims.x / p.kernel.w;
    let ow = p.out_dims.w;
    let blocks = (ow + PIX - 1u) / PIX;
    let rows = p.out_dims.y * p.out_dims.z;
    let columns = p.stride.w * rows * blocks; // batch items x rows x blocks
    let co0 = min(gid.y * 4u, cout_g - 4u);
    let col = min(gid.x, columns - 1u);
    let n = col / (rows * blocks);
    let row = (col / blocks) % rows;
    let ox0 = (col % blocks) * PIX;
    let h = i32(p.in_dims.z);
    let w = i32(p.in_dims.w);
    let z0 = i32((row / p.out_dims.z) * p.stride.x) - i32(p.pad.x);
    let y0 = i32((row % p.out_dims.z) * p.stride.y) - i32(p.pad.y);
    let x0 = i32(ox0) - i32(p.pad.z);
    let cols = array<u32, 6>(column(x0, 0, w), column(x0, 1, w), column(x0, 2, w), column(x0, 3, w),
                             column(x0, 4, w), column(x0, 5, w));
    let live = array<bool, 6>(inside(x0, 0, w), inside(x0, 1, w), inside(x0, 2, w), inside(x0, 3, w),
                              inside(x0, 4, w), inside(x0, 5, w));
    // The three input rows of the window (clamped) and whether each lies inside the input.
    let zin = z0 >= 0 && z0 < i32(p.in_dims.y);
    let zc = clamp(z0, 0, i32(p.in_dims.y) - 1);
    let iy0 = y0;
    let iy1 = y0 + i32(p.dilation.y);
    let iy2 = y0 + 2 * i32(p.dilation.y);
    let r0 = u32((zc * h + clamp(iy0, 0, h - 1)) * w);
    let r1 = u32((zc * h + clamp(iy1, 0, h - 1)) * w);
    let r2 = u32((zc * h + clamp(iy2, 0, h - 1)) * w);
    let in0 = zin && iy0 >= 0 && iy0 < h;
    let in1 = zin && iy1 >= 0 && iy1 < h;
    let in2 = zin && iy2 >= 0 && iy2 < h;
    // Taps loaded lane by lane: 0..7 of 3x3 (tap 8 by every lane), 0..2 of 1x3.
#ifdef KH1
    let my_tap = min(lane, 2u) * cout_g;
#else
    let my_tap = min(lane, 7u) * cout_g;
#endif
    var acc = array<vec4<f32>, 4>(); // pixels ox0.., four channels each
    for (var ci = 0u; ci < cin_g; ci++) {
        let plane = (n * p.in_dims.x + g * cin_g + ci) * p.in_dims.y * p.in_dims.z * p.in_dims.w;
        // Packed weights [groups, Cin/groups * KVOL, Cout/groups]: tap t's 4 channels are one vec4.
        let tap0 = (g * cin_g + ci) * KVOL * cout_g + co0;
        let wl = load_w4((tap0 + my_tap) >> 2u);
#ifndef KH1
        let w8 = load_w4((tap0 + 8u * cout_g) >> 2u);
#endif
        add_row(plane + r0, in0, cols, live, subgroupBroadcast(wl, 0u), subgroupBroadcast(wl, 1u),
                subgroupBroadcast(wl, 2u), &acc);
#ifndef KH1
        add_row(plane + r1, in1, cols, live, subgroupBroadcast(wl, 3u), subgroupBroadcast(wl, 4u),
                subgroupBroadcast(wl, 5u), &acc);
        add_row(plane + r2, in2, cols, live, subgroupBroadcast(wl, 6u), subgroupBroadcast(wl, 7u), w8, &acc);
#endif
    }
    if (gid.y * 4u < cout_g && gid.x < columns) {
        store_block(n, g, co0, row * ow + ox0, min(PIX, ow - ox0), acc);
    }
}
#else
@compute @workgroup_size(WGX, WGY)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let groups = p.kernel.w;
    let n = gid.z / groups;
    let g = gid.z % groups;
    let cout_g = p.out_dims.x / groups;
    let cin_g = p.in_dims.x / groups;
    let ow = p.out_dims.w;
    let blocks = (ow + PIX - 1u) / PIX;
    let rows = p.out_dims.y * p.out_dims.z;
    let co0 = gid.y * 4u;
    let row = gid.x / blocks;
    if (co0 >= cout_g || row >= rows) {
        return;
    }
    let ox0 = (gid.x % blocks) * PIX;
    let d = i32(p.in_dims.y);
    let h = i32(p.in_dims.z);
    let w = i32(p.in_dims.w);
    let z0 = i32((row / p.out_dims.z) * p.stride.x) - i32(p.pad.x);
    let y0 = i32((row % p.out_dims.z) * p.stride.y) - i32(p.pad.y);
    let x0 = i32(ox0) - i32(p.pad.z);
    let kvol = p.kernel.x * p.kernel.y * 3u;
    let x0c = column(x0, 0, w);
    let x1c = column(x0, 1, w);
    let x2c = column(x0, 2, w);
    let x3c = column(x0, 3, w);
    let x4c = column(x0, 4, w);
    let x5c = column(x0, 5, w);
    let m0 = inside(x0, 0, w);
    let m1 = inside(x0, 1, w);
    let m2 = inside(x0, 2, w);
    let m3 = inside(x0, 3, w);
    let m4 = inside(x0, 4, w);
    let m5 = inside(x0, 5, w);
    var a0 = vec4<f32>(0.0); // pixel ox0, four channels
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var ci = 0u; ci < cin_g; ci++) {
        let plane = (n * p.in_dims.x + g * cin_g + ci) * p.in_dims.y * p.in_dims.z * p.in_dims.w;
        // Packed weights [groups, Cin/groups * kvol, Cout/groups]: a tap's 4 channels are one vec4.
        var tap = (g * cin_g + ci) * kvol * cout_g + co0;
        for (var kz = 0u; kz < p.kernel.x; kz++) {
            let iz = z0 + i32(kz * p.dilation.x);
            for (var ky = 0u; ky < p.kernel.y; ky++) {
                let iy = y0 + i32(ky * p.dilation.y);
                if (iz >= 0 && iz < d && iy >= 0 && iy < h) {
                    let base = plane + u32((iz * h + iy) * w);
                    let v0 = select(0.0, f32(x[base + x0c]), m0);
                    let v1 = select(0.0, f32(x[base + x1c]), m1);
                    let v2 = select(0.0, f32(x[base + x2c]), m2);
                    let v3 = select(0.0, f32(x[base + x3c]), m3);
                    let v4 = select(0.0, f32(x[base + x4c]), m4);
                    let v5 = select(0.0, f32(x[base + x5c]), m5);
                    let w0 = load_w4(tap >> 2u);
                    let w1 = load_w4((tap + cout_g) >> 2u);
                    let w2 = load_w4((tap + 2u * cout_g) >> 2u);
                    a0 += v0 * w0 + v1 * w1 + v2 * w2;
                    a1 += v1 * w0 + v2 * w1 + v3 * w2;
                    a2 += v2 * w0 + v3 * w1 + v4 * w2;
                    a3 += v3 * w0 + v4 * w1 + v5 * w2;
                }
                tap += 3u * cout_g;
            }
        }
    }
    store_block(n, g, co0, row * ow + ox0, min(PIX, ow - ox0), array<vec4<f32>, PIX>(a0, a1, a2, a3));
}
#endif // SG8
#else
// x at (z, y, x) of one input plane, 0 in the padding.
fn tap_input(plane: u32, at: vec3<i32>) -> f32 {
    let dims = vec3<i32>(p.in_dims.yzw);
    let inside = all(at >= vec3<i32>(0)) && all(at < dims);
    let c = clamp(at, vec3<i32>(0), dims - vec3<i32>(1));
    return select(0.0, f32(x[plane + u32((c.x * dims.y + c.y) * dims.z + c.z)]), inside);
}

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
    // Top-left-front input corner of each of the 4 pixels (edge pixels repeat the last one), and
    // named accumulators: one dynamic index sends a private array to scratch memory on CPU
    // adapters that do not unroll (SwiftShader).
    let c0 = corner(min(px0, npx - 1u));
    let c1 = corner(min(px0 + 1u, npx - 1u));
    let c2 = corner(min(px0 + 2u, npx - 1u));
    let c3 = corner(min(px0 + 3u, npx - 1u));
    let kvol = p.kernel.x * p.kernel.y * p.kernel.z;
#ifndef W_PACKED
    let wrow0 = (g * cout_g + co0) * cin_g * kvol;
    let wrow1 = (g * cout_g + min(co0 + 1u, cout_g - 1u)) * cin_g * kvol;
    let wrow2 = (g * cout_g + min(co0 + 2u, cout_g - 1u)) * cin_g * kvol;
    let wrow3 = (g * cout_g + min(co0 + 3u, cout_g - 1u)) * cin_g * kvol;
#endif
    var a0 = vec4<f32>(0.0); // pixel px0, four channels
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var ci = 0u; ci < cin_g; ci++) {
        let plane = (n * p.in_dims.x + g * cin_g + ci) * p.in_dims.y * p.in_dims.z * p.in_dims.w;
        var kidx = ci * kvol;
        for (var kz = 0u; kz < p.kernel.x; kz++) {
            for (var ky = 0u; ky < p.kernel.y; ky++) {
                for (var kx = 0u; kx < p.kernel.z; kx++) {
#ifdef W_PACKED
                    let wv = load_w4(((g * cin_g * kvol + kidx) * cout_g + co0) >> 2u);
#else
                    let wv = vec4<f32>(load_w(wrow0 + kidx), load_w(wrow1 + kidx), load_w(wrow2 + kidx),
                                       load_w(wrow3 + kidx));
#endif
                    kidx++;
                    let tap = vec3<i32>(vec3<u32>(kz, ky, kx) * p.dilation.xyz);
                    a0 += tap_input(plane, c0 + tap) * wv;
                    a1 += tap_input(plane, c1 + tap) * wv;
                    a2 += tap_input(plane, c2 + tap) * wv;
                    a3 += tap_input(plane, c3 + tap) * wv;
                }
            }
        }
    }
    store_block(n, g, co0, px0, min(4u, npx - px0), array<vec4<f32>, 4>(a0, a1, a2, a3));
}
#endif
