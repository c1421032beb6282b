//! GroupNormalization: opset 18-20 scale and bias per group, opset 21 per channel.

use super::{check_len, float_output, normalize_rows, Epilogue};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct GroupNorm {
    pub num_groups: usize,
    pub epsilon: f32,
    /// Opset 21 semantics: scale and bias have one value per channel, not per group.
    pub per_channel_affine: bool,
}

impl GroupNorm {
    fn check(&self, x: &[usize], scale: &[usize], bias: &[usize]) -> Result<(), OpError> {
        if x.len() < 2 || self.num_groups == 0 || !x[1].is_multiple_of(self.num_groups) {
            return Err(OpError::invalid(format!(
                "GroupNormalization: {} groups do not divide the channels of {x:?}",
                self.num_groups
            )));
        }
        let len = if self.per_channel_affine { x[1] } else { self.num_groups };
        check_len("scale", scale, len)?;
        check_len("bias", bias, len)
    }
}

impl OpSpec for GroupNorm {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        expect_dtype("X", x.dtype(), FLOATS)?;
        self.check(x.shape(), required(inputs, 1, "scale")?.shape(), required(inputs, 2, "bias")?.shape())?;
        Ok(vec![x.ty.clone()])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![self.run_then(inputs, Epilogue::default())?])
    }
}

impl GroupNorm {
    /// The norm, then `then` on each channel's plane (f32 inputs: see [`Epilogue`]).
    pub(crate) fn run_then(&self, inputs: &[Option<&Tensor>], then: Epilogue) -> Result<Tensor, OpError> {
        let x = required(inputs, 0, "X")?;
        let (scale, bias) = (required(inputs, 1, "scale")?, required(inputs, 2, "bias")?);
        self.check(x.shape(), scale.shape(), bias.shape())?;
        let (s, b) = (scale.f32s(), bias.f32s());
        let channels = x.shape()[1];
        let spatial: usize = x.shape()[2..].iter().product();
        let per_group = channels / self.num_groups;
        let out = normalize_rows(
            &x.f32s(),
            per_group * spatial,
            self.epsilon,
            #[inline(always)]
            |row, d| {
                let (batch, group) = (row / self.num_groups, row % self.num_groups);
                for (c, plane) in d.chunks_mut(spatial.max(1)).enumerate() {
                    let p = if self.per_channel_affine { group * per_group + c } else { group };
                    plane.iter_mut().for_each(|v| *v = *v * s[p] + b[p]);
                    then.apply(batch, group * per_group + c, plane);
                }
            },
        );
        float_output(x.shape().to_vec(), out, x.dtype())
    }
}

fn parse(attrs: &mut Attrs, node: &NodeContext) -> Result<Op, OpError> {
    let num_groups = attrs
        .int("num_groups")?
        .filter(|&g| g > 0)
        .ok_or_else(|| OpError::bad_attribute("num_groups", "is required and must be positive"))?;
    attrs.ignore("stash_type");
    Ok(GroupNorm {
        num_groups: num_groups as usize,
        epsilon: attrs.float_or("epsilon", 1e-5)?,
        per_channel_affine: node.opset >= 21,
    }
    .into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("GroupNormalization", (18, 21), (3, 3), (1, 1), parse)];
