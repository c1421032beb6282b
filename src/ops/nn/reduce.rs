//! ReduceMean/Sum/Max/Min/Prod/L2 with axes as an attribute (old opsets) or an input
//! (ReduceSum from 13, the others from 18), keepdims and noop_with_empty_axes.

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
        let mut acc = vec![self.kind.init(); kept.iter().product()];
        let xv = x.f32s();
        let to_out = broadcast_strides(&kept, x.shape());
        let own = crate::tensor::shape::strides(x.shape());
        for_each_offset(x.shape(), [&own, &to_out], |_, [i, o]| acc[o] = self.kind.step(acc[o], xv[i]));
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
