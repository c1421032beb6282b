//! Shape (with start/end, opset 15+) and Size: known from static shapes, so always folded.

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub start: i64,
    pub end: Option<i64>,
}

impl Shape {
    fn dims(&self, shape: &[usize]) -> Vec<i64> {
        let r = shape.len() as i64;
        let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
        let (start, end) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        shape[start as usize..end.max(start) as usize].iter().map(|&d| d as i64).collect()
    }
}

impl OpSpec for Shape {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "data")?;
        Ok(vec![TensorType::new(DType::I64, vec![self.dims(x.shape()).len()])])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![Tensor::vector_i64(self.dims(required(inputs, 0, "data")?.shape()))])
    }

    fn fold_from_types(&self, inputs: &[Option<&ValueInfo>]) -> Option<Vec<Tensor>> {
        let x = inputs.first().copied().flatten()?;
        Some(vec![Tensor::vector_i64(self.dims(x.shape()))])
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Size;

impl OpSpec for Size {
    fn infer(&self, _: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        Ok(vec![TensorType::new(DType::I64, vec![])])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let n = required(inputs, 0, "data")?.len() as i64;
        Ok(vec![Tensor::from_i64(vec![], vec![n])?])
    }

    fn fold_from_types(&self, inputs: &[Option<&ValueInfo>]) -> Option<Vec<Tensor>> {
        let n = inputs.first().copied().flatten()?.shape().iter().product::<usize>() as i64;
        Tensor::from_i64(vec![], vec![n]).ok().map(|t| vec![t])
    }
}

fn parse_shape(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    Ok(Shape { start: attrs.int_or("start", 0)?, end: attrs.int("end")? }.into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("Shape", (1, 21), (1, 1), (1, 1), parse_shape),
    OpDef::new("Size", (1, 21), (1, 1), (1, 1), |_: &mut Attrs, _: &NodeContext| Ok(Op::Size(Size))),
];
