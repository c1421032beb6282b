//! Gemm: alpha * op(A) @ op(B) + beta * C, with C broadcast to the output (how torch exports Linear).

use crate::cpu::gemm::{sgemm, MatRef};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::shape::{broadcast_shapes, broadcast_strides, for_each_offset};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Gemm {
    fn dims(&self, a: &[usize], b: &[usize]) -> Result<(usize, usize, usize), OpError> {
        if a.len() != 2 || b.len() != 2 {
            return Err(OpError::invalid("Gemm inputs A and B must be 2-D"));
        }
        let (m, k) = if self.trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
        let (k2, n) = if self.trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
        if k != k2 {
            return Err(OpError::invalid(format!(
                "Gemm shapes {a:?} and {b:?} disagree on K (transA={}, transB={})",
                self.trans_a, self.trans_b
            )));
        }
        Ok((m, k, n))
    }
}

impl OpSpec for Gemm {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        expect_dtype("A", a.dtype(), FLOATS)?;
        expect_dtype("B", b.dtype(), &[a.dtype()])?;
        let (m, _, n) = self.dims(a.shape(), b.shape())?;
        if let Some(c) = inputs.get(2).copied().flatten() {
            if broadcast_shapes(c.shape(), &[m, n])? != [m, n] {
                return Err(OpError::invalid(format!(
                    "Gemm C {:?} does not broadcast to [{m}, {n}]",
                    c.shape()
                )));
            }
        }
        Ok(vec![TensorType::new(a.dtype(), vec![m, n])])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        let (m, k, n) = self.dims(a.shape(), b.shape())?;
        let mut out = vec![0.0f32; m * n];
        let mut beta = 0.0;
        if let Some(c) = inputs.get(2).copied().flatten() {
            let cv = c.f32s();
            let strides = broadcast_strides(c.shape(), &[m, n]);
            for_each_offset(&[m, n], [&strides], |o, [i]| out[o] = self.beta * cv[i]);
            beta = 1.0;
        }
        let (av, bv) = (a.f32s(), b.f32s());
        let a_mat = MatRef::row_major(&av, a.shape()[0], a.shape()[1]);
        let b_mat = MatRef::row_major(&bv, b.shape()[0], b.shape()[1]);
        let a_mat = if self.trans_a { a_mat.t() } else { a_mat };
        let b_mat = if self.trans_b { b_mat.t() } else { b_mat };
        debug_assert_eq!((a_mat.rows, a_mat.cols, b_mat.cols), (m, k, n));
        sgemm(self.alpha, a_mat, b_mat, beta, &mut out);
        let out = Tensor::from_f32(vec![m, n], out)?;
        Ok(vec![if a.dtype() == DType::F32 { out } else { out.cast(a.dtype()) }])
    }
}

fn parse_gemm(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    Ok(Gemm {
        alpha: attrs.float_or("alpha", 1.0)?,
        beta: attrs.float_or("beta", 1.0)?,
        trans_a: attrs.int_or("transA", 0)? != 0,
        trans_b: attrs.int_or("transB", 0)? != 0,
    }
    .into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Gemm", (7, 21), (2, 3), (1, 1), parse_gemm)];
