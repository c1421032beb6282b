#!/usr/bin/env bash
# The measurements only a lent GPU machine gives, in one run of the device tool, most needed
# first, each step under its own time cap and all of them under BUDGET seconds (default 540, for
# the tool's 600-second command limit). Needs .dev/ and .gl/ from tools/device/pack.sh (carry them).
#
#   run(command="bash tools/device/suite.sh", carry=[".dev", ".gl"], timeout_s=600)
#
# Everything printed also goes to $OUT/suite.log (the device tool brings $OUT back); steps that
# cannot run (no CUDA torch, no onnxruntime) say why and the suite goes on.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUDGET=${BUDGET:-540}
OUT=${OUT:-$(mktemp -d)}

main() {
  [ -f .dev/fifo.xz ] || { echo ".dev/ is missing: run tools/device/pack.sh here and carry .dev"; exit 2; }
  unpack() {  # unpack NAME DEST
    mkdir -p "$(dirname "$2")"
    xz -dc ".dev/$1.xz" > "$2" && chmod +x "$2"
  }
  # A bare machine may lack the Vulkan/EGL loaders (the driver is there): .gl/ holds their
  # packages when tools/device/pack.sh could fetch them.
  if ! ldconfig -p | grep -q libvulkan.so.1 && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    echo "installed the Vulkan/EGL loaders from .gl/"
  fi
  nv=/usr/local/nvidia/share
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f $nv/vulkan/icd.d/nvidia_icd.json ] &&
    ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=$nv/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=$nv/glvnd/egl_vendor.d/10_nvidia.json
  fi
  unpack fifo target/release/fifo
  unpack wonnx-peer bench/wonnx-peer/target/release/wonnx-peer
  unpack kernels .dev/bin/kernels
  echo "binaries from commit $(cat .dev/commit 2>/dev/null || echo '?'); $(nproc) CPUs"

  py=${PYTHON:-python3}
  has() { "$py" -c "import $1" 2>/dev/null; }
  cuda=$("$py" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)

  step() {  # step NAME CAP_SECONDS COMMAND...; SKIP="word ..." skips steps whose name has a word
    local name=$1 cap=$2
    shift 2
    local w
    for w in ${SKIP:-}; do
      case "$name" in *"$w"*) echo "== $name: skipped (SKIP=$SKIP)"; return ;; esac
    done
    local left=$((BUDGET - SECONDS))
    if [ "$left" -lt 20 ]; then
      echo "== $name: skipped, the budget is spent"
      return
    fi
    [ "$cap" -gt "$left" ] && cap=$left
    echo "== $name (at ${SECONDS}s, cap ${cap}s): $*"
    local t0=$SECONDS
    timeout --kill-after=5 "$cap" "$@"
    echo "== $name: exit $? after $((SECONDS - t0))s"
  }

  step "adapters" 30 sh -c 'nvidia-smi -L 2>/dev/null; target/release/fifo devices'

  if has onnxruntime && has onnx; then
    step "wonnx peer (issue 4: goal 3x)" 150 "$py" tools/bench/wonnx_peer.py --repeat 10
  else
    echo "== wonnx peer: skipped ($py lacks onnx or onnxruntime)"
  fi

  if [ "$cuda" = 1 ]; then
    step "generate vs PyTorch CUDA (issue 6)" 150 "$py" tools/bench/generate_vs_pytorch.py \
      --state .dev/state --frames 50 --backends gpu --precision f32,f16 --torch-device cuda
  else
    echo "== generate vs PyTorch CUDA: skipped (no torch with CUDA in $py)"
  fi

  step "UNet call at batch 16, per-kernel device time" 60 env FIFO_GPU_PROFILE=1 \
    target/release/fifo onnx run models/shapes-t2v-tiny/unet.onnx --backend gpu --repeat 3 \
    --input latents=.dev/ub/latents.npy --input timesteps=.dev/ub/timesteps.npy \
    --input context=.dev/ub/context.npy --output-dir "$OUT/unet"

  for style in tiled blocked; do
    step "generate, $style kernels" 60 env FIFO_KERNEL_STYLE=$style target/release/fifo generate \
      "a red circle moving right on a black background" --backend gpu --frames 50 --quiet \
      --out "$OUT/$style.y4m" --stats "$OUT/stats-$style.json"
    [ -f "$OUT/stats-$style.json" ] && "$py" -c "import json,sys; s=json.load(open(sys.argv[1])); print({k: s[k] for k in ('frames_per_second', 'model_calls', 'peak_device_bytes') if k in s})" "$OUT/stats-$style.json"
  done

  if has torch; then
    step "CPU thread scaling (issue 6)" 180 "$py" tools/bench/cpu_threads.py --state .dev/state \
      --threads "1,2,4,8,$(nproc)"
  else
    step "CPU thread scaling, ours only (issue 6)" 150 "$py" tools/bench/cpu_threads.py --no-torch \
      --threads "1,2,4,8,$(nproc)"
  fi

  step "kernel throughput" 90 sh -c 'FIFO_BENCH_ADAPTER=$(target/release/fifo devices --json 2>/dev/null |
    '"$py"' -c "import json,sys; print(next((d[\"index\"] for d in json.load(sys.stdin) if d[\"device_type\"] != \"Cpu\"), 0))") .dev/bin/kernels'

  rm -f "$OUT"/*.y4m
  echo "== done at ${SECONDS}s of ${BUDGET}s"
}

main 2>&1 | tee "$OUT/suite.log"
