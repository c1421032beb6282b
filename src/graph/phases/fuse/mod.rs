//! Phase 4: pattern rewrites into [`Fused`] ops. A pass rewrites the last node of a match in
//! place (its inputs become the pattern's inputs, its op the fused one); the nodes before it lose
//! their readers and the prune phase that follows removes them. A match needs every intermediate
//! value to have exactly one reader and not be a graph output, so nothing is computed twice.
//! `FIFO_NO_FUSION=1` (or `BuildOptions::fuse = false`) skips the passes.
//!
//! - [`NeutralElementPass`]: `x * 1`, `x / 1`, `x - (+0)` (diffusers' unit output scale factors,
//!   where an export keeps them) are removed, first, so they hide no pattern from the others.
//! - [`AttentionPass`]: MatMul(Q, Kt) [* or / scalar] -> Softmax(last axis) -> MatMul(., V), or
//!   the same with attention Einsums ("bhid,bhjd->bhij", "bhij,bhjd->bhid") for the MatMuls.
//! - [`AttentionLayoutPass`]: Transposes into a fused attention's Q, Kt, V and out of its output
//!   (torch's head split and merge, K transposed) become permutations the attention reads and
//!   writes through (after the attention pass).
//! - [`AttentionSourcePass`]: an attention input that is a Reshape of one output of a Split (Q, K
//!   and V from one fused projection) becomes that part of the Split's input, read in place by
//!   the GPU (after the layout pass).
//! - [`TorchGroupNormPass`]: torch's GroupNorm export, Reshape -> InstanceNormalization (unit
//!   scale, zero bias) -> Reshape -> Mul(gamma) -> Add(beta), becomes GroupNormalization.
//! - [`NormSiluPass`]: Group/InstanceNormalization -> Sigmoid and Mul (SiLU) becomes the norm with
//!   the activation fused.
//! - [`SiluPass`]: Sigmoid(x) read only by Mul(x, sigmoid) becomes one SiLU (after the norm+silu
//!   pass, which takes the ones behind a norm).
//! - [`NormModulationPass`]: Group/Instance/LayerNormalization -> Mul(scale) -> Add(shift) [->
//!   activation] (FiLM, adaLN) becomes the norm with the modulation and activation fused (after
//!   the silu pass, which makes the activation).
//! - [`TanhGeluPass`]: torch's decomposed `gelu(approximate="tanh")`, eight or nine elementwise
//!   nodes over the feed-forward hidden (Wan, Latte), becomes one Gelu.
//! - [`ErfGeluPass`]: torch's decomposed exact `gelu` below opset 20, five elementwise nodes
//!   (zeroscope's GEGLU), becomes one Gelu.
//! - [`MatMulAddPass`]: MatMul -> Add of a bias (or of a tensor of the product's shape) becomes
//!   one product accumulated onto the addend (the CPU backend adds onto each block of the
//!   product, the GPU one in the matmul kernel's epilogue).
//! - [`ProductActivationPass`]: MatMul, FusedMatMulAdd, Gemm, Conv or ConvTranspose read only by
//!   an activation (Relu, LeakyRelu, Silu, Gelu, Sigmoid, Tanh) becomes the product with the
//!   activation fused (after the silu, gelu and matmul+add passes, which make the
//!   activations and the products).
//! - [`ResidualPass`]: MatMul, FusedMatMulAdd or Conv (maybe with its activation fused) read only
//!   by an Add of a tensor of its own shape becomes the product with the residual added in its
//!   epilogue (after product+activation).
//!
//! Both backends run every pass (`default_passes`). The GPU runs each fused form as one kernel;
//! the CPU backend runs matmul+add, product+activation, product+residual and silu with the
//! unfused ops' arithmetic (the same bits), the gelus within rounding of it (the ONNX Gelu
//! formula: x^3 or 1/sqrt(2) rounded otherwise than the decomposition's Pow or Div), and
//! attention with its streaming kernel.

mod attention;
mod gelu;
mod neutral;
mod norm;
mod product;

pub use attention::{AttentionLayoutPass, AttentionPass, AttentionSourcePass};
pub use gelu::{ErfGeluPass, TanhGeluPass};
pub use neutral::NeutralElementPass;
pub use norm::{NormModulationPass, NormSiluPass, SiluPass, TorchGroupNormPass};
pub use product::{MatMulAddPass, ProductActivationPass, ResidualPass};

use crate::graph::{BuildError, Graph, ValueId};
use crate::ops::elementwise::binary::BinaryKind;
use crate::ops::Op;

/// One rewrite over the whole graph.
pub trait FusionPass {
    fn name(&self) -> &'static str;
    /// Rewrites the graph in place and returns how many matches it replaced.
    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError>;
}

pub fn default_passes() -> Vec<Box<dyn FusionPass>> {
    vec![
        Box::new(NeutralElementPass),
        Box::new(TorchGroupNormPass),
        Box::new(NormSiluPass),
        Box::new(SiluPass),
        Box::new(NormModulationPass),
        Box::new(AttentionPass),
        Box::new(AttentionLayoutPass),
        Box::new(AttentionSourcePass),
        Box::new(TanhGeluPass),
        Box::new(ErfGeluPass),
        Box::new(MatMulAddPass),
        Box::new(ProductActivationPass),
        Box::new(ResidualPass),
    ]
}

/// Runs every pass once; reports those that changed something.
pub fn fuse(
    graph: &mut Graph,
    passes: &[Box<dyn FusionPass>],
) -> Result<Vec<(&'static str, usize)>, BuildError> {
    let mut applied = Vec::new();
    for pass in passes {
        let n = pass.apply(graph)?;
        if n > 0 {
            applied.push((pass.name(), n));
        }
    }
    Ok(applied)
}

/// Readers of each value (node indices) and whether it is a graph output.
struct Uses {
    readers: Vec<Vec<usize>>,
    is_output: Vec<bool>,
}

impl Uses {
    /// Readers among the nodes that still reach an output: an earlier pass's rewrite leaves the
    /// nodes it replaced reading their inputs until the prune phase, and those readers are gone
    /// by then (the Sigmoid the silu pass replaced does not keep its input from a later match).
    fn of(graph: &Graph) -> Uses {
        let mut needed = vec![false; graph.values.len()];
        for &o in &graph.outputs {
            needed[o] = true;
        }
        let mut live = vec![false; graph.nodes.len()];
        for (i, n) in graph.nodes.iter().enumerate().rev() {
            if n.outputs.iter().flatten().any(|&v| needed[v]) {
                live[i] = true;
                n.inputs.iter().flatten().for_each(|&v| needed[v] = true);
            }
        }
        let mut readers = vec![Vec::new(); graph.values.len()];
        for (i, n) in graph.nodes.iter().enumerate().filter(|&(i, _)| live[i]) {
            for &v in n.inputs.iter().flatten() {
                if !readers[v].contains(&i) {
                    readers[v].push(i);
                }
            }
        }
        let mut is_output = vec![false; graph.values.len()];
        for &o in &graph.outputs {
            is_output[o] = true;
        }
        Uses { readers, is_output }
    }
    /// The one node reading `v`, when `v` is an intermediate read by exactly one node.
    fn only_reader(&self, v: ValueId) -> Option<usize> {
        match self.readers[v].as_slice() {
            [r] if !self.is_output[v] => Some(*r),
            _ => None,
        }
    }
}

/// Producer node of each value.
fn producers(graph: &Graph) -> Vec<Option<usize>> {
    let mut p = vec![None; graph.values.len()];
    for (i, n) in graph.nodes.iter().enumerate() {
        for &v in n.outputs.iter().flatten() {
            p[v] = Some(i);
        }
    }
    p
}

fn input(graph: &Graph, node: usize, i: usize) -> Option<ValueId> {
    graph.nodes[node].inputs.get(i).copied().flatten()
}
fn output(graph: &Graph, node: usize) -> Option<ValueId> {
    graph.nodes[node].outputs.first().copied().flatten()
}
fn rank(graph: &Graph, v: ValueId) -> usize {
    graph.values[v].ty.as_ref().map_or(0, |t| t.shape.len())
}
fn scalar_constant(graph: &Graph, v: ValueId) -> Option<f32> {
    let c = graph.values[v].constant.as_ref()?;
    (c.len() == 1 && c.dtype().is_float()).then(|| c.to_f32_vec()[0])
}
fn set_fused(graph: &mut Graph, node: usize, op_type: &str, inputs: Vec<Option<ValueId>>, op: Op) {
    let n = &mut graph.nodes[node];
    n.inputs = inputs;
    n.op = Some(op);
    n.op_type = op_type.to_string();
    n.domain = "fifo.fused".to_string();
    n.attributes.clear();
}

/// `(other input, constant)` when `node` is a `kind` binary op with one scalar-constant operand
/// (on either side for Mul and Add; only as the second operand of the others).
fn with_constant(graph: &Graph, node: usize, kind: BinaryKind) -> Option<(ValueId, f32)> {
    let Some(Op::Binary(b)) = &graph.nodes[node].op else { return None };
    if b.kind != kind {
        return None;
    }
    let (a, c) = (input(graph, node, 0)?, input(graph, node, 1)?);
    match (scalar_constant(graph, a), scalar_constant(graph, c)) {
        (None, Some(k)) => Some((a, k)),
        (Some(k), None) if kind == BinaryKind::Mul || kind == BinaryKind::Add => Some((c, k)),
        _ => None,
    }
}

/// `(x, factor)` when `node` is `x * k`, `k * x` or `x / k` for a constant scalar `k` (the
/// factor is `1 / k` for a division).
fn scaled_operand(graph: &Graph, node: usize) -> Option<(ValueId, f32)> {
    if let Some(scaled) = with_constant(graph, node, BinaryKind::Mul) {
        return Some(scaled);
    }
    let (x, k) = with_constant(graph, node, BinaryKind::Div)?;
    Some((x, 1.0 / k))
}

/// The operands of a two-input `kind` node, `[a, b]` as written.
fn operands(graph: &Graph, node: usize, kind: BinaryKind) -> Option<[ValueId; 2]> {
    let Some(Op::Binary(b)) = &graph.nodes[node].op else { return None };
    (b.kind == kind).then_some([input(graph, node, 0)?, input(graph, node, 1)?])
}
