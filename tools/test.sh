#!/usr/bin/env bash
# Installs what the tests need and runs every test: the README's test command, called by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s (at %dm%02ds)\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

# A cold build needs about 6 GB under target/; a full disk shows up later as a linker crash
# (signal 7), so say it plainly first.
avail_kb=$(df -Pk . | awk 'NR==2 { print $4 }')
if [ "${avail_kb:-0}" -lt 8000000 ]; then
  echo "warning: only $((avail_kb / 1024)) MiB free here; a cold build needs about 6 GB (free space or set CARGO_TARGET_DIR elsewhere)" >&2
fi

step "toolchain: wasm32 targets"
rustup target add wasm32-unknown-unknown wasm32-wasip1

step "Vulkan software adapter (Mesa lavapipe) for the GPU kernel tests"
if ! [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
fi
# Pin lavapipe and make a missing adapter fail the GPU tests instead of skipping them.
export VK_DRIVER_FILES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json FIFO_REQUIRE_GPU=1

step "python for the reference fixtures (numpy only; torch is never needed here)"
python3 -c 'import numpy' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check numpy

step "formatting"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "library and page crate build for wasm32"
# Release, as web/build.sh and the browser tests below build them: one wasm32 compile of the
# dependencies serves all three (a dev build here was a fourth, 1.5 min on a cold 2-core CI).
cargo build --release --locked --target wasm32-unknown-unknown -p fifo-diffusion -p fifo-web

step "reference fixtures regenerate bit for bit from tools/reference"
python3 tools/reference/make_parity_fixtures.py --check
python3 tools/eval_fixtures/make_fixtures.py --check  # skips itself where torch is not installed

step "tests"
log=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$log"

step "scheduler and executor tests on wasm32 (WASI under Node): same frames as natively, ops vs onnxruntime"
CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $PWD/tools/wasi/run-wasi-test.mjs $PWD" \
  cargo test --locked --target wasm32-wasip1 -p fifo-diffusion --lib \
  --test parity_official --test scheduler_invariants --test resume \
  --test op_fixtures --test model_parity --test build_errors --test corrupt_models \
  --test tokenizer_parity --test exported_packages --test flow_matching 2>&1 | tee -a "$log"

step "browser: build the page and run it in headless Chromium"
if ! [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || ! [ -x /usr/bin/chromedriver ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
bash web/build.sh  # also installs wasm-bindgen-cli (and its test runner) at the lock file's version

step "browser: scheduler and executor tests in headless Chromium (wasm CPU backend and WebGPU)"
(cd web && CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=900 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --release --locked --target wasm32-unknown-unknown -p fifo-web --test browser 2>&1) | tee -a "$log"

step "browser: the page end to end in headless Chromium, frames against the native CLI"
# The CLI that `cargo test --workspace` built above (test profile): a build of the CLI alone
# resolves the workspace's features differently and compiled the library again (5m41s cold).
FIFO_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/fifo" node web/tests/e2e.mjs

# One closing line for the whole run (cargo prints one per test binary, the last often empty).
awk '/^test result:/ { p += $4; f += $6 } END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
