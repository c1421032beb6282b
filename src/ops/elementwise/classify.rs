//! IsNaN and IsInf: boolean masks of special float values. Exporters emit them around softmax
//! (`where(isnan(p), 0, p)` for fully masked attention rows), so text encoders need them.

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::{DType, Tensor, TensorData};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloatClass {
    pub nan: bool,
    pub positive_infinity: bool,
    pub negative_infinity: bool,
}

impl FloatClass {
    pub fn test(self, x: f32) -> bool {
        (self.nan && x.is_nan())
            || (self.positive_infinity && x == f32::INFINITY)
            || (self.negative_infinity && x == f32::NEG_INFINITY)
    }
}

impl OpSpec for FloatClass {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        expect_dtype("X", x.dtype(), FLOATS)?;
        Ok(vec![TensorType::new(DType::Bool, x.shape().to_vec())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "X")?;
        expect_dtype("X", x.dtype(), FLOATS)?;
        let mask = x.to_f32_vec().into_iter().map(|v| self.test(v)).collect();
        Ok(vec![Tensor::new(x.shape().to_vec(), TensorData::Bool(mask))?])
    }
}

fn parse_is_inf(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    Ok(FloatClass {
        nan: false,
        positive_infinity: attrs.int_or("detect_positive", 1)? != 0,
        negative_infinity: attrs.int_or("detect_negative", 1)? != 0,
    }
    .into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("IsNaN", (9, 21), (1, 1), (1, 1), |_, _| {
        Ok(FloatClass { nan: true, positive_infinity: false, negative_infinity: false }.into())
    }),
    OpDef::new("IsInf", (10, 21), (1, 1), (1, 1), parse_is_inf),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_nan_and_each_infinity() {
        let x =
            Tensor::from_f32(vec![5], vec![1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0]).unwrap();
        let run = |c: FloatClass| match c.run(&[Some(&x)]).unwrap().remove(0).data() {
            TensorData::Bool(v) => v.clone(),
            other => panic!("expected bools, got {other:?}"),
        };
        let nan = FloatClass { nan: true, positive_infinity: false, negative_infinity: false };
        assert_eq!(run(nan), [false, true, false, false, false]);
        let pos = FloatClass { nan: false, positive_infinity: true, negative_infinity: false };
        assert_eq!(run(pos), [false, false, true, false, false]);
        let both = FloatClass { nan: false, positive_infinity: true, negative_infinity: true };
        assert_eq!(run(both), [false, false, true, true, false]);
    }
}
