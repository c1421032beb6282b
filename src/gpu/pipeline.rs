//! Pipelines and bind group layouts, cached by the variant's readable key.
//!
//! Every kernel binds the same way: binding 0 is its parameter block (a 256-byte window of the
//! program's uniform arena, dynamic offset), then `reads` read-only storage buffers, then
//! `writes` read-write storage buffers. So a layout is fully named by `(reads, writes)`.

use std::collections::HashMap;
use std::sync::Mutex;

use super::error::{GpuError, GpuResult};
use super::shader::ShaderVariant;

/// Bytes of one dispatch's parameter window (a multiple of every adapter's uniform alignment).
pub const UNIFORM_SLOT: u64 = 256;

/// A compiled variant with the defines it was made from (to catch two variants sharing a key)
/// and when it was compiled (see [`PipelineCache::forget_since`]).
struct Compiled {
    defines: Vec<(String, String)>,
    pipeline: wgpu::ComputePipeline,
    serial: u64,
}
type Layouts = (wgpu::BindGroupLayout, wgpu::PipelineLayout);

#[derive(Default)]
struct Pipelines {
    by_key: HashMap<String, Compiled>,
    compiled: u64,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    layouts: Mutex<HashMap<(u32, u32), Layouts>>,
    pipelines: Mutex<Pipelines>,
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl PipelineCache {
    pub(crate) fn layout(&self, device: &wgpu::Device, reads: u32, writes: u32) -> wgpu::BindGroupLayout {
        self.layout_pair(device, reads, writes).0
    }

    fn layout_pair(&self, device: &wgpu::Device, reads: u32, writes: u32) -> Layouts {
        let mut map = self.layouts.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((reads, writes))
            .or_insert_with(|| {
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(UNIFORM_SLOT),
                    },
                    count: None,
                }];
                entries.extend((1..=reads).map(|b| storage(b, true)));
                entries.extend((reads + 1..=reads + writes).map(|b| storage(b, false)));
                let label = format!("layout.r{reads}w{writes}");
                let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(&label),
                    entries: &entries,
                });
                let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(&label),
                    bind_group_layouts: &[Some(&bgl)],
                    immediate_size: 0,
                });
                (bgl, pl)
            })
            .clone()
    }

    /// The pipeline of `variant`, compiled on first use. Callers wrap this in an error scope.
    pub(crate) fn pipeline(
        &self,
        device: &wgpu::Device,
        variant: &ShaderVariant,
        reads: u32,
        writes: u32,
    ) -> GpuResult<wgpu::ComputePipeline> {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(compiled) = cache.by_key.get(&variant.key) {
            if compiled.defines != variant.defines {
                return Err(GpuError::Shader {
                    key: variant.key.clone(),
                    message: "two variants share this key with different defines (a kernel bug)".into(),
                });
            }
            return Ok(compiled.pipeline.clone());
        }
        let source = variant.source()?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&variant.key),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let (_, layout) = self.layout_pair(device, reads, writes);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&variant.key),
            layout: Some(&layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        cache.compiled += 1;
        let compiled =
            Compiled { defines: variant.defines.clone(), pipeline: pipeline.clone(), serial: cache.compiled };
        cache.by_key.insert(variant.key.clone(), compiled);
        Ok(pipeline)
    }

    /// How many pipelines were compiled so far: a mark for [`Self::forget_since`].
    pub(crate) fn mark(&self) -> u64 {
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner()).compiled
    }

    /// Drops the pipelines compiled after `mark`. A shader that fails to compile still gives a
    /// pipeline object (invalid, reported through the error scope); after a failed build its
    /// key must compile again next time, not hand out the invalid one.
    pub(crate) fn forget_since(&self, mark: u64) {
        let mut cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        cache.by_key.retain(|_, c| c.serial <= mark);
    }

    /// Keys compiled so far, sorted (for diagnostics and tests).
    pub(crate) fn keys(&self) -> Vec<String> {
        let cache = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<String> = cache.by_key.keys().cloned().collect();
        keys.sort();
        keys
    }
}
