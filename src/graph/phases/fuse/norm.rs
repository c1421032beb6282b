//! Normalisations: torch's GroupNorm export rebuilt, SiLU after a norm or alone.

use super::{input, operands, output, producers, set_fused, FusionPass, Uses};
use crate::gpu::Activation;
use crate::graph::{BuildError, Graph, ValueId, ValueKind};
use crate::ops::elementwise::binary::BinaryKind;
use crate::ops::elementwise::unary::{Unary, UnaryKind};
use crate::ops::fused::Fused;
use crate::ops::norm::group_norm::GroupNorm;
use crate::ops::{Op, TensorType};
use crate::tensor::Tensor;
use std::sync::Arc;

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

/// A Group/Instance/LayerNormalization whose output only `Mul(·, scale)` reads, whose product
/// only `Add(·, shift)` reads (operands in either order), maybe then an activation: FiLM's
/// scale-shift conditioning in UNet resnet blocks (`norm(h) * (1 + scale) + shift`, then SiLU)
/// and adaLN's in DiT blocks (Latte, Wan). Scale and shift must be one value per batch item and
/// channel (group and instance norms) or per outermost index and normalised element (layer
/// norms: `[B, 1, D]` against `[B, T, D]`, all of the normalised dims or none), so the norm
/// kernels read them through two strides. The last node becomes `Fused::Modulated`: one GPU
/// kernel pass instead of the norm's and three elementwise ones; the CPU backend runs the ops in
/// sequence (the same bits).
pub struct NormModulationPass;

impl NormModulationPass {
    /// Whether `r` broadcasts to the norm's output `out` the way the norm kernels read it.
    fn fits(norm: &Op, r: &[usize], out: &[usize]) -> bool {
        match norm {
            Op::LayerNorm(l) => {
                let Ok(axis) = crate::tensor::shape::normalize_axis(l.axis, out.len()) else { return false };
                if r.len() > out.len() {
                    return false;
                }
                let lead = out.len() - r.len();
                let dim = |a: usize| if a < lead { 1 } else { r[a - lead] };
                let outer = (0..axis).all(|a| dim(a) == 1 || (a == 0 && dim(a) == out[0]));
                let all = (axis..out.len()).all(|a| dim(a) == out[a]);
                let none = (axis..out.len()).all(|a| dim(a) == 1);
                outer && (all || none)
            }
            _ => super::product::per_batch_and_channel(r, out),
        }
    }
}

impl FusionPass for NormModulationPass {
    fn name(&self) -> &'static str {
        "norm modulation"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        for n in 0..graph.nodes.len() {
            let Some(norm @ (Op::GroupNorm(_) | Op::InstanceNorm(_) | Op::LayerNorm(_))) =
                graph.nodes[n].op.clone()
            else {
                continue;
            };
            if graph.nodes[n].outputs.len() != 1 || graph.nodes[n].inputs.len() > 3 {
                continue;
            }
            let ty = |v: ValueId| graph.values[v].ty.clone().filter(|t| t.dtype == crate::tensor::DType::F32);
            let other = |node: usize, kind: BinaryKind, v: ValueId| {
                let [a, b] = operands(graph, node, kind)?;
                let o = if a == v { b } else { a };
                ((a == v) != (b == v)).then_some(o)
            };
            let Some(y) = output(graph, n) else { continue };
            let Some(yt) = ty(y) else { continue };
            let Some(mul) = uses.only_reader(y) else { continue };
            let Some(scale) = other(mul, BinaryKind::Mul, y) else { continue };
            let Some(z) = output(graph, mul) else { continue };
            let Some(add) = uses.only_reader(z) else { continue };
            let Some(shift) = other(add, BinaryKind::Add, z) else { continue };
            let Some(sum) = output(graph, add) else { continue };
            let conditioning_fits =
                [scale, shift].iter().all(|&v| ty(v).is_some_and(|t| Self::fits(&norm, &t.shape, &yt.shape)));
            if ty(z) != Some(yt.clone()) || ty(sum) != Some(yt.clone()) || !conditioning_fits {
                continue;
            }
            // An activation that only reads the sum joins.
            let act = uses.only_reader(sum).and_then(|r| match &graph.nodes[r].op {
                Some(Op::Unary(u)) if output(graph, r).and_then(ty) == Some(yt.clone()) => {
                    super::product::activation_of(u.kind).map(|a| (r, a))
                }
                _ => None,
            });
            let (last, activation) = act.unwrap_or((add, Activation::None));
            let mut inputs = graph.nodes[n].inputs.clone();
            inputs.resize(3, None);
            inputs.extend([Some(scale), Some(shift)]);
            let suffix = super::product::activation_name(activation);
            let op_type = format!("Fused{}Modulated{suffix}", graph.nodes[n].op_type);
            let op = Op::Fused(Fused::Modulated { norm: Box::new(norm), activation });
            set_fused(graph, last, &op_type, inputs, op);
            count += 1;
        }
        Ok(count)
    }
}
