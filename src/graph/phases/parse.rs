//! Phase 1: every node becomes a typed [`Op`]; all unsupported nodes are reported together.

use crate::graph::{BuildError, Graph, Node, NodeIssue};
use crate::ops::{parse_node, Op};

fn parse_one(node: &Node) -> Result<Op, String> {
    if !node.domain.is_empty() {
        return Err(format!("domain '{}' is not supported (only the default ONNX domain is)", node.domain));
    }
    parse_node(&node.op_type, node.opset, node.attributes.clone(), node.inputs.len(), node.outputs.len())
        .map_err(|e| e.to_string())
}

fn issue(graph: &Graph, node: &Node, reason: String) -> NodeIssue {
    NodeIssue {
        node: node.label(graph).to_string(),
        op_type: node.op_type.clone(),
        domain: node.domain.clone(),
        opset: node.opset,
        reason,
    }
}

/// Why each node of `graph` that cannot be parsed cannot be (for `inspect`).
pub fn issues(graph: &Graph) -> Vec<NodeIssue> {
    graph
        .nodes
        .iter()
        .filter_map(|node| parse_one(node).err().map(|reason| issue(graph, node, reason)))
        .collect()
}

pub fn parse_ops(graph: &mut Graph) -> Result<(), BuildError> {
    let mut problems = Vec::new();
    for index in 0..graph.nodes.len() {
        match parse_one(&graph.nodes[index]) {
            Ok(op) => graph.nodes[index].op = Some(op),
            Err(reason) => problems.push(issue(graph, &graph.nodes[index], reason)),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Unsupported(problems))
    }
}
