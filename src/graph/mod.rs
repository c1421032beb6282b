//! The executor's graph and the build phases that turn a loaded ONNX graph into something a
//! backend can run: parse ops, fold constants and infer static shapes, remove dead nodes, fuse,
//! plan memory.

mod error;
mod ir;
pub mod phases;

pub use error::{BuildError, NodeIssue};
pub use ir::{DeclaredType, Dim, Graph, Node, Value, ValueId, ValueKind};
