//! torch's decomposed tanh GELU back into one Gelu.

use super::{input, operands, output, producers, scalar_constant, set_fused, FusionPass, Uses};
use crate::graph::{BuildError, Graph, ValueId};
use crate::ops::elementwise::binary::BinaryKind;
use crate::ops::elementwise::unary::{Unary, UnaryKind};
use crate::ops::Op;

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
