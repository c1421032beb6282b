//! Phase 4: pattern rewrites (attention, GroupNorm-as-InstanceNorm, bias + activation). The
//! passes plug in here; none is registered yet, so the graph runs op by op.

use crate::graph::{BuildError, Graph};

/// One rewrite over the whole graph.
pub trait FusionPass {
    fn name(&self) -> &'static str;
    /// Rewrites the graph in place and returns how many matches it replaced.
    fn apply(&self, graph: &mut Graph) -> Result<usize, BuildError>;
}

pub fn default_passes() -> Vec<Box<dyn FusionPass>> {
    Vec::new()
}

/// Runs every pass once; reports those that changed something.
pub fn fuse(
    graph: &mut Graph,
    passes: &[Box<dyn FusionPass>],
) -> Result<Vec<(&'static str, usize)>, BuildError> {
    let mut applied = Vec::new();
    for pass in passes {
        let n = pass.apply(graph)?;
        if n > 0 {
            applied.push((pass.name(), n));
        }
    }
    Ok(applied)
}
