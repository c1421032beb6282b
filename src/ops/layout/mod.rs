//! Layout ops: they move elements without arithmetic, so one dtype-agnostic mechanism serves
//! them all: a per-dimension table of source offsets, combined into one index per element.

pub mod concat;
pub mod expand;
pub mod gather;
pub mod gather_nd;
pub mod pad;
pub mod reshape;
pub mod resize;
pub mod scatter_nd;
pub mod slice;
pub mod split;
pub mod squeeze;
pub mod tile;
pub mod transpose;

use crate::ops::{OpDef, OpError};
use crate::tensor::{Tensor, TensorData};

pub(crate) const DEFS: &[&[OpDef]] = &[
    concat::DEFS,
    expand::DEFS,
    gather::DEFS,
    gather_nd::DEFS,
    pad::DEFS,
    reshape::DEFS,
    resize::DEFS,
    scatter_nd::DEFS,
    slice::DEFS,
    split::DEFS,
    squeeze::DEFS,
    tile::DEFS,
    transpose::DEFS,
];

/// For every element of `out_shape`, the sum over dims of `tables[d][coord_d]` (a source offset
/// contribution), or `None` when any contribution is `None` (padding).
pub(crate) fn offsets_from_tables(out_shape: &[usize], tables: &[Vec<Option<usize>>]) -> Vec<Option<usize>> {
    let mut offsets: Vec<Option<usize>> = vec![Some(0)];
    for (d, table) in tables.iter().enumerate().take(out_shape.len()) {
        let mut next = Vec::with_capacity(offsets.len() * out_shape[d]);
        for base in &offsets {
            next.extend(table.iter().map(|t| base.zip(*t).map(|(b, t)| b + t)));
        }
        offsets = next;
    }
    if out_shape.contains(&0) {
        offsets.clear();
    }
    offsets
}

/// Builds a tensor from source offsets, `fill` (a one-element tensor) where there is none.
pub(crate) fn take_or_fill(
    src: &Tensor,
    out_shape: Vec<usize>,
    offsets: &[Option<usize>],
    fill: Option<&Tensor>,
) -> Result<Tensor, OpError> {
    let needs_fill = offsets.iter().any(|o| o.is_none());
    let data = if needs_fill {
        let fill = match fill {
            Some(f) => f.cast(src.dtype()),
            None => Tensor::zeros(src.dtype(), vec![1])?,
        };
        let both =
            TensorData::concat(&[src.data(), fill.data()]).ok_or_else(|| OpError::invalid("fill dtype"))?;
        let pad = src.len();
        let idx: Vec<usize> = offsets.iter().map(|o| o.unwrap_or(pad)).collect();
        both.take(&idx)
    } else {
        let idx: Vec<usize> = offsets.iter().map(|o| o.unwrap_or(0)).collect();
        src.data().take(&idx)
    };
    Ok(Tensor::new(out_shape, data)?)
}
