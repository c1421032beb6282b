//! Phase 4: pattern rewrites into [`Fused`] ops. A pass rewrites the last node of a match in
//! place (its inputs become the pattern's inputs, its op the fused one); the nodes before it lose
//! their readers and the prune phase that follows removes them. A match needs every intermediate
//! value to have exactly one reader and not be a graph output, so nothing is computed twice.
//! `FIFO_NO_FUSION=1` (or `BuildOptions::fuse = false`) skips the passes.
//!
//! - [`AttentionPass`]: MatMul(Q, Kt) [* or / scalar] -> Softmax(last axis) -> MatMul(., V), or
//!   the same with attention Einsums ("bhid,bhjd->bhij", "bhij,bhjd->bhid") for the MatMuls.
//! - [`AttentionLayoutPass`]: Transposes into a fused attention's Q, Kt, V and out of its output
//!   (torch's head split and merge, K transposed) become permutations the attention reads and
//!   writes through (after the attention pass).
//! - [`TorchGroupNormPass`]: torch's GroupNorm export, Reshape -> InstanceNormalization (unit
//!   scale, zero bias) -> Reshape -> Mul(gamma) -> Add(beta), becomes GroupNormalization.
//! - [`NormSiluPass`]: Group/InstanceNormalization -> Sigmoid and Mul (SiLU) becomes the norm with
//!   the activation fused.
//! - [`SiluPass`]: Sigmoid(x) read only by Mul(x, sigmoid) becomes one SiLU (after the norm+silu
//!   pass, which takes the ones behind a norm).
//! - [`TanhGeluPass`]: torch's decomposed `gelu(approximate="tanh")`, eight elementwise nodes over
//!   the feed-forward hidden (Wan, Latte), becomes one Gelu.
//! - [`MatMulAddPass`]: MatMul -> Add of a bias (or of a tensor of the product's shape) becomes
//!   one product accumulated onto the addend (the CPU backend adds onto each block of the
//!   product, the GPU one in the matmul kernel's epilogue).
//! - [`ProductActivationPass`]: MatMul, FusedMatMulAdd, Gemm, Conv or ConvTranspose read only by
//!   an activation (Relu, LeakyRelu, Silu, Gelu, Sigmoid, Tanh) becomes the product with the
//!   activation fused (after the silu, tanh-gelu and matmul+add passes, which make the
//!   activations and the products).
//!
//! Both backends run every pass (`default_passes`). The GPU runs each fused form as one kernel;
//! the CPU backend runs matmul+add, product+activation, silu and tanh-gelu with the unfused ops'
//! arithmetic (the same bits) and attention with its streaming kernel.

use crate::gpu::Activation;
use crate::graph::{BuildError, Graph, ValueId, ValueKind};
use crate::ops::elementwise::binary::BinaryKind;
use crate::ops::elementwise::unary::{Unary, UnaryKind};
use crate::ops::fused::{attention_streams, repeats_over, AttentionLayout, Fused};
use crate::ops::layout::transpose;
use crate::ops::linalg::einsum::Einsum;
use crate::ops::norm::group_norm::GroupNorm;
use crate::ops::{Op, TensorType};
use crate::tensor::{DType, Tensor};
use std::sync::Arc;

/// One rewrite over the whole graph.
pub trait FusionPass {
    fn name(&self) -> &'static str;
    /// Rewrites the graph in place and returns how many matches it replaced.
    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError>;
}

pub fn default_passes() -> Vec<Box<dyn FusionPass>> {
    vec![
        Box::new(TorchGroupNormPass),
        Box::new(NormSiluPass),
        Box::new(SiluPass),
        Box::new(AttentionPass),
        Box::new(AttentionLayoutPass),
        Box::new(TanhGeluPass),
        Box::new(MatMulAddPass),
        Box::new(ProductActivationPass),
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

/// A node that multiplies matrices batch by batch: a MatMul, or a two-operand Einsum with one
/// free index per operand, one summed index and batch indices in both operands (torch's
/// "bhid,bhjd->bhij" and "bhij,bhjd->bhid"), whose operands and result are permutations of a
/// MatMul's. The result is `permute(a @ b)` with `a`, `b` permuted first (`None`: as stored).
struct Product {
    a: ValueId,
    b: ValueId,
    a_perm: Option<Vec<usize>>,
    b_perm: Option<Vec<usize>>,
    out_perm: Option<Vec<usize>>,
}

fn product_of(graph: &Graph, node: usize) -> Option<Product> {
    let (a, b) = (input(graph, node, 0)?, input(graph, node, 1)?);
    match graph.nodes[node].op.as_ref()? {
        Op::MatMul(_) => Some(Product { a, b, a_perm: None, b_perm: None, out_perm: None }),
        Op::Einsum(e) => {
            let [a_perm, b_perm, out_perm] = einsum_as_matmul(e)?;
            Some(Product { a, b, a_perm, b_perm, out_perm })
        }
        _ => None,
    }
}

/// The permutations of A, B and the product that turn `e` into a batched MatMul (`None` where
/// one is the identity), if `e` is one.
fn einsum_as_matmul(e: &Einsum) -> Option<[Option<Vec<usize>>; 3]> {
    let [la, lb] = e.operands.as_slice() else { return None };
    let out = &e.output;
    let only = |v: Vec<char>| -> Option<char> { (v.len() == 1).then(|| v[0]) };
    let i = only(la.iter().filter(|c| !lb.contains(c)).copied().collect())?;
    let j = only(lb.iter().filter(|c| !la.contains(c)).copied().collect())?;
    let k = only(la.iter().filter(|c| lb.contains(c) && !out.contains(c)).copied().collect())?;
    let batch: Vec<char> = out.iter().filter(|c| la.contains(c) && lb.contains(c)).copied().collect();
    let r = batch.len() + 2;
    if la.len() != r || lb.len() != r || out.len() != r || !out.contains(&i) || !out.contains(&j) {
        return None;
    }
    let perm = |labels: &[char], order: &[char]| -> Option<Option<Vec<usize>>> {
        let p: Vec<usize> =
            order.iter().map(|c| labels.iter().position(|l| l == c)).collect::<Option<_>>()?;
        Some((!p.iter().enumerate().all(|(d, &s)| d == s)).then_some(p))
    };
    let with = |tail: [char; 2]| [batch.clone(), tail.to_vec()].concat();
    Some([perm(la, &with([i, k]))?, perm(lb, &with([k, j]))?, perm(&with([i, j]), out)?])
}

/// `softmax(scale * Q @ Kt) @ V` becomes one `FusedAttention`: both products MatMuls or
/// attention Einsums, the optional scale a Mul or Div by a constant scalar, the softmax over the
/// last axis. An Einsum's operand and result permutations become the attention's layout (only
/// where the GPU streams the attention through views; the others stay unfused).
pub struct AttentionPass;

impl FusionPass for AttentionPass {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        let prod = producers(graph);
        let shape = |graph: &Graph, v: ValueId| graph.values[v].ty.as_ref().map(|t| t.shape.clone());
        for s in 0..graph.nodes.len() {
            let Some(Op::Softmax(sm)) = &graph.nodes[s].op else { continue };
            if sm.log {
                continue;
            }
            let (Some(t), Some(p)) = (input(graph, s, 0), output(graph, s)) else { continue };
            let r = rank(graph, t);
            let last = if sm.axis < 0 { sm.axis + r as i64 } else { sm.axis };
            if r < 2 || last != r as i64 - 1 {
                continue;
            }
            // The softmax feeds only the left side of the second product, read as stored.
            let Some(f) = uses.only_reader(p) else { continue };
            let Some(pv) = product_of(graph, f).filter(|pv| pv.a == p && pv.a_perm.is_none()) else {
                continue;
            };
            if uses.only_reader(t) != Some(s) {
                continue;
            }
            // Optional scaling by a constant scalar between the first product and the softmax.
            let Some(tn) = prod[t] else { continue };
            let (mm, scale) = match &graph.nodes[tn].op {
                Some(Op::Binary(b)) if matches!(b.kind, BinaryKind::Mul | BinaryKind::Div) => {
                    let (a, c) = (input(graph, tn, 0), input(graph, tn, 1));
                    let (Some(a), Some(c)) = (a, c) else { continue };
                    let (scores, k) = match (scalar_constant(graph, a), scalar_constant(graph, c)) {
                        (_, Some(k)) => (a, k),
                        (Some(k), None) if b.kind == BinaryKind::Mul => (c, k),
                        _ => continue,
                    };
                    let k = if b.kind == BinaryKind::Div { 1.0 / k } else { k };
                    let Some(m) = prod[scores] else { continue };
                    // The scale must not broadcast the scores to a larger shape.
                    if uses.only_reader(scores) != Some(tn) || rank(graph, scores) != r {
                        continue;
                    }
                    (m, k)
                }
                _ => (tn, 1.0),
            };
            // The scores come out in order: the softmax's last axis is the keys'.
            let Some(qk) = product_of(graph, mm).filter(|qk| qk.out_perm.is_none()) else { continue };
            let (q, kt, v) = (qk.a, qk.b, pv.b);
            if rank(graph, q) < 2 || rank(graph, kt) < 2 || rank(graph, v) < 2 {
                continue;
            }
            let layout = AttentionLayout { inputs: [qk.a_perm, qk.b_perm, pv.b_perm], output: pv.out_perm };
            if layout != AttentionLayout::default() {
                let (Some(qs), Some(ks), Some(vs), Some(out)) = (
                    shape(graph, q),
                    shape(graph, kt),
                    shape(graph, v),
                    output(graph, f).and_then(|y| shape(graph, y)),
                ) else {
                    continue;
                };
                let [qs, ks, vs] = layout.operand_shapes([&qs, &ks, &vs]);
                if !attention_streams(&qs, &ks, &vs, &layout.attention_shape(&out)) {
                    continue;
                }
            }
            let op = Op::Fused(Fused::Attention { scale, layout });
            set_fused(graph, f, "FusedAttention", vec![Some(q), Some(kt), Some(v)], op);
            count += 1;
        }
        Ok(count)
    }
}

pub struct AttentionLayoutPass;

impl FusionPass for AttentionLayoutPass {
    fn name(&self) -> &'static str {
        "attention layout"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        let prod = producers(graph);
        let shape = |graph: &Graph, v: ValueId| graph.values[v].ty.as_ref().map(|t| t.shape.clone());
        for f in 0..graph.nodes.len() {
            let Some(Op::Fused(Fused::Attention { scale, layout })) = &graph.nodes[f].op else { continue };
            let (scale, mut layout) = (*scale, layout.clone());
            let mut inputs = graph.nodes[f].inputs.clone();
            let Some(y) = output(graph, f) else { continue };
            let mut folded = 0;
            for (i, (slot, perm_slot)) in inputs.iter_mut().zip(layout.inputs.iter_mut()).enumerate() {
                let Some(x) = input(graph, f, i) else { continue };
                let Some(t) = prod[x].filter(|_| perm_slot.is_none()) else { continue };
                let Some(Op::Transpose(tr)) = &graph.nodes[t].op else { continue };
                let Some(src) = input(graph, t, 0) else { continue };
                let Ok(perm) = transpose::resolved_perm(tr, rank(graph, src)) else { continue };
                if uses.only_reader(x) == Some(f) {
                    *slot = Some(src);
                    *perm_slot = Some(perm);
                    folded += 1;
                }
            }
            // The output read only by a Transpose: that node becomes the attention.
            let mut node = f;
            if let Some(t) = uses.only_reader(y).filter(|_| layout.output.is_none()) {
                if let Some(Op::Transpose(tr)) = &graph.nodes[t].op {
                    if let Ok(perm) = transpose::resolved_perm(tr, rank(graph, y)) {
                        layout.output = Some(perm);
                        node = t;
                        folded += 1;
                    }
                }
            }
            if folded == 0 {
                continue;
            }
            // Only where the GPU streams the attention through views (the others would need the
            // copies back): operands of one rank 3 or 4, Q not broadcast, heads up to 256.
            let (Some(q), Some(kt), Some(v), Some(out)) = (
                inputs[0].and_then(|x| shape(graph, x)),
                inputs[1].and_then(|x| shape(graph, x)),
                inputs[2].and_then(|x| shape(graph, x)),
                shape(graph, y),
            ) else {
                continue;
            };
            let [q, kt, v] = layout.operand_shapes([&q, &kt, &v]);
            if !attention_streams(&q, &kt, &v, &out) {
                continue;
            }
            set_fused(graph, node, "FusedAttention", inputs, Op::Fused(Fused::Attention { scale, layout }));
            count += folded;
        }
        Ok(count)
    }
}

/// `(other input, constant)` when `node` is a `kind` binary op with one scalar-constant operand.
fn with_constant(graph: &Graph, node: usize, kind: BinaryKind) -> Option<(ValueId, f32)> {
    let Some(Op::Binary(b)) = &graph.nodes[node].op else { return None };
    if b.kind != kind {
        return None;
    }
    let (a, c) = (input(graph, node, 0)?, input(graph, node, 1)?);
    match (scalar_constant(graph, a), scalar_constant(graph, c)) {
        (None, Some(k)) => Some((a, k)),
        (Some(k), None) => Some((c, k)),
        _ => None,
    }
}

/// The operands of a two-input `kind` node, `[a, b]` as written.
fn operands(graph: &Graph, node: usize, kind: BinaryKind) -> Option<[ValueId; 2]> {
    let Some(Op::Binary(b)) = &graph.nodes[node].op else { return None };
    (b.kind == kind).then_some([input(graph, node, 0)?, input(graph, node, 1)?])
}

fn close(got: f32, want: f64) -> bool {
    ((got as f64 - want) / want).abs() < 1e-5
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` as torch decomposes it (Pow, Mul, Add, Mul,
/// Tanh, Add, and the halving either on x or on the sum; operands in any order) becomes
/// `Gelu(approximate="tanh")` on x. Matched from each Tanh outwards.
pub struct TanhGeluPass;

impl TanhGeluPass {
    /// x when `v` is `x + 0.044715 * x^3`, with every intermediate read once.
    fn cubic_argument(graph: &Graph, uses: &Uses, prod: &[Option<usize>], v: ValueId) -> Option<ValueId> {
        let add = prod[v]?;
        let [a, b] = operands(graph, add, BinaryKind::Add)?;
        [(a, b), (b, a)].into_iter().find_map(|(x, m)| {
            let mul = prod[m]?;
            let (p, c) = with_constant(graph, mul, BinaryKind::Mul)?;
            let pow = prod[p]?;
            let (base, three) = with_constant(graph, pow, BinaryKind::Pow)?;
            let single = uses.only_reader(m) == Some(add) && uses.only_reader(p) == Some(mul);
            (close(c, 0.044715) && three == 3.0 && base == x && single).then_some(x)
        })
    }

    /// The node whose output is `0.5 * x * one_plus_tanh` (the last node of the match).
    fn halved_product(
        graph: &Graph,
        uses: &Uses,
        prod: &[Option<usize>],
        x: ValueId,
        sum: ValueId,
    ) -> Option<usize> {
        let f = uses.only_reader(sum)?;
        // (x * 0.5) * sum
        if let Some([a, b]) = operands(graph, f, BinaryKind::Mul) {
            let half = if a == sum { b } else { a };
            let halves_x = prod[half]
                .and_then(|h| with_constant(graph, h, BinaryKind::Mul))
                .is_some_and(|(other, k)| other == x && k == 0.5 && uses.only_reader(half) == Some(f));
            if halves_x && (a == sum || b == sum) {
                return Some(f);
            }
        }
        // x * (sum * 0.5)
        let (other, k) = with_constant(graph, f, BinaryKind::Mul)?;
        let fo = output(graph, f)?;
        let g = uses.only_reader(fo)?;
        let [a, b] = operands(graph, g, BinaryKind::Mul)?;
        (other == sum && k == 0.5 && ((a, b) == (x, fo) || (a, b) == (fo, x))).then_some(g)
    }
}

impl FusionPass for TanhGeluPass {
    fn name(&self) -> &'static str {
        "tanh-gelu"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        let prod = producers(graph);
        for t in 0..graph.nodes.len() {
            if !matches!(&graph.nodes[t].op, Some(Op::Unary(u)) if u.kind == UnaryKind::Tanh) {
                continue;
            }
            let (Some(arg), Some(th)) = (input(graph, t, 0), output(graph, t)) else { continue };
            let Some(scaled) = prod[arg] else { continue };
            let Some((inner, c)) = with_constant(graph, scaled, BinaryKind::Mul) else { continue };
            if !close(c, (2.0 / std::f64::consts::PI).sqrt())
                || uses.only_reader(arg) != Some(t)
                || uses.only_reader(inner) != Some(scaled)
            {
                continue;
            }
            let Some(x) = Self::cubic_argument(graph, &uses, &prod, inner) else { continue };
            let Some(plus) = uses.only_reader(th) else { continue };
            let Some((from, one)) = with_constant(graph, plus, BinaryKind::Add) else { continue };
            let Some(sum) = output(graph, plus) else { continue };
            if from != th || one != 1.0 {
                continue;
            }
            let Some(last) = Self::halved_product(graph, &uses, &prod, x, sum) else { continue };
            // Scalars only: the result has x's type.
            let ty = |v: Option<ValueId>| v.and_then(|v| graph.values[v].ty.clone());
            if ty(Some(x)).is_none() || ty(Some(x)) != ty(output(graph, last)) {
                continue;
            }
            let op = Op::Unary(Unary { kind: UnaryKind::Gelu { tanh_approximation: true } });
            set_fused(graph, last, "Gelu", vec![Some(x)], op);
            graph.nodes[last].domain = String::new();
            count += 1;
        }
        Ok(count)
    }
}

/// `Add(MatMul(A, B), C)` (either order) with C repeating over the product: torch's Linear on
/// a 3-D input exports as MatMul then Add of the bias, 73 of them in the shipped UNet.
pub struct MatMulAddPass;

impl FusionPass for MatMulAddPass {
    fn name(&self) -> &'static str {
        "matmul+add"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        let prod = producers(graph);
        for add in 0..graph.nodes.len() {
            let f32_type = |v: ValueId| graph.values[v].ty.clone().filter(|t| t.dtype == DType::F32);
            let Some([x, y]) = operands(graph, add, BinaryKind::Add) else { continue };
            let Some(sum) = output(graph, add) else { continue };
            let found = [(x, y), (y, x)].into_iter().find_map(|(m, c)| {
                let mm = prod[m]?;
                let single = uses.only_reader(m) == Some(add) && graph.nodes[mm].inputs.len() == 2;
                let (mt, ct, st) = (f32_type(m)?, f32_type(c)?, f32_type(sum)?);
                let fits = repeats_over(&ct.shape, &mt.shape) && st.shape == mt.shape;
                (matches!(graph.nodes[mm].op, Some(Op::MatMul(_))) && single && fits && m != c)
                    .then(|| (input(graph, mm, 0), input(graph, mm, 1), c))
            });
            let Some((Some(a), Some(b), c)) = found else { continue };
            set_fused(
                graph,
                add,
                "FusedMatMulAdd",
                vec![Some(a), Some(b), Some(c)],
                Op::Fused(Fused::MatMulAdd),
            );
            count += 1;
        }
        Ok(count)
    }
}

/// The activation of a unary op that a product's epilogue can take.
fn activation_of(kind: UnaryKind) -> Option<Activation> {
    Some(match kind {
        UnaryKind::Relu => Activation::Relu,
        UnaryKind::LeakyRelu { alpha } => Activation::LeakyRelu(alpha),
        UnaryKind::Silu => Activation::Silu,
        UnaryKind::Gelu { tanh_approximation: false } => Activation::Gelu,
        UnaryKind::Gelu { tanh_approximation: true } => Activation::GeluTanh,
        UnaryKind::Sigmoid => Activation::Sigmoid,
        UnaryKind::Tanh => Activation::Tanh,
        _ => return None,
    })
}

/// A product (MatMul, FusedMatMulAdd, Gemm, Conv or ConvTranspose) whose output only an
/// activation reads: the feed-forward's first Linear and its SiLU or GELU, a time embedding's
/// Linear and SiLU, a conv stem's Conv and ReLU or SiLU. The activation's node takes the
/// product's inputs and becomes `Fused::Activated` over it; the CPU backend runs the product then
/// the same unary op (the same bits), the GPU one applies the activation in the matmul or conv
/// kernel's epilogue.
pub struct ProductActivationPass;

impl FusionPass for ProductActivationPass {
    fn name(&self) -> &'static str {
        "product+activation"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        for p in 0..graph.nodes.len() {
            let product = matches!(
                graph.nodes[p].op,
                Some(
                    Op::MatMul(_)
                        | Op::Gemm(_)
                        | Op::Fused(Fused::MatMulAdd)
                        | Op::Conv(_)
                        | Op::ConvTranspose(_)
                )
            );
            if !product || graph.nodes[p].outputs.len() != 1 {
                continue;
            }
            let Some(y) = output(graph, p) else { continue };
            let Some(act) = uses.only_reader(y) else { continue };
            let Some(Op::Unary(u)) = &graph.nodes[act].op else { continue };
            let Some(activation) = activation_of(u.kind) else { continue };
            let Some(out) = output(graph, act) else { continue };
            // Same type in and out (a float product; the activation keeps it).
            let ty = |v: ValueId| graph.values[v].ty.clone();
            if ty(y).is_none_or(|t| t.dtype != DType::F32) || ty(y) != ty(out) {
                continue;
            }
            let Some(base) = graph.nodes[p].op.clone() else { continue };
            let inputs = graph.nodes[p].inputs.clone();
            let op_type = format!("{}{}", fused_name(&graph.nodes[p].op_type), activation_name(activation));
            let op = Op::Fused(Fused::Activated { base: Box::new(base), activation });
            set_fused(graph, act, &op_type, inputs, op);
            count += 1;
        }
        Ok(count)
    }
}

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::None => "",
        Activation::Relu => "Relu",
        Activation::LeakyRelu(_) => "LeakyRelu",
        Activation::Silu => "Silu",
        Activation::Gelu => "Gelu",
        Activation::GeluTanh => "GeluTanh",
        Activation::Sigmoid => "Sigmoid",
        Activation::Tanh => "Tanh",
    }
}

/// `Fused` + the op type, once: FusedMatMul, FusedGemm, FusedMatMulAdd, FusedConv.
fn fused_name(op_type: &str) -> String {
    if op_type.starts_with("Fused") {
        op_type.to_string()
    } else {
        format!("Fused{op_type}")
    }
}

pub struct NormSiluPass;

impl FusionPass for NormSiluPass {
    fn name(&self) -> &'static str {
        "norm+silu"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        for n in 0..graph.nodes.len() {
            let Some(base @ (Op::GroupNorm(_) | Op::InstanceNorm(_))) = graph.nodes[n].op.clone() else {
                continue;
            };
            if graph.nodes[n].outputs.len() != 1 {
                continue;
            }
            let Some(y) = output(graph, n) else { continue };
            if uses.is_output[y] {
                continue;
            }
            // Readers of y: one Sigmoid(y) and one Mul(y, sigmoid) in either order.
            let readers = &uses.readers[y];
            if readers.len() != 2 {
                continue;
            }
            let sig = readers
                .iter()
                .copied()
                .find(|&r| matches!(&graph.nodes[r].op, Some(Op::Unary(u)) if u.kind == UnaryKind::Sigmoid));
            let Some(sig) = sig else { continue };
            let Some(mul) = readers.iter().copied().find(|&r| r != sig) else { continue };
            let Some(sv) = output(graph, sig) else { continue };
            let is_mul = matches!(&graph.nodes[mul].op, Some(Op::Binary(b)) if b.kind == BinaryKind::Mul);
            let ins = (input(graph, mul, 0), input(graph, mul, 1));
            let pairs = ins == (Some(y), Some(sv)) || ins == (Some(sv), Some(y));
            if !is_mul || !pairs || uses.only_reader(sv) != Some(mul) {
                continue;
            }
            let inputs = graph.nodes[n].inputs.clone();
            let op = Op::Fused(Fused::Activated { base: Box::new(base), activation: Activation::Silu });
            let op_type = format!("Fused{}Silu", graph.nodes[n].op_type);
            set_fused(graph, mul, &op_type, inputs, op);
            count += 1;
        }
        Ok(count)
    }
}

pub struct SiluPass;

impl FusionPass for SiluPass {
    fn name(&self) -> &'static str {
        "silu"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        for sig in 0..graph.nodes.len() {
            if !matches!(&graph.nodes[sig].op, Some(Op::Unary(u)) if u.kind == UnaryKind::Sigmoid) {
                continue;
            }
            let (Some(x), Some(s)) = (input(graph, sig, 0), output(graph, sig)) else { continue };
            let Some(mul) = uses.only_reader(s) else { continue };
            let Some([a, b]) = operands(graph, mul, BinaryKind::Mul) else { continue };
            if (a, b) != (x, s) && (a, b) != (s, x) {
                continue;
            }
            let op = Op::Unary(Unary { kind: UnaryKind::Silu });
            set_fused(graph, mul, "Silu", vec![Some(x)], op);
            count += 1;
        }
        Ok(count)
    }
}

pub struct TorchGroupNormPass;

impl TorchGroupNormPass {
    /// `t` as one value per channel of `c`, if it only varies along the channel axis of a rank-r
    /// tensor (shapes [C, 1, ...] or [1, C, 1, ...]).
    fn per_channel(t: &Tensor, c: usize, r: usize) -> Option<Vec<f32>> {
        let s = t.shape();
        let trailing = s.len() < r && !s.is_empty() && s[0] == c && s[1..].iter().all(|&d| d == 1);
        let full =
            s.len() == r && r >= 2 && s[1] == c && s.iter().enumerate().all(|(i, &d)| i == 1 || d == 1);
        (t.dtype().is_float() && (trailing || full || (c == 1 && t.len() == 1))).then(|| t.to_f32_vec())
    }
}

impl FusionPass for TorchGroupNormPass {
    fn name(&self) -> &'static str {
        "torch-groupnorm"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        let prod = producers(graph);
        for i in 0..graph.nodes.len() {
            let Some(Op::InstanceNorm(inorm)) = graph.nodes[i].op.clone() else { continue };
            let (Some(r1o), Some(y)) = (input(graph, i, 0), output(graph, i)) else { continue };
            let Some(r1) = prod[r1o] else { continue };
            if !matches!(graph.nodes[r1].op, Some(Op::Reshape(_))) || uses.only_reader(r1o) != Some(i) {
                continue;
            }
            let Some(x) = input(graph, r1, 0) else { continue };
            let unit = |v: Option<ValueId>, want: f32| {
                v.and_then(|v| graph.values[v].constant.clone())
                    .is_some_and(|t| t.to_f32_vec().iter().all(|&e| e == want))
            };
            if !unit(input(graph, i, 1), 1.0) || !unit(input(graph, i, 2), 0.0) {
                continue;
            }
            let Some(r2) = uses.only_reader(y) else { continue };
            if !matches!(graph.nodes[r2].op, Some(Op::Reshape(_))) {
                continue;
            }
            let Some(r2o) = output(graph, r2) else { continue };
            let (Some(xt), Some(r2t), Some(it)) =
                (graph.values[x].ty.clone(), graph.values[r2o].ty.clone(), graph.values[r1o].ty.clone())
            else {
                continue;
            };
            if xt.shape != r2t.shape || xt.shape.len() < 2 || it.shape.len() < 2 {
                continue;
            }
            let (c, groups) = (xt.shape[1], it.shape[1]);
            if it.shape[0] != xt.shape[0] || groups == 0 || c % groups != 0 {
                continue;
            }
            // Mul(gamma) then Add(beta), constants per channel.
            let Some(mul) = uses.only_reader(r2o) else { continue };
            let Some(mo) = output(graph, mul) else { continue };
            let Some(add) = uses.only_reader(mo) else { continue };
            let affine = |node: usize, kind: BinaryKind, from: ValueId| -> Option<Vec<f32>> {
                let Some(Op::Binary(b)) = &graph.nodes[node].op else { return None };
                if b.kind != kind {
                    return None;
                }
                let (a, k) = (input(graph, node, 0)?, input(graph, node, 1)?);
                let other = if a == from {
                    k
                } else if k == from {
                    a
                } else {
                    return None;
                };
                Self::per_channel(graph.values[other].constant.as_ref()?, c, xt.shape.len())
            };
            let (Some(gamma), Some(beta)) =
                (affine(mul, BinaryKind::Mul, r2o), affine(add, BinaryKind::Add, mo))
            else {
                continue;
            };
            let Some(ao) = output(graph, add) else { continue };
            if graph.values[ao].ty.as_ref().map(|t| &t.shape) != Some(&xt.shape) {
                continue;
            }
            let (Ok(gamma), Ok(beta)) = (Tensor::from_f32(vec![c], gamma), Tensor::from_f32(vec![c], beta))
            else {
                continue;
            };
            let base = graph.nodes[add].label(graph).to_string();
            let mut constant = |name: String, t: Tensor| -> ValueId {
                let id = graph.add_value(name, ValueKind::Initializer);
                graph.values[id].ty = Some(TensorType::of(&t));
                graph.values[id].constant = Some(Arc::new(t));
                id
            };
            let g = constant(format!("{base}.gamma"), gamma);
            let b = constant(format!("{base}.beta"), beta);
            let op = Op::GroupNorm(GroupNorm {
                num_groups: groups,
                epsilon: inorm.epsilon,
                per_channel_affine: true,
            });
            set_fused(graph, add, "GroupNormalization", vec![Some(x), Some(g), Some(b)], op);
            graph.nodes[add].domain = String::new();
            count += 1;
        }
        Ok(count)
    }
}
