//! `fifo quantize IN.onnx OUT.onnx --weights int8|f16`.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use fifo_diffusion::onnx::proto::ModelProto;
use fifo_diffusion::onnx::{quantize_weights, save_model, WeightFormat};
use prost::Message;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum WeightsArg {
    /// Symmetric per-output-channel int8 with DequantizeLinear.
    Int8,
    /// float16 with a Cast to float32.
    F16,
}

#[derive(Args)]
pub struct QuantizeArgs {
    /// The float32 model (external data is read from beside it).
    input: PathBuf,
    /// The model to write.
    output: PathBuf,
    #[arg(long, value_enum)]
    weights: WeightsArg,
    /// Keep initializers of 1 KiB and more in OUT.onnx.data (automatic beyond 2 GiB).
    #[arg(long)]
    external_data: bool,
    /// Print the list of converted weights as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut model = ModelProto::decode(bytes.as_slice())
        .with_context(|| format!("{} is not an ONNX model", args.input.display()))?;
    let base_dir =
        args.input.parent().map(|p| if p.as_os_str().is_empty() { std::path::Path::new(".") } else { p });
    let format = match args.weights {
        WeightsArg::Int8 => WeightFormat::Int8,
        WeightsArg::F16 => WeightFormat::F16,
    };
    let report = quantize_weights(&mut model, base_dir, format)?;
    let files = save_model(model, &args.output, args.external_data)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let worst = report.converted.iter().map(|c| c.max_relative_error).fold(0.0f32, f32::max);
    println!(
        "{} weights converted ({} kept f32), initializers {:.2} MB -> {:.2} MB, largest weight error {:.2e} of the weight's max |w|",
        report.converted.len(),
        report.kept.len(),
        report.initializer_bytes_before as f64 / 1e6,
        report.initializer_bytes_after as f64 / 1e6,
        worst
    );
    for (name, why) in &report.kept {
        println!("  kept {name}: {why}");
    }
    for f in files {
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        println!("wrote {f} ({:.2} MB)", size as f64 / 1e6);
    }
    Ok(())
}
