//! Mesa's llvmpipe (lavapipe, the CI's adapter) silently ends every shader loop once an
//! invocation's loops together ran 65,535 iterations. Single-op models whose lines are longer
//! than that (Softmax over 65,537, LayerNormalization over 65,537, MatMul with K = 70,000,
//! ReduceSum over 70,000 and over a prime 65,537, GlobalAveragePool over 300x300, attention over
//! 20,000 keys) must either
//! match the CPU backend or fail when the session is built, with an error naming the limit and
//! the fix: never a wrong answer. On other adapters (no limit) they must all match.
//! `FIFO_REQUIRE_GPU=1` turns a missing adapter into a failure.
#![cfg(not(target_arch = "wasm32"))]

mod onnx_common;

use fifo_diffusion::session::{Backend, ModelSource, Session, SessionOptions};
use fifo_diffusion::tensor::Tensor;
use onnx_common::graph::*;
use std::collections::HashMap;

/// Deterministic values in [0.25, 1.25): positive, so sums and means are far from 0.
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let h = (i.wrapping_add(seed * 7919)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            0.25 + (h as f32) / (1u64 << 24) as f32
        })
        .collect()
}

fn axes(name: &str, axes: &[i64]) -> TensorProto {
    let raw = axes.iter().flat_map(|a| a.to_le_bytes()).collect();
    initializer(name, DataType::Int64, &[axes.len()], raw)
}

/// A case whose loops stay under llvmpipe's limit by the measured count: a bound that refuses
/// it is needlessly coarse.
const RUNS_UNDER_THE_LIMIT: &str = "attention over 3600 keys, heads of 64";

struct Case {
    name: &'static str,
    model: Vec<u8>,
    inputs: Vec<(&'static str, Vec<usize>)>,
}

fn cases() -> Vec<Case> {
    let one = |op: &str, shape: &[usize], out: &[usize], attrs, extra: Vec<_>, name| {
        let mut ins = vec!["x"];
        let inits: Vec<TensorProto> = extra;
        ins.extend(inits.iter().map(|t| t.name.as_deref().unwrap()));
        let ins: Vec<String> = ins.iter().map(|s| s.to_string()).collect();
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        let model = model(
            vec![node(op, &ins, "y", attrs)],
            inits,
            vec![float_info("x", shape)],
            vec![float_info("y", out)],
        );
        Case { name, model, inputs: vec![("x", shape.to_vec())] }
    };
    let matmul = |k: usize, n: usize, name| {
        let model = model(
            vec![node("MatMul", &["a", "w"], "y", vec![])],
            vec![],
            vec![float_info("a", &[5, k]), float_info("w", &[k, n])],
            vec![float_info("y", &[5, n])],
        );
        Case { name, model, inputs: vec![("a", vec![5, k]), ("w", vec![k, n])] }
    };
    let ln = {
        let d = 65537;
        let gamma = f32_initializer("g", &[d], &values(d, 3));
        let beta = f32_initializer("b", &[d], &values(d, 4));
        let model = model(
            vec![node("LayerNormalization", &["x", "g", "b"], "y", vec![int_attr("axis", -1)])],
            vec![gamma, beta],
            vec![float_info("x", &[2, d])],
            vec![float_info("y", &[2, d])],
        );
        Case { name: "LayerNormalization over 65537", model, inputs: vec![("x", vec![2, d])] }
    };
    // Attention (fused into one kernel) over 20,000 keys with 64-wide heads: its loop over the
    // keys runs the head loops inside it.
    let attention = |keys: usize, name| {
        let (m, d) = (4, 64);
        let model = model(
            vec![
                node("MatMul", &["q", "kt"], "s", vec![]),
                node("Mul", &["s", "scale"], "scaled", vec![]),
                node("Softmax", &["scaled"], "p", vec![int_attr("axis", -1)]),
                node("MatMul", &["p", "v"], "y", vec![]),
            ],
            vec![f32_initializer::<i64>("scale", &[], &[0.125])],
            vec![
                float_info("q", &[1, 2, m, d]),
                float_info("kt", &[1, 2, d, keys]),
                float_info("v", &[1, 2, keys, d]),
            ],
            vec![float_info("y", &[1, 2, m, d])],
        );
        let inputs = vec![("q", vec![1, 2, m, d]), ("kt", vec![1, 2, d, keys]), ("v", vec![1, 2, keys, d])];
        Case { name, model, inputs }
    };
    vec![
        attention(20000, "attention over 20000 keys, heads of 64"),
        // Just under the limit as measured on lavapipe (3,900 keys came out wrong): must run.
        attention(3600, RUNS_UNDER_THE_LIMIT),
        one("Softmax", &[2, 65537], &[2, 65537], vec![int_attr("axis", -1)], vec![], "Softmax over 65537"),
        ln,
        matmul(70000, 3, "MatMul K = 70000, N = 3"),
        matmul(70000, 4, "MatMul K = 70000, N = 4"),
        one(
            "ReduceSum",
            &[2, 70000],
            &[2],
            vec![int_attr("keepdims", 0)],
            vec![axes("axes", &[1])],
            "ReduceSum over 70000",
        ),
        one(
            "ReduceSum",
            &[2, 65537, 3],
            &[2, 3],
            vec![int_attr("keepdims", 0)],
            vec![axes("axes", &[1])],
            "ReduceSum over 65537 (prime)",
        ),
        one(
            "GlobalAveragePool",
            &[1, 2, 300, 300],
            &[1, 2, 1, 1],
            vec![],
            vec![],
            "GlobalAveragePool over 300x300",
        ),
    ]
}

#[test]
fn lines_over_the_llvmpipe_loop_limit_match_the_cpu_or_are_refused() {
    let Some(ctx) = onnx_common::gpu_context() else { return };
    let llvmpipe = ctx.name().to_ascii_lowercase().contains("llvmpipe")
        || ctx.info().driver.to_ascii_lowercase().contains("llvmpipe");
    let limit = ctx.loop_iteration_limit();
    assert_eq!(limit.is_some(), llvmpipe, "{}: loop limit {limit:?}", ctx.describe());
    let mut refused = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let feeds: HashMap<String, Tensor> = case
            .inputs
            .iter()
            .enumerate()
            .map(|(j, (name, shape))| {
                let n = shape.iter().product();
                (name.to_string(), Tensor::from_f32(shape.clone(), values(n, (i * 10 + j) as u64)).unwrap())
            })
            .collect();
        let shapes: HashMap<String, Vec<usize>> =
            case.inputs.iter().map(|(n, s)| (n.to_string(), s.clone())).collect();
        let source = ModelSource::Bytes(&case.model);
        let cpu = Session::build(source, &shapes, &SessionOptions::default()).unwrap();
        let want = cpu.run(feeds.clone()).unwrap().remove(0).1.to_f32_vec();
        let options = SessionOptions { backend: Backend::Gpu, ..Default::default() };
        let gpu = match pollster::block_on(Session::build_on(ctx.clone(), source, &shapes, &options)) {
            Ok(gpu) => gpu,
            Err(e) => {
                let message = e.to_string();
                assert!(llvmpipe, "{}: refused on {} (no loop limit): {message}", case.name, ctx.describe());
                for part in ["65535", "llvmpipe", "--backend cpu", "not supported"] {
                    assert!(
                        message.contains(part),
                        "{}: the refusal does not say '{part}': {message}",
                        case.name
                    );
                }
                refused.push(case.name);
                continue;
            }
        };
        let got = pollster::block_on(gpu.run_async(feeds)).unwrap().remove(0).1.to_f32_vec();
        assert_eq!(got.len(), want.len(), "{}", case.name);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(&want).fold(0f32, |m, (g, w)| m.max((g - w).abs()));
        assert!(
            err <= 1e-3 * scale,
            "{}: GPU ({}) differs from the CPU by {err} (largest value {scale}): a silently wrong answer",
            case.name,
            ctx.describe()
        );
    }
    eprintln!("refused on {}: {refused:?}", ctx.describe());
    assert!(!refused.contains(&RUNS_UNDER_THE_LIMIT), "a launch under the limit was refused");
}
