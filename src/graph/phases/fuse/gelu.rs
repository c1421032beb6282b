//! torch's decomposed GELUs (tanh and erf forms) back into one Gelu.

use super::{input, operands, output, producers, scaled_operand, set_fused, with_constant, FusionPass, Uses};
use crate::graph::{BuildError, Graph, ValueId};
use crate::ops::elementwise::binary::BinaryKind;
use crate::ops::elementwise::unary::{Unary, UnaryKind};
use crate::ops::Op;

fn close(got: f32, want: f64) -> bool {
    ((got as f64 - want) / want).abs() < 1e-5
}

/// `v` when `node` is `v * c` (c within 1e-5 of `want`) or `v / c` (1 / c within it).
fn scaled_by(graph: &Graph, node: usize, want: f64) -> Option<ValueId> {
    let (v, factor) = scaled_operand(graph, node)?;
    close(factor, want).then_some(v)
}

/// The last node of `0.5 * x * sum` in any of torch's groupings, `(x * 0.5) * sum`,
/// `x * (sum * 0.5)` or `(x * sum) * 0.5`, operands in either order, every intermediate read
/// once.
fn halved_product(
    graph: &Graph,
    uses: &Uses,
    prod: &[Option<usize>],
    x: ValueId,
    sum: ValueId,
) -> Option<usize> {
    let f = uses.only_reader(sum)?;
    if let Some([a, b]) = operands(graph, f, BinaryKind::Mul) {
        // (x * 0.5) * sum
        let half = if a == sum { b } else { a };
        let halves_x = prod[half]
            .and_then(|h| with_constant(graph, h, BinaryKind::Mul))
            .is_some_and(|(other, k)| other == x && k == 0.5 && uses.only_reader(half) == Some(f));
        if halves_x && (a == sum || b == sum) {
            return Some(f);
        }
        // (x * sum) * 0.5
        if (a, b) == (x, sum) || (a, b) == (sum, x) {
            let fo = output(graph, f)?;
            let g = uses.only_reader(fo)?;
            let (other, k) = with_constant(graph, g, BinaryKind::Mul)?;
            return (other == fo && k == 0.5).then_some(g);
        }
    }
    // x * (sum * 0.5)
    let (other, k) = with_constant(graph, f, BinaryKind::Mul)?;
    let fo = output(graph, f)?;
    let g = uses.only_reader(fo)?;
    let [a, b] = operands(graph, g, BinaryKind::Mul)?;
    (other == sum && k == 0.5 && ((a, b) == (x, fo) || (a, b) == (fo, x))).then_some(g)
}

/// The output of `node` when it is `input_value + 1` (either order).
fn one_plus(graph: &Graph, node: usize, input_value: ValueId) -> Option<ValueId> {
    let (from, one) = with_constant(graph, node, BinaryKind::Add)?;
    (from == input_value && one == 1.0).then_some(output(graph, node)?)
}

/// Rewrites `last` into `Gelu(x)` when the result keeps x's type (scalars only broadcast).
fn rewrite(graph: &mut Graph, last: usize, x: ValueId, tanh_approximation: bool) -> bool {
    let ty = |v: Option<ValueId>| v.and_then(|v| graph.values[v].ty.clone());
    if ty(Some(x)).is_none() || ty(Some(x)) != ty(output(graph, last)) {
        return false;
    }
    let op = Op::Unary(Unary { kind: UnaryKind::Gelu { tanh_approximation } });
    set_fused(graph, last, "Gelu", vec![Some(x)], op);
    graph.nodes[last].domain = String::new();
    true
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` as torch decomposes it (the cube as Pow(x, 3)
/// (dynamo) or x * (x * x) (TorchScript), and the halving in any grouping; operands in any order)
/// becomes `Gelu(approximate="tanh")` on x. Matched from each Tanh outwards.
pub struct TanhGeluPass;

impl TanhGeluPass {
    /// x when `v` is `x + 0.044715 * x^3`, with every intermediate read once.
    fn cubic_argument(graph: &Graph, uses: &Uses, prod: &[Option<usize>], v: ValueId) -> Option<ValueId> {
        let add = prod[v]?;
        let [a, b] = operands(graph, add, BinaryKind::Add)?;
        [(a, b), (b, a)].into_iter().find_map(|(x, m)| {
            let mul = prod[m]?;
            let (cube, c) = with_constant(graph, mul, BinaryKind::Mul)?;
            let single = uses.only_reader(m) == Some(add) && uses.only_reader(cube) == Some(mul);
            (close(c, 0.044715) && single && Self::is_cube_of(graph, uses, prod, cube, x)).then_some(x)
        })
    }

    /// Whether `v` is `Pow(x, 3)`, `x * (x * x)` or `(x * x) * x` (the square read once).
    fn is_cube_of(graph: &Graph, uses: &Uses, prod: &[Option<usize>], v: ValueId, x: ValueId) -> bool {
        let Some(node) = prod[v] else { return false };
        if let Some((base, three)) = with_constant(graph, node, BinaryKind::Pow) {
            return base == x && three == 3.0;
        }
        let Some([a, b]) = operands(graph, node, BinaryKind::Mul) else { return false };
        let square = if a == x { b } else { a };
        (a == x || b == x)
            && uses.only_reader(square) == Some(node)
            && prod[square].and_then(|s| operands(graph, s, BinaryKind::Mul)) == Some([x, x])
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
            let Some(sum) = uses.only_reader(th).and_then(|plus| one_plus(graph, plus, th)) else { continue };
            let Some(last) = halved_product(graph, &uses, &prod, x, sum) else { continue };
            count += rewrite(graph, last, x, true) as usize;
        }
        Ok(count)
    }
}

/// `0.5 x (1 + erf(x / sqrt(2)))` as torch decomposes the exact GELU below opset 20 (Div by
/// sqrt(2) or Mul by its inverse, Erf, Add 1, and the halving in any grouping) becomes
/// `Gelu` on x: zeroscope's GEGLU feed-forward. Matched from each Erf outwards.
pub struct ErfGeluPass;

impl FusionPass for ErfGeluPass {
    fn name(&self) -> &'static str {
        "erf-gelu"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        let uses = Uses::of(graph);
        let prod = producers(graph);
        for e in 0..graph.nodes.len() {
            if !matches!(&graph.nodes[e].op, Some(Op::Unary(u)) if u.kind == UnaryKind::Erf) {
                continue;
            }
            let (Some(arg), Some(erf)) = (input(graph, e, 0), output(graph, e)) else { continue };
            let Some(x) = prod[arg].and_then(|s| scaled_by(graph, s, std::f64::consts::FRAC_1_SQRT_2)) else {
                continue;
            };
            if uses.only_reader(arg) != Some(e) {
                continue;
            }
            let Some(sum) = uses.only_reader(erf).and_then(|plus| one_plus(graph, plus, erf)) else {
                continue;
            };
            let Some(last) = halved_product(graph, &uses, &prod, x, sum) else { continue };
            count += rewrite(graph, last, x, false) as usize;
        }
        Ok(count)
    }
}
