//! Which precision a GPU session runs in, and the device type of each graph value under it.
//!
//! f32 mode: every float value is an f32 buffer. f16 mode: float values are f16 buffers, except
//! - values that feed a Sin or Cos (timestep embeddings: `t * freqs` reaches ~1000 radians,
//!   where f16's spacing is 0.5, so the phase would be noise), found walking back from each
//!   Sin/Cos input through its producers to the graph inputs and constants;
//! - constants f16 cannot hold (finite values beyond 65504: masks of -1e9 or f32::MIN, which as
//!   -inf turn `0 * mask` into NaN).
//!
//! Kernels read each operand in its own storage type, so these f32 values mix with f16 ones
//! without casts. Model inputs and outputs keep their ONNX types at the API: an f16-mode session
//! casts them at the boundary (see `GpuSession`).

use crate::gpu::{DType as GDType, GpuContext, GpuError, Precision};
use crate::graph::{Graph, ValueId};
use crate::ops::Op;
use crate::tensor::DType;

/// The precision a session runs in (`F32` or `F16`, never `Auto`) for a `requested` one.
/// `low_precision_weights`: the model stores its parameters mostly as int8 or f16.
pub fn resolve(
    requested: Precision,
    low_precision_weights: bool,
    ctx: &GpuContext,
) -> Result<Precision, GpuError> {
    match requested {
        Precision::F32 => Ok(Precision::F32),
        Precision::F16 if ctx.has_shader_f16() => Ok(Precision::F16),
        Precision::F16 => Err(GpuError::Unsupported {
            op: "precision",
            message: format!(
                "f16 activations need the adapter feature shader-f16, which {} lacks: use precision \
                 f32 (--precision f32), or auto (f32 there)",
                ctx.describe()
            ),
        }),
        Precision::Auto if low_precision_weights && ctx.has_shader_f16() => Ok(Precision::F16),
        Precision::Auto => Ok(Precision::F32),
    }
}

/// Whether a model's parameters are mostly int8 or f16: under 3 bytes each on average (f32
/// weights take 4; int64 shape constants only raise the average).
pub fn low_precision_weights(parameter_count: usize, parameter_bytes: usize) -> bool {
    parameter_count > 0 && parameter_bytes < 3 * parameter_count
}

/// The device type of each value of one graph under one precision.
#[derive(Clone, Debug)]
pub struct ValueTypes {
    /// The type of float values (f32 or f16).
    pub float: GDType,
    /// Values that stay f32 in f16 mode (see the module doc).
    keep_f32: Vec<bool>,
}

impl ValueTypes {
    pub fn new(graph: &Graph, precision: Precision) -> Self {
        let f16 = precision == Precision::F16;
        let keep_f32 = if f16 { phase_values(graph) } else { Vec::new() };
        let float = if f16 { GDType::F16 } else { GDType::F32 };
        Self { float, keep_f32 }
    }

    /// f32 or f16 for floats and booleans (0/1), i32 for integers.
    pub fn of(&self, graph: &Graph, v: ValueId) -> GDType {
        let value = &graph.values[v];
        let dtype = value.ty.as_ref().map_or(DType::F32, |t| t.dtype);
        let constant = value.constant.as_deref();
        match super::device_dtype(dtype) {
            GDType::F32 if self.float == GDType::F16 => {
                let kept = self.keep_f32.get(v).copied().unwrap_or(false);
                let overflows = constant.is_some_and(|c| !fits_f16(c));
                if kept || overflows {
                    GDType::F32
                } else {
                    GDType::F16
                }
            }
            other => other,
        }
    }
}

/// Whether every finite value of `c` is within f16's range.
fn fits_f16(c: &crate::tensor::Tensor) -> bool {
    c.f32s().iter().all(|x| !x.is_finite() || x.abs() <= 65504.0)
}

/// Values that feed a Sin or Cos, through any chain of producers (see the module doc).
fn phase_values(graph: &Graph) -> Vec<bool> {
    let mut producer: Vec<Option<usize>> = vec![None; graph.values.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for &o in node.outputs.iter().flatten() {
            producer[o] = Some(i);
        }
    }
    let mut keep = vec![false; graph.values.len()];
    let mut stack: Vec<ValueId> = Vec::new();
    for node in &graph.nodes {
        let trig = matches!(
            &node.op,
            Some(Op::Unary(u)) if matches!(
                u.kind,
                crate::ops::elementwise::unary::UnaryKind::Sin | crate::ops::elementwise::unary::UnaryKind::Cos
            )
        );
        if trig {
            stack.extend(node.inputs.iter().flatten().copied());
        }
    }
    while let Some(v) = stack.pop() {
        if std::mem::replace(&mut keep[v], true) {
            continue;
        }
        if let Some(p) = producer[v] {
            stack.extend(graph.nodes[p].inputs.iter().flatten().copied());
        }
    }
    keep
}
