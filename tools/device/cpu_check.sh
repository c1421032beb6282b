#!/usr/bin/env bash
# The CPU backend on the lent machine's CPU (an AVX-512 Xeon with full-width FMA units, unlike the
# project's machines: AVX2 EPYCs, or a Zen 4 whose AVX-512 runs at half width): the CPU tests
# through the AVX-512 code paths (the gemm crate's x86-v4 kernels, `cpu::simd`'s widest copy), then
# the onnxruntime benches (with the time per kind of op) and PyTorch's, in one device-tool run.
# Needs .dev/ from tools/device/pack.sh (carry it; not .gl, so that GPU tests skip).
#
#   run(command="bash tools/device/cpu_check.sh", carry=[".dev"], timeout_s=420)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
py=${PYTHON:-python3}

main() {
  mkdir -p target/release
  xz -dc .dev/fifo.xz > target/release/fifo && chmod +x target/release/fifo
  echo "binaries from commit $(cat .dev/commit 2>/dev/null || echo '?'); $(nproc) CPUs"
  # What the gemm crate's x86-v3 (AVX2) and x86-v4 (AVX-512) kernels each need (pulp's lists):
  # a VM that hides one of them sends every GEMM to a narrower kernel.
  local flag
  for flag in sse4_2 popcnt avx avx2 bmi1 bmi2 fma abm avx512f avx512bw avx512cd avx512dq avx512vl; do
    grep -qw "$flag" /proc/cpuinfo && printf '%s ' "$flag" || printf 'NO-%s ' "$flag"
  done
  echo "(lzcnt shows as abm)"
  # The gemm crate sizes its blocks from the caches Linux reports; a VM may report odd ones.
  echo "caches: $(lscpu -C=name,one-size,all-size,ways 2>/dev/null | tail -n +2 | tr -s ' ' | paste -sd ';')"
  for packed in .dev/tests/*.xz; do
    [ -e "$packed" ] || continue
    local name bin
    name=$(basename "$packed" .xz)
    bin=$(mktemp)
    xz -dc "$packed" > "$bin" && chmod +x "$bin"
    echo "== tests: $name"
    timeout 150 "$bin" -q 2>&1 | grep -E "^test result|FAILED|panicked|failures:" | head -20
  done
  echo "== CPU backend vs onnxruntime (issue 4: goal within 1.25x)"
  timeout 200 "$py" tools/bench/cpu_vs_onnxruntime.py --threads 1,2,4,16 --per-op 2>&1 | grep -E "thread|onnxruntime|fifo cpu"
  echo "== the same with the elementwise loops in AVX2 (FIFO_AVX512=0; the GEMMs use AVX-512 either way)"
  FIFO_AVX512=0 timeout 100 "$py" tools/bench/cpu_vs_onnxruntime.py --threads 1,16 2>&1 | grep thread
  echo "== CPU thread scaling, shipped model (issue 6)"
  timeout 150 "$py" tools/bench/cpu_threads.py --state .dev/state --threads 1,2,16
}

main 2>&1 | tee "$OUT/cpu.log"
