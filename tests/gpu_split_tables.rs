//! Tables over one storage binding: on a device whose binding size is capped at 64 KiB (as a
//! browser with a small `maxStorageBufferBindingSize` would be), a Gather's constant table is
//! uploaded as row chunks and gathered with one dispatch per chunk, matching the CPU backend; a
//! MatMul weight over the cap fails the build with an error naming the tensor, its size and the
//! limit. Runs on lavapipe; `FIFO_REQUIRE_GPU=1` turns a missing adapter into a failure.

mod onnx_common;

use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions, Precision};
use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::{Tensor, TensorData};
use onnx_common::graph::{
    f32_float_data, graph, initializer, model_bytes, named_node, untyped, value_info, DataType, GraphProto,
    NodeProto, TensorProto, ValueInfoProto,
};
use onnx_common::{compare, fixtures_root, open_gpu_context, read_tensors, relative_l2, Tolerance};
use std::collections::HashMap;
use std::sync::Arc;

const CAP: u64 = 64 << 10;

fn capped() -> Option<Arc<GpuContext>> {
    let options =
        GpuOptions { adapter: AdapterChoice::Fallback, max_binding_bytes: Some(CAP), ..Default::default() };
    let ctx = open_gpu_context(&options)?;
    assert_eq!(ctx.limits().max_storage_buffer_binding_size, CAP, "the cap is the device's limit");
    Some(ctx)
}

fn model(
    nodes: Vec<NodeProto>,
    init: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: &[&str],
) -> Vec<u8> {
    let graph = graph(nodes, init, inputs, outputs.iter().map(|o| untyped(o)).collect());
    model_bytes(GraphProto { name: Some("split_tables".into()), ..graph })
}

/// Values that differ in every bit pattern (row r, column c), so a wrong row or column shows.
fn table(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols).map(|i| ((i * 7919) % 100_003) as f32 * 0.37 - (i / cols) as f32).collect()
}

fn shapes(inputs: &[(String, Tensor)]) -> HashMap<String, Vec<usize>> {
    inputs.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect()
}

fn run_cpu(bytes: &[u8], inputs: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    let session = Session::build(ModelSource::Bytes(bytes), &shapes(inputs), &SessionOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    session.run(inputs.iter().cloned().collect()).unwrap()
}

/// A GPU session in f32 precision: the tables' sizes against the cap are f32 ones (the default,
/// `Precision::Auto`, runs the int8-table model in f16, where its 64000-byte table fits 64 KiB).
fn build_gpu(ctx: &Arc<GpuContext>, bytes: &[u8], inputs: &[(String, Tensor)]) -> Result<Session, String> {
    let gpu = GpuOptions { precision: Precision::F32, ..Default::default() };
    let options = SessionOptions { backend: Backend::Gpu, gpu, ..Default::default() };
    pollster::block_on(Session::build_on(ctx.clone(), ModelSource::Bytes(bytes), &shapes(inputs), &options))
        .map_err(|e| e.to_string())
}

fn gather_dispatches(session: &Session) -> usize {
    session.gpu().unwrap().kernel_keys().iter().filter(|k| k.starts_with("gather")).count()
}

#[test]
fn gather_from_a_table_over_one_binding_runs_in_row_chunks() {
    let Some(ctx) = capped() else { return };
    // [1000, 32] f32 = 128000 bytes: two chunks of at most 512 rows under 64 KiB. Two Gathers
    // share the chunks; the second one's indices are 2-d.
    let bytes = model(
        vec![
            named_node("embed", "Gather", &["table", "ids"], "out", vec![]),
            named_node("embed_again", "Gather", &["table", "ids2"], "out2", vec![]),
        ],
        vec![f32_float_data("table", &[1000, 32], table(1000, 32))],
        vec![value_info("ids", DataType::Int64, &[14]), value_info("ids2", DataType::Int64, &[2, 3])],
        &["out", "out2"],
    );
    let ids = vec![0, 999, -1, -1000, 500, 511, 512, 513, 512, 7, 7, -489, -488, 998];
    let inputs = vec![
        ("ids".to_string(), Tensor::new(vec![14], TensorData::I64(ids)).unwrap()),
        (
            "ids2".to_string(),
            Tensor::new(vec![2, 3], TensorData::I64(vec![-1, 0, 511, 512, 3, -999])).unwrap(),
        ),
    ];
    let want = run_cpu(&bytes, &inputs);
    let session = build_gpu(&ctx, &bytes, &inputs).unwrap();
    assert_eq!(
        gather_dispatches(&session),
        4,
        "two chunks per Gather: {:?}",
        session.gpu().unwrap().kernel_keys()
    );
    let got = pollster::block_on(session.run_async(inputs.iter().cloned().collect())).unwrap();
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        if let Some(diff) = compare(g, w, Tolerance::named("exact").unwrap()) {
            panic!("output '{name}': {diff}");
        }
    }
    // A second run with other indices: each chunk's dispatch writes every element it owns again.
    let other = Tensor::new(vec![14], TensorData::I64((0..14).map(|i| 999 - i * 70).collect())).unwrap();
    let inputs2 = vec![("ids".to_string(), other), inputs[1].clone()];
    let want = run_cpu(&bytes, &inputs2);
    let got = pollster::block_on(session.run_async(inputs2.iter().cloned().collect())).unwrap();
    assert!(compare(&got[0].1, &want[0].1, Tolerance::named("exact").unwrap()).is_none());
    // Out of range (the CPU backend refuses these; the GPU gather gives 0, as unsplit): after a
    // run that wrote every row, the out-of-range rows come back zero, the others right.
    let ids: [i64; 6] = [1000, 3, -1001, 600, 4000, -1];
    let inputs3 = [
        ("ids".to_string(), Tensor::new(vec![14], TensorData::I64([&ids[..], &[5; 8]].concat())).unwrap()),
        inputs[1].clone(),
    ];
    let got = pollster::block_on(session.run_async(inputs3.into_iter().collect())).unwrap();
    let t = table(1000, 32);
    let out = got[0].1.to_f32_vec();
    for (j, &i) in ids.iter().enumerate() {
        let row = &out[j * 32..(j + 1) * 32];
        let wrapped = if i < 0 { i + 1000 } else { i };
        if (0..1000).contains(&wrapped) {
            assert_eq!(row, &t[wrapped as usize * 32..(wrapped as usize + 1) * 32], "index {i}");
        } else {
            assert!(row.iter().all(|&v| v == 0.0), "index {i} out of range gives zeros: {row:?}");
        }
    }
}

#[test]
fn a_dequantized_int8_table_over_one_binding_is_gathered_in_chunks() {
    let Some(ctx) = capped() else { return };
    // DequantizeLinear is never folded: its [1000, 32] f32 output (128000 bytes) is evaluated at
    // build and uploaded in row chunks, never as a whole (nor is the int8 table, 4 bytes a value
    // on the device).
    let q: Vec<u8> = (0..1000 * 32).map(|i| ((i * 37) % 255) as u8).collect();
    let quantized = initializer("embed.q", DataType::Int8, &[1000i64, 32], q);
    // Per column (DequantizeLinear's default axis 1).
    let scale = f32_float_data("embed.scale", &[32], (0..32).map(|c| 0.01 + c as f32 * 1e-3).collect());
    let bytes = model(
        vec![
            named_node("dq", "DequantizeLinear", &["embed.q", "embed.scale"], "table", vec![]),
            named_node("embed", "Gather", &["table", "ids"], "out", vec![]),
        ],
        vec![quantized, scale],
        vec![value_info("ids", DataType::Int64, &[6])],
        &["out"],
    );
    let inputs = vec![(
        "ids".to_string(),
        Tensor::new(vec![6], TensorData::I64(vec![0, 511, 512, -1, 700, 700])).unwrap(),
    )];
    let want = run_cpu(&bytes, &inputs);
    let session = build_gpu(&ctx, &bytes, &inputs).unwrap();
    assert_eq!(gather_dispatches(&session), 2, "{:?}", session.gpu().unwrap().kernel_keys());
    let got = pollster::block_on(session.run_async(inputs.iter().cloned().collect())).unwrap();
    if let Some(diff) = compare(&got[0].1, &want[0].1, Tolerance::named("exact").unwrap()) {
        panic!("{diff}");
    }
}

#[test]
fn text_encoder_with_its_token_embedding_split_matches_the_cpu() {
    let Some(ctx) = capped() else { return };
    let dir = fixtures_root().join("packages/modelscope-tiny");
    let path = dir.join("text_encoder.onnx");
    let inputs = read_tensors(&dir.join("golden/text_encoder"), "input");
    let shapes = shapes(&inputs);
    let feeds: HashMap<String, Tensor> = inputs.iter().cloned().collect();
    let cpu = Session::build(ModelSource::Path(&path), &shapes, &SessionOptions::default()).unwrap();
    let want = cpu.run(feeds.clone()).unwrap();
    let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
    let gpu = pollster::block_on(Session::build_on(ctx.clone(), ModelSource::Path(&path), &shapes, &options))
        .unwrap_or_else(|e| panic!("text encoder under a {CAP}-byte binding cap: {e}"));
    assert!(gather_dispatches(&gpu) >= 3, "the token table is split: {:?}", gpu.gpu().unwrap().kernel_keys());
    let got = pollster::block_on(gpu.run_async(feeds)).unwrap();
    assert_eq!(got.len(), want.len());
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        let err = relative_l2(g, w);
        eprintln!("{name}: relative L2 {err:.2e}");
        assert!(err < 1e-5, "output '{name}': relative L2 {err:.3e}");
    }
}

#[test]
fn a_matmul_weight_over_one_binding_is_a_clear_error() {
    let Some(ctx) = capped() else { return };
    // [64, 512] f32 = 131072 bytes > 65536.
    let bytes = model(
        vec![named_node("proj", "MatMul", &["x", "proj.weight"], "y", vec![])],
        vec![f32_float_data("proj.weight", &[64, 512], table(64, 512))],
        vec![value_info("x", DataType::Float, &[2, 64])],
        &["y"],
    );
    let inputs = vec![("x".to_string(), Tensor::new(vec![2, 64], TensorData::F32(vec![0.5; 128])).unwrap())];
    let msg = build_gpu(&ctx, &bytes, &inputs).err().expect("a weight over the cap cannot be bound");
    eprintln!("{msg}");
    for part in
        ["'proj.weight'", "131072 bytes", "65536 bytes", "FIFO_MAX_BINDING_BYTES", "CPU backend", "'proj'"]
    {
        assert!(msg.contains(part), "missing '{part}' in: {msg}");
    }
}

#[test]
fn a_run_time_value_over_one_binding_is_named() {
    let Some(ctx) = capped() else { return };
    // The table splits, but the gathered [600, 32] output (76800 bytes) is over the cap itself.
    let bytes = model(
        vec![named_node("embed", "Gather", &["table", "ids"], "tokens", vec![])],
        vec![f32_float_data("table", &[1000, 32], table(1000, 32))],
        vec![value_info("ids", DataType::Int64, &[600])],
        &["tokens"],
    );
    let inputs = vec![("ids".to_string(), Tensor::new(vec![600], TensorData::I64(vec![1; 600])).unwrap())];
    let msg = build_gpu(&ctx, &bytes, &inputs).err().expect("an output over the cap cannot be bound");
    for part in ["'tokens'", "76800 bytes", "65536 bytes"] {
        assert!(msg.contains(part), "missing '{part}' in: {msg}");
    }
}
