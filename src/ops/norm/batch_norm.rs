//! BatchNormalization in inference mode: running mean and variance per channel.

use super::{check_len, float_output};
use crate::cpu::broadcast::map;
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub epsilon: f32,
}

const PARAMS: [&str; 4] = ["scale", "B", "input_mean", "input_var"];

impl OpSpec for BatchNorm {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        expect_dtype("X", x.dtype(), FLOATS)?;
        if x.shape().len() < 2 {
            return Err(OpError::invalid("BatchNormalization needs [N, C, ...]"));
        }
        for (i, name) in PARAMS.iter().enumerate() {
            check_len(name, required(inputs, i + 1, name)?.shape(), x.shape()[1])?;
        }
        Ok(vec![x.ty.clone()])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "X")?;
        let p: Vec<Vec<f32>> = PARAMS
            .iter()
            .enumerate()
            .map(|(i, name)| required(inputs, i + 1, name).map(|t| t.to_f32_vec()))
            .collect::<Result<_, _>>()?;
        if x.rank() < 2 || p.iter().any(|v| v.len() != x.shape()[1]) {
            return Err(OpError::invalid("BatchNormalization parameters must be [C]"));
        }
        let channels = x.shape()[1];
        let spatial: usize = x.shape()[2..].iter().product();
        // y = x * a[c] + b[c] with a = scale / sqrt(var + eps), b = B - mean * a.
        let a: Vec<f32> = (0..channels).map(|c| p[0][c] / (p[3][c] + self.epsilon).sqrt()).collect();
        let b: Vec<f32> = (0..channels).map(|c| p[1][c] - p[2][c] * a[c]).collect();
        let xv = x.to_f32_vec();
        let indexed: Vec<(usize, f32)> = xv.into_iter().enumerate().collect();
        let out = map(&indexed, |(i, v)| {
            let c = (i / spatial.max(1)) % channels;
            v * a[c] + b[c]
        });
        Ok(vec![float_output(x.shape().to_vec(), out, x.dtype())?])
    }
}

fn parse(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    if attrs.int_or("training_mode", 0)? != 0 {
        return Err(OpError::unsupported(
            "BatchNormalization training_mode 1",
            "inference (training_mode 0)",
        ));
    }
    // Momentum only updates running statistics in training.
    attrs.ignore("momentum");
    Ok(BatchNorm { epsilon: attrs.float_or("epsilon", 1e-5)? }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("BatchNormalization", (9, 21), (5, 5), (1, 1), parse)];
