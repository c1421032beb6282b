//! Pad (opset 11+): pads as an input (negative values crop), optional constant value and
//! axes (18+); modes constant, reflect, edge and wrap (19+).

use super::{offsets_from_tables, take_or_fill};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{const_i64s, opt_i64s, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::{normalize_axes, strides};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    pub mode: PadMode,
}

/// Per dim `(begin, end)` padding from the pads and axes inputs.
pub(crate) fn per_dim(rank: usize, pads: &[i64], axes: Option<Vec<i64>>) -> Result<Vec<(i64, i64)>, OpError> {
    let axes = match axes {
        Some(a) => normalize_axes(&a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(OpError::invalid(format!(
            "Pad needs {} pads for {} axes, got {}",
            2 * axes.len(),
            axes.len(),
            pads.len()
        )));
    }
    let mut out = vec![(0, 0); rank];
    for (i, &a) in axes.iter().enumerate() {
        out[a] = (pads[i], pads[i + axes.len()]);
    }
    Ok(out)
}

fn output_shape(shape: &[usize], pads: &[(i64, i64)]) -> Result<Vec<usize>, OpError> {
    shape
        .iter()
        .zip(pads)
        .map(|(&d, &(b, e))| {
            let n = d as i64 + b + e;
            if n < 0 {
                Err(OpError::invalid(format!("Pad crops more than dim {d} holds")))
            } else {
                Ok(n as usize)
            }
        })
        .collect()
}

impl PadMode {
    /// Source index for padded coordinate `i - begin` in a dim of length `d`, or `None` to fill.
    fn source(self, pos: i64, d: i64) -> Option<usize> {
        if (0..d).contains(&pos) {
            return Some(pos as usize);
        }
        match self {
            PadMode::Constant => None,
            PadMode::Edge => Some(pos.clamp(0, d - 1) as usize),
            PadMode::Wrap => Some(pos.rem_euclid(d) as usize),
            PadMode::Reflect if d == 1 => Some(0),
            PadMode::Reflect => {
                let period = 2 * (d - 1);
                let m = pos.rem_euclid(period);
                Some(if m < d { m } else { period - m } as usize)
            }
        }
    }
}

impl OpSpec for Pad {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "data")?;
        let pads = const_i64s(inputs, 1, "pads")?.ok_or(OpError::MissingInput { index: 1, name: "pads" })?;
        let pads = per_dim(x.shape().len(), &pads, const_i64s(inputs, 3, "axes")?)?;
        let shape = output_shape(x.shape(), &pads)?;
        if self.mode != PadMode::Constant && x.shape().iter().zip(&shape).any(|(&d, &n)| d == 0 && n > 0) {
            return Err(OpError::invalid("Pad in reflect, edge or wrap mode needs non-empty dims"));
        }
        Ok(vec![TensorType::new(x.dtype(), shape)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "data")?;
        let pads = opt_i64s(inputs, 1).ok_or(OpError::MissingInput { index: 1, name: "pads" })?;
        let pads = per_dim(x.rank(), &pads, opt_i64s(inputs, 3))?;
        let out_shape = output_shape(x.shape(), &pads)?;
        let own = strides(x.shape());
        let tables: Vec<Vec<Option<usize>>> = (0..x.rank())
            .map(|d| {
                let len = x.shape()[d] as i64;
                (0..out_shape[d] as i64)
                    .map(|i| self.mode.source(i - pads[d].0, len).map(|s| s * own[d]))
                    .collect()
            })
            .collect();
        let fill = inputs.get(2).copied().flatten();
        Ok(vec![take_or_fill(x, out_shape.clone(), &offsets_from_tables(&out_shape, &tables), fill)?])
    }
}

fn parse(attrs: &mut Attrs, node: &NodeContext) -> Result<Op, OpError> {
    let accepted: &[&str] = if node.opset >= 19 {
        &["constant", "reflect", "edge", "wrap"]
    } else {
        &["constant", "reflect", "edge"]
    };
    let mode = match attrs.choice("mode", "constant", accepted)? {
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        _ => PadMode::Constant,
    };
    Ok(Pad { mode }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Pad", (11, 21), (2, 4), (1, 1), parse)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let idx: Vec<_> = (-3..6).map(|p| PadMode::Reflect.source(p, 3).unwrap()).collect();
        assert_eq!(idx, vec![1, 2, 1, 0, 1, 2, 1, 0, 1]);
    }
}
