//! Squeeze and Unsqueeze: axes as an attribute (opset < 13) or an input (opset >= 13).

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{const_i64s, opt_i64s, required, Attrs, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::normalize_axes;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Squeeze {
    /// Attribute axes (old opsets); from opset 13 they come from input 1.
    pub axes: Option<Vec<i64>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Unsqueeze {
    pub axes: Option<Vec<i64>>,
}

fn squeezed(shape: &[usize], axes: Option<Vec<i64>>) -> Result<Vec<usize>, OpError> {
    match axes {
        None => Ok(shape.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let axes = normalize_axes(&axes, shape.len())?;
            if let Some(&a) = axes.iter().find(|&&a| shape[a] != 1) {
                return Err(OpError::invalid(format!("cannot squeeze dim {a} of {shape:?}: it is not 1")));
            }
            Ok(shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect())
        }
    }
}

fn unsqueezed(shape: &[usize], axes: Option<Vec<i64>>) -> Result<Vec<usize>, OpError> {
    let axes = axes.ok_or(OpError::MissingInput { index: 1, name: "axes" })?;
    let rank = shape.len() + axes.len();
    let axes = normalize_axes(&axes, rank)?;
    let mut rest = shape.iter();
    Ok((0..rank).map(|i| if axes.contains(&i) { 1 } else { *rest.next().unwrap_or(&1) }).collect())
}

impl OpSpec for Squeeze {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "data")?;
        let axes = self.axes.clone().or(const_i64s(inputs, 1, "axes")?);
        Ok(vec![TensorType::new(x.dtype(), squeezed(x.shape(), axes)?)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "data")?;
        let shape = squeezed(x.shape(), self.axes.clone().or(opt_i64s(inputs, 1)))?;
        Ok(vec![x.clone().reshaped(shape)?])
    }
}

impl OpSpec for Unsqueeze {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "data")?;
        let axes = self.axes.clone().or(const_i64s(inputs, 1, "axes")?);
        Ok(vec![TensorType::new(x.dtype(), unsqueezed(x.shape(), axes)?)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "data")?;
        let shape = unsqueezed(x.shape(), self.axes.clone().or(opt_i64s(inputs, 1)))?;
        Ok(vec![x.clone().reshaped(shape)?])
    }
}

fn attr_axes(attrs: &mut Attrs, node: &NodeContext) -> Result<Option<Vec<i64>>, OpError> {
    if node.opset < 13 {
        attrs.ints("axes")
    } else {
        Ok(None)
    }
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("Squeeze", (1, 12), (1, 1), (1, 1), |a, o| Ok(Squeeze { axes: attr_axes(a, o)? }.into())),
    OpDef::new("Squeeze", (13, 21), (1, 2), (1, 1), |a, o| Ok(Squeeze { axes: attr_axes(a, o)? }.into())),
    OpDef::new("Unsqueeze", (1, 12), (1, 1), (1, 1), |a, o| Ok(Unsqueeze { axes: attr_axes(a, o)? }.into())),
    OpDef::new("Unsqueeze", (13, 21), (2, 2), (1, 1), |a, o| Ok(Unsqueeze { axes: attr_axes(a, o)? }.into())),
];
