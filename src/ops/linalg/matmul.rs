//! MatMul with numpy semantics: any rank, broadcast batch dimensions, 1-D promotion.

use crate::cpu::broadcast::gather_offsets;
use crate::cpu::gemm::{sgemm, MatRef};
use crate::cpu::parallel;
use crate::ops::registry::OpDef;
use crate::ops::{expect_dtype, required, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::shape::broadcast_shapes;
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct MatMul;

/// The shapes of a batched product after 1-D promotion.
struct Plan {
    batch: Vec<usize>,
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    m: usize,
    k: usize,
    n: usize,
    out_shape: Vec<usize>,
}

fn plan(a: &[usize], b: &[usize]) -> Result<Plan, OpError> {
    if a.is_empty() || b.is_empty() {
        return Err(OpError::invalid("MatMul inputs must have rank >= 1"));
    }
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(OpError::invalid(format!(
            "MatMul shapes {a:?} and {b:?} disagree on the inner dimension"
        )));
    }
    let a_batch = a2[..a2.len() - 2].to_vec();
    let b_batch = b2[..b2.len() - 2].to_vec();
    let batch = broadcast_shapes(&a_batch, &b_batch)?;
    let mut out_shape = batch.clone();
    if a.len() > 1 {
        out_shape.push(m);
    }
    if b.len() > 1 {
        out_shape.push(n);
    }
    Ok(Plan { batch, a_batch, b_batch, m, k, n, out_shape })
}

/// Batched f32 product of row-major operands with broadcast batch shapes.
pub(crate) fn batched_matmul(
    a_shape: &[usize],
    a: &[f32],
    b_shape: &[usize],
    b: &[f32],
) -> Result<(Vec<usize>, Vec<f32>), OpError> {
    let p = plan(a_shape, b_shape)?;
    let (m, k, n) = (p.m, p.k, p.n);
    if p.b_batch.iter().product::<usize>() == 1 {
        // One B for every batch (a Linear layer on a 3-D input): a single GEMM with the batch
        // folded into the rows of A.
        let rows = p.batch.iter().product::<usize>() * m;
        let mut out = vec![0.0f32; rows * n];
        sgemm(1.0, MatRef::row_major(a, rows, k), MatRef::row_major(b, k, n), 0.0, &mut out);
        return Ok((p.out_shape, out));
    }
    let pairs = gather_offsets(&p.batch, [&p.a_batch, &p.b_batch]);
    let mut out = vec![0.0f32; pairs.len() * m * n];
    let per_batch = (m * n).max(1);
    // Many small products (attention heads) run one per task; big ones split inside sgemm.
    let batches_per_chunk = parallel::chunk_len(pairs.len(), m * n * k);
    parallel::for_each_chunk_mut(&mut out, batches_per_chunk * per_batch, |chunk, c| {
        for (j, c_one) in c.chunks_mut(per_batch).enumerate() {
            let [ia, ib] = pairs[chunk * batches_per_chunk + j];
            let a_mat = MatRef::row_major(&a[ia * m * k..(ia + 1) * m * k], m, k);
            let b_mat = MatRef::row_major(&b[ib * k * n..(ib + 1) * k * n], k, n);
            sgemm(1.0, a_mat, b_mat, 0.0, c_one);
        }
    });
    Ok((p.out_shape, out))
}

impl OpSpec for MatMul {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        expect_dtype("A", a.dtype(), FLOATS)?;
        expect_dtype("B", b.dtype(), &[a.dtype()])?;
        Ok(vec![TensorType::new(a.dtype(), plan(a.shape(), b.shape())?.out_shape)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        let (shape, out) = batched_matmul(a.shape(), &a.f32s(), b.shape(), &b.f32s())?;
        let out = Tensor::from_f32(shape, out)?;
        Ok(vec![if a.dtype() == DType::F32 { out } else { out.cast(a.dtype()) }])
    }
}

pub(crate) const DEFS: &[OpDef] =
    &[OpDef::new("MatMul", (1, 21), (2, 2), (1, 1), |_, _| Ok(Op::MatMul(MatMul)))];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_times_batched_matrix() {
        let a = Tensor::from_f32(vec![2], vec![1.0, 2.0]).unwrap();
        let b = Tensor::from_f32(vec![2, 2, 3], (0..12).map(|x| x as f32).collect()).unwrap();
        let out = MatMul.run(&[Some(&a), Some(&b)]).unwrap().remove(0);
        assert_eq!(out.shape(), &[2, 3]);
        assert_eq!(out.f32s(), vec![6.0, 9.0, 12.0, 24.0, 27.0, 30.0]);
    }

    #[test]
    fn inner_dimension_mismatch_is_an_error() {
        assert!(plan(&[2, 3], &[4, 2]).is_err());
    }
}
