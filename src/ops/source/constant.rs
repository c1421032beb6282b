//! Constant (every value_* attribute form) and ConstantOfShape.

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{const_i64s, opt_i64s, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::checked_numel;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub value: Tensor,
}

impl OpSpec for Constant {
    fn infer(&self, _: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        Ok(vec![TensorType::of(&self.value)])
    }

    fn run(&self, _: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![self.value.clone()])
    }
}

fn parse_constant(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let mut found = Vec::new();
    if let Some(t) = attrs.tensor("value")? {
        found.push(t);
    }
    if let Some(v) = attrs.float_opt("value_float")? {
        found.push(Tensor::from_f32(vec![], vec![v])?);
    }
    if let Some(v) = attrs.floats("value_floats")? {
        found.push(Tensor::from_f32(vec![v.len()], v)?);
    }
    if let Some(v) = attrs.int("value_int")? {
        found.push(Tensor::from_i64(vec![], vec![v])?);
    }
    if let Some(v) = attrs.ints("value_ints")? {
        found.push(Tensor::vector_i64(v));
    }
    for unsupported in ["sparse_value", "value_string", "value_strings"] {
        if attrs.has(unsupported) {
            return Err(OpError::unsupported(
                format!("Constant {unsupported}"),
                "value, value_float(s), value_int(s)",
            ));
        }
    }
    match found.len() {
        1 => Ok(Constant { value: found.remove(0) }.into()),
        n => Err(OpError::invalid(format!("Constant needs exactly one value attribute, got {n}"))),
    }
}

/// Building refuses a ConstantOfShape larger than this many elements (a corrupt shape input
/// must not exhaust memory while folding).
pub const MAX_CONSTANT_ELEMENTS: usize = 1 << 28;

#[derive(Clone, Debug, PartialEq)]
pub struct ConstantOfShape {
    /// One-element fill value; float32 zero when absent.
    pub value: Tensor,
}

fn target(shape: &[i64]) -> Result<Vec<usize>, OpError> {
    if shape.iter().any(|&d| d < 0) {
        return Err(OpError::invalid(format!("ConstantOfShape shape {shape:?} has a negative dim")));
    }
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    if checked_numel(&shape)? > MAX_CONSTANT_ELEMENTS {
        return Err(OpError::invalid(format!(
            "ConstantOfShape {shape:?} is larger than {MAX_CONSTANT_ELEMENTS} elements"
        )));
    }
    Ok(shape)
}

impl OpSpec for ConstantOfShape {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let shape =
            const_i64s(inputs, 0, "input")?.ok_or(OpError::MissingInput { index: 0, name: "input" })?;
        Ok(vec![TensorType::new(self.value.dtype(), target(&shape)?)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let shape = target(&opt_i64s(inputs, 0).ok_or(OpError::MissingInput { index: 0, name: "input" })?)?;
        let n = checked_numel(&shape)?;
        let data = self.value.data().take(&vec![0; n]);
        Ok(vec![Tensor::new(shape, data)?])
    }
}

fn parse_constant_of_shape(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let value = match attrs.tensor("value")? {
        None => Tensor::from_f32(vec![1], vec![0.0])?,
        Some(t) if t.len() == 1 => t,
        Some(t) => {
            return Err(OpError::bad_attribute("value", format!("must hold one element, has {}", t.len())))
        }
    };
    Ok(ConstantOfShape { value }.into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("Constant", (1, 21), (0, 0), (1, 1), parse_constant),
    OpDef::new("ConstantOfShape", (9, 21), (1, 1), (1, 1), parse_constant_of_shape),
];
