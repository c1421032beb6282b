//! Errors of ONNX decoding: never a panic, always the name of what is wrong.

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid ONNX protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the model has no graph")]
    NoGraph,
    #[error("the model does not import the default ONNX domain (opset_import)")]
    NoDefaultOpset,
    #[error("tensor '{tensor}': {problem}")]
    Tensor { tensor: String, problem: String },
    #[error("tensor '{tensor}': external data '{location}': {problem}")]
    ExternalData { tensor: String, location: String, problem: String },
    #[error("node '{node}' attribute '{attribute}': {problem}")]
    Attribute { node: String, attribute: String, problem: String },
    #[error("node '{node}' reads '{value}', which is neither a graph input, an initializer nor an earlier node's output")]
    UnknownValue { node: String, value: String },
    #[error("value '{0}' is produced twice")]
    Duplicate(String),
    #[error("graph output '{0}' is never produced")]
    MissingOutput(String),
    #[error("{0} is not supported")]
    Unsupported(String),
}

impl LoadError {
    pub(crate) fn tensor(tensor: &str, problem: impl Into<String>) -> LoadError {
        LoadError::Tensor { tensor: tensor.to_string(), problem: problem.into() }
    }
}
