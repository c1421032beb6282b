//! Transpose.

use crate::cpu::strided::{gather, View};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::strides;
use crate::tensor::Tensor;

#[derive(Clone, Debug, PartialEq)]
pub struct Transpose {
    /// `None` reverses the dims.
    pub perm: Option<Vec<i64>>,
}

fn resolve(perm: &Option<Vec<i64>>, rank: usize) -> Result<Vec<usize>, OpError> {
    let perm: Vec<usize> = match perm {
        None => (0..rank).rev().collect(),
        Some(p) => p.iter().map(|&x| x as usize).collect(),
    };
    let mut seen = vec![false; rank];
    for &p in &perm {
        if p >= rank || std::mem::replace(&mut seen[p], true) {
            return Err(OpError::bad_attribute(
                "perm",
                format!("{perm:?} is not a permutation of {rank} dims"),
            ));
        }
    }
    if perm.len() != rank {
        return Err(OpError::bad_attribute("perm", format!("{perm:?} is not a permutation of {rank} dims")));
    }
    Ok(perm)
}

/// Whether `perm` moves only size-1 dims of `shape`: the elements stay in order, so the transpose
/// is a reshape (a head dim of 1 around attention would otherwise cost a copy of the tensor).
pub fn moves_no_data(shape: &[usize], perm: &[usize]) -> bool {
    let moved: Vec<usize> = perm.iter().copied().filter(|&p| shape.get(p) != Some(&1)).collect();
    moved.windows(2).all(|w| w[0] < w[1])
}

/// The permutation that undoes `perm`: permuting by `perm`, then by this, restores the order.
pub fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; perm.len()];
    perm.iter().enumerate().for_each(|(i, &d)| inverse[d] = i);
    inverse
}

/// The permutation of a Transpose of a rank-`rank` input (`None`: the dims reversed).
pub fn resolved_perm(t: &Transpose, rank: usize) -> Result<Vec<usize>, OpError> {
    resolve(&t.perm, rank)
}

/// `x` with its dims reordered: output dim `i` is input dim `perm[i]`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor, OpError> {
    let perm = resolve(&Some(perm.iter().map(|&p| p as i64).collect()), x.rank())?;
    let own = strides(x.shape());
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    if moves_no_data(x.shape(), &perm) {
        return Ok(x.clone().reshaped(out_shape)?);
    }
    // Walk the output in order, reading the input through permuted strides.
    let view = View {
        shape: out_shape.clone(),
        strides: perm.iter().map(|&p| own[p] as isize).collect(),
        offset: 0,
    };
    Ok(Tensor::new(out_shape, crate::map_data!(x.data(), v => gather(v, &view)))?)
}

impl OpSpec for Transpose {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "data")?;
        let perm = resolve(&self.perm, x.shape().len())?;
        Ok(vec![TensorType::new(x.dtype(), perm.iter().map(|&p| x.shape()[p]).collect())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "data")?;
        Ok(vec![permute(x, &resolve(&self.perm, x.rank())?)?])
    }
}

fn parse(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    Ok(Transpose { perm: attrs.ints("perm")? }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Transpose", (1, 21), (1, 1), (1, 1), parse)];

#[cfg(test)]
mod tests {
    use super::*;

    /// Output element at multi-index `o` is input element at `o` permuted back.
    fn reference(shape: &[usize], data: &[f32], perm: &[usize]) -> Vec<f32> {
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let (own, out_len) = (strides(shape), out_shape.iter().product::<usize>());
        (0..out_len)
            .map(|mut flat| {
                let mut src = 0;
                for d in (0..out_shape.len()).rev() {
                    src += (flat % out_shape[d]) * own[perm[d]];
                    flat /= out_shape[d];
                }
                data[src]
            })
            .collect()
    }

    #[test]
    fn permutes_like_the_definition_with_and_without_unit_dims() {
        let cases: &[(&[usize], &[usize])] = &[
            // Only size-1 dims move: shared data.
            (&[5, 3, 1, 4], &[0, 2, 1, 3]),
            (&[1, 6, 1, 7], &[2, 1, 3, 0]),
            // Real transposes, some with unit dims among them.
            (&[5, 3, 1, 4], &[0, 2, 3, 1]),
            (&[2, 3, 4], &[2, 0, 1]),
            (&[4, 1, 6, 32], &[0, 2, 1, 3]),
            (&[3, 17, 1, 16], &[3, 2, 0, 1]),
        ];
        for &(shape, perm) in cases {
            let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32).collect();
            let x = Tensor::from_f32(shape.to_vec(), data.clone()).unwrap();
            let y = permute(&x, perm).unwrap();
            let want_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
            assert_eq!(y.shape(), &want_shape[..], "{shape:?} {perm:?}");
            assert_eq!(y.f32s().to_vec(), reference(shape, &data, perm), "{shape:?} {perm:?}");
        }
    }
}
