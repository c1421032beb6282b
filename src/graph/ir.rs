//! The graph as plain data: values (inputs, initializers, intermediates) and nodes in
//! topological order.

use crate::ops::{AttrValue, Op, TensorType};
use crate::tensor::{DType, Tensor};
use std::collections::BTreeMap;
use std::sync::Arc;

pub type ValueId = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Input,
    Initializer,
    Intermediate,
}

/// A dimension as the model declares it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

/// An input's or output's type as the model declares it (dims may be symbolic or missing).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DeclaredType {
    pub dtype: Option<DType>,
    pub dims: Option<Vec<Dim>>,
}

#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub kind: ValueKind,
    pub declared: DeclaredType,
    /// Static type, known after shape inference.
    pub ty: Option<TensorType>,
    /// The value itself when known at build time (initializers and folded results).
    pub constant: Option<Arc<Tensor>>,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub opset: u32,
    pub attributes: BTreeMap<String, AttrValue>,
    /// `None` for an omitted optional input.
    pub inputs: Vec<Option<ValueId>>,
    /// `None` for an omitted optional output.
    pub outputs: Vec<Option<ValueId>>,
    /// The parsed op, set by the parse phase.
    pub op: Option<Op>,
}

impl Node {
    /// The name used in messages: the node name, or its first output when it has none.
    pub fn label<'a>(&'a self, graph: &'a Graph) -> &'a str {
        if !self.name.is_empty() {
            return &self.name;
        }
        self.outputs.iter().flatten().next().map_or("<unnamed>", |&v| graph.values[v].name.as_str())
    }
}

#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Opset version per domain ("" is the default ONNX domain).
    pub opsets: BTreeMap<String, u32>,
}

impl Graph {
    pub fn add_value(&mut self, name: String, kind: ValueKind) -> ValueId {
        self.values.push(Value { name, kind, declared: DeclaredType::default(), ty: None, constant: None });
        self.values.len() - 1
    }

    pub fn value_named(&self, name: &str) -> Option<ValueId> {
        self.values.iter().position(|v| v.name == name)
    }

    /// Bytes held by initializers.
    pub fn parameter_bytes(&self) -> usize {
        self.values
            .iter()
            .filter(|v| v.kind == ValueKind::Initializer)
            .filter_map(|v| v.constant.as_ref())
            .map(|t| t.size_bytes())
            .sum()
    }

    pub fn parameter_count(&self) -> usize {
        self.values
            .iter()
            .filter(|v| v.kind == ValueKind::Initializer)
            .filter_map(|v| v.constant.as_ref())
            .map(|t| t.len())
            .sum()
    }
}
