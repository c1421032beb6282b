//! Expand: numpy broadcasting of the input to a given shape.

use super::{offsets_from_tables, take_or_fill};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{const_i64s, opt_i64s, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::{broadcast_shapes, broadcast_strides};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Expand;

fn target(input: &[usize], shape: &[i64]) -> Result<Vec<usize>, OpError> {
    if shape.iter().any(|&d| d < 0) {
        return Err(OpError::invalid(format!("Expand shape {shape:?} has a negative dim")));
    }
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    Ok(broadcast_shapes(input, &shape)?)
}

/// `x` broadcast to `out_shape` (which must be a broadcast of its shape).
pub(crate) fn broadcast_to(x: &Tensor, out_shape: &[usize]) -> Result<Tensor, OpError> {
    let strides = broadcast_strides(x.shape(), out_shape);
    let tables: Vec<Vec<Option<usize>>> =
        out_shape.iter().zip(&strides).map(|(&d, &s)| (0..d).map(|i| Some(i * s)).collect()).collect();
    take_or_fill(x, out_shape.to_vec(), &offsets_from_tables(out_shape, &tables), None)
}

impl OpSpec for Expand {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        let shape =
            const_i64s(inputs, 1, "shape")?.ok_or(OpError::MissingInput { index: 1, name: "shape" })?;
        Ok(vec![TensorType::new(x.dtype(), target(x.shape(), &shape)?)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "input")?;
        let shape = opt_i64s(inputs, 1).ok_or(OpError::MissingInput { index: 1, name: "shape" })?;
        Ok(vec![broadcast_to(x, &target(x.shape(), &shape)?)?])
    }
}

pub(crate) const DEFS: &[OpDef] =
    &[OpDef::new("Expand", (8, 21), (2, 2), (1, 1), |_: &mut Attrs, _: &NodeContext| Ok(Op::Expand(Expand)))];
