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

/// `x` with its dims reordered: output dim `i` is input dim `perm[i]`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor, OpError> {
    let perm = resolve(&Some(perm.iter().map(|&p| p as i64).collect()), x.rank())?;
    let own = strides(x.shape());
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
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
