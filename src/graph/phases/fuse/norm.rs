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
