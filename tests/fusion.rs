//! The fusion passes (src/graph/phases/fuse.rs) on the torch-exported UNets: each pass alone
//! rewrites the expected number of patterns, and the fused graph computes what the unfused one
//! computes on the CPU backend (the reference), within the accumulation tolerance.

mod onnx_common;

use fifo_diffusion::cpu::executor::execute;
use fifo_diffusion::graph::phases::fuse::{
    fuse, AttentionPass, FusionPass, NormSiluPass, TorchGroupNormPass,
};
use fifo_diffusion::graph::phases::{parse, plan, propagate, prune, BuildOptions, BuiltGraph};
use fifo_diffusion::onnx::load_model;
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
        // Softmaxes read by a MatMul (the models also have an Einsum form, not fused yet).
        let (plain, _) = build_with(model, Vec::new());
        let g = &plain.graph;
        let softmaxes = g
            .nodes
            .iter()
            .filter(|n| n.op_type == "Softmax")
            .filter(|s| {
                let out = s.outputs[0];
                g.nodes.iter().any(|m| m.op_type == "MatMul" && m.inputs[0] == out)
            })
            .count();
        assert!(softmaxes > 0, "{model}");
        let fused = fused_equals_unfused(model, vec![Box::new(AttentionPass)]);
        assert_eq!(fused.fusions, vec![("attention", softmaxes)], "{model}");
        assert_eq!(count(&fused, "FusedAttention"), softmaxes, "{model}");
        assert_eq!(count(&plain, "Softmax") - count(&fused, "Softmax"), softmaxes, "{model}");
        // Each attention removed its two MatMuls, the scale and the softmax.
        assert_eq!(count(&plain, "MatMul") - count(&fused, "MatMul"), 2 * softmaxes, "{model}");
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
        let passes: Vec<Box<dyn FusionPass>> =
            vec![Box::new(TorchGroupNormPass), Box::new(NormSiluPass), Box::new(AttentionPass)];
        assert!(fuse(&mut graph, &passes).unwrap().is_empty(), "{name}");
        assert_eq!(graph.nodes.len(), before);
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} single-op fixtures found");
}
