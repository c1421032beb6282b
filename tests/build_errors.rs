//! Session build errors name the op, the node, the opset and what is supported; run errors
//! name the input.

mod onnx_common;

use fifo_diffusion::session::{inspect, ModelSource, Session, SessionError, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::graph::{self, float_info, int_attr, named_node, string_attr, AttributeProto};
use std::collections::HashMap;

/// A one-node model reading `x` (and `y` when the node names it) and writing `out`.
fn model(op: &str, inputs: &[&str], attributes: Vec<AttributeProto>, x_dims: &[&str]) -> Vec<u8> {
    let node = named_node("blocks.3/attn/the_node", op, inputs, "out", attributes);
    let mut graph_inputs = vec![float_info("x", x_dims)];
    if inputs.contains(&"y") {
        graph_inputs.push(float_info("y", &["2", "3"]));
    }
    graph::model(vec![node], vec![], graph_inputs, vec![float_info::<&str>("out", &[])])
}

fn build(bytes: &[u8]) -> Result<Session, SessionError> {
    Session::build(ModelSource::Bytes(bytes), &HashMap::new(), &SessionOptions::default())
}

fn build_error(bytes: &[u8]) -> String {
    build(bytes).err().expect("the build should fail").to_string()
}

#[test]
fn unknown_op_names_node_opset_and_supported_ops() {
    let msg = build_error(&model("FancyAttention", &["x"], vec![], &["2", "3"]));
    for part in ["FancyAttention", "blocks.3/attn/the_node", "opset 18", "supported ops", "Conv", "Softmax"] {
        assert!(msg.contains(part), "missing '{part}' in: {msg}");
    }
}

#[test]
fn unknown_attribute_is_named() {
    let msg = build_error(&model("Relu", &["x"], vec![int_attr("fast_math", 1)], &["2", "3"]));
    assert!(msg.contains("fast_math") && msg.contains("Relu"), "{msg}");
}

#[test]
fn unsupported_attribute_value_lists_the_supported_ones() {
    let msg = build_error(&model("Resize", &["x"], vec![string_attr("mode", "cubic")], &["2", "3"]));
    assert!(msg.contains("cubic") && msg.contains("nearest, linear"), "{msg}");
}

#[test]
fn unsupported_einsum_names_the_equation_and_what_works() {
    let msg = build_error(&model("Einsum", &["x"], vec![string_attr("equation", "ii->i")], &["3", "3"]));
    assert!(msg.contains("ii->i") && msg.contains("bhid,bhjd->bhij"), "{msg}");
}

#[test]
fn shape_inputs_must_be_known_at_build() {
    let msg = build_error(&model("Reshape", &["x", "x"], vec![], &["2", "3"]));
    assert!(msg.contains("'shape' must be known when the session is built"), "{msg}");
}

#[test]
fn free_dims_need_a_shape_and_accept_one() {
    let bytes = model("Relu", &["x"], vec![], &["batch", "3"]);
    let msg = build_error(&bytes);
    assert!(msg.contains("input 'x'") && msg.contains("free dims"), "{msg}");
    let shapes = HashMap::from([("x".to_string(), vec![4, 3])]);
    let session = Session::build(ModelSource::Bytes(&bytes), &shapes, &SessionOptions::default()).unwrap();
    assert_eq!(session.info().inputs[0].shape, Some(vec![4, 3]));
    let wrong = Session::build(
        ModelSource::Bytes(&bytes),
        &HashMap::from([("x".to_string(), vec![4, 5])]),
        &SessionOptions::default(),
    );
    assert!(wrong.err().unwrap().to_string().contains("contradicts"));
}

#[test]
fn run_checks_input_names_and_shapes() {
    let session = build(&model("Relu", &["x"], vec![], &["2", "3"])).unwrap();
    let good = Tensor::from_f32(vec![2, 3], vec![-1.0, 2.0, -3.0, 4.0, 0.0, 1.0]).unwrap();
    let out = session.run(HashMap::from([("x".to_string(), good)])).unwrap();
    assert_eq!(out[0].1.to_f32_vec(), vec![0.0, 2.0, 0.0, 4.0, 0.0, 1.0]);
    let bad = Tensor::from_f32(vec![3, 2], vec![0.0; 6]).unwrap();
    let msg = session.run(HashMap::from([("x".to_string(), bad)])).err().unwrap().to_string();
    assert!(msg.contains("input 'x'") && msg.contains("[2, 3]"), "{msg}");
    let msg = session.run(HashMap::new()).err().unwrap().to_string();
    assert!(msg.contains("input 'x' is missing"), "{msg}");
}

#[test]
fn inspect_reports_unsupported_ops_instead_of_failing() {
    let info = inspect(
        ModelSource::Bytes(&model("FancyAttention", &["x", "y"], vec![], &["2", "3"])),
        &HashMap::new(),
        &SessionOptions::default(),
    )
    .unwrap();
    assert_eq!(info.unsupported.len(), 1);
    assert_eq!(info.unsupported[0].op_type, "FancyAttention");
    assert_eq!(info.ops[0].opset, 18);
    assert!(info.planned_peak_bytes.is_none());
}

#[test]
fn tensors_over_the_size_limit_fail_the_build() {
    let mut options = SessionOptions::default();
    options.build.max_tensor_bytes = 16;
    let bytes = model("Relu", &["x"], vec![], &["2", "3"]);
    let err =
        Session::build(ModelSource::Bytes(&bytes), &HashMap::new(), &options).err().unwrap().to_string();
    assert!(err.contains("blocks.3/attn/the_node") && err.contains("size limit of 16 bytes"), "{err}");
}

#[test]
fn optional_outputs_we_do_not_compute_say_to_remove_them() {
    // MaxPool's Indices: the node's second output.
    let mut node =
        named_node("pool", "MaxPool", &["x"], "out", vec![graph::ints_attr("kernel_shape", vec![2, 2])]);
    node.output.push("indices".into());
    let bytes = graph::model(
        vec![node],
        vec![],
        vec![float_info("x", &["1", "1", "4", "4"])],
        vec![float_info::<&str>("out", &[]), float_info::<&str>("indices", &[])],
    );
    let msg = build_error(&bytes);
    assert!(msg.contains("MaxPool takes 1 output, got 2") && msg.contains("remove the last 1"), "{msg}");
}
