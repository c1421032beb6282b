//! Identity and Dropout (inference: a pass-through; its optional mask output is all true).

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::{DType, Tensor, TensorData};

#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// Dropout with a `mask` output.
    pub with_mask: bool,
}

impl OpSpec for Identity {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        let mut out = vec![x.ty.clone()];
        if self.with_mask {
            out.push(TensorType::new(DType::Bool, x.shape().to_vec()));
        }
        Ok(out)
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "input")?;
        let mut out = vec![x.clone()];
        if self.with_mask {
            out.push(Tensor::new(x.shape().to_vec(), TensorData::Bool(vec![true; x.len()]))?);
        }
        Ok(out)
    }
}

fn parse_dropout(attrs: &mut Attrs, node: &NodeContext) -> Result<Op, OpError> {
    // Inference ignores the ratio and seed; training_mode is an input that must be false.
    attrs.ignore("seed");
    attrs.ignore("ratio");
    if node.num_inputs > 2 {
        return Err(OpError::unsupported(
            "Dropout with a training_mode input",
            "inference-only Dropout (ratio at most)",
        ));
    }
    Ok(Identity { with_mask: node.num_outputs > 1 }.into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("Identity", (1, 21), (1, 1), (1, 1), |_: &mut Attrs, _: &NodeContext| {
        Ok(Op::Identity(Identity { with_mask: false }))
    }),
    OpDef::new("Dropout", (7, 21), (1, 3), (1, 2), parse_dropout),
];
