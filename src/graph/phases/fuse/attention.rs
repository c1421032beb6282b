//! The attention passes: the products, scale and softmax into one `FusedAttention`, the
//! Transposes around it into its layout, and the Split of a fused projection into its operands.

use super::{input, output, producers, rank, scaled_operand, set_fused, FusionPass, Uses};
use crate::graph::{BuildError, Graph, ValueId};
use crate::ops::fused::{attention_streams, AttentionLayout, Fused, OperandSource};
use crate::ops::layout::transpose;
use crate::ops::linalg::einsum::Einsum;
use crate::ops::Op;

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

/// `(x, k)` when `v` is `x * k`, `k * x` or `x / k` for a constant scalar `k` (as a factor) and
/// has x's shape (the scalar broadcasts nothing).
fn scaled(graph: &Graph, prod: &[Option<usize>], v: ValueId) -> Option<(ValueId, f32)> {
    let (x, k) = scaled_operand(graph, prod[v]?)?;
    let shape = |v: ValueId| graph.values[v].ty.as_ref().map(|t| &t.shape);
    (shape(x).is_some() && shape(x) == shape(v)).then_some((x, k))
}

/// `softmax(scale * Q @ Kt) @ V` becomes one `FusedAttention`: both products MatMuls or
/// attention Einsums, the optional scale a Mul or Div by a constant scalar of the scores, of Q or
/// of Kt (or several of them), the softmax over the last axis. An Einsum's operand and result permutations become the attention's layout (only
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
            let (mm, mut scale) = match scaled(graph, &prod, t) {
                Some((scores, k)) => {
                    let Some(m) = prod[scores].filter(|_| uses.only_reader(scores) == Some(tn)) else {
                        continue;
                    };
                    (m, k)
                }
                None => (tn, 1.0),
            };
            // The scores come out in order: the softmax's last axis is the keys'.
            let Some(qk) = product_of(graph, mm).filter(|qk| qk.out_perm.is_none()) else { continue };
            let (mut q, mut kt, v) = (qk.a, qk.b, pv.b);
            // Q and Kt each scaled by a constant before the product, as torch exports
            // scaled_dot_product_attention (both by the scale's square root): the scales join
            // the attention's, and a Transpose of K under its scale can then fold too.
            for operand in [&mut q, &mut kt] {
                if let Some((unscaled, k)) = scaled(graph, &prod, *operand) {
                    if uses.only_reader(*operand) == Some(mm) {
                        *operand = unscaled;
                        scale *= k;
                    }
                }
            }
            if rank(graph, q) < 2 || rank(graph, kt) < 2 || rank(graph, v) < 2 {
                continue;
            }
            let layout = AttentionLayout {
                inputs: [qk.a_perm, qk.b_perm, pv.b_perm],
                output: pv.out_perm,
                ..Default::default()
            };
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

/// Q, K and V as parts of one fused projection (a QKV or KV Linear, then a Split into heads'
/// inputs): an attention input that is a Reshape of one Split output, each read only by the
/// next, becomes that part of the Split's input (`OperandSource`), where the part reshaped stays
/// a view of it. Both backends read the part in place (no copy kernels for the Split on the GPU,
/// no copies on the CPU). After the attention-layout pass, whose
/// folded Transposes leave the Reshapes next to the attention.
pub struct AttentionSourcePass;

impl AttentionSourcePass {
    /// The part of the Split's input that `x` (an attention input) reshapes, if it is one.
    fn source(
        graph: &Graph,
        uses: &Uses,
        prod: &[Option<usize>],
        f: usize,
        x: ValueId,
    ) -> Option<(ValueId, OperandSource)> {
        let shape = |v: ValueId| graph.values[v].ty.as_ref().map(|t| t.shape.clone());
        let r = prod[x]?;
        if !matches!(graph.nodes[r].op, Some(Op::Reshape(_))) || uses.only_reader(x) != Some(f) {
            return None;
        }
        let p = input(graph, r, 0)?;
        let s = prod[p].filter(|_| uses.only_reader(p) == Some(r))?;
        let Some(Op::Split(split)) = &graph.nodes[s].op else { return None };
        let whole = input(graph, s, 0)?;
        let whole_shape = shape(whole)?;
        let axis = crate::tensor::shape::normalize_axis(split.axis, whole_shape.len()).ok()?;
        // The part starts after the Split's earlier outputs.
        let outputs = &graph.nodes[s].outputs;
        let k = outputs.iter().position(|&o| o == Some(p))?;
        let start = outputs[..k].iter().map(|o| o.and_then(shape).map(|s| s[axis])).sum::<Option<usize>>()?;
        let len = shape(p)?[axis];
        let mut narrowed = whole_shape.clone();
        narrowed[axis] = len;
        let target = shape(x)?;
        let contiguous = crate::tensor::shape::strides(&whole_shape);
        crate::tensor::shape::reshaped_strides(&narrowed, &contiguous, &target)?;
        Some((whole, OperandSource { axis, start, len, shape: target }))
    }
}

impl FusionPass for AttentionSourcePass {
    fn name(&self) -> &'static str {
        "attention sources"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        let prod = producers(graph);
        for f in 0..graph.nodes.len() {
            let Some(Op::Fused(Fused::Attention { scale, layout })) = &graph.nodes[f].op else { continue };
            let (scale, mut layout) = (*scale, layout.clone());
            let mut inputs = graph.nodes[f].inputs.clone();
            let mut folded = 0;
            for (slot, source) in inputs.iter_mut().zip(layout.sources.iter_mut()) {
                let Some(x) = slot.filter(|_| source.is_none()) else { continue };
                if let Some((whole, part)) = Self::source(graph, &uses, &prod, f, x) {
                    *slot = Some(whole);
                    *source = Some(Box::new(part));
                    folded += 1;
                }
            }
            if folded > 0 {
                set_fused(graph, f, "FusedAttention", inputs, Op::Fused(Fused::Attention { scale, layout }));
                count += folded;
            }
        }
        Ok(count)
    }
}
