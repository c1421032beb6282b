//! `fifo`: FIFO-Diffusion on the command line.

mod devices;
mod npy;
mod onnx_cmd;
mod plan;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fifo", version, about = "Endless text-to-video with FIFO-Diffusion")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the diagonal-denoising plan: DDIM grid, noise levels, queue slots and windows.
    Plan(plan::PlanArgs),
    /// List the GPU adapters (index for `--device`, backend, type, limits, features).
    Devices(devices::DevicesArgs),
    /// Inspect or run ONNX models with the project's executor.
    #[command(subcommand)]
    Onnx(onnx_cmd::OnnxCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan::run(&args),
        Command::Devices(args) => devices::run(&args).map_err(|e| format!("{e:#}")),
        Command::Onnx(cmd) => onnx_cmd::run(cmd).map_err(|e| format!("{e:#}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
