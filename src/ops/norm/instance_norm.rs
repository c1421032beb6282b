//! InstanceNormalization (how torch exports GroupNorm: reshape, instance-normalise, affine).

use super::{check_len, float_output, normalize_rows, Epilogue};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct InstanceNorm {
    pub epsilon: f32,
}

fn check(x: &[usize], scale: &[usize], bias: &[usize]) -> Result<(), OpError> {
    if x.len() < 2 {
        return Err(OpError::invalid(format!("InstanceNormalization needs [N, C, ...], got {x:?}")));
    }
    check_len("scale", scale, x[1])?;
    check_len("B", bias, x[1])
}

impl OpSpec for InstanceNorm {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "input")?;
        expect_dtype("input", x.dtype(), FLOATS)?;
        check(x.shape(), required(inputs, 1, "scale")?.shape(), required(inputs, 2, "B")?.shape())?;
        Ok(vec![x.ty.clone()])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        Ok(vec![self.run_then(inputs, Epilogue::default())?])
    }
}

impl InstanceNorm {
    /// The norm, then `then` on each channel's plane (f32 inputs: see [`Epilogue`]).
    pub(crate) fn run_then(&self, inputs: &[Option<&Tensor>], then: Epilogue) -> Result<Tensor, OpError> {
        let x = required(inputs, 0, "input")?;
        let (scale, bias) = (required(inputs, 1, "scale")?, required(inputs, 2, "B")?);
        check(x.shape(), scale.shape(), bias.shape())?;
        let (s, b) = (scale.f32s(), bias.f32s());
        let channels = x.shape()[1];
        let spatial: usize = x.shape()[2..].iter().product();
        let out = normalize_rows(
            &x.f32s(),
            spatial,
            self.epsilon,
            #[inline(always)]
            |row, d| {
                let (batch, c) = (row / channels, row % channels);
                d.iter_mut().for_each(|v| *v = *v * s[c] + b[c]);
                then.apply(batch, c, d);
            },
        );
        float_output(x.shape().to_vec(), out, x.dtype())
    }
}

fn parse(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    Ok(InstanceNorm { epsilon: attrs.float_or("epsilon", 1e-5)? }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("InstanceNormalization", (6, 21), (3, 3), (1, 1), parse)];
