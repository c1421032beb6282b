#!/usr/bin/env python3
"""The FIFO loop with the queue on the device against the scheduler's host loop, same model, same
adapter, same settings, in one run; the CPU backend alongside. Prints steady-state frames/s, the
ratios, and per iteration: submissions, bytes uploaded and read back, and the host's share
(planning, noise, uploads) of the loop time. Traffic per iteration is the slope between a run of
--frames and one of twice as many, so session builds and the start clip cancel out.

  cargo build --release -p fifo-cli
  python3 tools/bench/queue_loops.py [--frames 2] [--partitions 1] [--model DIR] [--prompt P] [-- extra fifo args]

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


def run(label, args, extra, tmp, frames):
    stats = pathlib.Path(tmp) / f"{label}-{frames}.json"
    out = pathlib.Path(tmp) / f"{label}-{frames}.y4m"
    cmd = [str(FIFO), "generate", args.prompt, "--frames", str(frames), "--partitions", str(args.partitions),
           "--quiet", "--out", str(out), "--stats", str(stats)] + extra + args.extra
    if args.model:
        cmd += ["--model", args.model]
    print("$", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    return json.loads(stats.read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=2, help="frames of the shorter run")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--model", default=None, help="model package (default: the shipped one)")
    ap.add_argument("extra", nargs="*", help="more `fifo generate` arguments, after --")
    args = ap.parse_args()
    if not FIFO.exists():
        sys.exit(f"{FIFO} is missing: cargo build --release -p fifo-cli")
    modes = {
        "gpu, queue on device": ("device", ["--backend", "gpu"]),
        "gpu, queue on host": ("host", ["--backend", "gpu", "--host-queue"]),
        "cpu backend": ("cpu", ["--backend", "cpu"]),
    }
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (label, extra) in modes.items():
            runs[name] = (run(label, args, extra, tmp, args.frames), run(label, args, extra, tmp, 2 * args.frames))
    device = runs["gpu, queue on device"][1]
    print(f"\n{device['devices'][0]}; {args.frames} and {2 * args.frames} frames, n = {args.partitions}")
    print(f"{'':22} {'frames/s':>9} {'vs device':>9} {'subm/it':>8} {'up B/it':>10} {'down B/it':>10} {'host share':>10}")
    for label, (short, long) in runs.items():
        fps = long["frames_per_second"]
        ratio = fps / device["frames_per_second"] if device["frames_per_second"] else float("nan")
        it = max(long["iterations"] - short["iterations"], 1)
        stages = long["stages"]
        loop = stages["unet"] + stages["scheduler"] + stages["decode"]
        share = stages["scheduler"] / loop if loop else float("nan")
        if long["traffic"]:
            a, b = short["traffic"][0], long["traffic"][0]
            cols = " ".join(f"{(b[k] - a[k]) / it:{w}.{p}f}" for k, w, p in
                            [("submissions", 8, 1), ("bytes_written", 10, 0), ("bytes_read", 10, 0)])
        else:
            cols = f"{'-':>8} {'-':>10} {'-':>10}"
        print(f"{label:22} {fps:9.3f} {ratio:9.2f} {cols} {share:10.2%}")


if __name__ == "__main__":
    main()
