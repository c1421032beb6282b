//! GPU kernel throughput on one adapter: `cargo bench --bench kernels [-- matmul|conv|attention]`.
//!
//! The adapter: `FIFO_BENCH_ADAPTER=<index>` (see `fifo devices`), otherwise the fallback (CPU)
//! adapter, as the tests use; `WGPU_BACKEND=gl` picks the GL backend. On a software adapter the
//! sizes are small on purpose (lavapipe does a few GFLOP/s); on a GPU they are large enough that
//! launch overhead stays out of the figures.

use fifo_diffusion::gpu::bench::{report, run_kernel_benchmarks, BenchSizes};
use fifo_diffusion::gpu::{AdapterChoice, GpuContext, GpuOptions};

fn main() {
    let adapter = match std::env::var("FIFO_BENCH_ADAPTER").ok().and_then(|v| v.parse().ok()) {
        Some(i) => AdapterChoice::Index(i),
        None => AdapterChoice::Fallback,
    };
    let ctx = match pollster::block_on(GpuContext::new(&GpuOptions { adapter, ..Default::default() })) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("no adapter to benchmark: {e}");
            return;
        }
    };
    // `cargo bench` passes `--bench`; the first other argument filters by family.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--")).unwrap_or_default();
    let sizes = BenchSizes { filter, ..BenchSizes::for_adapter(&ctx) };
    match pollster::block_on(run_kernel_benchmarks(&ctx, sizes)) {
        Ok(results) => print!("{}", report(&ctx, &results)),
        Err(e) => eprintln!("benchmark failed: {e}"),
    }
}
