//! Lowers each node of a built graph onto `gpu::ops` calls recorded into one `ProgramBuilder`.
//!
//! Device representation of graph values: float tensors (f32, f16) and booleans (0.0 / 1.0) are
//! f32 buffers; integer tensors are i32 buffers (build fails when a constant does not fit); int8
//! and f16 weights of MatMul/Gemm/Conv stay int8 / f16 (see `stored_weights`). A node that cannot
//! run here fails the build with [`LowerError`], naming the node, the op and why.

use std::collections::HashMap;

use super::precision::ValueTypes;
use super::stored_weights::{f16_values, weight_channel_axis, StoredWeight};
use crate::gpu::ops::conv::{Conv as GConv, ConvTranspose as GConvT, Geometry};
use crate::gpu::ops::elementwise::{self as ew, Binary as GBin, Ternary, Unary as GUn};
use crate::gpu::ops::norm::Affine;
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
use crate::ops::fused::{attention_streams, AttentionLayout, Fused};
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
                    if len > 0 {
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

    /// GroupNormalization or InstanceNormalization, then `activation` (fused SiLU).
    fn norm(&mut self, node: &Node, op: &Op, activation: Activation) -> R<()> {
        let x = Self::input(node, 0)?;
        self.float_operand(x)?;
        let shape = self.shape(x);
        let c = *shape.get(1).ok_or("input needs [N, C, ...]")?;
        let (groups, eps, affine) = match op {
            Op::GroupNorm(g) => {
                let per_channel = |v: Option<Vec<f32>>| -> R<Vec<f32>> {
                    let v = v.ok_or("scale and bias are required")?;
                    if g.per_channel_affine || v.len() == c {
                        return Ok(v);
                    }
                    if g.num_groups == 0 || v.len() != g.num_groups {
                        return unsupported(format!("scale/bias of {} values for {c} channels", v.len()));
                    }
                    let per = c / g.num_groups;
                    Ok((0..c).map(|ch| v[ch / per]).collect())
                };
                let gamma = per_channel(self.const_f32s(node, 1, "GroupNormalization scale")?)?;
                let beta = per_channel(self.const_f32s(node, 2, "GroupNormalization bias")?)?;
                let affine = Affine {
                    gamma: self.upload_f32("gamma", &gamma)?,
                    beta: self.upload_f32("beta", &beta)?,
                };
                (g.num_groups, g.epsilon, affine)
            }
            Op::InstanceNorm(n) => {
                let affine = Affine {
                    gamma: self.param(Self::input(node, 1)?)?,
                    beta: self.param(Self::input(node, 2)?)?,
                };
                (c, n.epsilon, affine)
            }
            _ => return unsupported("an activation fused into this op"),
        };
        let (xt, yt) = (self.tensor(x)?, self.tensor(Self::output(node, 0)?)?);
        Ok(ops::norm::group_norm(&mut self.b, &xt, shape, groups, Some(&affine), eps, activation, &yt)?)
    }

    /// softmax(scale * Q Kt) V through the streaming kernel (K is Kt's last two dims swapped);
    /// shapes it does not take run as MatMul, Softmax, MatMul.
    fn attention(&mut self, node: &Node, scale: f32, layout: &AttentionLayout) -> R<()> {
        let (q, kt, v, y) =
            (Self::input(node, 0)?, Self::input(node, 1)?, Self::input(node, 2)?, Self::output(node, 0)?);
        for x in [q, kt, v] {
            self.float_operand(x)?;
        }
        // Folded Transposes: the operands are permuted views of the inputs, and the attention
        // writes its output through the inverse of the output's permutation.
        let permuted = |v: View, p: &Option<Vec<usize>>| match p {
            Some(p) => v.permute(p),
            None => Ok(v),
        };
        let qv = permuted(self.view(q)?, &layout.inputs[0])?;
        let ktv = permuted(self.view(kt)?, &layout.inputs[1])?;
        let vv = permuted(self.view(v)?, &layout.inputs[2])?;
        let out = match &layout.output {
            Some(p) => self.view(y)?.permute(&crate::ops::layout::transpose::inverse(p))?,
            None => self.view(y)?,
        };
        let r = ktv.shape.len();
        if attention_streams(&qv.shape, &ktv.shape, &vv.shape, &out.shape) {
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(r - 1, r - 2);
            let k = ktv.permute(&perm)?;
            let a = ops::attention::Attention { q: qv.clone(), k, v: vv.clone(), out: out.clone(), scale };
            return Ok(ops::attention::attention(&mut self.b, &a)?);
        }
        if layout != &AttentionLayout::default() {
            return unsupported("a fused attention with folded transposes that does not stream");
        }
        let q2 = if qv.shape.len() == 1 { qv.tensor.view(&[1, qv.shape[0]]) } else { qv };
        let k2 = if ktv.shape.len() == 1 { ktv.tensor.view(&[ktv.shape[0], 1]) } else { ktv };
        let (m, n) = (q2.shape[q2.shape.len() - 2], k2.shape[k2.shape.len() - 1]);
        let batch = crate::tensor::shape::broadcast_shapes(
            &q2.shape[..q2.shape.len() - 2],
            &k2.shape[..k2.shape.len() - 2],
        )?;
        let sshape = [batch, vec![m, n]].concat();
        let len = sshape.iter().product::<usize>();
        // Scores in f32 whatever the precision: softmax reads them, and f16 scores scaled by
        // 1/sqrt(d) lose what the exp amplifies.
        let scores = self.scratch("attention.scores", GDType::F32, len)?;
        let probs = self.scratch("attention.probs", self.vtype(y), len)?;
        let mut mm = ops::matmul::MatMul::new(q2, k2, scores.view(&sshape));
        mm.alpha = scale;
        ops::matmul::matmul(&mut self.b, &mm)?;
        ops::reduce::softmax(&mut self.b, &scores, &sshape, sshape.len() - 1, false, &probs)?;
        let v2 = if vv.shape.len() == 1 { vv.tensor.view(&[vv.shape[0], 1]) } else { vv };
        let oshape = [sshape[..sshape.len() - 2].to_vec(), vec![m, v2.shape[v2.shape.len() - 1]]].concat();
        let mm = ops::matmul::MatMul::new(probs.view(&sshape), v2, out.tensor.view(&oshape));
        Ok(ops::matmul::matmul(&mut self.b, &mm)?)
    }

    /// y = (x - zero_point) * scale, per tensor or along `axis`, from an integer tensor.
    fn dequantize(&mut self, node: &Node, axis: i64) -> R<()> {
        let (x, s, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        let shape = self.shape(x).to_vec();
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(());
        }
        let along = |t: GpuTensor, rank: usize| -> R<View> {
            let mut strides = vec![0; shape.len()];
            if rank == 1 && t.len() > 1 {
                strides[normalize_axis(axis, shape.len())?] = 1;
            } else if t.len() != 1 {
                return unsupported("blocked quantization (scale of rank > 1)");
            }
            Ok(View { tensor: t, offset: 0, shape: shape.clone(), strides })
        };
        let xt = self.tensor(x)?;
        let xf = if xt.dtype() == GDType::F32 {
            xt.view(&shape)
        } else {
            let tmp = self.scratch("dequantize.x", GDType::F32, n)?;
            ops::cast::cast(&mut self.b, &xt, &tmp)?;
            tmp.view(&shape)
        };
        let centered = match Self::opt_input(node, 2) {
            Some(zp) => {
                let zp_f = match self.constant(zp) {
                    Some(c) => along(self.upload_f32("zero_point", &c.to_f32_vec())?, c.rank())?,
                    None => return unsupported("a run-time zero point"),
                };
                let tmp = self.scratch("dequantize.centered", GDType::F32, n)?.view(&shape);
                ew::binary(&mut self.b, GBin::Sub, &xf, &zp_f, &tmp)?;
                tmp
            }
            None => xf,
        };
        let sv = along(self.tensor(s)?, self.shape(s).len())?;
        let out = self.view(y)?;
        Ok(ew::binary(&mut self.b, GBin::Mul, &centered, &sv, &out)?)
    }

    fn affine(&mut self, node: &Node, d: usize, op: &str) -> R<Affine> {
        let gamma = self.param(Self::input(node, 1)?)?;
        let beta = match Self::opt_input(node, 2) {
            Some(v) => self.param(v)?,
            None => self.upload_f32("zeros", &vec![0.0; d])?,
        };
        if gamma.len() != d || beta.len() != d {
            return unsupported(format!("{op} scale/bias must hold {d} values (no broadcasting)"));
        }
        Ok(Affine { gamma, beta })
    }

    fn unary(&mut self, node: &Node, kind: UnaryKind) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let op = match kind {
            UnaryKind::Sqrt => GUn::Sqrt,
            UnaryKind::Reciprocal => GUn::Reciprocal,
            UnaryKind::Exp => GUn::Exp,
            UnaryKind::Log => GUn::Log,
            UnaryKind::Neg => GUn::Neg,
            UnaryKind::Abs => GUn::Abs,
            UnaryKind::Sin => GUn::Sin,
            UnaryKind::Cos => GUn::Cos,
            UnaryKind::Tanh => GUn::Tanh,
            UnaryKind::Erf => GUn::Erf,
            UnaryKind::Sigmoid => GUn::Sigmoid,
            UnaryKind::Silu => GUn::Silu,
            UnaryKind::Relu => GUn::Relu,
            UnaryKind::LeakyRelu { alpha } => GUn::LeakyRelu(alpha),
            UnaryKind::Gelu { tanh_approximation: false } => GUn::Gelu,
            UnaryKind::Gelu { tanh_approximation: true } => GUn::GeluTanh,
            UnaryKind::Softplus => GUn::Softplus,
            UnaryKind::Floor => GUn::Floor,
            UnaryKind::Ceil => GUn::Ceil,
            UnaryKind::Not => GUn::Not,
        };
        let (xv, out) = (self.view(x)?, self.view(y)?);
        Ok(ew::unary(&mut self.b, op, &xv, &out)?)
    }

    fn binary(&mut self, node: &Node, kind: BinaryKind) -> R<()> {
        let y = Self::output(node, 0)?;
        let op = match kind {
            BinaryKind::Add | BinaryKind::Sum => GBin::Add,
            BinaryKind::Sub => GBin::Sub,
            BinaryKind::Mul => GBin::Mul,
            BinaryKind::Div => GBin::Div,
            BinaryKind::Pow => GBin::Pow,
            BinaryKind::Min => GBin::Min,
            BinaryKind::Max => GBin::Max,
            BinaryKind::Equal => GBin::Equal,
            BinaryKind::Less => GBin::Less,
            BinaryKind::LessOrEqual => GBin::LessOrEqual,
            BinaryKind::Greater => GBin::Greater,
            BinaryKind::GreaterOrEqual => GBin::GreaterOrEqual,
            BinaryKind::And => GBin::And,
            BinaryKind::Or => GBin::Or,
            BinaryKind::Xor => GBin::Xor,
            BinaryKind::Mod { fmod: true } => GBin::Fmod,
            BinaryKind::Mod { fmod: false } => GBin::Mod,
        };
        let inputs: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        if let (GBin::Pow, [base, e]) = (op, inputs.as_slice()) {
            if self.float_operand(*base).is_ok() && device_dtype(self.dtype(*e)) == GDType::I32 {
                // A float base with an integer exponent: the exponent as f32.
                let (bv, out) = (self.view(*base)?, self.view(y)?);
                let et = self.tensor(*e)?;
                let ef = self.scratch("pow.exponent", GDType::F32, et.len())?;
                ops::cast::cast(&mut self.b, &et, &ef)?;
                let ev = ef.view(self.shape(*e));
                return Ok(ew::binary(&mut self.b, op, &bv, &ev, &out)?);
            }
        }
        for &v in &inputs {
            self.float_operand(v)?;
        }
        let out = self.view(y)?;
        match inputs.as_slice() {
            [] => unsupported("no inputs"),
            [a] => {
                let src = self.view(*a)?.broadcast_to(&out.shape)?;
                self.move_view(&src, &out)
            }
            [a, rest @ ..] => {
                // Variadic: fold left through scratch buffers, the last step into the output.
                let mut acc = self.view(*a)?;
                for (i, &v) in rest.iter().enumerate() {
                    let bv = self.view(v)?;
                    let dst = if i + 1 == rest.len() {
                        out.clone()
                    } else {
                        let shape = crate::tensor::shape::broadcast_shapes(&acc.shape, &bv.shape)?;
                        let n = shape.iter().product();
                        self.scratch("variadic", self.vtype(y), n)?.view(&shape)
                    };
                    ew::binary(&mut self.b, op, &acc, &bv, &dst)?;
                    acc = dst;
                }
                Ok(())
            }
        }
    }

    fn cast(&mut self, x: ValueId, to: DType, y: ValueId) -> R<()> {
        let from = self.dtype(x);
        let xt = self.tensor(x)?;
        let yt = self.tensor(y)?;
        let n = xt.len().min(self.shape(x).iter().product());
        let flat = |t: &GpuTensor| t.view(&[n]);
        if n == 0 {
            return Ok(());
        }
        match (device_dtype(from), device_dtype(to)) {
            (GDType::F32, GDType::F32) if to == DType::Bool && from != DType::Bool => {
                // bool(x) = not(not(x)): nonzero -> 1.0.
                let tmp = self.scratch("cast.not", GDType::F32, n)?;
                ew::unary(&mut self.b, GUn::Not, &flat(&xt), &flat(&tmp))?;
                Ok(ew::unary(&mut self.b, GUn::Not, &flat(&tmp), &flat(&yt))?)
            }
            (GDType::F32, GDType::F32) if to == DType::F16 && yt.dtype() == GDType::F16 => {
                // f16 mode: the output buffer is f16, the cast rounds.
                Ok(ops::cast::cast(&mut self.b, &xt, &yt)?)
            }
            (GDType::F32, GDType::F32) if to == DType::F16 => {
                // Values are held as f32; the rounding to half precision is applied through an
                // f16 buffer so results match a half cast.
                let tmp = self.scratch("cast.f16", GDType::F16, n)?;
                ops::cast::cast(&mut self.b, &xt, &tmp)?;
                Ok(ops::cast::cast(&mut self.b, &tmp, &yt)?)
            }
            (GDType::F32, GDType::F32) | (GDType::I32, GDType::I32) if to != DType::Bool => {
                if matches!(to, DType::I8 | DType::U8) && from != to {
                    return unsupported(format!(
                        "cast from {} to {} (wrapping) has no GPU kernel",
                        from.name(),
                        to.name()
                    ));
                }
                self.move_view(&flat(&xt), &flat(&yt))
            }
            (GDType::F32, GDType::I32) => {
                if matches!(to, DType::I8 | DType::U8) {
                    return unsupported(format!("cast to {} (saturating) has no GPU kernel", to.name()));
                }
                Ok(ops::cast::cast(&mut self.b, &xt, &yt)?)
            }
            (GDType::I32, GDType::F32) => {
                if to == DType::Bool {
                    let tmp = self.scratch("cast.i", GDType::F32, n)?;
                    ops::cast::cast(&mut self.b, &xt, &tmp)?;
                    let tmp2 = self.scratch("cast.not", GDType::F32, n)?;
                    ew::unary(&mut self.b, GUn::Not, &flat(&tmp), &flat(&tmp2))?;
                    return Ok(ew::unary(&mut self.b, GUn::Not, &flat(&tmp2), &flat(&yt))?);
                }
                Ok(ops::cast::cast(&mut self.b, &xt, &yt)?)
            }
            _ => unsupported(format!("cast from {} to {}", from.name(), to.name())),
        }
    }

    /// A `[.., M, K]` or 1-D operand as a rank >= 2 view.
    fn promoted(&mut self, v: ValueId, is_left: bool) -> R<View> {
        let mut view = self.view(v)?;
        if view.shape.len() == 1 {
            let k = view.shape[0];
            view = if is_left { view.tensor.view(&[1, k]) } else { view.tensor.view(&[k, 1]) };
        }
        Ok(view)
    }

    /// MatMul, with FusedMatMulAdd's addend `c` (repeating over the product) and a fused
    /// activation applied in the kernel's epilogue: a constant bias over the last axis as the
    /// kernel's f32 bias, any other addend as its broadcast `d` operand (beta 1); then a fused
    /// `residual` added after the activation.
    fn matmul(
        &mut self,
        node: &Node,
        c: Option<ValueId>,
        activation: Activation,
        residual: Option<ValueId>,
    ) -> R<()> {
        let (a, w, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        self.float_operand(a)?;
        self.float_operand(w)?;
        let av = self.promoted(a, true)?;
        let (wv, scales) = match self.stored_operand(node, w, None)? {
            Some(s) => (s.tensor.view(self.shape(w)), s.scales),
            None => (self.promoted(w, false)?, None),
        };
        let (m, n) = (av.shape[av.shape.len() - 2], wv.shape[wv.shape.len() - 1]);
        let batch = crate::tensor::shape::broadcast_shapes(
            &av.shape[..av.shape.len() - 2],
            &wv.shape[..wv.shape.len() - 2],
        )?;
        let out_shape = [batch, vec![m, n]].concat();
        let yt = self.tensor(y)?;
        if out_shape.iter().product::<usize>() == 0 {
            return Ok(());
        }
        let vectors = (self.shape(a).len() == 1, self.shape(w).len() == 1);
        let mut mm = ops::matmul::MatMul::new(av, wv, yt.view(&out_shape));
        mm.activation = activation;
        mm.residual = self.residual(residual, y)?;
        if let Some(c) = c {
            self.float_operand(c)?;
            // C without its leading 1s is the trailing part of the product's shape.
            let cs = self.shape(c);
            let trailing = &cs[cs.iter().take_while(|&&d| d == 1).count()..];
            let bias_like = trailing == [n] && !vectors.1 && self.constant(c).is_some();
            if bias_like {
                mm.bias = Some(self.param(c)?);
            } else {
                let d = self.addend(c, trailing, self.shape(y), vectors, &out_shape)?;
                mm.d = Some(d);
            }
        }
        if mm.a.shape[mm.a.shape.len() - 1] == 0 {
            // No products: the output is the addend, or zero.
            if activation != Activation::None {
                return unsupported("an empty K with a fused activation");
            }
            let src = match (&mm.d, &mm.bias) {
                (Some(d), _) => d.clone(),
                (None, Some(bias)) => bias.view(&[n]).broadcast_to(&out_shape)?,
                (None, None) => {
                    let zeros = self.upload_f32("zero", &[0.0])?;
                    View {
                        tensor: zeros,
                        offset: 0,
                        shape: out_shape.clone(),
                        strides: vec![0; out_shape.len()],
                    }
                }
            };
            return self.move_view(&src, &mm.out);
        }
        mm.scales = self.upload_scales(w, scales)?;
        Ok(ops::matmul::matmul(&mut self.b, &mm)?)
    }

    /// FusedMatMulAdd's addend `c` (`trailing`: its shape without leading 1s) as a view of the
    /// kernel's output shape `out_shape`: broadcast to the product's shape, then with the unit
    /// dims of 1-D operands (`vectors`: A, B) put back. Where the output has more than two batch
    /// dims, a broadcast addend might not collapse with the others, so it is copied out first.
    fn addend(
        &mut self,
        c: ValueId,
        trailing: &[usize],
        product: &[usize],
        vectors: (bool, bool),
        out_shape: &[usize],
    ) -> R<View> {
        let t = self.tensor(c)?;
        let mut d = t.view(trailing).broadcast_to(product)?;
        if vectors.1 {
            d.shape.push(1);
            d.strides.push(0);
        }
        if vectors.0 {
            let at = d.shape.len().saturating_sub(1);
            d.shape.insert(at, 1);
            d.strides.insert(at, 0);
        }
        if d.shape != out_shape {
            return unsupported(format!("addend {trailing:?} for a product of {out_shape:?}"));
        }
        if out_shape.len() > 4 && d.strides != contiguous_strides(out_shape) {
            let copy = self.scratch("matmul.addend", t.dtype(), d.numel())?;
            let whole = copy.view(out_shape);
            self.move_view(&d, &whole)?;
            return Ok(whole);
        }
        Ok(d)
    }

    /// An int8 weight's per-channel scales on the device.
    fn upload_scales(&mut self, w: ValueId, scales: Option<Vec<f32>>) -> R<Option<GpuTensor>> {
        let name = format!("{}.scales", self.name(w));
        scales.map(|s| self.upload_f32(&name, &s)).transpose()
    }

    fn gemm(&mut self, node: &Node, g: &crate::ops::linalg::gemm::Gemm, activation: Activation) -> R<()> {
        let (a, w, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        self.float_operand(a)?;
        let mut av = self.view(a)?;
        let (mut wv, scales) = match self.stored_operand(node, w, None)? {
            Some(s) => (s.tensor.view(self.shape(w)), s.scales),
            None => (self.view(w)?, None),
        };
        if g.trans_a {
            av = av.permute(&[1, 0])?;
        }
        if g.trans_b {
            wv = wv.permute(&[1, 0])?;
        }
        let out = self.view(y)?;
        let mut mm = ops::matmul::MatMul::new(av, wv, out.clone());
        mm.scales = self.upload_scales(w, scales)?;
        mm.alpha = g.alpha;
        mm.activation = activation;
        if let Some(c) = Self::opt_input(node, 2) {
            if g.beta != 0.0 {
                mm.d = Some(self.view(c)?.broadcast_to(&out.shape)?);
                mm.beta = g.beta;
            }
        }
        Ok(ops::matmul::matmul(&mut self.b, &mm)?)
    }

    /// Einsum as one batched matmul: labels of each operand are split into batch (in both and
    /// the output), free (in one operand and the output) and contracted (in both, not the output)
    /// and the operands permuted as strides; one operand is a permuted copy.
    fn einsum(&mut self, node: &Node, e: &crate::ops::linalg::einsum::Einsum) -> R<()> {
        let y = Self::output(node, 0)?;
        let out = self.view(y)?;
        let has_repeat = |l: &[char]| (0..l.len()).any(|i| l[i + 1..].contains(&l[i]));
        if e.operands.iter().any(|l| has_repeat(l)) || has_repeat(&e.output) {
            return unsupported("repeated labels (traces/diagonals)");
        }
        match e.operands.len() {
            1 => {
                let x = Self::input(node, 0)?;
                let labels = &e.operands[0];
                if labels.iter().any(|c| !e.output.contains(c)) {
                    return unsupported("one-operand Einsum with summed labels");
                }
                let perm: Vec<usize> =
                    e.output.iter().map(|c| labels.iter().position(|l| l == c).unwrap_or(0)).collect();
                let src = self.view(x)?.permute(&perm)?;
                self.move_view(&src, &out)
            }
            2 => {
                let (a, w) = (Self::input(node, 0)?, Self::input(node, 1)?);
                let (la, lw, lo) = (&e.operands[0], &e.operands[1], &e.output);
                let batch: Vec<char> =
                    lo.iter().copied().filter(|c| la.contains(c) && lw.contains(c)).collect();
                let m: Vec<char> = lo.iter().copied().filter(|c| la.contains(c) && !lw.contains(c)).collect();
                let n: Vec<char> = lo.iter().copied().filter(|c| lw.contains(c) && !la.contains(c)).collect();
                let k: Vec<char> = la.iter().copied().filter(|c| lw.contains(c) && !lo.contains(c)).collect();
                if la.iter().chain(lw.iter()).any(|c| !lo.contains(c) && (!la.contains(c) || !lw.contains(c)))
                {
                    return unsupported("a label summed within one operand");
                }
                let (av, wv) = (self.view(a)?, self.view(w)?);
                let size = |c: &char| -> usize {
                    la.iter()
                        .position(|l| l == c)
                        .map(|i| av.shape[i])
                        .or_else(|| lw.iter().position(|l| l == c).map(|i| wv.shape[i]))
                        .unwrap_or(1)
                };
                // Operand views [batch..., M..., K...] / [batch..., K..., N...] merged into
                // [batch, M, K] through a contiguous copy each.
                let pack = |lb: &mut Lowering,
                            v: &View,
                            labels: &[char],
                            order: &[&[char]]|
                 -> R<(GpuTensor, Vec<usize>)> {
                    let perm: Vec<usize> = order
                        .iter()
                        .flat_map(|g| g.iter())
                        .map(|c| labels.iter().position(|l| l == c).unwrap_or(0))
                        .collect();
                    let p = v.permute(&perm)?;
                    let t = lb.scratch("einsum.operand", v.tensor.dtype(), p.numel().max(1))?;
                    if p.numel() > 0 {
                        lb.move_view(&p, &t.view(&p.shape))?;
                    }
                    let dims = order.iter().map(|g| g.iter().map(size).product()).collect();
                    Ok((t, dims))
                };
                let (ta, da) = pack(self, &av, la, &[&batch, &m, &k])?;
                let (tw, dw) = pack(self, &wv, lw, &[&batch, &k, &n])?;
                let (bsz, msz, ksz, nsz) = (da[0], da[1], da[2], dw[2]);
                let tmp = self.scratch("einsum.out", out.tensor.dtype(), (bsz * msz * nsz).max(1))?;
                if bsz * msz * nsz == 0 {
                    return Ok(());
                }
                if ksz == 0 {
                    return unsupported("an empty contracted dim");
                }
                let mm = ops::matmul::MatMul::new(
                    ta.view(&[bsz, msz, ksz]),
                    tw.view(&[bsz, ksz, nsz]),
                    tmp.view(&[bsz, msz, nsz]),
                );
                ops::matmul::matmul(&mut self.b, &mm)?;
                // tmp is [batch..., M..., N...]; the output order may differ.
                let natural: Vec<char> = batch.iter().chain(&m).chain(&n).copied().collect();
                let nat_shape: Vec<usize> = natural.iter().map(size).collect();
                let perm: Vec<usize> =
                    lo.iter().map(|c| natural.iter().position(|l| l == c).unwrap_or(0)).collect();
                let src = tmp.view(&nat_shape).permute(&perm)?;
                self.move_view(&src, &out)
            }
            k => unsupported(format!("Einsum with {k} operands")),
        }
    }

    /// A residual operand: the same type and shape as the product's output `y` (checked by the
    /// fusion pass and the op's inference), read at the output's indices.
    fn residual(&mut self, r: Option<ValueId>, y: ValueId) -> R<Option<GpuTensor>> {
        let Some(r) = r else { return Ok(None) };
        self.float_operand(r)?;
        if self.shape(r) != self.shape(y) {
            return unsupported(format!("a residual {:?} for an output {:?}", self.shape(r), self.shape(y)));
        }
        Ok(Some(self.tensor(r)?))
    }

    fn conv(
        &mut self,
        node: &Node,
        c: &crate::ops::nn::conv::Conv,
        activation: Activation,
        residual: Option<ValueId>,
    ) -> R<()> {
        let (x, w, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let b = Self::opt_input(node, 2);
        let bshape = b.map(|b| self.shape(b).to_vec());
        let g = c.geometry(self.shape(x), self.shape(w), bshape.as_deref())?;
        let win = &g.window;
        let geometry = Geometry::new(&win.kernel)
            .with_strides(&win.strides)
            .with_dilations(&win.dilations)
            .with_pads(&win.pad_begin, &win.pad_end);
        // Four output channels per group make one vec4 (one int8 word) per tap: pack.
        let pack = (g.out_channels / g.group) % 4 == 0;
        let stored = self.stored_operand(node, w, pack.then_some((g.out_channels, g.group)))?;
        let (packed, wt, scales) = match (stored, self.constant(w)) {
            (Some(s), _) => (pack, s.tensor, self.upload_scales(w, s.scales)?),
            (None, Some(wc)) if pack && wc.dtype() == DType::F32 => {
                let packed = ops::conv::pack_weights(&wc.f32s(), g.out_channels, g.group);
                let name = format!("{}.packed", self.name(w));
                let t = GpuTensor::from_f32_as(self.ctx(), &name, self.vtype(w), &packed)?;
                (true, self.filled_at_build(t), None)
            }
            (None, _) => (false, self.tensor(w)?, None),
        };
        let bias = match b {
            Some(b) => Some(self.param(b)?),
            None => None,
        };
        let conv = GConv {
            x: self.tensor(x)?,
            x_shape: self.shape(x).to_vec(),
            w: wt,
            scales,
            bias,
            out: self.tensor(y)?,
            out_channels: g.out_channels,
            groups: g.group,
            geometry,
            activation,
            packed_weights: packed,
            style: None,
            residual: self.residual(residual, y)?,
        };
        if self.shape(y).iter().product::<usize>() == 0 {
            return Ok(());
        }
        Ok(ops::conv::conv(&mut self.b, &conv)?)
    }

    fn conv_transpose(
        &mut self,
        node: &Node,
        c: &crate::ops::nn::conv_transpose::ConvTranspose,
        activation: Activation,
    ) -> R<()> {
        let (x, w, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let g = c.geometry(self.shape(x), self.shape(w))?;
        let win = &g.window;
        let geometry = Geometry::new(&win.kernel)
            .with_strides(&win.strides)
            .with_dilations(&win.dilations)
            .with_pads(&win.pad_begin, &win.pad_end);
        // Output padding: whatever makes the GPU's size formula give the inferred output.
        let xin = &self.shape(x)[2..];
        let mut output_padding = Vec::new();
        for (d, &len) in xin.iter().enumerate() {
            let base = (win.strides[d] * (len - 1) + win.dilations[d] * (win.kernel[d] - 1) + 1) as i64
                - (win.pad_begin[d] + win.pad_end[d]) as i64;
            let extra = win.input[d] as i64 - base;
            if extra < 0 {
                return unsupported(format!("output size {} below the transposed size {base}", win.input[d]));
            }
            output_padding.push(extra as usize);
        }
        let bias = match Self::opt_input(node, 2) {
            Some(b) => Some(self.param(b)?),
            None => None,
        };
        // Stored int8 scales run along the weight's axis 1 (Cout / group); the kernel takes one
        // per output channel, the same for every group.
        let (wt, scales) = match self.stored_operand(node, w, None)? {
            Some(s) => (s.tensor, s.scales.map(|per_group| per_group.repeat(c.group))),
            None => (self.tensor(w)?, None),
        };
        let ct = GConvT {
            x: self.tensor(x)?,
            x_shape: self.shape(x).to_vec(),
            w: wt,
            scales: self.upload_scales(w, scales)?,
            bias,
            out: self.tensor(y)?,
            out_channels: g.out_channels,
            groups: c.group,
            geometry,
            output_padding,
            activation,
        };
        Ok(ops::conv::conv_transpose(&mut self.b, &ct)?)
    }

    fn pool(&mut self, node: &Node, p: &crate::ops::nn::pool::Pool) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::single_output(node)?);
        self.float_operand(x)?;
        let shape = self.shape(x).to_vec();
        let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
        let Some(attrs) = &p.window else {
            let op = match p.kind {
                PoolKind::Max => ReduceOp::Max,
                PoolKind::Average { .. } => ReduceOp::Mean,
            };
            if shape.len() <= 2 {
                let n = shape.iter().product();
                return self.move_view(&xt.view(&[n]), &yt.view(&[n]));
            }
            let axes: Vec<usize> = (2..shape.len()).collect();
            return Ok(ops::reduce::reduce(&mut self.b, op, &xt, &shape, &axes, &yt)?);
        };
        let win = attrs.resolve(&shape[2..], None)?;
        let mut pads_end = win.pad_end.clone();
        #[allow(clippy::needless_range_loop)] // d indexes six per-dim vectors
        for d in 0..win.input.len() {
            // Ceil mode: extend the trailing pad so the floor formula yields the larger output.
            let span = win.dilations[d] * (win.kernel[d] - 1) + 1;
            let need = ((win.output[d].max(1) - 1) * win.strides[d] + span) as i64
                - (win.input[d] + win.pad_begin[d]) as i64;
            if need > pads_end[d] as i64 {
                if matches!(p.kind, PoolKind::Average { count_include_pad: true }) {
                    return unsupported("ceil_mode with count_include_pad");
                }
                pads_end[d] = need as usize;
            }
        }
        let geometry = Geometry::new(&win.kernel)
            .with_strides(&win.strides)
            .with_dilations(&win.dilations)
            .with_pads(&win.pad_begin, &pads_end);
        let kind = match p.kind {
            PoolKind::Max => GPoolKind::Max,
            PoolKind::Average { count_include_pad } => GPoolKind::Average { count_include_pad },
        };
        Ok(ops::pool::pool(&mut self.b, kind, &xt, &shape, &geometry, &yt)?)
    }

    fn reduce(&mut self, node: &Node, r: &crate::ops::nn::reduce::Reduce) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let shape = self.shape(x).to_vec();
        let input_axes = self.const_i64s(node, 1, "axes")?;
        let mask = crate::ops::nn::reduce::reduced_dims(r, shape.len(), input_axes)?;
        let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
        let total: usize = shape.iter().product();
        let op = match r.kind {
            ReduceKind::Sum => ReduceOp::Sum,
            ReduceKind::Mean => ReduceOp::Mean,
            ReduceKind::Max => ReduceOp::Max,
            ReduceKind::Min => ReduceOp::Min,
            ReduceKind::L2 => ReduceOp::L2,
            ReduceKind::Prod => ReduceOp::Prod,
        };
        let Some(mask) = mask.filter(|m| m.iter().any(|&b| b)) else {
            return self.move_view(&xt.view(&[total]), &yt.view(&[total]));
        };
        if total == 0 || shape.iter().zip(&mask).any(|(&d, &m)| m && d == 0) {
            return unsupported("reduction of an empty tensor");
        }
        // Kept dims first, reduced dims last; a transposing copy when they are not already so.
        let kept: Vec<usize> = (0..shape.len()).filter(|&d| !mask[d]).collect();
        let red: Vec<usize> = (0..shape.len()).filter(|&d| mask[d]).collect();
        let adjacent = red.windows(2).all(|w| w[1] == w[0] + 1);
        if adjacent {
            return Ok(ops::reduce::reduce(&mut self.b, op, &xt, &shape, &red, &yt)?);
        }
        let perm: Vec<usize> = kept.iter().chain(&red).copied().collect();
        let src = xt.view(&shape).permute(&perm)?;
        let tmp = self.scratch("reduce.permuted", xt.dtype(), total)?;
        self.move_view(&src, &tmp.view(&src.shape))?;
        let axes: Vec<usize> = (kept.len()..shape.len()).collect();
        Ok(ops::reduce::reduce(&mut self.b, op, &tmp, &src.shape, &axes, &yt)?)
    }

    fn pad(&mut self, node: &Node, mode: PadMode) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
        let shape = self.shape(x).to_vec();
        let pads = self.const_i64s(node, 1, "pads")?.ok_or("pads is required")?;
        let axes = self.const_i64s(node, 3, "axes")?;
        let pads = crate::ops::layout::pad::per_dim(shape.len(), &pads, axes)?;
        let value =
            self.const_f32s(node, 2, "constant_value")?.and_then(|v| v.first().copied()).unwrap_or(0.0);
        let (src, out) = (self.view(x)?, self.view(y)?);
        if out.numel() == 0 {
            return Ok(());
        }
        let start: Vec<isize> = pads.iter().map(|p| -(p.0 as isize)).collect();
        let r = shape.len();
        match mode {
            PadMode::Constant => Ok(ops::copy::strided_copy(
                &mut self.b,
                &src,
                &vec![1; r],
                &start,
                &vec![false; r],
                value,
                &out,
            )?),
            PadMode::Wrap => Ok(ops::copy::strided_copy(
                &mut self.b,
                &src,
                &vec![1; r],
                &start,
                &vec![true; r],
                0.0,
                &out,
            )?),
            PadMode::Edge | PadMode::Reflect => {
                // An index table built here and one gather over the flattened input.
                let own = contiguous_strides(&shape);
                let tables: Vec<Vec<i64>> = (0..r)
                    .map(|d| {
                        let len = shape[d] as i64;
                        (0..out.shape[d] as i64)
                            .map(|i| {
                                let pos = i - pads[d].0;
                                let s = if (0..len).contains(&pos) {
                                    pos
                                } else if mode == PadMode::Edge {
                                    pos.clamp(0, len - 1)
                                } else if len == 1 {
                                    0
                                } else {
                                    let period = 2 * (len - 1);
                                    let m = pos.rem_euclid(period);
                                    if m < len {
                                        m
                                    } else {
                                        period - m
                                    }
                                };
                                s * own[d] as i64
                            })
                            .collect()
                    })
                    .collect();
                let n = out.numel();
                let out_strides = contiguous_strides(&out.shape);
                let mut idx = Vec::with_capacity(n);
                for i in 0..n {
                    let mut rest = i;
                    let mut at = 0i64;
                    for d in 0..r {
                        let c = rest / out_strides[d];
                        rest %= out_strides[d];
                        at += tables[d][c];
                    }
                    idx.push(i32::try_from(at).map_err(|_| Reason("index over 32 bits".into()))?);
                }
                let it = self.upload_i32("pad.indices", &idx)?;
                let total: usize = shape.iter().product();
                Ok(ops::copy::gather(&mut self.b, &src.tensor, &[total], 0, &it, &out.tensor)?)
            }
        }
    }

    /// ScatterND with reduction "none" and indices known at build: a host table names the source
    /// of every output element in `[data, updates]` (last write wins), then one gather.
    fn scatter_nd(&mut self, node: &Node, reduction: ScatterReduction) -> R<()> {
        let (x, idx, upd) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::input(node, 2)?);
        let y = Self::output(node, 0)?;
        if reduction != ScatterReduction::None {
            return unsupported(format!(
                "ScatterND with reduction '{}' has no GPU kernel (the GPU lowers reduction 'none'); \
                 the CPU backend runs it",
                reduction.name()
            ));
        }
        let Some(indices) = self.constant(idx) else {
            return unsupported(
                "ScatterND's indices must be constant at session build (known from input shapes); \
                 with indices computed at run time only the CPU backend runs it",
            );
        };
        let (shape, upd_shape) = (self.shape(x), self.shape(upd));
        let p =
            crate::ops::layout::scatter_nd::plan(shape, indices.shape(), &indices.to_i64_vec(), upd_shape)?;
        let (n, m) = (p.data_len, p.targets.len());
        if n == 0 {
            return Ok(());
        }
        let out = self.view(y)?;
        if m == 0 {
            let xv = self.view(x)?;
            return self.move_view(&xv, &out);
        }
        let sources = p.sources();
        let ut = self.tensor(upd)?;
        // Every element overwritten (the rotary pattern's second half may be): gather from the
        // updates alone; otherwise from one buffer holding data then updates.
        let (src, base) = if sources.iter().all(|&s| s >= n) && ut.len() == m {
            (ut, n)
        } else {
            let both = self.scratch("scatter_nd.sources", self.vtype(x), n + m)?;
            let (xv, uv) = (self.view(x)?, self.view(upd)?);
            self.move_view(&xv, &View::contiguous(&both, shape))?;
            let mut window = View::contiguous(&both, upd_shape);
            window.offset = n;
            self.move_view(&uv, &window)?;
            (both, 0)
        };
        let mut table = Vec::with_capacity(n);
        for s in sources {
            table.push(i32::try_from(s - base).map_err(|_| Reason("index over 32 bits".into()))?);
        }
        let it = self.upload_i32("scatter_nd.sources", &table)?;
        let len = src.len();
        Ok(ops::copy::gather(&mut self.b, &src, &[len], 0, &it, &out.tensor)?)
    }

    fn resize(&mut self, node: &Node, r: &crate::ops::layout::resize::Resize) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let scales = self.const_f32s(node, 2, "scales")?;
        let sizes = self.const_i64s(node, 3, "sizes")?;
        let in_shape = self.shape(x).to_vec();
        let plan = r.plan(&in_shape, scales, sizes)?;
        let mode = match r.mode {
            ResizeMode::Linear => gres::ResizeMode::Linear,
            ResizeMode::Nearest(n) => gres::ResizeMode::Nearest(match n {
                NearestMode::RoundPreferFloor => gres::NearestMode::RoundPreferFloor,
                NearestMode::RoundPreferCeil => gres::NearestMode::RoundPreferCeil,
                NearestMode::Floor => gres::NearestMode::Floor,
                NearestMode::Ceil => gres::NearestMode::Ceil,
            }),
        };
        let coord = match r.coordinates {
            CoordinateMode::HalfPixel => gres::CoordinateMode::HalfPixel,
            CoordinateMode::HalfPixelSymmetric => gres::CoordinateMode::HalfPixelSymmetric,
            CoordinateMode::PytorchHalfPixel => gres::CoordinateMode::PytorchHalfPixel,
            CoordinateMode::AlignCorners => gres::CoordinateMode::AlignCorners,
            CoordinateMode::Asymmetric => gres::CoordinateMode::Asymmetric,
        };
        let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
        Ok(gres::resize(&mut self.b, &xt, &in_shape, &plan.shape, Some(&plan.scales), mode, coord, &yt)?)
    }
}
