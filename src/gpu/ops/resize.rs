//! ONNX Resize (opsets 11-19): nearest with every nearest_mode and coordinate mode, and linear
//! over up to three resized dims (bilinear, trilinear for video). Cubic is a clear error.

use bytemuck::{Pod, Zeroable};

use super::{dims8, float_storage, u32_of, WG_LINEAR};
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::GpuTensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinateMode {
    HalfPixel,
    Asymmetric,
    AlignCorners,
    PytorchHalfPixel,
    TfHalfPixelForNn,
    HalfPixelSymmetric,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest(NearestMode),
    Linear,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    in_shape: [u32; 8],
    out_shape: [u32; 8],
    scales: [f32; 8],
    rank: u32,
    total: u32,
    coord_mode: u32,
    nearest_mode: u32,
    lerp_mask: u32,
    _pad: [u32; 3],
}

/// Resizes contiguous `x` of `in_shape` to `out_shape`. `scales` are ONNX's (output/input per
/// dim); `None` derives them from the shapes, as ONNX does when `sizes` is given.
#[allow(clippy::too_many_arguments)]
pub fn resize(
    b: &mut ProgramBuilder,
    x: &GpuTensor,
    in_shape: &[usize],
    out_shape: &[usize],
    scales: Option<&[f32]>,
    mode: ResizeMode,
    coord: CoordinateMode,
    out: &GpuTensor,
) -> GpuResult<()> {
    const OP: &str = "resize";
    let rank = in_shape.len();
    if out_shape.len() != rank || scales.is_some_and(|s| s.len() != rank) {
        return Err(shape_err(OP, format!("ranks differ: {in_shape:?} -> {out_shape:?}")));
    }
    let total: usize = out_shape.iter().product();
    if x.len() != in_shape.iter().product::<usize>() || out.len() != total {
        return Err(shape_err(OP, format!("tensors of {in_shape:?} -> {out_shape:?} expected")));
    }
    if in_shape.contains(&0) {
        return Err(shape_err(OP, "empty input"));
    }
    let mut sc = [1.0f32; 8];
    for d in 0..rank {
        sc[d] = scales.map_or(out_shape[d] as f32 / in_shape[d] as f32, |s| s[d]);
    }
    let mut lerp_mask = 0u32;
    if mode == ResizeMode::Linear {
        for d in 0..rank {
            if in_shape[d] != out_shape[d] || sc[d] != 1.0 {
                lerp_mask |= 1 << d;
            }
        }
        if lerp_mask.count_ones() > 3 {
            return Err(GpuError::Unsupported {
                op: OP,
                message: format!("linear resize of more than three dims ({in_shape:?} -> {out_shape:?})"),
            });
        }
    }
    let nearest_mode = match mode {
        ResizeMode::Nearest(NearestMode::RoundPreferFloor) | ResizeMode::Linear => 0,
        ResizeMode::Nearest(NearestMode::RoundPreferCeil) => 1,
        ResizeMode::Nearest(NearestMode::Floor) => 2,
        ResizeMode::Nearest(NearestMode::Ceil) => 3,
    };
    let params = Params {
        in_shape: dims8(OP, in_shape)?,
        out_shape: dims8(OP, out_shape)?,
        scales: sc,
        rank: rank as u32,
        total: u32_of(OP, total)?,
        coord_mode: coord as u32,
        nearest_mode,
        lerp_mask,
        _pad: [0; 3],
    };
    let name = if mode == ResizeMode::Linear { "linear" } else { "nearest" };
    let variant = ShaderVariant::new(OP).tag("f32");
    let variant = float_storage(b.context(), OP, variant, "X_T", "x", x)?;
    let variant = float_storage(b.context(), OP, variant, "OUT_T", "out", out)?
        .tag(name)
        .tag(&format!("wg{WG_LINEAR}"))
        .define("WG", WG_LINEAR)
        .define("ACT", "x");
    // The dims, then per tap (2^interpolated dims) the dims again.
    let rank = params.rank as u64;
    let loops = rank + (1u64 << params.lerp_mask.count_ones()) * (1 + rank);
    b.push(variant, &params, &[x], &[out], linear_workgroups(total, WG_LINEAR), loops)
}
