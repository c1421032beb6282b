//! Slice (opset 10+): starts, ends, optional axes and steps as inputs; negative indices and
//! steps; out-of-range bounds are clamped as ONNX specifies.

use crate::cpu::strided::{gather, View};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{const_i64s, opt_i64s, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::{normalize_axes, strides};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Slice;

/// Per dim: first source index, step and length of the result.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DimSlice {
    pub(crate) start: i64,
    pub(crate) step: i64,
    pub(crate) len: usize,
}

fn clamp_dim(dim: usize, start: i64, end: i64, step: i64) -> DimSlice {
    let d = dim as i64;
    let wrap = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (start, end) = (wrap(start), wrap(end));
    let (start, end) = if step > 0 {
        (start.clamp(0, d), end.clamp(0, d))
    } else {
        (start.clamp(0, (d - 1).max(0)), end.clamp(-1, d - 1))
    };
    let len = if step > 0 {
        (end - start).max(0).div_euclid(step) + ((end - start).max(0) % step != 0) as i64
    } else {
        (start - end).max(0).div_euclid(-step) + ((start - end).max(0) % -step != 0) as i64
    };
    DimSlice { start, step, len: if d == 0 { 0 } else { len as usize } }
}

pub(crate) fn plan(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
) -> Result<Vec<DimSlice>, OpError> {
    let n = starts.len();
    let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if ends.len() != n || axes.len() != n || steps.len() != n {
        return Err(OpError::invalid("Slice starts, ends, axes and steps must have the same length"));
    }
    if steps.contains(&0) {
        return Err(OpError::invalid("Slice steps must not be 0"));
    }
    let axes = normalize_axes(&axes, shape.len())?;
    let mut dims: Vec<DimSlice> = shape.iter().map(|&d| DimSlice { start: 0, step: 1, len: d }).collect();
    for (i, &a) in axes.iter().enumerate() {
        dims[a] = clamp_dim(shape[a], starts[i], ends[i], steps[i]);
    }
    Ok(dims)
}

fn apply(x: &Tensor, dims: &[DimSlice]) -> Result<Tensor, OpError> {
    let own = strides(x.shape());
    let out_shape: Vec<usize> = dims.iter().map(|d| d.len).collect();
    let view = View {
        shape: out_shape.clone(),
        strides: dims.iter().zip(&own).map(|(d, &s)| d.step as isize * s as isize).collect(),
        // An empty result reads nothing, so its (possibly out-of-range) start does not matter.
        offset: if out_shape.contains(&0) {
            0
        } else {
            dims.iter().zip(&own).map(|(d, &s)| d.start as usize * s).sum()
        },
    };
    Ok(Tensor::new(out_shape, crate::map_data!(x.data(), v => gather(v, &view)))?)
}

/// `x[.., start..end, ..]` along `axis` (used by Split).
pub(crate) fn slice_axis(x: &Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor, OpError> {
    let dims = plan(x.shape(), &[start as i64], &[end as i64], Some(vec![axis as i64]), None)?;
    apply(x, &dims)
}

impl OpSpec for Slice {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "data")?;
        let starts =
            const_i64s(inputs, 1, "starts")?.ok_or(OpError::MissingInput { index: 1, name: "starts" })?;
        let ends = const_i64s(inputs, 2, "ends")?.ok_or(OpError::MissingInput { index: 2, name: "ends" })?;
        let dims =
            plan(x.shape(), &starts, &ends, const_i64s(inputs, 3, "axes")?, const_i64s(inputs, 4, "steps")?)?;
        Ok(vec![TensorType::new(x.dtype(), dims.iter().map(|d| d.len).collect())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "data")?;
        let starts = opt_i64s(inputs, 1).ok_or(OpError::MissingInput { index: 1, name: "starts" })?;
        let ends = opt_i64s(inputs, 2).ok_or(OpError::MissingInput { index: 2, name: "ends" })?;
        let dims = plan(x.shape(), &starts, &ends, opt_i64s(inputs, 3), opt_i64s(inputs, 4))?;
        Ok(vec![apply(x, &dims)?])
    }
}

pub(crate) const DEFS: &[OpDef] =
    &[OpDef::new("Slice", (10, 21), (3, 5), (1, 1), |_: &mut Attrs, _: &NodeContext| Ok(Op::Slice(Slice)))];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamping_follows_onnx() {
        assert_eq!(clamp_dim(5, 1, i64::MAX, 1), DimSlice { start: 1, step: 1, len: 4 });
        assert_eq!(clamp_dim(5, -1, i64::MIN, -1), DimSlice { start: 4, step: -1, len: 5 });
        assert_eq!(clamp_dim(5, 10, 0, -2), DimSlice { start: 4, step: -2, len: 2 });
        assert_eq!(clamp_dim(5, 3, 1, 1).len, 0);
    }
}
