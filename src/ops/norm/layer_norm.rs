//! LayerNormalization (opset 17+): statistics over the dims from `axis` on; scale and bias
//! broadcast to those dims.

use super::{float_output, normalize_rows};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::shape::{broadcast_shapes, broadcast_strides, for_each_offset, normalize_axis};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub axis: i64,
    pub epsilon: f32,
}

impl LayerNorm {
    fn normalized_dims<'a>(&self, x: &'a [usize]) -> Result<&'a [usize], OpError> {
        Ok(&x[normalize_axis(self.axis, x.len())?..])
    }

    fn check_param(&self, x: &[usize], name: &str, p: &[usize]) -> Result<(), OpError> {
        let dims = self.normalized_dims(x)?;
        if broadcast_shapes(p, dims)? != dims {
            return Err(OpError::invalid(format!("{name} {p:?} does not broadcast to {dims:?}")));
        }
        Ok(())
    }
}

/// A parameter expanded to one value per element of the normalised dims.
fn expand_param(p: &Tensor, dims: &[usize]) -> Vec<f32> {
    let v = p.f32s();
    let strides = broadcast_strides(p.shape(), dims);
    let mut out = Vec::with_capacity(dims.iter().product());
    for_each_offset(dims, [&strides], |_, [i]| out.push(v[i]));
    out
}

impl OpSpec for LayerNorm {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        expect_dtype("X", x.dtype(), FLOATS)?;
        self.check_param(x.shape(), "Scale", required(inputs, 1, "Scale")?.shape())?;
        if let Some(b) = inputs.get(2).copied().flatten() {
            self.check_param(x.shape(), "B", b.shape())?;
        }
        Ok(vec![x.ty.clone()])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "X")?;
        let dims = self.normalized_dims(x.shape())?;
        let scale = required(inputs, 1, "Scale")?;
        self.check_param(x.shape(), "Scale", scale.shape())?;
        let s = expand_param(scale, dims);
        let b = match inputs.get(2).copied().flatten() {
            Some(b) => {
                self.check_param(x.shape(), "B", b.shape())?;
                expand_param(b, dims)
            }
            None => vec![0.0; s.len()],
        };
        let out = normalize_rows(
            &x.f32s(),
            s.len(),
            self.epsilon,
            #[inline(always)]
            |_, d| d.iter_mut().zip(s.iter().zip(&b)).for_each(|(v, (s, b))| *v = *v * s + b),
        );
        Ok(vec![float_output(x.shape().to_vec(), out, x.dtype())?])
    }
}

fn parse(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    attrs.ignore("stash_type");
    Ok(LayerNorm { axis: attrs.int_or("axis", -1)?, epsilon: attrs.float_or("epsilon", 1e-5)? }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("LayerNormalization", (17, 21), (2, 3), (1, 1), parse)];
