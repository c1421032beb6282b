//! The `fifo` command.

mod npy;
mod onnx_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fifo",
    version,
    about = "FIFO-Diffusion: endless text-to-video on WebGPU and the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect or run ONNX models with the project's executor.
    #[command(subcommand)]
    Onnx(onnx_cmd::OnnxCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Onnx(cmd) => onnx_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
