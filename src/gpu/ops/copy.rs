//! Data movement on 32-bit tensors (f32 or i32) and f16 ones (where the adapter has shader-f16):
//! permute/transpose, slice with steps, concat, expand, tile, constant pad, gather. All are one
//! strided-copy kernel except gather. Source and destination hold the same element type.

use bytemuck::{Pod, Zeroable};

use super::{dims8, u32_of, WG_LINEAR};
use crate::gpu::context::KernelStyle;
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::{coalesce, DType, GpuTensor, View};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    shape: [u32; 8],
    out_strides: [u32; 8],
    in_dims: [u32; 8],
    in_strides: [u32; 8],
    step: [i32; 8],
    start: [i32; 8],
    out_offset: u32,
    in_offset: u32,
    total: u32,
    rank: u32,
    pad_value: u32,
    wrap: u32,
    _pad: [u32; 2],
}

const OP: &str = "copy";

/// The element part of a variant: `b32` (the bits of f32 or i32, moved as u32) or `f16`.
fn element_variant(
    b: &ProgramBuilder,
    op: &'static str,
    v: ShaderVariant,
    src: &GpuTensor,
    dst: &GpuTensor,
) -> GpuResult<ShaderVariant> {
    let word = |t: &GpuTensor| matches!(t.dtype(), DType::F32 | DType::I32);
    if word(src) && word(dst) {
        return Ok(v.tag("b32").define("E", "u32").define("PAD_VALUE", "p.pad_value"));
    }
    if src.dtype() == DType::F16 && dst.dtype() == DType::F16 {
        let v = super::float_storage(b.context(), op, v.tag("f16"), "E", "", src)?;
        return Ok(v.define("PAD_VALUE", "f16(bitcast<f32>(p.pad_value))"));
    }
    Err(GpuError::Unsupported {
        op,
        message: format!(
            "'{}' is {} and '{}' is {}; data movement takes 32-bit tensors or f16 ones on both sides (cast first)",
            src.name(),
            src.dtype().name(),
            dst.name(),
            dst.dtype().name()
        ),
    })
}

fn i32s(op: &'static str, v: &[isize]) -> GpuResult<[i32; 8]> {
    let mut out = [0i32; 8];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = i32::try_from(x).map_err(|_| shape_err(op, format!("{x} does not fit 32 bits")))?;
    }
    Ok(out)
}

/// The general form: `out[i] = src[i * step + start]` (per dim), wrapped or padded.
pub fn strided_copy(
    b: &mut ProgramBuilder,
    src: &View,
    step: &[isize],
    start: &[isize],
    wrap: &[bool],
    pad_value: f32,
    out: &View,
) -> GpuResult<()> {
    let rank = out.shape.len();
    if src.shape.len() != rank || step.len() != rank || start.len() != rank || wrap.len() != rank {
        return Err(shape_err(OP, format!("ranks differ: src {:?}, out {:?}", src.shape, out.shape)));
    }
    let variant = element_variant(b, OP, ShaderVariant::new(OP), &src.tensor, &out.tensor)?;
    src.check(OP)?;
    out.check(OP)?;
    let pad_bits = match src.tensor.dtype() {
        DType::I32 => (pad_value as i32) as u32,
        _ => pad_value.to_bits(),
    };
    let total = out.numel();
    // The kernel walks runs along the last dimension: a scalar is a one-element vector.
    let one = |v: &[usize]| if rank == 0 { vec![1] } else { v.to_vec() };
    let (step, start) = if rank == 0 { (&[0][..], &[0][..]) } else { (step, start) };
    let params = Params {
        shape: dims8(OP, &one(&out.shape))?,
        out_strides: dims8(OP, &one(&out.strides))?,
        in_dims: dims8(OP, &one(&src.shape))?,
        in_strides: dims8(OP, &one(&src.strides))?,
        step: i32s(OP, step)?,
        start: i32s(OP, start)?,
        out_offset: u32_of(OP, out.offset)?,
        in_offset: u32_of(OP, src.offset)?,
        total: u32_of(OP, total)?,
        rank: rank.max(1) as u32,
        pad_value: pad_bits,
        wrap: wrap.iter().enumerate().map(|(d, &w)| (w as u32) << d).sum(),
        _pad: [0; 2],
    };
    let variant = variant.define("WG", WG_LINEAR).define("ACT", "x").tag(&format!("wg{WG_LINEAR}"));
    // One invocation per run of up to RUN (4) elements of a row of the last dimension.
    let last = out.shape.last().copied().unwrap_or(1);
    let invocations = if total == 0 { 0 } else { total / last * last.div_ceil(COPY_RUN) };
    // The outer dims (at most MAX_RANK - 1 trips) and the run.
    let loops = (super::MAX_RANK + COPY_RUN) as u64;
    let groups = linear_workgroups(invocations, WG_LINEAR);
    b.push(variant, &params, &[&src.tensor], &[&out.tensor], groups, loops)
}

/// Elements per invocation of the copy kernel (`RUN` in shaders/copy.wgsl).
const COPY_RUN: usize = 4;

/// out = src, element by element (src may be permuted or broadcast; out may be a window).
pub fn copy(b: &mut ProgramBuilder, src: &View, out: &View) -> GpuResult<()> {
    if src.shape != out.shape {
        return Err(shape_err(OP, format!("shapes differ: {:?} vs {:?}", src.shape, out.shape)));
    }
    // A plain copy may merge dims that are contiguous in both views.
    let (shape, st) = coalesce(&out.shape, &[&src.strides, &out.strides]);
    let src =
        View { tensor: src.tensor.clone(), offset: src.offset, shape: shape.clone(), strides: st[0].clone() };
    let out = View { tensor: out.tensor.clone(), offset: out.offset, shape, strides: st[1].clone() };
    let r = out.shape.len();
    if let Some(t) = Transpose2d::of(&src, &out) {
        return transpose2d(b, &t, &src.tensor, &out.tensor);
    }
    strided_copy(b, &src, &vec![1; r], &vec![0; r], &vec![false; r], 0.0, &out)
}

/// A copy that is a batched 2-D transpose: out[b, i, j] = src[b, i, j] with the source
/// contiguous along i and the output along j (after merging dims), e.g. [C, H*W] -> [H*W, C].
struct Transpose2d {
    dims: [usize; 3],
    src: [usize; 4], // strides (batch, i, j) and offset
    out: [usize; 4],
}

impl Transpose2d {
    fn of(src: &View, out: &View) -> Option<Self> {
        let r = out.shape.len();
        // One batch dim at most, rows and columns of at least 4 (else the plain copy is as good).
        if !(2..=3).contains(&r) || out.shape[r - 1] < 4 || out.shape[r - 2] < 4 {
            return None;
        }
        let (ss, os) = (&src.strides, &out.strides);
        if ss[r - 2] != 1 || os[r - 1] != 1 || ss[r - 1] == 1 {
            return None;
        }
        let fits = |n: usize| n <= crate::gpu::program::MAX_WORKGROUPS as usize;
        if !fits(out.shape[r - 1].div_ceil(32))
            || !fits(out.shape[r - 2].div_ceil(32))
            || (r == 3 && !fits(out.shape[0]))
        {
            return None;
        }
        let batch = |s: &[usize]| if r == 3 { s[0] } else { 0 };
        Some(Self {
            dims: [if r == 3 { out.shape[0] } else { 1 }, out.shape[r - 2], out.shape[r - 1]],
            src: [batch(ss), 1, ss[r - 1], src.offset],
            out: [batch(os), os[r - 2], 1, out.offset],
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TransposeParams {
    dims: [u32; 4],
    src_strides: [u32; 4],
    out_strides: [u32; 4],
}

fn transpose2d(b: &mut ProgramBuilder, t: &Transpose2d, src: &GpuTensor, out: &GpuTensor) -> GpuResult<()> {
    const OP: &str = "transpose";
    let four = |v: [usize; 4]| -> GpuResult<[u32; 4]> {
        Ok([u32_of(OP, v[0])?, u32_of(OP, v[1])?, u32_of(OP, v[2])?, u32_of(OP, v[3])?])
    };
    let [batch, rows, cols] = t.dims;
    let params = TransposeParams {
        dims: four([batch, rows, cols, 0])?,
        src_strides: four(t.src)?,
        out_strides: four(t.out)?,
    };
    let variant = element_variant(b, OP, ShaderVariant::new(OP), src, out)?;
    // 32x32 elements per workgroup in both forms (32x8 invocations moving 4 each, or 8x8 moving
    // 4x4 each).
    let variant = if b.context().style() == KernelStyle::Tiled {
        variant.tag("tiled32.wg32x8").flag("TILED")
    } else {
        // Runs along i (source) and j (output) as aligned vec4s where everything is a multiple
        // of 4, the run's own dimension included (no partial run at the edge).
        let aligned = |v: &[usize]| v.iter().all(|x| x % 4 == 0);
        let variant = variant.tag("rb4x4.wg8x8");
        let variant = if aligned(&[rows, t.src[0], t.src[2], t.src[3]]) {
            variant.tag("src4").flag("SRC_VEC4")
        } else {
            variant
        };
        if aligned(&[cols, t.out[0], t.out[1], t.out[3]]) {
            variant.tag("out4").flag("OUT_VEC4")
        } else {
            variant
        }
    };
    let groups = [u32_of(OP, cols.div_ceil(32))?, u32_of(OP, rows.div_ceil(32))?, u32_of(OP, batch)?];
    b.push(variant.define("ACT", "x"), &params, &[src], &[out], groups, 0)
}

/// ONNX Slice: `out[i] = src[start + i * step]` per dim (steps may be negative; starts already
/// clamped by the caller as ONNX specifies). `out.shape` is the result's shape.
pub fn slice(
    b: &mut ProgramBuilder,
    src: &View,
    starts: &[isize],
    steps: &[isize],
    out: &View,
) -> GpuResult<()> {
    let r = out.shape.len();
    strided_copy(b, src, steps, starts, &vec![false; r], 0.0, out)
}

/// Constant padding: `begin[d]` elements of `value` before dim d; `out.shape` includes the pads.
pub fn pad(b: &mut ProgramBuilder, src: &View, begin: &[usize], value: f32, out: &View) -> GpuResult<()> {
    let r = out.shape.len();
    let start: Vec<isize> = begin.iter().map(|&p| -(p as isize)).collect();
    strided_copy(b, src, &vec![1; r], &start, &vec![false; r], value, out)
}

/// ONNX Tile: `out.shape[d]` is a multiple of `src.shape[d]`.
pub fn tile(b: &mut ProgramBuilder, src: &View, out: &View) -> GpuResult<()> {
    let r = out.shape.len();
    strided_copy(b, src, &vec![1; r], &vec![0; r], &vec![true; r], 0.0, out)
}

/// ONNX Concat along `axis`: one copy per input into its window of `out` (contiguous).
pub fn concat(b: &mut ProgramBuilder, inputs: &[View], axis: usize, out: &View) -> GpuResult<()> {
    let mut at = 0;
    for v in inputs {
        if v.shape.len() != out.shape.len() || axis >= out.shape.len() {
            return Err(shape_err(
                "concat",
                format!("input {:?} vs output {:?}, axis {axis}", v.shape, out.shape),
            ));
        }
        let mut window = out.clone();
        window.shape[axis] = v.shape[axis];
        window.offset += at * out.strides[axis];
        copy(b, v, &window)?;
        at += v.shape[axis];
    }
    if at != out.shape[axis] {
        return Err(shape_err(
            "concat",
            format!("inputs add up to {at} along axis {axis}, output has {}", out.shape[axis]),
        ));
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GatherParams {
    outer: u32,
    axis_len: u32,
    inner: u32,
    n_indices: u32,
    total: u32,
    /// The rows of the axis `src` holds (all of them but for a chunked table).
    lo: u32,
    hi: u32,
    /// Whether this dispatch writes the 0 of out-of-range indices.
    zero_missing: u32,
}

/// ONNX Gather on a contiguous tensor of `shape` along `axis` with i32 `indices` (any shape,
/// `n` elements); `out` is contiguous `[shape[..axis], indices.shape, shape[axis+1..]]`.
pub fn gather(
    b: &mut ProgramBuilder,
    src: &GpuTensor,
    shape: &[usize],
    axis: usize,
    indices: &GpuTensor,
    out: &GpuTensor,
) -> GpuResult<()> {
    let len = shape.get(axis).copied().unwrap_or(0);
    gather_rows(b, src, shape, axis, 0..len, true, indices, out)
}

/// One chunk of a Gather whose `src` holds only the rows `rows` of `shape`'s `axis` (a tensor of
/// `shape` with `shape[axis]` cut to `rows.len()`): writes the output elements whose index falls
/// in `rows` and leaves the others alone, except that with `zero_missing` it writes the 0 of
/// out-of-range indices. Indices are checked and wrapped against the whole `shape[axis]`, so one
/// dispatch per chunk (exactly one of them with `zero_missing`) gives [`gather`]'s result.
#[allow(clippy::too_many_arguments)]
pub fn gather_rows(
    b: &mut ProgramBuilder,
    src: &GpuTensor,
    shape: &[usize],
    axis: usize,
    rows: std::ops::Range<usize>,
    zero_missing: bool,
    indices: &GpuTensor,
    out: &GpuTensor,
) -> GpuResult<()> {
    let variant = element_variant(b, "gather", ShaderVariant::new("gather"), src, out)?;
    if indices.dtype() != DType::I32 || axis >= shape.len() {
        return Err(shape_err(
            "gather",
            format!(
                "indices must be i32 (are {}), axis {axis} < rank {}",
                indices.dtype().name(),
                shape.len()
            ),
        ));
    }
    if rows.start > rows.end || rows.end > shape[axis] {
        return Err(shape_err("gather", format!("rows {rows:?} outside an axis of {}", shape[axis])));
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let total = outer * indices.len() * inner;
    if out.len() != total {
        return Err(shape_err("gather", format!("output holds {} elements, expected {total}", out.len())));
    }
    if src.len() != outer * rows.len() * inner {
        return Err(shape_err(
            "gather",
            format!(
                "'{}' holds {} elements, rows {rows:?} of {shape:?} are {}",
                src.name(),
                src.len(),
                outer * rows.len() * inner
            ),
        ));
    }
    let params = GatherParams {
        outer: u32_of("gather", outer)?,
        axis_len: u32_of("gather", shape[axis])?,
        inner: u32_of("gather", inner)?,
        n_indices: u32_of("gather", indices.len())?,
        total: u32_of("gather", total)?,
        lo: u32_of("gather", rows.start)?,
        hi: u32_of("gather", rows.end)?,
        zero_missing: zero_missing as u32,
    };
    let variant = variant.define("WG", WG_LINEAR).define("ACT", "x").tag(&format!("wg{WG_LINEAR}"));
    b.push(variant, &params, &[src, indices], &[out], linear_workgroups(total, WG_LINEAR), 0)
}
