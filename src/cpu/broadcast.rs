//! Elementwise maps with numpy broadcasting, parallel where shapes agree.

use super::uninit::filled;
use super::{parallel, simd};
use crate::tensor::shape::{broadcast_shapes, broadcast_strides, for_each_offset};
use crate::tensor::TensorError;

/// `f` over every element, in parallel for large inputs.
pub fn map<A: Copy + Sync, O: Copy + Send>(a: &[A], f: impl Fn(A) -> O + Sync + Send) -> Vec<O> {
    let chunk = parallel::chunk_len(a.len(), 4);
    // SAFETY: each piece is zipped with the input piece of its length, every slot written.
    unsafe {
        filled(a.len(), chunk, |i, o| {
            let src = &a[i * chunk..i * chunk + o.len()];
            simd::vectorised(
                #[inline(always)]
                || {
                    for (o, &x) in o.iter_mut().zip(src) {
                        o.write(f(x));
                    }
                },
            );
        })
    }
}

/// `f(a, b)` under numpy broadcasting; returns the output shape and data.
pub fn map2<A: Copy + Sync, B: Copy + Sync, O: Copy + Send>(
    a_shape: &[usize],
    a: &[A],
    b_shape: &[usize],
    b: &[B],
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Result<(Vec<usize>, Vec<O>), TensorError> {
    let shape = broadcast_shapes(a_shape, b_shape)?;
    let len: usize = shape.iter().product();
    if len == 0 {
        return Ok((shape, Vec::new()));
    }
    if a.len() == len && b.len() == len {
        let chunk = parallel::chunk_len(len, 4);
        // SAFETY: each piece is zipped with input pieces of its length, every slot written.
        let out = unsafe {
            filled(len, chunk, |i, o| {
                let start = i * chunk;
                let (sa, sb) = (&a[start..start + o.len()], &b[start..start + o.len()]);
                simd::vectorised(
                    #[inline(always)]
                    || {
                        for ((o, &x), &y) in o.iter_mut().zip(sa).zip(sb) {
                            o.write(f(x, y));
                        }
                    },
                );
            })
        };
        return Ok((shape, out));
    }
    if b.len() == 1 {
        return Ok((shape, map(a, |x| f(x, b[0]))));
    }
    let (sa, sb) = (broadcast_strides(a_shape, &shape), broadcast_strides(b_shape, &shape));
    let (dims, [sa, sb]) = coalesce(&shape, [&sa, &sb]);
    let Some((&inner, outer)) = dims.split_last() else {
        return Ok((shape, vec![f(a[0], b[0]); len]));
    };
    let (ia, ib) = (sa[dims.len() - 1], sb[dims.len() - 1]);
    // Rows (outer positions) in parallel chunks; each inner run is a tight loop the compiler can
    // vectorise for the common strides (both contiguous, or one broadcast).
    let rows_per_chunk = parallel::chunk_len(len / inner, inner);
    // SAFETY: pieces are whole rows, and each row is zipped with input runs of its length or
    // enumerated, every slot written.
    let out = unsafe {
        filled(len, rows_per_chunk * inner, |c, rows| {
            simd::vectorised(
                #[inline(always)]
                || {
                    for (j, dst) in rows.chunks_mut(inner).enumerate() {
                        let [oa, ob] = row_offsets(c * rows_per_chunk + j, outer, [&sa, &sb]);
                        match (ia, ib) {
                            (1, 1) => {
                                for ((d, &x), &y) in
                                    dst.iter_mut().zip(&a[oa..oa + inner]).zip(&b[ob..ob + inner])
                                {
                                    d.write(f(x, y));
                                }
                            }
                            (1, 0) => {
                                for (d, &x) in dst.iter_mut().zip(&a[oa..oa + inner]) {
                                    d.write(f(x, b[ob]));
                                }
                            }
                            (0, 1) => {
                                for (d, &y) in dst.iter_mut().zip(&b[ob..ob + inner]) {
                                    d.write(f(a[oa], y));
                                }
                            }
                            _ => {
                                for (j, d) in dst.iter_mut().enumerate() {
                                    d.write(f(a[oa + j * ia], b[ob + j * ib]));
                                }
                            }
                        }
                    }
                },
            )
        })
    };
    Ok((shape, out))
}

/// Offsets into each input of outer position `row` (row-major over `outer`; `strides` hold the
/// outer dims first, as `coalesce` returns them).
fn row_offsets<const N: usize>(mut row: usize, outer: &[usize], strides: [&[usize]; N]) -> [usize; N] {
    let mut offsets = [0; N];
    for d in (0..outer.len()).rev() {
        let i = row % outer[d];
        row /= outer[d];
        for k in 0..N {
            offsets[k] += i * strides[k][d];
        }
    }
    offsets
}

/// Merges adjacent dims that every input walks as one (contiguous, or broadcast in both), and
/// drops dims of size 1, so inner loops are as long as possible: `[1, C, H, W] * [1, C, 1, 1]`
/// becomes `[C, H*W]` with strides `[H*W, 1]` and `[1, 0]`.
fn coalesce<const N: usize>(shape: &[usize], strides: [&[usize]; N]) -> (Vec<usize>, [Vec<usize>; N]) {
    let mut dims: Vec<usize> = Vec::new();
    let mut out: [Vec<usize>; N] = std::array::from_fn(|_| Vec::new());
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let mergeable = !dims.is_empty()
            && (0..N).all(|k| {
                let prev = out[k][out[k].len() - 1];
                (prev == 0 && strides[k][d] == 0) || (prev != 0 && prev == strides[k][d] * n)
            });
        if let (true, Some(last)) = (mergeable, dims.last_mut()) {
            *last *= n;
            for k in 0..N {
                let i = out[k].len() - 1;
                out[k][i] = strides[k][d];
            }
        } else {
            dims.push(n);
            for k in 0..N {
                out[k].push(strides[k][d]);
            }
        }
    }
    (dims, out)
}

/// Offsets into each of `shapes` for every element of their broadcast shape, flattened as
/// `[element][input]`; used by the dtype-agnostic ops (Where, Expand).
pub fn gather_offsets<const N: usize>(out_shape: &[usize], shapes: [&[usize]; N]) -> Vec<[usize; N]> {
    let strides: Vec<Vec<usize>> = shapes.iter().map(|s| broadcast_strides(s, out_shape)).collect();
    let refs: [&[usize]; N] = std::array::from_fn(|k| strides[k].as_slice());
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for_each_offset(out_shape, refs, |_, offs| out.push(offs));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescing_merges_contiguous_and_broadcast_runs() {
        let (dims, [a, b]) = coalesce(&[1, 3, 4, 5], [&[0, 20, 5, 1], &[0, 1, 0, 0]]);
        assert_eq!((dims, a, b), (vec![3, 20], vec![20, 1], vec![1, 0]));
    }

    #[test]
    fn broadcast_rows_split_over_threads_match_a_loop() {
        // Enough rows for several parallel chunks; b broadcasts over the middle dim, then over the
        // first (a per-channel scale), and a general stride pattern (a transposed-like b).
        let a: Vec<i64> = (0..64 * 3 * 700).collect();
        for sb in [vec![64, 1, 700], vec![1, 3, 700], vec![64, 3, 1]] {
            let b: Vec<i64> = (0..sb.iter().product::<usize>() as i64).map(|x| x * 1000).collect();
            let (shape, out) = map2(&[64, 3, 700], &a, &sb, &b, |x, y| x + y).unwrap();
            assert_eq!(shape, vec![64, 3, 700]);
            for i in 0..64 {
                for j in 0..3 {
                    for k in 0..700 {
                        let at = |s: &[usize]| {
                            let (i, j, k) = ((i % s[0]), (j % s[1]), (k % s[2]));
                            (i * s[1] + j) * s[2] + k
                        };
                        assert_eq!(
                            out[(i * 3 + j) * 700 + k],
                            a[(i * 3 + j) * 700 + k] + b[at(&sb)],
                            "{sb:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn general_broadcast_matches_a_loop() {
        let (sa, sb) = ([2, 1, 3], [4, 1]);
        let a: Vec<i64> = (0..6).collect();
        let b: Vec<i64> = (0..4).map(|x| x * 10).collect();
        let (shape, out) = map2(&sa, &a, &sb, &b, |x, y| x + y).unwrap();
        assert_eq!(shape, vec![2, 4, 3]);
        for i in 0..2 {
            for j in 0..4 {
                for k in 0..3 {
                    assert_eq!(out[(i * 4 + j) * 3 + k], a[i * 3 + k] + b[j]);
                }
            }
        }
    }
}
