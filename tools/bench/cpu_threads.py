#!/usr/bin/env python3
"""How our CPU backend and PyTorch scale with threads on the shipped model, in one run.

For each thread count T: `fifo generate --backend cpu --stats` with RAYON_NUM_THREADS=T, with the
UNet calls split into one part of windows per thread (the default) and kept whole
(FIFO_NO_BATCH_SPLIT=1): steady-state milliseconds per frame (one FIFO iteration: the UNet call
at the package defaults, 8 windows x 2 guidance passes, and one decode); and PyTorch's UNet
forward on the same batch with torch.set_num_threads(T) (the exported model's checkpoint).
Prints the times, each one's speed-up over its 1-thread time, and ours over PyTorch's.

  cargo build --release -p fifo-cli
  /work/venv/bin/python tools/bench/cpu_threads.py --state /work/train-state [--threads 1,2,4,8,16]

--state holds the package's checkpoint (model.json's training.checkpoint), as for
generate_vs_pytorch.py; --no-torch times ours alone.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROMPT = "a red circle moving right on a black background"


def ours(threads, model, frames, split):
    """Steady-state ms per frame of one generate run (`--stats` frames_per_second)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads), FIFO_NO_BATCH_SPLIT="0" if split else "1")
        stats = os.path.join(tmp, "stats.json")
        cmd = [str(ROOT / "target" / "release" / "fifo"), "generate", PROMPT, "--model", model,
               "--backend", "cpu", "--frames", str(frames), "--quiet", "--out", os.path.join(tmp, "v.y4m"),
               "--stats", stats]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode != 0:
            sys.exit(f"fifo generate failed: {p.stderr[-2000:]}")
        return 1e3 / json.load(open(stats))["frames_per_second"]


def torch_unet(threads, state, model_dir, repeat):
    """Median ms of PyTorch's UNet forward on the defaults' batch."""
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
    ap.add_argument("--frames", type=int, default=8, help="frames per generate run (>= 3)")
    ap.add_argument("--repeat", type=int, default=5, help="PyTorch forwards per thread count (median)")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    rows = []
    for t in counts:
        split, whole = ours(t, args.model, args.frames, True), ours(t, args.model, args.frames, False)
        peer = None if args.no_torch else torch_unet(t, args.state, args.model, args.repeat)
        rows.append((t, split, whole, peer))
        print(f"threads {t}: ours {split:.1f} ms/frame (whole calls {whole:.1f})"
              + ("" if peer is None else f", PyTorch UNet {peer:.1f} ms"), file=sys.stderr)
    print("ms per frame (ours: UNet call + decode, steady state; PyTorch: its UNet forward alone),")
    print(f"x = speed-up over {counts[0]} thread(s)")
    print(f"{'threads':>7} {'ours':>9} {'x':>6} {'whole':>9} {'x':>6} {'PyTorch':>9} {'x':>6} {'PyTorch/ours':>13}")
    _, s0, w0, p0 = rows[0]
    for t, split, whole, peer in rows:
        p = f"{peer:9.1f} {p0 / peer:6.2f} {peer / split:13.2f}" if peer else f"{'-':>9} {'-':>6} {'-':>13}"
        print(f"{t:>7} {split:9.1f} {s0 / split:6.2f} {whole:9.1f} {w0 / whole:6.2f} {p}")


if __name__ == "__main__":
    main()
