//! Range: start, limit and delta as scalar inputs, for float and integer dtypes.

use super::constant::MAX_CONSTANT_ELEMENTS;
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Range;

fn count(start: f64, limit: f64, delta: f64) -> Result<usize, OpError> {
    if delta == 0.0 || !delta.is_finite() {
        return Err(OpError::invalid("Range delta must be finite and non-zero"));
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if n.is_nan() || n > MAX_CONSTANT_ELEMENTS as f64 {
        return Err(OpError::invalid(format!("Range would have {n} elements")));
    }
    Ok(n as usize)
}

fn scalars(inputs: &[Option<&Tensor>]) -> Result<[Tensor; 3], OpError> {
    let get = |i, name| {
        let t = required(inputs, i, name)?;
        if t.len() != 1 {
            return Err(OpError::invalid(format!("Range {name} must be a scalar")));
        }
        Ok(t.clone())
    };
    Ok([get(0, "start")?, get(1, "limit")?, get(2, "delta")?])
}

impl OpSpec for Range {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let start = required(inputs, 0, "start")?;
        expect_dtype("start", start.dtype(), &[DType::F32, DType::I32, DType::I64])?;
        let values: Vec<Option<&Tensor>> =
            inputs.iter().map(|v| v.and_then(|v| v.value.as_deref())).collect();
        if values.iter().take(3).any(|v| v.is_none()) {
            return Err(OpError::NotConstant { name: "start, limit and delta" });
        }
        let [s, l, d] = scalars(&values)?;
        let n = count(s.to_f32_vec()[0] as f64, l.to_f32_vec()[0] as f64, d.to_f32_vec()[0] as f64)?;
        Ok(vec![TensorType::new(start.dtype(), vec![n])])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let [s, l, d] = scalars(inputs)?;
        if s.dtype().is_float() {
            let (s, l, d) = (s.to_f32_vec()[0], l.to_f32_vec()[0], d.to_f32_vec()[0]);
            let n = count(s as f64, l as f64, d as f64)?;
            let v = (0..n).map(|i| s + i as f32 * d).collect();
            return Ok(vec![Tensor::from_f32(vec![n], v)?]);
        }
        let (s, l, d) = (s.to_i64_vec()[0], l.to_i64_vec()[0], d.to_i64_vec()[0]);
        let n = count(s as f64, l as f64, d as f64)?;
        let v = (0..n as i64).map(|i| s + i * d).collect();
        Ok(vec![Tensor::from_i64(vec![n], v)?.cast(inputs[0].map_or(DType::I64, |t| t.dtype()))])
    }
}

pub(crate) const DEFS: &[OpDef] =
    &[OpDef::new("Range", (11, 21), (3, 3), (1, 1), |_: &mut Attrs, _: &NodeContext| Ok(Op::Range(Range)))];
