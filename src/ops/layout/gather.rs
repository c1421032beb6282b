//! Gather along any axis with int32/int64 indices of any shape; negative indices count from the end.

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::normalize_axis;
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Gather {
    pub axis: i64,
}

impl Gather {
    fn output_shape(&self, data: &[usize], indices: &[usize]) -> Result<(usize, Vec<usize>), OpError> {
        let axis = normalize_axis(self.axis, data.len())?;
        Ok((axis, [&data[..axis], indices, &data[axis + 1..]].concat()))
    }
}

impl OpSpec for Gather {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        expect_dtype("indices", indices.dtype(), &[DType::I32, DType::I64])?;
        let (_, shape) = self.output_shape(data.shape(), indices.shape())?;
        Ok(vec![TensorType::new(data.dtype(), shape)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        let (axis, out_shape) = self.output_shape(data.shape(), indices.shape())?;
        let dim = data.shape()[axis];
        let outer: usize = data.shape()[..axis].iter().product();
        let inner: usize = data.shape()[axis + 1..].iter().product();
        let picks: Vec<usize> = indices
            .to_i64_vec()
            .into_iter()
            .map(|i| {
                let j = if i < 0 { i + dim as i64 } else { i };
                if (0..dim as i64).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(OpError::invalid(format!("Gather index {i} is out of range for dim {dim}")))
                }
            })
            .collect::<Result<_, _>>()?;
        let mut idx = Vec::with_capacity(outer * picks.len() * inner);
        for o in 0..outer {
            for &p in &picks {
                let base = (o * dim + p) * inner;
                idx.extend(base..base + inner);
            }
        }
        Ok(vec![Tensor::new(out_shape, data.data().take(&idx))?])
    }
}

fn parse(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    Ok(Gather { axis: attrs.int_or("axis", 0)? }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Gather", (1, 21), (2, 2), (1, 1), parse)];
