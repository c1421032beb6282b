#!/usr/bin/env python3
"""Writes the fixtures of `fifo quantize`: an independent numpy transcription of the weight
quantization (symmetric per-output-channel int8 with DequantizeLinear, or f16 with Cast; Conv,
MatMul and Gemm weights only) applied to tests/fixtures/models/unet_dynamo_op18 (opset 18, external
data), with onnxruntime's outputs of each quantized model, in the ONNX backend-test layout:

  tests/fixtures/quantize/unet_dynamo_op18_int8/{model.onnx, test_data_set_0/}
  tests/fixtures/quantize/unet_dynamo_op18_f16/{model.onnx, test_data_set_0/}
  tests/fixtures/quantize/budget.json   onnxruntime: quantized vs f32 model, and the budgets

The outputs are onnxruntime's with graph optimizations off (the graph as written); budget.json
also records the optimized session's error (integer kernels fused from DequantizeLinear -> op).

It asserts that onnxruntime's output of each quantized model is within its budget of the f32
model's. tests/quantize.rs checks that the Rust quantizer writes the same weights and that our CPU
backend on them matches onnxruntime.

Run:   /work/venv/bin/python tools/onnx_fixtures/make_quantize_fixtures.py      (onnx, onnxruntime)
Check a model written by the CLI with onnxruntime against the f32 model:
       /work/venv/bin/python tools/onnx_fixtures/make_quantize_fixtures.py --ort-check F32.onnx Q.onnx
"""
import argparse
import json
import pathlib
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "fixtures" / "models" / "unet_dynamo_op18"
OUT = ROOT / "tests" / "fixtures" / "quantize"
# Relative L2 error of onnxruntime's output, quantized vs f32 model.
BUDGET = {"int8": 2e-2, "f16": 1e-3}


def weight_axis(node, slot, rank):
    if slot != 1:
        return None
    if node.op_type == "Conv" and rank >= 3:
        return 0
    if node.op_type == "MatMul" and rank >= 2:
        return rank - 1
    if node.op_type == "Gemm" and rank == 2:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return None


def quantize(model, fmt):
    g = model.graph
    readers = {}
    for node in g.node:
        for slot, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, slot))
    new_nodes, new_inits, removed = [], [], set()
    for init in g.initializer:
        uses = readers.get(init.name, [])
        if init.data_type != onnx.TensorProto.FLOAT or not any(
                s == 1 and n.op_type in ("Conv", "MatMul", "Gemm") for n, s in uses):
            continue
        w = numpy_helper.to_array(init).astype(np.float32)
        axes = {weight_axis(n, s, w.ndim) for n, s in uses}
        if None in axes or len(axes) != 1:
            continue
        axis = axes.pop()
        name = init.name
        if fmt == "int8":
            other = tuple(i for i in range(w.ndim) if i != axis)
            peak = np.abs(w).max(axis=other).astype(np.float32)
            scale = np.where(peak > 0, peak / np.float32(127.0), np.float32(1.0)).astype(np.float32)
            shape = [1] * w.ndim
            shape[axis] = -1
            q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)  # half to even
            new_inits += [numpy_helper.from_array(q, f"{name}_quantized"),
                          numpy_helper.from_array(scale, f"{name}_scale"),
                          numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero_point")]
            new_nodes.append(helper.make_node("DequantizeLinear",
                                              [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
                                              [name], name=f"{name}_DequantizeLinear", axis=axis))
        else:
            new_inits.append(numpy_helper.from_array(w.astype(np.float16), f"{name}_f16"))
            new_nodes.append(helper.make_node("Cast", [f"{name}_f16"], [name], name=f"{name}_Cast",
                                              to=onnx.TensorProto.FLOAT))
        removed.add(name)
    kept = [i for i in g.initializer if i.name not in removed]
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    nodes = new_nodes + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    return model, sorted(removed)


def run(path, feeds, optimize=False):
    """optimize=False runs the graph as written (DequantizeLinear, then the float op): the
    semantics our executor implements. With onnxruntime's graph optimizations, DequantizeLinear ->
    MatMul/Conv may become integer kernels that also quantize activations (different numbers)."""
    opts = ort.SessionOptions()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def errors(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return {"max_abs": float(np.abs(got - want).max()), "mean_abs": float(np.abs(got - want).mean()),
            "relative_l2": float(np.linalg.norm(got - want) / np.linalg.norm(want))}


def inputs(model):
    d = SOURCE / "test_data_set_0"
    feeds = {}
    for k, inp in enumerate(model.graph.input):
        t = onnx.TensorProto()
        t.ParseFromString((d / f"input_{k}.pb").read_bytes())
        feeds[inp.name] = numpy_helper.to_array(t)
    return feeds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ort-check", nargs=2, metavar=("F32", "QUANTIZED"))
    args = ap.parse_args()
    if args.ort_check:
        return ort_check(*args.ort_check)
    feeds = inputs(onnx.load(str(SOURCE / "model.onnx"), load_external_data=False))
    reference = run(SOURCE / "model.onnx", feeds)
    summary = {"source": "tests/fixtures/models/unet_dynamo_op18", "budget_relative_l2": BUDGET}
    for fmt in ("int8", "f16"):
        model, converted = quantize(onnx.load(str(SOURCE / "model.onnx")), fmt)
        onnx.checker.check_model(model)
        d = OUT / f"unet_dynamo_op18_{fmt}"
        shutil.rmtree(d, ignore_errors=True)
        (d / "test_data_set_0").mkdir(parents=True)
        onnx.save(model, str(d / "model.onnx"))
        outputs = run(d / "model.onnx", feeds)
        for k, (inp, x) in enumerate(zip(model.graph.input, feeds.values())):
            (d / "test_data_set_0" / f"input_{k}.pb").write_bytes(numpy_helper.from_array(x, inp.name).SerializeToString())
        for k, (out, y) in enumerate(zip(model.graph.output, outputs)):
            (d / "test_data_set_0" / f"output_{k}.pb").write_bytes(numpy_helper.from_array(y, out.name).SerializeToString())
        e = errors(outputs[0], reference[0])
        e_opt = errors(run(d / "model.onnx", feeds, optimize=True)[0], reference[0])
        assert max(e["relative_l2"], e_opt["relative_l2"]) <= BUDGET[fmt], (fmt, e, e_opt)
        summary[fmt] = {"converted": converted, "onnxruntime_vs_f32": e, "onnxruntime_optimized_vs_f32": e_opt}
        print(f"{fmt}: {len(converted)} weights; onnxruntime quantized vs f32: {e}; optimized graph: {e_opt}")
    (OUT / "budget.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def ort_check(f32, quantized):
    """Runs both models with onnxruntime on seeded random inputs (free dims = 1) and prints errors."""
    rng = np.random.default_rng(0)
    sess = ort.InferenceSession(f32, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        x = rng.standard_normal(shape).astype(np.float32)
        if "time" in i.name:
            x = rng.uniform(0, 999, shape).astype(np.float32)
        feeds[i.name] = x
    want = sess.run(None, feeds)
    got = run(quantized, feeds, optimize=True)
    for (o, w, g) in zip(sess.get_outputs(), want, got):
        print(json.dumps({"output": o.name, "shape": list(w.shape), **errors(g, w),
                          "max_abs_reference": float(np.abs(w).max())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
