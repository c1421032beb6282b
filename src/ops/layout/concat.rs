//! Concat along any axis, any number of inputs.

use crate::ops::registry::{NodeContext, OpDef, MANY};
use crate::ops::{required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::normalize_axis;
use crate::tensor::{Tensor, TensorData};

#[derive(Clone, Debug, PartialEq)]
pub struct Concat {
    pub axis: i64,
}

impl Concat {
    fn output_shape(&self, shapes: &[&[usize]]) -> Result<(usize, Vec<usize>), OpError> {
        let first = shapes.first().ok_or(OpError::MissingInput { index: 0, name: "inputs" })?;
        let axis = normalize_axis(self.axis, first.len())?;
        let mut out = first.to_vec();
        out[axis] = 0;
        for s in shapes {
            let same_elsewhere = s.len() == first.len()
                && s.iter().zip(first.iter()).enumerate().all(|(i, (a, b))| i == axis || a == b);
            if !same_elsewhere {
                return Err(OpError::invalid(format!(
                    "Concat on axis {axis}: shapes {first:?} and {s:?} differ elsewhere"
                )));
            }
            out[axis] += s[axis];
        }
        Ok((axis, out))
    }
}

impl OpSpec for Concat {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let first = required(inputs, 0, "inputs")?;
        if inputs.iter().flatten().any(|v| v.dtype() != first.dtype()) {
            return Err(OpError::invalid("Concat inputs must share one dtype"));
        }
        let shapes: Vec<&[usize]> = inputs.iter().flatten().map(|v| v.shape()).collect();
        Ok(vec![TensorType::new(first.dtype(), self.output_shape(&shapes)?.1)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let shapes: Vec<&[usize]> = parts.iter().map(|t| t.shape()).collect();
        let (axis, out_shape) = self.output_shape(&shapes)?;
        let outer: usize = out_shape[..axis].iter().product();
        let inner: usize = out_shape[axis + 1..].iter().product();
        // Per outer index, each input's block in turn: contiguous copies.
        let Some(first) = parts.first() else { return Err(OpError::invalid("Concat needs an input")) };
        let mut out = TensorData::zeros(first.dtype(), 0);
        for o in 0..outer {
            for t in &parts {
                let block = t.shape()[axis] * inner;
                out.extend_from_range(t.data(), o * block..(o + 1) * block)
                    .ok_or_else(|| OpError::invalid("Concat inputs must share one dtype"))?;
            }
        }
        Ok(vec![Tensor::new(out_shape, out)?])
    }
}

fn parse(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let axis = attrs.int("axis")?.ok_or_else(|| OpError::bad_attribute("axis", "is required"))?;
    Ok(Concat { axis }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Concat", (4, 21), (1, MANY), (1, 1), parse)];
