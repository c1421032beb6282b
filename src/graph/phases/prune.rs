//! Phase 3: removes nodes whose outputs are all known constants or never reach a graph output.

use crate::graph::Graph;

pub fn prune(graph: &mut Graph) {
    let mut needed = vec![false; graph.values.len()];
    for &o in &graph.outputs {
        needed[o] = true;
    }
    let mut keep = vec![false; graph.nodes.len()];
    for (n, node) in graph.nodes.iter().enumerate().rev() {
        let useful = node.outputs.iter().flatten().any(|&v| needed[v] && graph.values[v].constant.is_none());
        if useful {
            keep[n] = true;
            node.inputs.iter().flatten().for_each(|&v| needed[v] = true);
        }
    }
    let mut flags = keep.into_iter();
    graph.nodes.retain(|_| flags.next().unwrap_or(false));
}
