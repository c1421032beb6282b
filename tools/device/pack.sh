#!/usr/bin/env bash
# Builds what tools/device/suite.sh runs on a lent GPU machine and packs it into .dev/ (ignored
# by git, under the device tool's 64 MiB carry limit): the release `fifo` CLI, the kernels bench
# and the wonnx peer, stripped and xz'd; the shipped model's PyTorch state (for the PyTorch
# baselines); one UNet call's inputs at the package defaults (8 windows x 2 guidance passes).
#
#   bash tools/device/pack.sh          # then, with the device tool:
#   run(command="bash tools/device/suite.sh", carry=[".dev"], timeout_s=600)
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
