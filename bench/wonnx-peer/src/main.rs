//! `wonnx-peer MODEL.onnx --input NAME=FILE.npy ... --output-dir DIR [--repeat N]`: runs a graph
//! on wonnx 0.5.1 the way `fifo onnx run --backend gpu` runs it on ours (f32 inputs from .npy,
//! outputs to .npy, one warm-up run then the mean of N), so that tools/bench/wonnx_peer.py can
//! time both on the same adapter and check both against onnxruntime.
//!
//! wonnx opens its own wgpu 0.16 device (honouring WGPU_BACKEND) and takes and returns host
//! vectors, so a run here includes the upload and the read-back, as `fifo onnx run` does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use ndarray::ArrayD;
use ndarray_npy::{read_npy, write_npy};
use wonnx::utils::{InputTensor, OutputTensor};

fn usage() -> ! {
    eprintln!("usage: wonnx-peer MODEL.onnx --input NAME=FILE.npy ... --output-dir DIR [--repeat N]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let mut inputs: Vec<(String, PathBuf)> = Vec::new();
    let mut output_dir = None;
    let mut repeat = 0usize;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--input" => {
                let spec = args.next().unwrap_or_else(|| usage());
                let (name, file) = spec.split_once('=').unwrap_or_else(|| usage());
                inputs.push((name.to_string(), file.into()));
            }
            "--output-dir" => output_dir = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--repeat" => repeat = args.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| usage()),
            _ if model.is_none() => model = Some(PathBuf::from(arg)),
            _ => usage(),
        }
    }
    let (Some(model), Some(output_dir)) = (model, output_dir) else { usage() };
    if let Err(e) = run(&model, &inputs, &output_dir, repeat) {
        eprintln!("wonnx-peer: {e}");
        std::process::exit(1);
    }
}

fn run(
    model: &PathBuf,
    inputs: &[(String, PathBuf)],
    output_dir: &PathBuf,
    repeat: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let data: Vec<(String, Vec<f32>)> = inputs
        .iter()
        .map(|(name, file)| {
            let array: ArrayD<f32> = read_npy(file)?;
            Ok((name.clone(), array.iter().copied().collect()))
        })
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let started = Instant::now();
    let session = pollster::block_on(wonnx::Session::from_path(model))?;
    eprintln!("wonnx: built in {:.2} s", started.elapsed().as_secs_f64());
    let feed = || -> HashMap<String, InputTensor> {
        data.iter().map(|(name, values)| (name.clone(), values.as_slice().into())).collect()
    };
    let outputs = pollster::block_on(session.run(&feed()))?;
    if repeat > 0 {
        let start = Instant::now();
        for _ in 0..repeat {
            pollster::block_on(session.run(&feed()))?;
        }
        let mean = start.elapsed().as_secs_f64() * 1e3 / repeat as f64;
        println!("run: {mean:.2} ms (mean of {repeat} after one warm-up run)");
    }
    std::fs::create_dir_all(output_dir)?;
    for (name, tensor) in outputs {
        let values: Vec<f32> = match tensor {
            OutputTensor::F32(v) => v,
            other => return Err(format!("output {name}: {other:?} is not f32").into()),
        };
        // wonnx returns flat vectors: the script reshapes them against onnxruntime's output.
        let array = ArrayD::from_shape_vec(vec![values.len()], values)?;
        write_npy(output_dir.join(format!("{name}.npy")), &array)?;
    }
    Ok(())
}
