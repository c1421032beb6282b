//! A Transpose that moves only size-1 dims (the head dim around single-head attention: 12 of the
//! shipped UNet's 118 Transposes, 519 -> 507 kernel launches per call) keeps the elements in
//! order: the GPU backend shares its input's buffer instead of launching a copy, as it does for
//! Reshape (the CPU backend already did). Checked against the CPU backend,
//! with the number of kernel launches. `FIFO_REQUIRE_GPU=1` turns a missing adapter into a failure.
#![cfg(not(target_arch = "wasm32"))]

mod onnx_common;

use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::graph::*;
use std::collections::HashMap;

/// `Relu(Transpose(x, perm))`, or the Transpose alone as the graph's output.
fn model_of(shape: &[usize], perm: &[i64], relu: bool) -> Vec<u8> {
    let out: Vec<usize> = perm.iter().map(|&p| shape[p as usize]).collect();
    let mut nodes = vec![node("Transpose", &["x"], "t", vec![ints_attr("perm", perm.to_vec())])];
    if relu {
        nodes.push(node("Relu", &["t"], "y", vec![]));
    } else {
        nodes[0].output = vec!["y".into()];
    }
    model(nodes, vec![], vec![float_info("x", shape)], vec![float_info("y", &out)])
}

#[test]
fn transposes_of_size_one_dims_share_their_input_buffer() {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    // (input shape, perm, Relu after it, kernel launches expected)
    let cases: [(&[usize], &[i64], bool, usize); 5] = [
        (&[2, 5, 1, 3], &[0, 2, 1, 3], true, 1), // [B, L, 1, D] -> [B, 1, L, D]: aliased
        (&[2, 1, 5, 3], &[0, 2, 1, 3], true, 1), // and back
        (&[1, 4, 1], &[2, 1, 0], false, 0),      // the graph output itself
        (&[2, 5, 4, 3], &[0, 2, 1, 3], true, 2), // two heads: a real copy
        (&[2, 5, 1, 3], &[0, 3, 2, 1], true, 2), // D and L swap: a real copy
    ];
    for (shape, perm, relu, launches) in cases {
        let bytes = model_of(shape, perm, relu);
        let n: usize = shape.iter().product();
        let x = Tensor::from_f32(shape.to_vec(), (0..n).map(|i| i as f32 * 0.5 - 7.0).collect()).unwrap();
        let feeds = HashMap::from([("x".to_string(), x)]);
        let shapes = HashMap::from([("x".to_string(), shape.to_vec())]);
        let cpu = Session::build(ModelSource::Bytes(&bytes), &shapes, &SessionOptions::default()).unwrap();
        let want = cpu.run(feeds.clone()).unwrap().remove(0).1;
        let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
        let gpu =
            pollster::block_on(Session::build_on(ctx.clone(), ModelSource::Bytes(&bytes), &shapes, &options))
                .unwrap();
        assert_eq!(gpu.gpu().unwrap().dispatches(), launches, "{shape:?} perm {perm:?}: kernel launches");
        let got = pollster::block_on(gpu.run_async(feeds)).unwrap().remove(0).1;
        assert_eq!(got.shape(), want.shape(), "{shape:?} perm {perm:?}");
        assert_eq!(got.to_f32_vec(), want.to_f32_vec(), "{shape:?} perm {perm:?}: values");
    }
}
