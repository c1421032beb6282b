#!/usr/bin/env python3
"""Constant memory in video length: `fifo generate` at two lengths (default 64 and 4096 frames),
same model and settings, on the CPU backend and on the GPU backend (queue on the device); prints
peak host RSS and peak device tensor bytes of each run and their ratio (goal: equal within 1%).

  cargo build --release -p fifo-cli
  python3 tools/bench/constant_memory.py [--short 64] [--long 4096] [--model DIR] [--backends cpu,gpu]

Frames go to a Y4M on stdout, discarded; settings default to the cheapest (n = 1, no lookahead, no
guidance), since memory depends on the queue's and the model's sizes, not on the speed. On a
software adapter pass the micro test package (--model tests/fixtures/loop/micro-t2v) for the GPU:
lavapipe needs seconds per iteration of the shipped model.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIFO = ROOT / "target" / "release" / "fifo"


def run(args, backend, frames, tmp):
    stats = pathlib.Path(tmp) / f"{backend}-{frames}.json"
    cmd = [str(FIFO), "generate", args.prompt, "--frames", str(frames), "--backend", backend,
           "--partitions", "1", "--no-lookahead", "--guidance", "1", "--quiet", "--out", "-",
           "--stats", str(stats)]
    if args.model:
        cmd += ["--model", args.model]
    print("$", " ".join(cmd), "> /dev/null", file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(stats.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", type=int, default=64)
    ap.add_argument("--long", type=int, default=4096)
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompt", default="a red circle moving right on a black background")
    ap.add_argument("--backends", default="cpu,gpu")
    args = ap.parse_args()
    if not FIFO.exists():
        sys.exit(f"{FIFO} is missing: cargo build --release -p fifo-cli")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            short, long = run(args, backend, args.short, tmp), run(args, backend, args.long, tmp)
            rows.append((backend, short, long))
    print(f"\n{'backend':8} {'figure':18} {args.short:>12} {args.long:>12} {'ratio':>8}")
    for backend, short, long in rows:
        figures = [("peak host RSS", short["peak_host_rss_bytes"], long["peak_host_rss_bytes"])]
        for i, device in enumerate(short["devices"] if short["peak_device_bytes"] else []):
            figures.append((f"peak device bytes", short["peak_device_bytes"][i], long["peak_device_bytes"][i]))
        for name, a, b in figures:
            print(f"{backend:8} {name:18} {a:12d} {b:12d} {b / a:8.4f}")
        print(f"{'':8} {'frames/s':18} {short['frames_per_second']:12.2f} {long['frames_per_second']:12.2f}")
    print(f"\n{rows[0][1]['devices'][0]}" + (f"; {rows[-1][1]['devices'][0]}" if len(rows) > 1 else ""))


if __name__ == "__main__":
    main()
