//! Runs a built graph on the CPU: nodes in order, each value freed after its last reader.

use crate::graph::phases::BuiltGraph;
use crate::graph::ValueId;
use crate::ops::OpError;
use crate::tensor::Tensor;

/// A node failed while running.
#[derive(Debug, thiserror::Error)]
#[error("node '{node}' ({op_type}): {source}")]
pub struct RunError {
    pub node: String,
    pub op_type: String,
    #[source]
    pub source: OpError,
}

/// Runs `built` with `inputs` given per graph input (same order as `graph.inputs`) and returns
/// the graph outputs in order.
pub fn execute(built: &BuiltGraph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
    let graph = &built.graph;
    let mut slots: Vec<Option<Tensor>> = vec![None; graph.values.len()];
    for (&id, tensor) in graph.inputs.iter().zip(inputs) {
        slots[id] = Some(tensor);
    }
    for (step, node) in graph.nodes.iter().enumerate() {
        let fail = |source: OpError| RunError {
            node: node.label(graph).to_string(),
            op_type: node.op_type.clone(),
            source,
        };
        let op = node
            .op
            .as_ref()
            .ok_or_else(|| fail(OpError::invalid("node was not parsed")))?;
        let args: Vec<Option<&Tensor>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| value(graph, &slots, v)))
            .collect();
        if node
            .inputs
            .iter()
            .zip(&args)
            .any(|(i, a)| i.is_some() && a.is_none())
        {
            return Err(fail(OpError::invalid(
                "an input was freed or never computed (memory plan bug)",
            )));
        }
        let outputs = op.spec().run(&args).map_err(fail)?;
        for (out, tensor) in node.outputs.iter().zip(outputs) {
            if let Some(v) = *out {
                slots[v] = Some(tensor);
            }
        }
        for &v in node.inputs.iter().flatten() {
            if built.plan.last_use[v] == Some(step) {
                slots[v] = None;
            }
        }
    }
    graph
        .outputs
        .iter()
        .map(|&o| {
            value(graph, &slots, o).cloned().ok_or_else(|| RunError {
                node: graph.values[o].name.clone(),
                op_type: "output".into(),
                source: OpError::invalid("graph output was not computed"),
            })
        })
        .collect()
}

fn value<'a>(
    graph: &'a crate::graph::Graph,
    slots: &'a [Option<Tensor>],
    v: ValueId,
) -> Option<&'a Tensor> {
    graph.values[v].constant.as_deref().or(slots[v].as_ref())
}
