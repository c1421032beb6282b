//! Op builders: each records one or more dispatches into a `ProgramBuilder`. One file per kernel
//! family, matching `shaders/<family>.wgsl`. Shapes and strides go into the parameter block,
//! never into the WGSL text.

pub mod attention;
pub mod cast;
pub mod conv;
pub mod copy;
pub mod elementwise;
pub mod fifo;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod resize;

use super::error::{GpuError, GpuResult};
use super::shader::ShaderVariant;

/// Highest tensor rank the strided kernels take (dims travel as two vec4s).
pub const MAX_RANK: usize = 8;

/// Activation fused into an epilogue (matmul, conv, norm). `alpha` is LeakyRelu's slope.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    #[default]
    None,
    Relu,
    LeakyRelu(f32),
    Silu,
    /// Exact GELU (erf), as torch's default.
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
    Sigmoid,
    Tanh,
}

impl Activation {
    pub fn name(self) -> &'static str {
        match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::LeakyRelu(_) => "leakyrelu",
            Activation::Silu => "silu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelutanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }
    /// WGSL expression in `x` and `alpha`.
    pub(crate) fn expr(self) -> &'static str {
        match self {
            Activation::None => "x",
            Activation::Relu => "max(x, 0.0)",
            Activation::LeakyRelu(_) => "select(alpha * x, x, x >= 0.0)",
            Activation::Silu => "x * sigmoid_f(x)",
            Activation::Gelu => "0.5 * x * (1.0 + erf_f(x * 0.7071067811865476))",
            Activation::GeluTanh => {
                "0.5 * x * (1.0 + tanh_f(0.7978845608028654 * (x + 0.044715 * x * x * x)))"
            }
            Activation::Sigmoid => "sigmoid_f(x)",
            Activation::Tanh => "tanh_f(x)",
        }
    }
    pub(crate) fn alpha(self) -> f32 {
        match self {
            Activation::LeakyRelu(a) => a,
            _ => 0.0,
        }
    }
    /// The CPU meaning, for tests and references.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::GeluTanh => 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh()),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }
    /// Adds the `ACT` define and the `act=` key part.
    pub(crate) fn apply_to(self, v: ShaderVariant) -> ShaderVariant {
        v.define("ACT", self.expr()).tag(&format!("act={}", self.name()))
    }
}

/// Pads dims/strides to the kernels' fixed rank-8 arrays.
pub(crate) fn dims8(op: &'static str, values: &[usize]) -> GpuResult<[u32; 8]> {
    if values.len() > MAX_RANK {
        return Err(GpuError::Unsupported {
            op,
            message: format!("rank {} (at most {MAX_RANK})", values.len()),
        });
    }
    let mut out = [0u32; 8];
    for (o, &v) in out.iter_mut().zip(values) {
        *o = u32_of(op, v)?;
    }
    Ok(out)
}

pub(crate) fn u32_of(op: &'static str, v: usize) -> GpuResult<u32> {
    u32::try_from(v)
        .map_err(|_| GpuError::Unsupported { op, message: format!("index {v} does not fit 32 bits") })
}

/// Workgroup size of the 1-D kernels (one output element per invocation).
pub(crate) const WG_LINEAR: u32 = 64;

/// Binds a float operand's storage type to the WGSL name `name`: `f32`, or `f16` where the
/// adapter has shader-f16 (then the key gains `{part}=f16`, unless `part` is empty, and `enable
/// f16` is set; f32 operands add nothing, so f32 keys stay as they were). Kernels load through `f32(..)` and store through
/// `NAME(..)`: f16 storage with f32 arithmetic unless a kernel says otherwise.
pub(crate) fn float_storage(
    ctx: &super::GpuContext,
    op: &'static str,
    v: ShaderVariant,
    name: &str,
    part: &str,
    t: &super::GpuTensor,
) -> GpuResult<ShaderVariant> {
    use super::DType;
    match t.dtype() {
        DType::F32 => Ok(v.define(name, "f32")),
        DType::F16 if ctx.has_shader_f16() => {
            let v = if part.is_empty() { v } else { v.tag(&format!("{part}=f16")) };
            Ok(v.define(name, "f16").flag_once("ENABLE_F16"))
        }
        DType::F16 => Err(GpuError::Unsupported {
            op,
            message: format!(
                "'{}' is f16 but this adapter has no shader-f16 (f16 activations need it: use precision f32, or cast it to f32)",
                t.name()
            ),
        }),
        other => Err(GpuError::Unsupported {
            op,
            message: format!("'{}' is {}; this kernel takes f32 or f16 values", t.name(), other.name()),
        }),
    }
}
