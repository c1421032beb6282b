//! Errors of the build phases.

/// One node that cannot be built, with everything a user needs to find it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeIssue {
    pub node: String,
    pub op_type: String,
    pub domain: String,
    pub opset: u32,
    pub reason: String,
}

impl std::fmt::Display for NodeIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domain = if self.domain.is_empty() { String::new() } else { format!("{}::", self.domain) };
        write!(f, "node '{}' ({domain}{}, opset {}): {}", self.node, self.op_type, self.opset, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{} unsupported node(s):\n  {}", .0.len(), .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("\n  "))]
    Unsupported(Vec<NodeIssue>),
    #[error("{0}")]
    Node(NodeIssue),
    #[error("input '{name}': {problem}")]
    Input { name: String, problem: String },
    #[error("the graph has a cycle or reads a value no node produces (around node '{0}')")]
    Order(String),
}

impl BuildError {
    pub(crate) fn node(graph: &super::Graph, node: &super::Node, reason: impl ToString) -> BuildError {
        BuildError::Node(NodeIssue {
            node: node.label(graph).to_string(),
            op_type: node.op_type.clone(),
            domain: node.domain.clone(),
            opset: node.opset,
            reason: reason.to_string(),
        })
    }
}
