//! MatMul with numpy semantics: any rank, broadcast batch dimensions, 1-D promotion.

use crate::cpu::broadcast::gather_offsets;
use crate::cpu::gemm::{sgemm, MatRef};
use crate::cpu::{parallel, simd, uninit};
use crate::ops::registry::OpDef;
use crate::ops::{expect_dtype, required, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::shape::broadcast_shapes;
use crate::tensor::{DType, Tensor};
use std::mem::MaybeUninit;

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
    batched_matmul_onto(a_shape, a, b_shape, b, None)
}

/// `a @ b + addend`, the addend repeated over the product (a Linear layer's bias `[n]`, or a
/// tensor of the product's shape), added to each block of the product while it is in cache:
/// the bits of MatMul then Add without the Add's pass over memory.
pub(crate) fn batched_matmul_onto(
    a_shape: &[usize],
    a: &[f32],
    b_shape: &[usize],
    b: &[f32],
    addend: Option<&[f32]>,
) -> Result<(Vec<usize>, Vec<f32>), OpError> {
    let p = plan(a_shape, b_shape)?;
    let len: usize = p.out_shape.iter().product();
    if let Some(c) = addend {
        if c.is_empty() || !len.is_multiple_of(c.len()) {
            return Err(OpError::invalid(format!(
                "MatMul addend of {} elements does not repeat over the product {:?}",
                c.len(),
                p.out_shape
            )));
        }
    }
    // SAFETY: the GEMMs (beta = 0) write every slot of their blocks, and the blocks cover the
    // output; the addend is added after the GEMMs have written them.
    let out = unsafe { uninit::written(len, |out| product_into(&p, a, b, addend, out)) };
    Ok((p.out_shape, out))
}

/// The products of [`batched_matmul_onto`] into `out`, every slot written.
fn product_into(p: &Plan, a: &[f32], b: &[f32], addend: Option<&[f32]>, out: &mut [MaybeUninit<f32>]) {
    let (m, k, n) = (p.m, p.k, p.n);
    if p.b_batch.iter().product::<usize>() == 1 {
        // One B for every batch (a Linear layer on a 3-D input): a single GEMM with the batch
        // folded into the rows of A.
        let rows = p.batch.iter().product::<usize>() * m;
        let a = MatRef::row_major(a, rows, k);
        let b = MatRef::row_major(b, k, n);
        sgemm(1.0, a, b, 0.0, out);
        if let Some(c) = addend {
            // Added after the whole product, which `sgemm` splits for the threads its own way
            // (rows, or columns for few rows) and blocks for the caches: row blocks per task
            // here, for the addend's sake, read all of B once per block (blocks of 21 rows of
            // a [256, 768] x [768, 3072] product: 75 against 102 GFLOP/s) and left products
            // of up to 128 rows on one thread. The gemm crate's accumulating form (the addend
            // first, beta = 1) measured slower than writing, then adding.
            // SAFETY: the GEMM (beta = 0) wrote every slot.
            let out = unsafe { uninit::assume_init(out) };
            let per_task = parallel::chunk_len(out.len(), 1);
            parallel::for_each_chunk_mut(out, per_task, |i, part| add_repeating(part, c, i * per_task));
        }
        return;
    }
    let pairs = gather_offsets(&p.batch, [&p.a_batch, &p.b_batch]);
    let per_batch = (m * n).max(1);
    // Many small products (attention heads) run one per task; big ones split inside sgemm.
    let batches_per_chunk = parallel::chunk_len(pairs.len(), m * n * k);
    parallel::for_each_chunk_mut(out, batches_per_chunk * per_batch, |chunk, c_block| {
        let first = chunk * batches_per_chunk;
        for (j, c_one) in c_block.chunks_mut(per_batch).enumerate() {
            let [ia, ib] = pairs[first + j];
            let a_mat = MatRef::row_major(&a[ia * m * k..(ia + 1) * m * k], m, k);
            let b_mat = MatRef::row_major(&b[ib * k * n..(ib + 1) * k * n], k, n);
            sgemm(1.0, a_mat, b_mat, 0.0, c_one);
            if let Some(c) = addend {
                // SAFETY: the GEMM wrote the whole product.
                add_repeating(unsafe { uninit::assume_init(c_one) }, c, (first + j) * per_batch);
            }
        }
    });
}

/// `out += c` repeated over and over, as if `out` began at element `start` of the repetition.
fn add_repeating(out: &mut [f32], c: &[f32], start: usize) {
    simd::vectorised(
        #[inline(always)]
        || {
            let mut from = start % c.len();
            let mut rest = out;
            while !rest.is_empty() {
                let take = rest.len().min(c.len() - from);
                let (head, tail) = rest.split_at_mut(take);
                head.iter_mut().zip(&c[from..from + take]).for_each(|(o, &x)| *o += x);
                (rest, from) = (tail, 0);
            }
        },
    )
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

    /// A bias over the last dim and a same-shape addend, on the one-B path and the batched one,
    /// give the bits of MatMul then Add.
    #[test]
    fn product_onto_an_addend_is_matmul_then_add() {
        let vals =
            |n: usize, k: usize| -> Vec<f32> { (0..n).map(|i| ((i * k % 23) as f32 - 11.0) / 7.0).collect() };
        for (sa, sb) in [(vec![3, 70, 5], vec![5, 6]), (vec![3, 4, 5], vec![3, 5, 6])] {
            let (a, b) = (vals(sa.iter().product(), 5), vals(sb.iter().product(), 3));
            let (shape, ab) = batched_matmul(&sa, &a, &sb, &b).unwrap();
            let len: usize = shape.iter().product();
            for c in [vals(6, 7), vals(len, 11)] {
                let want: Vec<f32> = ab.iter().enumerate().map(|(i, &x)| x + c[i % c.len()]).collect();
                let (got_shape, got) = batched_matmul_onto(&sa, &a, &sb, &b, Some(&c)).unwrap();
                assert_eq!((&got_shape, &got), (&shape, &want), "{sa:?} {sb:?} addend {}", c.len());
            }
        }
    }
}
