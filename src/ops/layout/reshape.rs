//! Reshape (0 copies a dim unless `allowzero`, -1 is inferred) and Flatten.

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{const_i64s, opt_i64s, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::checked_numel;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    pub allowzero: bool,
}

/// The target shape of a Reshape from the requested one.
pub fn reshape_target(input: &[usize], requested: &[i64], allowzero: bool) -> Result<Vec<usize>, OpError> {
    let total = checked_numel(input)?;
    let mut unknown = None;
    let mut out = Vec::with_capacity(requested.len());
    for (i, &r) in requested.iter().enumerate() {
        out.push(match r {
            0 if !allowzero => *input.get(i).ok_or_else(|| {
                OpError::invalid(format!("Reshape copies dim {i} of {input:?}, which has no such dim"))
            })?,
            -1 if unknown.is_none() => {
                unknown = Some(i);
                1
            }
            r if r >= 0 => r as usize,
            _ => return Err(OpError::invalid(format!("Reshape to {requested:?} is invalid"))),
        });
    }
    let known = checked_numel(&out)?;
    if let Some(i) = unknown {
        if known == 0 || total % known != 0 {
            return Err(OpError::invalid(format!("cannot reshape {input:?} to {requested:?}")));
        }
        out[i] = total / known;
    }
    if checked_numel(&out)? != total {
        return Err(OpError::invalid(format!(
            "cannot reshape {input:?} ({total} elements) to {requested:?}"
        )));
    }
    Ok(out)
}

impl OpSpec for Reshape {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "data")?;
        let shape =
            const_i64s(inputs, 1, "shape")?.ok_or(OpError::MissingInput { index: 1, name: "shape" })?;
        Ok(vec![TensorType::new(x.dtype(), reshape_target(x.shape(), &shape, self.allowzero)?)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "data")?;
        let shape = opt_i64s(inputs, 1).ok_or(OpError::MissingInput { index: 1, name: "shape" })?;
        let target = reshape_target(x.shape(), &shape, self.allowzero)?;
        Ok(vec![x.clone().reshaped(target)?])
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Flatten {
    pub axis: i64,
}

impl Flatten {
    fn target(&self, shape: &[usize]) -> Result<Vec<usize>, OpError> {
        let rank = shape.len() as i64;
        let axis = if self.axis < 0 { self.axis + rank } else { self.axis };
        if !(0..=rank).contains(&axis) {
            return Err(OpError::bad_attribute(
                "axis",
                format!("{} is out of range for rank {rank}", self.axis),
            ));
        }
        let (a, b) = shape.split_at(axis as usize);
        Ok(vec![checked_numel(a)?, checked_numel(b)?])
    }
}

impl OpSpec for Flatten {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        Ok(vec![TensorType::new(x.dtype(), self.target(x.shape())?)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "input")?;
        Ok(vec![x.clone().reshaped(self.target(x.shape())?)?])
    }
}

fn parse_reshape(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    Ok(Reshape { allowzero: attrs.int_or("allowzero", 0)? != 0 }.into())
}

fn parse_flatten(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    Ok(Flatten { axis: attrs.int_or("axis", 1)? }.into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("Reshape", (5, 21), (2, 2), (1, 1), parse_reshape),
    OpDef::new("Flatten", (1, 21), (1, 1), (1, 1), parse_flatten),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_copies_and_minus_one_infers() {
        assert_eq!(reshape_target(&[2, 3, 4], &[0, -1], false).unwrap(), vec![2, 12]);
        assert_eq!(reshape_target(&[0, 3], &[0, 3], true).unwrap(), vec![0, 3]);
        assert!(reshape_target(&[2, 3], &[4, -1], false).is_err());
        assert!(reshape_target(&[2, 3], &[-1, -1], false).is_err());
    }
}
