//! `fifo devices`: the GPU adapters this machine offers, with the indices `--devices` takes.

use anyhow::Result;
use clap::Args;
use fifo_diffusion::gpu::{AdapterSummary, GpuContext};

#[derive(Args)]
pub struct DevicesArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn to_json(a: &AdapterSummary) -> serde_json::Value {
    serde_json::json!({
        "index": a.index,
        "name": a.name,
        "backend": a.backend,
        "device_type": a.device_type,
        "driver": a.driver,
        "shader_f16": a.shader_f16,
        "subgroups": a.subgroups,
        "features": a.features,
        "limits": {
            "max_storage_buffer_binding_size": a.max_storage_binding,
            "max_buffer_size": a.max_buffer,
            "max_storage_buffers_per_shader_stage": a.max_storage_buffers_per_stage,
            "max_compute_workgroup_storage_size": a.max_workgroup_storage,
            "max_compute_invocations_per_workgroup": a.max_invocations_per_workgroup,
            "max_compute_workgroups_per_dimension": a.max_workgroups_per_dimension,
        },
    })
}

pub fn run(args: &DevicesArgs) -> Result<()> {
    let adapters = pollster::block_on(GpuContext::adapters());
    if args.json {
        let list: Vec<_> = adapters.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if adapters.is_empty() {
        println!(
            "no GPU adapter found; on Linux without a GPU install Mesa lavapipe \
             (apt-get install -y mesa-vulkan-drivers libvulkan1), or use --backend cpu"
        );
        return Ok(());
    }
    for a in &adapters {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        println!("[{}] {} ({}, {})", a.index, a.name, a.backend, a.device_type);
        if !a.driver.is_empty() {
            println!("    driver: {}", a.driver);
        }
        println!(
            "    max storage binding {:.0} MiB, max buffer {:.0} MiB, {} storage buffers per stage, \
             {} B workgroup memory, {} invocations per workgroup",
            mib(a.max_storage_binding),
            mib(a.max_buffer),
            a.max_storage_buffers_per_stage,
            a.max_workgroup_storage,
            a.max_invocations_per_workgroup
        );
        let features = if a.features.is_empty() { "none of note".to_string() } else { a.features.join(", ") };
        println!("    features: {features}");
    }
    Ok(())
}
