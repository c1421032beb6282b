//! Kernel timings on the chosen adapter (matmul, conv, attention), for `cargo bench --bench
//! kernels` and a future `fifo bench`. Each timing waits for the GPU inside the timed region;
//! the first run (pipeline JIT) is not timed.

use std::time::Instant;

use super::ops::attention::{attention, Attention};
use super::ops::conv::{conv, Conv, Geometry};
use super::ops::matmul::{matmul, MatMul};
use super::{Activation, DType, GpuContext, GpuResult, GpuTensor, KernelStyle, ProgramBuilder};

/// One measured kernel.
#[derive(Clone, Debug)]
pub struct BenchResult {
    pub name: String,
    pub key: String,
    pub flops: f64,
    pub seconds: f64,
}

impl BenchResult {
    pub fn gflops(&self) -> f64 {
        self.flops / self.seconds / 1e9
    }
}

/// Problem sizes: `small` fits a software adapter's patience (seconds on lavapipe).
#[derive(Clone, Debug)]
pub struct BenchSizes {
    /// Runs only benchmarks whose family ("matmul", "conv", "attention") contains this.
    pub filter: String,
    pub matmul: usize,
    pub conv_channels: usize,
    pub conv_side: usize,
    pub attention_len: usize,
    pub iterations: usize,
}

impl BenchSizes {
    /// `small` on a CPU adapter; sizes that keep a real GPU busy for milliseconds (launch
    /// overhead out of the figures) otherwise.
    pub fn for_adapter(ctx: &GpuContext) -> Self {
        if ctx.is_cpu_adapter() {
            Self::small()
        } else {
            Self {
                matmul: 2048,
                conv_channels: 256,
                conv_side: 64,
                attention_len: 4096,
                iterations: 20,
                ..Self::small()
            }
        }
    }

    pub fn small() -> Self {
        Self {
            filter: String::new(),
            matmul: 512,
            conv_channels: 64,
            conv_side: 32,
            attention_len: 1024,
            iterations: 3,
        }
    }
}

fn filled(ctx: &GpuContext, name: &str, dtype: DType, len: usize) -> GpuResult<GpuTensor> {
    // Deterministic values in [-1, 1); integral ones for int8.
    let data: Vec<f32> = (0..len)
        .map(|i| {
            let v = ((i as u64).wrapping_mul(2654435761) % 2000) as f32 / 1000.0 - 1.0;
            if dtype == DType::I8 {
                (v * 127.0).round()
            } else {
                v
            }
        })
        .collect();
    GpuTensor::from_f32_as(ctx, name, dtype, &data)
}

async fn time(
    ctx: &GpuContext,
    b: ProgramBuilder<'_>,
    name: &str,
    flops: f64,
    iterations: usize,
) -> GpuResult<BenchResult> {
    let program = b.build().await?;
    let key = program.keys().join(" + ");
    program.run(ctx).await?;
    ctx.wait_idle().await?;
    let start = Instant::now();
    for _ in 0..iterations {
        program.run(ctx).await?;
        ctx.wait_idle().await?;
    }
    let seconds = start.elapsed().as_secs_f64() / iterations as f64;
    Ok(BenchResult { name: name.to_string(), key, flops, seconds })
}

/// Runs every benchmark and returns the results (print them with `report`).
pub async fn run_kernel_benchmarks(ctx: &GpuContext, s: BenchSizes) -> GpuResult<Vec<BenchResult>> {
    let mut results = Vec::new();
    if "matmul".contains(s.filter.as_str()) {
        matmul_benchmarks(ctx, &s, &mut results).await?;
    }
    if "conv".contains(s.filter.as_str()) {
        conv_benchmark(ctx, &s, &mut results).await?;
    }
    if "attention".contains(s.filter.as_str()) {
        attention_benchmark(ctx, &s, &mut results).await?;
    }
    Ok(results)
}

async fn matmul_benchmarks(
    ctx: &GpuContext,
    s: &BenchSizes,
    results: &mut Vec<BenchResult>,
) -> GpuResult<()> {
    let n = s.matmul;
    let a = filled(ctx, "a", DType::F32, n * n)?;
    let out = GpuTensor::new(ctx, "out", DType::F32, n * n)?;
    let scales = filled(ctx, "scales", DType::F32, n)?;
    let flops = 2.0 * (n * n * n) as f64;
    // (style, weight type, weights stored [N, K] as torch's Linear)
    for (style, dtype, transposed) in [
        (KernelStyle::RegisterBlocked, DType::F32, false),
        (KernelStyle::RegisterBlocked, DType::F32, true),
        (KernelStyle::Tiled, DType::F32, false),
        (ctx.style(), DType::F16, false),
        (ctx.style(), DType::I8, false),
    ] {
        let w = filled(ctx, "w", dtype, n * n)?;
        let mut mm = MatMul::new(a.view(&[n, n]), w.view(&[n, n]), out.view(&[n, n]));
        mm.style = Some(style);
        if transposed {
            mm.w = w.view(&[n, n]).permute(&[1, 0])?;
        }
        if dtype == DType::I8 {
            mm.scales = Some(scales.clone());
        }
        let mut b = ProgramBuilder::new(ctx);
        matmul(&mut b, &mm)?;
        let layout = if transposed { " (w^T)" } else { "" };
        let name = format!("matmul {n}x{n}x{n} w={}{layout}", dtype.name());
        results.push(time(ctx, b, &name, flops, s.iterations).await?);
    }
    Ok(())
}

async fn conv_benchmark(ctx: &GpuContext, s: &BenchSizes, results: &mut Vec<BenchResult>) -> GpuResult<()> {
    let (c, side) = (s.conv_channels, s.conv_side);
    for style in [KernelStyle::RegisterBlocked, KernelStyle::Tiled] {
        for packed in [false, true] {
            conv_once(ctx, s, c, side, packed, style, results).await?;
        }
    }
    Ok(())
}

async fn conv_once(
    ctx: &GpuContext,
    s: &BenchSizes,
    c: usize,
    side: usize,
    packed: bool,
    style: KernelStyle,
    results: &mut Vec<BenchResult>,
) -> GpuResult<()> {
    let conv_op = Conv {
        x: filled(ctx, "x", DType::F32, c * side * side)?,
        x_shape: vec![1, c, side, side],
        w: filled(ctx, "w", DType::F32, c * c * 9)?,
        scales: None,
        bias: Some(filled(ctx, "bias", DType::F32, c)?),
        out: GpuTensor::new(ctx, "y", DType::F32, c * side * side)?,
        out_channels: c,
        groups: 1,
        geometry: Geometry::new(&[3, 3]).with_pads(&[1, 1], &[1, 1]),
        activation: Activation::Silu,
        packed_weights: packed,
        style: Some(style),
        residual: None,
    };
    let mut b = ProgramBuilder::new(ctx);
    conv(&mut b, &conv_op)?;
    let flops = 2.0 * (c * c * 9 * side * side) as f64;
    let name = format!("conv3x3 {c}->{c} {side}x{side}{} ({style:?})", if packed { " packed" } else { "" });
    results.push(time(ctx, b, &name, flops, s.iterations).await?);
    Ok(())
}

async fn attention_benchmark(
    ctx: &GpuContext,
    s: &BenchSizes,
    results: &mut Vec<BenchResult>,
) -> GpuResult<()> {
    // The shape wonnx was measured on (1x8x1024x40): 8 heads, head size 40.
    let (h, l, d) = (8, s.attention_len, 40);
    let q = filled(ctx, "q", DType::F32, h * l * d)?;
    let o = GpuTensor::new(ctx, "o", DType::F32, h * l * d)?;
    let view = q.view(&[1, h, l, d]);
    let att = Attention {
        q: view.clone(),
        k: view.clone(),
        v: view,
        out: o.view(&[1, h, l, d]),
        scale: 1.0 / (d as f32).sqrt(),
    };
    let mut b = ProgramBuilder::new(ctx);
    attention(&mut b, &att)?;
    let flops = 4.0 * (h * l * l * d) as f64;
    results.push(time(ctx, b, &format!("attention 1x{h}x{l}x{d}"), flops, s.iterations).await?);
    Ok(())
}

/// Human-readable table, one line per kernel.
pub fn report(ctx: &GpuContext, results: &[BenchResult]) -> String {
    let mut s = format!("adapter: {}\n", ctx.describe());
    for r in results {
        s += &format!(
            "  {:<48} {:>9.2} ms {:>8.2} GFLOP/s   [{}]\n",
            r.name,
            r.seconds * 1e3,
            r.gflops(),
            r.key
        );
    }
    s
}
