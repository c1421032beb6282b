//! Sessions: build a model once for fixed input shapes, then run it many times.
//!
//! The CPU backend builds and runs synchronously ([`Session::build`], [`Session::run`]); the GPU
//! backend builds with [`Session::build_async`] (or [`Session::build_on`] with a shared context).
//! [`Session::run_async`] runs either, so callers can be written once for both. GPU sessions also
//! run on device tensors ([`Session::run_device`]) so a loop can keep its latents on the device.

use crate::cpu::executor::{execute, RunError};
use crate::gpu::{GpuContext, GpuError, GpuOptions, GpuTensor};
use crate::gpu_backend::{GpuSession, GpuSessionError};
use crate::graph::phases::{build, parse, BuildOptions, BuiltGraph};
use crate::graph::{BuildError, DeclaredType, Dim, Graph, NodeIssue};
use crate::onnx::{load_model, load_model_with, ExternalData, LoadError};
use crate::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot read '{path}': {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("input '{name}' {problem}")]
    Input { name: String, problem: String },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("{0}")]
    Backend(String),
    #[error(transparent)]
    Gpu(#[from] GpuSessionError),
}

/// Where the model comes from. A path lets external data files beside the model be found.
#[derive(Clone, Copy, Debug)]
pub enum ModelSource<'a> {
    Bytes(&'a [u8]),
    Path(&'a Path),
    /// A model held in memory with the external data files it names, by relative path (what a
    /// browser fetched).
    Memory {
        model: &'a [u8],
        files: &'a BTreeMap<String, Vec<u8>>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Cpu,
    Gpu,
}

#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub backend: Backend,
    pub build: BuildOptions,
    /// Adapter and kernel options of the GPU backend (ignored by the CPU backend).
    pub gpu: GpuOptions,
}

/// An input or output as the session sees it.
#[derive(Clone, Debug, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Option<DType>,
    /// As the model declares it (dims may be symbolic).
    pub declared_shape: Option<Vec<Dim>>,
    /// As built, when shapes are known.
    pub shape: Option<Vec<usize>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpCount {
    pub op_type: String,
    pub domain: String,
    pub opset: u32,
    pub count: usize,
}

/// One value of a built graph and its size.
#[derive(Clone, Debug, Serialize)]
pub struct ValueSize {
    pub name: String,
    pub shape: Vec<usize>,
    pub bytes: usize,
}

/// What `fifo onnx inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
    pub opsets: BTreeMap<String, u32>,
    /// Op types of the loaded model, before folding.
    pub ops: Vec<OpCount>,
    pub nodes_loaded: usize,
    /// Nodes left to run after folding and dead-node removal (when the build succeeded).
    pub nodes_to_run: Option<usize>,
    pub unsupported: Vec<NodeIssue>,
    pub parameter_count: usize,
    pub parameter_bytes: usize,
    pub planned_peak_bytes: Option<usize>,
    pub unshared_bytes: Option<usize>,
    /// The largest value the memory plan holds (after fusion: a fused attention's scores are
    /// not one), when the build succeeded.
    pub largest_value: Option<ValueSize>,
    /// Why the build failed, if it did for another reason than unsupported ops.
    pub build_error: Option<String>,
}

pub struct Session {
    built: BuiltGraph,
    info: ModelInfo,
    gpu: Option<GpuSession>,
}

impl From<GpuError> for SessionError {
    fn from(e: GpuError) -> SessionError {
        SessionError::Gpu(GpuSessionError::Gpu(e))
    }
}

fn read_model(source: ModelSource) -> Result<Graph, SessionError> {
    match source {
        ModelSource::Bytes(b) => Ok(load_model(b, None)?),
        ModelSource::Memory { model, files } => Ok(load_model_with(model, ExternalData::Files(files))?),
        ModelSource::Path(p) => {
            let bytes = std::fs::read(p)
                .map_err(|source| SessionError::Io { path: p.display().to_string(), source })?;
            Ok(load_model(&bytes, p.parent())?)
        }
    }
}

fn tensor_info(graph: &Graph, ids: &[usize]) -> Vec<TensorInfo> {
    ids.iter()
        .map(|&v| {
            let value = &graph.values[v];
            let DeclaredType { dtype, dims } = value.declared.clone();
            TensorInfo {
                name: value.name.clone(),
                dtype: value.ty.as_ref().map(|t| t.dtype).or(dtype),
                declared_shape: dims,
                shape: value.ty.as_ref().map(|t| t.shape.clone()),
            }
        })
        .collect()
}

fn describe(loaded: &Graph) -> ModelInfo {
    let mut counts: BTreeMap<(String, String, u32), usize> = BTreeMap::new();
    for n in &loaded.nodes {
        *counts.entry((n.op_type.clone(), n.domain.clone(), n.opset)).or_default() += 1;
    }
    ModelInfo {
        inputs: tensor_info(loaded, &loaded.inputs),
        outputs: tensor_info(loaded, &loaded.outputs),
        opsets: loaded.opsets.clone(),
        ops: counts
            .into_iter()
            .map(|((op_type, domain, opset), count)| OpCount { op_type, domain, opset, count })
            .collect(),
        nodes_loaded: loaded.nodes.len(),
        nodes_to_run: None,
        unsupported: parse::issues(loaded),
        parameter_count: loaded.parameter_count(),
        parameter_bytes: loaded.parameter_bytes(),
        planned_peak_bytes: None,
        unshared_bytes: None,
        largest_value: None,
        build_error: None,
    }
}

impl ModelInfo {
    /// Adds what only a successful build knows: static shapes, nodes left, the memory plan.
    fn record_build(&mut self, built: &BuiltGraph) {
        self.inputs = tensor_info(&built.graph, &built.graph.inputs);
        self.outputs = tensor_info(&built.graph, &built.graph.outputs);
        self.nodes_to_run = Some(built.graph.nodes.len());
        self.planned_peak_bytes = Some(built.plan.peak_bytes);
        self.unshared_bytes = Some(built.plan.unshared_bytes);
        let g = &built.graph;
        self.largest_value = (0..g.values.len())
            .filter(|&v| built.plan.offsets[v].is_some())
            .filter_map(|v| g.values[v].ty.as_ref().map(|t| (v, t.size_bytes(), t.shape.clone())))
            .max_by_key(|(_, bytes, _)| *bytes)
            .map(|(v, bytes, shape)| ValueSize { name: g.values[v].name.clone(), shape, bytes });
    }
}

impl Session {
    /// Loads and builds a model for the given input shapes (inputs whose declared shape is fully
    /// static may be left out).
    pub fn build(
        model: ModelSource,
        input_shapes: &HashMap<String, Vec<usize>>,
        options: &SessionOptions,
    ) -> Result<Session, SessionError> {
        if options.backend != Backend::Cpu {
            return Err(SessionError::Backend(
                "the gpu backend builds asynchronously: use Session::build_async (or build_on)".into(),
            ));
        }
        let (built, info) = Self::build_graph(model, input_shapes, &options.build)?;
        Ok(Session { built, info, gpu: None })
    }

    fn build_graph(
        model: ModelSource,
        input_shapes: &HashMap<String, Vec<usize>>,
        options: &BuildOptions,
    ) -> Result<(BuiltGraph, ModelInfo), SessionError> {
        let loaded = read_model(model)?;
        let mut info = describe(&loaded);
        let built = build(loaded, input_shapes, options)?;
        info.record_build(&built);
        Ok((built, info))
    }

    /// Builds for either backend; for the GPU one, opens the adapter `options.gpu` names.
    /// The same async call natively (block on it with pollster) and on wasm32.
    pub async fn build_async(
        model: ModelSource<'_>,
        input_shapes: &HashMap<String, Vec<usize>>,
        options: &SessionOptions,
    ) -> Result<Session, SessionError> {
        match options.backend {
            Backend::Cpu => Session::build(model, input_shapes, options),
            Backend::Gpu => {
                let ctx = Arc::new(GpuContext::new(&options.gpu).await?);
                Session::build_on(ctx, model, input_shapes, options).await
            }
        }
    }

    /// Builds for the GPU backend on an open device (several sessions may share one).
    pub async fn build_on(
        ctx: Arc<GpuContext>,
        model: ModelSource<'_>,
        input_shapes: &HashMap<String, Vec<usize>>,
        options: &SessionOptions,
    ) -> Result<Session, SessionError> {
        let (built, info) = Self::build_graph(model, input_shapes, &options.build)?;
        let low_precision_weights =
            crate::gpu_backend::precision::low_precision_weights(info.parameter_count, info.parameter_bytes);
        let gpu = GpuSession::build(ctx, &built, options.gpu.precision, low_precision_weights).await?;
        Ok(Session { built, info, gpu: Some(gpu) })
    }

    pub fn backend(&self) -> Backend {
        if self.gpu.is_some() {
            Backend::Gpu
        } else {
            Backend::Cpu
        }
    }

    /// The compiled GPU program, for a GPU session.
    pub fn gpu(&self) -> Option<&GpuSession> {
        self.gpu.as_ref()
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The built graph, for backends and tools that lower it further.
    pub fn graph(&self) -> &BuiltGraph {
        &self.built
    }

    /// Runs the model; returns `(name, tensor)` per graph output, in the model's order.
    pub fn run(&self, inputs: HashMap<String, Tensor>) -> Result<Vec<(String, Tensor)>, SessionError> {
        if self.gpu.is_some() {
            return Err(SessionError::Backend("a gpu session runs asynchronously: use run_async".into()));
        }
        let ordered = self.order_inputs(inputs)?;
        let outputs = execute(&self.built, ordered)?;
        Ok(self.name_outputs(outputs))
    }

    fn name_outputs<T>(&self, outputs: Vec<T>) -> Vec<(String, T)> {
        let graph = &self.built.graph;
        graph.outputs.iter().map(|&o| graph.values[o].name.clone()).zip(outputs).collect()
    }

    /// The inputs in graph order, checked against the built types.
    fn order_inputs(&self, mut inputs: HashMap<String, Tensor>) -> Result<Vec<Tensor>, SessionError> {
        let graph = &self.built.graph;
        let mut ordered = Vec::with_capacity(graph.inputs.len());
        for &id in &graph.inputs {
            let value = &graph.values[id];
            let fail = |problem: String| SessionError::Input { name: value.name.clone(), problem };
            let tensor = inputs.remove(&value.name).ok_or_else(|| fail("is missing".into()))?;
            let ty = value.ty.as_ref().ok_or_else(|| fail("has no type".into()))?;
            if tensor.dtype() != ty.dtype || tensor.shape() != ty.shape {
                return Err(fail(format!(
                    "is {} {:?}; the session was built for {} {:?}",
                    tensor.dtype(),
                    tensor.shape(),
                    ty.dtype,
                    ty.shape
                )));
            }
            ordered.push(tensor);
        }
        if let Some(name) = inputs.keys().next() {
            return Err(SessionError::Input {
                name: name.clone(),
                problem: "is not an input of the model".into(),
            });
        }
        Ok(ordered)
    }

    /// Runs on either backend; `(name, tensor)` per graph output, in the model's order.
    pub async fn run_async(
        &self,
        inputs: HashMap<String, Tensor>,
    ) -> Result<Vec<(String, Tensor)>, SessionError> {
        match &self.gpu {
            None => self.run(inputs),
            Some(gpu) => {
                let ordered = self.order_inputs(inputs)?;
                let outputs = gpu.run(&ordered).await?;
                Ok(self.name_outputs(outputs))
            }
        }
    }

    fn gpu_or_err(&self) -> Result<&GpuSession, SessionError> {
        self.gpu.as_ref().ok_or_else(|| {
            SessionError::Backend("this is a cpu session; device tensors need the gpu backend".into())
        })
    }

    /// Uploads a host tensor for input `name` in its device form (f32 for floats and booleans,
    /// i32 for integers), checked against the built type.
    pub fn upload(&self, name: &str, tensor: &Tensor) -> Result<GpuTensor, SessionError> {
        let gpu = self.gpu_or_err()?;
        let slot = gpu.inputs().iter().find(|i| i.name == name).ok_or_else(|| SessionError::Input {
            name: name.into(),
            problem: "is not an input of the model".into(),
        })?;
        if tensor.dtype() != slot.dtype || tensor.shape() != slot.shape {
            return Err(SessionError::Input {
                name: name.into(),
                problem: format!(
                    "is {} {:?}; the session was built for {} {:?}",
                    tensor.dtype(),
                    tensor.shape(),
                    slot.dtype,
                    slot.shape
                ),
            });
        }
        Ok(gpu.upload(name, tensor)?)
    }

    /// Reads back a device tensor that [`Session::run_device`] returned for output `name`.
    pub async fn download(&self, name: &str, tensor: &GpuTensor) -> Result<Tensor, SessionError> {
        let gpu = self.gpu_or_err()?;
        let slot = gpu.outputs().iter().find(|o| o.name == name).ok_or_else(|| SessionError::Input {
            name: name.into(),
            problem: "is not an output of the model".into(),
        })?;
        Ok(gpu.download(tensor, slot.dtype, &slot.shape).await?)
    }

    /// Runs a GPU session on device tensors (by input name), returning new device tensors per
    /// output without reading anything back.
    pub async fn run_device(
        &self,
        mut inputs: HashMap<String, GpuTensor>,
    ) -> Result<Vec<(String, GpuTensor)>, SessionError> {
        let gpu = self.gpu_or_err()?;
        let mut ordered = Vec::with_capacity(gpu.inputs().len());
        for slot in gpu.inputs() {
            ordered.push(inputs.remove(&slot.name).ok_or_else(|| SessionError::Input {
                name: slot.name.clone(),
                problem: "is missing".into(),
            })?);
        }
        if let Some(name) = inputs.keys().next() {
            return Err(SessionError::Input {
                name: name.clone(),
                problem: "is not an input of the model".into(),
            });
        }
        let outputs = gpu.run_device(&ordered).await?;
        Ok(self.name_outputs(outputs))
    }
}

/// Describes a model without failing on unsupported ops (for `fifo onnx inspect`): what loads,
/// what is unsupported and, when the build succeeds, the planned memory.
pub fn inspect(
    model: ModelSource,
    input_shapes: &HashMap<String, Vec<usize>>,
    options: &SessionOptions,
) -> Result<ModelInfo, SessionError> {
    let loaded = read_model(model)?;
    let mut info = describe(&loaded);
    if !info.unsupported.is_empty() {
        return Ok(info);
    }
    match build(loaded, input_shapes, &options.build) {
        Ok(built) => info.record_build(&built),
        Err(e) => info.build_error = Some(e.to_string()),
    }
    Ok(info)
}
