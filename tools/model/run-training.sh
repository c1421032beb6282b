#!/usr/bin/env bash
# (Re)start the default model's training as a detached background job that outlives the shell.
# Resumes from the newest checkpoint in the state directory (a fresh run if there is none).
# Usage: tools/model/run-training.sh [STATE_DIR]      (default /work/train-state)
set -euo pipefail
STATE="${1:-/work/train-state}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY="${PYTHON:-/work/venv/bin/python}"
mkdir -p "$STATE"
if [ -f "$STATE/train.pid" ] && kill -0 "$(cat "$STATE/train.pid")" 2>/dev/null; then
  echo "already running: pid $(cat "$STATE/train.pid") (log $STATE/train.log)"; exit 0
fi
RESUME=""
if [ -f "$STATE/config.json" ]; then RESUME="--resume"; fi
cd "$ROOT"
# PASSIVE: spinning OpenMP threads slow everything ~10x when other jobs share the 2 cores.
setsid nohup env OMP_WAIT_POLICY=PASSIVE "$PY" tools/model/train.py --state "$STATE" --threads 2 $RESUME \
  >> "$STATE/nohup.log" 2>&1 < /dev/null &
sleep 2
echo "started pid $(cat "$STATE/train.pid" 2>/dev/null || echo '?') (log $STATE/train.log, output $STATE/nohup.log)"
