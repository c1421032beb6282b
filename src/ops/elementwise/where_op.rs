//! Where: picks from X or Y by a broadcast boolean condition, for any dtype.

use crate::cpu::broadcast::gather_offsets;
use crate::ops::registry::OpDef;
use crate::ops::{expect_dtype, required, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::broadcast_all;
use crate::tensor::{DType, Tensor, TensorData};

#[derive(Clone, Debug, PartialEq)]
pub struct Where;

impl OpSpec for Where {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let c = required(inputs, 0, "condition")?;
        let x = required(inputs, 1, "X")?;
        let y = required(inputs, 2, "Y")?;
        expect_dtype("condition", c.dtype(), &[DType::Bool])?;
        expect_dtype("Y", y.dtype(), &[x.dtype()])?;
        let shape = broadcast_all([c.shape(), x.shape(), y.shape()])?;
        Ok(vec![TensorType::new(x.dtype(), shape)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let c = required(inputs, 0, "condition")?;
        let x = required(inputs, 1, "X")?;
        let y = required(inputs, 2, "Y")?;
        let cond = c.as_bool()?;
        let shape = broadcast_all([c.shape(), x.shape(), y.shape()])?;
        // Index into the concatenation [x, y]: x's offsets as they are, y's shifted by x's length.
        let picks: Vec<usize> = gather_offsets(&shape, [c.shape(), x.shape(), y.shape()])
            .into_iter()
            .map(|[ic, ix, iy]| if cond[ic] { ix } else { x.len() + iy })
            .collect();
        let both = TensorData::concat(&[x.data(), y.data()])
            .ok_or_else(|| OpError::invalid("Where: X and Y differ in dtype"))?;
        Ok(vec![Tensor::new(shape, both.take(&picks))?])
    }
}

pub(crate) const DEFS: &[OpDef] =
    &[OpDef::new("Where", (9, 21), (3, 3), (1, 1), |_, _| Ok(Op::Where(Where)))];
