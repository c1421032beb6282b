//! Clip: bounds from attributes (opset 6-10) or optional inputs (opset 11+).

use super::{map_float, NUMERIC};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    /// Bounds given as attributes (old opsets); inputs 1 and 2 take over from opset 11.
    pub attr_min: Option<f32>,
    pub attr_max: Option<f32>,
}

fn bound(inputs: &[Option<&Tensor>], index: usize) -> Result<Option<Tensor>, OpError> {
    match inputs.get(index).copied().flatten() {
        None => Ok(None),
        Some(t) if t.len() == 1 => Ok(Some(t.clone())),
        Some(t) => Err(OpError::invalid(format!("Clip bounds must be scalars, got shape {:?}", t.shape()))),
    }
}

impl OpSpec for Clip {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        expect_dtype("input", x.dtype(), NUMERIC)?;
        for b in inputs.iter().skip(1).flatten() {
            if b.dtype() != x.dtype() || b.shape().iter().product::<usize>() != 1 {
                return Err(OpError::invalid("Clip bounds must be scalars of the input dtype"));
            }
        }
        Ok(vec![x.ty.clone()])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "input")?;
        let min = bound(inputs, 1)?;
        let max = bound(inputs, 2)?;
        if x.dtype().is_float() {
            let lo = min.map_or(self.attr_min.unwrap_or(f32::MIN), |t| t.to_f32_vec()[0]);
            let hi = max.map_or(self.attr_max.unwrap_or(f32::MAX), |t| t.to_f32_vec()[0]);
            let out = map_float(x, |v| v.max(lo).min(hi)).ok_or_else(|| OpError::invalid("Clip input"))?;
            return Ok(vec![out]);
        }
        let lo = min.map_or(i64::MIN, |t| t.to_i64_vec()[0]);
        let hi = max.map_or(i64::MAX, |t| t.to_i64_vec()[0]);
        let values = x.to_i64_vec().into_iter().map(|v| v.max(lo).min(hi)).collect();
        Ok(vec![Tensor::from_i64(x.shape().to_vec(), values)?.cast(x.dtype())])
    }
}

fn parse_clip(attrs: &mut Attrs, node: &NodeContext) -> Result<Op, OpError> {
    let (attr_min, attr_max) = if node.opset < 11 {
        (Some(attrs.float_or("min", f32::MIN)?), Some(attrs.float_or("max", f32::MAX)?))
    } else {
        (None, None)
    };
    Ok(Clip { attr_min, attr_max }.into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("Clip", (6, 10), (1, 1), (1, 1), parse_clip),
    OpDef::new("Clip", (11, 21), (1, 3), (1, 1), parse_clip),
];
