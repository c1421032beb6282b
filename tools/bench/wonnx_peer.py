#!/usr/bin/env python3
"""Our WebGPU executor against wonnx 0.5.1 on the same adapter, op by op, in one run.

wonnx is the project's benchmark peer (../shared/wonnx-evaluation.md): it lowers ONNX nodes to
WGSL too, but pins wgpu 0.16, so it lives in its own crate outside the workspace
(bench/wonnx-peer). The graphs here are the ops it can run (opset 13, even sizes, no broadcast
MatMul), at the sizes of a video UNet's layers. For each graph both engines run the same .onnx
file on the same inputs: one warm-up run, then the mean of --repeat runs, host upload and read-back
included on both sides (wonnx only takes and returns host vectors; `fifo onnx run` uploads the
inputs and reads the outputs back each run). Both outputs are checked against onnxruntime (CPU)
with TOLERANCE; a wrong result is reported, not timed as a win.

  cargo build --release -p fifo-cli
  (cd bench/wonnx-peer && cargo build --release)
  /work/venv/bin/python tools/bench/wonnx_peer.py [--repeat 5] [--only matmul,conv3x3]

WGPU_BACKEND (default vulkan here) picks the adapter for both engines. Prints per graph: FLOPs,
milliseconds and GFLOP/s of each engine, and wonnx's time over ours (the issue's goal: at least
3x); then the geometric mean of the ratio.
"""
import argparse
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIFO = ROOT / "target" / "release" / "fifo"
PEER = ROOT / "bench" / "wonnx-peer" / "target" / "release" / "wonnx-peer"
OPSET = 13  # wonnx implements Softmax and Unsqueeze only in their older forms
# |ours - onnxruntime| and |wonnx - onnxruntime| must stay within ATOL + RTOL * |onnxruntime|.
TOLERANCE = dict(rtol=1e-3, atol=1e-3)


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def graph(name, nodes, inputs, output, out_shape, inits=()):
    g = helper.make_graph(nodes, name, [vi(k, s) for k, s in inputs.items()], [vi(output, out_shape)],
                          initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    # wonnx needs the shape of every intermediate value spelled out.
    return onnx.shape_inference.infer_shapes(m)


def graphs(rng):
    """(name, model, inputs, FLOPs) at the sizes of a small video UNet's layers."""
    w = lambda *s: (rng.standard_normal(s) * 0.05).astype(np.float32)
    out = []
    x = {"x": [1, 64, 32, 32]}
    out.append(("conv3x3", graph("conv3x3", [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                                 x, "y", [1, 64, 32, 32], [("w", w(64, 64, 3, 3)), ("b", w(64))]),
                x, 2 * 64 * 64 * 9 * 32 * 32))
    ab = {"a": [8, 1024, 40], "b": [8, 40, 1024]}
    out.append(("matmul", graph("matmul", [helper.make_node("MatMul", ["a", "b"], ["y"])], ab, "y", [8, 1024, 1024]),
                ab, 2 * 8 * 1024 * 1024 * 40))
    qkv = {"q": [8, 1024, 40], "kt": [8, 40, 1024], "v": [8, 1024, 40]}
    scale = np.array(1 / math.sqrt(40), dtype=np.float32)
    out.append(("attention", graph("attention", [
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ], qkv, "y", [8, 1024, 40], [("scale", scale)]), qkv, 4 * 8 * 1024 * 1024 * 40 + 6 * 8 * 1024 * 1024))
    s = {"x": [8, 1024, 1024]}
    out.append(("softmax", graph("softmax", [helper.make_node("Softmax", ["x"], ["y"], axis=-1)], s, "y",
                                 [8, 1024, 1024]), s, 5 * 8 * 1024 * 1024))
    lin = {"x": [1024, 320]}
    out.append(("linear", graph("linear", [helper.make_node("MatMul", ["x", "w"], ["h"]),
                                           helper.make_node("Add", ["h", "b"], ["y"])],
                                lin, "y", [1024, 1280], [("w", w(320, 1280)), ("b", w(1280))]),
                lin, 2 * 1024 * 320 * 1280 + 1024 * 1280))
    e = {"x": [1, 320, 32, 32], "z": [1, 320, 32, 32]}
    out.append(("add", graph("add", [helper.make_node("Add", ["x", "z"], ["y"])], e, "y", [1, 320, 32, 32]),
                e, 320 * 32 * 32))
    silu = {"x": [1, 320, 32, 32]}
    out.append(("silu", graph("silu", [helper.make_node("Sigmoid", ["x"], ["s"]),
                                       helper.make_node("Mul", ["x", "s"], ["y"])], silu, "y", [1, 320, 32, 32]),
                silu, 5 * 320 * 32 * 32))
    out.append(("transpose", graph("transpose", [helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])],
                                   silu, "y", [1, 32, 32, 320]), silu, 0))
    return out


def check(out_dir, name, want):
    path = pathlib.Path(out_dir) / f"{name}.npy"
    if not path.exists():
        return "no output"
    got = np.load(path).reshape(-1)
    if got.size != want.size:
        return f"{got.size} values, {want.size} expected"
    if not np.allclose(got, want.reshape(-1), **TOLERANCE):
        return f"wrong: max |diff| {np.abs(got - want.reshape(-1)).max():.3g}"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated graph names")
    args = ap.parse_args()
    for exe, how in [(FIFO, "cargo build --release -p fifo-cli"),
                     (PEER, "(cd bench/wonnx-peer && cargo build --release)")]:
        if not exe.exists():
            sys.exit(f"{exe} is missing: {how}")
    env = dict(os.environ, WGPU_BACKEND=os.environ.get("WGPU_BACKEND", "vulkan"))
    rng = np.random.default_rng(7)
    only = set(filter(None, args.only.split(",")))
    rows, ratios = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        for name, model, inputs, flops in graphs(rng):
            if only and name not in only:
                continue
            path = tmp / f"{name}.onnx"
            onnx.save(model, path)
            feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in inputs.items()}
            spec = []
            for k, v in feeds.items():
                np.save(tmp / f"{name}-{k}.npy", v)
                spec += ["--input", f"{k}={tmp / f'{name}-{k}.npy'}"]
            want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            results = {}
            for engine, exe, extra in [("ours", FIFO, ["onnx", "run", "--backend", "gpu"]), ("wonnx", PEER, [])]:
                out_dir = tmp / f"{name}-{engine}"
                cmd = [str(exe)] + extra + [str(path)] + spec + ["--output-dir", str(out_dir),
                                                                "--repeat", str(args.repeat)]
                p_ms, error = timed_env(cmd, env)
                error = error or check(out_dir, "y", want)
                results[engine] = (p_ms, error)
            rows.append((name, flops, results))
            (ours, e1), (peer, e2) = results["ours"], results["wonnx"]
            if ours and peer and not e1 and not e2:
                ratios.append(peer / ours)
    adapter = env["WGPU_BACKEND"]
    print(f"\nWGPU_BACKEND={adapter}, mean of {args.repeat} runs after a warm-up, upload and read-back included")
    print(f"{'graph':<10} {'MFLOP':>8} {'ours ms':>9} {'GFLOP/s':>8} {'wonnx ms':>9} {'GFLOP/s':>8} {'wonnx/ours':>10}  notes")
    for name, flops, r in rows:
        (ours, e1), (peer, e2) = r["ours"], r["wonnx"]
        gf = lambda ms: f"{flops / ms / 1e6:8.2f}" if ms and flops else f"{'-':>8}"
        ratio = f"{peer / ours:10.2f}" if ours and peer and not e1 and not e2 else f"{'-':>10}"
        notes = "; ".join(f"{who}: {e}" for who, e in [("ours", e1), ("wonnx", e2)] if e)
        print(f"{name:<10} {flops / 1e6:8.1f} {ours or float('nan'):9.2f} {gf(ours)} "
              f"{peer or float('nan'):9.2f} {gf(peer)} {ratio}  {notes}")
    if ratios:
        gm = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geometric mean of wonnx/ours over {len(ratios)} graphs both ran correctly: {gm:.2f} (goal: >= 3)")


def timed_env(cmd, env):
    """Runs an engine's command; returns (ms per run, error text or None)."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["exit code %d" % p.returncode])[-1]
    m = re.search(r"run: ([0-9.]+) ms", p.stdout)
    return (float(m.group(1)) if m else None), None


if __name__ == "__main__":
    main()
