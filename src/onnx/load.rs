//! ModelProto to [`Graph`].

use super::attributes::convert;
use super::generated::{tensor_shape_proto::dimension, type_proto, ModelProto, ValueInfoProto};
use super::tensor::{tensor_from_proto, ExternalData};
use super::LoadError;
use crate::graph::{DeclaredType, Dim, Graph, Node, ValueKind};
use crate::tensor::DType;
use prost::Message;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Decodes an ONNX model. `base_dir` is the folder of the model file (external data lives
/// there); `None` when the model came as bytes only.
pub fn load_model(bytes: &[u8], base_dir: Option<&Path>) -> Result<Graph, LoadError> {
    load_model_with(bytes, base_dir.into())
}

/// Decodes an ONNX model whose external data files come from `external`.
pub fn load_model_with(bytes: &[u8], external: ExternalData) -> Result<Graph, LoadError> {
    let model = ModelProto::decode(bytes)?;
    let proto = model.graph.as_ref().ok_or(LoadError::NoGraph)?;
    let mut graph = Graph::default();
    for o in &model.opset_import {
        let domain = if o.domain() == "ai.onnx" { "" } else { o.domain() };
        graph.opsets.insert(domain.to_string(), o.version().clamp(0, u32::MAX as i64) as u32);
    }
    if !graph.opsets.contains_key("") {
        return Err(LoadError::NoDefaultOpset);
    }
    if !proto.sparse_initializer.is_empty() {
        return Err(LoadError::Unsupported("sparse_initializer".into()));
    }
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for init in &proto.initializer {
        let tensor = tensor_from_proto(init, external)?;
        let id = graph.add_value(init.name().to_string(), ValueKind::Initializer);
        graph.values[id].constant = Some(Arc::new(tensor));
        if by_name.insert(init.name().to_string(), id).is_some() {
            return Err(LoadError::Duplicate(init.name().to_string()));
        }
    }
    // Older exporters also list initializers as inputs; those are parameters, not inputs.
    for input in &proto.input {
        if by_name.contains_key(input.name()) {
            continue;
        }
        let id = graph.add_value(input.name().to_string(), ValueKind::Input);
        graph.values[id].declared = declared_type(input);
        by_name.insert(input.name().to_string(), id);
        graph.inputs.push(id);
    }
    for (index, n) in proto.node.iter().enumerate() {
        let label =
            if n.name().is_empty() { format!("#{index} {}", n.op_type()) } else { n.name().to_string() };
        let mut inputs = Vec::with_capacity(n.input.len());
        for name in &n.input {
            inputs.push(match name.as_str() {
                "" => None,
                _ => {
                    Some(*by_name.get(name).ok_or_else(|| LoadError::UnknownValue {
                        node: label.clone(),
                        value: name.clone(),
                    })?)
                }
            });
        }
        // Trailing omitted inputs are the same as absent ones.
        while inputs.last() == Some(&None) {
            inputs.pop();
        }
        let mut outputs = Vec::with_capacity(n.output.len());
        for name in &n.output {
            if name.is_empty() {
                outputs.push(None);
                continue;
            }
            let id = graph.add_value(name.clone(), ValueKind::Intermediate);
            if by_name.insert(name.clone(), id).is_some() {
                return Err(LoadError::Duplicate(name.clone()));
            }
            outputs.push(Some(id));
        }
        let attributes = n
            .attribute
            .iter()
            .map(|a| Ok((a.name().to_string(), convert(&label, a, external)?)))
            .collect::<Result<_, LoadError>>()?;
        let domain = if n.domain() == "ai.onnx" { "" } else { n.domain() };
        graph.nodes.push(Node {
            name: n.name().to_string(),
            op_type: n.op_type().to_string(),
            domain: domain.to_string(),
            opset: graph.opsets.get(domain).copied().unwrap_or(0),
            attributes,
            inputs,
            outputs,
            op: None,
        });
    }
    for output in &proto.output {
        let id =
            *by_name.get(output.name()).ok_or_else(|| LoadError::MissingOutput(output.name().to_string()))?;
        graph.values[id].declared = declared_type(output);
        graph.outputs.push(id);
    }
    Ok(graph)
}

fn declared_type(info: &ValueInfoProto) -> DeclaredType {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return DeclaredType::default();
    };
    let dims = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                Some(dimension::Value::DimParam(p)) => Dim::Symbolic(p.clone()),
                _ => Dim::Symbolic("?".into()),
            })
            .collect()
    });
    DeclaredType { dtype: t.elem_type.and_then(DType::from_onnx_code), dims }
}

/// The model's `metadata_props` (key/value pairs exporters and tools attach).
pub fn model_metadata(bytes: &[u8]) -> Result<std::collections::BTreeMap<String, String>, LoadError> {
    let model = ModelProto::decode(bytes)?;
    Ok(model.metadata_props.iter().map(|p| (p.key().to_string(), p.value().to_string())).collect())
}
