//! ReduceMean/Sum/Max/Min/Prod/L2 with axes as an attribute (old opsets) or an input
//! (ReduceSum from 13, the others from 18), keepdims and noop_with_empty_axes.

use crate::cpu::{math, parallel, simd};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{
    const_i64s, expect_dtype, opt_i64s, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS,
};
use crate::tensor::shape::{broadcast_strides, for_each_offset, normalize_axes};
use crate::tensor::{DType, Tensor, TensorData};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
    L2,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub kind: ReduceKind,
    /// Axes from the attribute form; `None` when they come from input 1 (or are absent).
    pub axes: Option<Vec<i64>>,
    pub keepdims: bool,
    pub noop_with_empty_axes: bool,
}

/// Which dims are reduced, or `None` for the no-op case.
pub(crate) fn reduced_dims(
    r: &Reduce,
    rank: usize,
    input_axes: Option<Vec<i64>>,
) -> Result<Option<Vec<bool>>, OpError> {
    let axes = r.axes.clone().or(input_axes).unwrap_or_default();
    if axes.is_empty() {
        return Ok(if r.noop_with_empty_axes { None } else { Some(vec![true; rank]) });
    }
    let mut mask = vec![false; rank];
    for a in normalize_axes(&axes, rank)? {
        mask[a] = true;
    }
    Ok(Some(mask))
}

fn output_shape(shape: &[usize], mask: &[bool], keepdims: bool) -> Vec<usize> {
    shape
        .iter()
        .zip(mask)
        .filter_map(|(&d, &m)| match (m, keepdims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

impl ReduceKind {
    fn init(self) -> f32 {
        match self {
            ReduceKind::Max => f32::NEG_INFINITY,
            ReduceKind::Min => f32::INFINITY,
            ReduceKind::Prod => 1.0,
            _ => 0.0,
        }
    }

    fn step(self, acc: f32, x: f32) -> f32 {
        match self {
            ReduceKind::Max => acc.max(x),
            ReduceKind::Min => acc.min(x),
            ReduceKind::Prod => acc * x,
            ReduceKind::L2 => acc + x * x,
            _ => acc + x,
        }
    }

    fn finish(self, acc: f32, count: usize) -> f32 {
        match self {
            ReduceKind::Mean => acc / count as f32,
            ReduceKind::L2 => acc.sqrt(),
            _ => acc,
        }
    }
}

/// `x` seen as [outer, reduced, inner]: the reduced axes form one run of adjacent dims (size-1
/// dims count as either side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    outer: usize,
    reduced: usize,
    inner: usize,
}

/// The block form of a reduction whose reduced axes are adjacent (trailing, as RMSNorm's mean
/// over the last axis; in the middle, as a mean over H and W of NCHW; or leading), else `None`.
fn one_reduced_block(shape: &[usize], mask: &[bool]) -> Option<Block> {
    let significant: Vec<(usize, bool)> =
        shape.iter().zip(mask).filter(|(&d, _)| d != 1).map(|(&d, &m)| (d, m)).collect();
    let first = significant.iter().position(|&(_, m)| m).unwrap_or(significant.len());
    let end = significant[first..].iter().position(|&(_, m)| !m).map_or(significant.len(), |n| first + n);
    if significant[end..].iter().any(|&(_, m)| m) {
        return None;
    }
    let product = |dims: &[(usize, bool)]| dims.iter().map(|&(d, _)| d).product();
    Some(Block {
        outer: product(&significant[..first]),
        reduced: product(&significant[first..end]),
        inner: product(&significant[end..]),
    })
}

impl ReduceKind {
    /// The unfinished reduction (`finish` not applied) of each [outer, inner] output. Trailing
    /// runs reduce each contiguous row in interleaved partial results (`math`), which
    /// vectorise; otherwise rows of `inner` are folded in one after another, each output
    /// summed in order.
    fn reduce_block(self, x: &[f32], b: Block) -> Vec<f32> {
        let mut out = vec![0.0f32; b.outer * b.inner];
        let init = self.init();
        match (self, b.inner) {
            (ReduceKind::Mean | ReduceKind::Sum, 1) => {
                for_blocks(&mut out, x, b, |r, o| o[0] = math::sum_by(r, |v| v))
            }
            (ReduceKind::L2, 1) => for_blocks(&mut out, x, b, |r, o| o[0] = math::sum_by(r, |v| v * v)),
            (ReduceKind::Max, 1) => for_blocks(&mut out, x, b, |r, o| o[0] = math::max(r)),
            (ReduceKind::Max, _) => for_blocks(&mut out, x, b, |r, o| fold_rows(r, o, init, f32::max)),
            (ReduceKind::Min, _) => for_blocks(&mut out, x, b, |r, o| fold_rows(r, o, init, f32::min)),
            (ReduceKind::Prod, _) => for_blocks(&mut out, x, b, |r, o| fold_rows(r, o, init, |a, v| a * v)),
            (ReduceKind::L2, _) => for_blocks(&mut out, x, b, |r, o| fold_rows(r, o, init, |a, v| a + v * v)),
            (ReduceKind::Mean | ReduceKind::Sum, _) => {
                for_blocks(&mut out, x, b, |r, o| fold_rows(r, o, init, |a, v| a + v))
            }
        }
        out
    }

    /// Any reduction, element by element: the unfinished reduction of each output of shape
    /// `kept` (the input's with reduced dims 1).
    fn reduce_strided(self, x: &[f32], shape: &[usize], kept: &[usize]) -> Vec<f32> {
        let mut acc = vec![self.init(); kept.iter().product()];
        let to_out = broadcast_strides(kept, shape);
        let own = crate::tensor::shape::strides(shape);
        for_each_offset(shape, [&own, &to_out], |_, [i, o]| acc[o] = self.step(acc[o], x[i]));
        acc
    }
}

/// Calls `f(block, outputs)` for each outer index: its `reduced x inner` inputs and `inner`
/// outputs, in parallel natively.
fn for_blocks(out: &mut [f32], x: &[f32], b: Block, f: impl Fn(&[f32], &mut [f32]) + Sync + Send) {
    if out.is_empty() {
        return;
    }
    let len = b.reduced * b.inner;
    let per_chunk = parallel::chunk_len(b.outer, len);
    parallel::for_each_chunk_mut(out, per_chunk * b.inner, |c, dst| {
        simd::vectorised(|| {
            for (o, dst) in (c * per_chunk..).zip(dst.chunks_exact_mut(b.inner)) {
                f(&x[o * len..(o + 1) * len], dst);
            }
        })
    });
}

/// Folds the rows of `block` (each `acc.len()` long) into `acc`, starting from `init`.
#[inline(always)]
fn fold_rows(block: &[f32], acc: &mut [f32], init: f32, step: impl Fn(f32, f32) -> f32) {
    acc.fill(init);
    for row in block.chunks_exact(acc.len()) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a = step(*a, v);
        }
    }
}

impl OpSpec for Reduce {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "data")?;
        if self.kind == ReduceKind::L2 {
            expect_dtype("data", x.dtype(), FLOATS)?;
        } else {
            expect_dtype("data", x.dtype(), &[DType::F32, DType::F16, DType::I32, DType::I64])?;
        }
        let axes = const_i64s(inputs, 1, "axes")?;
        let shape = match reduced_dims(self, x.shape().len(), axes)? {
            None => x.shape().to_vec(),
            Some(mask) => output_shape(x.shape(), &mask, self.keepdims),
        };
        Ok(vec![TensorType::new(x.dtype(), shape)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "data")?;
        let Some(mask) = reduced_dims(self, x.rank(), opt_i64s(inputs, 1))? else {
            // No axes reduced, but each element still goes through its reduction's formula
            // (the ONNX reference's and onnxruntime's): ReduceL2 gives sqrt(x * x).
            if self.kind != ReduceKind::L2 {
                return Ok(vec![x.clone()]);
            }
            let out =
                x.f32s().iter().map(|&v| self.kind.finish(self.kind.step(self.kind.init(), v), 1)).collect();
            let out = Tensor::from_f32(x.shape().to_vec(), out)?;
            return Ok(vec![if x.dtype() == DType::F32 { out } else { out.cast(x.dtype()) }]);
        };
        if matches!(x.dtype(), DType::I32 | DType::I64) {
            return Ok(vec![self.run_integer(x, &mask)?]);
        }
        let kept = output_shape(x.shape(), &mask, true);
        let count: usize = x.shape().iter().zip(&mask).filter(|(_, &m)| m).map(|(&d, _)| d).product();
        let xv = x.f32s();
        let acc = match one_reduced_block(x.shape(), &mask) {
            Some(block) => self.kind.reduce_block(&xv, block),
            None => self.kind.reduce_strided(&xv, x.shape(), &kept),
        };
        let out: Vec<f32> = acc.into_iter().map(|a| self.kind.finish(a, count)).collect();
        let out = Tensor::from_f32(output_shape(x.shape(), &mask, self.keepdims), out)?;
        Ok(vec![if x.dtype() == DType::F32 { out } else { out.cast(x.dtype()) }])
    }
}

impl Reduce {
    /// Integer data (shape arithmetic in exported graphs: sizes, element counts), in the
    /// tensor's own type: sums and products wrap as onnxruntime's do, a mean divides
    /// truncating, and an empty max or min is the type's lowest or highest value.
    fn run_integer(&self, x: &Tensor, mask: &[bool]) -> Result<Tensor, OpError> {
        let (wide, is_i32) = (x.to_i64_vec(), x.dtype() == DType::I32);
        let narrow = |v: i64| if is_i32 { v as i32 as i64 } else { v };
        let (lowest, highest) =
            if is_i32 { (i32::MIN as i64, i32::MAX as i64) } else { (i64::MIN, i64::MAX) };
        let init = match self.kind {
            ReduceKind::Max => lowest,
            ReduceKind::Min => highest,
            ReduceKind::Prod => 1,
            _ => 0,
        };
        let kept = output_shape(x.shape(), mask, true);
        let count: usize = x.shape().iter().zip(mask).filter(|(_, &m)| m).map(|(&d, _)| d).product();
        let mut acc = vec![init; kept.iter().product()];
        let to_out = broadcast_strides(&kept, x.shape());
        let own = crate::tensor::shape::strides(x.shape());
        for_each_offset(x.shape(), [&own, &to_out], |_, [i, o]| {
            let (a, v) = (acc[o], wide[i]);
            acc[o] = match self.kind {
                ReduceKind::Max => a.max(v),
                ReduceKind::Min => a.min(v),
                ReduceKind::Prod => narrow(a.wrapping_mul(v)),
                _ => narrow(a.wrapping_add(v)),
            };
        });
        if self.kind == ReduceKind::Mean && count > 0 {
            acc.iter_mut().for_each(|a| *a /= count as i64);
        }
        let shape = output_shape(x.shape(), mask, self.keepdims);
        let data = if is_i32 {
            TensorData::I32(acc.into_iter().map(|v| v as i32).collect())
        } else {
            TensorData::I64(acc)
        };
        Ok(Tensor::new(shape, data)?)
    }
}

fn parse(
    attrs: &mut Attrs,
    node: &NodeContext,
    kind: ReduceKind,
    axes_input_since: u32,
) -> Result<Op, OpError> {
    let keepdims = attrs.int_or("keepdims", 1)? != 0;
    let (axes, noop_with_empty_axes) = if node.opset < axes_input_since {
        (attrs.ints("axes")?, false)
    } else {
        (None, attrs.int_or("noop_with_empty_axes", 0)? != 0)
    };
    Ok(Reduce { kind, axes, keepdims, noop_with_empty_axes }.into())
}

macro_rules! reduce {
    ($name:literal, $kind:ident, $since:literal) => {
        OpDef::new($name, (1, 21), (1, 2), (1, 1), |a, o| parse(a, o, ReduceKind::$kind, $since))
    };
}

pub(crate) const DEFS: &[OpDef] = &[
    reduce!("ReduceMean", Mean, 18),
    reduce!("ReduceSum", Sum, 13),
    reduce!("ReduceMax", Max, 18),
    reduce!("ReduceMin", Min, 18),
    reduce!("ReduceProd", Prod, 18),
    reduce!("ReduceL2", L2, 18),
];

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [ReduceKind; 6] = [
        ReduceKind::Mean,
        ReduceKind::Sum,
        ReduceKind::Max,
        ReduceKind::Min,
        ReduceKind::Prod,
        ReduceKind::L2,
    ];

    #[test]
    fn adjacent_axes_form_one_block() {
        let block = |shape: &[usize], mask: &[bool]| one_reduced_block(shape, mask);
        let b = |outer, reduced, inner| Some(Block { outer, reduced, inner });
        assert_eq!(block(&[2, 3, 4], &[false, false, true]), b(6, 4, 1));
        assert_eq!(block(&[2, 3, 4, 5], &[false, true, true, false]), b(2, 12, 5));
        assert_eq!(block(&[2, 3, 4], &[true, true, false]), b(1, 6, 4));
        // Size-1 dims sit on either side.
        assert_eq!(block(&[2, 1, 3, 1, 4], &[false, false, true, true, false]), b(2, 3, 4));
        assert_eq!(block(&[2, 3, 1, 4], &[true, false, true, true]), None);
        assert_eq!(block(&[2, 3, 4], &[true, false, true]), None);
        assert_eq!(block(&[1, 3, 1], &[true, false, true]), b(3, 1, 1));
        assert_eq!(block(&[2, 0, 3], &[false, true, false]), b(2, 0, 3));
    }

    /// The block paths against the element-by-element one, every kind, on shapes with size-1
    /// and size-0 dims and on trailing, middle and leading runs: the same bits where both fold
    /// in order, within a few ulp of the sum where rows are summed in interleaved parts.
    #[test]
    fn blocks_match_the_element_by_element_reduction() {
        let cases: &[(&[usize], &[bool])] = &[
            (&[3, 37], &[false, true]),
            (&[2, 5, 300], &[false, false, true]),
            (&[4, 6, 7, 3], &[false, true, true, false]),
            (&[5, 2, 9], &[true, true, false]),
            (&[1, 8, 1, 40], &[true, false, true, true]),
            (&[2, 0, 3], &[false, true, false]),
            (&[2, 3, 0], &[false, false, true]),
            (&[0, 4], &[false, true]),
            (&[6, 1], &[false, true]),
        ];
        for (case, &(shape, mask)) in cases.iter().enumerate() {
            let n: usize = shape.iter().product();
            // Values near 1 keep products finite; a NaN-free, sign-mixed spread for the rest.
            let x: Vec<f32> =
                (0..n).map(|i| 1.0 + ((i * 7919 + case * 13) % 97) as f32 / 97.0 - 0.5).collect();
            let block = one_reduced_block(shape, mask).expect("adjacent axes");
            let kept = output_shape(shape, mask, true);
            for kind in KINDS {
                let (got, want) = (kind.reduce_block(&x, block), kind.reduce_strided(&x, shape, &kept));
                assert_eq!(got.len(), want.len(), "{kind:?} {shape:?} {mask:?}");
                let rowwise_sum =
                    block.inner == 1 && matches!(kind, ReduceKind::Mean | ReduceKind::Sum | ReduceKind::L2);
                for (g, w) in got.iter().zip(&want) {
                    if rowwise_sum {
                        let tolerance = 4.0 * f32::EPSILON * w.abs().max(1.0) * (block.reduced as f32).sqrt();
                        assert!((g - w).abs() <= tolerance, "{kind:?} {shape:?} {mask:?}: {g} vs {w}");
                    } else {
                        assert_eq!(g.to_bits(), w.to_bits(), "{kind:?} {shape:?} {mask:?}: {g} vs {w}");
                    }
                }
            }
        }
    }
}
