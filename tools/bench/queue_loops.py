#!/usr/bin/env python3
"""The FIFO loop with the queue on the device against the scheduler's host loop, same model, same
adapter, same settings, in one run; the CPU backend alongside. Prints steady-state frames/s, the
ratios, and per iteration: submissions, bytes uploaded and read back, and the host's share
(planning, noise, uploads) of the loop time.

  cargo build --release -p fifo-cli
  python3 tools/bench/queue_loops.py [--frames 4] [--partitions 1] [--model DIR] [-- extra fifo args]

On a software adapter (lavapipe) model time dominates and the ratio says little about real
GPUs; there the traffic columns are the point: the host loop moves every window's latents and
contexts up and the model output down each iteration, the device loop the plan and one frame.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIFO = ROOT / "target" / "release" / "fifo"
PROMPT = "a red circle moving right on a black background"


def run(label, args, extra, tmp):
    stats = pathlib.Path(tmp) / f"{label}.json"
    out = pathlib.Path(tmp) / f"{label}.y4m"
    cmd = [str(FIFO), "generate", PROMPT, "--frames", str(args.frames), "--partitions", str(args.partitions),
           "--quiet", "--out", str(out), "--stats", str(stats)] + extra + args.extra
    if args.model:
        cmd += ["--model", args.model]
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    return json.loads(stats.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--model", default=None, help="model package (default: the shipped one)")
    ap.add_argument("extra", nargs="*", help="more `fifo generate` arguments, after --")
    args = ap.parse_args()
    if not FIFO.exists():
        sys.exit(f"{FIFO} is missing: cargo build --release -p fifo-cli")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "gpu, queue on device": run("device", args, ["--backend", "gpu"], tmp),
            "gpu, queue on host": run("host", args, ["--backend", "gpu", "--host-queue"], tmp),
            "cpu backend": run("cpu", args, ["--backend", "cpu"], tmp),
        }
    device = runs["gpu, queue on device"]
    print(f"\n{device['devices'][0]}; {args.frames} frames, n = {args.partitions}")
    print(f"{'':22} {'frames/s':>9} {'vs device':>9} {'subm/it':>8} {'up B/it':>10} {'down B/it':>10} {'host share':>10}")
    for label, s in runs.items():
        fps = s["frames_per_second"]
        ratio = fps / device["frames_per_second"] if device["frames_per_second"] else float("nan")
        it = max(s["iterations"], 1)
        t = s["traffic"][0] if s["traffic"] else None
        stages = s["stages"]["run"]
        loop = stages["unet"] + stages["scheduler"] + stages["decode"]
        share = stages["scheduler"] / loop if loop else float("nan")
        cols = (f"{t['submissions'] / it:8.1f} {t['bytes_written'] / it:10.0f} {t['bytes_read'] / it:10.0f}"
                if t else f"{'-':>8} {'-':>10} {'-':>10}")
        print(f"{label:22} {fps:9.3f} {ratio:9.2f} {cols} {share:10.2%}")
    print("\n(traffic per iteration includes the session builds and the start clip, spread over the run)")


if __name__ == "__main__":
    main()
