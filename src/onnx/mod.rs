//! ONNX model loading in pure Rust (prost code generated once from `proto/onnx.proto`, so no
//! protoc is needed to build, natively or for wasm32).

mod attributes;
mod error;
#[allow(clippy::all, missing_docs)]
mod generated;
mod load;
mod quantize;
mod tensor;

pub use error::LoadError;
pub use load::{load_model, load_model_with, model_metadata};
pub use quantize::{
    quantize_per_channel, quantize_weights, save_model, ConvertedWeight, QuantizeError, QuantizeReport,
    WeightFormat,
};
pub use tensor::{decode_tensor, ExternalData};

/// The raw protobuf types, for tools that need them.
pub mod proto {
    pub use super::generated::*;
}
