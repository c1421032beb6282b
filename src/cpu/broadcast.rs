//! Elementwise maps with numpy broadcasting, parallel where shapes agree.

use super::parallel;
use crate::tensor::shape::{broadcast_shapes, broadcast_strides, for_each_offset};
use crate::tensor::TensorError;

/// `f` over every element, in parallel for large inputs.
pub fn map<A: Copy + Sync, O: Copy + Send + Default>(
    a: &[A],
    f: impl Fn(A) -> O + Sync + Send,
) -> Vec<O> {
    let mut out = vec![O::default(); a.len()];
    let chunk = parallel::chunk_len(a.len(), 4);
    parallel::for_each_chunk_mut(&mut out, chunk, |i, o| {
        let src = &a[i * chunk..i * chunk + o.len()];
        o.iter_mut().zip(src).for_each(|(o, &x)| *o = f(x));
    });
    out
}

/// `f(a, b)` under numpy broadcasting; returns the output shape and data.
pub fn map2<A: Copy + Sync, B: Copy + Sync, O: Copy + Send + Default>(
    a_shape: &[usize],
    a: &[A],
    b_shape: &[usize],
    b: &[B],
    f: impl Fn(A, B) -> O + Sync + Send,
) -> Result<(Vec<usize>, Vec<O>), TensorError> {
    let shape = broadcast_shapes(a_shape, b_shape)?;
    let len: usize = shape.iter().product();
    if a.len() == len && b.len() == len {
        let mut out = vec![O::default(); len];
        let chunk = parallel::chunk_len(len, 4);
        parallel::for_each_chunk_mut(&mut out, chunk, |i, o| {
            let start = i * chunk;
            let (sa, sb) = (&a[start..start + o.len()], &b[start..start + o.len()]);
            for ((o, &x), &y) in o.iter_mut().zip(sa).zip(sb) {
                *o = f(x, y);
            }
        });
        return Ok((shape, out));
    }
    if b.len() == 1 {
        return Ok((shape, map(a, |x| f(x, b[0]))));
    }
    let (sa, sb) = (
        broadcast_strides(a_shape, &shape),
        broadcast_strides(b_shape, &shape),
    );
    let mut out = Vec::with_capacity(len);
    for_each_offset(&shape, [&sa, &sb], |_, [ia, ib]| out.push(f(a[ia], b[ib])));
    Ok((shape, out))
}

/// Offsets into each of `shapes` for every element of their broadcast shape, flattened as
/// `[element][input]`; used by the dtype-agnostic ops (Where, Expand).
pub fn gather_offsets<const N: usize>(
    out_shape: &[usize],
    shapes: [&[usize]; N],
) -> Vec<[usize; N]> {
    let strides: Vec<Vec<usize>> = shapes
        .iter()
        .map(|s| broadcast_strides(s, out_shape))
        .collect();
    let refs: [&[usize]; N] = std::array::from_fn(|k| strides[k].as_slice());
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for_each_offset(out_shape, refs, |_, offs| out.push(offs));
    out
}
