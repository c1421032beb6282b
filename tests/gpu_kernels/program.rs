//! The execution model: build once and replay with new inputs, one pipeline per key, buffer
//! reuse from liveness (and its off switch), and GPU errors as `Result`s.

use fifo_diffusion::gpu::memory::{plan_reuse, BufferPool, Lifetime};
use fifo_diffusion::gpu::ops::elementwise::{binary, unary, Binary, Unary};
use fifo_diffusion::gpu::ops::matmul::{matmul, MatMul};
use fifo_diffusion::gpu::{
    Activation, AdapterChoice, DType, GpuContext, GpuError, GpuOptions, GpuTensor, ProgramBuilder,
};

use crate::{assert_close, ctx, run, Rng, F32};

#[test]
fn build_once_replay_with_new_inputs() {
    // Its own device: the pipeline count below must not see other tests' kernels.
    if ctx().is_none() {
        return;
    }
    let options = GpuOptions { adapter: AdapterChoice::Fallback, ..Default::default() };
    let own = run(GpuContext::new(&options)).unwrap();
    let ctx = &own;
    let (m, k, n) = (5, 6, 7);
    let mut rng = Rng::new(90);
    let w = rng.vec(k * n, -1.0, 1.0);
    let bias = rng.vec(n, -1.0, 1.0);
    let x = GpuTensor::new(ctx, "latents", DType::F32, m * k).unwrap();
    let gw = GpuTensor::from_f32(ctx, "w", &w).unwrap();
    let y = GpuTensor::new(ctx, "y", DType::F32, m * n).unwrap();
    let z = GpuTensor::new(ctx, "z", DType::F32, m * n).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    let mut mm = MatMul::new(x.view(&[m, k]), gw.view(&[k, n]), y.view(&[m, n]));
    mm.bias = Some(GpuTensor::from_f32(ctx, "bias", &bias).unwrap());
    mm.activation = Activation::Silu;
    matmul(&mut b, &mm).unwrap();
    binary(&mut b, Binary::Mul, &y.view(&[m, n]), &y.view(&[m, n]), &z.view(&[m, n])).unwrap();
    let program = run(b.build()).unwrap();
    let keys = program.keys();
    assert!(keys[0].starts_with("matmul.f32.w=f32.bias.") && keys[0].ends_with(".act=silu"), "{keys:?}");
    assert_eq!(keys[1], "elementwise.f32.mul.wg64.run16");
    let compiled = ctx.pipeline_keys().len();
    for step in 0..3 {
        let xv = rng.vec(m * k, -1.0, 1.0);
        x.write_f32(ctx, &xv).unwrap();
        run(program.run(ctx)).unwrap();
        let want: Vec<f32> = (0..m * n)
            .map(|i| {
                let (r, c) = (i / n, i % n);
                let v = Activation::Silu
                    .apply((0..k).map(|kk| xv[r * k + kk] * w[kk * n + c]).sum::<f32>() + bias[c]);
                v * v
            })
            .collect();
        assert_close(&format!("replay {step}"), &run(ctx.read_f32(&z)).unwrap(), &want, F32.accumulating(k));
    }
    // A second program of the same kernels compiles nothing new.
    let mut b = ProgramBuilder::new(ctx);
    binary(&mut b, Binary::Mul, &y.view(&[m, n]), &y.view(&[m, n]), &z.view(&[m, n])).unwrap();
    run(b.build()).unwrap();
    assert_eq!(ctx.pipeline_keys().len(), compiled);
}

/// A chain a -> b -> c -> d -> e of unary ops through pooled buffers gives the same answer with
/// reuse on (two buffers) and off (one buffer each).
#[test]
fn liveness_reuse_matches_no_reuse() {
    let Some(ctx) = ctx() else { return };
    let n = 33;
    let x: Vec<f32> = Rng::new(91).vec(n, -2.0, 2.0);
    let ops = [Unary::Neg, Unary::Exp, Unary::Sqrt, Unary::Log];
    let lifetimes: Vec<Lifetime> =
        (0..ops.len()).map(|i| Lifetime { bytes: n as u64 * 4, first: i, last: i + 1 }).collect();
    let mut results = Vec::new();
    for reuse in [true, false] {
        let plan = plan_reuse(&lifetimes, reuse);
        assert_eq!(plan.slot_bytes.len(), if reuse { 2 } else { 4 });
        let pool = BufferPool::new(ctx, plan).unwrap();
        let input = GpuTensor::from_f32(ctx, "x", &x).unwrap();
        let mut b = ProgramBuilder::new(ctx);
        let mut prev = input;
        for (i, &op) in ops.iter().enumerate() {
            let t = pool.tensor(i, &format!("t{i}"), DType::F32, n).unwrap();
            unary(&mut b, op, &prev.view(&[n]), &t.view(&[n])).unwrap();
            prev = t;
        }
        run(run(b.build()).unwrap().run(ctx)).unwrap();
        results.push(run(ctx.read_f32(&prev)).unwrap());
    }
    let want: Vec<f32> = x.iter().map(|v| (-v).exp().sqrt().ln()).collect();
    assert_close("reuse on", &results[0], &want, F32);
    assert_close("reuse off", &results[1], &want, F32);
}

#[test]
fn gpu_errors_are_results() {
    let Some(ctx) = ctx() else { return };
    // Larger than one binding: named in the error, nothing allocated.
    let limit = ctx.limits().max_storage_buffer_binding_size;
    let err = GpuTensor::new(ctx, "huge_activation", DType::F32, (limit / 4 + 1) as usize).unwrap_err();
    assert!(matches!(err, GpuError::TooLarge { .. }), "{err}");
    assert!(
        err.to_string().contains("huge_activation") && err.to_string().contains(&limit.to_string()),
        "{err}"
    );
    // Reading and writing one buffer in one dispatch is a WebGPU usage conflict: an Err, no panic.
    let t = GpuTensor::from_f32(ctx, "t", &[1.0, 2.0]).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    unary(&mut b, Unary::Neg, &t.view(&[2]), &t.view(&[2])).unwrap();
    let result = run(async { run_program(b).await });
    assert!(matches!(result, Err(GpuError::Validation { .. })), "{result:?}");
    // The context still works afterwards.
    let out = GpuTensor::new(ctx, "out", DType::F32, 2).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    unary(&mut b, Unary::Neg, &t.view(&[2]), &out.view(&[2])).unwrap();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    assert_eq!(run(ctx.read_f32(&out)).unwrap(), vec![-1.0, -2.0]);
}

async fn run_program(b: ProgramBuilder<'_>) -> Result<(), GpuError> {
    let ctx = b.context();
    b.build().await?.run(ctx).await
}

/// More than 65535 workgroups in one dimension fold into y (and z): every element is visited.
#[test]
fn dispatches_past_65535_workgroups_fold() {
    let Some(ctx) = ctx() else { return };
    // 65535 * 64 + 100 elements: two rows of workgroups for a 1-D kernel.
    let n = 65535 * 64 + 100;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
    let gx = GpuTensor::from_f32(ctx, "x", &x).unwrap();
    let out = GpuTensor::new(ctx, "out", DType::F32, n).unwrap();
    // Attention over 70000 tiny batch entries: the batch folds into y and z.
    let batches = 70_000;
    let qv: Vec<f32> = (0..batches * 4).map(|i| (i % 7) as f32).collect();
    let q = GpuTensor::from_f32(ctx, "q", &qv).unwrap();
    let att = GpuTensor::new(ctx, "att", DType::F32, batches * 4).unwrap();
    let mut b = ProgramBuilder::new(ctx);
    unary(&mut b, Unary::Neg, &gx.view(&[n]), &out.view(&[n])).unwrap();
    let view = q.view(&[batches, 1, 1, 4]);
    let a = fifo_diffusion::gpu::ops::attention::Attention {
        q: view.clone(),
        k: view.clone(),
        v: view,
        out: att.view(&[batches, 1, 1, 4]),
        scale: 1.0,
    };
    fifo_diffusion::gpu::ops::attention::attention(&mut b, &a).unwrap();
    run(run(b.build()).unwrap().run(ctx)).unwrap();
    let got = run(ctx.read_f32(&out)).unwrap();
    assert!(got.iter().zip(&x).all(|(g, v)| *g == -v), "some elements were not written");
    // One key: attention returns the value row itself.
    assert_close("attention with 70000 batch entries", &run(ctx.read_f32(&att)).unwrap(), &qv, F32);
}

/// `fifo devices` lists adapters by index; `AdapterChoice::Index` opens exactly that one.
#[test]
fn adapters_by_index() {
    if ctx().is_none() {
        return;
    }
    let list = run(GpuContext::adapters());
    assert!(!list.is_empty());
    let cpu = list.iter().find(|a| a.device_type == "Cpu").expect("a CPU adapter (lavapipe or llvmpipe)");
    let options = GpuOptions { adapter: AdapterChoice::Index(cpu.index), ..Default::default() };
    let opened = run(GpuContext::new(&options)).unwrap();
    assert_eq!(opened.info().name, cpu.name);
    let options = GpuOptions { adapter: AdapterChoice::Index(list.len()), ..Default::default() };
    let err = run(GpuContext::new(&options)).err().expect("index past the end");
    assert!(matches!(err, GpuError::AdapterIndex { .. }), "{err}");
}

/// The FIFO loop shifts latents on the device: a copy between tensors, no CPU round trip.
#[test]
fn device_to_device_copy() {
    let Some(ctx) = ctx() else { return };
    let a = GpuTensor::from_f32(ctx, "a", &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let b = GpuTensor::from_f32(ctx, "b", &[0.0; 6]).unwrap();
    run(ctx.copy_elements(&a, 1, &b, 2, 3)).unwrap();
    assert_eq!(run(ctx.read_f32(&b)).unwrap(), vec![0.0, 0.0, 2.0, 3.0, 4.0, 0.0]);
    assert!(run(ctx.copy_elements(&a, 3, &b, 0, 3)).is_err(), "past the end of the source");
}

/// The device meter counts every tensor buffer once (aliases share theirs) and forgets it when
/// the last handle goes; the peak stays.
#[test]
fn device_memory_counts_live_and_peak_tensor_bytes() {
    if ctx().is_none() {
        return;
    }
    let options = GpuOptions { adapter: AdapterChoice::Fallback, ..Default::default() };
    let own = run(GpuContext::new(&options)).unwrap();
    let ctx = &own;
    assert_eq!((ctx.memory().live_bytes(), ctx.memory().peak_bytes()), (0, 0));
    let a = GpuTensor::new(ctx, "a", DType::F32, 1000).unwrap();
    let alias = a.alias("a2", DType::F32, 500).unwrap();
    let b = GpuTensor::new(ctx, "b", DType::F32, 250).unwrap();
    let (live, peak) = (ctx.memory().live_bytes(), ctx.memory().peak_bytes());
    assert!((5000..5200).contains(&live) && peak == live, "live {live}, peak {peak}");
    drop(a);
    assert_eq!(ctx.memory().live_bytes(), live, "the alias keeps the buffer alive");
    drop(alias);
    drop(b);
    assert_eq!(ctx.memory().live_bytes(), 0);
    assert_eq!(ctx.memory().peak_bytes(), peak);
}
