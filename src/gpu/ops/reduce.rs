//! Reductions along axes (ReduceSum/Mean/Max/Min/L2/SumSquare, GlobalAveragePool) and Softmax /
//! LogSoftmax along one axis, on contiguous f32 or f16 tensors (f32 arithmetic).

use bytemuck::{Pod, Zeroable};

use super::{float_storage, u32_of, WG_LINEAR};
use crate::gpu::context::KernelStyle;
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::GpuTensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
    /// Product (no compensation).
    Prod,
    SumSquare,
    L2,
}

impl ReduceOp {
    fn variant(self) -> ShaderVariant {
        let v = ShaderVariant::new("reduce").tag("f32");
        let sum = |v: ShaderVariant, name: &str, term: &str, finish: &str| {
            v.tag(name).define("TERM", term).define("FINISH", finish)
        };
        match self {
            ReduceOp::Sum => sum(v, "sum", "v", "sum"),
            ReduceOp::Mean => sum(v, "mean", "v", "sum / f32(p.axis)"),
            ReduceOp::SumSquare => sum(v, "sumsquare", "v * v", "sum"),
            ReduceOp::L2 => sum(v, "l2", "v * v", "sqrt(sum)"),
            ReduceOp::Max => v.tag("max").flag("EXTREME").define("PICK", "max"),
            ReduceOp::Prod => v.tag("prod").flag("EXTREME").define("PICK", "mul_f"),
            ReduceOp::Min => v.tag("min").flag("EXTREME").define("PICK", "min"),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    outer: u32,
    axis: u32,
    inner: u32,
    total: u32,
}

const OP: &str = "reduce";

fn line_params(op: &'static str, shape: &[usize], first: usize, last: usize) -> GpuResult<Params> {
    let outer: usize = shape[..first].iter().product();
    let axis: usize = shape[first..=last].iter().product();
    let inner: usize = shape[last + 1..].iter().product();
    if axis == 0 {
        return Err(shape_err(op, format!("empty reduction axis in {shape:?}")));
    }
    Ok(Params {
        outer: u32_of(op, outer)?,
        axis: u32_of(op, axis)?,
        inner: u32_of(op, inner)?,
        total: u32_of(op, outer * inner)?,
    })
}

/// The storage part of a variant: input `X_T` and output `OUT_T`, each f32 or f16 (shader-f16).
fn storage_types(
    b: &ProgramBuilder,
    op: &'static str,
    v: ShaderVariant,
    x: &GpuTensor,
    out: &GpuTensor,
) -> GpuResult<ShaderVariant> {
    let v = float_storage(b.context(), op, v, "X_T", "x", x)?;
    float_storage(b.context(), op, v, "OUT_T", "out", out)
}

/// Reduces contiguous `x` of `shape` over `axes` (sorted, distinct, one adjacent run; permute
/// first for others). `out` holds the product of the kept dims (keepdims is only a shape).
pub fn reduce(
    b: &mut ProgramBuilder,
    op: ReduceOp,
    x: &GpuTensor,
    shape: &[usize],
    axes: &[usize],
    out: &GpuTensor,
) -> GpuResult<()> {
    let variant = storage_types(b, OP, op.variant(), x, out)?;
    let (first, last) = match (axes.first(), axes.last()) {
        (Some(&f), Some(&l))
            if l < shape.len() && l - f + 1 == axes.len() && axes.windows(2).all(|w| w[1] == w[0] + 1) =>
        {
            (f, l)
        }
        _ => {
            return Err(GpuError::Unsupported {
                op: OP,
                message: format!(
                    "axes {axes:?} of {shape:?} are not one adjacent run; transpose them together first"
                ),
            })
        }
    };
    let params = line_params(OP, shape, first, last)?;
    if out.len() != params.total as usize || x.len() != shape.iter().product::<usize>() {
        return Err(shape_err(
            OP,
            format!("output '{}' holds {}, expected {}", out.name(), out.len(), params.total),
        ));
    }
    let variant = variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR).define("ACT", "x");
    b.push(variant, &params, &[x], &[out], linear_workgroups(params.total as usize, WG_LINEAR))
}

/// Softmax (or LogSoftmax) of contiguous `x` along `axis` (ONNX opset >= 13 semantics; for
/// older opsets' "flatten from axis" reshape so the trailing dims form one axis).
pub fn softmax(
    b: &mut ProgramBuilder,
    x: &GpuTensor,
    shape: &[usize],
    axis: usize,
    log: bool,
    out: &GpuTensor,
) -> GpuResult<()> {
    const OP: &str = "softmax";
    if axis >= shape.len() || x.len() != shape.iter().product::<usize>() || out.len() != x.len() {
        return Err(shape_err(
            OP,
            format!("axis {axis} of {shape:?}; input {} and output {} elements", x.len(), out.len()),
        ));
    }
    let params = line_params(OP, shape, axis, axis)?;
    let mut variant = storage_types(b, OP, ShaderVariant::new(OP).tag("f32"), x, out)?;
    if log {
        variant = variant.tag("log").flag("LOG");
    }
    if b.context().style() == KernelStyle::Tiled {
        // One workgroup per line.
        let variant = variant.tag("line_per_wg.wg64").flag("LINE_PER_WORKGROUP").define("ACT", "x");
        return b.push(variant, &params, &[x], &[out], linear_workgroups(params.total as usize, 1));
    }
    let variant = variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR).define("ACT", "x");
    b.push(variant, &params, &[x], &[out], linear_workgroups(params.total as usize, WG_LINEAR))
}
