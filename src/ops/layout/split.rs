//! Split: sizes from the `split` attribute (opset < 13), the `split` input (13+), `num_outputs`
//! (18+) or an even split over the node's outputs.

use super::slice::slice_axis;
use crate::ops::registry::{NodeContext, OpDef, MANY};
use crate::ops::{const_i64s, opt_i64s, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::normalize_axis;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub axis: i64,
    pub split_attr: Option<Vec<i64>>,
    pub num_outputs: Option<usize>,
    /// How many outputs the node has.
    pub outputs: usize,
}

impl Split {
    fn sizes(&self, dim: usize, split_input: Option<Vec<i64>>) -> Result<Vec<usize>, OpError> {
        let sizes: Vec<usize> = match self.split_attr.clone().or(split_input) {
            Some(s) => {
                if s.iter().any(|&x| x < 0) || s.len() != self.outputs {
                    return Err(OpError::invalid(format!(
                        "Split sizes {s:?} do not fit {} outputs",
                        self.outputs
                    )));
                }
                s.into_iter().map(|x| x as usize).collect()
            }
            None => {
                let n = self.num_outputs.unwrap_or(self.outputs).max(1);
                // num_outputs allows a smaller last chunk; an implicit even split must divide.
                let chunk = if self.num_outputs.is_some() { dim.div_ceil(n) } else { dim / n };
                (0..n).map(|i| chunk.min(dim.saturating_sub(i * chunk))).collect()
            }
        };
        if sizes.iter().sum::<usize>() != dim || sizes.len() != self.outputs {
            return Err(OpError::invalid(format!(
                "Split sizes {sizes:?} do not add up to {dim} over {} outputs",
                self.outputs
            )));
        }
        Ok(sizes)
    }
}

impl OpSpec for Split {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        let axis = normalize_axis(self.axis, x.shape().len())?;
        let sizes = self.sizes(x.shape()[axis], const_i64s(inputs, 1, "split")?)?;
        Ok(sizes
            .into_iter()
            .map(|s| {
                let mut shape = x.shape().to_vec();
                shape[axis] = s;
                TensorType::new(x.dtype(), shape)
            })
            .collect())
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "input")?;
        let axis = normalize_axis(self.axis, x.rank())?;
        let sizes = self.sizes(x.shape()[axis], opt_i64s(inputs, 1))?;
        let mut start = 0;
        sizes
            .into_iter()
            .map(|s| {
                start += s;
                slice_axis(x, axis, start - s, start)
            })
            .collect()
    }
}

fn parse(attrs: &mut Attrs, node: &NodeContext) -> Result<Op, OpError> {
    let axis = attrs.int_or("axis", 0)?;
    let split_attr = if node.opset < 13 { attrs.ints("split")? } else { None };
    let num_outputs =
        if node.opset >= 18 { attrs.int("num_outputs")?.map(|n| n.max(1) as usize) } else { None };
    Ok(Split { axis, split_attr, num_outputs, outputs: node.num_outputs }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Split", (2, 21), (1, 2), (1, MANY), parse)];
