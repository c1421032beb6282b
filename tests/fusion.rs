//! The fusion passes (src/graph/phases/fuse.rs) on the torch-exported UNets: each pass alone
//! rewrites the expected number of patterns, and the fused graph computes what the unfused one
//! computes on the CPU backend (the reference), within the accumulation tolerance.

mod onnx_common;

use fifo_diffusion::cpu::executor::execute;
use fifo_diffusion::graph::phases::fuse::{
    fuse, AttentionPass, ErfGeluPass, FusionPass, MatMulAddPass, NormSiluPass, ProductActivationPass,
    SiluPass, TanhGeluPass, TorchGroupNormPass,
};
use fifo_diffusion::graph::phases::{parse, plan, propagate, prune, BuildOptions, BuiltGraph};
use fifo_diffusion::onnx::load_model;
use fifo_diffusion::onnx::proto::{NodeProto, TensorProto};
use fifo_diffusion::tensor::Tensor;
use onnx_common::{compare, fixtures_root, load_fixture, Tolerance};

/// Builds a fixture model with exactly `passes`, returns the graph and the fused-node counts.
fn build_with(model: &str, passes: Vec<Box<dyn FusionPass>>) -> (BuiltGraph, Vec<Tensor>) {
    let f = load_fixture(&fixtures_root().join("models").join(model));
    let bytes = std::fs::read(&f.model).unwrap();
    let mut graph = load_model(&bytes, f.model.parent()).unwrap();
    parse::parse_ops(&mut graph).unwrap();
    propagate::propagate(&mut graph, &f.input_shapes(), &BuildOptions::default()).unwrap();
    prune::prune(&mut graph);
    let fusions = fuse(&mut graph, &passes).unwrap();
    prune::prune(&mut graph);
    let plan = plan::plan(&graph, true);
    let inputs: Vec<Tensor> = f.inputs.iter().map(|(_, t)| t.clone()).collect();
    (BuiltGraph { graph, plan, fusions }, inputs)
}

fn count(built: &BuiltGraph, op_type: &str) -> usize {
    built.graph.nodes.iter().filter(|n| n.op_type == op_type).count()
}

/// Runs the model fused by `passes` and unfused; checks the outputs agree and returns the fused
/// build for counting.
fn fused_equals_unfused(model: &str, passes: Vec<Box<dyn FusionPass>>) -> BuiltGraph {
    let (plain, inputs) = build_with(model, Vec::new());
    let (fused, _) = build_with(model, passes);
    assert!(fused.graph.nodes.len() < plain.graph.nodes.len(), "{model}: nothing was fused");
    let want = execute(&plain, inputs.clone()).unwrap();
    let got = execute(&fused, inputs).unwrap();
    for (g, w) in got.iter().zip(&want) {
        if let Some(diff) = compare(g, w, Tolerance::named("accumulate").unwrap()) {
            panic!("{model}: fused output differs: {diff}");
        }
    }
    fused
}

#[test]
fn attention_pass_fuses_matmul_scale_softmax_matmul() {
    for model in ["unet_torchscript_op17", "unet_dynamo_op18"] {
        // Softmaxes read by a MatMul, and those read by an Einsum (the models have both forms).
        let (plain, _) = build_with(model, Vec::new());
        let g = &plain.graph;
        let read_by = |op: &str| {
            g.nodes
                .iter()
                .filter(|n| n.op_type == "Softmax")
                .filter(|s| g.nodes.iter().any(|m| m.op_type == op && m.inputs[0] == s.outputs[0]))
                .count()
        };
        let (matmuls, einsums) = (read_by("MatMul"), read_by("Einsum"));
        assert!(matmuls > 0 && einsums > 0, "{model}: {matmuls} {einsums}");
        let softmaxes = matmuls + einsums;
        let fused = fused_equals_unfused(model, vec![Box::new(AttentionPass)]);
        assert_eq!(fused.fusions, vec![("attention", softmaxes)], "{model}");
        assert_eq!(count(&fused, "FusedAttention"), softmaxes, "{model}");
        assert_eq!(count(&plain, "Softmax") - count(&fused, "Softmax"), softmaxes, "{model}");
        // Each attention removed its two products, the scale and the softmax.
        assert_eq!(count(&plain, "MatMul") - count(&fused, "MatMul"), 2 * matmuls, "{model}");
        assert_eq!(count(&plain, "Einsum") - count(&fused, "Einsum"), 2 * einsums, "{model}");
    }
}

#[test]
fn torch_groupnorm_pass_rebuilds_group_normalization() {
    for model in ["unet_torchscript_op17", "unet_dynamo_op18"] {
        let (plain, _) = build_with(model, Vec::new());
        let instance_norms = count(&plain, "InstanceNormalization");
        assert!(instance_norms > 0);
        let fused = fused_equals_unfused(model, vec![Box::new(TorchGroupNormPass)]);
        assert_eq!(fused.fusions, vec![("torch-groupnorm", instance_norms)], "{model}");
        assert_eq!(count(&fused, "GroupNormalization"), instance_norms, "{model}");
        assert_eq!(count(&fused, "InstanceNormalization"), 0, "{model}");
    }
}

#[test]
fn norm_silu_pass_fuses_the_activation_into_the_norm() {
    for model in ["unet_torchscript_op17", "unet_dynamo_op18"] {
        // After the GroupNorm rewrite, every norm followed by x * sigmoid(x) takes the SiLU.
        let fused = fused_equals_unfused(model, vec![Box::new(TorchGroupNormPass), Box::new(NormSiluPass)]);
        let silus = fused.fusions.iter().find(|f| f.0 == "norm+silu").map_or(0, |f| f.1);
        assert!(silus > 0, "{model}: {:?}", fused.fusions);
        assert_eq!(count(&fused, "FusedGroupNormalizationSilu"), silus, "{model}");
        let (plain, _) = build_with(model, Vec::new());
        assert_eq!(count(&plain, "Sigmoid") - count(&fused, "Sigmoid"), silus, "{model}");
    }
}

#[test]
fn silu_pass_fuses_sigmoid_and_mul() {
    for model in ["unet_torchscript_op17", "unet_dynamo_op18"] {
        // Alone, the pass takes every x * sigmoid(x), those behind a norm too.
        let fused = fused_equals_unfused(model, vec![Box::new(SiluPass)]);
        let silus = fused.fusions.iter().find(|f| f.0 == "silu").map_or(0, |f| f.1);
        let (plain, _) = build_with(model, Vec::new());
        assert!(silus > 0 && silus == count(&plain, "Sigmoid"), "{model}: {:?}", fused.fusions);
        assert_eq!(count(&fused, "Silu"), silus, "{model}");
        assert_eq!(count(&fused, "Sigmoid"), 0, "{model}");
        assert_eq!(count(&plain, "Mul") - count(&fused, "Mul"), silus, "{model}");
    }
}

#[test]
fn matmul_add_pass_adds_linear_biases_onto_the_product() {
    for model in ["unet_torchscript_op17", "unet_dynamo_op18"] {
        let fused = fused_equals_unfused(model, vec![Box::new(MatMulAddPass)]);
        let linears = fused.fusions.iter().find(|f| f.0 == "matmul+add").map_or(0, |f| f.1);
        assert!(linears > 0, "{model}: {:?}", fused.fusions);
        assert_eq!(count(&fused, "FusedMatMulAdd"), linears, "{model}");
        let (plain, inputs) = build_with(model, Vec::new());
        assert_eq!(count(&plain, "MatMul") - count(&fused, "MatMul"), linears, "{model}");
        assert_eq!(count(&plain, "Add") - count(&fused, "Add"), linears, "{model}");
        // The Add runs on each block of the product: the bits of MatMul then Add.
        let (want, got) = (execute(&plain, inputs.clone()).unwrap(), execute(&fused, inputs).unwrap());
        for (g, w) in got.iter().zip(&want) {
            assert!(compare(g, w, Tolerance::named("exact").unwrap()).is_none(), "{model}");
        }
    }
}

/// The passes leave alone what does not match: a graph without the patterns is unchanged.
#[test]
fn passes_leave_other_graphs_alone() {
    let dir = fixtures_root().join("ops");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("softmax") || name.starts_with("instance_norm") || name.starts_with("matmul")) {
            continue;
        }
        let bytes = std::fs::read(path.join("model.onnx")).unwrap();
        let mut graph = load_model(&bytes, None).unwrap();
        let before = graph.nodes.len();
        parse::parse_ops(&mut graph).unwrap();
        let passes: Vec<Box<dyn FusionPass>> = vec![
            Box::new(TorchGroupNormPass),
            Box::new(NormSiluPass),
            Box::new(SiluPass),
            Box::new(AttentionPass),
            Box::new(TanhGeluPass),
            Box::new(ErfGeluPass),
            Box::new(MatMulAddPass),
            Box::new(ProductActivationPass),
        ];
        assert!(fuse(&mut graph, &passes).unwrap().is_empty(), "{name}");
        assert_eq!(graph.nodes.len(), before);
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} single-op fixtures found");
}

/// `softmax(Q Kt * scale) V` as torch exports it: Transpose, MatMul, Mul, Softmax, MatMul.
fn attention_model(q: [usize; 4], n: usize, dv: usize) -> Vec<u8> {
    use onnx_common::graph::*;
    let [b, h, m, d] = q;
    onnx_common::graph::model(
        vec![
            node("Transpose", &["k"], "kt", vec![ints_attr("perm", vec![0, 1, 3, 2])]),
            node("MatMul", &["q", "kt"], "scores", vec![]),
            node("Mul", &["scores", "scale"], "scaled", vec![]),
            node("Softmax", &["scaled"], "probs", vec![int_attr("axis", -1)]),
            node("MatMul", &["probs", "v"], "out", vec![]),
        ],
        vec![f32_scalar("scale", 1.0 / (d as f32).sqrt())],
        vec![float_info("q", &[b, h, m, d]), float_info("k", &[b, h, n, d]), float_info("v", &[b, h, n, dv])],
        vec![float_info("out", &[b, h, m, dv])],
    )
}

/// Runs `bytes` on the CPU fused and unfused (and fused on the GPU when there is one, which must
/// fuse the same nodes) with `x` as the only input; returns the fused build's op types.
fn fused_and_unfused_agree(bytes: &[u8], x: &Tensor) -> Vec<String> {
    fused_and_unfused_agree_launches(bytes, x, "transcendental").0
}

/// [`fused_and_unfused_agree`] with the GPU's output within `gpu_tolerance` of the CPU's, also
/// returning the GPU session's kernel keys, one per launch (when the tests have an adapter).
fn fused_and_unfused_agree_launches(
    bytes: &[u8],
    x: &Tensor,
    gpu_tolerance: &str,
) -> (Vec<String>, Option<Vec<String>>) {
    use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
    use std::collections::HashMap;
    let shapes = HashMap::from([("x".to_string(), x.shape().to_vec())]);
    let feed = || HashMap::from([("x".to_string(), x.clone())]);
    let mut unfused = SessionOptions::default();
    unfused.build.fuse = false;
    let want = Session::build(ModelSource::Bytes(bytes), &shapes, &unfused).unwrap().run(feed()).unwrap();
    let fused = Session::build(ModelSource::Bytes(bytes), &shapes, &SessionOptions::default()).unwrap();
    let got = fused.run(feed()).unwrap();
    if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named("transcendental").unwrap()) {
        panic!("fused on the CPU: {diff}");
    }
    let ops: Vec<String> = fused.graph().graph.nodes.iter().map(|n| n.op_type.clone()).collect();
    let mut launches = None;
    if let Some(ctx) = onnx_common::gpu_context() {
        let options = SessionOptions::default();
        let gpu =
            pollster::block_on(Session::build_on(ctx, ModelSource::Bytes(bytes), &shapes, &options)).unwrap();
        let got = pollster::block_on(gpu.run_async(feed())).unwrap();
        if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named_gpu(gpu_tolerance).unwrap()) {
            panic!("fused on the GPU: {diff}");
        }
        let gpu_ops: Vec<String> = gpu.graph().graph.nodes.iter().map(|n| n.op_type.clone()).collect();
        assert_eq!(gpu_ops, ops, "both backends run the same passes");
        launches = Some(gpu.gpu().unwrap().kernel_keys().iter().map(|k| k.to_string()).collect());
    }
    (ops, launches)
}

/// For a fused model with input "x": the CPU backend computes exactly the unfused graph's bits,
/// and on `tiled` (a device forced to the GPU kernel style, when the tests have an adapter) the
/// output is within `gpu_tolerance` of them; returns that session's kernel keys.
fn cpu_exact_and_tiled_gpu(
    case: &str,
    bytes: &[u8],
    x: &Tensor,
    gpu_tolerance: &str,
    tiled: Option<&std::sync::Arc<fifo_diffusion::gpu::GpuContext>>,
) -> Option<Vec<String>> {
    use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
    use std::collections::HashMap;
    let shapes = HashMap::from([("x".to_string(), x.shape().to_vec())]);
    let feed = || HashMap::from([("x".to_string(), x.clone())]);
    let mut unfused = SessionOptions::default();
    unfused.build.fuse = false;
    let want = Session::build(ModelSource::Bytes(bytes), &shapes, &unfused).unwrap().run(feed()).unwrap();
    let cpu = Session::build(ModelSource::Bytes(bytes), &shapes, &SessionOptions::default()).unwrap();
    assert_eq!(cpu.run(feed()).unwrap()[0].1, want[0].1, "{case}: CPU bits");
    let options = SessionOptions::default();
    let gpu =
        pollster::block_on(Session::build_on(tiled?.clone(), ModelSource::Bytes(bytes), &shapes, &options))
            .unwrap();
    let got = pollster::block_on(gpu.run_async(feed())).unwrap();
    if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named_gpu(gpu_tolerance).unwrap()) {
        panic!("{case}, tiled kernels: {diff}");
    }
    Some(gpu.gpu().unwrap().kernel_keys().iter().map(|k| k.to_string()).collect())
}

/// A device on the test adapter forced to the GPU kernel style (workgroup tiles), when the tests
/// have an adapter.
fn tiled_context() -> Option<std::sync::Arc<fifo_diffusion::gpu::GpuContext>> {
    use fifo_diffusion::gpu::{AdapterChoice, GpuOptions, KernelStyle};
    onnx_common::gpu_context()?;
    let options = GpuOptions {
        adapter: AdapterChoice::Fallback,
        style: Some(KernelStyle::Tiled),
        ..Default::default()
    };
    onnx_common::open_gpu_context(&options)
}

/// A Linear layer's MatMul and bias Add become one FusedMatMulAdd in CPU sessions and in GPU
/// sessions (when the tests have an adapter), whose matmul kernel adds the bias in its epilogue.
#[test]
fn cpu_and_gpu_sessions_fuse_the_bias_add() {
    use onnx_common::graph::*;
    let (k, n) = (5, 7);
    let w: Vec<f32> = (0..k * n).map(|i| (i % 9) as f32 / 4.0 - 1.0).collect();
    let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let bytes = onnx_common::graph::model(
        vec![node("MatMul", &["x", "w"], "xw", vec![]), node("Add", &["xw", "b"], "out", vec![])],
        vec![f32_float_data("w", &[k, n], w), f32_float_data("b", &[n], b)],
        vec![float_info("x", &[2, 3, k])],
        vec![float_info("out", &[2, 3, n])],
    );
    let x = Tensor::from_f32(vec![2, 3, k], (0..2 * 3 * k).map(|i| i as f32 / 10.0).collect()).unwrap();
    assert_eq!(fused_and_unfused_agree(&bytes, &x), vec!["FusedMatMulAdd"]);
}

/// After the silu and matmul+add passes, a product read only by an activation takes it: the
/// UNets' feed-forward and time-embedding Linears and their SiLU. The CPU backend runs the
/// product then the same unary op, so the outputs are the bits of the unfused graph.
#[test]
fn product_activation_pass_fuses_the_activation_after_a_linear() {
    for model in ["unet_torchscript_op17", "unet_dynamo_op18"] {
        let before = || -> Vec<Box<dyn FusionPass>> { vec![Box::new(SiluPass), Box::new(MatMulAddPass)] };
        let (plain, inputs) = build_with(model, before());
        let mut passes = before();
        passes.push(Box::new(ProductActivationPass));
        let (fused, _) = build_with(model, passes);
        let n = fused.fusions.iter().find(|f| f.0 == "product+activation").map_or(0, |f| f.1);
        assert!(n > 0, "{model}: {:?}", fused.fusions);
        let activated = |b: &BuiltGraph| {
            b.graph
                .nodes
                .iter()
                .filter(|n| n.op_type.starts_with("FusedMatMul") || n.op_type.starts_with("FusedGemm"))
                .filter(|n| !n.op_type.ends_with("Add"))
                .count()
        };
        assert_eq!(activated(&fused), n, "{model}");
        assert_eq!(plain.graph.nodes.len() - fused.graph.nodes.len(), n, "{model}");
        let (want, got) = (execute(&plain, inputs.clone()).unwrap(), execute(&fused, inputs).unwrap());
        for (g, w) in got.iter().zip(&want) {
            assert!(compare(g, w, Tolerance::named("exact").unwrap()).is_none(), "{model}");
        }
    }
}

/// (case, nodes, initializers, output shape, fused op types, GPU launches, GPU tolerance)
type ConvCase =
    (&'static str, Vec<NodeProto>, Vec<TensorProto>, Vec<usize>, Vec<&'static str>, usize, &'static str);

/// A Conv or ConvTranspose read only by an activation takes it: one kernel on the GPU (the
/// activation in the conv epilogue, int8 weights included), the product then the unary op on
/// the CPU; a conv output that something else also reads keeps its activation apart. The GPU
/// sums in another order (f32), and computes in f16 where the weights are int8 (when the adapter
/// has shader-f16).
#[test]
fn product_activation_pass_fuses_conv_activations() {
    use onnx_common::graph::*;
    let ints = |name: &str, v: &[i64]| ints_attr(name, v.to_vec());
    let weights = |n: usize, scale: f32| -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) * scale).collect()
    };
    let x_shape = [2usize, 4, 9, 7];
    let n: usize = x_shape.iter().product();
    let x = Tensor::from_f32(x_shape.to_vec(), (0..n).map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0).collect())
        .unwrap();
    let w = |shape: &[usize]| f32_float_data("w", shape, weights(shape.iter().product(), 0.05));
    let b = |c: usize| f32_float_data("b", &[c], (0..c).map(|i| i as f32 * 0.1 - 0.3).collect());
    let conv = |attrs: Vec<_>| node("Conv", &["x", "w", "b"], "c", attrs);
    let silu = vec![node("Sigmoid", &["c"], "s", vec![]), node("Mul", &["c", "s"], "y", vec![])];
    let int8_w: Vec<u8> = (0..8 * 4 * 9).map(|i| ((i * 37 % 23) as i8 - 11) as u8).collect();
    let cases: Vec<ConvCase> = vec![
        (
            "3x3, padded, relu",
            vec![conv(vec![ints("pads", &[1, 1, 1, 1])]), node("Relu", &["c"], "y", vec![])],
            vec![w(&[8, 4, 3, 3]), b(8)],
            vec![2, 8, 9, 7],
            vec!["FusedConvRelu"],
            1,
            "accumulate",
        ),
        (
            "1x1, silu",
            [vec![conv(vec![])], silu.clone()].concat(),
            vec![w(&[5, 4, 1, 1]), b(5)],
            vec![2, 5, 9, 7],
            vec!["FusedConvSilu"],
            1,
            "accumulate",
        ),
        (
            "grouped, strided, leaky relu",
            vec![
                conv(vec![ints("strides", &[2, 2]), int_attr("group", 2)]),
                node("LeakyRelu", &["c"], "y", vec![float_attr("alpha", 0.2)]),
            ],
            vec![w(&[6, 2, 3, 3]), b(6)],
            vec![2, 6, 4, 3],
            vec!["FusedConvLeakyRelu"],
            1,
            "accumulate",
        ),
        (
            "transpose, strided, tanh",
            vec![
                node("ConvTranspose", &["x", "w", "b"], "c", vec![ints("strides", &[2, 2])]),
                node("Tanh", &["c"], "y", vec![]),
            ],
            vec![w(&[4, 3, 3, 3]), b(3)],
            vec![2, 3, 19, 15],
            vec!["FusedConvTransposeTanh"],
            1,
            "accumulate",
        ),
        (
            "int8 weights, relu",
            vec![
                node("DequantizeLinear", &["wq", "ws"], "w", vec![int_attr("axis", 0)]),
                conv(vec![ints("pads", &[1, 1, 1, 1])]),
                node("Relu", &["c"], "y", vec![]),
            ],
            vec![
                initializer("wq", DataType::Int8, &[8, 4, 3, 3], int8_w),
                f32_float_data("ws", &[8], (0..8).map(|i| 0.01 + 0.002 * i as f32).collect()),
                b(8),
            ],
            vec![2, 8, 9, 7],
            vec!["DequantizeLinear", "FusedConvRelu"],
            1,
            "f16_accumulate",
        ),
        (
            "residual reads the conv too",
            vec![
                conv(vec![ints("pads", &[1, 1, 1, 1])]),
                node("Relu", &["c"], "r", vec![]),
                node("Add", &["c", "r"], "y", vec![]),
            ],
            vec![w(&[8, 4, 3, 3]), b(8)],
            vec![2, 8, 9, 7],
            vec!["Conv", "Relu", "Add"],
            3,
            "accumulate",
        ),
    ];
    for (case, nodes, inits, out, fused, gpu_launches, tolerance) in cases {
        let bytes = model(nodes, inits, vec![float_info("x", &x_shape)], vec![float_info("y", &out)]);
        let (ops, launches) = fused_and_unfused_agree_launches(&bytes, &x, tolerance);
        assert_eq!(ops, fused, "{case}");
        let Some(keys) = launches else { continue };
        // f16 compute (int8 weights on an adapter with shader-f16) adds the casts at the f32
        // model's input and output; the conv is one kernel (a 1x1 one a matmul) with the
        // activation in its key.
        let kernels: Vec<&String> = keys.iter().filter(|k| !k.starts_with("cast.")).collect();
        assert_eq!(kernels.len(), gpu_launches, "{case}: kernel launches {keys:?}");
        if fused.iter().any(|op| op.starts_with("FusedConv")) {
            assert!(kernels[0].contains(".act="), "{case}: {keys:?}");
        }
    }
}

/// torch's decomposition of `gelu(x, approximate="tanh")` in its two halving forms and with
/// operands swapped, becomes one Gelu; a near miss (another constant) is left alone.
#[test]
fn tanh_gelu_pass_folds_the_decomposed_form_into_one_gelu() {
    use onnx_common::graph::*;
    let x =
        Tensor::from_f32(vec![3, 257], (0..3 * 257).map(|i| (i as f32 - 385.0) / 40.0).collect()).unwrap();
    let constants = |c2: f32| {
        vec![
            f32_scalar("three", 3.0),
            f32_scalar("c2", c2),
            f32_scalar("c1", (2.0 / std::f32::consts::PI).sqrt()),
            f32_scalar("one", 1.0),
            f32_scalar("half", 0.5),
        ]
    };
    let front = |swap: bool| {
        let pair = |a: &'static str, b: &'static str| if swap { [b, a] } else { [a, b] };
        vec![
            node("Pow", &["x", "three"], "cube", vec![]),
            node("Mul", &pair("c2", "cube"), "cubic", vec![]),
            node("Add", &pair("x", "cubic"), "sum", vec![]),
            node("Mul", &pair("sum", "c1"), "arg", vec![]),
            node("Tanh", &["arg"], "th", vec![]),
            node("Add", &pair("th", "one"), "plus", vec![]),
        ]
    };
    // (x * 0.5) * (1 + tanh): torch's dynamo export.
    let halved_x = |swap: bool, c2: f32| {
        let mut nodes = front(swap);
        nodes.push(node("Mul", &["x", "half"], "hx", vec![]));
        nodes.push(node("Mul", if swap { &["plus", "hx"] } else { &["hx", "plus"] }, "out", vec![]));
        onnx_common::graph::model(
            nodes,
            constants(c2),
            vec![float_info("x", &[3, 257])],
            vec![float_info("out", &[3, 257])],
        )
    };
    // x * ((1 + tanh) * 0.5)
    let halved_sum = |swap: bool| {
        let mut nodes = front(swap);
        nodes.push(node("Mul", &["plus", "half"], "hs", vec![]));
        nodes.push(node("Mul", if swap { &["hs", "x"] } else { &["x", "hs"] }, "out", vec![]));
        onnx_common::graph::model(
            nodes,
            constants(0.044715),
            vec![float_info("x", &[3, 257])],
            vec![float_info("out", &[3, 257])],
        )
    };
    // TorchScript's: the cube as x * (x * x), the product halved last, 0.5 * (x * (1 + tanh)).
    let torchscript = |swap: bool, exponent_first: bool| {
        let pair = |a: &'static str, b: &'static str| if swap { [b, a] } else { [a, b] };
        let mut nodes = vec![
            node("Mul", &["x", "x"], "square", vec![]),
            node("Mul", &pair("x", "square"), "cube", vec![]),
        ];
        if exponent_first {
            // Pow(3, x) is 3^x, not a cube.
            nodes[1] = node("Pow", &["three", "x"], "cube", vec![]);
            nodes.remove(0);
        }
        nodes.extend(front(swap).into_iter().skip(1));
        nodes.push(node("Mul", &pair("x", "plus"), "product", vec![]));
        nodes.push(node("Mul", &pair("half", "product"), "out", vec![]));
        onnx_common::graph::model(
            nodes,
            constants(0.044715),
            vec![float_info("x", &[3, 257])],
            vec![float_info("out", &[3, 257])],
        )
    };
    for (name, bytes) in [
        ("halved x", halved_x(false, 0.044715)),
        ("halved x, operands swapped", halved_x(true, 0.044715)),
        ("halved sum", halved_sum(false)),
        ("halved sum, operands swapped", halved_sum(true)),
        ("torchscript", torchscript(false, false)),
        ("torchscript, operands swapped", torchscript(true, false)),
    ] {
        assert_eq!(fused_and_unfused_agree(&bytes, &x), vec!["Gelu".to_string()], "{name}");
    }
    for near_miss in [halved_x(false, 0.05), torchscript(false, true)] {
        let ops = fused_and_unfused_agree(&near_miss, &x);
        assert!(!ops.contains(&"Gelu".to_string()) && ops.len() > 1, "{ops:?}");
    }
}

/// torch's decomposition of the exact `gelu(x)` below opset 20, as TorchScript (x / sqrt(2),
/// product halved last) and dynamo (sum halved first) write it, and with x * (1 / sqrt(2)),
/// becomes one Gelu; another divisor is left alone.
#[test]
fn erf_gelu_pass_folds_the_decomposed_form_into_one_gelu() {
    use onnx_common::graph::*;
    let x =
        Tensor::from_f32(vec![3, 257], (0..3 * 257).map(|i| (i as f32 - 385.0) / 60.0).collect()).unwrap();
    let model = |scale: (&'static str, f32), halve_sum_first: bool, swap: bool| {
        let pair = |a: &'static str, b: &'static str| if swap { [b, a] } else { [a, b] };
        let mut nodes = vec![
            node(scale.0, &["x", "k"], "arg", vec![]),
            node("Erf", &["arg"], "erf", vec![]),
            node("Add", &pair("erf", "one"), "plus", vec![]),
        ];
        if halve_sum_first {
            nodes.push(node("Mul", &pair("half", "plus"), "hs", vec![]));
            nodes.push(node("Mul", &pair("x", "hs"), "out", vec![]));
        } else {
            nodes.push(node("Mul", &pair("x", "plus"), "product", vec![]));
            nodes.push(node("Mul", &pair("product", "half"), "out", vec![]));
        }
        onnx_common::graph::model(
            nodes,
            vec![f32_scalar("k", scale.1), f32_scalar("one", 1.0), f32_scalar("half", 0.5)],
            vec![float_info("x", &[3, 257])],
            vec![float_info("out", &[3, 257])],
        )
    };
    let sqrt2 = std::f32::consts::SQRT_2;
    for (name, bytes) in [
        ("torchscript", model(("Div", sqrt2), false, false)),
        ("torchscript, operands swapped", model(("Div", sqrt2), false, true)),
        ("dynamo", model(("Div", sqrt2), true, false)),
        ("dynamo, operands swapped", model(("Div", sqrt2), true, true)),
        ("times 1/sqrt(2)", model(("Mul", 1.0 / sqrt2), true, false)),
    ] {
        assert_eq!(fused_and_unfused_agree(&bytes, &x), vec!["Gelu".to_string()], "{name}");
    }
    for near_miss in [model(("Div", 1.5), false, false), model(("Mul", sqrt2), false, false)] {
        let ops = fused_and_unfused_agree(&near_miss, &x);
        assert!(!ops.contains(&"Gelu".to_string()) && ops.len() > 1, "{ops:?}");
    }
}

/// The size limit applies to the fused graph: an attention whose score tensor is over the limit
/// builds and runs (both backends stream the scores), and the same graph unfused is refused
/// with the score MatMul named.
#[test]
fn attention_scores_over_the_size_limit_are_never_materialised() {
    use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
    use std::collections::HashMap;
    let (q_shape, n, dv) = ([1, 2, 96, 16], 700, 8);
    let bytes = attention_model(q_shape, n, dv);
    let value = |len: usize, seed: usize| -> Vec<f32> {
        (0..len).map(|i| (((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0 - 1.0) * 2.0).collect()
    };
    let [b, h, m, d] = q_shape;
    let inputs: HashMap<String, Tensor> =
        [("q", vec![b, h, m, d], 1), ("k", vec![b, h, n, d], 2), ("v", vec![b, h, n, dv], 3)]
            .into_iter()
            .map(|(name, shape, seed)| {
                let len = shape.iter().product();
                (name.to_string(), Tensor::from_f32(shape, value(len, seed)).unwrap())
            })
            .collect();
    let shapes: HashMap<String, Vec<usize>> =
        inputs.iter().map(|(k, t)| (k.clone(), t.shape().to_vec())).collect();

    // The reference: the unfused ops at the default limit.
    let mut unfused = SessionOptions::default();
    unfused.build.fuse = false;
    let reference = Session::build(ModelSource::Bytes(&bytes), &shapes, &unfused).unwrap();
    let want = reference.run(inputs.clone()).unwrap().remove(0).1;

    // A limit between the largest other tensor (V, the output) and the scores.
    let scores_bytes = b * h * m * n * 4;
    let limit = scores_bytes - 1;
    assert!(b * h * n * d.max(dv) * 4 < limit);
    unfused.build.max_tensor_bytes = limit;
    let err = Session::build(ModelSource::Bytes(&bytes), &shapes, &unfused).err().unwrap().to_string();
    assert!(err.contains("scores") && err.contains(&format!("size limit of {limit} bytes")), "{err}");

    let mut fused = SessionOptions::default();
    fused.build.max_tensor_bytes = limit;
    let session = Session::build(ModelSource::Bytes(&bytes), &shapes, &fused).unwrap();
    let got = session.run(inputs.clone()).unwrap().remove(0).1;
    if let Some(diff) = compare(&got, &want, Tolerance::named("accumulate").unwrap()) {
        panic!("streamed CPU attention: {diff}");
    }

    let Some(ctx) = onnx_common::gpu_context() else { return };
    let session =
        pollster::block_on(Session::build_on(ctx, ModelSource::Bytes(&bytes), &shapes, &fused)).unwrap();
    let got = pollster::block_on(session.run_async(inputs)).unwrap().remove(0).1;
    if let Some(diff) = compare(&got, &want, Tolerance::named_gpu("accumulate").unwrap()) {
        panic!("streamed GPU attention: {diff}");
    }
}

/// Deterministic values for every input of `shapes`, each input its own sequence.
fn inputs_for(
    shapes: &std::collections::HashMap<String, Vec<usize>>,
) -> std::collections::HashMap<String, Tensor> {
    shapes
        .iter()
        .enumerate()
        .map(|(seed, (k, s))| {
            let len: usize = s.iter().product();
            let values = (0..len).map(|i| ((i * 7 + seed * 13) % 23) as f32 / 11.0 - 1.0).collect();
            (k.clone(), Tensor::from_f32(s.clone(), values).unwrap())
        })
        .collect()
}

/// The outputs of `bytes` on the CPU with fusion off (the reference), and its fused CPU session.
fn unfused_output_and_fused_session(
    bytes: &[u8],
    shapes: &std::collections::HashMap<String, Vec<usize>>,
    feed: &std::collections::HashMap<String, Tensor>,
) -> (Vec<(String, Tensor)>, fifo_diffusion::session::Session) {
    use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
    let mut unfused = SessionOptions::default();
    unfused.build.fuse = false;
    let want =
        Session::build(ModelSource::Bytes(bytes), shapes, &unfused).unwrap().run(feed.clone()).unwrap();
    (want, Session::build(ModelSource::Bytes(bytes), shapes, &SessionOptions::default()).unwrap())
}

/// torch's multi-head attention: Q, K, V [B, L, H, D] permuted to heads [B, H, L, D] (K to
/// [B, H, D, L]), the attention, and the output permuted back to [B, L, H, Dv]. The attention
/// layout pass folds all four Transposes into the fused node; both backends compute what the
/// unfused graph computes, and the GPU runs the whole thing as one kernel through views.
#[test]
fn attention_layout_pass_folds_the_head_transposes() {
    use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
    use onnx_common::graph::*;
    use std::collections::HashMap;
    // (B, L, H, D, keys, Dv, output perm): single head (the transposes move a size-1 dim), several
    // heads, cross-attention with fewer keys than queries, an output perm that is not its own
    // inverse ([B, H, L, Dv] -> [B, L, Dv, H]).
    let cases = [
        (2, 9, 1, 8, 9, 8, [0, 2, 1, 3]),
        (2, 7, 3, 4, 7, 4, [0, 2, 1, 3]),
        (1, 10, 2, 8, 5, 6, [0, 2, 1, 3]),
        (2, 6, 3, 4, 5, 5, [0, 2, 3, 1]),
    ];
    for (b, l, h, d, n, dv, out_perm) in cases {
        let heads = [b, h, l, dv];
        let out_shape: Vec<usize> = out_perm.iter().map(|&p| heads[p]).collect();
        let bytes = model(
            vec![
                node("Transpose", &["q"], "qh", vec![ints_attr("perm", vec![0, 2, 1, 3])]),
                node("Transpose", &["k"], "kt", vec![ints_attr("perm", vec![0, 2, 3, 1])]),
                node("Transpose", &["v"], "vh", vec![ints_attr("perm", vec![0, 2, 1, 3])]),
                node("MatMul", &["qh", "kt"], "scores", vec![]),
                node("Mul", &["scores", "scale"], "scaled", vec![]),
                node("Softmax", &["scaled"], "probs", vec![int_attr("axis", -1)]),
                node("MatMul", &["probs", "vh"], "oh", vec![]),
                node(
                    "Transpose",
                    &["oh"],
                    "out",
                    vec![ints_attr("perm", out_perm.map(|p| p as i64).to_vec())],
                ),
            ],
            vec![f32_scalar("scale", 1.0 / (d as f32).sqrt())],
            vec![
                float_info("q", &[b, l, h, d]),
                float_info("k", &[b, n, h, d]),
                float_info("v", &[b, n, h, dv]),
            ],
            vec![float_info("out", &out_shape)],
        );
        let shapes: HashMap<String, Vec<usize>> =
            [("q", [b, l, h, d]), ("k", [b, n, h, d]), ("v", [b, n, h, dv])]
                .into_iter()
                .map(|(k, s)| (k.to_string(), s.to_vec()))
                .collect();
        let feed = inputs_for(&shapes);
        let case = format!("B {b} L {l} H {h} D {d} keys {n} Dv {dv}, output perm {out_perm:?}");
        let (want, fused) = unfused_output_and_fused_session(&bytes, &shapes, &feed);
        let ops: Vec<&str> = fused.graph().graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["FusedAttention"], "{case}: every Transpose folded");
        let folded = fused.graph().fusions.iter().find(|f| f.0 == "attention layout").map(|f| f.1);
        assert_eq!(folded, Some(4), "{case}");
        let got = fused.run(feed.clone()).unwrap();
        if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named("transcendental").unwrap()) {
            panic!("{case}, CPU: {diff}");
        }
        let Some(ctx) = onnx_common::gpu_context() else { continue };
        let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
        let gpu = pollster::block_on(Session::build_on(ctx, ModelSource::Bytes(&bytes), &shapes, &options))
            .unwrap();
        assert_eq!(gpu.gpu().unwrap().dispatches(), 1, "{case}: one kernel, no copies");
        let got = pollster::block_on(gpu.run_async(feed)).unwrap();
        if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named_gpu("transcendental").unwrap()) {
            panic!("{case}, GPU: {diff}");
        }
    }
}

/// torch's export of `scaled_dot_product_attention`: Q and the transposed K each multiplied by
/// the scale's square root (a [1]-shaped constant) before the product, no scale on the scores.
/// Both scales join the attention's, the Transpose of K folds into its layout; a scale that
/// broadcasts Q to a larger shape, or a scaled Q read elsewhere too, is not folded.
#[test]
fn attention_pass_folds_the_scales_of_q_and_k() {
    use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
    use onnx_common::graph::*;
    use std::collections::HashMap;
    let (b, h, l, d, n) = (2, 3, 7, 8, 5);
    let root = (1.0 / (d as f32).sqrt()).sqrt();
    let sdpa = |q_scale_shape: &[usize], q_scaled_also_out: bool| {
        let out: Vec<usize> = [&vec![1; q_scale_shape.len().saturating_sub(4)][..], &[b, h, l, d]].concat();
        let mut outputs = vec![float_info("out", &out)];
        if q_scaled_also_out {
            outputs.push(float_info("qs", &out));
        }
        let scale = |name: &str, shape: &[usize]| {
            let len: usize = shape.iter().product();
            f32_initializer(name, shape, &vec![root; len])
        };
        model(
            vec![
                node("Mul", &["q", "sq"], "qs", vec![]),
                node("Transpose", &["k"], "kt", vec![ints_attr("perm", vec![0, 1, 3, 2])]),
                node("Mul", &["sk", "kt"], "kts", vec![]),
                node("MatMul", &["qs", "kts"], "scores", vec![]),
                node("Softmax", &["scores"], "probs", vec![int_attr("axis", -1)]),
                node("MatMul", &["probs", "v"], "out", vec![]),
            ],
            vec![scale("sq", q_scale_shape), scale("sk", &[1])],
            vec![
                float_info("q", &[b, h, l, d]),
                float_info("k", &[b, h, n, d]),
                float_info("v", &[b, h, n, d]),
            ],
            outputs,
        )
    };
    let shapes: HashMap<String, Vec<usize>> = [("q", [b, h, l, d]), ("k", [b, h, n, d]), ("v", [b, h, n, d])]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s.to_vec()))
        .collect();
    let feed = inputs_for(&shapes);
    let (want, fused) = unfused_output_and_fused_session(&sdpa(&[1], false), &shapes, &feed);
    let ops: Vec<&str> = fused.graph().graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["FusedAttention"], "both scales and the Transpose folded");
    let got = fused.run(feed.clone()).unwrap();
    if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named("transcendental").unwrap()) {
        panic!("CPU: {diff}");
    }
    if let Some(ctx) = onnx_common::gpu_context() {
        let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
        let bytes = sdpa(&[1], false);
        let gpu = pollster::block_on(Session::build_on(ctx, ModelSource::Bytes(&bytes), &shapes, &options))
            .unwrap();
        assert_eq!(gpu.gpu().unwrap().dispatches(), 1, "one kernel, no copies");
        let got = pollster::block_on(gpu.run_async(feed.clone())).unwrap();
        if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named_gpu("transcendental").unwrap()) {
            panic!("GPU: {diff}");
        }
    }
    // Q's scale of rank 5 makes the scaled Q [1, B, H, L, D]; read elsewhere, it must stay.
    for (case, bytes) in
        [("broadcasting scale", sdpa(&[1, 1, 1, 1, 1], false)), ("scaled Q read twice", sdpa(&[1], true))]
    {
        let (want, fused) = unfused_output_and_fused_session(&bytes, &shapes, &feed);
        let g = &fused.graph().graph;
        let attention = g.nodes.iter().find(|n| n.op_type == "FusedAttention").expect(case);
        let q_read = attention.inputs[0].map(|v| g.values[v].name.as_str());
        assert_eq!(q_read, Some("qs"), "{case}: the attention reads the scaled Q");
        let got = fused.run(feed.clone()).unwrap();
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            if let Some(diff) = compare(g, w, Tolerance::named("transcendental").unwrap()) {
                panic!("{case}, output {name}: {diff}");
            }
        }
    }
}

/// The Einsum form of attention (diffusers' older attention processors, ModelScope's temporal
/// attention): "bhid,bhjd->bhij", scale, softmax, "bhij,bhje->bhie", with operands and result in
/// any order the Einsums name. Fused, the Einsums' permutations become the attention's layout
/// (one GPU kernel through views); scores out of order (the softmax not over the keys), or a
/// layout the GPU cannot stream, stay unfused. Both backends compute what the unfused graph does.
#[test]
fn attention_pass_fuses_the_einsum_form() {
    use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
    use onnx_common::graph::*;
    use std::collections::HashMap;
    let size = |c: char| match c {
        'b' => 2,
        'h' => 3,
        'i' => 7,
        'j' => 5,
        'd' => 4,
        'e' => 6,
        _ => unreachable!(),
    };
    let fused = vec!["FusedAttention"];
    let unfused_ops = vec!["Einsum", "Mul", "Softmax", "Einsum"];
    // (scores equation, output equation, op types after the build)
    let cases = [
        ("bhid,bhjd->bhij", "bhij,bhje->bhie", &fused),
        ("bihd,bhjd->bhij", "bhij,bjhe->bihe", &fused), // tokens-first Q and V, heads merged back
        ("bid,bjd->bij", "bij,bje->bie", &fused),
        // Permutations that are not their own inverse; K stored transposed.
        ("bidh,bhdj->bhij", "bhij,bhje->bieh", &fused),
        ("bhid,bhjd->bhji", "bhji,bhje->bhie", &unfused_ops), // softmax over the queries
        ("id,jd->ij", "ij,je->ie", &unfused_ops),             // rank 2: the GPU does not stream it
    ];
    for (scores_eq, out_eq, want_ops) in cases {
        let labels = |eq: &str, operand: usize| -> Vec<char> {
            let (lhs, rhs) = eq.split_once("->").unwrap();
            let part = if operand == 2 { rhs } else { lhs.split(',').nth(operand).unwrap() };
            part.chars().collect()
        };
        let dims = |l: Vec<char>| -> Vec<usize> { l.into_iter().map(size).collect() };
        let shapes: HashMap<String, Vec<usize>> = [
            ("q", dims(labels(scores_eq, 0))),
            ("k", dims(labels(scores_eq, 1))),
            ("v", dims(labels(out_eq, 1))),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
        let out_shape = dims(labels(out_eq, 2));
        let bytes = model(
            vec![
                node("Einsum", &["q", "k"], "scores", vec![string_attr("equation", scores_eq)]),
                node("Mul", &["scores", "scale"], "scaled", vec![]),
                node("Softmax", &["scaled"], "probs", vec![int_attr("axis", -1)]),
                node("Einsum", &["probs", "v"], "out", vec![string_attr("equation", out_eq)]),
            ],
            vec![f32_scalar("scale", 0.5)],
            ["q", "k", "v"].iter().map(|n| float_info(n, &shapes[*n])).collect(),
            vec![float_info("out", &out_shape)],
        );
        let feed = inputs_for(&shapes);
        let case = format!("{scores_eq} then {out_eq}");
        let (want, built) = unfused_output_and_fused_session(&bytes, &shapes, &feed);
        let ops: Vec<&str> = built.graph().graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(&ops, want_ops, "{case}");
        let got = built.run(feed.clone()).unwrap();
        if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named("transcendental").unwrap()) {
            panic!("{case}, CPU: {diff}");
        }
        let Some(ctx) = onnx_common::gpu_context() else { continue };
        let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
        let gpu = pollster::block_on(Session::build_on(ctx, ModelSource::Bytes(&bytes), &shapes, &options))
            .unwrap();
        if want_ops == &fused {
            assert_eq!(gpu.gpu().unwrap().dispatches(), 1, "{case}: one kernel, no copies");
        }
        let got = pollster::block_on(gpu.run_async(feed)).unwrap();
        if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named_gpu("accumulate").unwrap()) {
            panic!("{case}, GPU: {diff}");
        }
    }
}

/// A conv or a Linear whose output only an Add of a same-shape tensor reads (a ResBlock's skip,
/// a transformer block's residual) takes the Add into its epilogue: on the CPU the same bits as
/// the unfused graph (the sum is added onto the product), on the GPU one kernel in both kernel
/// styles (register-blocked, and the workgroup-tiled conv and matmul of GPUs forced on the
/// adapter), after the fused activation. A broadcast addend, or a product also read elsewhere,
/// is left alone.
#[test]
fn residual_pass_adds_the_skip_in_the_product_epilogue() {
    use onnx_common::graph::*;
    let x_shape = [2usize, 16, 6, 5];
    let n: usize = x_shape.iter().product();
    let x = Tensor::from_f32(x_shape.to_vec(), (0..n).map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0).collect())
        .unwrap();
    let data = |name: &str, shape: &[usize], scale: f32| {
        let len = shape.iter().product::<usize>();
        f32_float_data(name, shape, (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * scale).collect())
    };
    let pads = || ints_attr("pads", vec![1, 1, 1, 1]);
    let conv3 = || node("Conv", &["x", "w", "b"], "c", vec![pads()]);
    let conv_weights = || vec![data("w", &[16, 16, 3, 3], 0.01), data("b", &[16], 0.1)];
    let int8_w: Vec<u8> = (0..16 * 16 * 9).map(|i| ((i * 37 % 23) as i8 - 11) as u8).collect();
    // (case, nodes, initializers, fused ops, kernel launches, GPU tolerance)
    type ResidualCase =
        (&'static str, Vec<NodeProto>, Vec<TensorProto>, Vec<&'static str>, usize, &'static str);
    let cases: Vec<ResidualCase> = vec![
        (
            "3x3 conv + skip",
            vec![conv3(), node("Add", &["c", "x"], "y", vec![])],
            conv_weights(),
            vec!["FusedConvAdd"],
            1,
            "accumulate",
        ),
        (
            "skip + conv, relu between",
            vec![conv3(), node("Relu", &["c"], "r", vec![]), node("Add", &["x", "r"], "y", vec![])],
            conv_weights(),
            vec!["FusedConvReluAdd"],
            1,
            "accumulate",
        ),
        (
            "1x1 conv (a matmul on the GPU) + skip",
            vec![node("Conv", &["x", "w", "b"], "c", vec![]), node("Add", &["c", "x"], "y", vec![])],
            vec![data("w", &[16, 16, 1, 1], 0.03), data("b", &[16], 0.1)],
            vec!["FusedConvAdd"],
            1,
            "accumulate",
        ),
        (
            "int8 conv + skip",
            vec![
                node("DequantizeLinear", &["wq", "ws"], "w", vec![int_attr("axis", 0)]),
                conv3(),
                node("Add", &["c", "x"], "y", vec![]),
            ],
            vec![
                initializer("wq", DataType::Int8, &[16, 16, 3, 3], int8_w),
                f32_float_data("ws", &[16], (0..16).map(|i| 0.001 + 0.0002 * i as f32).collect()),
                data("b", &[16], 0.1),
            ],
            vec!["DequantizeLinear", "FusedConvAdd"],
            1,
            "f16_accumulate",
        ),
        (
            "linear + bias + residual",
            vec![
                node("MatMul", &["x", "w"], "m", vec![]),
                node("Add", &["m", "b"], "c", vec![]),
                node("Add", &["c", "x"], "y", vec![]),
            ],
            vec![data("w", &[5, 5], 0.1), data("b", &[5], 0.1)],
            vec!["FusedMatMulAddAdd"],
            1,
            "accumulate",
        ),
        (
            "linear + tanh + residual",
            vec![
                node("MatMul", &["x", "w"], "m", vec![]),
                node("Tanh", &["m"], "c", vec![]),
                node("Add", &["x", "c"], "y", vec![]),
            ],
            vec![data("w", &[5, 5], 0.1)],
            vec!["FusedMatMulTanhAdd"],
            1,
            "transcendental",
        ),
        (
            "conv + a shift per channel (a bias left apart)",
            vec![conv3(), node("Add", &["c", "s"], "y", vec![])],
            [conv_weights(), vec![data("s", &[16, 1, 1], 0.2)]].concat(),
            vec!["FusedConvAdd"],
            1,
            "accumulate",
        ),
        (
            "conv + a value per batch item and channel (a time embedding)",
            vec![
                node("GlobalAveragePool", &["x"], "t", vec![]),
                conv3(),
                node("Add", &["t", "c"], "y", vec![]),
            ],
            conv_weights(),
            vec!["GlobalAveragePool", "FusedConvAdd"],
            2,
            "accumulate",
        ),
        (
            "1x1 conv (a matmul) + a value per batch item and channel",
            vec![
                node("GlobalAveragePool", &["x"], "t", vec![]),
                node("Conv", &["x", "w", "b"], "c", vec![]),
                node("Relu", &["c"], "r", vec![]),
                node("Add", &["r", "t"], "y", vec![]),
            ],
            vec![data("w", &[16, 16, 1, 1], 0.03), data("b", &[16], 0.1)],
            vec!["GlobalAveragePool", "FusedConvReluAdd"],
            2,
            "accumulate",
        ),
        (
            "conv + a value per pixel: not fused",
            vec![conv3(), node("Add", &["c", "s"], "y", vec![])],
            [conv_weights(), vec![data("s", &[1, 1, 6, 5], 0.2)]].concat(),
            vec!["Conv", "Add"],
            2,
            "accumulate",
        ),
        (
            "conv read twice: not fused",
            vec![conv3(), node("Add", &["c", "x"], "a", vec![]), node("Mul", &["a", "c"], "y", vec![])],
            conv_weights(),
            vec!["Conv", "Add", "Mul"],
            3,
            "accumulate",
        ),
    ];
    let tiled = tiled_context();
    for (case, nodes, inits, fused, gpu_launches, tolerance) in cases {
        let bytes = model(nodes, inits, vec![float_info("x", &x_shape)], vec![float_info("y", &x_shape)]);
        let (ops, launches) = fused_and_unfused_agree_launches(&bytes, &x, tolerance);
        assert_eq!(ops, fused, "{case}");
        let tiled_keys = cpu_exact_and_tiled_gpu(case, &bytes, &x, tolerance, tiled.as_ref());
        let (Some(keys), Some(tiled_keys)) = (launches, tiled_keys) else { continue };
        for (style, keys) in [("register-blocked", keys), ("tiled", tiled_keys)] {
            let kernels: Vec<&String> = keys.iter().filter(|k| !k.starts_with("cast.")).collect();
            assert_eq!(kernels.len(), gpu_launches, "{case}, {style}: kernel launches {keys:?}");
            if fused.iter().any(|op| op.ends_with("Add") && op.starts_with("Fused")) {
                let product = kernels.last().expect("a kernel");
                assert!(product.contains(".residual"), "{case}, {style}: {keys:?}");
            }
        }
    }
}

/// `x * 1`, `1 * x`, `x / 1` and `x - (+0)` leave the graph, keeping the bits, -0 included; one
/// whose output is a graph output becomes an Identity. `x + 0` and `x - (-0)` (not exact for -0), a 1 that
/// broadcasts x to a larger shape and any other constant stay.
#[test]
fn neutral_element_pass_removes_unit_scales() {
    use onnx_common::graph::*;
    let mut values: Vec<f32> = (0..15).map(|i| i as f32 / 4.0 - 2.0).collect();
    values[8] = -0.0; // i = 8 is 0.0: make it -0 (x + 0 would turn it into +0)
    let x = Tensor::from_f32(vec![3, 5], values).unwrap();
    let nodes = vec![
        node("Mul", &["x", "one"], "a", vec![]),
        node("Div", &["a", "one"], "b", vec![]),
        node("Mul", &["one", "b"], "c", vec![]),
        node("Sub", &["c", "zero"], "d", vec![]),
        node("Add", &["d", "zero"], "e", vec![]),
        node("Sub", &["e", "minus_zero"], "f", vec![]),
        node("Mul", &["f", "two"], "g", vec![]),
        node("Mul", &["g", "one_4d"], "y", vec![]),
    ];
    let constants = vec![
        f32_scalar("one", 1.0),
        f32_scalar("zero", 0.0),
        f32_scalar("minus_zero", -0.0),
        f32_scalar("two", 2.0),
        f32_float_data("one_4d", &[1, 1, 1, 1], vec![1.0]),
    ];
    let bytes =
        model(nodes, constants.clone(), vec![float_info("x", &[3, 5])], vec![float_info("y", &[1, 1, 3, 5])]);
    assert_eq!(fused_and_unfused_agree(&bytes, &x), vec!["Add", "Sub", "Mul", "Mul"]);
    // The sign of zero survives (the Add of 0 made it +0 in the graph above; here nothing does).
    let bytes = model(
        vec![node("Div", &["x", "one"], "a", vec![]), node("Mul", &["a", "one"], "y", vec![])],
        constants,
        vec![float_info("x", &[3, 5])],
        vec![float_info("y", &[3, 5])],
    );
    assert_eq!(fused_and_unfused_agree(&bytes, &x), vec!["Identity"]);
    use fifo_diffusion::session::{ModelSource, Session, SessionOptions};
    let shapes = std::collections::HashMap::from([("x".to_string(), vec![3, 5])]);
    let session = Session::build(ModelSource::Bytes(&bytes), &shapes, &SessionOptions::default()).unwrap();
    let y = session.run(std::collections::HashMap::from([("x".to_string(), x.clone())])).unwrap();
    let bits = |t: &Tensor| t.f32s().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&y[0].1), bits(&x));
}

/// A norm whose output is scaled and shifted (FiLM in UNet resnet blocks, adaLN in DiT blocks),
/// maybe then activated, becomes one modulated norm: the CPU computes the unfused ops' bits, the
/// GPU applies scale, shift and activation in the norm kernel, in both kernel styles (layer norms
/// run through different kernels there). Scale and shift per batch item and channel, per channel
/// from constants, per (batch item, element) for a layer norm; a per-pixel scale, a scale that
/// varies along a layer norm's middle dim or a product read twice stay unfused.
#[test]
fn norm_modulation_pass_fuses_scale_shift_and_activation() {
    use onnx_common::graph::*;
    let i64s = |name: &str, v: &[i64]| {
        initializer(name, DataType::Int64, &[v.len()], v.iter().flat_map(|x| x.to_le_bytes()).collect())
    };
    let data = |name: &str, shape: &[usize], scale: f32| {
        let len = shape.iter().product::<usize>();
        f32_float_data(name, shape, (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * scale).collect())
    };
    let image = [2usize, 8, 5, 3];
    let tokens = [2usize, 6, 8];
    let slice = |from: i64, out: &str| {
        node("Slice", &["x", &format!("s{from}"), &format!("e{from}"), "axis1"], out, vec![])
    };
    let slices =
        || vec![i64s("s0", &[0]), i64s("e0", &[1]), i64s("s1", &[1]), i64s("e1", &[2]), i64s("axis1", &[1])];
    let gn = || node("GroupNormalization", &["x", "g", "b"], "n", vec![int_attr("num_groups", 4)]);
    let gn_params = || vec![data("g", &[4], 0.1), data("b", &[4], 0.05)];
    let film = |scale: &str, shift: &str| {
        vec![node("Mul", &["n", scale], "m", vec![]), node("Add", &[shift, "m"], "a", vec![])]
    };
    // (case, input shape, nodes, initializers, fused ops, kernel launches)
    type ModulationCase =
        (&'static str, Vec<usize>, Vec<NodeProto>, Vec<TensorProto>, Vec<&'static str>, usize);
    let cases: Vec<ModulationCase> = vec![
        (
            "group norm, FiLM per batch item and channel, SiLU",
            image.to_vec(),
            [
                vec![
                    node("GlobalAveragePool", &["x"], "s", vec![]),
                    node("GlobalMaxPool", &["x"], "t", vec![]),
                    gn(),
                ],
                film("s", "t"),
                vec![node("Sigmoid", &["a"], "sg", vec![]), node("Mul", &["a", "sg"], "y", vec![])],
            ]
            .concat(),
            gn_params(),
            vec!["GlobalAveragePool", "GlobalMaxPool", "FusedGroupNormalizationModulatedSilu"],
            4,
        ),
        (
            "instance norm, constant per-channel scale and shift, no activation",
            image.to_vec(),
            [
                vec![node("InstanceNormalization", &["x", "g", "b"], "n", vec![])],
                film("s", "t"),
                vec![node("Identity", &["a"], "y", vec![])],
            ]
            .concat(),
            vec![
                data("g", &[8], 0.1),
                data("b", &[8], 0.05),
                data("s", &[8, 1, 1], 0.1),
                data("t", &[1, 8, 1, 1], 0.2),
            ],
            vec!["FusedInstanceNormalizationModulated", "Identity"],
            2,
        ),
        (
            "layer norm, adaLN per batch item and element, relu",
            tokens.to_vec(),
            [
                vec![slice(0, "s"), slice(1, "t")],
                vec![node("LayerNormalization", &["x", "g", "b"], "n", vec![int_attr("axis", -1)])],
                film("s", "t"),
                vec![node("Relu", &["a"], "y", vec![])],
            ]
            .concat(),
            [slices(), vec![data("g", &[8], 0.1), data("b", &[8], 0.05)]].concat(),
            vec!["Slice", "Slice", "FusedLayerNormalizationModulatedRelu"],
            0, // launches differ by style (a layer norm is one kernel on CPU adapters, two on GPUs)
        ),
        (
            "group norm, a per-pixel scale: not fused",
            image.to_vec(),
            [vec![gn()], film("s", "t"), vec![node("Identity", &["a"], "y", vec![])]].concat(),
            [gn_params(), vec![data("s", &[1, 1, 5, 3], 0.1), data("t", &[8, 1, 1], 0.2)]].concat(),
            vec!["GroupNormalization", "Mul", "Add", "Identity"],
            4,
        ),
        (
            "layer norm, a scale varying along the tokens: not fused",
            tokens.to_vec(),
            [
                vec![node("LayerNormalization", &["x", "g", "b"], "n", vec![int_attr("axis", -1)])],
                film("s", "t"),
                vec![node("Identity", &["a"], "y", vec![])],
            ]
            .concat(),
            vec![
                data("g", &[8], 0.1),
                data("b", &[8], 0.05),
                data("s", &[1, 6, 1], 0.1),
                data("t", &[8], 0.2),
            ],
            vec!["LayerNormalization", "Mul", "Add", "Identity"],
            0,
        ),
        (
            "the scaled norm read twice: not fused",
            image.to_vec(),
            [vec![gn()], film("s", "t"), vec![node("Mul", &["a", "m"], "y", vec![])]].concat(),
            [gn_params(), vec![data("s", &[8, 1, 1], 0.1), data("t", &[8, 1, 1], 0.2)]].concat(),
            vec!["GroupNormalization", "Mul", "Add", "Mul"],
            5,
        ),
    ];
    let tiled = tiled_context();
    for (case, shape, nodes, inits, fused, launches) in cases {
        let n: usize = shape.iter().product();
        let x =
            Tensor::from_f32(shape.clone(), (0..n).map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0).collect())
                .unwrap();
        let bytes = model(nodes, inits, vec![float_info("x", &shape)], vec![float_info("y", &shape)]);
        let (ops, keys) = fused_and_unfused_agree_launches(&bytes, &x, "transcendental");
        assert_eq!(ops, fused, "{case}");
        let tiled_keys = cpu_exact_and_tiled_gpu(case, &bytes, &x, "transcendental", tiled.as_ref());
        let (Some(keys), Some(tiled_keys)) = (keys, tiled_keys) else { continue };
        for (style, keys) in [("register-blocked", keys), ("tiled", tiled_keys)] {
            if launches > 0 {
                assert_eq!(keys.len(), launches, "{case}, {style}: {keys:?}");
            }
            let modulated = fused.iter().any(|op| op.contains("Modulated"));
            assert_eq!(keys.iter().any(|k| k.contains(".modulated")), modulated, "{case}, {style}: {keys:?}");
        }
    }
}

/// Q, K and V from one fused projection (a Split of a QKV Linear, then the Reshapes into heads):
/// the attention reads its parts of the projection in place, so no copy kernel runs for the
/// Split on the GPU (either kernel style), and both backends compute what the unfused graph
/// does. A K/V projection split by sizes given as an input folds too; a part also read elsewhere
/// keeps its Split.
#[test]
fn attention_source_pass_reads_q_k_v_inside_the_fused_projection() {
    use onnx_common::graph::*;
    let (b, t, heads, d) = (2usize, 10usize, 3usize, 8usize);
    let c = heads * d;
    let x = Tensor::from_f32(
        vec![b, t, c],
        (0..b * t * c).map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0).collect(),
    )
    .unwrap();
    let data = |name: &str, shape: &[usize], scale: f32| {
        let len = shape.iter().product::<usize>();
        f32_float_data(name, shape, (0..len).map(|i| ((i * 37 % 23) as f32 - 11.0) * scale).collect())
    };
    let i64s = |name: &str, v: &[i64]| {
        initializer(name, DataType::Int64, &[v.len()], v.iter().flat_map(|x| x.to_le_bytes()).collect())
    };
    let heads_shape = || i64s("heads", &[b as i64, t as i64, heads as i64, d as i64]);
    let merged_shape = || i64s("merged", &[b as i64, t as i64, c as i64]);
    let perm = |p: &[i64]| ints_attr("perm", p.to_vec());
    // Reshape into heads and transpose: q and v [B, H, T, D], k as Kt [B, H, D, T].
    let attend = |q: &str, k: &str, v: &str, extra: Vec<NodeProto>| {
        [
            vec![
                node("Reshape", &[q, "heads"], "qh", vec![]),
                node("Reshape", &[k, "heads"], "kh", vec![]),
                node("Reshape", &[v, "heads"], "vh", vec![]),
                node("Transpose", &["qh"], "qt", vec![perm(&[0, 2, 1, 3])]),
                node("Transpose", &["kh"], "kt", vec![perm(&[0, 2, 3, 1])]),
                node("Transpose", &["vh"], "vt", vec![perm(&[0, 2, 1, 3])]),
                node("MatMul", &["qt", "kt"], "s", vec![]),
                node("Mul", &["s", "scale"], "ss", vec![]),
                node("Softmax", &["ss"], "p", vec![int_attr("axis", -1)]),
                node("MatMul", &["p", "vt"], "o", vec![]),
                node("Transpose", &["o"], "ot", vec![perm(&[0, 2, 1, 3])]),
                node("Reshape", &["ot", "merged"], "a", vec![]),
            ],
            extra,
        ]
        .concat()
    };
    let common = || vec![heads_shape(), merged_shape(), f32_scalar("scale", 1.0 / (d as f32).sqrt())];
    let qkv = |extra: Vec<NodeProto>| {
        [
            vec![
                node("MatMul", &["x", "wqkv"], "proj", vec![]),
                node("Split", &["proj"], "", vec![int_attr("axis", 2), int_attr("num_outputs", 3)]),
            ],
            attend("q", "k", "v", extra),
        ]
        .concat()
    };
    // The Split node's three outputs (the helper names one output; set them all).
    let with_split_outputs = |mut nodes: Vec<NodeProto>, outs: &[&str]| {
        for n in nodes.iter_mut().filter(|n| n.op_type.as_deref() == Some("Split")) {
            n.output = outs.iter().map(|s| s.to_string()).collect();
        }
        nodes
    };
    // (case, nodes, initializers, fused ops)
    type SourceCase = (&'static str, Vec<NodeProto>, Vec<TensorProto>, Vec<&'static str>);
    let cases: Vec<SourceCase> = vec![
        (
            "fused QKV projection",
            with_split_outputs(qkv(vec![node("Identity", &["a"], "y", vec![])]), &["q", "k", "v"]),
            [common(), vec![data("wqkv", &[c, 3 * c], 0.02)]].concat(),
            vec!["MatMul", "FusedAttention", "Reshape", "Identity"],
        ),
        (
            "Q apart, K and V split by sizes",
            with_split_outputs(
                [
                    vec![
                        node("MatMul", &["x", "wq"], "q", vec![]),
                        node("MatMul", &["x", "wkv"], "kv", vec![]),
                        node("Split", &["kv", "sizes"], "", vec![int_attr("axis", -1)]),
                    ],
                    attend("q", "k", "v", vec![node("Identity", &["a"], "y", vec![])]),
                ]
                .concat(),
                &["k", "v"],
            ),
            [
                common(),
                vec![
                    data("wq", &[c, c], 0.02),
                    data("wkv", &[c, 2 * c], 0.03),
                    i64s("sizes", &[c as i64, c as i64]),
                ],
            ]
            .concat(),
            vec!["MatMul", "MatMul", "Reshape", "FusedAttention", "Reshape", "Identity"],
        ),
        (
            "V also read elsewhere: its Split stays",
            with_split_outputs(qkv(vec![node("Add", &["a", "v"], "y", vec![])]), &["q", "k", "v"]),
            [common(), vec![data("wqkv", &[c, 3 * c], 0.02)]].concat(),
            vec!["MatMul", "Split", "Reshape", "FusedAttention", "Reshape", "Add"],
        ),
    ];
    let tiled = tiled_context();
    for (case, nodes, inits, fused) in cases {
        let bytes = model(nodes, inits, vec![float_info("x", &[b, t, c])], vec![float_info("y", &[b, t, c])]);
        let (ops, keys) = fused_and_unfused_agree_launches(&bytes, &x, "accumulate");
        assert_eq!(ops, fused, "{case}");
        let (Some(keys), Some(tiled)) = (keys, &tiled) else { continue };
        let gpu = pollster::block_on(fifo_diffusion::session::Session::build_on(
            tiled.clone(),
            fifo_diffusion::session::ModelSource::Bytes(&bytes),
            &std::collections::HashMap::from([("x".to_string(), vec![b, t, c])]),
            &Default::default(),
        ))
        .unwrap();
        let cpu = fifo_diffusion::session::Session::build(
            fifo_diffusion::session::ModelSource::Bytes(&bytes),
            &std::collections::HashMap::from([("x".to_string(), vec![b, t, c])]),
            &Default::default(),
        )
        .unwrap();
        let feed = || std::collections::HashMap::from([("x".to_string(), x.clone())]);
        let (got, want) = (pollster::block_on(gpu.run_async(feed())).unwrap(), cpu.run(feed()).unwrap());
        if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named_gpu("accumulate").unwrap()) {
            panic!("{case}, tiled kernels: {diff}");
        }
        let tiled_keys: Vec<String> =
            gpu.gpu().unwrap().kernel_keys().iter().map(|k| k.to_string()).collect();
        let copies = |keys: &[String]| keys.iter().filter(|k| k.starts_with("copy.")).count();
        let split_copies = usize::from(fused.contains(&"Split"));
        for (style, keys) in [("register-blocked", keys), ("tiled", tiled_keys)] {
            assert_eq!(copies(&keys), split_copies, "{case}, {style}: {keys:?}");
        }
    }
}
