//! ScatterND (opsets 11-21): a copy of `data` with the slices `updates[...]` written (or reduced,
//! opset 16+: add/mul, 18+: max/min) at the positions that the index tuples along the last
//! dimension of `indices` name. Negative indices count from the end; int32 and int64 indices;
//! any data dtype.
//!
//! Duplicate index tuples with reduction "none" are undefined in ONNX; here the last update in
//! row-major order of `indices` wins (on both backends). With a reduction, duplicates combine in
//! that order.
//!
//! [`plan`] does the index arithmetic once, for the CPU reference here and the GPU lowering,
//! which turns it into a gather table when the indices are known at session build.

use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::{DType, Tensor, TensorData};
use half::f16;

/// How an update combines with the element already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScatterReduction {
    /// Overwrite (the last of duplicate indices wins).
    None,
    Add,
    Mul,
    Max,
    Min,
}

impl ScatterReduction {
    pub fn name(self) -> &'static str {
        match self {
            ScatterReduction::None => "none",
            ScatterReduction::Add => "add",
            ScatterReduction::Mul => "mul",
            ScatterReduction::Max => "max",
            ScatterReduction::Min => "min",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScatterNd {
    pub reduction: ScatterReduction,
}

/// Where every element of `updates` goes: `targets[u]` is the flat (row-major) offset into
/// data / the output of update element `u` (updates in row-major order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScatterNdPlan {
    /// Elements of data (and of the output).
    pub data_len: usize,
    pub targets: Vec<usize>,
}

impl ScatterNdPlan {
    /// For reduction "none": the source of every output element in the concatenation
    /// `[data (flat), updates (flat)]`: `i` where data element `i` survives, `data_len + u` where
    /// update element `u` is the last one written there.
    pub fn sources(&self) -> Vec<usize> {
        let mut src: Vec<usize> = (0..self.data_len).collect();
        for (u, &t) in self.targets.iter().enumerate() {
            src[t] = self.data_len + u;
        }
        src
    }
}

/// Checks the shapes: ranks >= 1, `k = indices.shape[-1]` in `1..=rank(data)`, and
/// `updates.shape == indices.shape[..q-1] ++ data.shape[k..]`. Returns k.
pub fn check_shapes(data: &[usize], indices: &[usize], updates: &[usize]) -> Result<usize, OpError> {
    let (r, q) = (data.len(), indices.len());
    if r == 0 || q == 0 {
        return Err(OpError::invalid(format!(
            "ScatterND needs data and indices of rank >= 1 (data {data:?}, indices {indices:?})"
        )));
    }
    let k = indices[q - 1];
    if !(1..=r).contains(&k) {
        return Err(OpError::invalid(format!(
            "ScatterND index tuples have {k} components (last dim of indices {indices:?}); \
             with data {data:?} they must have 1 to {r}"
        )));
    }
    let expected = [&indices[..q - 1], &data[k..]].concat();
    if updates != expected {
        return Err(OpError::invalid(format!(
            "ScatterND updates have shape {updates:?}; with data {data:?} and indices {indices:?} \
             they must have shape {expected:?} (indices.shape[:-1] + data.shape[{k}:])"
        )));
    }
    Ok(k)
}

/// The flat data offset of every update element (see [`ScatterNdPlan`]) for the index tuples
/// `indices` (row-major, of shape `indices_shape`); an index outside its dimension is an error
/// naming both.
pub fn plan(
    data: &[usize],
    indices_shape: &[usize],
    indices: &[i64],
    updates: &[usize],
) -> Result<ScatterNdPlan, OpError> {
    let k = check_shapes(data, indices_shape, updates)?;
    if indices.len() != indices_shape.iter().product::<usize>() {
        return Err(OpError::invalid(format!(
            "ScatterND has {} indices for shape {indices_shape:?}",
            indices.len()
        )));
    }
    let slice_len: usize = data[k..].iter().product();
    let data_len: usize = data.iter().product();
    let mut targets = Vec::with_capacity(updates.iter().product());
    for tuple in indices.chunks_exact(k) {
        let mut row = 0usize;
        for (dim, &i) in tuple.iter().enumerate() {
            let n = data[dim];
            let at = if i < 0 { i + n as i64 } else { i };
            if !(0..n as i64).contains(&at) {
                return Err(OpError::invalid(format!(
                    "ScatterND index {i} is out of range for data dim {dim} of size {n} (data {data:?})"
                )));
            }
            row = row * n + at as usize;
        }
        targets.extend(row * slice_len..(row + 1) * slice_len);
    }
    Ok(ScatterNdPlan { data_len, targets })
}

/// `out[t] = f(out[t], upd[u])` for every update element in order.
fn combine<T: Copy>(out: &mut [T], upd: &[T], targets: &[usize], f: impl Fn(T, T) -> T) {
    for (&t, &u) in targets.iter().zip(upd) {
        out[t] = f(out[t], u);
    }
}

macro_rules! reduce_with {
    ($out:expr, $upd:expr, $targets:expr, $red:expr, $add:expr, $mul:expr, $max:expr, $min:expr) => {
        match $red {
            ScatterReduction::None => combine($out, $upd, $targets, |_, u| u),
            ScatterReduction::Add => combine($out, $upd, $targets, $add),
            ScatterReduction::Mul => combine($out, $upd, $targets, $mul),
            ScatterReduction::Max => combine($out, $upd, $targets, $max),
            ScatterReduction::Min => combine($out, $upd, $targets, $min),
        }
    };
}

macro_rules! reduce_int {
    ($out:expr, $upd:expr, $targets:expr, $red:expr) => {
        reduce_with!(
            $out,
            $upd,
            $targets,
            $red,
            |a, b| a.wrapping_add(b),
            |a, b| a.wrapping_mul(b),
            |a, b| a.max(b),
            |a, b| a.min(b)
        )
    };
}

/// Applies the updates to a copy of `data` (dtypes already checked equal).
fn scatter(data: &TensorData, updates: &TensorData, targets: &[usize], red: ScatterReduction) -> TensorData {
    let mut out = data.clone();
    match (&mut out, updates) {
        (TensorData::F32(o), TensorData::F32(u)) => {
            reduce_with!(o, u, targets, red, |a, b| a + b, |a, b| a * b, f32::max, f32::min)
        }
        (TensorData::F16(o), TensorData::F16(u)) => reduce_with!(
            o,
            u,
            targets,
            red,
            |a: f16, b: f16| f16::from_f32(a.to_f32() + b.to_f32()),
            |a: f16, b: f16| f16::from_f32(a.to_f32() * b.to_f32()),
            |a: f16, b: f16| f16::from_f32(a.to_f32().max(b.to_f32())),
            |a: f16, b: f16| f16::from_f32(a.to_f32().min(b.to_f32()))
        ),
        (TensorData::I8(o), TensorData::I8(u)) => reduce_int!(o, u, targets, red),
        (TensorData::U8(o), TensorData::U8(u)) => reduce_int!(o, u, targets, red),
        (TensorData::I32(o), TensorData::I32(u)) => reduce_int!(o, u, targets, red),
        (TensorData::I64(o), TensorData::I64(u)) => reduce_int!(o, u, targets, red),
        // Booleans as numpy combines them: add/max are or, mul/min are and.
        (TensorData::Bool(o), TensorData::Bool(u)) => {
            reduce_with!(o, u, targets, red, |a, b| a | b, |a, b| a & b, |a, b| a | b, |a, b| a & b)
        }
        _ => unreachable!("ScatterND dtypes are checked before scattering"),
    }
    out
}

fn check_updates_dtype(data: DType, updates: DType) -> Result<(), OpError> {
    if data == updates {
        Ok(())
    } else {
        Err(OpError::InputType { name: "updates", actual: updates, expected: data.name().to_string() })
    }
}

impl OpSpec for ScatterNd {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        let updates = required(inputs, 2, "updates")?;
        expect_dtype("indices", indices.dtype(), &[DType::I32, DType::I64])?;
        check_updates_dtype(data.dtype(), updates.dtype())?;
        match &indices.value {
            // Known indices: range errors surface when the session is built.
            Some(t) => plan(data.shape(), indices.shape(), &t.to_i64_vec(), updates.shape()).map(|_| ())?,
            None => check_shapes(data.shape(), indices.shape(), updates.shape()).map(|_| ())?,
        }
        Ok(vec![TensorType::new(data.dtype(), data.shape().to_vec())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let data = required(inputs, 0, "data")?;
        let indices = required(inputs, 1, "indices")?;
        let updates = required(inputs, 2, "updates")?;
        expect_dtype("indices", indices.dtype(), &[DType::I32, DType::I64])?;
        check_updates_dtype(data.dtype(), updates.dtype())?;
        let p = plan(data.shape(), indices.shape(), &indices.to_i64_vec(), updates.shape())?;
        let out = scatter(data.data(), updates.data(), &p.targets, self.reduction);
        Ok(vec![Tensor::new(data.shape().to_vec(), out)?])
    }
}

fn parse(attrs: &mut Attrs, node: &NodeContext) -> Result<Op, OpError> {
    let reduction = match attrs.choice("reduction", "none", &["none", "add", "mul", "max", "min"])? {
        "add" => ScatterReduction::Add,
        "mul" => ScatterReduction::Mul,
        "max" => ScatterReduction::Max,
        "min" => ScatterReduction::Min,
        _ => ScatterReduction::None,
    };
    let since = match reduction {
        ScatterReduction::None => 11,
        ScatterReduction::Add | ScatterReduction::Mul => 16,
        ScatterReduction::Max | ScatterReduction::Min => 18,
    };
    if node.opset < since {
        return Err(OpError::bad_attribute(
            "reduction",
            format!(
                "is '{}', which ScatterND has from opset {since}; this node's opset is {}",
                reduction.name(),
                node.opset
            ),
        ));
    }
    Ok(ScatterNd { reduction }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("ScatterND", (11, 21), (3, 3), (1, 1), parse)];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn scatter_nd(
        reduction: ScatterReduction,
        data: (Vec<usize>, Vec<i64>),
        indices: (Vec<usize>, Vec<i64>),
        updates: (Vec<usize>, Vec<i64>),
    ) -> Result<Tensor, OpError> {
        let data = Tensor::from_i64(data.0, data.1).unwrap();
        let indices = Tensor::from_i64(indices.0, indices.1).unwrap();
        let updates = Tensor::from_i64(updates.0, updates.1).unwrap();
        Ok(ScatterNd { reduction }.run(&[Some(&data), Some(&indices), Some(&updates)])?.remove(0))
    }

    #[test]
    fn spec_example_1_elements() {
        let y = scatter_nd(
            ScatterReduction::None,
            (vec![8], (1..=8).collect()),
            (vec![4, 1], vec![4, 3, 1, 7]),
            (vec![4], vec![9, 10, 11, 12]),
        )
        .unwrap();
        assert_eq!((y.shape(), y.to_i64_vec()), (&[8][..], vec![1, 11, 3, 10, 9, 6, 7, 12]));
    }

    fn cube() -> Vec<i64> {
        // The spec's data [4, 4, 4] for example 2.
        let plane = [[1, 2, 3, 4], [5, 6, 7, 8], [8, 7, 6, 5], [4, 3, 2, 1]].concat();
        [
            plane.clone(),
            plane.clone(),
            [[8, 7, 6, 5], [4, 3, 2, 1], [1, 2, 3, 4], [5, 6, 7, 8]].concat(),
            [[8, 7, 6, 5], [4, 3, 2, 1], [1, 2, 3, 4], [5, 6, 7, 8]].concat(),
        ]
        .concat()
    }

    #[test]
    fn spec_example_2_slices() {
        let five = vec![5; 16];
        let six = vec![6; 16];
        let y = scatter_nd(
            ScatterReduction::None,
            (vec![4, 4, 4], cube()),
            (vec![2, 1], vec![0, 2]),
            (vec![2, 4, 4], [five.clone(), six.clone()].concat()),
        )
        .unwrap();
        let mut expected = cube();
        expected[..16].copy_from_slice(&five);
        expected[32..48].copy_from_slice(&six);
        assert_eq!((y.shape(), y.to_i64_vec()), (&[4, 4, 4][..], expected));
        // Negative indices address the same slices.
        let z = scatter_nd(
            ScatterReduction::None,
            (vec![4, 4, 4], cube()),
            (vec![2, 1], vec![-4, -2]),
            (vec![2, 4, 4], [five, six].concat()),
        )
        .unwrap();
        assert_eq!(y, z);
    }

    #[test]
    fn reductions_combine_duplicates_in_order() {
        let run = |r| {
            scatter_nd(
                r,
                (vec![4], vec![1, 2, 3, 4]),
                (vec![3, 1], vec![1, 1, -1]),
                (vec![3], vec![5, -3, 0]),
            )
            .unwrap()
            .to_i64_vec()
        };
        assert_eq!(run(ScatterReduction::None), vec![1, -3, 3, 0]); // last wins
        assert_eq!(run(ScatterReduction::Add), vec![1, 4, 3, 4]);
        assert_eq!(run(ScatterReduction::Mul), vec![1, -30, 3, 0]);
        assert_eq!(run(ScatterReduction::Max), vec![1, 5, 3, 4]);
        assert_eq!(run(ScatterReduction::Min), vec![1, -3, 3, 0]);
        // Floats, k = rank (elements of a matrix).
        let data = Tensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let idx = Tensor::new(vec![2, 2], TensorData::I32(vec![1, 0, -1, 0])).unwrap();
        let upd = Tensor::from_f32(vec![2], vec![0.5, 2.0]).unwrap();
        let y = ScatterNd { reduction: ScatterReduction::Mul }
            .run(&[Some(&data), Some(&idx), Some(&upd)])
            .unwrap()
            .remove(0);
        assert_eq!(y.to_f32_vec(), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn plan_targets_and_sources() {
        // data [2, 3], k = 1: rows; k = 2: elements.
        let p = plan(&[2, 3], &[1, 1], &[-1], &[1, 3]).unwrap();
        assert_eq!(p, ScatterNdPlan { data_len: 6, targets: vec![3, 4, 5] });
        assert_eq!(p.sources(), vec![0, 1, 2, 6, 7, 8]);
        let p = plan(&[2, 3], &[3, 2], &[0, 2, 1, 0, 0, 2], &[3]).unwrap();
        assert_eq!(p.targets, vec![2, 3, 2]);
        assert_eq!(p.sources(), vec![0, 1, 8, 7, 4, 5]);
    }

    #[test]
    fn rotary_interleave() {
        // out[..., 0::2] = a; out[..., 1::2] = b as two scatters with (row, col) tuples.
        let (rows, half) = (2usize, 3usize);
        let tuples = |parity: i64| -> Vec<i64> {
            (0..rows as i64).flat_map(|r| (0..half as i64).flat_map(move |c| [r, 2 * c + parity])).collect()
        };
        let zeros = (vec![rows, 2 * half], vec![0; rows * 2 * half]);
        let a = scatter_nd(
            ScatterReduction::None,
            zeros,
            (vec![rows, half, 2], tuples(0)),
            (vec![rows, half], vec![1, 2, 3, 4, 5, 6]),
        )
        .unwrap();
        let y = scatter_nd(
            ScatterReduction::None,
            (vec![rows, 2 * half], a.to_i64_vec()),
            (vec![rows, half, 2], tuples(1)),
            (vec![rows, half], vec![-1, -2, -3, -4, -5, -6]),
        )
        .unwrap();
        assert_eq!(y.to_i64_vec(), vec![1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6]);
    }

    #[test]
    fn errors_name_the_problem() {
        let err =
            |d: &[usize], s: &[usize], i: &[i64], u: &[usize]| plan(d, s, i, u).unwrap_err().to_string();
        let e = err(&[2, 3], &[1, 2], &[1, 3], &[1]);
        assert!(e.contains("index 3") && e.contains("dim 1") && e.contains("size 3"), "{e}");
        let e = err(&[2, 3], &[1, 1], &[-3], &[1, 3]);
        assert!(e.contains("index -3") && e.contains("dim 0") && e.contains("size 2"), "{e}");
        let e = err(&[2, 3], &[1, 3], &[0, 0, 0], &[1]);
        assert!(e.contains("3 components") && e.contains("1 to 2"), "{e}");
        let e = err(&[2, 3], &[2, 1], &[0, 1], &[2, 2]);
        assert!(e.contains("updates have shape [2, 2]") && e.contains("[2, 3]"), "{e}");
        let e = err(&[2, 3], &[], &[0], &[]);
        assert!(e.contains("rank >= 1"), "{e}");
        // Dtypes: float indices, updates unlike data.
        let data = Tensor::from_f32(vec![2], vec![1.0, 2.0]).unwrap();
        let fidx = Tensor::from_f32(vec![1, 1], vec![0.0]).unwrap();
        let idx = Tensor::from_i64(vec![1, 1], vec![0]).unwrap();
        let iupd = Tensor::from_i64(vec![1], vec![7]).unwrap();
        let fupd = Tensor::from_f32(vec![1], vec![7.0]).unwrap();
        let op = ScatterNd { reduction: ScatterReduction::None };
        assert!(op.run(&[Some(&data), Some(&fidx), Some(&fupd)]).is_err());
        let e = op.run(&[Some(&data), Some(&idx), Some(&iupd)]).unwrap_err().to_string();
        assert!(e.contains("updates") && e.contains("int64") && e.contains("float"), "{e}");
    }

    #[test]
    fn reduction_needs_its_opset() {
        let parse = |red: &str, opset| {
            let attrs =
                BTreeMap::from([("reduction".to_string(), crate::ops::AttrValue::String(red.into()))]);
            crate::ops::parse_node("ScatterND", opset, attrs, 3, 1)
        };
        assert!(parse("none", 11).is_ok());
        assert!(parse("add", 16).is_ok() && parse("max", 18).is_ok());
        let e = parse("add", 13).unwrap_err().to_string();
        assert!(e.contains("reduction") && e.contains("opset 16") && e.contains("opset is 13"), "{e}");
        let e = parse("min", 16).unwrap_err().to_string();
        assert!(e.contains("opset 18") && e.contains("opset is 16"), "{e}");
        let e = parse("avg", 18).unwrap_err().to_string();
        assert!(e.contains("avg") && e.contains("mul"), "{e}");
        assert!(crate::ops::parse_node("ScatterND", 10, BTreeMap::new(), 3, 1).is_err());
    }
}
