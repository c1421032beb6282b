//! Cast and CastLike.

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    /// The target dtype; `None` for CastLike, which takes it from its second input.
    pub to: Option<DType>,
}

impl Cast {
    fn target(&self, like: Option<DType>) -> Result<DType, OpError> {
        self.to.or(like).ok_or(OpError::MissingInput { index: 1, name: "target_type" })
    }
}

impl OpSpec for Cast {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        let like = inputs.get(1).copied().flatten().map(|v| v.dtype());
        Ok(vec![TensorType::new(self.target(like)?, x.shape().to_vec())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "input")?;
        let like = inputs.get(1).copied().flatten().map(|v| v.dtype());
        Ok(vec![x.cast(self.target(like)?)])
    }
}

fn parse_cast(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let code = attrs.int("to")?.ok_or_else(|| OpError::bad_attribute("to", "is required"))?;
    // `saturate` only affects float8 targets, which are not supported anyway.
    attrs.ignore("saturate");
    let to = DType::from_onnx_code(code as i32).ok_or_else(|| {
        OpError::unsupported(format!("Cast to ONNX dtype {code}"), DType::ALL.map(|d| d.name()).join(", "))
    })?;
    Ok(Cast { to: Some(to) }.into())
}

fn parse_cast_like(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    attrs.ignore("saturate");
    Ok(Cast { to: None }.into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("Cast", (6, 21), (1, 1), (1, 1), parse_cast),
    OpDef::new("CastLike", (15, 21), (2, 2), (1, 1), parse_cast_like),
];
