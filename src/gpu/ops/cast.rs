//! Cast between f32, i32 and f16 (packed storage). Booleans are f32 0/1, so bool casts are
//! elementwise comparisons, not casts.

use bytemuck::{Pod, Zeroable};

use super::{u32_of, WG_LINEAR};
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::{DType, GpuTensor};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    total: u32,
    _pad: [u32; 3],
}

/// out = src converted (f32 -> i32 truncates toward zero, as ONNX Cast; f16 rounds to nearest).
pub fn cast(b: &mut ProgramBuilder, src: &GpuTensor, out: &GpuTensor) -> GpuResult<()> {
    if src.len() != out.len() {
        return Err(shape_err("cast", format!("{} elements into {}", src.len(), out.len())));
    }
    let (from, src_t) = match src.dtype() {
        DType::F32 => ("FROM_F32", "f32"),
        DType::I32 => ("FROM_I32", "i32"),
        DType::F16 => ("FROM_F16", "u32"),
        DType::I8 => {
            return Err(GpuError::Unsupported { op: "cast", message: "from i8 (dequantize instead)".into() })
        }
    };
    let (to, dst_t) = match out.dtype() {
        DType::F32 => ("TO_F32", "f32"),
        DType::I32 => ("TO_I32", "i32"),
        DType::F16 => ("TO_F16", "u32"),
        DType::I8 => {
            return Err(GpuError::Unsupported { op: "cast", message: "to i8 (quantize instead)".into() })
        }
    };
    let threads = if out.dtype() == DType::F16 { src.len().div_ceil(2) } else { src.len() };
    let variant = ShaderVariant::new("cast")
        .tag(&format!("{}to{}", src.dtype().name(), out.dtype().name()))
        .flag(from)
        .flag(to)
        .define("SRC_T", src_t)
        .define("DST_T", dst_t)
        .define("WG", WG_LINEAR)
        .define("ACT", "x")
        .tag(&format!("wg{WG_LINEAR}"));
    let params = Params { total: u32_of("cast", src.len())?, _pad: [0; 3] };
    b.push(variant, &params, &[src], &[out], linear_workgroups(threads, WG_LINEAR), 0)
}
