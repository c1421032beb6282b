#!/usr/bin/env python3
"""How our CPU backend and PyTorch scale with threads on the shipped model's UNet, op by op.

For each thread count T: `fifo generate --backend cpu` with RAYON_NUM_THREADS=T and FIFO_PROFILE=1
(the CPU executor's per-op wall and CPU time of every graph run), of which the last steady-state
UNet calls (batch 16 at the defaults: 8 windows x 2 guidance passes) are averaged; and PyTorch's
UNet forward on the same batch with torch.set_num_threads(T) (the exported model's checkpoint).
Prints the UNet call's milliseconds for both, their ratio, each engine's speed-up over its 1-thread
time, and a per-op table (wall ms per thread count) that shows which ops stop scaling.

  cargo build --release -p fifo-cli
  /work/venv/bin/python tools/bench/cpu_threads.py --state /work/train-state [--threads 1,2,4,8,16]

--state holds the package's checkpoint (model.json's training.checkpoint), as for
generate_vs_pytorch.py; without torch or a checkpoint, --no-torch times ours alone.
"""
import argparse
import collections
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROMPT = "a red circle moving right on a black background"
STEADY_CALLS = 4  # the last UNet calls of a run, averaged


def ours(threads, model, frames):
    """(UNet call ms, {op: wall ms per call}) from the executor's profile of one generate run."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), FIFO_PROFILE="1")
        cmd = [str(ROOT / "target" / "release" / "fifo"), "generate", PROMPT, "--model", model,
               "--backend", "cpu", "--frames", str(frames), "--quiet", "--out", os.path.join(tmp, "v.y4m")]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"fifo generate failed: {p.stderr[-2000:]}")
    runs = []
    for line in p.stderr.splitlines():
        m = re.match(r"profile: ([\d.]+) ms in ops, ([\d.]+) ms for the whole run", line)
        if m:
            runs.append({"whole": float(m.group(2)), "ops": {}})
            continue
        m = re.match(r"\s+(\S+)\s+x(\d+)\s+([\d.]+)\s+([\d.]+)", line)
        if m and runs:
            runs[-1]["ops"][m.group(1)] = float(m.group(3))
    # The UNet calls are the runs with Conv and attention; the steady ones are the largest batch's.
    unet = [r for r in runs if "Conv" in r["ops"] and any("Attention" in k for k in r["ops"])]
    if not unet:
        sys.exit("no UNet run in the profile (FIFO_PROFILE output changed?)")
    biggest = max(r["whole"] for r in unet)
    steady = [r for r in unet if r["whole"] > biggest / 3][-STEADY_CALLS:]
    per_op = collections.defaultdict(float)
    for r in steady:
        for op, ms in r["ops"].items():
            per_op[op] += ms / len(steady)
    return sum(r["whole"] for r in steady) / len(steady), dict(per_op)


def torch_unet(threads, state, model_dir, repeat):
    import torch
    sys.path.insert(0, str(ROOT / "tools" / "model"))
    import sample
    package = json.load(open(os.path.join(model_dir, "model.json")))
    torch.set_num_threads(threads)
    model, _, _, _, _ = sample.load(state, os.path.join(state, package["training"]["checkpoint"]))
    f, zc = model.unet.frames, model.unet.zc
    h, w = package["latent"]["height"], package["latent"]["width"]
    d = package["defaults"]
    windows = d["partitions"] * (2 if d.get("lookahead", True) else 1)
    b = windows * (2 if d.get("guidance", 1.0) != 1.0 else 1)  # both guidance passes
    ctx = model.encode_prompts([PROMPT])[:, None].expand(b, f, -1, -1).contiguous()
    x, t = torch.randn(b, f, zc, h, w), torch.full((b, f), 500.0)
    with torch.no_grad():
        model(x, t, ctx)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            model(x, t, ctx)
            times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default=f"1,2,{os.cpu_count()}", help="comma-separated thread counts")
    ap.add_argument("--state", default="/work/train-state", help="training state holding the checkpoint")
    ap.add_argument("--model", default=str(ROOT / "models" / "shapes-t2v-tiny"))
    ap.add_argument("--frames", type=int, default=6, help="frames per generate run (>= 2 steady calls)")
    ap.add_argument("--repeat", type=int, default=5, help="PyTorch forwards per thread count (median)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    rows, ops = [], collections.defaultdict(dict)
    for t in counts:
        ms, per_op = ours(t, args.model, args.frames)
        for op, v in per_op.items():
            ops[op][t] = v
        peer = None if args.no_torch else torch_unet(t, args.state, args.model, args.repeat)
        rows.append((t, ms, peer))
        print(f"threads {t}: ours {ms:.1f} ms" + ("" if peer is None else f", PyTorch {peer:.1f} ms"),
              file=sys.stderr)
    base_ours, base_peer = rows[0][1], rows[0][2]
    print(f"UNet call at the package defaults (steady state), ms; speed-up over {counts[0]} thread(s)")
    print(f"{'threads':>7} {'ours':>9} {'x':>6} {'PyTorch':>9} {'x':>6} {'ours/PyTorch time':>18}")
    for t, ms, peer in rows:
        p = f"{peer:9.1f} {base_peer / peer:6.2f} {ms / peer:18.2f}" if peer else f"{'-':>9} {'-':>6} {'-':>18}"
        print(f"{t:>7} {ms:9.1f} {base_ours / ms:6.2f} {p}")
    print(f"\nours per op (wall ms per UNet call) and speed-up at {counts[-1]} threads")
    print(f"{'op':<28}" + "".join(f"{t:>9}" for t in counts) + f"{'x':>7}")
    for op, by in sorted(ops.items(), key=lambda kv: -kv[1].get(counts[0], 0)):
        first, last = by.get(counts[0]), by.get(counts[-1])
        x = f"{first / last:7.2f}" if first and last else f"{'-':>7}"
        print(f"{op:<28}" + "".join(f"{by.get(t, float('nan')):9.1f}" for t in counts) + x)


if __name__ == "__main__":
    main()
