//! MatMul (or Gemm) with its bias Add and a following activation as one GPU kernel: the fusion
//! passes `matmul+add` and `linear+activation` (src/graph/phases/fuse.rs) and the matmul kernel's
//! epilogue (shaders/matmul.wgsl `store`: bias, broadcast addend, activation). Each small graph
//! runs on the GPU backend against the CPU backend unfused (the reference), in f32 and f16 modes,
//! on lavapipe's register-blocked kernels (the vec4 ones where the layout allows) and on the
//! workgroup-tiled ones GPUs get (a device opened with `KernelStyle::Tiled`); each must become
//! the expected fused node and, in f32 mode, exactly one kernel launch. `FIFO_REQUIRE_GPU=1`
//! turns a missing adapter into a failure.
//!
//! Mutation checks (2026-11-29, lavapipe): with `v += bias[col]` removed from the kernel's
//! epilogue, 24 of the 52 checks fail (every constant-bias case, both styles and precisions);
//! with the lowering not passing the activation to the MatMul kernel, 36 fail (every activation
//! case but Gemm's, which has its own path).
#![cfg(not(target_arch = "wasm32"))]

mod onnx_common;

use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions, KernelStyle, Precision};
use fifo_diffusion::onnx::proto::{ModelProto, OperatorSetIdProto};
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::graph::*;
use onnx_common::{compare, relative_l2, Tolerance};
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// f32 mode: the GPU sums K products in another order than the CPU, and its sigmoid/tanh/erf
/// are built from exp (`Tolerance::named_gpu("accumulate")`, 1e-4 absolute and relative).
const F32_TOLERANCE: &str = "accumulate";
/// f16 mode: f16 activations and output, f32 sums (`Tolerance::named("f16_accumulate")`: 4u of
/// the element and of the output's scale, 4u relative L2, u = 2^-11).
const F16_TOLERANCE: &str = "f16_accumulate";

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_f32(shape.to_vec(), values(shape.iter().product(), seed)).unwrap()
}

fn constant(name: &str, shape: &[usize], seed: u64) -> TensorProto {
    f32_initializer(name, shape, &values(shape.iter().product(), seed))
}

/// A model at `opset` (Gelu needs 20; the graph builder writes 18).
fn model_at(opset: i64, g: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        graph: Some(g),
        ..Default::default()
    }
    .encode_to_vec()
}

/// One graph: its bytes, inputs, and the op types both backends' fused builds must have.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    feeds: HashMap<String, Tensor>,
    fused: Vec<&'static str>,
}

/// `MatMul(x, w) + c` then `act` nodes (`Silu`: Sigmoid and Mul; others: the ONNX op).
fn linear(
    name: &'static str,
    x: &[usize],
    w: &[usize],
    c: Option<(&[usize], bool)>,
    act: Option<&str>,
    out: &[usize],
    fused: &'static str,
) -> Case {
    let mut nodes = vec![node("MatMul", &["x", "w"], "xw", vec![])];
    let mut inits = vec![constant("w", w, 2)];
    let mut inputs = vec![float_info("x", x)];
    let mut feeds = HashMap::from([("x".to_string(), tensor(x, 1))]);
    let mut last = "xw";
    if let Some((shape, is_constant)) = c {
        // The bias first, as some exporters write it; the pass takes either order.
        nodes.push(node("Add", &["c", "xw"], "sum", vec![]));
        if is_constant {
            inits.push(constant("c", shape, 3));
        } else {
            inputs.push(float_info("c", shape));
            feeds.insert("c".into(), tensor(shape, 3));
        }
        last = "sum";
    }
    let mut opset = 18;
    match act {
        None => {}
        Some("Silu") => {
            nodes.push(node("Sigmoid", &[last], "sig", vec![]));
            nodes.push(node("Mul", &[last, "sig"], "act", vec![]));
        }
        Some(op) => {
            let attrs = if op == "LeakyRelu" { vec![float_attr("alpha", 0.1)] } else { vec![] };
            opset = if op == "Gelu" { 20 } else { 18 };
            nodes.push(node(op, &[last], "act", attrs));
        }
    }
    // The last node writes the graph output.
    let last_node = nodes.last_mut().expect("a MatMul at least");
    last_node.output = vec!["y".into()];
    let g = graph(nodes, inits, inputs, vec![float_info("y", out)]);
    Case { name, bytes: model_at(opset, g), feeds, fused: vec![fused] }
}

fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(fifo_diffusion::onnx::proto::attribute_proto::AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

/// `DequantizeLinear(int8 [k, n], one scale per column) -> MatMul -> Add(bias) -> SiLU`.
fn int8_linear(name: &'static str, x: &[usize], k: usize, n: usize) -> Case {
    let q: Vec<u8> = values(k * n, 5).iter().map(|v| ((v * 127.0).round() as i8) as u8).collect();
    let scales: Vec<f32> = (0..n).map(|j| 0.004 + 0.0005 * (j % 7) as f32).collect();
    let nodes = vec![
        node("DequantizeLinear", &["wq", "ws"], "w", vec![int_attr("axis", 1)]),
        node("MatMul", &["x", "w"], "xw", vec![]),
        node("Add", &["xw", "b"], "sum", vec![]),
        node("Sigmoid", &["sum"], "sig", vec![]),
        node("Mul", &["sum", "sig"], "y", vec![]),
    ];
    let inits = vec![
        initializer("wq", DataType::Int8, &[k, n], q),
        f32_initializer("ws", &[n], &scales),
        constant("b", &[n], 6),
    ];
    let out: Vec<usize> = [&x[..x.len() - 1], &[n]].concat();
    let bytes = model(nodes, inits, vec![float_info("x", x)], vec![float_info("y", &out)]);
    let feeds = HashMap::from([("x".to_string(), tensor(x, 1))]);
    Case { name, bytes, feeds, fused: vec!["DequantizeLinear", "FusedMatMulAddSilu"] }
}

/// `Gemm(x, w, c, transB=1)` (torch's Linear on 2-D input) then Relu.
fn gemm_relu() -> Case {
    let (m, k, n) = (5, 7, 6);
    let nodes = vec![
        node("Gemm", &["x", "w", "c"], "g", vec![int_attr("transB", 1)]),
        node("Relu", &["g"], "y", vec![]),
    ];
    let inits = vec![constant("w", &[n, k], 2), constant("c", &[n], 3)];
    let bytes = model(nodes, inits, vec![float_info("x", &[m, k])], vec![float_info("y", &[m, n])]);
    let feeds = HashMap::from([("x".to_string(), tensor(&[m, k], 1))]);
    Case { name: "gemm+relu", bytes, feeds, fused: vec!["FusedGemmRelu"] }
}

fn cases() -> Vec<Case> {
    vec![
        // Odd M, K, N (none a multiple of the 4x4 block or the 64 tile), a constant bias.
        linear(
            "odd bias silu",
            &[2, 37, 19],
            &[19, 33],
            Some((&[33], true)),
            Some("Silu"),
            &[2, 37, 33],
            "FusedMatMulAddSilu",
        ),
        // M and N past one 64 tile, K and N multiples of 4: the vec4 kernel on lavapipe.
        linear(
            "vec4 bias gelu",
            &[3, 70, 16],
            &[16, 68],
            Some((&[68], true)),
            Some("Gelu"),
            &[3, 70, 68],
            "FusedMatMulAddGelu",
        ),
        // Bias with leading 1s, no activation.
        linear(
            "bias [1, 1, n]",
            &[2, 13, 7],
            &[7, 5],
            Some((&[1, 1, 5], true)),
            None,
            &[2, 13, 5],
            "FusedMatMulAdd",
        ),
        // A residual of the product's shape (a run-time input): the broadcast `d` operand.
        linear(
            "residual",
            &[2, 9, 11],
            &[11, 6],
            Some((&[2, 9, 6], false)),
            Some("Relu"),
            &[2, 9, 6],
            "FusedMatMulAddRelu",
        ),
        // Batched, the weights broadcast over the leading batch dim, an addend over [m, n].
        linear(
            "batched [m, n] addend",
            &[2, 3, 9, 11],
            &[3, 11, 6],
            Some((&[9, 6], true)),
            Some("Tanh"),
            &[2, 3, 9, 6],
            "FusedMatMulAddTanh",
        ),
        // A run-time bias [n] (not a constant): through `d` too.
        linear(
            "run-time bias",
            &[4, 10],
            &[10, 12],
            Some((&[12], false)),
            Some("Sigmoid"),
            &[4, 12],
            "FusedMatMulAddSigmoid",
        ),
        // 1-D operands: numpy's vector promotion, on either side.
        linear("vector @ matrix", &[11], &[11, 6], Some((&[6], true)), None, &[6], "FusedMatMulAdd"),
        linear("matrix @ vector", &[2, 9, 11], &[11], Some((&[9], true)), None, &[2, 9], "FusedMatMulAdd"),
        // Three batch dims whose addend does not collapse with the operands: copied out first.
        linear(
            "rank 5",
            &[2, 3, 4, 5, 8],
            &[2, 1, 1, 8, 4],
            Some((&[4, 5, 4], true)),
            Some("Silu"),
            &[2, 3, 4, 5, 4],
            "FusedMatMulAddSilu",
        ),
        // No bias: MatMul then an activation.
        linear(
            "matmul leakyrelu",
            &[4, 10],
            &[10, 3],
            None,
            Some("LeakyRelu"),
            &[4, 3],
            "FusedMatMulLeakyRelu",
        ),
        int8_linear("int8 odd", &[2, 13, 19], 19, 33),
        int8_linear("int8 vec4", &[2, 13, 16], 16, 36),
        gemm_relu(),
    ]
}

fn shapes(feeds: &HashMap<String, Tensor>) -> HashMap<String, Vec<usize>> {
    feeds.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect()
}

/// The CPU backend unfused: the reference.
fn reference(case: &Case) -> Tensor {
    let mut options = SessionOptions::default();
    options.build.fuse = false;
    let s = Session::build(ModelSource::Bytes(&case.bytes), &shapes(&case.feeds), &options).unwrap();
    s.run(case.feeds.clone()).unwrap().remove(0).1
}

fn op_types(session: &Session) -> Vec<String> {
    session.graph().graph.nodes.iter().map(|n| n.op_type.clone()).collect()
}

/// The tiled-style device (what GPUs get), opened once.
fn tiled() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    CTX.get_or_init(|| {
        let options = GpuOptions {
            adapter: AdapterChoice::Fallback,
            style: Some(KernelStyle::Tiled),
            ..Default::default()
        };
        onnx_common::open_gpu_context(&options)
    })
    .clone()
}

/// Every case on one device in one precision; returns the failures.
fn check(ctx: &Arc<GpuContext>, style: &str, precision: Precision) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases() {
        let want = reference(&case);
        // The CPU backend fuses the same nodes (and computes the unfused bits: compared exactly
        // in tests/fusion.rs).
        let cpu =
            Session::build(ModelSource::Bytes(&case.bytes), &shapes(&case.feeds), &SessionOptions::default())
                .unwrap();
        assert_eq!(op_types(&cpu), case.fused, "{}: CPU build", case.name);
        let options = SessionOptions {
            backend: Backend::Gpu,
            gpu: GpuOptions { precision, ..Default::default() },
            ..Default::default()
        };
        let built = pollster::block_on(Session::build_on(
            ctx.clone(),
            ModelSource::Bytes(&case.bytes),
            &shapes(&case.feeds),
            &options,
        ));
        let session = match built {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{style} {precision:?} {}: build failed: {e}", case.name));
                continue;
            }
        };
        assert_eq!(op_types(&session), case.fused, "{}: GPU build", case.name);
        let gpu = session.gpu().expect("a GPU session");
        if case.name.starts_with("int8") {
            assert_eq!(gpu.int8_weights, 1, "{}: the weights stay int8", case.name);
        }
        // One kernel: the product, its addend and activation (the rank-5 case copies its addend
        // out first; f16 mode casts the f32 input and output at the boundary).
        let launches = if case.name == "rank 5" { 2 } else { 1 };
        if precision == Precision::F32 {
            assert_eq!(gpu.dispatches(), launches, "{}: kernel launches", case.name);
        }
        let got = pollster::block_on(session.run_async(case.feeds.clone())).unwrap().remove(0).1;
        let tol = match precision {
            Precision::F16 => Tolerance::named(F16_TOLERANCE),
            _ => Tolerance::named_gpu(F32_TOLERANCE),
        };
        let rel = relative_l2(&got, &want);
        eprintln!("{style:<16} {precision:?} {:<24} relative L2 {rel:.2e}", case.name);
        if let Some(diff) = compare(&got, &want, tol.unwrap()) {
            failures.push(format!("{style} {precision:?} {}: {diff}", case.name));
        }
    }
    failures
}

#[test]
fn fused_linear_layers_match_the_cpu_backend() {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let tiled = tiled().expect("a second device on the adapter");
    let mut failures = Vec::new();
    for (style, ctx) in [("register-blocked", &ctx), ("tiled", &tiled)] {
        failures.extend(check(ctx, style, Precision::F32));
        if ctx.has_shader_f16() {
            failures.extend(check(ctx, style, Precision::F16));
        } else {
            eprintln!(
                "\n!!!!!!!! SKIPPING f16 linear cases: {} has no shader-f16 !!!!!!!!\n",
                ctx.describe()
            );
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
