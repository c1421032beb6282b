//! Epilogues of products (MatMul, Gemm, Conv, ConvTranspose): a bias Add, an activation, a
//! residual Add.

use super::{input, operands, output, producers, set_fused, FusionPass, Uses};
use crate::gpu::Activation;
use crate::graph::{BuildError, Graph, ValueId};
use crate::ops::elementwise::binary::BinaryKind;
use crate::ops::elementwise::unary::UnaryKind;
use crate::ops::fused::{repeats_over, Fused};
use crate::ops::Op;
use crate::tensor::DType;

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
pub(super) fn activation_of(kind: UnaryKind) -> Option<Activation> {
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

pub(super) fn activation_name(a: Activation) -> &'static str {
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

/// `Add(P, R)` (either order) where P is the output of a MatMul, FusedMatMulAdd or Conv (maybe
/// with its activation fused) read only by this Add, and R has P's type and shape: the residual
/// connections of a UNet's ResBlock (conv, then the skip added) and of a transformer block (the
/// attention's or feed-forward's output projection, then the block's input added). After a conv,
/// R may also hold one value per batch item and channel (`[N or 1, C or 1, 1, ..]`): the time
/// embedding diffusers' ResBlocks add after their first conv, or a bias the export left apart.
/// The Add's node becomes `Fused::Residual` over the product; the CPU backend adds R onto the
/// product (the bits of the Add), the GPU one in the matmul or conv kernel's epilogue, after the
/// activation: one kernel, and the product never makes a round trip through memory.
pub struct ResidualPass;

impl FusionPass for ResidualPass {
    fn name(&self) -> &'static str {
        "product+residual"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        let prod = producers(graph);
        for add in 0..graph.nodes.len() {
            let Some([x, y]) = operands(graph, add, BinaryKind::Add) else { continue };
            let Some(sum) = output(graph, add) else { continue };
            let ty = |v: ValueId| graph.values[v].ty.clone().filter(|t| t.dtype == DType::F32);
            let found = [(x, y), (y, x)].into_iter().find_map(|(p, r)| {
                let node = prod[p]?;
                let arity = residual_base_arity(graph.nodes[node].op.as_ref()?)?;
                let single = uses.only_reader(p) == Some(add) && graph.nodes[node].outputs.len() == 1;
                let (pt, rt) = (ty(p)?, ty(r)?);
                let conv = is_conv(graph.nodes[node].op.as_ref()?);
                let fits = rt.shape == pt.shape || (conv && per_batch_and_channel(&rt.shape, &pt.shape));
                let same = ty(sum) == Some(pt.clone()) && rt.dtype == pt.dtype;
                (single && same && fits && p != r && graph.nodes[node].inputs.len() <= arity)
                    .then_some((node, arity, r))
            });
            let Some((node, arity, r)) = found else { continue };
            let Some(base) = graph.nodes[node].op.clone() else { continue };
            let mut inputs = graph.nodes[node].inputs.clone();
            inputs.resize(arity, None);
            inputs.push(Some(r));
            let op_type = format!("{}Add", fused_name(&graph.nodes[node].op_type));
            set_fused(graph, add, &op_type, inputs, Op::Fused(Fused::Residual { base: Box::new(base) }));
            count += 1;
        }
        Ok(count)
    }
}

/// How many inputs a product the residual pass takes has, optional ones included (the residual
/// comes after them all); `None` for the others.
fn residual_base_arity(op: &Op) -> Option<usize> {
    match op {
        Op::MatMul(_) => Some(2),
        Op::Fused(Fused::MatMulAdd) | Op::Conv(_) => Some(3),
        Op::Fused(Fused::Activated { base, .. }) => match base.as_ref() {
            Op::MatMul(_) | Op::Fused(Fused::MatMulAdd) | Op::Conv(_) => residual_base_arity(base),
            _ => None,
        },
        _ => None,
    }
}

fn is_conv(op: &Op) -> bool {
    match op {
        Op::Conv(_) => true,
        Op::Fused(Fused::Activated { base, .. }) => matches!(base.as_ref(), Op::Conv(_)),
        _ => false,
    }
}

/// Whether `r` broadcasts over every dim of `out` ([N, C, ...]) after the first two, and to the
/// first two: one value per batch item and channel at most.
pub(super) fn per_batch_and_channel(r: &[usize], out: &[usize]) -> bool {
    if r.len() > out.len() || out.len() < 2 {
        return false;
    }
    let lead = out.len() - r.len();
    r.iter().enumerate().all(|(i, &d)| {
        let axis = lead + i;
        d == 1 || (axis < 2 && d == out[axis])
    })
}
