//! Tile: repeats the input along every dim.

use super::{offsets_from_tables, take_or_fill};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{const_i64s, opt_i64s, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::{checked_numel, strides};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Tile;

fn target(input: &[usize], repeats: &[i64]) -> Result<Vec<usize>, OpError> {
    if repeats.len() != input.len() || repeats.iter().any(|&r| r < 0) {
        return Err(OpError::invalid(format!("Tile repeats {repeats:?} do not fit shape {input:?}")));
    }
    let out: Vec<usize> = input.iter().zip(repeats).map(|(&d, &r)| d.saturating_mul(r as usize)).collect();
    checked_numel(&out)?;
    Ok(out)
}

impl OpSpec for Tile {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        let repeats =
            const_i64s(inputs, 1, "repeats")?.ok_or(OpError::MissingInput { index: 1, name: "repeats" })?;
        Ok(vec![TensorType::new(x.dtype(), target(x.shape(), &repeats)?)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "input")?;
        let repeats = opt_i64s(inputs, 1).ok_or(OpError::MissingInput { index: 1, name: "repeats" })?;
        let out_shape = target(x.shape(), &repeats)?;
        let own = strides(x.shape());
        let tables: Vec<Vec<Option<usize>>> = out_shape
            .iter()
            .enumerate()
            .map(|(d, &n)| (0..n).map(|i| Some((i % x.shape()[d]) * own[d])).collect())
            .collect();
        Ok(vec![take_or_fill(x, out_shape.clone(), &offsets_from_tables(&out_shape, &tables), None)?])
    }
}

pub(crate) const DEFS: &[OpDef] =
    &[OpDef::new("Tile", (6, 21), (2, 2), (1, 1), |_: &mut Attrs, _: &NodeContext| Ok(Op::Tile(Tile)))];
