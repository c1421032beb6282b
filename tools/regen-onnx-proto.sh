#!/usr/bin/env bash
# Regenerates src/onnx/generated.rs from proto/onnx.proto. Needs protoc
# (apt-get install -y protobuf-compiler); the library build itself never does.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cargo run --quiet --manifest-path "$root/tools/gen-onnx-proto/Cargo.toml" \
  --target-dir "${CARGO_TARGET_DIR:-$root/target}/gen-onnx-proto" -- "$root"
rustfmt --edition 2021 "$root/src/onnx/generated.rs"
