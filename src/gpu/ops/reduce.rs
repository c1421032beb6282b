//! Reductions along axes (ReduceSum/Mean/Max/Min/L2/SumSquare, GlobalAveragePool) and Softmax /
//! LogSoftmax along one axis, on contiguous f32 or f16 tensors (f32 arithmetic).

use bytemuck::{Pod, Zeroable};

use super::{float_storage, u32_of, WG_LINEAR};
use crate::gpu::context::KernelStyle;
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::{DType, GpuTensor};

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
    /// The reduction that joins this one's results over equal parts of a line into the
    /// result over the whole line (a mean of equal parts' means is the mean; the L2 norm of
    /// parts' L2 norms is the L2 norm).
    fn of_partials(self) -> ReduceOp {
        match self {
            ReduceOp::SumSquare => ReduceOp::Sum,
            other => other,
        }
    }

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
    // One invocation loops over the whole line: where that is over the adapter's loop limit
    // (llvmpipe), the line is reduced in two passes over a split of it, each within the limit.
    let axis = params.axis as usize;
    if !b.loops_fit(axis as u64) {
        if let Some(inner_len) = split_line(axis, |n| b.loops_fit(n as u64)) {
            let (outer, inner) = (params.outer as usize, params.inner as usize);
            let chunks = axis / inner_len;
            let partial = b.scratch("reduce.partial", DType::F32, outer * chunks * inner)?;
            reduce(b, op, x, &[outer * chunks, inner_len, inner], &[1], &partial)?;
            return reduce(b, op.of_partials(), &partial, &[outer, chunks, inner], &[1], out);
        }
    }
    let variant = variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR).define("ACT", "x");
    let groups = linear_workgroups(params.total as usize, WG_LINEAR);
    b.push(variant, &params, &[x], &[out], groups, axis as u64)
}

/// A length `m` dividing `axis` such that both `m` and `axis / m` pass `fits` (the largest such
/// `m`), or none (e.g. a prime `axis`).
fn split_line(axis: usize, fits: impl Fn(usize) -> bool) -> Option<usize> {
    (2..=axis.isqrt())
        .filter(|d| axis.is_multiple_of(*d))
        .flat_map(|d| [d, axis / d])
        .filter(|&m| fits(m) && fits(axis / m))
        .max()
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
    // Three passes over the line: by one invocation (CPU adapters), or each invocation of a
    // workgroup per line taking every 64th element, then two 6-step workgroup reductions. The
    // second form also takes lines whose passes would run over the adapter's loop limit in the
    // first (llvmpipe).
    let axis = params.axis as u64;
    let per_invocation = 3 * axis;
    let per_workgroup = 3 * axis.div_ceil(64) + 2 * 6;
    if b.context().style() == KernelStyle::Tiled || !b.loops_fit(per_invocation) {
        let variant = variant.tag("line_per_wg.wg64").flag("LINE_PER_WORKGROUP").define("ACT", "x");
        let groups = linear_workgroups(params.total as usize, 1);
        return b.push(variant, &params, &[x], &[out], groups, per_workgroup);
    }
    // Contiguous lines of whole vec4s: a quarter of the loads and stores.
    let (variant, loops) = if params.inner == 1 && axis.is_multiple_of(4) {
        (variant.tag("vec4").flag("VEC4"), per_invocation / 4)
    } else {
        (variant, per_invocation)
    };
    let variant = variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR).define("ACT", "x");
    let groups = linear_workgroups(params.total as usize, WG_LINEAR);
    b.push(variant, &params, &[x], &[out], groups, loops)
}

#[cfg(test)]
mod tests {
    use super::split_line;

    /// A line over the loop limit splits into two passes within it, the longer pass as long as
    /// it can be; a prime length cannot split.
    #[test]
    fn long_lines_split_into_two_passes_within_the_limit() {
        let fits = |n: usize| n <= 65_535;
        assert_eq!(split_line(90_000, fits), Some(45_000)); // GlobalAveragePool over 300x300
        assert_eq!(split_line(70_000, fits), Some(35_000));
        assert_eq!(split_line(65_537, fits), None); // prime
        assert_eq!(split_line(2 * 65_537, fits), None); // one part would be too long
        assert_eq!(split_line(65_536 * 65_535, fits), None); // fits 32-bit usize (wasm32)
        assert_eq!(split_line(65_535 * 65_535, fits), Some(65_535));
    }
}
