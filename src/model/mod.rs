//! Model packages: `model.json` and its ONNX graphs, the tokenizer, and prompt contexts.
//!
//! Everything the runtime knows about a model comes from its `model.json`; nothing here is
//! special-cased for one model.

mod context;
mod package;
mod tokenizer;

pub use context::PromptContexts;
pub use package::{
    DecoderGraph, Defaults, GraphFile, GraphSource, Graphs, ImageSpec, LatentSpec, ModelError, ModelPackage,
    PackageFiles, TextSpec, TokenizerKind, UnetGraph, Weights, PACKAGE_FORMAT,
};
pub use tokenizer::{HuggingFaceTokenizer, TokenizeError, Tokenizer, WordsTokenizer};
