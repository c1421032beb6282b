#!/usr/bin/env python3
"""Writes the per-op graphs of the browser benchmark (web/bench/run.mjs) into web/bench/graphs/.

Each graph is one op (or the small pattern torch exports for it) at the sizes of a UNet layer,
opset 18 like the shipped UNet, weights as initializers inside the file (each file < 2 MB), plus
graphs/graphs.json listing every graph with its inputs (name -> shape), output and FLOPs. The
benchmark page feeds every input the same seeded random data to our executor and to
onnxruntime-web.

Every graph is checked here once: onnxruntime (CPU) against a numpy reference.

Run: /work/venv/bin/python tools/bench/make_browser_op_graphs.py
"""
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "web" / "bench" / "graphs"
OPSET = 18
IR_VERSION = 8  # opset 18 needs IR 8; older IR keeps every onnxruntime(-web) release happy
MAX_BYTES = 2 * 1024 * 1024


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def model(name, nodes, inputs, output, out_shape, inits=()):
    graph = helper.make_graph(nodes, name, [vi(k, s) for k, s in inputs.items()], [vi(output, out_shape)],
                              initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="fifo-diffusion tools/bench/make_browser_op_graphs.py")
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def conv2d_3x3(x, w, b):
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, i:i + h, j:j + wd] for i in range(3) for j in range(3)], axis=2)  # n,c,9,h,w
    cols = cols.reshape(n, c * 9, h * wd)
    y = np.einsum("ok,nkp->nop", w.reshape(w.shape[0], -1), cols)
    return y.reshape(n, w.shape[0], h, wd) + b[None, :, None, None]


def cases(rng):
    """(name, description, model, feeds, numpy reference, flops) for every graph."""
    out = []

    # MatMul of a Linear layer: 256 tokens x 320 features (a UNet attention block's projection).
    w = (rng.standard_normal((320, 320)) / np.sqrt(320)).astype(np.float32)
    m = model("matmul", [helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": [256, 320]}, "y", [256, 320],
              [init("w", w)])
    out.append(("matmul", "MatMul [256,320]x[320,320]", m, lambda f: f["x"] @ w, 2 * 256 * 320 * 320))

    # Conv 3x3, 64 -> 64 channels, padding 1, on [1,64,32,32].
    cw = (rng.standard_normal((64, 64, 3, 3)) / np.sqrt(64 * 9)).astype(np.float32)
    cb = (0.1 * rng.standard_normal(64)).astype(np.float32)
    m = model("conv3x3", [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
              {"x": [1, 64, 32, 32]}, "y", [1, 64, 32, 32], [init("w", cw), init("b", cb)])
    out.append(("conv3x3", "Conv 3x3 64->64 [1,64,32,32]", m, lambda f: conv2d_3x3(f["x"], cw, cb),
                2 * 64 * 64 * 9 * 32 * 32))

    # GroupNorm(32 groups, 320 channels) the way torch exports it (the shipped UNet has 31 of these):
    # Reshape [1,32,-1] -> InstanceNormalization (scale 1, bias 0) -> Reshape back -> Mul gamma -> Add beta.
    gamma = (1 + 0.1 * rng.standard_normal((320, 1, 1))).astype(np.float32)
    beta = (0.1 * rng.standard_normal((320, 1, 1))).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["x", "g_shape"], ["xg"]),
        helper.make_node("InstanceNormalization", ["xg", "ones", "zeros"], ["ng"], epsilon=1e-5),
        helper.make_node("Reshape", ["ng", "x_shape"], ["n"]),
        helper.make_node("Mul", ["n", "gamma"], ["s"]),
        helper.make_node("Add", ["s", "beta"], ["y"]),
    ]
    inits = [init("g_shape", np.array([1, 32, -1], np.int64)), init("x_shape", np.array([1, 320, 32, 32], np.int64)),
             init("ones", np.ones(32, np.float32)), init("zeros", np.zeros(32, np.float32)),
             init("gamma", gamma), init("beta", beta)]
    m = model("groupnorm", nodes, {"x": [1, 320, 32, 32]}, "y", [1, 320, 32, 32], inits)

    def groupnorm_ref(f):
        x = f["x"].reshape(1, 32, -1).astype(np.float64)
        n = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return n.reshape(1, 320, 32, 32) * gamma + beta

    out.append(("groupnorm", "GroupNorm 32 (Reshape+InstanceNorm+Mul+Add) [1,320,32,32]", m, groupnorm_ref,
                8 * 320 * 32 * 32))

    # LayerNormalization over 320 features of 256 tokens (26 of them in the shipped UNet).
    ls = (1 + 0.1 * rng.standard_normal(320)).astype(np.float32)
    lb = (0.1 * rng.standard_normal(320)).astype(np.float32)
    m = model("layernorm", [helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1, epsilon=1e-5)],
              {"x": [256, 320]}, "y", [256, 320], [init("s", ls), init("b", lb)])

    def layernorm_ref(f):
        x = f["x"].astype(np.float64)
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * ls + lb

    out.append(("layernorm", "LayerNormalization [256,320]", m, layernorm_ref, 8 * 256 * 320))

    # Softmax over the last axis of attention scores: 8 heads x 256 x 256.
    m = model("softmax", [helper.make_node("Softmax", ["x"], ["y"], axis=-1)], {"x": [8, 256, 256]}, "y",
              [8, 256, 256])
    out.append(("softmax", "Softmax [8,256,256]", m, lambda f: softmax(f["x"].astype(np.float64)), 5 * 8 * 256 * 256))

    # Attention as torch exports it: Q K^T (Transpose + MatMul), scale, Softmax, times V; 8 heads, 256 tokens, 64 dims.
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["ss"]),
        helper.make_node("Softmax", ["ss"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["y"]),
    ]
    m = model("attention", nodes, {"q": [8, 256, 64], "k": [8, 256, 64], "v": [8, 256, 64]}, "y", [8, 256, 64],
              [init("scale", np.array(0.125, np.float32))])

    def attention_ref(f):
        s = f["q"].astype(np.float64) @ f["k"].astype(np.float64).transpose(0, 2, 1) * 0.125
        return softmax(s) @ f["v"]

    out.append(("attention", "Attention MatMul+Softmax+MatMul [8,256,64]", m, attention_ref,
                2 * 2 * 8 * 256 * 256 * 64 + 5 * 8 * 256 * 256))

    # Elementwise on a UNet feature map [1,320,32,32].
    shape = [1, 320, 32, 32]
    size = int(np.prod(shape))
    for op, fn in [("Add", np.add), ("Mul", np.multiply)]:
        m = model(op.lower(), [helper.make_node(op, ["a", "b"], ["y"])], {"a": shape, "b": shape}, "y", shape)
        out.append((op.lower(), f"{op} [1,320,32,32]", m, lambda f, fn=fn: fn(f["a"], f["b"]), size))
    m = model("sigmoid", [helper.make_node("Sigmoid", ["x"], ["y"])], {"x": shape}, "y", shape)
    out.append(("sigmoid", "Sigmoid [1,320,32,32]", m, lambda f: sigmoid(f["x"].astype(np.float64)), 4 * size))
    # SiLU, x * sigmoid(x): the activation of every UNet ResBlock (Sigmoid + Mul in the export).
    m = model("silu", [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])],
              {"x": shape}, "y", shape)
    out.append(("silu", "SiLU Sigmoid+Mul [1,320,32,32]", m, lambda f: f["x"] * sigmoid(f["x"].astype(np.float64)),
                5 * size))
    return out


def unet_flops(path, batch=1):
    """Multiply-add FLOPs of the MatMul, Gemm and Conv nodes of the shipped UNet at batch 1."""
    m = onnx.load(str(path))
    for i in m.graph.input:
        dim = i.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_value = batch
    m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    shapes.update({t.name: list(t.dims) for t in m.graph.initializer})
    flops = 0
    for n in m.graph.node:
        out = shapes.get(n.output[0])
        if n.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        if not out or None in out:
            raise SystemExit(f"{path.name}: no static shape for the output of {n.name} ({n.op_type})")
        if n.op_type == "Conv":
            flops += 2 * int(np.prod(out)) * int(np.prod(shapes[n.input[1]][1:]))
        else:
            a = shapes[n.input[0]]
            k = a[0] if n.op_type == "Gemm" and any(x.name == "transA" and x.i for x in n.attribute) else a[-1]
            flops += 2 * int(np.prod(out)) * k
    return flops


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261128)
    manifest = []
    for name, desc, m, ref, flops in cases(rng):
        path = OUT / f"{name}.onnx"
        data = m.SerializeToString()
        assert len(data) < MAX_BYTES, f"{name}: {len(data)} bytes (keep each graph under 2 MB)"
        path.write_bytes(data)
        inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input}
        feeds = {k: rng.uniform(-1, 1, s).astype(np.float32) for k, s in inputs.items()}
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = sess.run(None, feeds)[0]
        want = ref(feeds)
        diff = float(np.abs(got - want).max())
        assert got.shape == tuple(want.shape), (name, got.shape, want.shape)
        assert diff < 1e-3, f"{name}: onnxruntime differs from the numpy reference by {diff}"
        manifest.append({"name": name, "description": desc, "file": f"{name}.onnx", "inputs": inputs,
                         "output": m.graph.output[0].name, "flops": int(flops)})
        print(f"{name:10s} {len(data):8d} bytes  {flops / 1e6:8.1f} MFLOP  onnxruntime vs numpy max |diff| {diff:.1e}")
    unet = ROOT / "models" / "shapes-t2v-tiny" / "unet.onnx"
    flops = unet_flops(unet)
    print(f"shipped UNet ({unet.relative_to(ROOT)}) at batch 1: {flops / 1e9:.2f} GFLOP (MatMul, Gemm, Conv)")
    (OUT / "graphs.json").write_text(json.dumps({"format": "fifo-bench-graphs/1", "opset": OPSET, "unet_flops": flops,
                                                 "graphs": manifest}, indent=1) + "\n")
    print(f"wrote {len(manifest)} graphs and graphs.json to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
