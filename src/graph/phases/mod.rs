//! Build phases, in order: [`parse`] every node into an op, [`propagate`] static types while
//! folding constants, [`prune`] dead nodes, [`fuse`] patterns, [`plan`] memory from liveness.

pub mod fuse;
pub mod parse;
pub mod plan;
pub mod propagate;
pub mod prune;

use super::{BuildError, Graph};
use plan::MemoryPlan;
use std::collections::HashMap;

/// Knobs of the build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// Largest result (in bytes) that folding may compute at build time.
    pub fold_limit_bytes: usize,
    /// Largest tensor the built graph may hold; larger ones fail the build with the node's name.
    /// Checked after fusion: a fused attention's scores never exist, whatever their size.
    pub max_tensor_bytes: usize,
    /// Reuse buffers whose lifetimes do not overlap; off only to debug the plan.
    pub memory_reuse: bool,
    /// Run the fusion passes (`FIFO_NO_FUSION=1` turns them off).
    pub fuse: bool,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            fold_limit_bytes: 64 << 20,
            // 4 GiB, or all a 32-bit address space (wasm32) can hold.
            max_tensor_bytes: usize::try_from(4u64 << 30).unwrap_or(usize::MAX),
            // FIFO_NO_MEMORY_REUSE=1 turns reuse off to tell a planning bug from a kernel bug.
            memory_reuse: std::env::var_os("FIFO_NO_MEMORY_REUSE").is_none_or(|v| v == "0"),
            fuse: std::env::var_os("FIFO_NO_FUSION").is_none_or(|v| v == "0"),
        }
    }
}

/// A graph ready to run: every remaining node has an op and static types.
#[derive(Clone, Debug)]
pub struct BuiltGraph {
    pub graph: Graph,
    pub plan: MemoryPlan,
    /// Fusion passes that changed the graph, with how many rewrites each made.
    pub fusions: Vec<(&'static str, usize)>,
}

/// Runs every phase. `input_shapes` overrides (or completes) the declared input shapes.
pub fn build(
    mut graph: Graph,
    input_shapes: &HashMap<String, Vec<usize>>,
    options: &BuildOptions,
) -> Result<BuiltGraph, BuildError> {
    parse::parse_ops(&mut graph)?;
    propagate::propagate(&mut graph, input_shapes, options)?;
    prune::prune(&mut graph);
    let passes = if options.fuse { fuse::default_passes() } else { Vec::new() };
    let fusions = fuse::fuse(&mut graph, &passes)?;
    prune::prune(&mut graph);
    propagate::check_sizes(&graph, options.max_tensor_bytes)?;
    let plan = plan::plan(&graph, options.memory_reuse);
    Ok(BuiltGraph { graph, plan, fusions })
}
