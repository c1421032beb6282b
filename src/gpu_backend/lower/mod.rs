//! Lowers each node of a built graph onto `gpu::ops` calls recorded into one `ProgramBuilder`.
//!
//! Device representation of graph values: float tensors (f32, f16) and booleans (0.0 / 1.0) are
//! f32 buffers; integer tensors are i32 buffers (build fails when a constant does not fit); int8
//! and f16 weights of MatMul/Gemm/Conv stay int8 / f16 (see `stored_weights`). A node that cannot
//! run here fails the build with [`LowerError`], naming the node, the op and why.
//!
//! Here: the `Lowering` state, its helpers and the dispatch over ops (with the layout ops that are
//! strided copies inline). Op families in their own files: `linear` (MatMul, Gemm, Einsum),
//! `conv` (Conv, ConvTranspose, pools), `norm` (normalisations, reductions, attention),
//! `elementwise` (unary, binary, Cast, DequantizeLinear) and `layout` (Pad, ScatterND, Resize).

mod conv;
mod elementwise;
mod layout;
mod linear;
mod norm;

use std::collections::HashMap;

use super::precision::ValueTypes;
use super::stored_weights::{f16_values, weight_channel_axis, StoredWeight};
use crate::gpu::ops::conv::{Conv as GConv, ConvTranspose as GConvT, Geometry};
use crate::gpu::ops::elementwise::{self as ew, Binary as GBin, Ternary, Unary as GUn};
use crate::gpu::ops::norm::{Affine, Modulation};
use crate::gpu::ops::pool::PoolKind as GPoolKind;
use crate::gpu::ops::reduce::ReduceOp;
use crate::gpu::ops::resize as gres;
use crate::gpu::ops::{self, Activation};
use crate::gpu::{
    contiguous_strides, DType as GDType, GpuContext, GpuError, GpuTensor, ProgramBuilder, View,
};
use crate::graph::{Graph, Node, ValueId};
use crate::ops::elementwise::binary::BinaryKind;
use crate::ops::elementwise::unary::UnaryKind;
use crate::ops::fused::{attention_streams, AttentionLayout, Fused, OperandSource};
use crate::ops::layout::pad::PadMode;
use crate::ops::layout::resize::{CoordinateMode, NearestMode, ResizeMode};
use crate::ops::layout::scatter_nd::ScatterReduction;
use crate::ops::nn::pool::PoolKind;
use crate::ops::nn::reduce::ReduceKind;
use crate::ops::Op;
use crate::tensor::shape::normalize_axis;
use crate::tensor::{DType, Tensor, TensorData};

/// Op families the GPU backend lowers (listed in build errors).
pub const SUPPORTED: &str = "elementwise unary/binary/variadic (not Mod), Clip, Where, Cast, \
     MatMul, Gemm, Einsum (one or two operands, no repeated labels), Conv, ConvTranspose, \
     MaxPool/AveragePool/global pools, Softmax/LogSoftmax, Reduce{Sum,Mean,Max,Min,L2}, \
     LayerNormalization, GroupNormalization, InstanceNormalization, BatchNormalization, \
     Reshape/Flatten/Squeeze/Unsqueeze/Identity, Transpose, Concat, Split, Slice, Gather, \
     GatherND (constant indices), ScatterND (reduction none, constant indices), Expand, Tile, \
     Pad, Resize (nearest, linear), DequantizeLinear of constants, and the fused forms";

/// A node that cannot run on the GPU backend.
#[derive(Debug, thiserror::Error)]
#[error(
    "node '{node}' ({op_type}) cannot run on the GPU backend: {reason} (the GPU backend runs: {SUPPORTED})"
)]
pub struct LowerError {
    pub node: String,
    pub op_type: String,
    pub reason: String,
}

impl From<GpuError> for Reason {
    fn from(e: GpuError) -> Reason {
        Reason(e.to_string())
    }
}
impl From<crate::ops::OpError> for Reason {
    fn from(e: crate::ops::OpError) -> Reason {
        Reason(e.to_string())
    }
}
impl From<crate::tensor::TensorError> for Reason {
    fn from(e: crate::tensor::TensorError) -> Reason {
        Reason(e.to_string())
    }
}
impl From<String> for Reason {
    fn from(s: String) -> Reason {
        Reason(s)
    }
}
impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        Reason(s.to_string())
    }
}

/// Why one node failed to lower (wrapped into [`LowerError`] with the node's name).
#[derive(Debug)]
pub struct Reason(pub String);

type R<T> = Result<T, Reason>;

/// Device dtype of a graph dtype.
pub fn device_dtype(d: DType) -> GDType {
    match d {
        DType::F32 | DType::F16 | DType::Bool => GDType::F32,
        DType::I8 | DType::U8 | DType::I32 | DType::I64 => GDType::I32,
    }
}

/// Uploads a host tensor in its device representation at the API (f32 for floats and booleans).
pub fn upload(ctx: &GpuContext, name: &str, t: &Tensor) -> Result<GpuTensor, GpuError> {
    upload_as(ctx, name, t, device_dtype(t.dtype()))
}

/// Uploads a host tensor as `dtype` (f16 rounds floats to nearest); integers are always i32.
pub fn upload_as(ctx: &GpuContext, name: &str, t: &Tensor, dtype: GDType) -> Result<GpuTensor, GpuError> {
    match device_dtype(t.dtype()) {
        GDType::I32 => {
            let v = t.to_i64_vec();
            let mut out = Vec::with_capacity(v.len());
            for x in v {
                out.push(i32::try_from(x).map_err(|_| GpuError::Unsupported {
                    op: "upload",
                    message: format!("'{name}' holds {x}, which does not fit the device's 32-bit integers"),
                })?);
            }
            GpuTensor::from_i32(ctx, name, &out)
        }
        _ => GpuTensor::from_f32_as(ctx, name, dtype, &t.f32s()),
    }
}

pub struct Lowering<'a, 'c> {
    pub graph: &'a Graph,
    pub b: ProgramBuilder<'c>,
    /// Device tensor per value: runtime values from the pool, constants uploaded on demand.
    pub dev: Vec<Option<GpuTensor>>,
    uploaded: HashMap<ValueId, GpuTensor>,
    /// Constant tables too large for one binding, uploaded as row chunks (see `table_chunks`).
    chunked: HashMap<ValueId, Chunks>,
    /// Outputs of all-constant nodes (DequantizeLinear or Cast of a table) evaluated at build
    /// that have no device buffer (see [`table_only`]): only split Gathers read them.
    folded: HashMap<ValueId, Tensor>,
    /// Weights read in their stored format (see `stored_weights`), and their device tensors
    /// once uploaded.
    stored: HashMap<ValueId, StoredWeight>,
    stored_tensors: HashMap<(ValueId, Option<Packing>), GpuTensor>,
    /// Bytes of the buffers filled once at build (constants, stored weights, scales, index
    /// tables): what the model's parameters cost on the device.
    pub constant_bytes: u64,
    /// The device type of each value (f16 floats in f16 mode, see `precision`).
    pub types: ValueTypes,
    /// Constants kernels read as f32 parameters (biases, norms' gamma and beta), uploaded once.
    params: HashMap<ValueId, GpuTensor>,
    /// Whether a node or the graph's outputs read each value: a Split writes only the parts
    /// something reads (a fused attention may read the others inside the Split's input).
    read: Vec<bool>,
}

/// A weight operand in its stored format: the tensor and, for int8, one scale per output
/// channel of the reading op.
struct StoredOperand {
    tensor: GpuTensor,
    scales: Option<Vec<f32>>,
}

/// A conv weight re-laid by `pack_weights`: (output channels, groups).
type Packing = (usize, usize);

/// A table's row chunks along axis 0, each with the rows it holds.
type Chunks = Vec<(std::ops::Range<usize>, GpuTensor)>;

/// Whether `v` may stay off the device as a whole: it is computed from constants only (a
/// DequantizeLinear or an unfolded Cast of an embedding table) and read only as the data of
/// axis-0 Gathers, which take it in row chunks. The backend gives such a value no buffer when it
/// is over one binding.
pub fn table_only(graph: &Graph, v: ValueId) -> bool {
    let producer = graph.nodes.iter().find(|n| n.outputs.iter().flatten().any(|&o| o == v));
    let from_constants = producer.is_some_and(|n| {
        let inputs: Vec<ValueId> = n.inputs.iter().flatten().copied().collect();
        !inputs.is_empty() && inputs.iter().all(|&i| graph.values[i].constant.is_some())
    });
    let mut readers = graph.nodes.iter().filter(|n| n.inputs.iter().flatten().any(|&i| i == v)).peekable();
    let gathers_only = readers.peek().is_some()
        && readers.all(|n| {
            let axis0 = match &n.op {
                Some(Op::Gather(g)) => {
                    let rank = graph.values[v].ty.as_ref().map_or(0, |t| t.shape.len());
                    normalize_axis(g.axis, rank).is_ok_and(|a| a == 0)
                }
                _ => false,
            };
            axis0 && n.inputs.iter().skip(1).flatten().all(|&i| i != v)
        });
    from_constants && gathers_only && !graph.outputs.contains(&v)
}

fn unsupported<T>(msg: impl Into<String>) -> R<T> {
    Err(Reason(msg.into()))
}

impl<'a, 'c> Lowering<'a, 'c> {
    pub fn new(
        graph: &'a Graph,
        ctx: &'c GpuContext,
        dev: Vec<Option<GpuTensor>>,
        stored: HashMap<ValueId, StoredWeight>,
        types: ValueTypes,
    ) -> Self {
        Lowering {
            graph,
            b: ProgramBuilder::new(ctx),
            dev,
            uploaded: HashMap::new(),
            chunked: HashMap::new(),
            folded: HashMap::new(),
            stored,
            stored_tensors: HashMap::new(),
            constant_bytes: 0,
            types,
            params: HashMap::new(),
            read: {
                let mut read = vec![false; graph.values.len()];
                for &v in graph.nodes.iter().flat_map(|n| n.inputs.iter().flatten()).chain(&graph.outputs) {
                    read[v] = true;
                }
                read
            },
        }
    }

    /// Counts a buffer filled at build into [`Self::constant_bytes`].
    fn filled_at_build(&mut self, t: GpuTensor) -> GpuTensor {
        self.constant_bytes += t.buffer().size();
        t
    }

    fn ctx(&self) -> &'c GpuContext {
        self.b.context()
    }

    /// Records every node into `self.b`; with `split`, each node into its own builder instead
    /// (returned with its op type, for per-op timing).
    pub fn lower_all(&mut self, split: bool) -> Result<Vec<(String, ProgramBuilder<'c>)>, LowerError> {
        let graph = self.graph;
        let mut parts = Vec::new();
        for node in &graph.nodes {
            self.lower(node).map_err(|Reason(reason)| LowerError {
                node: node.label(graph).to_string(),
                op_type: node.op_type.clone(),
                reason,
            })?;
            if split {
                let fresh = ProgramBuilder::new(self.b.context());
                let part = std::mem::replace(&mut self.b, fresh);
                parts.push((node.op_type.clone(), part));
            }
        }
        Ok(parts)
    }

    fn shape(&self, v: ValueId) -> &'a [usize] {
        self.graph.values[v].ty.as_ref().map_or(&[], |t| &t.shape)
    }
    fn dtype(&self, v: ValueId) -> DType {
        self.graph.values[v].ty.as_ref().map_or(DType::F32, |t| t.dtype)
    }
    fn constant(&self, v: ValueId) -> Option<&'a Tensor> {
        self.graph.values[v].constant.as_deref()
    }

    /// The device tensor of a value (uploading a constant once).
    fn tensor(&mut self, v: ValueId) -> R<GpuTensor> {
        if let Some(t) = &self.dev[v] {
            return Ok(t.clone());
        }
        if let Some(t) = self.uploaded.get(&v) {
            return Ok(t.clone());
        }
        let c = self.constant(v).ok_or_else(|| Reason(format!("value '{}' has no buffer", self.name(v))))?;
        let dtype = self.types.of(self.graph, v);
        let t = upload_as(self.ctx(), &self.graph.values[v].name, c, dtype)?;
        let t = self.filled_at_build(t);
        self.uploaded.insert(v, t.clone());
        Ok(t)
    }

    /// A value kernels read as an f32 parameter (a bias, a norm's gamma or beta): constants are
    /// uploaded as f32 whatever the precision; a run-time value is taken as it is.
    fn param(&mut self, v: ValueId) -> R<GpuTensor> {
        if let Some(t) = self.params.get(&v) {
            return Ok(t.clone());
        }
        let Some(c) = self.constant(v) else { return self.tensor(v) };
        let t = upload_as(self.ctx(), &self.graph.values[v].name, c, GDType::F32)?;
        let t = self.filled_at_build(t);
        self.params.insert(v, t.clone());
        Ok(t)
    }

    /// The device type of value `v`.
    fn vtype(&self, v: ValueId) -> GDType {
        self.types.of(self.graph, v)
    }

    /// `out = src`, element by element; when their element types differ (an f32 value into an
    /// f16 one in f16 mode), through a contiguous copy and a cast.
    pub fn move_view(&mut self, src: &View, out: &View) -> R<()> {
        let (from, to) = (src.tensor.dtype(), out.tensor.dtype());
        let words = |d: GDType| matches!(d, GDType::F32 | GDType::I32);
        if from == to || (words(from) && words(to)) {
            return Ok(ops::copy::copy(&mut self.b, src, out)?);
        }
        let n = src.numel();
        let staged = self.scratch("move.staged", from, n)?;
        ops::copy::copy(&mut self.b, src, &staged.view(&src.shape))?;
        let cast = self.scratch("move.cast", to, n)?;
        ops::cast::cast(&mut self.b, &staged, &cast)?;
        Ok(ops::copy::copy(&mut self.b, &cast.view(&src.shape), out)?)
    }

    /// A constant over one storage binding, as row chunks along axis 0 that each fit one (uploaded
    /// once; the whole table never is). `None` when `v` is not a constant, fits one binding, is
    /// already on the device, or a single row is over the limit (then the whole upload fails with
    /// `TooLarge` naming it).
    fn table_chunks(&mut self, v: ValueId) -> R<Option<Chunks>> {
        if let Some(c) = self.chunked.get(&v) {
            return Ok(Some(c.clone()));
        }
        let Some(c) = self.constant(v).cloned().or_else(|| self.folded.get(&v).cloned()) else {
            return Ok(None);
        };
        if self.dev[v].is_some() || self.uploaded.contains_key(&v) || c.rank() == 0 {
            return Ok(None);
        }
        let dtype = self.vtype(v);
        let limit = self.ctx().max_binding_bytes();
        let (rows, inner) = (c.shape()[0], c.shape()[1..].iter().product::<usize>());
        let row_bytes = dtype.storage_bytes(inner);
        if dtype.storage_bytes(c.len()) <= limit || rows == 0 || row_bytes == 0 || row_bytes > limit {
            return Ok(None);
        }
        let per_chunk = (limit / row_bytes) as usize;
        let name = self.name(v);
        let mut chunks = Vec::with_capacity(rows.div_ceil(per_chunk));
        let floats = if dtype != GDType::I32 { Some(c.f32s()) } else { None };
        let ints = if floats.is_none() { c.to_i64_vec() } else { Vec::new() };
        for lo in (0..rows).step_by(per_chunk) {
            let hi = (lo + per_chunk).min(rows);
            let label = format!("{name}[{lo}..{hi}]");
            let span = lo * inner..hi * inner;
            let t = if let Some(f) = &floats {
                GpuTensor::from_f32_as(self.ctx(), &label, dtype, &f[span])?
            } else {
                let mut out = Vec::with_capacity(span.len());
                for &x in &ints[span] {
                    out.push(i32::try_from(x).map_err(|_| {
                        Reason(format!("'{name}' holds {x}, which does not fit the device's 32-bit integers"))
                    })?);
                }
                GpuTensor::from_i32(self.ctx(), &label, &out)?
            };
            chunks.push((lo..hi, self.filled_at_build(t)));
        }
        self.chunked.insert(v, chunks.clone());
        Ok(Some(chunks))
    }

    fn name(&self, v: ValueId) -> &'a str {
        &self.graph.values[v].name
    }
    fn view(&mut self, v: ValueId) -> R<View> {
        let t = self.tensor(v)?;
        Ok(t.view(self.shape(v)))
    }
    fn input(node: &Node, i: usize) -> R<ValueId> {
        node.inputs.get(i).copied().flatten().ok_or_else(|| Reason(format!("input {i} is missing")))
    }
    fn opt_input(node: &Node, i: usize) -> Option<ValueId> {
        node.inputs.get(i).copied().flatten()
    }
    fn output(node: &Node, i: usize) -> R<ValueId> {
        node.outputs.get(i).copied().flatten().ok_or_else(|| Reason(format!("output {i} is missing")))
    }
    /// Fails when an output beyond the first is used (e.g. LayerNorm's mean).
    fn single_output(node: &Node) -> R<ValueId> {
        if node.outputs.iter().skip(1).any(|o| o.is_some()) {
            return unsupported("only the first output is computed; the optional outputs are not");
        }
        Self::output(node, 0)
    }
    fn const_f32s(&self, node: &Node, i: usize, what: &str) -> R<Option<Vec<f32>>> {
        match Self::opt_input(node, i) {
            None => Ok(None),
            Some(v) => match self.constant(v) {
                Some(t) => Ok(Some(t.to_f32_vec())),
                None => unsupported(format!("{what} must be known at build time")),
            },
        }
    }
    fn const_i64s(&self, node: &Node, i: usize, what: &str) -> R<Option<Vec<i64>>> {
        match Self::opt_input(node, i) {
            None => Ok(None),
            Some(v) => match self.constant(v) {
                Some(t) => Ok(Some(t.to_i64_vec())),
                None => unsupported(format!("{what} must be known at build time")),
            },
        }
    }
    fn float_operand(&self, v: ValueId) -> R<()> {
        let d = self.dtype(v);
        if matches!(d, DType::F32 | DType::F16 | DType::Bool) {
            Ok(())
        } else {
            unsupported(format!(
                "'{}' is {}; this op runs on float tensors on the GPU",
                self.name(v),
                d.name()
            ))
        }
    }
    fn scratch(&mut self, name: &str, dtype: GDType, len: usize) -> R<GpuTensor> {
        Ok(self.b.scratch(name, dtype, len)?)
    }
    fn upload_i32(&mut self, name: &str, data: &[i32]) -> R<GpuTensor> {
        let t = GpuTensor::from_i32(self.ctx(), name, data)?;
        Ok(self.filled_at_build(t))
    }
    fn upload_f32(&mut self, name: &str, data: &[f32]) -> R<GpuTensor> {
        let t = GpuTensor::from_f32(self.ctx(), name, data)?;
        Ok(self.filled_at_build(t))
    }

    /// A weight operand of `node` in its stored format (re-laid for a packed conv with
    /// `packing`), uploaded once; `None` when `w` is not one (then the caller takes the f32
    /// value).
    fn stored_operand(
        &mut self,
        node: &Node,
        w: ValueId,
        packing: Option<Packing>,
    ) -> R<Option<StoredOperand>> {
        let Some(&form) = self.stored.get(&w) else { return Ok(None) };
        let shape = self.shape(w);
        let axis = weight_channel_axis(node, w, shape.len())
            .ok_or_else(|| Reason(format!("'{}' is not this node's weight", self.name(w))))?;
        let scales = match form {
            StoredWeight::Int8 { .. } => {
                Some(form.channel_scales(self.graph, shape, axis).ok_or_else(|| {
                    Reason(format!("the scales of '{}' are not along axis {axis}", self.name(w)))
                })?)
            }
            StoredWeight::F16 { .. } => None,
        };
        let tensor = match self.stored_tensors.get(&(w, packing)) {
            Some(t) => t.clone(),
            None => {
                let t = self.upload_stored(w, form, packing)?;
                self.stored_tensors.insert((w, packing), t.clone());
                t
            }
        };
        Ok(Some(StoredOperand { tensor, scales }))
    }

    /// The device tensor of a stored weight: its int8 or f16 values, as they are or packed.
    fn upload_stored(&mut self, w: ValueId, form: StoredWeight, packing: Option<Packing>) -> R<GpuTensor> {
        fn laid_out<T: Copy + Default>(values: &[T], packing: Option<Packing>) -> std::borrow::Cow<'_, [T]> {
            match packing {
                Some((cout, groups)) => ops::conv::pack_weights(values, cout, groups).into(),
                None => values.into(),
            }
        }
        let (StoredWeight::Int8 { values, .. } | StoredWeight::F16 { values }) = form;
        let source = self.constant(values).ok_or("a stored weight's values must be constant")?;
        let name = self.name(w);
        let t = match (form, source.data()) {
            (StoredWeight::Int8 { .. }, TensorData::I8(q)) => {
                GpuTensor::from_i8(self.ctx(), name, &laid_out(q, packing))?
            }
            (StoredWeight::F16 { .. }, _) => {
                GpuTensor::from_f16(self.ctx(), name, &laid_out(&f16_values(source), packing))?
            }
            _ => return unsupported(format!("'{name}' is not held as int8")),
        };
        Ok(self.filled_at_build(t))
    }

    fn lower(&mut self, node: &Node) -> R<()> {
        let op = node.op.as_ref().ok_or("node was not parsed")?;
        // A DequantizeLinear or Cast whose output the readers take in its stored format: the
        // readers bind the int8 / f16 values themselves.
        let outputs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
        if !outputs.is_empty() && outputs.iter().all(|o| self.stored.contains_key(o)) {
            return Ok(());
        }
        // Non-foldable nodes whose inputs are all constants (DequantizeLinear of a weight that
        // some reader cannot take as int8): evaluate once on the CPU and keep the result on the
        // device.
        let all_const = node.inputs.iter().flatten().all(|&v| self.constant(v).is_some());
        if all_const && !node.inputs.iter().flatten().collect::<Vec<_>>().is_empty() {
            let args: Vec<Option<&Tensor>> =
                node.inputs.iter().map(|i| i.and_then(|v| self.constant(v))).collect();
            let outs = op.spec().run(&args)?;
            for (o, t) in node.outputs.iter().zip(outs) {
                if let Some(o) = *o {
                    if self.dev[o].is_none() && table_only(self.graph, o) {
                        self.folded.insert(o, t); // too large for a binding: taken in chunks
                        continue;
                    }
                    let dst = self.tensor(o)?;
                    let src = upload_as(self.ctx(), "folded", &t, dst.dtype())?;
                    let src = self.filled_at_build(src);
                    self.move_view(&src.view(&[t.len()]), &dst.view(&[t.len()]))?;
                }
            }
            return Ok(());
        }
        match op {
            Op::Unary(u) => self.unary(node, u.kind),
            Op::Binary(b) => self.binary(node, b.kind),
            Op::Clip(c) => {
                let x = Self::input(node, 0)?;
                self.float_operand(x)?;
                let lo = self.const_f32s(node, 1, "Clip min")?.map(|v| v[0]).or(c.attr_min);
                let hi = self.const_f32s(node, 2, "Clip max")?.map(|v| v[0]).or(c.attr_max);
                let (lo, hi) = (lo.unwrap_or(f32::NEG_INFINITY), hi.unwrap_or(f32::INFINITY));
                let (xv, out) = (self.view(x)?, self.view(Self::output(node, 0)?)?);
                Ok(ew::unary(&mut self.b, GUn::Clip(lo, hi), &xv, &out)?)
            }
            Op::FloatClass(c) => {
                let x = Self::input(node, 0)?;
                self.float_operand(x)?;
                let (xv, out) = (self.view(x)?, self.view(Self::output(node, 0)?)?);
                let op = GUn::FloatClass {
                    nan: c.nan,
                    positive_infinity: c.positive_infinity,
                    negative_infinity: c.negative_infinity,
                };
                Ok(ew::unary(&mut self.b, op, &xv, &out)?)
            }
            Op::Where(_) => {
                let (c, x, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::input(node, 2)?);
                self.float_operand(x)?;
                let (cv, xv, yv) = (self.view(c)?, self.view(x)?, self.view(y)?);
                let out = self.view(Self::output(node, 0)?)?;
                Ok(ew::ternary(&mut self.b, Ternary::Where, &cv, &xv, &yv, &out)?)
            }
            Op::Cast(c) => {
                let x = Self::input(node, 0)?;
                let to = match c.to {
                    Some(d) => d,
                    None => self.dtype(Self::input(node, 1)?),
                };
                self.cast(x, to, Self::output(node, 0)?)
            }
            Op::MatMul(_) => self.matmul(node, None, Activation::None, None),
            Op::Gemm(g) => self.gemm(node, g, Activation::None),
            Op::Einsum(e) => self.einsum(node, e),
            Op::Conv(c) => self.conv(node, c, Activation::None, None),
            Op::ConvTranspose(c) => self.conv_transpose(node, c, Activation::None),
            Op::Pool(p) => self.pool(node, p),
            Op::Softmax(s) => {
                let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
                self.float_operand(x)?;
                let shape = self.shape(x);
                let axis = normalize_axis(s.axis, shape.len())?;
                let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
                if s.coerce_2d {
                    let rows: usize = shape[..axis].iter().product();
                    let cols: usize = shape[axis..].iter().product();
                    Ok(ops::reduce::softmax(&mut self.b, &xt, &[rows, cols], 1, s.log, &yt)?)
                } else {
                    Ok(ops::reduce::softmax(&mut self.b, &xt, shape, axis, s.log, &yt)?)
                }
            }
            Op::Reduce(r) => self.reduce(node, r),
            Op::LayerNorm(l) => {
                let x = Self::input(node, 0)?;
                self.float_operand(x)?;
                let y = Self::single_output(node)?;
                let shape = self.shape(x);
                let axis = normalize_axis(l.axis, shape.len())?;
                let rows: usize = shape[..axis].iter().product();
                let d: usize = shape[axis..].iter().product();
                let affine = self.affine(node, d, "LayerNormalization")?;
                let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
                Ok(ops::norm::layer_norm(
                    &mut self.b,
                    &xt,
                    rows,
                    d,
                    Some(&affine),
                    l.epsilon,
                    Activation::None,
                    &yt,
                )?)
            }
            Op::GroupNorm(_) | Op::InstanceNorm(_) => self.norm(node, op, Activation::None),
            Op::BatchNorm(bn) => {
                let x = Self::input(node, 0)?;
                self.float_operand(x)?;
                let y = Self::single_output(node)?;
                let scale = self.const_f32s(node, 1, "scale")?.ok_or("scale is required")?;
                let bias = self.const_f32s(node, 2, "B")?.ok_or("B is required")?;
                let mean = self.const_f32s(node, 3, "mean")?.ok_or("mean is required")?;
                let var = self.const_f32s(node, 4, "var")?.ok_or("var is required")?;
                let a: Vec<f32> = scale.iter().zip(&var).map(|(s, v)| s / (v + bn.epsilon).sqrt()).collect();
                let c: Vec<f32> = bias.iter().zip(&mean).zip(&a).map(|((b, m), a)| b - m * a).collect();
                let shape = self.shape(x).to_vec();
                let per_channel = |t: GpuTensor| -> View {
                    let mut strides = vec![0; shape.len()];
                    if shape.len() > 1 {
                        strides[1] = 1;
                    }
                    View { tensor: t, offset: 0, shape: shape.clone(), strides }
                };
                let (at, ct) =
                    (per_channel(self.upload_f32("bn.a", &a)?), per_channel(self.upload_f32("bn.c", &c)?));
                let xv = self.view(x)?;
                let tmp = self.scratch("bn.tmp", self.vtype(y), xv.numel())?.view(&shape);
                ew::binary(&mut self.b, GBin::Mul, &xv, &at, &tmp)?;
                let out = self.view(y)?;
                Ok(ew::binary(&mut self.b, GBin::Add, &tmp, &ct, &out)?)
            }
            Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) | Op::Identity(_) => {
                let (x, y) = (Self::input(node, 0)?, Self::single_output(node)?);
                let n = self.shape(x).iter().product::<usize>();
                let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
                if xt.id() == yt.id() {
                    return Ok(()); // the output shares the input's buffer: nothing to move
                }
                self.move_view(&xt.view(&[n]), &yt.view(&[n]))
            }
            Op::Transpose(t) => {
                let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
                let r = self.shape(x).len();
                let perm: Vec<usize> = match &t.perm {
                    Some(p) => p.iter().map(|&a| normalize_axis(a, r)).collect::<Result<_, _>>()?,
                    None => (0..r).rev().collect(),
                };
                if self.tensor(x)?.id() == self.tensor(y)?.id() {
                    return Ok(()); // only size-1 dims moved: the output shares the input's buffer
                }
                let src = self.view(x)?.permute(&perm)?;
                let out = self.view(y)?;
                self.move_view(&src, &out)
            }
            Op::Concat(c) => {
                let y = Self::output(node, 0)?;
                let out = self.view(y)?;
                let axis = normalize_axis(c.axis, out.shape.len())?;
                let mut views = Vec::new();
                for &v in node.inputs.iter().flatten() {
                    if self.shape(v).iter().product::<usize>() > 0 {
                        views.push(self.view(v)?);
                    }
                }
                Ok(ops::copy::concat(&mut self.b, &views, axis, &out)?)
            }
            Op::Split(s) => {
                let x = Self::input(node, 0)?;
                let src = self.view(x)?;
                let axis = normalize_axis(s.axis, src.shape.len())?;
                let mut at = 0;
                for o in node.outputs.iter() {
                    let Some(o) = *o else { continue };
                    let out = self.view(o)?;
                    let len = out.shape[axis];
                    let mut window = src.clone();
                    window.shape[axis] = len;
                    window.offset += at * src.strides[axis];
                    if len > 0 && self.read[o] {
                        self.move_view(&window, &out)?;
                    }
                    at += len;
                }
                Ok(())
            }
            Op::Slice(_) => {
                let x = Self::input(node, 0)?;
                let starts = self.const_i64s(node, 1, "starts")?.ok_or("starts is required")?;
                let ends = self.const_i64s(node, 2, "ends")?.ok_or("ends is required")?;
                let axes = self.const_i64s(node, 3, "axes")?;
                let steps = self.const_i64s(node, 4, "steps")?;
                let dims = crate::ops::layout::slice::plan(self.shape(x), &starts, &ends, axes, steps)?;
                let out = self.view(Self::output(node, 0)?)?;
                if out.numel() == 0 {
                    return Ok(());
                }
                let src = self.view(x)?;
                let st: Vec<isize> = dims.iter().map(|d| d.start as isize).collect();
                let sp: Vec<isize> = dims.iter().map(|d| d.step as isize).collect();
                Ok(ops::copy::slice(&mut self.b, &src, &st, &sp, &out)?)
            }
            Op::Gather(g) => {
                let (x, idx, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
                let shape = self.shape(x);
                let axis = normalize_axis(g.axis, shape.len())?;
                let n = shape[axis] as i64;
                let it = match self.constant(idx) {
                    Some(t) => {
                        let mut v = Vec::with_capacity(t.len());
                        for i in t.to_i64_vec() {
                            let j = if i < 0 { i + n } else { i };
                            if !(0..n).contains(&j) {
                                return unsupported(format!("index {i} is out of range for dim {n}"));
                            }
                            v.push(j as i32);
                        }
                        self.upload_i32("gather.indices", &v)?
                    }
                    None => self.tensor(idx)?,
                };
                if self.shape(y).iter().product::<usize>() == 0 {
                    return Ok(());
                }
                if axis == 0 {
                    if let Some(chunks) = self.table_chunks(x)? {
                        // One dispatch per chunk, each writing the rows it holds; the first also
                        // writes the 0 of out-of-range indices.
                        let yt = self.tensor(y)?;
                        for (i, (rows, t)) in chunks.iter().enumerate() {
                            ops::copy::gather_rows(&mut self.b, t, shape, 0, rows.clone(), i == 0, &it, &yt)?;
                        }
                        return Ok(());
                    }
                }
                let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
                Ok(ops::copy::gather(&mut self.b, &xt, shape, axis, &it, &yt)?)
            }
            Op::GatherNd(g) => {
                let (x, idx, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
                let Some(indices) = self.constant(idx) else {
                    return unsupported(
                        "GatherND's indices must be constant at session build (known from input \
                         shapes); with indices computed at run time only the CPU backend runs it",
                    );
                };
                let shape = self.shape(x);
                let p = crate::ops::layout::gather_nd::plan(
                    shape,
                    indices.shape(),
                    &indices.to_i64_vec(),
                    g.batch_dims,
                )?;
                if p.rows.is_empty() || p.slice_len == 0 {
                    return Ok(());
                }
                // One gather of whole slices: data as [rows, slice_len], along axis 0.
                let mut rows = Vec::with_capacity(p.rows.len());
                for &r in &p.rows {
                    rows.push(i32::try_from(r).map_err(|_| Reason("index over 32 bits".into()))?);
                }
                let it = self.upload_i32("gather_nd.rows", &rows)?;
                let total: usize = shape.iter().product();
                let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
                Ok(ops::copy::gather(&mut self.b, &xt, &[total / p.slice_len, p.slice_len], 0, &it, &yt)?)
            }
            Op::ScatterNd(s) => self.scatter_nd(node, s.reduction),
            Op::Expand(_) => {
                let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
                let out = self.view(y)?;
                let src = self.view(x)?.broadcast_to(&out.shape)?;
                self.move_view(&src, &out)
            }
            Op::Tile(_) => {
                let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
                let (src, out) = (self.view(x)?, self.view(y)?);
                if out.numel() == 0 {
                    return Ok(());
                }
                Ok(ops::copy::tile(&mut self.b, &src, &out)?)
            }
            Op::Pad(p) => self.pad(node, p.mode),
            Op::Resize(r) => self.resize(node, r),
            Op::Shape(_) | Op::Size(_) | Op::Constant(_) | Op::ConstantOfShape(_) | Op::Range(_) => {
                unsupported("its inputs are only known at run time (shape arithmetic must fold at build)")
            }
            Op::DequantizeLinear(d) => self.dequantize(node, d.axis),
            Op::QuantizeLinear(_) => {
                unsupported("QuantizeLinear produces integers; the GPU backend does not")
            }
            Op::Fused(Fused::Attention { scale, layout }) => self.attention(node, *scale, layout),
            Op::Fused(Fused::Activated { base, activation }) => match base.as_ref() {
                Op::MatMul(_) => self.matmul(node, None, *activation, None),
                Op::Fused(Fused::MatMulAdd) => {
                    self.matmul(node, Some(Self::input(node, 2)?), *activation, None)
                }
                Op::Gemm(g) => self.gemm(node, g, *activation),
                Op::Conv(c) => self.conv(node, c, *activation, None),
                Op::ConvTranspose(c) => self.conv_transpose(node, c, *activation),
                _ => self.norm(node, base, *activation),
            },
            Op::Fused(Fused::MatMulAdd) => {
                self.matmul(node, Some(Self::input(node, 2)?), Activation::None, None)
            }
            Op::Fused(Fused::Modulated { norm, activation }) => self.modulated(node, norm, *activation),
            Op::Fused(Fused::Residual { base }) => {
                let r = Some(*node.inputs.last().and_then(|r| r.as_ref()).ok_or("the residual is missing")?);
                let (product, activation) = match base.as_ref() {
                    Op::Fused(Fused::Activated { base, activation }) => (base.as_ref(), *activation),
                    product => (product, Activation::None),
                };
                match product {
                    Op::MatMul(_) => self.matmul(node, None, activation, r),
                    Op::Fused(Fused::MatMulAdd) => {
                        self.matmul(node, Some(Self::input(node, 2)?), activation, r)
                    }
                    Op::Conv(c) => self.conv(node, c, activation, r),
                    _ => unsupported(format!("a residual fused onto {}", node.op_type)),
                }
            }
        }
    }
}
