//! `FIFO_GPU_PROFILE=1`: a session built as one program per node, each run timed. With timestamp
//! queries (most native adapters) every node's kernels run in a compute pass of their own between
//! two timestamps, all nodes in one submission: the device's own time per node. Without them each
//! node is one submission, waited for: host time, which on a fast GPU is mostly the submission's
//! overhead, not the kernels.

use crate::gpu::{GpuContext, GpuError, Program};

#[cfg(not(target_arch = "wasm32"))]
/// Timestamps one query set holds (wgpu's limit is 4096 queries): two per node.
const NODES_PER_SET: usize = 2048;

/// The session's nodes as profiled: op type and program.
pub(super) type Nodes = [(String, Program)];

/// Runs every node once and prints the time per op type and the slowest nodes to stderr.
pub(super) async fn run(ctx: &GpuContext, nodes: &Nodes) -> Result<(), GpuError> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let whole = std::time::Instant::now();
        let (ms, how) = match ctx.has_timestamps() {
            true => (
                device_times(ctx, nodes).await?,
                "kernel time on the device (timestamps, a compute pass per node)",
            ),
            false => (
                host_times(ctx, nodes).await?,
                "host time (no timestamp queries: one submission per node, waited for)",
            ),
        };
        report(nodes, &ms, how, whole.elapsed().as_secs_f64() * 1e3);
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (ctx, nodes); // profiling is native only (see `profile_enabled`)
    Ok(())
}

/// Milliseconds per node from timestamps written around each node's compute pass.
#[cfg(not(target_arch = "wasm32"))]
async fn device_times(ctx: &GpuContext, nodes: &Nodes) -> Result<Vec<f64>, GpuError> {
    let device = ctx.device();
    let mut encoder =
        device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("profile") });
    let mut readbacks = Vec::new();
    for chunk in nodes.chunks(NODES_PER_SET) {
        let count = 2 * chunk.len() as u32;
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        for (i, (_, program)) in chunk.iter().enumerate() {
            program.encode_timed(&mut encoder, &queries, 2 * i as u32);
        }
        let bytes = u64::from(count) * 8;
        let resolved = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.resolve_query_set(&queries, 0..count, &resolved, 0);
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
        readbacks.push((queries, resolved, staging));
    }
    ctx.scoped("timing the session's nodes", || ctx.submit(encoder.finish())).await?;
    let tick_ns = f64::from(ctx.queue().get_timestamp_period());
    let mut ms = Vec::with_capacity(nodes.len());
    for (_, _, staging) in &readbacks {
        let bytes = ctx.read_staging(staging, "profile timestamps").await?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        ms.extend(ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * tick_ns * 1e-6));
    }
    Ok(ms)
}

/// Milliseconds per node, each node one submission waited for.
#[cfg(not(target_arch = "wasm32"))]
async fn host_times(ctx: &GpuContext, nodes: &Nodes) -> Result<Vec<f64>, GpuError> {
    let mut ms = Vec::with_capacity(nodes.len());
    for (_, program) in nodes {
        let t = std::time::Instant::now();
        program.run(ctx).await?;
        ctx.wait_idle().await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ms)
}

#[cfg(not(target_arch = "wasm32"))]
fn report(nodes: &Nodes, ms: &[f64], how: &str, wall_ms: f64) {
    let total: f64 = ms.iter().sum();
    eprintln!("gpu profile: {total:.2} ms of {how}; {wall_ms:.1} ms for the whole run");
    let mut by_op: std::collections::BTreeMap<&str, (usize, usize, f64)> = Default::default();
    for ((op, program), &t) in nodes.iter().zip(ms) {
        let e = by_op.entry(op.as_str()).or_default();
        e.0 += 1;
        e.1 += program.len();
        e.2 += t;
    }
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by(|a, b| b.1 .2.total_cmp(&a.1 .2));
    eprintln!("  {:<24} {:>6} {:>10} {:>10} {:>6}", "op", "nodes", "dispatches", "ms", "share");
    for (op, (n, d, t)) in rows {
        eprintln!("  {op:<24} {n:>6} {d:>10} {t:>10.3} {:>5.1}%", 100.0 * t / total.max(1e-12));
    }
    let mut slowest: Vec<usize> = (0..nodes.len()).collect();
    slowest.sort_by(|&a, &b| ms[b].total_cmp(&ms[a]));
    eprintln!("  slowest nodes (ms, op, first kernel):");
    for &i in slowest.iter().take(15) {
        let (op, program) = &nodes[i];
        eprintln!("    {:>9.3}  {op:<22} {}", ms[i], program.keys().first().copied().unwrap_or("-"));
    }
}
