//! Phase 1: every node becomes a typed [`Op`](crate::ops::Op); all unsupported nodes are
//! reported together.

use crate::graph::{BuildError, Graph, NodeIssue};
use crate::ops::parse_node;

/// Why a node of `graph` cannot be parsed, for every such node.
pub fn issues(graph: &Graph) -> Vec<NodeIssue> {
    graph
        .nodes
        .iter()
        .filter_map(|node| {
            let reason = if !node.domain.is_empty() {
                format!(
                    "domain '{}' is not supported (only the default ONNX domain is)",
                    node.domain
                )
            } else {
                parse_node(
                    &node.op_type,
                    node.opset,
                    node.attributes.clone(),
                    node.inputs.len(),
                    node.outputs.len(),
                )
                .err()?
                .to_string()
            };
            Some(NodeIssue {
                node: node.label(graph).to_string(),
                op_type: node.op_type.clone(),
                domain: node.domain.clone(),
                opset: node.opset,
                reason,
            })
        })
        .collect()
}

pub fn parse_ops(graph: &mut Graph) -> Result<(), BuildError> {
    let problems = issues(graph);
    if !problems.is_empty() {
        return Err(BuildError::Unsupported(problems));
    }
    for node in &mut graph.nodes {
        let op = parse_node(
            &node.op_type,
            node.opset,
            std::mem::take(&mut node.attributes),
            node.inputs.len(),
            node.outputs.len(),
        );
        node.op = op.ok();
    }
    Ok(())
}
