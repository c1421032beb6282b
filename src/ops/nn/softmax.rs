//! Softmax and LogSoftmax: opset < 13 flattens to 2-D at `axis` (default 1); opset >= 13 works
//! along the one `axis` (default -1).

use crate::cpu::math::{self, exp};
use crate::cpu::{parallel, simd};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::shape::normalize_axis;
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Softmax {
    pub axis: i64,
    /// Opset < 13 semantics: normalise over all dims from `axis` on, as one row.
    pub coerce_2d: bool,
    pub log: bool,
}

impl Softmax {
    /// `(rows, row_len, inner)`: the tensor as `[rows, row_len, inner]`, normalised along the middle.
    fn layout(&self, shape: &[usize]) -> Result<(usize, usize, usize), OpError> {
        let rank = shape.len().max(1);
        let axis = normalize_axis(self.axis, rank)?;
        let dims = if shape.is_empty() { &[1][..] } else { shape };
        let outer: usize = dims[..axis].iter().product();
        if self.coerce_2d {
            Ok((outer, dims[axis..].iter().product(), 1))
        } else {
            Ok((outer, dims[axis], dims[axis + 1..].iter().product()))
        }
    }
}

/// The common case (softmax over the last dim): one contiguous row.
#[inline(always)]
fn contiguous_row(s: &[f32], d: &mut [f32], log: bool) {
    let max = math::max(s);
    // Exponentials first, sum after: a loop without the running sum vectorises.
    for (o, &v) in d.iter_mut().zip(s) {
        *o = exp(v - max);
    }
    let sum = math::sum_by(d, |v| v);
    if log {
        let ln_sum = sum.ln();
        d.iter_mut().zip(s).for_each(|(o, &v)| *o = v - max - ln_sum);
    } else {
        let inv = 1.0 / sum;
        d.iter_mut().for_each(|o| *o *= inv);
    }
}

fn softmax_rows(x: &[f32], out: &mut [f32], rows: usize, len: usize, inner: usize, log: bool) {
    let block = len * inner;
    let per_chunk = parallel::chunk_len(rows, block * 4);
    parallel::for_each_chunk_mut(out, (per_chunk * block).max(1), |c, dst| {
        simd::vectorised(
            #[inline(always)]
            || {
                let src = &x[c * per_chunk * block..][..dst.len()];
                for (s, d) in src.chunks(block.max(1)).zip(dst.chunks_mut(block.max(1))) {
                    if inner == 1 {
                        contiguous_row(s, d, log);
                        continue;
                    }
                    for j in 0..inner {
                        let at = |i: usize| i * inner + j;
                        let max = (0..len).map(|i| s[at(i)]).fold(f32::NEG_INFINITY, f32::max);
                        let sum: f32 = (0..len).map(|i| exp(s[at(i)] - max)).sum();
                        for i in 0..len {
                            d[at(i)] =
                                if log { s[at(i)] - max - sum.ln() } else { exp(s[at(i)] - max) / sum };
                        }
                    }
                }
            },
        )
    });
}

impl OpSpec for Softmax {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        expect_dtype("input", x.dtype(), FLOATS)?;
        self.layout(x.shape())?;
        Ok(vec![x.ty.clone()])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "input")?;
        let (rows, len, inner) = self.layout(x.shape())?;
        let xv = x.f32s();
        let mut out = vec![0.0f32; xv.len()];
        softmax_rows(&xv, &mut out, rows, len, inner, self.log);
        let out = Tensor::from_f32(x.shape().to_vec(), out)?;
        Ok(vec![if x.dtype() == DType::F32 { out } else { out.cast(x.dtype()) }])
    }
}

fn parse(attrs: &mut Attrs, node: &NodeContext, log: bool) -> Result<Op, OpError> {
    let coerce_2d = node.opset < 13;
    let axis = attrs.int_or("axis", if coerce_2d { 1 } else { -1 })?;
    Ok(Softmax { axis, coerce_2d, log }.into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("Softmax", (1, 21), (1, 1), (1, 1), |a, o| parse(a, o, false)),
    OpDef::new("LogSoftmax", (1, 21), (1, 1), (1, 1), |a, o| parse(a, o, true)),
];
