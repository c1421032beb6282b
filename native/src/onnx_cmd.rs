//! `fifo onnx inspect` and `fifo onnx run`.

use crate::npy;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use fifo_diffusion::gpu::{AdapterChoice, GpuOptions, Precision};
use fifo_diffusion::session::{inspect, Backend, ModelInfo, ModelSource, Session, SessionOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum OnnxCommand {
    /// Inputs, outputs, ops with counts and opsets, unsupported nodes, parameter bytes and the
    /// planned peak memory for the given input shapes.
    Inspect {
        model: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Shape of an input with free dims: NAME=d0,d1,... (repeatable).
        #[arg(long = "input", value_name = "NAME=d0,d1,...", value_parser = parse_shape)]
        inputs: Vec<(String, Vec<usize>)>,
    },
    /// Runs a model on .npy inputs and writes one .npy per output.
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    model: PathBuf,
    /// An input: NAME=FILE.npy (repeatable).
    #[arg(long = "input", value_name = "NAME=FILE.npy", value_parser = parse_file)]
    inputs: Vec<(String, PathBuf)>,
    #[arg(long)]
    output_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
    backend: BackendArg,
    /// Adapter index for the gpu backend (see `fifo devices`).
    #[arg(long)]
    device: Option<usize>,
    /// Run this many more times after the first and print the mean time per run.
    #[arg(long, default_value_t = 0)]
    repeat: usize,
    /// Activation precision of the gpu backend: f32, f16 (needs shader-f16) or auto (f16 for
    /// int8 / f16 weights where the adapter has shader-f16, else f32).
    #[arg(long, default_value = "auto", value_parser = str::parse::<Precision>)]
    precision: Precision,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Cpu,
    Gpu,
}

fn split_arg(s: &str) -> Result<(&str, &str), String> {
    s.split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))
}

fn parse_shape(s: &str) -> Result<(String, Vec<usize>), String> {
    let (name, dims) = split_arg(s)?;
    let dims = dims
        .split(',')
        .map(|d| d.trim().parse::<usize>().map_err(|_| format!("'{d}' in '{s}' is not a dimension")))
        .collect::<Result<_, _>>()?;
    Ok((name.to_string(), dims))
}

fn parse_file(s: &str) -> Result<(String, PathBuf), String> {
    let (name, file) = split_arg(s)?;
    Ok((name.to_string(), PathBuf::from(file)))
}

pub fn run(cmd: OnnxCommand) -> Result<()> {
    match cmd {
        OnnxCommand::Inspect { model, json, inputs } => {
            let shapes: HashMap<_, _> = inputs.into_iter().collect();
            let info = inspect(ModelSource::Path(&model), &shapes, &SessionOptions::default())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_info(&model, &info);
            }
            Ok(())
        }
        OnnxCommand::Run(args) => run_model(args),
    }
}

fn run_model(args: RunArgs) -> Result<()> {
    let RunArgs { model, inputs, output_dir, backend, device, repeat, precision } = args;
    let backend = match backend {
        BackendArg::Cpu if device.is_some() => {
            bail!("--device selects a GPU adapter; it does not apply to the cpu backend (add --backend gpu)")
        }
        BackendArg::Cpu if precision == Precision::F16 => {
            bail!("--precision f16 applies to the gpu backend; the cpu backend computes in f32 (add --backend gpu)")
        }
        BackendArg::Cpu => Backend::Cpu,
        BackendArg::Gpu => Backend::Gpu,
    };
    let tensors: HashMap<String, _> =
        inputs.into_iter().map(|(name, path)| Ok((name, npy::read(&path)?))).collect::<Result<_>>()?;
    let shapes = tensors.iter().map(|(n, t)| (n.clone(), t.shape().to_vec())).collect();
    let adapter = device.map_or(AdapterChoice::Default, AdapterChoice::Index);
    let options = SessionOptions {
        backend,
        gpu: GpuOptions { adapter, precision, ..Default::default() },
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let session = pollster::block_on(Session::build_async(ModelSource::Path(&model), &shapes, &options))?;
    if let Some(gpu) = session.gpu() {
        eprintln!(
            "gpu: {} (precision {}, {} kernel launches per run, {:.1} MiB of buffers, {:.1} MiB of \
             constants; {} int8 and {} f16 weights), built in {:.2} s",
            gpu.context().describe(),
            gpu.precision().name(),
            gpu.dispatches(),
            gpu.pool_bytes as f64 / (1 << 20) as f64,
            gpu.constant_bytes as f64 / (1 << 20) as f64,
            gpu.int8_weights,
            gpu.f16_weights,
            started.elapsed().as_secs_f64()
        );
    }
    let outputs = pollster::block_on(session.run_async(tensors.clone()))?;
    if repeat > 0 {
        let start = std::time::Instant::now();
        for _ in 0..repeat {
            pollster::block_on(session.run_async(tensors.clone()))?;
        }
        let mean = start.elapsed().as_secs_f64() * 1e3 / repeat as f64;
        println!("run: {mean:.2} ms (mean of {repeat} after one warm-up run)");
    }
    if let Some(gpu) = session.gpu() {
        let peak = gpu.context().memory().peak_bytes() as f64 / (1 << 20) as f64;
        eprintln!("gpu: peak device memory {peak:.1} MiB (precision {})", gpu.precision().name());
    }
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("cannot create {}", output_dir.display()))?;
    for (name, tensor) in outputs {
        let file = output_dir.join(format!("{}.npy", file_stem(&name)));
        npy::write(&file, &tensor)?;
        println!("{name}: {} {:?} -> {}", tensor.dtype(), tensor.shape(), file.display());
    }
    Ok(())
}

/// Output names may contain '/' or ':'; file names may not.
fn file_stem(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

fn shape_text(shape: &Option<Vec<usize>>, declared: &Option<Vec<fifo_diffusion::graph::Dim>>) -> String {
    match (shape, declared) {
        (Some(s), _) => format!("{s:?}"),
        (None, Some(d)) => serde_json::to_string(d).unwrap_or_default(),
        (None, None) => "?".into(),
    }
}

fn print_info(model: &Path, info: &ModelInfo) {
    println!("model: {}", model.display());
    let opsets: Vec<String> = info
        .opsets
        .iter()
        .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
        .collect();
    println!("opsets: {}", opsets.join(", "));
    for (title, list) in [("inputs", &info.inputs), ("outputs", &info.outputs)] {
        println!("{title}:");
        for t in list {
            let dtype = t.dtype.map_or("?".to_string(), |d| d.to_string());
            println!("  {:<24} {dtype:<8} {}", t.name, shape_text(&t.shape, &t.declared_shape));
        }
    }
    println!("ops ({} nodes loaded):", info.nodes_loaded);
    for op in &info.ops {
        let domain = if op.domain.is_empty() { String::new() } else { format!("{}::", op.domain) };
        println!("  {:<28} x{:<5} opset {}", format!("{domain}{}", op.op_type), op.count, op.opset);
    }
    println!("parameters: {} ({} bytes)", info.parameter_count, info.parameter_bytes);
    if let Some(n) = info.nodes_to_run {
        println!("nodes to run after folding: {n}");
    }
    if let (Some(peak), Some(unshared)) = (info.planned_peak_bytes, info.unshared_bytes) {
        println!("planned peak memory: {peak} bytes (without reuse: {unshared})");
    }
    if let Some(v) = &info.largest_value {
        println!("largest value: {} {:?} ({} bytes)", v.name, v.shape, v.bytes);
    }
    if !info.unsupported.is_empty() {
        println!("unsupported ({}):", info.unsupported.len());
        for issue in &info.unsupported {
            println!("  {issue}");
        }
    }
    if let Some(e) = &info.build_error {
        println!("build error: {e}");
    }
}
