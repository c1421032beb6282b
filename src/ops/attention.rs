//! The CPU kernel of fused attention, `softmax(scale * Q @ Kt) @ V`, streamed over blocks of query
//! rows: a task holds the scores of its rows only (at most [`SCORE_BLOCK_BYTES`]), never the whole
//! [.., M, N] score tensor. Wan 2.1's self-attention at its real window has M = N = 32760 tokens
//! and 12 heads: 48 GiB of scores unfused, 8 MiB per task here.

use crate::cpu::gemm::{sgemm_serial, MatRef};
use crate::cpu::math::{self, exp};
use crate::cpu::{parallel, simd};
use crate::ops::OpError;
use crate::tensor::shape::{broadcast_shapes, strides};

/// Scores one task may hold at once.
pub const SCORE_BLOCK_BYTES: usize = 8 << 20;

/// Operand shapes of one attention: batch dimensions broadcast over Q, Kt and V.
struct Plan {
    batch: Vec<usize>,
    m: usize,
    d: usize,
    n: usize,
    dv: usize,
}

fn split(shape: &[usize]) -> (Vec<usize>, usize, usize) {
    let r = shape.len();
    (shape[..r - 2].to_vec(), shape[r - 2], shape[r - 1])
}

/// An operand read where it lies, without a copy: element `i` (a multi-index over `shape`) is
/// `data[offset + sum(i[k] * strides[k])]`. The head split and merge around attention, the Split of
/// a fused QKV projection and K's transpose are all such views of the tensors the node is given.
#[derive(Clone, Debug)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub offset: usize,
}

impl<'a> Strided<'a> {
    /// A row-major tensor.
    pub fn contiguous(shape: &[usize], data: &'a [f32]) -> Self {
        Strided { data, shape: shape.to_vec(), strides: strides(shape), offset: 0 }
    }

    /// Dim `k` of the result is dim `perm[k]` of this view (a Transpose, read in place).
    pub fn permuted(self, perm: &[usize]) -> Result<Self, OpError> {
        if !is_permutation(perm, self.shape.len()) {
            return Err(OpError::invalid(format!("{perm:?} does not permute {} dims", self.shape.len())));
        }
        Ok(Strided {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            ..self
        })
    }

    /// Whether every element of the view lies inside `data`.
    fn fits(&self) -> bool {
        self.shape.contains(&0)
            || self.offset + self.shape.iter().zip(&self.strides).map(|(&n, &s)| (n - 1) * s).sum::<usize>()
                < self.data.len()
    }

    /// Rows `row0..row0 + rows` of the matrix (the last two dims) whose batch starts at `base`.
    fn matrix(&self, base: usize, row0: usize, rows: usize) -> MatRef<'a> {
        let r = self.shape.len();
        let (row_stride, col_stride) = (self.strides[r - 2], self.strides[r - 1]);
        let start = self.offset + base + row0 * row_stride;
        let data = if rows == 0 || self.shape[r - 1] == 0 { &[][..] } else { &self.data[start..] };
        MatRef { data, rows, cols: self.shape[r - 1], row_stride, col_stride }
    }
}

fn is_permutation(perm: &[usize], rank: usize) -> bool {
    let mut seen = vec![false; rank];
    perm.len() == rank && perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true))
}

/// The strides of `shape`'s trailing batch dims as broadcast to `batch` (0 along a dim of size 1
/// or a missing one).
fn batch_strides(x: &Strided, batch: &[usize]) -> Vec<usize> {
    let own = x.shape.len() - 2;
    let lead = batch.len() - own;
    (0..batch.len())
        .map(|k| match k.checked_sub(lead) {
            Some(j) if x.shape[j] != 1 => x.strides[j],
            _ => 0,
        })
        .collect()
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
    Ok(Plan { batch, m, d, n, dv })
}

/// Output shape of the attention of operands with these shapes.
pub fn output_shape(q: &[usize], kt: &[usize], v: &[usize]) -> Result<Vec<usize>, OpError> {
    let p = plan(q, kt, v)?;
    Ok([p.batch, vec![p.m, p.dv]].concat())
}

/// `softmax(scale * Q @ Kt, last axis) @ V` for row-major f32 operands; returns the output shape
/// and data. Numerically the unfused ops' sum order per score (the same GEMM over the same
/// rows); only the softmax row is never written out.
pub fn attention(
    (q_shape, q): (&[usize], &[f32]),
    (kt_shape, kt): (&[usize], &[f32]),
    (v_shape, v): (&[usize], &[f32]),
    scale: f32,
) -> Result<(Vec<usize>, Vec<f32>), OpError> {
    let [q, kt, v] = [(q_shape, q), (kt_shape, kt), (v_shape, v)].map(|(s, x)| Strided::contiguous(s, x));
    attention_strided(&q, &kt, &v, scale, None)
}

/// [`attention`] of operands read through views, its output written permuted by `output` (dim
/// `k` of the returned tensor is dim `output[k]` of the attention's): what the node's Transposes
/// would have copied is read and written in place.
pub fn attention_strided(
    q: &Strided,
    kt: &Strided,
    v: &Strided,
    scale: f32,
    output: Option<&[usize]>,
) -> Result<(Vec<usize>, Vec<f32>), OpError> {
    let p = plan(&q.shape, &kt.shape, &v.shape)?;
    if let Some((name, _)) = [("Q", q), ("Kt", kt), ("V", v)].iter().find(|(_, x)| !x.fits()) {
        return Err(OpError::invalid(format!("the attention's {name} view lies outside its data")));
    }
    let (m, d, n, dv) = (p.m, p.d, p.n, p.dv);
    let shape = [p.batch.clone(), vec![m, dv]].concat();
    let rank = shape.len();
    // The output's own strides per attention dim.
    let (stored_shape, out_strides) = match output {
        None => (shape.clone(), strides(&shape)),
        Some(perm) if is_permutation(perm, rank) => {
            let stored: Vec<usize> = perm.iter().map(|&k| shape[k]).collect();
            let mut at = vec![0; rank];
            for (&k, s) in perm.iter().zip(strides(&stored)) {
                at[k] = s;
            }
            (stored, at)
        }
        Some(perm) => return Err(OpError::invalid(format!("{perm:?} does not permute {rank} dims"))),
    };
    let mut out = vec![0.0f32; shape.iter().product()];
    if out.is_empty() {
        return Ok((stored_shape, out));
    }
    let batch_strides = [q, kt, v].map(|x| batch_strides(x, &p.batch));
    let (out_rows, out_cols) = (out_strides[rank - 2], out_strides[rank - 1]);
    let batches: usize = p.batch.iter().product();
    let rows = block_rows(batches, m, n);
    let row_blocks = m.div_ceil(rows);
    let blocks = batches * row_blocks;
    // Consecutive blocks share a task (and its score buffer) where there are more than the
    // threads need: the temporal attention of a video UNet has thousands of 8-row heads.
    let tasks = match parallel::num_threads() {
        1 => 1,
        threads => blocks.min(threads * 4),
    };
    let per_task = blocks.div_ceil(tasks);
    let shared = SharedOutput(out.as_mut_ptr());
    parallel::for_each_index(blocks.div_ceil(per_task), |task| {
        let mut scores = vec![0.0f32; rows * n];
        let mut block_out = vec![0.0f32; rows * dv];
        for block in task * per_task..((task + 1) * per_task).min(blocks) {
            let (batch, row0) = (block / row_blocks, block % row_blocks * rows);
            let r = rows.min(m - row0);
            let [bq, bk, bv, bo] = batch_offsets(
                batch,
                &p.batch,
                [&batch_strides[0], &batch_strides[1], &batch_strides[2], &out_strides[..rank - 2]],
            );
            let (scores, block_out) = (&mut scores[..r * n], &mut block_out[..r * dv]);
            sgemm_serial(scale, q.matrix(bq, row0, r), kt.matrix(bk, 0, d), 0.0, scores);
            if n > 0 {
                simd::vectorised(
                    #[inline(always)]
                    || {
                        for row in scores.chunks_mut(n) {
                            softmax_in_place(row);
                        }
                    },
                );
            }
            sgemm_serial(1.0, MatRef::row_major(scores, r, n), v.matrix(bv, 0, n), 0.0, block_out);
            for (i, row) in block_out.chunks(dv.max(1)).enumerate() {
                let first = bo + (row0 + i) * out_rows;
                for (c, &x) in row.iter().enumerate() {
                    // SAFETY: `out_strides` are a permutation of the row-major strides of an
                    // output of `shape`, so each (batch, row, column) has its own element, in
                    // bounds; blocks cover disjoint (batch, row) ranges.
                    unsafe { *shared.get().add(first + c * out_cols) = x };
                }
            }
        }
    });
    Ok((stored_shape, out))
}

/// The output, written by tasks that own disjoint (batch, row) ranges of it.
struct SharedOutput(*mut f32);

// SAFETY: see the writes in `attention_strided`; the caller holds `&mut` to the whole output.
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Offsets of batch element `index` (row-major over `batch`) under each set of strides.
fn batch_offsets<const N: usize>(index: usize, batch: &[usize], strides: [&[usize]; N]) -> [usize; N] {
    let mut offsets = [0; N];
    let mut rest = index;
    for k in (0..batch.len()).rev() {
        let i = rest % batch[k];
        rest /= batch[k];
        for (o, s) in offsets.iter_mut().zip(&strides) {
            *o += i * s[k];
        }
    }
    offsets
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
    // `for` loops here and in the caller, not `for_each`: its `fold` is not always inlined,
    // and a call out of the `simd::vectorised` closure runs the baseline copy of `exp`.
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / math::sum_by(row, |x| x);
    for x in row.iter_mut() {
        *x *= inv;
    }
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

    /// Keys given as rows [.., N, D] and read transposed in place compute what the same keys
    /// copied transposed [.., D, N] do, and an output written permuted is the permuted output.
    #[test]
    fn views_match_copies() {
        let (b, h, m, n, d, dv) = (3, 2, 17, 11, 8, 5);
        let (q, k, v) = (data(b * h * m * d, 1), data(b * h * n * d, 2), data(b * h * n * dv, 3));
        let mut kt = vec![0.0; k.len()];
        for (i, x) in k.iter().enumerate() {
            let (bi, j, c) = (i / (n * d), i / d % n, i % d);
            kt[bi * d * n + c * n + j] = *x;
        }
        let keys = Strided::contiguous(&[b, h, n, d], &k).permuted(&[0, 1, 3, 2]).unwrap();
        let [qs, vs] = [(&[b, h, m, d], &q), (&[b, h, n, dv], &v)].map(|(s, x)| Strided::contiguous(s, x));
        let perm = [0, 2, 1, 3];
        let (shape, viewed) = attention_strided(&qs, &keys, &vs, 0.3, Some(&perm)).unwrap();
        let copied = attention((&[b, h, m, d], &q), (&[b, h, d, n], &kt), (&[b, h, n, dv], &v), 0.3).unwrap();
        assert_eq!(shape, [b, m, h, dv]);
        let worst = (0..viewed.len())
            .map(|i| {
                let (bi, mi, hi, c) = (i / (m * h * dv), i / (h * dv) % m, i / dv % h, i % dv);
                (viewed[i] - copied.1[((bi * h + hi) * m + mi) * dv + c]).abs()
            })
            .fold(0.0, f32::max);
        assert!(worst < 1e-6, "max |diff| {worst}");
    }

    #[test]
    fn views_outside_their_data_and_bad_permutations_are_errors() {
        let x = data(24, 1);
        let q = Strided::contiguous(&[2, 3, 4], &x);
        let past = Strided { offset: 1, ..q.clone() };
        let kt = Strided::contiguous(&[2, 4, 3], &x);
        let v = Strided::contiguous(&[2, 3, 4], &x);
        assert!(attention_strided(&past, &kt, &v, 1.0, None).is_err());
        assert!(attention_strided(&q, &kt, &v, 1.0, Some(&[0, 1, 1])).is_err());
        assert!(q.clone().permuted(&[0, 1]).is_err());
        assert!(attention_strided(&q, &kt, &v, 1.0, Some(&[1, 0, 2])).is_ok());
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
