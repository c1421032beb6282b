//! Phase 2: static types for every value, in topological order, folding nodes whose inputs are
//! known at build time. The two go together because torch's exports compute shapes in the
//! graph (Shape -> Gather -> Concat -> Reshape): a Reshape's type needs the folded shape value.

use super::BuildOptions;
use crate::graph::{BuildError, Dim, Graph, ValueKind};
use crate::ops::{TensorType, ValueInfo};
use crate::tensor::shape::checked_numel;
use std::collections::HashMap;
use std::sync::Arc;

fn input_types(graph: &mut Graph, given: &HashMap<String, Vec<usize>>) -> Result<(), BuildError> {
    for name in given.keys() {
        if !graph.inputs.iter().any(|&i| graph.values[i].name == *name) {
            let known: Vec<&str> = graph.inputs.iter().map(|&i| graph.values[i].name.as_str()).collect();
            return Err(BuildError::Input {
                name: name.clone(),
                problem: format!("the model has no such input; its inputs are {known:?}"),
            });
        }
    }
    for &id in &graph.inputs {
        let value = &mut graph.values[id];
        let fail = |problem: String| BuildError::Input { name: value.name.clone(), problem };
        let dtype = value
            .declared
            .dtype
            .ok_or_else(|| fail("the model declares no supported element type for it".into()))?;
        let declared = value.declared.dims.clone();
        let shape = match (given.get(&value.name), declared) {
            (Some(shape), Some(dims)) => {
                let fits = dims.len() == shape.len()
                    && dims.iter().zip(shape).all(|(d, &s)| !matches!(d, Dim::Fixed(f) if *f != s));
                if !fits {
                    return Err(fail(format!("shape {shape:?} contradicts the declared {dims:?}")));
                }
                shape.clone()
            }
            (Some(shape), None) => shape.clone(),
            (None, Some(dims)) => dims
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => Ok(*n),
                    Dim::Symbolic(_) => Err(fail(format!(
                        "its shape {dims:?} has free dims; give the shape when building the session"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            (None, None) => {
                return Err(fail("the model declares no shape; give one when building the session".into()))
            }
        };
        value.ty = Some(TensorType::new(dtype, shape));
    }
    for value in &mut graph.values {
        if let (ValueKind::Initializer, Some(c)) = (value.kind, &value.constant) {
            value.ty = Some(TensorType::of(c));
        }
    }
    Ok(())
}

/// Node indices in an order where every input is ready before use (ONNX requires the nodes to
/// be sorted; this tolerates exporters that are not).
fn topological_order(graph: &Graph) -> Result<Vec<usize>, BuildError> {
    let mut ready: Vec<bool> = graph.values.iter().map(|v| v.kind != ValueKind::Intermediate).collect();
    let mut order = Vec::with_capacity(graph.nodes.len());
    let mut pending: Vec<usize> = (0..graph.nodes.len()).collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|&n| {
            let node = &graph.nodes[n];
            if node.inputs.iter().flatten().all(|&v| ready[v]) {
                node.outputs.iter().flatten().for_each(|&v| ready[v] = true);
                order.push(n);
                false
            } else {
                true
            }
        });
        if pending.len() == before {
            return Err(BuildError::Order(graph.nodes[pending[0]].label(graph).to_string()));
        }
    }
    Ok(order)
}

/// Bytes of a type, or why it is too large to run (a corrupt or hostile shape must be an
/// error here, not an allocation failure later).
fn checked_bytes(ty: &TensorType, limit: usize) -> Result<usize, String> {
    let bytes = checked_numel(&ty.shape).ok().and_then(|n| n.checked_mul(ty.dtype.size_bytes()));
    match bytes {
        Some(b) if b <= limit => Ok(b),
        _ => Err(format!(
            "its output {} {:?} exceeds the tensor size limit of {limit} bytes",
            ty.dtype, ty.shape
        )),
    }
}

/// Fails the build on the first value over `limit` bytes, naming the node that makes it. Runs
/// on the final graph, after fusion.
pub fn check_sizes(graph: &Graph, limit: usize) -> Result<(), BuildError> {
    for node in &graph.nodes {
        for &v in node.outputs.iter().flatten() {
            if let Some(ty) = &graph.values[v].ty {
                checked_bytes(ty, limit).map_err(|reason| BuildError::node(graph, node, reason))?;
            }
        }
    }
    Ok(())
}

pub fn propagate(
    graph: &mut Graph,
    given: &HashMap<String, Vec<usize>>,
    options: &BuildOptions,
) -> Result<(), BuildError> {
    input_types(graph, given)?;
    let order = topological_order(graph)?;
    let mut unsorted: Vec<Option<_>> = std::mem::take(&mut graph.nodes).into_iter().map(Some).collect();
    graph.nodes = order.into_iter().filter_map(|i| unsorted[i].take()).collect();
    for index in 0..graph.nodes.len() {
        let node = &graph.nodes[index];
        let fail = |reason: String| BuildError::node(graph, node, reason);
        let op = node.op.as_ref().ok_or_else(|| fail("the op was not parsed".into()))?;
        // Topological order types every input before its readers; `None` would be a bug.
        let infos: Vec<Option<ValueInfo>> = node
            .inputs
            .iter()
            .map(|i| match i {
                None => Ok(None),
                Some(v) => graph.values[*v]
                    .ty
                    .clone()
                    .map(|ty| Some(ValueInfo { ty, value: graph.values[*v].constant.clone() }))
                    .ok_or_else(|| BuildError::Order(node.label(graph).to_string())),
            })
            .collect::<Result<_, _>>()?;
        let refs: Vec<Option<&ValueInfo>> = infos.iter().map(|i| i.as_ref()).collect();
        let types = op.spec().infer(&refs).map_err(|e| fail(e.to_string()))?;
        if types.len() < node.outputs.len() {
            return Err(fail(format!(
                "produces {} outputs, the node names {}",
                types.len(),
                node.outputs.len()
            )));
        }
        // Only overflow fails here: the size limit is checked after fusion ([`check_sizes`]),
        // which removes intermediates (attention scores) that are never materialised.
        let output_bytes = types
            .iter()
            .map(|t| checked_bytes(t, usize::MAX))
            .try_fold(0usize, |sum, b| b.map(|b| sum.saturating_add(b)))
            .map_err(fail)?;
        let all_known = refs.iter().flatten().all(|i| i.value.is_some());
        let folded = match op.spec().fold_from_types(&refs) {
            Some(values) => Some(values),
            None if all_known && op.spec().foldable() && output_bytes <= options.fold_limit_bytes => {
                let tensors: Vec<Option<&crate::tensor::Tensor>> =
                    refs.iter().map(|i| i.and_then(|i| i.value.as_deref())).collect();
                Some(op.spec().run(&tensors).map_err(|e| fail(e.to_string()))?)
            }
            None => None,
        };
        let outputs = node.outputs.clone();
        for (k, out) in outputs.iter().enumerate() {
            let Some(v) = *out else { continue };
            graph.values[v].ty = Some(types[k].clone());
            if let Some(values) = &folded {
                graph.values[v].constant = values.get(k).cloned().map(Arc::new);
            }
        }
    }
    Ok(())
}
