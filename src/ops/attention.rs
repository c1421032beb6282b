//! The CPU kernel of fused attention, `softmax(scale * Q @ Kt) @ V`, streamed over blocks of query
//! rows: a task holds the scores of its rows only (at most [`SCORE_BLOCK_BYTES`]), never the whole
//! [.., M, N] score tensor. Wan 2.1's self-attention at its real window has M = N = 32760 tokens
//! and 12 heads: 48 GiB of scores unfused, 8 MiB per task here.

use crate::cpu::broadcast::gather_offsets;
use crate::cpu::gemm::{sgemm_serial, MatRef};
use crate::cpu::math::{self, exp};
use crate::cpu::{parallel, simd};
use crate::ops::OpError;
use crate::tensor::shape::broadcast_shapes;

/// Scores one task may hold at once.
pub const SCORE_BLOCK_BYTES: usize = 8 << 20;

/// Operand shapes of one attention: batch dimensions broadcast over Q, Kt and V.
struct Plan {
    batch: Vec<usize>,
    q_batch: Vec<usize>,
    k_batch: Vec<usize>,
    v_batch: Vec<usize>,
    m: usize,
    d: usize,
    n: usize,
    dv: usize,
}

fn split(shape: &[usize]) -> (Vec<usize>, usize, usize) {
    let r = shape.len();
    (shape[..r - 2].to_vec(), shape[r - 2], shape[r - 1])
}

/// The keys as the first MatMul reads them, `Kt` [.., D, N], or as rows `K` [.., N, D] (what
/// torch's head split leaves before its transpose: the GEMM reads it transposed, no copy).
#[derive(Clone, Copy)]
pub enum Keys<'a> {
    Transposed(&'a [usize], &'a [f32]),
    Rows(&'a [usize], &'a [f32]),
}

impl Keys<'_> {
    /// The shape of Kt.
    fn kt_shape(&self) -> Vec<usize> {
        match self {
            Keys::Transposed(shape, _) => shape.to_vec(),
            Keys::Rows(shape, _) => {
                let mut s = shape.to_vec();
                let r = s.len();
                if r >= 2 {
                    s.swap(r - 1, r - 2);
                }
                s
            }
        }
    }
}

fn plan(q: &[usize], kt: &[usize], v: &[usize]) -> Result<Plan, OpError> {
    if q.len() < 2 || kt.len() < 2 || v.len() < 2 {
        return Err(OpError::invalid(format!(
            "fused attention needs operands of rank >= 2, got Q {q:?}, Kt {kt:?}, V {v:?}"
        )));
    }
    let (q_batch, m, d) = split(q);
    let (k_batch, d2, n) = split(kt);
    let (v_batch, n2, dv) = split(v);
    if d != d2 || n != n2 {
        return Err(OpError::invalid(format!("attention shapes disagree: Q {q:?}, Kt {kt:?}, V {v:?}")));
    }
    let batch = broadcast_shapes(&broadcast_shapes(&q_batch, &k_batch)?, &v_batch)?;
    Ok(Plan { batch, q_batch, k_batch, v_batch, m, d, n, dv })
}

/// Output shape of the attention of operands with these shapes.
pub fn output_shape(q: &[usize], kt: &[usize], v: &[usize]) -> Result<Vec<usize>, OpError> {
    let p = plan(q, kt, v)?;
    Ok([p.batch, vec![p.m, p.dv]].concat())
}

/// One task: rows `row0..row0 + out.len() / dv` of one batch element.
struct Block<'a> {
    offsets: [usize; 3],
    row0: usize,
    out: &'a mut [f32],
}

/// `softmax(scale * Q @ Kt, last axis) @ V` for row-major f32 operands; returns the output shape
/// and data. Numerically the unfused ops' sum order per score (the same GEMM over the same
/// rows); only the softmax row is never written out.
pub fn attention(
    q: (&[usize], &[f32]),
    kt: (&[usize], &[f32]),
    v: (&[usize], &[f32]),
    scale: f32,
) -> Result<(Vec<usize>, Vec<f32>), OpError> {
    attention_of(q, Keys::Transposed(kt.0, kt.1), v, scale)
}

/// [`attention`] with the keys in either layout.
pub fn attention_of(
    (q_shape, q): (&[usize], &[f32]),
    keys: Keys,
    (v_shape, v): (&[usize], &[f32]),
    scale: f32,
) -> Result<(Vec<usize>, Vec<f32>), OpError> {
    let p = plan(q_shape, &keys.kt_shape(), v_shape)?;
    let (m, d, n, dv) = (p.m, p.d, p.n, p.dv);
    let offsets = gather_offsets(&p.batch, [&p.q_batch, &p.k_batch, &p.v_batch]);
    let mut out = vec![0.0f32; offsets.len() * m * dv];
    let rows = block_rows(offsets.len(), m, n);
    let mut blocks = Vec::new();
    if dv > 0 {
        for (per_batch, &offsets) in out.chunks_mut(m * dv).zip(&offsets) {
            for (j, out) in per_batch.chunks_mut(rows * dv).enumerate() {
                blocks.push(Block { offsets, row0: j * rows, out });
            }
        }
    }
    parallel::for_each_item(blocks, |block| {
        let [iq, ik, iv] = block.offsets;
        let r = block.out.len() / dv;
        let q_rows = &q[(iq * m + block.row0) * d..][..r * d];
        let mut scores = vec![0.0f32; r * n];
        let kt = match keys {
            Keys::Transposed(_, kt) => MatRef::row_major(&kt[ik * d * n..][..d * n], d, n),
            Keys::Rows(_, k) => MatRef::row_major(&k[ik * n * d..][..n * d], n, d).t(),
        };
        sgemm_serial(scale, MatRef::row_major(q_rows, r, d), kt, 0.0, &mut scores);
        if n > 0 {
            simd::vectorised(
                #[inline(always)]
                || scores.chunks_mut(n).for_each(softmax_in_place),
            );
        }
        let v_mat = MatRef::row_major(&v[iv * n * dv..][..n * dv], n, dv);
        sgemm_serial(1.0, MatRef::row_major(&scores, r, n), v_mat, 0.0, block.out);
    });
    Ok(([p.batch, vec![m, dv]].concat(), out))
}

/// Query rows per task: within the score budget, and enough tasks to keep every thread busy
/// (each task runs its two GEMMs on one thread).
fn block_rows(batches: usize, m: usize, n: usize) -> usize {
    let budget = (SCORE_BLOCK_BYTES / 4 / n.max(1)).max(1);
    // One thread takes whole heads (each block packs K and V again); more split them finer.
    let tasks_wanted = match parallel::num_threads() {
        1 => 1,
        threads => threads * 4,
    };
    let per_batch = tasks_wanted.div_ceil(batches.max(1));
    // Below 16 rows the second GEMM repacks V for too little work.
    let even = m.div_ceil(per_batch).max(16);
    even.min(budget).clamp(1, m.max(1))
}

#[inline(always)]
fn softmax_in_place(row: &mut [f32]) {
    let max = math::max(row);
    row.iter_mut().for_each(|x| *x = exp(*x - max));
    let inv = 1.0 / math::sum_by(row, |x| x);
    row.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::linalg::matmul::batched_matmul;

    /// The unfused ops: MatMul, scale, Softmax over the last axis, MatMul.
    fn unfused(q: (&[usize], &[f32]), kt: (&[usize], &[f32]), v: (&[usize], &[f32]), scale: f32) -> Vec<f32> {
        let (s_shape, mut s) = batched_matmul(q.0, q.1, kt.0, kt.1).unwrap();
        let n = *s_shape.last().unwrap();
        s.iter_mut().for_each(|x| *x *= scale);
        for row in s.chunks_mut(n) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
            row.iter_mut().for_each(|x| *x = (((*x - max) as f64).exp() / sum) as f32);
        }
        batched_matmul(&s_shape, &s, v.0, v.1).unwrap().1
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32).map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    /// Relative tolerance of f32 attention against the f64-softmax reference.
    const TOLERANCE: f32 = 1e-5;

    fn check(q_shape: &[usize], kt_shape: &[usize], v_shape: &[usize]) {
        let numel = |s: &[usize]| s.iter().product::<usize>();
        let (q, kt, v) = (data(numel(q_shape), 1), data(numel(kt_shape), 2), data(numel(v_shape), 3));
        let scale = 0.37;
        let (shape, got) = attention((q_shape, &q), (kt_shape, &kt), (v_shape, &v), scale).unwrap();
        let want = unfused((q_shape, &q), (kt_shape, &kt), (v_shape, &v), scale);
        assert_eq!(shape, output_shape(q_shape, kt_shape, v_shape).unwrap());
        assert_eq!(got.len(), want.len(), "{q_shape:?} {kt_shape:?} {v_shape:?}");
        let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let err = got.iter().zip(&want).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
        assert!(err / norm < TOLERANCE, "{q_shape:?} {kt_shape:?} {v_shape:?}: relative L2 {}", err / norm);
    }

    #[test]
    fn matches_the_unfused_ops() {
        // Heads, a single row, odd sizes, cross-attention (N != M), Dv != D.
        check(&[2, 3, 17, 8], &[2, 3, 8, 23], &[2, 3, 23, 5]);
        check(&[1, 1, 8], &[1, 8, 300], &[1, 300, 8]);
        check(&[4, 77, 16], &[4, 16, 7], &[4, 7, 16]);
    }

    /// Keys given as rows [.., N, D] compute what the same keys transposed [.., D, N] do.
    #[test]
    fn keys_as_rows_match_keys_transposed() {
        let (b, m, n, d, dv) = (3, 17, 11, 8, 5);
        let (q, k, v) = (data(b * m * d, 1), data(b * n * d, 2), data(b * n * dv, 3));
        let mut kt = vec![0.0; k.len()];
        for (i, x) in k.iter().enumerate() {
            let (bi, j, c) = (i / (n * d), i / d % n, i % d);
            kt[bi * d * n + c * n + j] = *x;
        }
        let rows =
            attention_of((&[b, m, d], &q), Keys::Rows(&[b, n, d], &k), (&[b, n, dv], &v), 0.3).unwrap();
        let transposed = attention((&[b, m, d], &q), (&[b, d, n], &kt), (&[b, n, dv], &v), 0.3).unwrap();
        assert_eq!(rows.0, transposed.0);
        let worst = rows.1.iter().zip(&transposed.1).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-6, "max |diff| {worst}");
    }

    #[test]
    fn broadcasts_batch_dimensions() {
        // One K/V shared by every head (multi-query), and Q broadcast over a batch of K/V.
        check(&[2, 4, 9, 8], &[2, 1, 8, 11], &[1, 1, 11, 6]);
        check(&[1, 9, 8], &[3, 8, 11], &[3, 11, 6]);
    }

    #[test]
    fn streams_rows_within_the_score_budget() {
        // N large enough that one task's budget holds fewer rows than M: several blocks per head.
        let n = SCORE_BLOCK_BYTES / 4 / 40 + 3;
        assert!(block_rows(1, 100, n) < 100);
        check(&[1, 100, 4], &[1, 4, n], &[1, n, 3]);
    }

    #[test]
    fn disagreeing_shapes_are_errors() {
        assert!(output_shape(&[2, 3, 8], &[2, 7, 4], &[2, 4, 8]).is_err());
        assert!(output_shape(&[2, 3, 8], &[2, 8, 4], &[2, 5, 8]).is_err());
        assert!(output_shape(&[8], &[8, 4], &[4, 8]).is_err());
        assert!(output_shape(&[2, 3, 8], &[3, 8, 4], &[2, 4, 8]).is_err());
    }
}
