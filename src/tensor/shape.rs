//! Shape arithmetic shared by shape inference and the kernels: strides, broadcasting, axes.

use super::TensorError;

/// Row-major (C order) strides in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Number of elements, or an error when it does not fit in `usize`.
pub fn checked_numel(shape: &[usize]) -> Result<usize, TensorError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| TensorError::TooLarge(shape.to_vec()))
}

/// Numpy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, TensorError> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| {
        let offset = rank - s.len();
        if i < offset {
            1
        } else {
            s[i - offset]
        }
    };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(TensorError::Broadcast(a.to_vec(), b.to_vec())),
        })
        .collect()
}

/// Broadcasts any number of shapes together.
pub fn broadcast_all<'a>(shapes: impl IntoIterator<Item = &'a [usize]>) -> Result<Vec<usize>, TensorError> {
    shapes.into_iter().try_fold(Vec::new(), |acc, s| broadcast_shapes(&acc, s))
}

/// Strides of `shape` seen through a broadcast to `out` (0 where a dimension is repeated).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let own = strides(shape);
    let offset = out.len() - shape.len();
    (0..out.len()).map(|i| if i < offset || shape[i - offset] == 1 { 0 } else { own[i - offset] }).collect()
}

/// Resolves a possibly negative axis against a rank.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, TensorError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(TensorError::Axis { axis, rank })
    }
}

/// Resolves a list of axes, rejecting duplicates.
pub fn normalize_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, TensorError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(a, rank)?;
        if out.contains(&n) {
            return Err(TensorError::Axis { axis: a, rank });
        }
        out.push(n);
    }
    Ok(out)
}

/// Calls `f(out_index, offsets)` for every element of `out_shape`, where `offsets[k]` is the
/// element offset into input `k` described by `input_strides[k]`. Walks the last dimension in an
/// inner loop so the per-element cost is one add per input.
pub fn for_each_offset<const N: usize>(
    out_shape: &[usize],
    input_strides: [&[usize]; N],
    mut f: impl FnMut(usize, [usize; N]),
) {
    let rank = out_shape.len();
    let total: usize = out_shape.iter().product();
    if total == 0 {
        return;
    }
    if rank == 0 {
        f(0, [0; N]);
        return;
    }
    let inner = out_shape[rank - 1];
    let inner_strides: [usize; N] = std::array::from_fn(|k| input_strides[k][rank - 1]);
    let mut counter = vec![0usize; rank - 1];
    let mut base = [0usize; N];
    let mut out = 0;
    loop {
        let mut offs = base;
        for _ in 0..inner {
            f(out, offs);
            out += 1;
            for k in 0..N {
                offs[k] += inner_strides[k];
            }
        }
        // Advance the outer counter like an odometer, keeping `base` in step.
        let mut d = rank - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            counter[d] += 1;
            for k in 0..N {
                base[k] += input_strides[k][d];
            }
            if counter[d] < out_shape[d] {
                break;
            }
            for k in 0..N {
                base[k] -= input_strides[k][d] * out_shape[d];
            }
            counter[d] = 0;
        }
    }
}

/// Strides of a view of `shape` and `strides` reshaped to `to` without moving data (numpy's rule:
/// each run of source dims that merges into or splits across target dims must be contiguous
/// within itself), or `None` when the reshape needs a copy. Size-1 dims take any stride.
pub fn reshaped_strides(shape: &[usize], strides: &[usize], to: &[usize]) -> Option<Vec<usize>> {
    let n: usize = shape.iter().product();
    if n == 0 || n != to.iter().product::<usize>() || shape.len() != strides.len() {
        return None;
    }
    // Source dims of size 1 carry no information.
    let dims: Vec<(usize, usize)> =
        shape.iter().zip(strides).filter(|(&n, _)| n != 1).map(|(&n, &s)| (n, s)).collect();
    let mut out = vec![0; to.len()];
    let (mut i, mut j) = (0, 0);
    while j < to.len() {
        if to[j] == 1 {
            out[j] = 1;
            j += 1;
            continue;
        }
        // Take source dims until their product equals the target dims' product.
        let (i0, j0) = (i, j);
        let (mut src, mut dst) = (dims.get(i)?.0, to[j]);
        i += 1;
        j += 1;
        while src != dst {
            if src < dst {
                src *= dims.get(i)?.0;
                i += 1;
            } else {
                dst *= *to.get(j)?;
                j += 1;
            }
        }
        // The source run must be one walk: each dim's stride is the next one's span.
        if (i0..i - 1).any(|k| dims[k].1 != dims[k + 1].1 * dims[k + 1].0) {
            return None;
        }
        // The target dims split that walk, innermost stride the run's innermost one.
        let mut stride = dims[i - 1].1;
        for k in (j0..j).rev() {
            out[k] = stride;
            stride *= to[k];
        }
    }
    (i == dims.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
        assert_eq!(broadcast_shapes(&[], &[5]).unwrap(), vec![5]);
        assert!(broadcast_shapes(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn offsets_walk_broadcast_inputs() {
        let out = [2, 3];
        let a = broadcast_strides(&[2, 1], &out);
        let b = broadcast_strides(&[3], &out);
        let mut seen = vec![];
        for_each_offset(&out, [&a, &b], |o, [x, y]| seen.push((o, x, y)));
        assert_eq!(seen, vec![(0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 1, 0), (4, 1, 1), (5, 1, 2)]);
    }

    #[test]
    fn negative_axes_resolve() {
        assert_eq!(normalize_axis(-1, 4).unwrap(), 3);
        assert!(normalize_axis(4, 4).is_err());
        assert!(normalize_axes(&[1, -3], 4).is_err());
    }

    #[test]
    fn reshapes_of_strided_views_without_copies() {
        // A third of the last axis of a contiguous [2, 5, 36] (a Q of a fused QKV projection).
        let (shape, strides) = ([2, 5, 12], [180, 36, 1]);
        assert_eq!(reshaped_strides(&shape, &strides, &[2, 5, 3, 4]), Some(vec![180, 36, 4, 1]));
        assert_eq!(reshaped_strides(&shape, &strides, &[10, 12]), Some(vec![36, 1]));
        assert_eq!(reshaped_strides(&shape, &strides, &[1, 2, 1, 5, 12, 1]), Some(vec![1, 180, 1, 36, 1, 1]));
        // Merging 5 and the narrowed 12 would need a copy; so would a transposed view flattened.
        assert_eq!(reshaped_strides(&shape, &strides, &[2, 60]), None);
        assert_eq!(reshaped_strides(&[3, 2], &[1, 3], &[6]), None);
        assert_eq!(reshaped_strides(&[3, 2], &[1, 3], &[3, 2, 1]), Some(vec![1, 3, 1]));
        assert_eq!(reshaped_strides(&[2, 3, 4], &[12, 4, 1], &[6, 4]), Some(vec![4, 1]));
        assert_eq!(reshaped_strides(&[2, 3], &[3, 1], &[7]), None);
    }
}
