//! GatherND (opsets 11-21): slices of `data` picked by index tuples along the last dimension of
//! `indices`, after `batch_dims` leading dimensions that data and indices share. Negative indices
//! count from the end; int32 and int64 indices; any data dtype.
//!
//! [`plan`] does the index arithmetic once, for the CPU reference here and the GPU lowering,
//! which gathers the same rows on the device when the indices are known at session build.

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct GatherNd {
    pub batch_dims: usize,
}

/// Where every output element comes from. `data` viewed as a matrix of `data.len() / slice_len`
/// rows of `slice_len` contiguous elements (one slice `data[b0, .., i0, .., ik-1, ...]` per row);
/// output row `j` (of `rows.len()`, each `slice_len` long) is data row `rows[j]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatherNdPlan {
    pub out_shape: Vec<usize>,
    pub rows: Vec<usize>,
    pub slice_len: usize,
}

impl GatherNdPlan {
    /// Flat element index into `data` of every output element, in output order.
    pub fn element_indices(&self) -> Vec<usize> {
        let n = self.slice_len;
        let mut idx = Vec::with_capacity(self.rows.len() * n);
        for &r in &self.rows {
            idx.extend(r * n..(r + 1) * n);
        }
        idx
    }
}

/// Checks the shapes and returns the output shape: `indices.shape[..q-1] ++ data.shape[b+k..]`.
pub fn output_shape(data: &[usize], indices: &[usize], batch_dims: usize) -> Result<Vec<usize>, OpError> {
    let (r, q, b) = (data.len(), indices.len(), batch_dims);
    if r == 0 || q == 0 {
        return Err(OpError::invalid(format!(
            "GatherND needs data and indices of rank >= 1 (data {data:?}, indices {indices:?})"
        )));
    }
    if b >= r.min(q) {
        return Err(OpError::bad_attribute(
            "batch_dims",
            format!("is {b}; it must be less than the ranks of data ({r}) and indices ({q})"),
        ));
    }
    if data[..b] != indices[..b] {
        return Err(OpError::invalid(format!(
            "GatherND batch dims differ: data {data:?} and indices {indices:?} must agree on the first {b}"
        )));
    }
    let k = indices[q - 1];
    if !(1..=r - b).contains(&k) {
        return Err(OpError::invalid(format!(
            "GatherND index tuples have {k} components (last dim of indices {indices:?}); \
             with data {data:?} and batch_dims {b} they must have 1 to {}",
            r - b
        )));
    }
    Ok([&indices[..q - 1], &data[b + k..]].concat())
}

/// The rows of `data` (see [`GatherNdPlan`]) that the index tuples `indices` (row-major, of
/// shape `indices_shape`) pick; an index outside its dimension is an error naming both.
pub fn plan(
    data: &[usize],
    indices_shape: &[usize],
    indices: &[i64],
    batch_dims: usize,
) -> Result<GatherNdPlan, OpError> {
    let out_shape = output_shape(data, indices_shape, batch_dims)?;
    let (b, q) = (batch_dims, indices_shape.len());
    let k = indices_shape[q - 1];
    if indices.len() != indices_shape.iter().product::<usize>() {
        return Err(OpError::invalid(format!(
            "GatherND has {} indices for shape {indices_shape:?}",
            indices.len()
        )));
    }
    let slice_len: usize = data[b + k..].iter().product();
    // Rows per batch in data, and index tuples per batch in indices.
    let rows_per_batch: usize = data[b..b + k].iter().product();
    let tuples_per_batch: usize = indices_shape[b..q - 1].iter().product();
    let mut rows = Vec::with_capacity(indices.len() / k);
    for (t, tuple) in indices.chunks_exact(k).enumerate() {
        let mut row = 0usize;
        for (j, &i) in tuple.iter().enumerate() {
            let dim = b + j;
            let n = data[dim];
            let at = if i < 0 { i + n as i64 } else { i };
            if !(0..n as i64).contains(&at) {
                return Err(OpError::invalid(format!(
                    "GatherND index {i} is out of range for data dim {dim} of size {n} (data {data:?})"
                )));
            }
            row = row * n + at as usize;
        }
        let batch = t.checked_div(tuples_per_batch).unwrap_or(0);
        rows.push(batch * rows_per_batch + row);
    }
    Ok(GatherNdPlan { out_shape, rows, slice_len })
}

impl OpSpec for GatherNd {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        expect_dtype("indices", indices.dtype(), &[DType::I32, DType::I64])?;
        let shape = match &indices.value {
            // Known indices: range errors surface when the session is built.
            Some(t) => plan(data.shape(), indices.shape(), &t.to_i64_vec(), self.batch_dims)?.out_shape,
            None => output_shape(data.shape(), indices.shape(), self.batch_dims)?,
        };
        Ok(vec![TensorType::new(data.dtype(), shape)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        expect_dtype("indices", indices.dtype(), &[DType::I32, DType::I64])?;
        let p = plan(data.shape(), indices.shape(), &indices.to_i64_vec(), self.batch_dims)?;
        let picked = data.data().take(&p.element_indices());
        Ok(vec![Tensor::new(p.out_shape, picked)?])
    }
}

fn parse(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let b = attrs.int_or("batch_dims", 0)?;
    let batch_dims = usize::try_from(b)
        .map_err(|_| OpError::bad_attribute("batch_dims", format!("is {b}; must be >= 0")))?;
    Ok(GatherNd { batch_dims }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("GatherND", (11, 21), (2, 2), (1, 1), parse)];

#[cfg(test)]
mod tests {
    use super::*;

    fn gather_nd(b: usize, data: (Vec<usize>, Vec<i64>), indices: (Vec<usize>, Vec<i64>)) -> Tensor {
        let data = Tensor::from_i64(data.0, data.1).unwrap();
        let indices = Tensor::from_i64(indices.0, indices.1).unwrap();
        GatherNd { batch_dims: b }.run(&[Some(&data), Some(&indices)]).unwrap().remove(0)
    }

    fn cube() -> (Vec<usize>, Vec<i64>) {
        (vec![2, 2, 2], (0..8).collect())
    }

    #[test]
    fn spec_examples() {
        let square = || (vec![2, 2], vec![0, 1, 2, 3]);
        // Example 1: k = r, elements.
        let y = gather_nd(0, square(), (vec![2, 2], vec![0, 0, 1, 1]));
        assert_eq!((y.shape(), y.to_i64_vec()), (&[2][..], vec![0, 3]));
        // Example 2: k < r, rows.
        let y = gather_nd(0, square(), (vec![2, 1], vec![1, 0]));
        assert_eq!((y.shape(), y.to_i64_vec()), (&[2, 2][..], vec![2, 3, 0, 1]));
        // Example 3.
        let y = gather_nd(0, cube(), (vec![2, 2], vec![0, 1, 1, 0]));
        assert_eq!((y.shape(), y.to_i64_vec()), (&[2, 2][..], vec![2, 3, 4, 5]));
        // Example 4: rank-3 indices.
        let y = gather_nd(0, cube(), (vec![2, 1, 2], vec![0, 1, 1, 0]));
        assert_eq!((y.shape(), y.to_i64_vec()), (&[2, 1, 2][..], vec![2, 3, 4, 5]));
        // Example 5: batch_dims = 1.
        let y = gather_nd(1, cube(), (vec![2, 1], vec![1, 0]));
        assert_eq!((y.shape(), y.to_i64_vec()), (&[2, 2][..], vec![2, 3, 4, 5]));
    }

    #[test]
    fn batch_dims_and_negative_indices() {
        // data [2, 3, 2], b = 1, k = 2: per batch one element per tuple.
        let data = (vec![2, 3, 2], (0..12).collect());
        let y = gather_nd(1, data, (vec![2, 2, 2], vec![-1, 0, 0, -1, 2, 1, -3, 0]));
        assert_eq!((y.shape(), y.to_i64_vec()), (&[2, 2][..], vec![4, 1, 11, 6]));
        // Negative indices, int32, bool data.
        let data = Tensor::new(vec![3], crate::tensor::TensorData::Bool(vec![true, false, true])).unwrap();
        let idx = Tensor::new(vec![2, 1], crate::tensor::TensorData::I32(vec![-2, 2])).unwrap();
        let y = GatherNd { batch_dims: 0 }.run(&[Some(&data), Some(&idx)]).unwrap().remove(0);
        assert_eq!((y.shape(), y.as_bool().unwrap()), (&[2][..], &[false, true][..]));
    }

    #[test]
    fn plan_rows_and_elements() {
        let p = plan(&[2, 3, 4], &[2, 1], &[1, -2], 0).unwrap();
        assert_eq!(p, GatherNdPlan { out_shape: vec![2, 3, 4], rows: vec![1, 0], slice_len: 12 });
        assert_eq!(p.element_indices()[..3], [12, 13, 14]);
        let p = plan(&[2, 3, 4], &[2, 1, 1], &[2, 0], 1).unwrap();
        assert_eq!((p.out_shape, p.rows, p.slice_len), (vec![2, 1, 4], vec![2, 3], 4));
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |d: &[usize], s: &[usize], i: &[i64], b| plan(d, s, i, b).unwrap_err().to_string();
        let e = err(&[2, 3], &[1, 2], &[1, 3], 0);
        assert!(e.contains("index 3") && e.contains("dim 1") && e.contains("size 3"), "{e}");
        let e = err(&[2, 3], &[1, 1], &[-3], 0);
        assert!(e.contains("index -3") && e.contains("dim 0") && e.contains("size 2"), "{e}");
        let e = err(&[2, 3], &[1, 3], &[0, 0, 0], 0);
        assert!(e.contains("3 components") && e.contains("1 to 2"), "{e}");
        let e = err(&[2, 3], &[3, 1], &[0, 0, 0], 1);
        assert!(e.contains("batch dims differ"), "{e}");
        let e = err(&[2, 3], &[2], &[0, 0], 1);
        assert!(e.contains("batch_dims") && e.contains("less than"), "{e}");
        let e = err(&[2, 3], &[], &[0], 0);
        assert!(e.contains("rank >= 1"), "{e}");
        let data = Tensor::from_f32(vec![2], vec![1.0, 2.0]).unwrap();
        let idx = Tensor::from_f32(vec![1, 1], vec![0.0]).unwrap();
        assert!(GatherNd { batch_dims: 0 }.run(&[Some(&data), Some(&idx)]).is_err());
    }
}
