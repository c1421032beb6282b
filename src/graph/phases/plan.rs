//! Phase 5: a memory plan from liveness. Every runtime value (inputs and intermediates; not
//! parameters) gets an offset in one arena, greedy by size: the largest tensors are placed
//! first at the lowest offset that does not overlap anything alive at the same time.

use crate::graph::{Graph, ValueId, ValueKind};

/// Offsets are aligned for GPU storage-buffer bindings.
pub const ALIGNMENT: usize = 256;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryPlan {
    /// Per value: the step (node index) after which it is no longer read; `None` for values
    /// that are constants or never materialised. Graph outputs live to the end.
    pub last_use: Vec<Option<usize>>,
    /// Per value: its arena offset in bytes.
    pub offsets: Vec<Option<usize>>,
    /// Arena size with reuse (or without, when reuse is off).
    pub peak_bytes: usize,
    /// What the same values would need without any reuse.
    pub unshared_bytes: usize,
}

struct Interval {
    value: ValueId,
    start: usize,
    end: usize,
    bytes: usize,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

pub fn plan(graph: &Graph, reuse: bool) -> MemoryPlan {
    let steps = graph.nodes.len();
    let runtime = |v: ValueId| graph.values[v].constant.is_none();
    let mut start: Vec<Option<usize>> = vec![None; graph.values.len()];
    let mut last_use: Vec<Option<usize>> = vec![None; graph.values.len()];
    for &i in &graph.inputs {
        start[i] = Some(0);
        last_use[i] = Some(0);
    }
    for (step, node) in graph.nodes.iter().enumerate() {
        for &v in node.inputs.iter().flatten().filter(|&&v| runtime(v)) {
            last_use[v] = Some(step);
        }
        for &v in node.outputs.iter().flatten() {
            start[v] = Some(step);
            last_use[v] = last_use[v].max(Some(step));
        }
    }
    for &o in graph.outputs.iter().filter(|&&o| runtime(o)) {
        last_use[o] = Some(steps);
    }
    let mut intervals: Vec<Interval> = (0..graph.values.len())
        .filter(|&v| runtime(v) && graph.values[v].kind != ValueKind::Initializer)
        .filter_map(|v| {
            let bytes = graph.values[v].ty.as_ref()?.size_bytes();
            Some(Interval { value: v, start: start[v]?, end: last_use[v]?, bytes: align(bytes) })
        })
        .collect();
    intervals.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.value.cmp(&b.value)));
    let unshared_bytes = intervals.iter().map(|i| i.bytes).sum();
    let mut offsets: Vec<Option<usize>> = vec![None; graph.values.len()];
    let mut placed: Vec<(usize, usize, usize, usize)> = Vec::new(); // (offset, bytes, start, end)
    let mut peak = 0;
    for it in &intervals {
        let offset = if reuse {
            let mut busy: Vec<(usize, usize)> = placed
                .iter()
                .filter(|p| p.2 <= it.end && it.start <= p.3)
                .map(|p| (p.0, p.0 + p.1))
                .collect();
            busy.sort_unstable();
            let mut candidate = 0;
            for (lo, hi) in busy {
                if candidate + it.bytes <= lo {
                    break;
                }
                candidate = candidate.max(hi);
            }
            candidate
        } else {
            peak
        };
        placed.push((offset, it.bytes, it.start, it.end));
        offsets[it.value] = Some(offset);
        peak = peak.max(offset + it.bytes);
    }
    MemoryPlan { last_use, offsets, peak_bytes: peak, unshared_bytes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;
    use crate::ops::TensorType;
    use crate::tensor::DType;

    /// x -> a -> b -> c: `a` and `c` never live together, so they share memory.
    #[test]
    fn a_chain_reuses_dead_buffers() {
        let mut g = Graph::default();
        let ids: Vec<ValueId> = ["x", "a", "b", "c"]
            .iter()
            .map(|n| {
                g.add_value(n.to_string(), if *n == "x" { ValueKind::Input } else { ValueKind::Intermediate })
            })
            .collect();
        for &v in &ids {
            g.values[v].ty = Some(TensorType::new(DType::F32, vec![256]));
        }
        g.inputs = vec![ids[0]];
        g.outputs = vec![ids[3]];
        for w in ids.windows(2) {
            g.nodes.push(Node {
                name: String::new(),
                op_type: "Relu".into(),
                domain: String::new(),
                opset: 17,
                attributes: Default::default(),
                inputs: vec![Some(w[0])],
                outputs: vec![Some(w[1])],
                op: None,
            });
        }
        let shared = plan(&g, true);
        assert_eq!(shared.unshared_bytes, 4 * 1024);
        assert_eq!(shared.peak_bytes, 2 * 1024);
        assert_eq!(plan(&g, false).peak_bytes, 4 * 1024);
    }
}
