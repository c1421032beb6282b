#!/usr/bin/env python3
"""Times the CPU backend against onnxruntime on the same UNet-like or transformer model, in one run.

Exports the fixture network (tools/onnx_fixtures/make_model_fixtures.py) at a larger size
(by default channels 64, 32x32 latents, one image; --channels, --size and --batch choose others,
e.g. zeroscope's 320 channels), or with --model transformer a Wan/Latte-style transformer block
(adaLN modulation, RMSNorm on Q and K, rotary positions, torch's scaled_dot_product_attention,
tanh-GELU feed-forward; --channels is its width, default 384, with 64-wide heads, and --size^2
tokens per image), runs onnxruntime (Python) and `fifo onnx run --repeat` with 1 and
2 threads in alternating rounds, checks the outputs agree and prints each side's median round and
the ratio. With --per-op, also each side's time per kind of op on one thread (onnxruntime's
profiler against FIFO_PROFILE), to see where a gap lies.

Run: cargo build --release -p fifo-cli && /work/venv/bin/python tools/bench/cpu_vs_onnxruntime.py
[--threads 1,2,4] [--per-op] [--model unet|transformer] [--channels N] [--size 32] [--batch 1]
"""
import argparse
import collections
import json
import math
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "onnx_fixtures"))
from make_model_fixtures import TinyUNet  # noqa: E402

REPEAT = 20  # runs per round
ROUNDS = 5


class RMSNorm(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def rotary(x, positions):
    """Rotary position embedding over the last axis of [B, H, N, D] (halves rotated)."""
    half = x.shape[-1] // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = positions[:, None] * freqs[None]
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


class TransformerBlock(torch.nn.Module):
    """One DiT block as Wan 2.1 and Latte build it, at a reduced width."""

    def __init__(self, dim, heads):
        super().__init__()
        nn = torch.nn
        self.heads = heads
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim), RMSNorm(dim)
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) * 0.1)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(self, x, e):
        b, n, d = x.shape
        shift, scale, gate, shift2, scale2, gate2 = (self.modulation + e).chunk(6, dim=1)
        y = self.norm(x) * (1 + scale) + shift
        heads = lambda z: z.view(b, n, self.heads, d // self.heads).transpose(1, 2)
        positions = torch.arange(n, dtype=torch.float32)
        q = rotary(heads(self.norm_q(self.q(y))), positions)
        k = rotary(heads(self.norm_k(self.k(y))), positions)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, heads(self.v(y)))
        x = x + self.o(a.transpose(1, 2).reshape(b, n, d)) * gate
        return x + self.ffn(self.norm(x) * (1 + scale2) + shift2) * gate2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--per-op", action="store_true", help="also time each kind of op on one thread")
    ap.add_argument("--model", choices=["unet", "transformer"], default="unet")
    ap.add_argument("--channels", type=int, help="the UNet's first width (default 64) or the transformer's (384)")
    ap.add_argument("--size", type=int, default=32, help="latent height and width (default 32)")
    ap.add_argument("--batch", type=int, default=1, help="images per run (default 1)")
    args = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="fifo-bench-"))
    torch.manual_seed(0)
    if args.model == "unet":
        channels = args.channels or 64
        model = TinyUNet(ch=channels, tdim=64).eval()
        feeds = {"x": torch.randn(args.batch, 4, args.size, args.size), "t": torch.full((args.batch,), 37.0)}
        print(f"model: UNet, channels {channels}, latents {args.batch}x4x{args.size}x{args.size}")
    else:
        channels = args.channels or 384
        model = TransformerBlock(channels, max(1, channels // 64)).eval()
        tokens = args.size * args.size
        feeds = {"x": torch.randn(args.batch, tokens, channels), "t": torch.randn(args.batch, 6, channels) * 0.1}
        print(f"model: transformer block, width {channels}, {args.batch}x{tokens} tokens")
    torch.onnx.export(model, tuple(feeds.values()), str(work / "unet.onnx"), opset_version=17, dynamo=False,
                      input_names=["x", "t"], output_names=["y"])
    feeds = {name: value.numpy() for name, value in feeds.items()}
    np.save(work / "x.npy", feeds["x"])
    np.save(work / "t.npy", feeds["t"])
    fifo = ROOT / "target" / "release" / "fifo"
    for threads in [int(n) for n in args.threads.split(",")]:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(work / "unet.onnx"), so, providers=["CPUExecutionProvider"])
        for _ in range(3):
            want = sess.run(None, feeds)[0]
        # Rounds alternate between the two engines and each side keeps its median round, so a
        # burst of load from elsewhere on a shared machine lands in one round, not in one side.
        ort_rounds, our_rounds = [], []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            for _ in range(REPEAT):
                sess.run(None, feeds)
            ort_rounds.append((time.perf_counter() - start) / REPEAT * 1e3)
            # onnxruntime's worker threads spin for a while after a run: let them go before
            # timing ours, or they take a core from it.
            time.sleep(1.0)
            out = subprocess.run([str(fifo), "onnx", "run", str(work / "unet.onnx"), "--input", f"x={work / 'x.npy'}",
                                  "--input", f"t={work / 't.npy'}", "--output-dir", str(work / "out"),
                                  "--repeat", str(REPEAT)],
                                 env={**os.environ, "RAYON_NUM_THREADS": str(threads)}, check=True,
                                 capture_output=True, text=True)
            our_rounds.append(float(re.search(r"run: ([0-9.]+) ms", out.stdout).group(1)))
        del sess
        ort_ms, ours_ms = statistics.median(ort_rounds), statistics.median(our_rounds)
        got = np.load(work / "out" / "y.npy")
        rel = np.linalg.norm(got - want) / np.linalg.norm(want)
        spread = lambda xs: f"{min(xs):.2f}-{max(xs):.2f}"
        print(f"{threads} thread(s): onnxruntime {ort_ms:.2f} ms, fifo cpu {ours_ms:.2f} ms (medians of {ROUNDS} "
              f"rounds; {spread(ort_rounds)} / {spread(our_rounds)}), ratio {ours_ms / ort_ms:.2f}x, "
              f"relative L2 difference {rel:.1e}")
    if args.per_op:
        per_op(work, feeds, fifo)


# Both engines fuse differently (onnxruntime: Conv+activation, MatMul+Add; ours: attention,
# norm+SiLU, conv+residual), so ops are compared by kind, named after the op types they hold.
KINDS = [("conv", ("Conv",)), ("matmul+attention", ("MatMul", "Gemm", "Einsum", "Attention", "Softmax")),
         ("normalization", ("Normalization",)), ("other", ("",))]


def kind(op_type):
    return next(k for k, words in KINDS if any(w in op_type for w in words))


def per_op(work, feeds, fifo, runs=40):
    """Median-free sums over `runs` runs after a warm-up, in ms per run, on one thread."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = str(work / "ort-profile")
    sess = ort.InferenceSession(str(work / "unet.onnx"), so, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        sess.run(None, feeds)
    events = json.load(open(sess.end_profiling()))
    theirs, their_ops = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            theirs[kind(e["args"]["op_name"])] += e["dur"] / 1e3 / (runs + 1)
            their_ops[e["args"]["op_name"]] += e["dur"] / 1e3 / (runs + 1)
    out = subprocess.run([str(fifo), "onnx", "run", str(work / "unet.onnx"), "--input", f"x={work / 'x.npy'}",
                          "--input", f"t={work / 't.npy'}", "--output-dir", str(work / "out"),
                          "--repeat", str(runs)],
                         env={**os.environ, "RAYON_NUM_THREADS": "1", "FIFO_PROFILE": "1"}, check=True,
                         capture_output=True, text=True)
    ours, our_ops = collections.Counter(), collections.Counter()
    # One profile per run; the first is the warm-up.
    profiles = out.stderr.split("profile:")[2:]
    for profile in profiles:
        for m in re.finditer(r"^\s+(\w+)\s+x\d+\s+[0-9.]+\s+([0-9.]+)$", profile, re.M):
            ours[kind(m.group(1))] += float(m.group(2)) / len(profiles)
            our_ops[m.group(1)] += float(m.group(2)) / len(profiles)
    print("per kind of op, 1 thread, ms per run (onnxruntime's profiler / FIFO_PROFILE):")
    for k, _ in KINDS:
        ratio = f"{ours[k] / theirs[k]:.2f}x" if theirs[k] else "-"
        print(f"  {k:<17} onnxruntime {theirs[k]:6.2f}  fifo cpu {ours[k]:6.2f}  {ratio}")
    for name, ops in (("onnxruntime", their_ops), ("fifo cpu", our_ops)):
        print(f"  {name} ops: " + ", ".join(f"{op} {ms:.2f}" for op, ms in ops.most_common() if ms >= 0.01))

if __name__ == "__main__":
    main()
