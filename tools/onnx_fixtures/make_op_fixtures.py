#!/usr/bin/env python3
"""Writes the per-op fixtures of the CPU backend's tests: tests/fixtures/ops/<case>/.

Each case is a one-node ONNX model (onnx.helper) with its inputs and the expected outputs from
onnxruntime (or onnx.reference where onnxruntime lacks the op), in the ONNX backend-test layout:
model.onnx and test_data_set_0/{input,output}_<i>.pb. Inputs that must be known when a session
is built (shapes, axes, pads, ...) are initializers. The tolerance name the Rust test applies is
in the model's metadata ("tolerance").

Run: /work/venv/bin/python tools/onnx_fixtures/make_op_fixtures.py   (deterministic)
"""
import pathlib
import shutil
import zlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "ops"
rng = np.random.default_rng(20261128)


class C:
    """An input given as an initializer (known when the session is built)."""

    def __init__(self, value):
        self.value = np.asarray(value)


def f32(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def i64(*values):
    return np.array(values, dtype=np.int64)


def run_reference(model, feeds):
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds), "onnxruntime"
    except Exception as e:  # noqa: BLE001 - fall back for ops onnxruntime lacks
        print(f"  onnxruntime failed ({str(e).splitlines()[0][:100]}); using onnx.reference")
        return ReferenceEvaluator(model).run(None, feeds), "onnx.reference"


def case(name, op, inputs, attrs=None, outputs=1, opset=18, tol="elementwise", out_dtypes=None):
    """inputs: list of (name, array) runtime inputs, ("name", C(array)) initializers or None
    (an omitted optional input)."""
    attrs = attrs or {}
    node_inputs, graph_inputs, inits, feeds = [], [], [], {}
    for i, item in enumerate(inputs):
        if item is None:
            node_inputs.append("")
            continue
        iname, value = item
        node_inputs.append(iname)
        if isinstance(value, C):
            inits.append(numpy_helper.from_array(value.value, iname))
        else:
            value = np.asarray(value)
            feeds[iname] = value
            dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
            graph_inputs.append(helper.make_tensor_value_info(iname, dtype, value.shape))
    out_names = [f"y{k}" for k in range(outputs)]
    node = helper.make_node(op, node_inputs, out_names, name=f"{name}_node", **attrs)
    first = next((np.asarray(v.value if isinstance(v, C) else v) for _, v in filter(None, inputs)), None)
    default_dtype = helper.np_dtype_to_tensor_dtype(first.dtype) if first is not None else TensorProto.FLOAT
    dts = out_dtypes or [default_dtype] * outputs
    graph_outputs = [helper.make_tensor_value_info(n, dts[k], None) for k, n in enumerate(out_names)]
    graph = helper.make_graph([node], name, graph_inputs, graph_outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)

    expected, source = run_reference(model, feeds)
    helper.set_model_props(model, {"tolerance": tol, "reference": source})
    folder = ROOT / name
    data = folder / "test_data_set_0"
    data.mkdir(parents=True)
    onnx.save(model, folder / "model.onnx")
    for k, (iname, value) in enumerate(feeds.items()):
        (data / f"input_{k}.pb").write_bytes(numpy_helper.from_array(value, iname).SerializeToString())
    for k, value in enumerate(expected):
        (data / f"output_{k}.pb").write_bytes(numpy_helper.from_array(np.asarray(value), out_names[k]).SerializeToString())


def elementwise():
    a, b = f32(2, 3, 5), f32(3, 1)
    for op in ["Add", "Sub", "Mul", "Div"]:
        case(f"{op.lower()}_broadcast", op, [("a", a), ("b", b)])
    case("add_scalar_rhs", "Add", [("a", f32(7)), ("b", f32())])
    case("add_int64", "Add", [("a", i64(1, -2, 3)), ("b", i64(5))], tol="exact")
    case("div_int64_truncates", "Div", [("a", i64(7, -7, 9)), ("b", i64(2, 2, -4))], tol="exact")
    case("mul_float16", "Mul", [("a", f32(4, 3).astype(np.float16)), ("b", f32(3).astype(np.float16))], tol="half")
    neg_base = np.array([-2.0, -1.5, -3.0, 0.0, 2.0, -0.5], np.float32)
    case("pow_negative_base_int_exponent", "Pow", [("a", neg_base), ("b", np.array([2.0, 3.0, 2.0, 2.0, 0.5, 3.0], np.float32))])
    case("pow_float_base_int64_exponent", "Pow", [("a", neg_base), ("b", i64(3))])
    case("pow_scalar_two", "Pow", [("a", f32(3, 4)), ("b", C(np.array(2.0, np.float32)))])
    pos = f32(3, 4, lo=0.1, hi=3.0)
    for op in ["Sqrt", "Reciprocal", "Log"]:
        case(op.lower(), op, [("x", pos)], tol="transcendental")
    for op in ["Exp", "Neg", "Abs", "Sin", "Cos", "Tanh", "Erf", "Sigmoid", "Relu", "Softplus", "Floor", "Ceil"]:
        case(op.lower(), op, [("x", f32(2, 3, 4, lo=-4, hi=4))], tol="transcendental")
    case("sigmoid_extremes", "Sigmoid", [("x", np.array([-100, -20, 0, 20, 100], np.float32))], tol="transcendental")
    case("neg_int64", "Neg", [("x", i64(3, -4, 0))], tol="exact")
    case("leaky_relu", "LeakyRelu", [("x", f32(5, 3))], {"alpha": 0.2})
    case("leaky_relu_default", "LeakyRelu", [("x", f32(5, 3))])
    case("gelu_none", "Gelu", [("x", f32(4, 5, lo=-4, hi=4))], opset=20, tol="transcendental")
    case("gelu_tanh", "Gelu", [("x", f32(4, 5, lo=-4, hi=4))], {"approximate": "tanh"}, opset=20, tol="transcendental")
    case("clip_inputs", "Clip", [("x", f32(3, 4)), ("lo", C(np.float32(-0.5))), ("hi", C(np.float32(0.7)))])
    case("clip_only_max", "Clip", [("x", f32(3, 4)), None, ("hi", C(np.float32(0.3)))])
    case("clip_opset6_attrs", "Clip", [("x", f32(3, 4))], {"min": -0.2, "max": 0.4}, opset=6)
    case("min_three_inputs", "Min", [("a", f32(2, 3)), ("b", f32(3)), ("c", f32(2, 1))])
    case("max_broadcast", "Max", [("a", f32(2, 3)), ("b", f32(1, 3))])
    case("sum_two", "Sum", [("a", f32(2, 3)), ("b", f32(3))])
    case("mod_int_python_sign", "Mod", [("a", i64(-7, 7, -8, 9)), ("b", i64(3, -3, 3, 4))], tol="exact")
    case("mod_fmod_float", "Mod", [("a", f32(6)), ("b", np.array([0.7], np.float32))], {"fmod": 1})
    x, y = np.array([1, 2, 3, 4], np.float32), np.array([[1], [3]], np.float32)
    for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]:
        case(f"{op.lower()}_broadcast", op, [("a", x), ("b", y)], tol="exact", out_dtypes=[TensorProto.BOOL])
    case("equal_int64", "Equal", [("a", i64(1, 2, 3)), ("b", i64(2))], tol="exact", out_dtypes=[TensorProto.BOOL])
    p, q = np.array([True, False, True, False]), np.array([[True], [False]])
    for op in ["And", "Or", "Xor"]:
        case(op.lower(), op, [("a", p), ("b", q)], tol="exact", out_dtypes=[TensorProto.BOOL])
    case("not", "Not", [("a", p)], tol="exact", out_dtypes=[TensorProto.BOOL])
    special = np.array([[1.0, np.nan, np.inf], [-np.inf, -0.0, -np.nan]], np.float32)
    case("isnan", "IsNaN", [("x", special)], tol="exact", out_dtypes=[TensorProto.BOOL])
    case("isinf", "IsInf", [("x", special)], tol="exact", out_dtypes=[TensorProto.BOOL])
    case("isinf_negative_only", "IsInf", [("x", special)], {"detect_positive": 0}, tol="exact", out_dtypes=[TensorProto.BOOL])
    case("where_broadcast", "Where", [("c", np.array([[True], [False], [True]])), ("x", f32(3, 4)), ("y", f32(4))], tol="exact", out_dtypes=[TensorProto.FLOAT])
    case("where_int64", "Where", [("c", p), ("x", i64(1, 2, 3, 4)), ("y", i64(-1))], tol="exact", out_dtypes=[TensorProto.INT64])
    casts = [("float_to_int64", f32(5, lo=-3, hi=3), TensorProto.INT64), ("float_to_float16", f32(5), TensorProto.FLOAT16),
             ("int64_to_float", i64(-3, 0, 7), TensorProto.FLOAT), ("float_to_bool", np.array([0, 1.5, -2, 0], np.float32), TensorProto.BOOL),
             ("bool_to_float", p, TensorProto.FLOAT), ("float_to_int8", np.array([-3.7, 2.2, 100.0], np.float32), TensorProto.INT8),
             ("int64_to_int32", i64(5, -6), TensorProto.INT32), ("float_to_uint8", np.array([0.0, 3.9, 200.0], np.float32), TensorProto.UINT8)]
    for n, v, to in casts:
        case(f"cast_{n}", "Cast", [("x", v)], {"to": to}, tol="exact", out_dtypes=[to])
    h = lambda *shape: f32(*shape).astype(np.float16)
    case("matmul_float16", "MatMul", [("a", h(2, 5, 8)), ("b", h(8, 3))], tol="half")
    case("softmax_float16", "Softmax", [("x", h(3, 7))], tol="half")
    case("conv2d_float16", "Conv", [("x", h(1, 2, 5, 5)), ("w", C(h(3, 2, 3, 3)))], {"pads": [1, 1, 1, 1]}, tol="half")
    case("instance_norm_float16", "InstanceNormalization", [("x", h(1, 3, 4, 4)), ("s", C(h(3))), ("b", C(h(3)))], tol="half")
    case("cast_like", "CastLike", [("x", f32(4)), ("like", C(np.zeros(1, np.float16)))], tol="half", out_dtypes=[TensorProto.FLOAT16])
    # Timestep embeddings: sin/cos far from zero, where GPU builtins may keep only 2^-11.
    for op in ["Sin", "Cos"]:
        case(f"{op.lower()}_embedding_range", op, [("x", f32(64, lo=-1000, hi=1000))], tol="transcendental")


def linalg():
    case("matmul_2d_odd", "MatMul", [("a", f32(7, 13)), ("b", f32(13, 5))], tol="accumulate")
    case("matmul_broadcast_batch", "MatMul", [("a", f32(2, 1, 3, 4)), ("b", f32(3, 4, 6))], tol="accumulate")
    case("matmul_vector_matrix", "MatMul", [("a", f32(4)), ("b", f32(2, 4, 3))], tol="accumulate")
    case("matmul_matrix_vector", "MatMul", [("a", f32(2, 3, 4)), ("b", f32(4))], tol="accumulate")
    case("matmul_linear_3d", "MatMul", [("a", f32(2, 5, 8)), ("b", C(f32(8, 3)))], tol="accumulate")
    case("gemm_transb_bias", "Gemm", [("a", f32(3, 6)), ("b", C(f32(4, 6))), ("c", C(f32(4)))], {"transB": 1}, tol="accumulate")
    case("gemm_transa_alpha_beta", "Gemm", [("a", f32(6, 3)), ("b", f32(6, 5)), ("c", f32(3, 1))],
         {"transA": 1, "alpha": 0.5, "beta": 2.0}, tol="accumulate")
    case("gemm_no_c", "Gemm", [("a", f32(2, 3)), ("b", f32(3, 4))], tol="accumulate")
    case("einsum_attention_scores", "Einsum", [("q", f32(1, 2, 5, 4)), ("k", f32(1, 2, 6, 4))], {"equation": "bhid,bhjd->bhij"}, tol="accumulate")
    case("einsum_attention_values", "Einsum", [("p", f32(1, 2, 5, 6)), ("v", f32(1, 2, 6, 4))], {"equation": "bhij,bhjd->bhid"}, tol="accumulate")
    case("einsum_batched_matmul", "Einsum", [("a", f32(3, 2, 5)), ("b", f32(3, 5, 4))], {"equation": "bij,bjk->bik"}, tol="accumulate")
    case("einsum_outer_order", "Einsum", [("a", f32(2, 3)), ("b", f32(3, 4))], {"equation": "ij,jk->ki"}, tol="accumulate")
    case("einsum_transpose", "Einsum", [("a", f32(2, 3, 4))], {"equation": "abc->cab"}, tol="exact")
    # Long sums, where an f16 accumulator would show (the GPU's f16 mode sums in f32): K = 1024
    # (4-aligned, the vec4 path on CPU adapters) and K = 1001 (the scalar and tiled paths).
    case("matmul_long_k_aligned", "MatMul", [("a", f32(4, 1024)), ("b", C(f32(1024, 8, lo=-0.1, hi=0.1)))], tol="accumulate")
    case("matmul_long_k_odd", "MatMul", [("a", f32(5, 1001)), ("b", f32(1001, 6, lo=-0.1, hi=0.1))], tol="accumulate")


def nn():
    x = f32(1, 3, 7, 6)
    case("conv2d_basic", "Conv", [("x", x), ("w", C(f32(4, 3, 3, 3))), ("b", C(f32(4)))], tol="accumulate")
    case("conv2d_pads_stride", "Conv", [("x", x), ("w", C(f32(2, 3, 3, 3)))], {"pads": [1, 0, 2, 1], "strides": [2, 2]}, tol="accumulate")
    case("conv2d_dilation", "Conv", [("x", f32(2, 2, 9, 8)), ("w", C(f32(3, 2, 3, 2)))], {"dilations": [2, 3], "pads": [1, 1, 1, 1]}, tol="accumulate")
    case("conv2d_groups", "Conv", [("x", f32(1, 4, 6, 6)), ("w", C(f32(6, 2, 3, 3))), ("b", C(f32(6)))], {"group": 2, "pads": [1, 1, 1, 1]}, tol="accumulate")
    case("conv2d_depthwise", "Conv", [("x", f32(1, 3, 5, 5)), ("w", C(f32(3, 1, 3, 3)))], {"group": 3}, tol="accumulate")
    case("conv2d_same_upper", "Conv", [("x", x), ("w", C(f32(2, 3, 4, 3)))], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, tol="accumulate")
    case("conv2d_same_lower", "Conv", [("x", x), ("w", C(f32(2, 3, 4, 3)))], {"auto_pad": "SAME_LOWER", "strides": [2, 1]}, tol="accumulate")
    case("conv2d_valid", "Conv", [("x", x), ("w", C(f32(2, 3, 2, 2)))], {"auto_pad": "VALID"}, tol="accumulate")
    case("conv2d_pointwise", "Conv", [("x", x), ("w", C(f32(5, 3, 1, 1))), ("b", C(f32(5)))], tol="accumulate")
    case("conv1d_temporal", "Conv", [("x", f32(2, 4, 9)), ("w", C(f32(4, 4, 3))), ("b", C(f32(4)))], {"pads": [1, 1]}, tol="accumulate")
    case("conv3d", "Conv", [("x", f32(1, 2, 4, 5, 5)), ("w", C(f32(3, 2, 3, 3, 3)))], {"pads": [1, 1, 1, 1, 1, 1], "strides": [1, 2, 2]}, tol="accumulate")
    case("conv_transpose2d", "ConvTranspose", [("x", f32(1, 3, 4, 5)), ("w", C(f32(3, 2, 3, 3))), ("b", C(f32(2)))], tol="accumulate")
    case("conv_transpose2d_stride_pads", "ConvTranspose", [("x", f32(1, 2, 4, 4)), ("w", C(f32(2, 3, 4, 4)))],
         {"strides": [2, 2], "pads": [1, 1, 1, 1]}, tol="accumulate")
    case("conv_transpose2d_output_padding_groups", "ConvTranspose", [("x", f32(1, 4, 3, 3)), ("w", C(f32(4, 1, 3, 3)))],
         {"strides": [2, 2], "output_padding": [1, 0], "group": 2, "dilations": [1, 2]}, tol="accumulate")
    case("conv_transpose2d_output_shape", "ConvTranspose", [("x", f32(1, 2, 3, 3)), ("w", C(f32(2, 2, 3, 3)))],
         {"strides": [2, 2], "output_shape": [6, 7]}, tol="accumulate")
    p = f32(1, 2, 7, 6)
    case("average_pool", "AveragePool", [("x", p)], {"kernel_shape": [3, 3], "strides": [2, 2]}, tol="accumulate")
    case("average_pool_pads_exclude", "AveragePool", [("x", p)], {"kernel_shape": [3, 2], "pads": [1, 1, 1, 0]}, tol="accumulate")
    case("average_pool_pads_include", "AveragePool", [("x", p)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}, tol="accumulate")
    case("average_pool_ceil", "AveragePool", [("x", p)], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, tol="accumulate")
    case("average_pool_same_upper", "AveragePool", [("x", p)], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}, tol="accumulate")
    case("max_pool", "MaxPool", [("x", p)], {"kernel_shape": [2, 2], "strides": [2, 2]}, tol="exact")
    case("max_pool_pads_dilation_ceil", "MaxPool", [("x", p)], {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0], "dilations": [2, 1], "ceil_mode": 1, "strides": [2, 2]}, tol="exact")
    case("max_pool_1d", "MaxPool", [("x", f32(2, 3, 9))], {"kernel_shape": [3], "strides": [2]}, tol="exact")
    case("global_average_pool", "GlobalAveragePool", [("x", p)], tol="accumulate")
    case("global_max_pool", "GlobalMaxPool", [("x", f32(2, 3, 4, 5, 2))], tol="exact")
    case("softmax_last_axis", "Softmax", [("x", f32(2, 3, 5))], tol="transcendental")
    case("softmax_axis1", "Softmax", [("x", f32(2, 3, 5))], {"axis": 1}, tol="transcendental")
    case("softmax_opset11_coerced", "Softmax", [("x", f32(2, 3, 5))], {"axis": 1}, opset=11, tol="transcendental")
    case("softmax_opset11_default", "Softmax", [("x", f32(2, 3, 5))], opset=11, tol="transcendental")
    case("log_softmax", "LogSoftmax", [("x", f32(3, 7))], tol="transcendental")
    r = f32(2, 3, 4, 5)
    case("reduce_mean_attr_axes", "ReduceMean", [("x", r)], {"axes": [2, 3]}, opset=17, tol="accumulate")
    case("reduce_mean_input_axes", "ReduceMean", [("x", r), ("axes", C(i64(-1)))], opset=18, tol="accumulate")
    case("reduce_mean_no_keepdims", "ReduceMean", [("x", r), ("axes", C(i64(1, 3)))], {"keepdims": 0}, tol="accumulate")
    case("reduce_mean_all", "ReduceMean", [("x", r)], tol="accumulate")
    case("reduce_sum_input_axes", "ReduceSum", [("x", r), ("axes", C(i64(0, 2)))], opset=13, tol="accumulate")
    case("reduce_sum_noop_empty", "ReduceSum", [("x", r), ("axes", C(np.zeros(0, np.int64)))], {"noop_with_empty_axes": 1}, opset=13, tol="exact")
    case("reduce_sum_attr_opset11", "ReduceSum", [("x", r)], {"axes": [1], "keepdims": 0}, opset=11, tol="accumulate")
    case("reduce_max", "ReduceMax", [("x", r), ("axes", C(i64(1)))], tol="exact")
    case("reduce_max_attr", "ReduceMax", [("x", r)], {"axes": [-1], "keepdims": 0}, opset=13, tol="exact")
    case("reduce_min_attr", "ReduceMin", [("x", r)], {"axes": [0, 2]}, opset=13, tol="exact")
    case("reduce_prod", "ReduceProd", [("x", f32(2, 3, 4, lo=0.5, hi=1.5)), ("axes", C(i64(1)))], tol="accumulate")
    case("reduce_l2", "ReduceL2", [("x", r), ("axes", C(i64(2, 3)))], tol="accumulate")
    # No axes reduced, yet each element goes through the formula: sqrt(x * x), not x.
    case("reduce_l2_noop_empty", "ReduceL2", [("x", r), ("axes", C(np.zeros(0, np.int64)))], {"noop_with_empty_axes": 1}, tol="accumulate")
    case("reduce_sum_long_axis", "ReduceSum", [("x", f32(3, 2048)), ("axes", C(i64(1)))], tol="accumulate")
    # Integer data (shape arithmetic in exported graphs), without drawing from the generator.
    ints = ((np.arange(24) * 7) % 11 - 6).reshape(2, 3, 4)
    case("reduce_sum_int64", "ReduceSum", [("x", ints.astype(np.int64)), ("axes", C(i64(1)))], {"keepdims": 0}, tol="exact")
    case("reduce_mean_int32_truncates", "ReduceMean", [("x", ints.astype(np.int32)), ("axes", C(i64(0, 2)))], tol="exact")
    case("reduce_max_int32_attr", "ReduceMax", [("x", ints.astype(np.int32))], {"axes": [-1]}, opset=13, tol="exact")
    case("reduce_prod_int64", "ReduceProd", [("x", (ints % 4 - 1).astype(np.int64)), ("axes", C(i64(2)))], tol="exact")
    case("reduce_min_int64_all", "ReduceMin", [("x", ints.astype(np.int64))], {"keepdims": 0}, tol="exact")
    # Windows of padding only (one row, pad 1, dilation 2: both taps of a column fall outside):
    # onnxruntime gives the type's lowest finite value, not -inf.
    for dtype in (np.float32, np.float16):
        name = "max_pool_padding_only_windows" + ("_float16" if dtype == np.float16 else "")
        case(name, "MaxPool", [("x", f32(1, 2, 1, 5).astype(dtype))], {"kernel_shape": [2, 2], "pads": [1, 0, 1, 1], "dilations": [2, 1], "strides": [1, 2]}, tol="exact")


def norms():
    x = f32(2, 6, 4, 3)
    case("group_norm_opset21", "GroupNormalization", [("x", x), ("s", C(f32(6))), ("b", C(f32(6)))], {"num_groups": 3, "epsilon": 1e-5}, opset=21, tol="accumulate")
    case("group_norm_opset18", "GroupNormalization", [("x", x), ("s", C(f32(2))), ("b", C(f32(2)))], {"num_groups": 2}, opset=18, tol="accumulate")
    case("instance_norm", "InstanceNormalization", [("x", x), ("s", C(f32(6))), ("b", C(f32(6)))], {"epsilon": 1e-3}, tol="accumulate")
    case("instance_norm_1d", "InstanceNormalization", [("x", f32(2, 3, 7)), ("s", C(f32(3))), ("b", C(f32(3)))], tol="accumulate")
    case("layer_norm_last", "LayerNormalization", [("x", f32(2, 5, 8)), ("s", C(f32(8))), ("b", C(f32(8)))], tol="accumulate")
    case("layer_norm_axis1_no_bias", "LayerNormalization", [("x", f32(2, 3, 4)), ("s", C(f32(3, 4)))], {"axis": 1, "epsilon": 1e-3}, tol="accumulate")
    case("batch_norm", "BatchNormalization", [("x", x), ("s", C(f32(6))), ("b", C(f32(6))), ("m", C(f32(6))), ("v", C(f32(6, lo=0.5, hi=2)))], tol="accumulate")


def layout():
    x = f32(2, 3, 4)
    case("reshape_zero_minus_one", "Reshape", [("x", x), ("s", C(i64(0, -1)))], tol="exact")
    case("reshape_allowzero", "Reshape", [("x", np.zeros((0, 3), np.float32)), ("s", C(i64(3, 0)))], {"allowzero": 1}, opset=14, tol="exact")
    case("flatten_axis2", "Flatten", [("x", x)], {"axis": 2}, tol="exact")
    case("flatten_axis0", "Flatten", [("x", x)], {"axis": 0}, tol="exact")
    case("flatten_negative_axis", "Flatten", [("x", x)], {"axis": -1}, tol="exact")
    s = f32(1, 3, 1, 2)
    case("squeeze_input_axes", "Squeeze", [("x", s), ("a", C(i64(0, -2)))], tol="exact")
    case("squeeze_all", "Squeeze", [("x", s)], tol="exact")
    case("squeeze_attr_opset11", "Squeeze", [("x", s)], {"axes": [2]}, opset=11, tol="exact")
    case("unsqueeze_input_axes", "Unsqueeze", [("x", x), ("a", C(i64(0, -1)))], tol="exact")
    case("unsqueeze_attr_opset11", "Unsqueeze", [("x", x)], {"axes": [1, 4]}, opset=11, tol="exact")
    case("transpose_perm", "Transpose", [("x", f32(2, 3, 4, 5))], {"perm": [0, 2, 3, 1]}, tol="exact")
    case("transpose_default", "Transpose", [("x", x)], tol="exact")
    case("concat_axis1_three", "Concat", [("a", f32(2, 1, 3)), ("b", f32(2, 4, 3)), ("c", f32(2, 2, 3))], {"axis": 1}, tol="exact")
    case("concat_negative_axis", "Concat", [("a", f32(2, 3, 1)), ("b", f32(2, 3, 2))], {"axis": -1}, tol="exact")
    case("concat_int64", "Concat", [("a", i64(1, 2)), ("b", i64(3))], {"axis": 0}, tol="exact")
    sp = f32(2, 7, 3)
    case("split_input_sizes", "Split", [("x", sp), ("s", C(i64(2, 5)))], {"axis": 1}, outputs=2, opset=13, tol="exact")
    case("split_attr_opset11", "Split", [("x", sp)], {"axis": 1, "split": [3, 4]}, outputs=2, opset=11, tol="exact")
    case("split_num_outputs_uneven", "Split", [("x", sp)], {"axis": 1, "num_outputs": 3}, outputs=3, opset=18, tol="exact")
    case("split_even_implicit", "Split", [("x", f32(6, 2))], outputs=3, opset=13, tol="exact")
    sl = f32(5, 6, 4)
    case("slice_basic", "Slice", [("x", sl), ("s", C(i64(1, 0))), ("e", C(i64(4, 5)))], tol="exact")
    case("slice_axes_steps", "Slice", [("x", sl), ("s", C(i64(0, 1))), ("e", C(i64(6, 4))), ("a", C(i64(1, 2))), ("st", C(i64(2, 2)))], tol="exact")
    case("slice_negative_step", "Slice", [("x", sl), ("s", C(i64(-1))), ("e", C(i64(-9223372036854775807))), ("a", C(i64(0))), ("st", C(i64(-2)))], tol="exact")
    case("slice_clamped_and_negative", "Slice", [("x", sl), ("s", C(i64(-100, -3))), ("e", C(i64(100, -1))), ("a", C(i64(0, -1)))], tol="exact")
    case("slice_empty", "Slice", [("x", sl), ("s", C(i64(3))), ("e", C(i64(1))), ("a", C(i64(1)))], tol="exact")
    g = f32(4, 5, 3)
    case("gather_axis0", "Gather", [("x", g), ("i", C(i64(3, 0, -1)))], tol="exact")
    case("gather_axis1_2d_indices", "Gather", [("x", g), ("i", C(np.array([[0, -1], [2, 2]], np.int64)))], {"axis": 1}, tol="exact")
    case("gather_scalar_index", "Gather", [("x", g), ("i", C(np.array(-2, np.int64)))], {"axis": 2}, tol="exact")
    case("gather_runtime_int32_indices", "Gather", [("x", g), ("i", np.array([1, -4], np.int32))], {"axis": 1}, tol="exact")
    case("expand_broadcast", "Expand", [("x", f32(3, 1)), ("s", C(i64(2, 1, 4)))], tol="exact")
    case("expand_smaller_shape", "Expand", [("x", f32(2, 3)), ("s", C(i64(3)))], tol="exact")
    case("tile", "Tile", [("x", f32(2, 3)), ("r", C(i64(2, 3)))], tol="exact")
    pd = f32(1, 2, 3, 4)
    case("pad_constant_value", "Pad", [("x", pd), ("p", C(i64(0, 0, 1, 2, 0, 0, 2, 1))), ("v", C(np.float32(1.5)))], tol="exact")
    case("pad_negative_crops", "Pad", [("x", pd), ("p", C(i64(0, 0, -1, 1, 0, 0, 1, -2)))], tol="exact")
    case("pad_reflect", "Pad", [("x", pd), ("p", C(i64(0, 0, 2, 3, 0, 0, 2, 3)))], {"mode": "reflect"}, tol="exact")
    case("pad_edge", "Pad", [("x", pd), ("p", C(i64(0, 1, 2, 1, 0, 0, 1, 3)))], {"mode": "edge"}, tol="exact")
    case("pad_axes_opset18", "Pad", [("x", pd), ("p", C(i64(1, 2, 3, 0))), None, ("a", C(i64(-1, 2)))], tol="exact")
    case("pad_wrap_opset19", "Pad", [("x", pd), ("p", C(i64(0, 0, 1, 2, 0, 0, 2, 3)))], {"mode": "wrap"}, opset=19, tol="exact")
    rs = f32(1, 2, 3, 4)
    for nm in ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]:
        for cm in ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]:
            case(f"resize_nearest_{nm}_{cm}", "Resize", [("x", rs), None, ("sc", C(np.array([1, 1, 1.5, 1.7], np.float32)))],
                 {"mode": "nearest", "nearest_mode": nm, "coordinate_transformation_mode": cm}, tol="exact")
    case("resize_nearest_upsample2_sizes", "Resize", [("x", rs), None, None, ("sz", C(i64(1, 2, 6, 8)))], {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, tol="exact")
    case("resize_nearest_downsample", "Resize", [("x", f32(1, 1, 7, 9)), None, ("sc", C(np.array([1, 1, 0.5, 0.4], np.float32)))], {"mode": "nearest"}, tol="exact")
    case("resize_nearest_half_pixel_symmetric", "Resize", [("x", rs), None, ("sc", C(np.array([1, 1, 1.5, 2.3], np.float32)))], {"mode": "nearest", "coordinate_transformation_mode": "half_pixel_symmetric"}, opset=19, tol="exact")
    for cm in ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]:
        case(f"resize_linear_{cm}", "Resize", [("x", rs), None, ("sc", C(np.array([1, 1, 2.0, 1.5], np.float32)))], {"mode": "linear", "coordinate_transformation_mode": cm}, tol="accumulate")
    case("resize_linear_sizes_down", "Resize", [("x", f32(1, 2, 6, 7)), None, None, ("sz", C(i64(1, 2, 4, 3)))], {"mode": "linear"}, tol="accumulate")
    case("resize_linear_axes_opset18", "Resize", [("x", rs), None, ("sc", C(np.array([2.0, 0.5], np.float32)))], {"mode": "linear", "axes": [2, 3]}, tol="accumulate")


def sources_and_quant():
    x = f32(2, 3, 4)
    case("shape", "Shape", [("x", x)], tol="exact", out_dtypes=[TensorProto.INT64])
    case("shape_start_end", "Shape", [("x", x)], {"start": 1, "end": -1}, tol="exact", out_dtypes=[TensorProto.INT64])
    case("shape_negative_start", "Shape", [("x", x)], {"start": -2}, tol="exact", out_dtypes=[TensorProto.INT64])
    case("size", "Size", [("x", x)], tol="exact", out_dtypes=[TensorProto.INT64])
    case("constant_of_shape_default", "ConstantOfShape", [("s", C(i64(2, 3)))], tol="exact", out_dtypes=[TensorProto.FLOAT])
    case("constant_of_shape_int64", "ConstantOfShape", [("s", C(i64(4)))], {"value": numpy_helper.from_array(i64(7))}, tol="exact", out_dtypes=[TensorProto.INT64])
    case("range_float", "Range", [("a", C(np.float32(1.0))), ("b", C(np.float32(4.2))), ("d", C(np.float32(0.7)))], tol="elementwise")
    case("range_int64_negative", "Range", [("a", C(np.int64(10))), ("b", C(np.int64(1))), ("d", C(np.int64(-3)))], tol="exact")
    case("constant_tensor", "Constant", [], {"value": numpy_helper.from_array(f32(2, 2))}, tol="exact")
    case("constant_value_ints", "Constant", [], {"value_ints": [3, 1, 4]}, tol="exact", out_dtypes=[TensorProto.INT64])
    case("constant_value_float", "Constant", [], {"value_float": 2.5}, tol="exact", out_dtypes=[TensorProto.FLOAT])
    case("identity", "Identity", [("x", x)], tol="exact")
    case("dropout_inference", "Dropout", [("x", x)], {"seed": 3}, tol="exact")
    w = f32(4, 3)
    q = rng.integers(-128, 127, size=(4, 3), dtype=np.int8)
    case("dequantize_per_tensor", "DequantizeLinear", [("q", q), ("s", C(np.float32(0.05))), ("z", C(np.int8(3)))], tol="elementwise", out_dtypes=[TensorProto.FLOAT])
    case("dequantize_per_axis", "DequantizeLinear", [("q", q), ("s", C(np.array([0.1, 0.2, 0.3, 0.4], np.float32))), ("z", C(np.zeros(4, np.int8)))], {"axis": 0}, tol="elementwise", out_dtypes=[TensorProto.FLOAT])
    case("dequantize_uint8_no_zero_point", "DequantizeLinear", [("q", q.view(np.uint8)), ("s", C(np.float32(0.5)))], tol="elementwise", out_dtypes=[TensorProto.FLOAT])
    case("quantize_per_tensor_int8", "QuantizeLinear", [("x", w), ("s", C(np.float32(0.02))), ("z", C(np.int8(-2)))], tol="exact", out_dtypes=[TensorProto.INT8])
    case("quantize_per_axis_int8", "QuantizeLinear", [("x", w), ("s", C(np.array([0.01, 0.02, 0.05], np.float32))), ("z", C(np.zeros(3, np.int8)))], {"axis": 1}, tol="exact", out_dtypes=[TensorProto.INT8])
    case("quantize_uint8_ties_even", "QuantizeLinear", [("x", np.array([0.5, 1.5, 2.5, -1.0, 300.0], np.float32)), ("s", C(np.float32(1.0)))], tol="exact", out_dtypes=[TensorProto.UINT8])


def gather_nd():
    # Indices known at build (initializers) lower on the GPU; runtime indices run on the CPU only.
    x = f32(3, 4, 2)
    case("gather_nd_elements", "GatherND", [("x", x), ("i", C(np.array([[0, 1, 1], [2, 3, 0], [1, 0, 1]], np.int64)))], tol="exact")
    case("gather_nd_slices", "GatherND", [("x", x), ("i", C(np.array([[[2], [0]], [[1], [1]]], np.int64)))], tol="exact")
    case("gather_nd_slices_k2", "GatherND", [("x", x), ("i", C(np.array([[2, 3], [0, 1]], np.int64)))], tol="exact")
    case("gather_nd_negative_indices", "GatherND", [("x", x), ("i", C(np.array([[-1, -4], [-3, 2], [0, -1]], np.int64)))], tol="exact")
    case("gather_nd_batch_dims1", "GatherND", [("x", f32(2, 3, 4)), ("i", C(np.array([[[2], [0], [-1]], [[1], [1], [0]]], np.int64)))], {"batch_dims": 1}, tol="exact")
    case("gather_nd_batch_dims2_elements", "GatherND", [("x", f32(2, 3, 4)), ("i", C(np.array([[[3], [0], [1]], [[2], [-1], [0]]], np.int64)))], {"batch_dims": 2}, tol="exact")
    case("gather_nd_opset11", "GatherND", [("x", x), ("i", C(np.array([[1], [2]], np.int64)))], opset=11, tol="exact")
    mask = np.array([[1, 0, 1, 1, 0], [0, 1, 0, 1, 1]], bool)
    case("gather_nd_bool_data", "GatherND", [("m", mask), ("i", C(np.array([[0, 4], [1, 0], [1, -1]], np.int64)))], tol="exact")
    case("gather_nd_int64_data", "GatherND", [("m", rng.integers(-50, 50, size=(2, 5))), ("i", C(np.array([[1], [0], [1]], np.int64)))], tol="exact")
    case("gather_nd_runtime_int32_indices", "GatherND", [("x", x), ("i", np.array([[2, -1], [0, 1]], np.int32))], tol="exact")


def scatter_nd():
    # Reduction none with indices known at build lowers on the GPU; reductions and runtime
    # indices run on the CPU only (GPU_REFUSES in tests/onnx_common).
    x = f32(3, 4, 2)
    case("scatter_nd_elements", "ScatterND", [("x", x), ("i", C(np.array([[0, 1, 1], [2, 3, 0], [1, 0, 1]], np.int64))), ("u", f32(3))], tol="exact")
    case("scatter_nd_slices", "ScatterND", [("x", x), ("i", C(np.array([[[2], [0]]], np.int64))), ("u", f32(1, 2, 4, 2))], tol="exact")
    case("scatter_nd_slices_k2", "ScatterND", [("x", x), ("i", C(np.array([[2, 3], [0, 1]], np.int64))), ("u", f32(2, 2))], tol="exact")
    case("scatter_nd_negative_indices", "ScatterND", [("x", x), ("i", C(np.array([[-1, -4], [-3, 2], [0, -1]], np.int64))), ("u", f32(3, 2))], tol="exact")
    case("scatter_nd_overwrite_all", "ScatterND", [("x", f32(2, 3)), ("i", C(np.array([[1], [0]], np.int64))), ("u", f32(2, 3))], tol="exact")
    case("scatter_nd_opset11", "ScatterND", [("x", x), ("i", C(np.array([[1], [2]], np.int64))), ("u", f32(2, 4, 2))], opset=11, tol="exact")
    case("scatter_nd_int64_data", "ScatterND", [("m", rng.integers(-50, 50, size=(2, 5))), ("i", C(np.array([[1, 3], [0, -1]], np.int64))), ("u", rng.integers(-50, 50, size=(2,)))], tol="exact")
    # Wan's rotary embedding: out[..., 0::2] = a as one scatter of (b, h, s, 2c) tuples.
    b, h, s, d = 1, 2, 3, 8
    grid = np.stack(np.meshgrid(np.arange(b), np.arange(h), np.arange(s), np.arange(0, d, 2), indexing="ij"), -1)
    case("scatter_nd_rotary_even", "ScatterND", [("x", f32(b, h, s, d)), ("i", C(grid.astype(np.int64))), ("u", f32(b, h, s, d // 2))], tol="exact")
    dup = C(np.array([[1, 0], [2, 1], [1, 0], [0, 3]], np.int64))
    for red, opset in [("add", 16), ("mul", 16), ("max", 18), ("min", 18)]:
        case(f"scatter_nd_reduction_{red}", "ScatterND", [("x", f32(3, 4)), ("i", dup), ("u", f32(4))], {"reduction": red}, opset=opset, tol="elementwise")
    case("scatter_nd_runtime_int64_indices", "ScatterND", [("x", x), ("i", np.array([[2, -1], [0, 1]], np.int64)), ("u", f32(2, 2))], tol="exact")


if __name__ == "__main__":
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    for family in [elementwise, linalg, nn, norms, layout, sources_and_quant, gather_nd, scatter_nd]:
        # A stream per family: adding a case changes only the data of its own family.
        rng = np.random.default_rng([20261128, zlib.crc32(family.__name__.encode())])
        family()
    cases = sorted(p.name for p in ROOT.iterdir())
    size = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    print(f"{len(cases)} cases, {size / 1024:.0f} KiB in {ROOT}")
