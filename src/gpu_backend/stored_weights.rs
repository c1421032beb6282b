//! Weights the GPU kernels read in the format the model stores them: int8 with a scale per output
//! channel, or f16, dequantised inside the MatMul / Gemm / Conv / ConvTranspose kernels and the
//! fused products (FusedMatMulAdd, a product with its activation or a residual fused), with f32
//! arithmetic.
//! The f32 copy such a weight would otherwise have is never made on the device.
//!
//! A weight qualifies when every node that reads it takes it in its weight slot, along the
//! scale's axis, and the graph does not output it; otherwise it stays on the f32 path (the
//! lowering dequantizes it once at build).

use std::collections::HashMap;

use half::f16;

use crate::graph::{Graph, Node, ValueId};
use crate::ops::fused::Fused;
use crate::ops::Op;
use crate::tensor::shape::normalize_axis;
use crate::tensor::{DType, Tensor, TensorData};

/// How one weight (a graph value read by weight slots only) is held on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredWeight {
    /// `DequantizeLinear(values, scale)` of an int8 constant with an f32 scale constant and no
    /// (or an all-zero) zero point: the int8 values and one scale per index of `axis` (`None`:
    /// one scale for the whole tensor).
    Int8 { values: ValueId, scale: ValueId, axis: Option<usize> },
    /// f16 values: a `Cast` to f32 of an f16 constant, or an f32 constant that f16 holds exactly
    /// (what a folded Cast of f16 weights leaves).
    F16 { values: ValueId },
}

impl StoredWeight {
    /// The scale of each output channel along `axis` of a weight of `shape` (int8 only).
    pub fn channel_scales(&self, graph: &Graph, shape: &[usize], axis: usize) -> Option<Vec<f32>> {
        let StoredWeight::Int8 { scale, axis: along, .. } = *self else { return None };
        let scales = graph.values[scale].constant.as_ref()?.to_f32_vec();
        match along {
            None => Some(vec![scales[0]; shape[axis]]),
            Some(a) if a == axis => Some(scales),
            Some(_) => None,
        }
    }
}

/// The weights of `graph` that the GPU keeps in their stored format, by value.
pub fn stored_weights(graph: &Graph) -> HashMap<ValueId, StoredWeight> {
    let mut readers: Vec<Vec<&Node>> = vec![Vec::new(); graph.values.len()];
    for node in &graph.nodes {
        for &v in node.inputs.iter().flatten() {
            if readers[v].last().is_none_or(|last| !std::ptr::eq(*last, node)) {
                readers[v].push(node);
            }
        }
    }
    let produced = graph.nodes.iter().filter_map(|n| Some((n.outputs.first().copied().flatten()?, n)));
    let from_nodes = produced.filter_map(|(v, n)| Some((v, stored_form(graph, n)?)));
    // A constant's readers are checked before its values are scanned.
    let from_constants = (0..graph.values.len())
        .filter(|&v| graph.values[v].constant.as_ref().is_some_and(|t| t.dtype() == DType::F32))
        .map(|v| (v, StoredWeight::F16 { values: v }))
        .filter(|(v, w)| readers_take(graph, *v, w, &readers[*v]))
        .filter(|(v, _)| f16_exact(&graph.values[*v].constant.as_ref().expect("filtered above").f32s()));
    from_nodes
        .filter(|(v, w)| readers_take(graph, *v, w, &readers[*v]))
        .chain(from_constants)
        .filter(|(v, _)| !graph.outputs.contains(v))
        .collect()
}

/// Whether every reader takes `v` as its weight, along the weight's scale axis.
fn readers_take(graph: &Graph, v: ValueId, w: &StoredWeight, readers: &[&Node]) -> bool {
    let rank = graph.values[v].ty.as_ref().map_or(0, |t| t.shape.len());
    !readers.is_empty()
        && readers.iter().all(|n| match (weight_channel_axis(n, v, rank), w) {
            (None, _) => false,
            (Some(_), StoredWeight::F16 { .. } | StoredWeight::Int8 { axis: None, .. }) => true,
            (Some(axis), StoredWeight::Int8 { axis: Some(along), .. }) => axis == *along,
        })
}

/// The output-channel axis of `v` when `node` reads it as its weight and nowhere else; `None`
/// when the node cannot take a stored weight there.
pub fn weight_channel_axis(node: &Node, v: ValueId, rank: usize) -> Option<usize> {
    let weight_only = node.inputs.iter().enumerate().all(|(i, &input)| (input == Some(v)) == (i == 1));
    if !weight_only {
        return None;
    }
    op_weight_axis(node.op.as_ref()?, rank)
}

/// The output-channel axis of a rank-`rank` weight in `op`'s weight slot (input 1).
fn op_weight_axis(op: &Op, rank: usize) -> Option<usize> {
    match op {
        Op::MatMul(_) | Op::Fused(Fused::MatMulAdd) if rank >= 2 => Some(rank - 1),
        Op::Gemm(g) if rank == 2 => Some(if g.trans_b { 0 } else { 1 }),
        Op::Conv(_) if rank >= 3 => Some(0),
        Op::ConvTranspose(_) if rank >= 3 => Some(1),
        // A product with its activation fused takes the product's inputs.
        Op::Fused(Fused::Activated { base, .. }) => match base.as_ref() {
            Op::MatMul(_)
            | Op::Gemm(_)
            | Op::Fused(Fused::MatMulAdd)
            | Op::Conv(_)
            | Op::ConvTranspose(_) => op_weight_axis(base, rank),
            _ => None,
        },
        // A residual changes nothing about the product's inputs (it comes last).
        Op::Fused(Fused::Residual { base }) => op_weight_axis(base, rank),
        _ => None,
    }
}

/// The stored form of a node's output when the node dequantizes or casts a constant weight.
fn stored_form(graph: &Graph, node: &Node) -> Option<StoredWeight> {
    let constant = |i: usize| {
        let v = node.inputs.get(i).copied().flatten()?;
        Some((v, graph.values[v].constant.as_ref()?))
    };
    let out = node.outputs.first().copied().flatten()?;
    let out_dtype = graph.values[out].ty.as_ref()?.dtype;
    match node.op.as_ref()? {
        Op::DequantizeLinear(d) if out_dtype == DType::F32 => {
            let (values, x) = constant(0)?;
            let (scale, s) = constant(1)?;
            let zero_point_is_zero = match node.inputs.get(2).copied().flatten() {
                None => true,
                Some(_) => constant(2)?.1.to_i64_vec().iter().all(|&z| z == 0),
            };
            if x.dtype() != DType::I8 || s.dtype() != DType::F32 || !zero_point_is_zero {
                return None;
            }
            let axis = match (s.rank(), s.len()) {
                (0 | 1, 1) => None,
                (1, n) if normalize_axis(d.axis, x.rank()).is_ok_and(|a| x.shape()[a] == n) => {
                    normalize_axis(d.axis, x.rank()).ok()
                }
                _ => return None, // blocked quantization
            };
            Some(StoredWeight::Int8 { values, scale, axis })
        }
        Op::Cast(c) if c.to == Some(DType::F32) && node.inputs.len() == 1 => {
            let (values, x) = constant(0)?;
            (x.dtype() == DType::F16).then_some(StoredWeight::F16 { values })
        }
        _ => None,
    }
}

/// Whether f16 holds every one of `values` exactly (and there is at least one).
fn f16_exact(values: &[f32]) -> bool {
    !values.is_empty() && values.iter().all(|&x| f16::from_f32(x).to_f32().to_bits() == x.to_bits())
}

/// The f16 values of a stored f16 weight's source (f16 data, or f32 data f16 holds exactly).
pub fn f16_values(t: &Tensor) -> Vec<f16> {
    match t.data() {
        TensorData::F16(v) => v.clone(),
        _ => t.to_f32_vec().into_iter().map(f16::from_f32).collect(),
    }
}
