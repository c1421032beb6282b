//! Errors of the op layer: attribute parsing, shape inference and the CPU reference.

use crate::tensor::{DType, TensorError};

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum OpError {
    #[error("attribute '{name}' is not supported (this op reads: {known})")]
    UnknownAttribute { name: String, known: String },
    #[error("attribute '{name}' {problem}")]
    BadAttribute { name: String, problem: String },
    #[error("{what} is not supported; supported: {supported}")]
    Unsupported { what: String, supported: String },
    #[error("input {index} ('{name}') is required")]
    MissingInput { index: usize, name: &'static str },
    #[error("input '{name}' must be known when the session is built (a constant, or computed from input shapes only)")]
    NotConstant { name: &'static str },
    #[error("input '{name}' has dtype {actual}; expected {expected}")]
    InputType { name: &'static str, actual: DType, expected: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

impl OpError {
    pub fn invalid(message: impl Into<String>) -> OpError {
        OpError::Invalid(message.into())
    }

    pub fn unsupported(what: impl Into<String>, supported: impl Into<String>) -> OpError {
        OpError::Unsupported { what: what.into(), supported: supported.into() }
    }

    pub fn bad_attribute(name: &str, problem: impl Into<String>) -> OpError {
        OpError::BadAttribute { name: name.to_string(), problem: problem.into() }
    }
}
