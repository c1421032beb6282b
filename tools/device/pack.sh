#!/usr/bin/env bash
# Builds what tools/device/suite.sh and cpu_check.sh run on a lent GPU machine and packs it into
# .dev/ (ignored by git, under the device tool's 64 MiB carry limit): the release `fifo` CLI, the
# kernels bench, the wonnx peer and the CPU test binaries, stripped and xz'd; the shipped model's
# PyTorch state (for the PyTorch baselines); one UNet call's inputs at the package defaults (8
# windows x 2 guidance passes); and into .gl/ the Vulkan/EGL loader packages.
#
#   bash tools/device/pack.sh          # then, with the device tool:
#   run(command="bash tools/device/suite.sh", carry=[".dev", ".gl"], timeout_s=600)
#   run(command="bash tools/device/cpu_check.sh", carry=[".dev"], timeout_s=420)
#
# Python here needs numpy, torch and onnxruntime (the state is rebuilt from the package).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-python3}
mkdir -p .dev

cargo build --release --locked -p fifo-cli
bench=$(cargo bench --locked --bench kernels --no-run --message-format=json 2>/dev/null |
  "$py" -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "kernels" and m.get("executable"):
        print(m["executable"])')
(cd bench/wonnx-peer && cargo build --release --locked)

pack() {  # pack SRC NAME
  strip -o ".dev/$2" "$1"
  xz -T0 -6 -f ".dev/$2"
}
pack target/release/fifo fifo
pack "$bench" kernels
pack bench/wonnx-peer/target/release/wonnx-peer wonnx-peer

# The CPU tests, for tools/device/cpu_check.sh: the lent machine's CPU runs code paths this one
# may not (AVX-512).
mkdir -p .dev/tests
cargo test --release --locked --lib --test op_fixtures --test fusion --test model_parity \
  --test cpu_batch_split --no-run --message-format=json 2>/dev/null |
  "$py" -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["target"]["name"], m["executable"])' |
  while read -r name exe; do pack "$exe" "tests/$name"; done

# A bare lent machine may lack the Vulkan/EGL loaders (its driver is there): their packages,
# for suite.sh (carry .gl too). Best effort: this needs the package registry.
if command -v apt-get >/dev/null && ! ls .gl/*.deb >/dev/null 2>&1; then
  mkdir -p .gl /tmp/amd64/partial
  grep -qx '/.gl/' "$(git rev-parse --git-path info/exclude)" 2>/dev/null ||
    echo /.gl/ >> "$(git rev-parse --git-path info/exclude)"
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  (apt-get $o update && cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 \
    libgl1 libglx0 libgles2) >/dev/null 2>&1 || echo "could not fetch the loader packages into .gl/"
fi

if ! [ -f .dev/state/config.json ]; then
  "$py" tools/model/from_package.py --state .dev/state
fi
# Only what the baselines load: the newest checkpoint, the autoencoder, the config.
find .dev/state -name 'ckpt-*.pt' | sort | head -n -1 | xargs -r rm -f

"$py" - <<'PY'
import numpy as np, pathlib
r = np.random.default_rng(0)
d = pathlib.Path(".dev/ub"); d.mkdir(exist_ok=True)
np.save(d / "latents.npy", r.standard_normal((16, 8, 4, 16, 16)).astype(np.float32))
np.save(d / "timesteps.npy", (r.random((16, 8)) * 999).astype(np.float32))
np.save(d / "context.npy", r.standard_normal((16, 8, 12, 128)).astype(np.float32))
PY
git rev-parse HEAD > .dev/commit
du -sh .dev
