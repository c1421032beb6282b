//! One-input elementwise ops: math functions, activations and Not.

use super::{map_float, NUMERIC};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::{DType, Tensor, TensorData};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryKind {
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Neg,
    Abs,
    Sin,
    Cos,
    Tanh,
    Erf,
    Sigmoid,
    /// `x * sigmoid(x)`: never parsed, made by the `silu` fusion from Sigmoid and Mul (the same
    /// arithmetic, so the same bits).
    Silu,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Gelu {
        tanh_approximation: bool,
    },
    Softplus,
    Floor,
    Ceil,
    Not,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Unary {
    pub kind: UnaryKind,
}

/// `$body` with `$k` naming `$kind`: for each common kind a copy where it is a constant, so
/// that the per-element match in [`UnaryKind::apply`] folds away and the loop vectorises; the
/// run-time value otherwise.
macro_rules! specialised {
    ($kind:expr, |$k:ident| $body:expr) => {{
        use UnaryKind::*;
        specialised!(@each $kind, $k, $body;
            Sigmoid, Silu, Exp, Sqrt, Tanh, Erf, Relu, Neg, Reciprocal,
            Gelu { tanh_approximation: true }, Gelu { tanh_approximation: false })
    }};
    (@each $kind:expr, $k:ident, $body:expr; $($common:expr),*) => {
        match $kind {
            $(value if value == $common => {
                // A const, not a local: a closure in `$body` sees a constant, not a field of
                // its environment (a `let` made the SiLU op 15x slower).
                #[allow(non_upper_case_globals)]
                const $k: UnaryKind = $common;
                $body
            })*
            $k => $body,
        }
    };
}

impl UnaryKind {
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        use UnaryKind::*;
        match self {
            Sqrt => x.sqrt(),
            Reciprocal => 1.0 / x,
            Exp => crate::cpu::math::exp(x),
            Log => x.ln(),
            Neg => -x,
            Abs => x.abs(),
            Sin => x.sin(),
            Cos => x.cos(),
            Tanh => crate::cpu::math::tanh(x),
            Erf => libm::erff(x),
            Sigmoid => sigmoid(x),
            Silu => x * sigmoid(x),
            Relu => x.max(0.0),
            LeakyRelu { alpha } => {
                if x < 0.0 {
                    alpha * x
                } else {
                    x
                }
            }
            Gelu { tanh_approximation: false } => {
                0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2))
            }
            Gelu { tanh_approximation: true } => {
                let inner = (2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                0.5 * x * (1.0 + crate::cpu::math::tanh(inner))
            }
            // log(1 + e^x) without overflow for large x.
            Softplus => x.max(0.0) + crate::cpu::math::exp(-x.abs()).ln_1p(),
            Floor => x.floor(),
            Ceil => x.ceil(),
            Not => (x == 0.0) as u8 as f32,
        }
    }

    /// [`Self::apply`] to every value in place, one loop per common kind (see `specialised!`:
    /// a match per element kept the loop from vectorising, 7x slower for SiLU).
    #[inline(always)]
    pub fn apply_in_place(self, values: &mut [f32]) {
        specialised!(self, |kind| {
            for v in values.iter_mut() {
                *v = kind.apply(*v);
            }
        })
    }

    /// The integer form, for the ops ONNX defines on integers too.
    fn apply_int(self, x: i64) -> Option<i64> {
        match self {
            UnaryKind::Neg => Some(x.wrapping_neg()),
            UnaryKind::Abs => Some(x.wrapping_abs()),
            UnaryKind::Relu => Some(x.max(0)),
            _ => None,
        }
    }

    fn accepted(self) -> &'static [DType] {
        match self {
            UnaryKind::Neg | UnaryKind::Abs | UnaryKind::Relu => NUMERIC,
            UnaryKind::Not => &[DType::Bool],
            _ => FLOATS,
        }
    }
}

/// 1 / (1 + e^-x) through e^-|x|, which never overflows.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    let e = crate::cpu::math::exp(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 {
        s
    } else {
        e * s
    }
}

impl OpSpec for Unary {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        expect_dtype("X", x.dtype(), self.kind.accepted())?;
        Ok(vec![x.ty.clone()])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "X")?;
        expect_dtype("X", x.dtype(), self.kind.accepted())?;
        if let TensorData::Bool(v) = x.data() {
            let data = TensorData::Bool(v.iter().map(|b| !b).collect());
            return Ok(vec![Tensor::new(x.shape().to_vec(), data)?]);
        }
        if let Some(out) = specialised!(self.kind, |kind| map_float(x, |v| kind.apply(v))) {
            return Ok(vec![out]);
        }
        let values: Vec<i64> =
            x.to_i64_vec().into_iter().map(|v| self.kind.apply_int(v).unwrap_or_default()).collect();
        Ok(vec![Tensor::from_i64(x.shape().to_vec(), values)?.cast(x.dtype())])
    }
}

fn unary(kind: UnaryKind) -> Result<Op, OpError> {
    Ok(Unary { kind }.into())
}

macro_rules! simple {
    ($name:literal, $since:literal, $kind:ident) => {
        OpDef::new($name, ($since, 21), (1, 1), (1, 1), |_, _| unary(UnaryKind::$kind))
    };
}

pub(crate) const DEFS: &[OpDef] = &[
    simple!("Sqrt", 6, Sqrt),
    simple!("Reciprocal", 6, Reciprocal),
    simple!("Exp", 6, Exp),
    simple!("Log", 6, Log),
    simple!("Neg", 6, Neg),
    simple!("Abs", 6, Abs),
    simple!("Sin", 7, Sin),
    simple!("Cos", 7, Cos),
    simple!("Tanh", 6, Tanh),
    simple!("Erf", 9, Erf),
    simple!("Sigmoid", 6, Sigmoid),
    simple!("Relu", 6, Relu),
    simple!("Softplus", 1, Softplus),
    simple!("Floor", 6, Floor),
    simple!("Ceil", 6, Ceil),
    simple!("Not", 1, Not),
    OpDef::new("LeakyRelu", (6, 21), (1, 1), (1, 1), parse_leaky_relu),
    OpDef::new("Gelu", (20, 21), (1, 1), (1, 1), parse_gelu),
];

fn parse_leaky_relu(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let alpha = attrs.float_or("alpha", 0.01)?;
    unary(UnaryKind::LeakyRelu { alpha })
}

fn parse_gelu(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let approximate = attrs.choice("approximate", "none", &["none", "tanh"])?;
    unary(UnaryKind::Gelu { tanh_approximation: approximate == "tanh" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softplus_and_sigmoid_stay_finite_at_extremes() {
        assert_eq!(UnaryKind::Softplus.apply(100.0), 100.0);
        assert!(UnaryKind::Sigmoid.apply(-100.0) < 1e-40);
        assert!((UnaryKind::Sigmoid.apply(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn neg_runs_on_integers() {
        let x = Tensor::from_i64(vec![2], vec![3, -4]).unwrap();
        let op = Unary { kind: UnaryKind::Neg };
        let out = op.run(&[Some(&x)]).unwrap();
        assert_eq!(out[0].to_i64_vec(), vec![-3, 4]);
    }

    #[test]
    fn sqrt_rejects_integers() {
        let x = Tensor::from_i64(vec![1], vec![4]).unwrap();
        let op = Unary { kind: UnaryKind::Sqrt };
        assert!(op.run(&[Some(&x)]).is_err());
    }
}
