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
    super::parallel::on_pool(|| execute_here(built, inputs))
}

fn execute_here(built: &BuiltGraph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
    let graph = &built.graph;
    let mut slots: Vec<Option<Tensor>> = vec![None; graph.values.len()];
    for (&id, tensor) in graph.inputs.iter().zip(inputs) {
        slots[id] = Some(tensor);
    }
    let mut profile = Profile::from_env();
    for (step, node) in graph.nodes.iter().enumerate() {
        let started = profile.start();
        let fail = |source: OpError| RunError {
            node: node.label(graph).to_string(),
            op_type: node.op_type.clone(),
            source,
        };
        let op = node.op.as_ref().ok_or_else(|| fail(OpError::invalid("node was not parsed")))?;
        let args: Vec<Option<&Tensor>> =
            node.inputs.iter().map(|i| i.and_then(|v| value(graph, &slots, v))).collect();
        if node.inputs.iter().zip(&args).any(|(i, a)| i.is_some() && a.is_none()) {
            return Err(fail(OpError::invalid("an input was freed or never computed (memory plan bug)")));
        }
        let outputs = op.spec().run(&args).map_err(fail)?;
        profile.record(&node.op_type, started);
        profile.record_node(|| {
            let shapes: Vec<String> = args.iter().flatten().map(|t| format!("{:?}", t.shape())).collect();
            format!("{} ({}) {}", node.label(graph), node.op_type, shapes.join(" "))
        });
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
    profile.report();
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

fn value<'a>(graph: &'a crate::graph::Graph, slots: &'a [Option<Tensor>], v: ValueId) -> Option<&'a Tensor> {
    graph.values[v].constant.as_deref().or(slots[v].as_ref())
}

/// Time per op type, printed to stderr after each run when `FIFO_PROFILE=1`, and the slowest
/// nodes with their input shapes with `FIFO_PROFILE=nodes` (native only: wasm32 has no clock in
/// std).
#[derive(Default)]
struct Profile {
    enabled: bool,
    /// (CPU ms, node and input shapes) per node, when asked for.
    nodes: Option<Vec<(f64, String)>>,
    last_cpu_ms: f64,
    /// Per op type: nodes, wall ms, CPU ms (all threads of the process).
    totals: std::collections::BTreeMap<String, (usize, f64, f64)>,
    run_started: Option<Instant>,
    cpu_started: f64,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    node_cpu_started: f64,
}

/// CPU seconds used by the whole process so far (0 where the platform does not say).
fn process_cpu_seconds() -> f64 {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
        }
    }
    0.0
}

#[cfg(not(target_arch = "wasm32"))]
type Instant = std::time::Instant;
#[cfg(target_arch = "wasm32")]
type Instant = ();

impl Profile {
    fn from_env() -> Profile {
        let enabled =
            cfg!(not(target_arch = "wasm32")) && std::env::var_os("FIFO_PROFILE").is_some_and(|v| v != "0");
        let per_node = enabled && std::env::var_os("FIFO_PROFILE").is_some_and(|v| v == "nodes");
        let mut profile = Profile { enabled, nodes: per_node.then(Vec::new), ..Default::default() };
        profile.run_started = profile.start();
        profile.cpu_started = if enabled { process_cpu_seconds() } else { 0.0 };
        profile
    }

    fn start(&mut self) -> Option<Instant> {
        #[cfg(not(target_arch = "wasm32"))]
        if self.enabled {
            self.node_cpu_started = process_cpu_seconds();
            return Some(std::time::Instant::now());
        }
        None
    }

    #[allow(unused_variables)]
    fn record(&mut self, op_type: &str, started: Option<Instant>) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(t) = started {
            let entry = self.totals.entry(op_type.to_string()).or_default();
            entry.0 += 1;
            entry.1 += t.elapsed().as_secs_f64() * 1e3;
            self.last_cpu_ms = (process_cpu_seconds() - self.node_cpu_started) * 1e3;
            entry.2 += self.last_cpu_ms;
        }
    }

    /// Keeps the last recorded node's CPU time under the label `describe` makes (only called
    /// for its output when per-node profiling is on).
    fn record_node(&mut self, describe: impl FnOnce() -> String) {
        let ms = self.last_cpu_ms;
        if let Some(nodes) = &mut self.nodes {
            nodes.push((ms, describe()));
        }
    }

    fn report(&self) {
        if !self.enabled {
            return;
        }
        let mut rows: Vec<_> = self.totals.iter().collect();
        rows.sort_by(|a, b| b.1 .2.total_cmp(&a.1 .2).then(b.1 .1.total_cmp(&a.1 .1)));
        let total: f64 = rows.iter().map(|r| r.1 .1).sum();
        let cpu: f64 = rows.iter().map(|r| r.1 .2).sum();
        #[cfg(not(target_arch = "wasm32"))]
        let whole = self.run_started.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
        #[cfg(target_arch = "wasm32")]
        let whole = 0.0;
        let whole_cpu = (process_cpu_seconds() - self.cpu_started) * 1e3;
        eprintln!(
            "profile: {total:.2} ms in ops, {whole:.2} ms for the whole run; CPU time {cpu:.2} ms in ops, \
             {whole_cpu:.2} ms in all"
        );
        eprintln!("  {:<24} {:<6} {:>12} {:>12}", "op", "nodes", "wall ms", "cpu ms");
        for (op, (n, ms, cpu_ms)) in rows {
            eprintln!("  {op:<24} x{n:<5} {ms:>12.3} {cpu_ms:>12.3}");
        }
        if let Some(nodes) = &self.nodes {
            let mut nodes = nodes.clone();
            nodes.sort_by(|a, b| b.0.total_cmp(&a.0));
            eprintln!("  slowest nodes (cpu ms, node, input shapes):");
            for (ms, label) in nodes.iter().take(25) {
                eprintln!("  {ms:>10.3}  {label}");
            }
        }
    }
}
