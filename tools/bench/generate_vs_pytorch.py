#!/usr/bin/env python3
"""End to end on the shipped model: `fifo generate` (our CPU backend, and with `--backends cpu,gpu`
our GPU path too) against the same model and the same FIFO algorithm in PyTorch (the project's
Python reference loop, tools/model/fifo.py) on the CPU with the same threads, or with
`--torch-device cuda` on the GPU in f32, in one run. Prints
steady-state frames/s and the ratios.

Steady state = one FIFO iteration per frame (all windows, both guidance passes, one decode):
PyTorch's is the slope between two video lengths (so its start-up clip sampling cancels out);
ours is `--stats`' frames_per_second (the frames after the first over the time they took).

  cargo build --release -p fifo-cli
  /work/venv/bin/python tools/bench/generate_vs_pytorch.py --state /work/train-state [--frames 12]
      [--backends cpu,gpu] [--precision f32,f16] [--torch-device cuda]

The checkpoint must be the one the package was exported from (model.json's training.checkpoint).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "model"))
import fifo as fifo_py  # noqa: E402
import sample  # noqa: E402

PROMPT = "a red circle moving right on a black background"


def torch_seconds(model, ae, frames, partitions, lookahead, device):
    t0 = time.perf_counter()
    fifo_py.fifo_generate(model, ae, [PROMPT], frames, partitions, lookahead, 5.0, 1.0,
                          torch.Generator(device=device).manual_seed(0))
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", default="/work/train-state", help="training state holding the checkpoint")
    ap.add_argument("--model", default=str(ROOT / "models" / "shapes-t2v-tiny"))
    ap.add_argument("--frames", type=int, default=12, help="frames of the shorter run")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--no-lookahead", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", default="cpu", help="ours to time, comma-separated: cpu, gpu")
    ap.add_argument("--precision", default="f32",
                    help="the GPU path's compute precisions to time, comma-separated: f32, f16")
    ap.add_argument("--torch-device", choices=["cpu", "cuda"], default="cpu",
                    help="where PyTorch runs: cuda is the peer of our GPU path (f32, TF32 off)")
    args = ap.parse_args()
    lookahead = not args.no_lookahead
    package = json.load(open(os.path.join(args.model, "model.json")))
    ckpt = os.path.join(args.state, package["training"]["checkpoint"])
    if not os.path.exists(ckpt):
        sys.exit(f"{ckpt} (the package's checkpoint) is not there; pass --state, or rebuild it from the "
                 f"package: python tools/model/from_package.py --package {args.model} --state {args.state}")

    torch.set_num_threads(args.threads)
    model, ae, _, _, _ = sample.load(args.state, ckpt)
    device = args.torch_device
    if device == "cuda":
        # f32 like ours: TF32 would round the matmuls' and convolutions' inputs to 10 mantissa bits.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_default_device("cuda")
        model, ae = model.to("cuda"), ae.to("cuda")
    n1, n2 = args.frames, 2 * args.frames
    torch_seconds(model, ae, 2, args.partitions, lookahead, device)  # warm-up (CUDA kernels, allocator)
    t1 = torch_seconds(model, ae, n1, args.partitions, lookahead, device)
    t2 = torch_seconds(model, ae, n2, args.partitions, lookahead, device)
    torch_fps = (n2 - n1) / (t2 - t1)

    fifo = ROOT / "target" / "release" / "fifo"
    runs = []  # (label, extra flags)
    for backend in args.backends.split(","):
        if backend == "gpu":
            runs += [(f"GPU backend, {p}", ["--backend", "gpu", "--precision", p]) for p in args.precision.split(",")]
        elif backend == "cpu":
            runs.append(("CPU backend", ["--backend", "cpu"]))
        else:
            sys.exit(f"--backends takes cpu and gpu, not {backend!r}")
    setting = f"n={args.partitions}{' lookahead' if lookahead else ''}, {args.threads} threads"
    print(f"shipped model, {setting}, steady-state frames/s (one FIFO iteration per frame):")
    where = "CPU" if device == "cpu" else f"CUDA f32 on {torch.cuda.get_device_name()}"
    print(f"  PyTorch {torch.__version__} {where} (tools/model/fifo.py): {torch_fps:.3f} "
          f"({n1} frames {t1:.1f} s, {n2} frames {t2:.1f} s)")
    for label, flags in runs:
        with tempfile.TemporaryDirectory() as tmp:
            stats = os.path.join(tmp, "stats.json")
            cmd = [str(fifo), "generate", PROMPT, "--model", args.model, "--quiet", "--frames", str(n2),
                   "--partitions", str(args.partitions), "--out", os.path.join(tmp, "v.y4m"),
                   "--stats", stats] + flags + ([] if lookahead else ["--no-lookahead"])
            env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
            subprocess.run(cmd, check=True, env=env)
            ours = json.load(open(stats))
        devices = ", ".join(ours.get("devices", [])) + (f", queue on the {ours['queue']}" if "queue" in ours else "")
        print(f"  fifo generate, {label}: {ours['frames_per_second']:.3f} "
              f"({ours['frames']} frames {ours['seconds']:.1f} s, first frame {ours['first_frame_seconds']:.1f} s"
              f"{'; ' + devices if devices else ''}); fifo / PyTorch {ours['frames_per_second'] / torch_fps:.2f}x")

if __name__ == "__main__":
    main()
