//! MaxPool and AveragePool over 1-3 spatial dims (floor mode; ceil mode is the caller's larger
//! output with matching trailing pads). GlobalAveragePool is `reduce::reduce` with `Mean`.

use bytemuck::{Pod, Zeroable};

use super::conv::{three, Geometry};
use super::{float_storage, u32_of, WG_LINEAR};
use crate::gpu::error::{shape_err, GpuResult};
use crate::gpu::program::{linear_workgroups, nested_loops, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::GpuTensor;
use crate::gpu::DType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Average { count_include_pad: bool },
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    in_dims: [u32; 4],
    out_dims: [u32; 4],
    kernel: [u32; 4],
    stride: [u32; 4],
    dilation: [u32; 4],
    pad: [u32; 4],
    pad_end: [u32; 4],
}

/// x [N, C, *spatial] -> out [N, C, *geometry.output(spatial)].
pub fn pool(
    b: &mut ProgramBuilder,
    kind: PoolKind,
    x: &GpuTensor,
    x_shape: &[usize],
    g: &Geometry,
    out: &GpuTensor,
) -> GpuResult<()> {
    const OP: &str = "pool";
    g.check(OP, x_shape.len().saturating_sub(2))?;
    let spatial = g.output(&x_shape[2..]);
    let planes = x_shape[0] * x_shape[1];
    let total = planes * spatial.iter().product::<usize>();
    if out.len() != total || x.len() != x_shape.iter().product::<usize>() {
        return Err(shape_err(OP, format!("output '{}' holds {}, expected {total}", out.name(), out.len())));
    }
    let u = |v: usize| u32_of(OP, v);
    let u3 = |v: [usize; 3], w: usize| -> GpuResult<[u32; 4]> { Ok([u(v[0])?, u(v[1])?, u(v[2])?, u(w)?]) };
    let include_pad = matches!(kind, PoolKind::Average { count_include_pad: true });
    let params = Params {
        in_dims: u3(three(&x_shape[2..], 1), 0)?,
        out_dims: u3(three(&spatial, 1), 0)?,
        kernel: u3(three(&g.kernel, 1), include_pad as usize)?,
        stride: u3(three(&g.strides, 1), total)?,
        dilation: u3(three(&g.dilations, 1), 0)?,
        pad: u3(three(&g.pads_begin, 0), 0)?,
        pad_end: u3(three(&g.pads_end, 0), 0)?,
    };
    let mut variant = ShaderVariant::new(OP).tag("f32");
    variant = float_storage(b.context(), OP, variant, "X_T", "x", x)?;
    variant = float_storage(b.context(), OP, variant, "OUT_T", "out", out)?;
    variant = match kind {
        // A window of padding only: f32's lowest finite value, as onnxruntime; f16 keeps -inf
        // (onnxruntime's f32 lowest, rounded).
        PoolKind::Max if out.dtype() == DType::F32 => {
            variant.tag("max").flag("MAX").define("EMPTY_MAX", "f32_from_bits(0xff7fffffu)")
        }
        PoolKind::Max => variant.tag("max").flag("MAX"),
        PoolKind::Average { .. } => variant.tag("avg"),
    };
    let variant = variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR).define("ACT", "x");
    // Kernel depth x rows x columns.
    let [kd, kh, kw] = three(&g.kernel, 1).map(|v| v as u64);
    let loops = nested_loops(&[kd, kh, kw]);
    b.push(variant, &params, &[x], &[out], linear_workgroups(total, WG_LINEAR), loops)
}
