//! `fifo`: FIFO-Diffusion on the command line.

mod devices;
mod eval_cmd;
mod generate;
mod models_cmd;
mod npy;
mod onnx_cmd;
mod plan;
mod quantize_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fifo", version, about = "Endless text-to-video with FIFO-Diffusion")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a video from a prompt (or a prompt schedule) with a model package.
    Generate(Box<generate::GenerateArgs>),
    /// List the model packages `generate` can find: shapes, tokenizer, UNet weights and sizes.
    Models(models_cmd::ModelsArgs),
    /// Show the diagonal-denoising plan: DDIM grid, noise levels, queue slots and windows.
    Plan(plan::PlanArgs),
    /// List the GPU adapters (index for `--device`, backend, type, limits, features).
    Devices(devices::DevicesArgs),
    /// Inspect or run ONNX models with the project's executor.
    #[command(subcommand)]
    Onnx(onnx_cmd::OnnxCommand),
    /// Score a decoded video (.y4m or a folder of PNGs) against its prompts (shapes world).
    Eval(eval_cmd::EvalArgs),
    /// Convert Conv/MatMul/Gemm weights to int8 (per output channel) or f16, as standard ONNX.
    Quantize(quantize_cmd::QuantizeArgs),
}

/// The CPU backend allocates every op's output, and the FIFO loop frees and reallocates the same
/// sizes each call. glibc serves blocks over 32 MiB with mmap and unmaps them on free, so each
/// big output page-faults in again (measured on Wan's block: Add and Mul over its feed-forward
/// hidden ran 2-4x slower). Keeping freed blocks in the heap costs some resident memory between
/// ops (Wan block: 1.22 -> 1.39 GB peak RSS) and nothing else.
fn keep_freed_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() -> std::process::ExitCode {
    // SAFETY: restoring the default SIGPIPE action before any thread starts: a closed pipe
    // (`fifo generate --out - | head -c 100`) then ends the process quietly instead of a panic in
    // print!. Frames already written stay written.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_buffers_in_the_heap();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => generate::run(*args).map_err(|e| format!("{e:#}")),
        Command::Models(args) => models_cmd::run(&args).map_err(|e| format!("{e:#}")),
        Command::Plan(args) => plan::run(&args),
        Command::Devices(args) => devices::run(&args).map_err(|e| format!("{e:#}")),
        Command::Onnx(cmd) => onnx_cmd::run(cmd).map_err(|e| format!("{e:#}")),
        Command::Eval(args) => eval_cmd::run(&args).map_err(|e| format!("{e:#}")),
        Command::Quantize(args) => quantize_cmd::run(&args).map_err(|e| format!("{e:#}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
