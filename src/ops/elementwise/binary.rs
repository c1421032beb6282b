//! Two-input (and variadic Min/Max/Sum) elementwise ops: arithmetic, comparisons, logic.

use super::NUMERIC;
use crate::cpu::broadcast::map2;
use crate::ops::registry::{NodeContext, OpDef, MANY};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::broadcast_shapes;
use crate::tensor::{DType, Tensor, TensorData};
use half::f16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Mod { fmod: bool },
    Min,
    Max,
    Sum,
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

/// What the two inputs must be and what comes out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Category {
    /// Same numeric dtype in and out.
    Arithmetic,
    /// Numeric base, any numeric exponent, base dtype out.
    Power,
    /// Same dtype in, bool out.
    Compare,
    /// Bools in and out.
    Logic,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Binary {
    pub kind: BinaryKind,
}

impl BinaryKind {
    fn category(self) -> Category {
        use BinaryKind::*;
        match self {
            Pow => Category::Power,
            Equal | Less | LessOrEqual | Greater | GreaterOrEqual => Category::Compare,
            And | Or | Xor => Category::Logic,
            _ => Category::Arithmetic,
        }
    }

    pub fn apply(self, a: f32, b: f32) -> f32 {
        use BinaryKind::*;
        match self {
            Add | Sum => a + b,
            Sub => a - b,
            Mul => a * b,
            Div => a / b,
            // powf follows C pow: a negative base with an integral exponent is exact, not NaN.
            Pow => a.powf(b),
            Mod { fmod: true } => a % b,
            Mod { fmod: false } => a - b * (a / b).floor(),
            Min => a.min(b),
            Max => a.max(b),
            _ => compare(self, a, b) as u8 as f32,
        }
    }

    fn apply_int(self, a: i64, b: i64) -> i64 {
        use BinaryKind::*;
        match self {
            Add | Sum => a.wrapping_add(b),
            Sub => a.wrapping_sub(b),
            Mul => a.wrapping_mul(b),
            // Division by zero has no defined result; 0 keeps the run going without a panic.
            Div => a.checked_div(b).unwrap_or(0),
            Pow => int_pow(a, b),
            Mod { fmod: true } => a.checked_rem(b).unwrap_or(0),
            Mod { fmod: false } => {
                a.checked_rem(b).map_or(0, |r| if r != 0 && (r < 0) != (b < 0) { r + b } else { r })
            }
            Min => a.min(b),
            Max => a.max(b),
            _ => compare(self, a, b) as i64,
        }
    }
}

fn int_pow(base: i64, exp: i64) -> i64 {
    match (base, exp) {
        (_, e) if e >= 0 => base.wrapping_pow(e.min(u32::MAX as i64) as u32),
        (1, _) => 1,
        (-1, e) => {
            if e % 2 == 0 {
                1
            } else {
                -1
            }
        }
        _ => 0,
    }
}

/// The comparison ops, for floats and integers alike.
fn compare<T: PartialOrd>(kind: BinaryKind, a: T, b: T) -> bool {
    match kind {
        BinaryKind::Equal => a == b,
        BinaryKind::Less => a < b,
        BinaryKind::LessOrEqual => a <= b,
        BinaryKind::Greater => a > b,
        _ => a >= b,
    }
}

impl Binary {
    fn check(&self, a: DType, b: DType) -> Result<DType, OpError> {
        let category = self.kind.category();
        let accepted: &[DType] = if category == Category::Logic {
            &[DType::Bool]
        } else if category == Category::Compare {
            &[DType::F32, DType::F16, DType::I8, DType::U8, DType::I32, DType::I64, DType::Bool]
        } else {
            NUMERIC
        };
        expect_dtype("A", a, accepted)?;
        expect_dtype("B", b, accepted)?;
        if category != Category::Power && a != b {
            return Err(OpError::invalid(format!("inputs have different dtypes {a} and {b}")));
        }
        Ok(match category {
            Category::Compare | Category::Logic => DType::Bool,
            _ => a,
        })
    }

    fn pair(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
        let out_dtype = self.check(a.dtype(), b.dtype())?;
        let kind = self.kind;
        let (sa, sb) = (a.shape(), b.shape());
        let (shape, data) = match (a.data(), b.data()) {
            (TensorData::Bool(x), TensorData::Bool(y)) => {
                let (s, v) = map2(sa, x, sb, y, |p, q| match kind {
                    BinaryKind::And => p && q,
                    BinaryKind::Or => p || q,
                    BinaryKind::Xor => p != q,
                    _ => compare(kind, p as i64, q as i64),
                })?;
                (s, TensorData::Bool(v))
            }
            _ if kind.category() == Category::Compare => {
                let (s, v) = if a.dtype().is_float() {
                    map2(sa, &a.f32s(), sb, &b.f32s(), |p, q| compare(kind, p, q))?
                } else {
                    map2(sa, &a.to_i64_vec(), sb, &b.to_i64_vec(), |p, q| compare(kind, p, q))?
                };
                (s, TensorData::Bool(v))
            }
            (TensorData::F32(x), TensorData::F32(y)) => {
                // One monomorphised loop per common kind, so the per-element match folds away
                // and the loops vectorise.
                let (s, v) = match kind {
                    BinaryKind::Add | BinaryKind::Sum => map2(sa, x, sb, y, |p, q| p + q)?,
                    BinaryKind::Sub => map2(sa, x, sb, y, |p, q| p - q)?,
                    BinaryKind::Mul => map2(sa, x, sb, y, |p, q| p * q)?,
                    BinaryKind::Div => map2(sa, x, sb, y, |p, q| p / q)?,
                    // Squares and cubes (RMS norms, tanh GELU) as products: one rounding for
                    // x^2 (what powf returns), two for x^3, and no libm call per element.
                    BinaryKind::Pow if y[..] == [2.0] => map2(sa, x, sb, y, |p, _| p * p)?,
                    BinaryKind::Pow if y[..] == [3.0] => map2(sa, x, sb, y, |p, _| p * p * p)?,
                    _ => map2(sa, x, sb, y, |p, q| kind.apply(p, q))?,
                };
                (s, TensorData::F32(v))
            }
            _ if a.dtype() == DType::F16 => {
                let (s, v) = map2(sa, &a.f32s(), sb, &b.f32s(), |p, q| f16::from_f32(kind.apply(p, q)))?;
                (s, TensorData::F16(v))
            }
            _ if a.dtype() == DType::F32 => {
                // Pow with a float base and an integer exponent.
                let (s, v) = map2(sa, &a.f32s(), sb, &b.f32s(), |p, q| kind.apply(p, q))?;
                (s, TensorData::F32(v))
            }
            _ if b.dtype().is_float() => {
                // Pow with an integer base and a float exponent: computed in f64, truncated.
                let (s, v) =
                    map2(sa, &a.to_i64_vec(), sb, &b.f32s(), |p, q| (p as f64).powf(q as f64) as i64)?;
                (s, TensorData::I64(v))
            }
            _ => {
                let (s, v) = map2(sa, &a.to_i64_vec(), sb, &b.to_i64_vec(), |p, q| kind.apply_int(p, q))?;
                (s, TensorData::I64(v))
            }
        };
        Ok(Tensor::new(shape, data)?.cast(out_dtype))
    }
}

impl OpSpec for Binary {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let first = required(inputs, 0, "A")?;
        let mut ty = first.ty.clone();
        for (i, input) in inputs.iter().enumerate().skip(1) {
            let b = input.ok_or(OpError::MissingInput { index: i, name: "B" })?;
            ty.dtype = self.check(ty.dtype, b.dtype())?;
            if self.kind.category() != Category::Arithmetic && i > 1 {
                return Err(OpError::invalid("only Min, Max and Sum take more than two inputs"));
            }
            ty.shape = broadcast_shapes(&ty.shape, b.shape())?;
        }
        Ok(vec![ty])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let mut acc = required(inputs, 0, "A")?.clone();
        for (i, input) in inputs.iter().enumerate().skip(1) {
            let b = input.ok_or(OpError::MissingInput { index: i, name: "B" })?;
            acc = self.pair(&acc, b)?;
        }
        Ok(vec![acc])
    }
}

fn binary(kind: BinaryKind) -> Result<Op, OpError> {
    Ok(Binary { kind }.into())
}

macro_rules! two {
    ($name:literal, $since:literal, $kind:ident) => {
        OpDef::new($name, ($since, 21), (2, 2), (1, 1), |_, _| binary(BinaryKind::$kind))
    };
}

macro_rules! many {
    ($name:literal, $since:literal, $kind:ident) => {
        OpDef::new($name, ($since, 21), (1, MANY), (1, 1), |_, _| binary(BinaryKind::$kind))
    };
}

pub(crate) const DEFS: &[OpDef] = &[
    two!("Add", 7, Add),
    two!("Sub", 7, Sub),
    two!("Mul", 7, Mul),
    two!("Div", 7, Div),
    two!("Pow", 7, Pow),
    two!("Equal", 7, Equal),
    two!("Less", 7, Less),
    two!("LessOrEqual", 12, LessOrEqual),
    two!("Greater", 7, Greater),
    two!("GreaterOrEqual", 12, GreaterOrEqual),
    two!("And", 7, And),
    two!("Or", 7, Or),
    two!("Xor", 7, Xor),
    many!("Min", 8, Min),
    many!("Max", 8, Max),
    many!("Sum", 8, Sum),
    OpDef::new("Mod", (10, 21), (2, 2), (1, 1), parse_mod),
];

fn parse_mod(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let fmod = attrs.int_or("fmod", 0)? != 0;
    binary(BinaryKind::Mod { fmod })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: BinaryKind, a: Tensor, b: Tensor) -> Tensor {
        Binary { kind }.run(&[Some(&a), Some(&b)]).unwrap().remove(0)
    }

    #[test]
    fn pow_of_negative_base_with_integral_exponent_is_real() {
        let a = Tensor::from_f32(vec![3], vec![-2.0, -3.0, 4.0]).unwrap();
        let b = Tensor::from_f32(vec![1], vec![2.0]).unwrap();
        assert_eq!(run(BinaryKind::Pow, a.clone(), b).f32s(), vec![4.0, 9.0, 16.0]);
        let e = Tensor::from_i64(vec![], vec![3]).unwrap();
        assert_eq!(run(BinaryKind::Pow, a, e).f32s(), vec![-8.0, -27.0, 64.0]);
    }

    #[test]
    fn integer_mod_follows_the_divisor_sign() {
        let a = Tensor::from_i64(vec![2], vec![-7, 7]).unwrap();
        let b = Tensor::from_i64(vec![1], vec![3]).unwrap();
        assert_eq!(run(BinaryKind::Mod { fmod: false }, a, b).to_i64_vec(), vec![2, 1]);
    }

    #[test]
    fn broadcasting_add_and_dtype_mismatch() {
        let a = Tensor::from_f32(vec![2, 1], vec![1.0, 2.0]).unwrap();
        let b = Tensor::from_f32(vec![3], vec![10.0, 20.0, 30.0]).unwrap();
        let out = run(BinaryKind::Add, a.clone(), b);
        assert_eq!(out.shape(), &[2, 3]);
        assert_eq!(out.f32s(), vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
        let i = Tensor::from_i64(vec![1], vec![1]).unwrap();
        assert!(Binary { kind: BinaryKind::Add }.run(&[Some(&a), Some(&i)]).is_err());
    }
}
