//! Arbitrary bytes as an ONNX model (and as a serialized tensor): errors are fine, panics are not.
//! Seed it with the committed fixtures: `cargo +nightly fuzz run load_model ../tests/fixtures/models/*/`.
#![no_main]

use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|data: &[u8]| {
    let _ = fifo_diffusion::onnx::decode_tensor(data);
    let _ = Session::build(ModelSource::Bytes(data), &HashMap::new(), &SessionOptions::default());
});
