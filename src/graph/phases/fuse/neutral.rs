//! Multiplications and divisions by 1 and subtractions of +0 that a traced export can keep (diffusers
//! divides every resnet block's and attention's output by `output_scale_factor` and
//! `rescale_output_factor`, 1.0 by default). Each would cost a kernel launch and a pass over its
//! tensor, and stand between a product and the patterns of the passes after this one.

use super::{input, output, scalar_constant, set_fused, FusionPass};
use crate::graph::{BuildError, Graph, ValueId};
use crate::ops::elementwise::binary::BinaryKind;
use crate::ops::source::identity::Identity;
use crate::ops::Op;

/// `x * 1`, `1 * x`, `x / 1` and `x - (+0)` (a scalar constant, the output of x's own type and
/// shape) become x: readers read x instead, and the node goes with the prune phase (it becomes an
/// Identity when its output is a graph output). Exact for every value, NaN and -0 included; `x +
/// 0` is left alone (-0 + 0 is +0).
pub struct NeutralElementPass;

impl NeutralElementPass {
    /// The operand a `node` passes through unchanged, if it is such an op.
    fn passed_through(graph: &Graph, node: usize) -> Option<ValueId> {
        let Some(Op::Binary(b)) = &graph.nodes[node].op else { return None };
        let (a, c) = (input(graph, node, 0)?, input(graph, node, 1)?);
        let is = |v: ValueId, k: f32| scalar_constant(graph, v).is_some_and(|s| s.to_bits() == k.to_bits());
        let x = match b.kind {
            BinaryKind::Mul if is(c, 1.0) => a,
            BinaryKind::Mul if is(a, 1.0) => c,
            BinaryKind::Div if is(c, 1.0) => a,
            BinaryKind::Sub if is(c, 0.0) => a,
            _ => return None,
        };
        let y = output(graph, node)?;
        let same_type = graph.values[x].ty.is_some() && graph.values[x].ty == graph.values[y].ty;
        (same_type && graph.nodes[node].outputs.len() == 1).then_some(x)
    }
}

impl FusionPass for NeutralElementPass {
    fn name(&self) -> &'static str {
        "neutral elements"
    }

    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError> {
        let mut count = 0;
        for node in 0..graph.nodes.len() {
            let Some(x) = Self::passed_through(graph, node) else { continue };
            let Some(y) = output(graph, node) else { continue };
            if graph.outputs.contains(&y) {
                set_fused(
                    graph,
                    node,
                    "Identity",
                    vec![Some(x)],
                    Op::Identity(Identity { with_mask: false }),
                );
            } else {
                for input in graph.nodes.iter_mut().flat_map(|n| n.inputs.iter_mut()) {
                    if *input == Some(y) {
                        *input = Some(x);
                    }
                }
            }
            count += 1;
        }
        Ok(count)
    }
}
