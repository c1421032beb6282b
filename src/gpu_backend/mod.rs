//! The WebGPU backend of a session: a built graph lowered once onto `gpu::ops` kernels.
//!
//! Build: every runtime value gets a buffer from the liveness plan (`gpu::memory::plan_reuse`,
//! `FIFO_GPU_NO_REUSE=1` or `FIFO_NO_BUFFER_REUSE=1` turn reuse off), constants are uploaded
//! once, every node is recorded into one `Program` (pipelines and bind groups made once).
//! Run: write the inputs, one command buffer with the whole graph, one submission; read back
//! only the outputs, or keep them on the device ([`GpuSession::run_device`]).

pub mod lower;
pub mod precision;
mod profile;
pub mod stored_weights;

use std::sync::Arc;

use crate::gpu::memory::{plan_reuse, BufferPool, Lifetime};
use crate::gpu::{DType as GDType, GpuContext, GpuError, GpuTensor, Precision, Program};
use crate::graph::phases::BuiltGraph;
use crate::graph::{ValueId, ValueKind};
use crate::ops::layout::transpose;
use crate::ops::Op;
use crate::tensor::{DType, Tensor, TensorData};
pub use lower::{device_dtype, LowerError, SUPPORTED};

/// Errors of the GPU backend.
#[derive(Debug, thiserror::Error)]
pub enum GpuSessionError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Lower(#[from] LowerError),
    #[error("input '{name}' {problem}")]
    Input { name: String, problem: String },
}

/// A graph value as the device holds it.
#[derive(Clone, Debug)]
pub struct DeviceValue {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub tensor: GpuTensor,
}

/// A graph compiled for one device.
pub struct GpuSession {
    ctx: Arc<GpuContext>,
    program: Program,
    inputs: Vec<DeviceValue>,
    outputs: Vec<DeviceValue>,
    /// Bytes of the pooled buffers (runtime values) and how many buffers.
    pub pool_bytes: u64,
    pub pool_buffers: usize,
    /// Bytes of the buffers filled once at build: the model's weights in their device format
    /// (int8 / f16 weights stay int8 / f16, see [`stored_weights`]), biases, scales, index tables.
    pub constant_bytes: u64,
    /// Weights the kernels read as int8 and as f16 (see [`stored_weights`]).
    pub int8_weights: usize,
    pub f16_weights: usize,
    /// The precision of the float activations (`F32` or `F16`), see [`precision`].
    precision: Precision,
    /// With `FIFO_GPU_PROFILE=1`: one program per node, run one by one and timed (native only).
    profile: Vec<(String, Program)>,
}

/// Whether reshapes share their input's buffer (`FIFO_GPU_NO_ALIAS=1` copies instead).
fn alias_enabled() -> bool {
    cfg!(target_arch = "wasm32") || std::env::var("FIFO_GPU_NO_ALIAS").map_or(true, |v| v != "1")
}

fn profile_enabled() -> bool {
    cfg!(not(target_arch = "wasm32")) && std::env::var("FIFO_GPU_PROFILE").is_ok_and(|v| v == "1")
}

/// Whether buffer reuse is on (`FIFO_GPU_NO_REUSE=1` or `FIFO_NO_BUFFER_REUSE=1` turn it off).
pub fn reuse_enabled() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var("FIFO_GPU_NO_REUSE").is_ok_and(|v| v == "1") {
        return false;
    }
    crate::gpu::memory::reuse_enabled()
}

impl GpuSession {
    /// Lowers `built` onto `ctx` and compiles it. Fails with the first node that cannot run.
    /// `requested` is resolved by [`precision::resolve`]; `low_precision_weights` says whether the
    /// model stores its parameters as int8 / f16 (what `Precision::Auto` follows).
    pub async fn build(
        ctx: Arc<GpuContext>,
        built: &BuiltGraph,
        requested: Precision,
        low_precision_weights: bool,
    ) -> Result<GpuSession, GpuSessionError> {
        let graph = &built.graph;
        let precision = precision::resolve(requested, low_precision_weights, &ctx)?;
        let types = precision::ValueTypes::new(graph, precision);
        let steps = graph.nodes.len();
        // First step of each runtime value (graph inputs: 0; intermediates: their producer).
        let mut first: Vec<Option<usize>> = vec![None; graph.values.len()];
        for &i in &graph.inputs {
            first[i] = Some(0);
        }
        for (step, node) in graph.nodes.iter().enumerate() {
            for &v in node.outputs.iter().flatten() {
                first[v].get_or_insert(step);
            }
        }
        // Reshape-like nodes on run-time values move no data: their output shares the input's
        // buffer (`root`), and the shared buffer lives as long as any of its values.
        let mut root: Vec<ValueId> = (0..graph.values.len()).collect();
        let runtime = |v: ValueId| graph.values[v].constant.is_none() && first[v].is_some();
        for node in &graph.nodes {
            let (Some(Some(x)), Some(Some(y))) = (node.inputs.first(), node.outputs.first()) else {
                continue;
            };
            let reshape = match &node.op {
                Some(
                    Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Identity(_),
                ) => true,
                // Moving only size-1 dims (a single attention head) keeps the elements in order.
                Some(Op::Transpose(t)) => {
                    let shape = graph.values[*x].ty.as_ref().map_or(&[][..], |t| &t.shape[..]);
                    transpose::resolved_perm(t, shape.len())
                        .is_ok_and(|p| transpose::moves_no_data(shape, &p))
                }
                _ => false,
            };
            let same_type = types.of(graph, *x) == types.of(graph, *y);
            if reshape
                && node.outputs.len() == 1
                && runtime(*x)
                && runtime(*y)
                && same_type
                && alias_enabled()
            {
                root[*y] = root[*x];
            }
        }
        let mut ids: Vec<ValueId> = Vec::new();
        let mut group_of: Vec<Option<usize>> = vec![None; graph.values.len()];
        let mut lifetimes: Vec<Lifetime> = Vec::new();
        // Weights the kernels read as int8 / f16 never exist as f32 values on the device.
        let stored = stored_weights::stored_weights(graph);
        let limit = ctx.max_binding_bytes();
        for (v, value) in graph.values.iter().enumerate() {
            if value.constant.is_some() || value.kind == ValueKind::Initializer || stored.contains_key(&v) {
                continue;
            }
            let (Some(start), Some(ty)) = (first[v], value.ty.as_ref()) else { continue };
            let len: usize = ty.shape.iter().product();
            let last = built.plan.last_use.get(v).copied().flatten().unwrap_or(start).max(start);
            let last = if graph.outputs.contains(&v) { steps + 1 } else { last };
            let bytes = types.of(graph, v).storage_bytes(len);
            // Name the value (not the pool slot it would share) when it cannot be bound.
            if bytes > limit {
                let row_bytes = ty.shape.iter().skip(1).product::<usize>() as u64 * 4;
                if !ty.shape.is_empty() && row_bytes <= limit && lower::table_only(graph, v) {
                    continue; // a dequantized or cast table: evaluated at build, bound in chunks
                }
                return Err(GpuError::TooLarge { name: value.name.clone(), bytes, limit }.into());
            }
            let r = root[v];
            match group_of[r] {
                Some(g) => {
                    let l = &mut lifetimes[g];
                    (l.first, l.last, l.bytes) = (l.first.min(start), l.last.max(last), l.bytes.max(bytes));
                    group_of[v] = Some(g);
                }
                None => {
                    group_of[r] = Some(lifetimes.len());
                    group_of[v] = Some(lifetimes.len());
                    lifetimes.push(Lifetime { bytes, first: start, last });
                }
            }
            ids.push(v);
        }
        let plan = plan_reuse(&lifetimes, reuse_enabled());
        let pool_bytes = plan.total_bytes();
        let pool_buffers = plan.slot_bytes.len();
        let pool = BufferPool::new(&ctx, plan)?;
        let mut dev: Vec<Option<GpuTensor>> = vec![None; graph.values.len()];
        for &v in &ids {
            let ty = graph.values[v].ty.as_ref().expect("filtered above");
            let len = ty.shape.iter().product();
            let g = group_of[v].expect("assigned above");
            dev[v] = Some(pool.tensor(g, &graph.values[v].name, types.of(graph, v), len)?);
        }
        let count = |int8: bool| {
            stored.values().filter(|w| matches!(w, stored_weights::StoredWeight::Int8 { .. }) == int8).count()
        };
        let (int8_weights, f16_weights) = (count(true), count(false));
        let mut lowering = lower::Lowering::new(graph, &ctx, dev, stored, types);
        // Inputs and outputs keep their API form (f32 for floats); values held in f16 are cast
        // at the boundary: inputs first thing in the program, outputs last.
        let mut boundary: std::collections::HashMap<ValueId, GpuTensor> = Default::default();
        for &v in &graph.inputs {
            if let Some(inner) = lowering.dev[v].clone().filter(|t| t.dtype() == GDType::F16) {
                let api = GpuTensor::new(&ctx, &graph.values[v].name, GDType::F32, inner.len())?;
                crate::gpu::ops::cast::cast(&mut lowering.b, &api, &inner)?;
                boundary.insert(v, api);
            }
        }
        let mut parts = lowering.lower_all(profile_enabled())?;
        for &v in &graph.outputs {
            if let Some(inner) = lowering.dev[v].clone().filter(|t| t.dtype() == GDType::F16) {
                let api = match boundary.get(&v) {
                    Some(t) => t.clone(), // an input passed straight through: already f32
                    None => {
                        let api = GpuTensor::new(&ctx, &graph.values[v].name, GDType::F32, inner.len())?;
                        crate::gpu::ops::cast::cast(&mut lowering.b, &inner, &api)?;
                        api
                    }
                };
                boundary.insert(v, api);
            }
        }
        if profile_enabled() {
            let fresh = crate::gpu::ProgramBuilder::new(&ctx);
            parts.push(("Cast(outputs)".into(), std::mem::replace(&mut lowering.b, fresh)));
        }
        let mut profile = Vec::with_capacity(parts.len());
        for (op, part) in parts {
            profile.push((op, part.build().await?));
        }
        let describe = |v: ValueId, lowering: &mut lower::Lowering| -> Result<DeviceValue, GpuSessionError> {
            let value = &graph.values[v];
            let ty = value.ty.clone().ok_or_else(|| GpuSessionError::Input {
                name: value.name.clone(),
                problem: "has no static type".into(),
            })?;
            let tensor = match (boundary.get(&v).or(lowering.dev[v].as_ref()), &value.constant) {
                (Some(t), _) => t.clone(),
                (None, Some(c)) => lower::upload(&ctx, &value.name, c)?,
                (None, None) => {
                    return Err(GpuSessionError::Input {
                        name: value.name.clone(),
                        problem: "is never computed".into(),
                    })
                }
            };
            Ok(DeviceValue { name: value.name.clone(), dtype: ty.dtype, shape: ty.shape, tensor })
        };
        let inputs =
            graph.inputs.iter().map(|&v| describe(v, &mut lowering)).collect::<Result<Vec<_>, _>>()?;
        let outputs =
            graph.outputs.iter().map(|&v| describe(v, &mut lowering)).collect::<Result<Vec<_>, _>>()?;
        let constant_bytes = lowering.constant_bytes;
        let program = lowering.b.build().await?;
        Ok(GpuSession {
            ctx,
            program,
            inputs,
            outputs,
            pool_bytes,
            pool_buffers,
            constant_bytes,
            int8_weights,
            f16_weights,
            precision,
            profile,
        })
    }

    /// The precision the float activations run in: `F32` or `F16` (never `Auto`).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
    pub fn inputs(&self) -> &[DeviceValue] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[DeviceValue] {
        &self.outputs
    }
    /// Records the whole graph into `encoder` (one compute pass) for a caller that submits it
    /// together with its own work; inputs and outputs stay in [`Self::inputs`]/[`Self::outputs`].
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        self.program.encode(encoder);
    }

    /// Kernel launches per run (with `FIFO_GPU_PROFILE=1`, those of the per-node programs).
    pub fn dispatches(&self) -> usize {
        self.program.len() + self.profile.iter().map(|(_, p)| p.len()).sum::<usize>()
    }
    /// Pipeline keys of the dispatches, in order.
    pub fn kernel_keys(&self) -> Vec<&str> {
        self.program.keys()
    }

    /// A host tensor in its device form (f32 for floats and booleans, i32 for integers).
    pub fn upload(&self, name: &str, tensor: &Tensor) -> Result<GpuTensor, GpuError> {
        lower::upload(&self.ctx, name, tensor)
    }

    /// Reads a device tensor back as a host tensor of `dtype` and `shape`.
    pub async fn download(
        &self,
        tensor: &GpuTensor,
        dtype: DType,
        shape: &[usize],
    ) -> Result<Tensor, GpuError> {
        download(&self.ctx, tensor, dtype, shape).await
    }

    fn check_input(&self, index: usize, dtype: DType, shape: &[usize]) -> Result<(), GpuSessionError> {
        let slot = &self.inputs[index];
        if dtype != slot.dtype || shape != slot.shape {
            return Err(GpuSessionError::Input {
                name: slot.name.clone(),
                problem: format!(
                    "is {} {:?}; the session was built for {} {:?}",
                    dtype, shape, slot.dtype, slot.shape
                ),
            });
        }
        Ok(())
    }

    /// Host tensors in (graph input order), host tensors out (graph output order).
    pub async fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, GpuSessionError> {
        if inputs.len() != self.inputs.len() {
            return Err(GpuSessionError::Input {
                name: "(all)".into(),
                problem: format!("{} given, the model has {}", inputs.len(), self.inputs.len()),
            });
        }
        for (i, t) in inputs.iter().enumerate() {
            self.check_input(i, t.dtype(), t.shape())?;
            write(&self.ctx, &self.inputs[i], t)?;
        }
        if self.profile.is_empty() {
            self.program.run(&self.ctx).await?;
        } else {
            self.run_profiled().await?;
        }
        let mut out = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            out.push(download(&self.ctx, &o.tensor, o.dtype, &o.shape).await?);
        }
        Ok(out)
    }

    /// Runs node by node and prints the time per op type to stderr (see [`profile`]).
    async fn run_profiled(&self) -> Result<(), GpuError> {
        profile::run(&self.ctx, &self.profile).await
    }

    /// Device tensors in, device tensors out, nothing read back: the inputs are copied into the
    /// program's input buffers, the graph runs, the outputs are copied into new tensors, all in
    /// one command buffer. Inputs are in graph input order, in their device form (see `upload`).
    pub async fn run_device(&self, inputs: &[GpuTensor]) -> Result<Vec<GpuTensor>, GpuSessionError> {
        if inputs.len() != self.inputs.len() {
            return Err(GpuSessionError::Input {
                name: "(all)".into(),
                problem: format!("{} given, the model has {}", inputs.len(), self.inputs.len()),
            });
        }
        for (t, slot) in inputs.iter().zip(&self.inputs) {
            if t.dtype() != slot.tensor.dtype() || t.len() != slot.tensor.len() {
                return Err(GpuSessionError::Input {
                    name: slot.name.clone(),
                    problem: format!(
                        "is a device tensor of {} x {}; expected {} x {} (shape {:?})",
                        t.len(),
                        t.dtype().name(),
                        slot.tensor.len(),
                        slot.tensor.dtype().name(),
                        slot.shape
                    ),
                });
            }
        }
        let outputs = self
            .outputs
            .iter()
            .map(|o| GpuTensor::new(&self.ctx, &o.name, o.tensor.dtype(), o.tensor.len()))
            .collect::<Result<Vec<_>, _>>()?;
        self.ctx.check_fault()?;
        let ctx = &self.ctx;
        ctx.scoped("running a GPU session", || {
            let mut encoder =
                ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("session") });
            for (t, slot) in inputs.iter().zip(&self.inputs) {
                let bytes = t.dtype().storage_bytes(t.len());
                encoder.copy_buffer_to_buffer(t.buffer(), 0, slot.tensor.buffer(), 0, bytes);
            }
            self.program.encode(&mut encoder);
            for (t, slot) in outputs.iter().zip(&self.outputs) {
                let bytes = t.dtype().storage_bytes(t.len());
                encoder.copy_buffer_to_buffer(slot.tensor.buffer(), 0, t.buffer(), 0, bytes);
            }
            ctx.submit(encoder.finish());
        })
        .await?;
        Ok(outputs)
    }
}

fn write(ctx: &GpuContext, slot: &DeviceValue, t: &Tensor) -> Result<(), GpuError> {
    match slot.tensor.dtype() {
        crate::gpu::DType::I32 => {
            let mut data = Vec::with_capacity(t.len());
            for v in t.to_i64_vec() {
                data.push(i32::try_from(v).map_err(|_| GpuError::Unsupported {
                    op: "upload",
                    message: format!("input '{}' holds {v}, which does not fit 32 bits", slot.name),
                })?);
            }
            ctx.write_buffer(slot.tensor.buffer(), 0, &pad_words(bytemuck::cast_slice(&data)));
            Ok(())
        }
        _ => slot.tensor.write_f32(ctx, &t.f32s()),
    }
}

fn pad_words(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(v.len().div_ceil(4).max(1) * 4, 0);
    v
}

/// Reads `tensor` (device form) back as a host tensor of `dtype` and `shape`.
pub async fn download(
    ctx: &GpuContext,
    tensor: &GpuTensor,
    dtype: DType,
    shape: &[usize],
) -> Result<Tensor, GpuError> {
    let n: usize = shape.iter().product();
    let bad = |message: String| GpuError::Shape { op: "download", message };
    if tensor.len() < n {
        return Err(bad(format!(
            "'{}' holds {} elements, shape {shape:?} needs {n}",
            tensor.name(),
            tensor.len()
        )));
    }
    let data = match tensor.dtype() {
        crate::gpu::DType::I32 => {
            let v = &ctx.read_i32(tensor).await?[..n];
            TensorData::I64(v.iter().map(|&x| x as i64).collect())
        }
        _ => {
            let mut v = ctx.read_f32(tensor).await?;
            v.truncate(n);
            TensorData::F32(v)
        }
    };
    let t = Tensor::new(shape.to_vec(), data).map_err(|e| bad(e.to_string()))?;
    Ok(if t.dtype() == dtype { t } else { t.cast(dtype) })
}
