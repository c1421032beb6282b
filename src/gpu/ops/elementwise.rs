//! Elementwise unary/binary/ternary ops with numpy broadcasting through strides.
//! Booleans are f32 0.0/1.0 (comparisons return them; `Where` and logic ops take nonzero as true).

use bytemuck::{Pod, Zeroable};

use super::{dims8, float_storage, u32_of, MAX_RANK, WG_LINEAR};
use crate::gpu::error::{GpuError, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::{coalesce, DType, View};
use crate::gpu::KernelStyle;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Identity,
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    Exp,
    Log,
    Sin,
    Cos,
    Tanh,
    Erf,
    Sigmoid,
    Relu,
    LeakyRelu(f32),
    Gelu,
    GeluTanh,
    Softplus,
    Silu,
    Clip(f32, f32),
    Not,
    /// 1 where the value is in a chosen class (IsNaN, IsInf); the flags reach the shader as alpha/beta.
    FloatClass {
        nan: bool,
        positive_infinity: bool,
        negative_infinity: bool,
    },
    Floor,
    Ceil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// C's fmod: the sign of the dividend.
    Fmod,
    /// Python's %: the sign of the divisor.
    Mod,
    Min,
    Max,
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ternary {
    /// `a != 0 ? b : c`
    Where,
}

impl Unary {
    fn name_expr(self) -> (&'static str, &'static str) {
        match self {
            Unary::Identity => ("identity", "a"),
            Unary::Neg => ("neg", "-a"),
            Unary::Abs => ("abs", "abs(a)"),
            Unary::Sqrt => ("sqrt", "sqrt(a)"),
            Unary::Reciprocal => ("reciprocal", "1.0 / a"),
            Unary::Exp => ("exp", "exp(a)"),
            Unary::Log => ("log", "log(a)"),
            Unary::Sin => ("sin", "sin_f(a)"),
            Unary::Cos => ("cos", "cos_f(a)"),
            Unary::Tanh => ("tanh", "tanh_f(a)"),
            Unary::Erf => ("erf", "erf_f(a)"),
            Unary::Sigmoid => ("sigmoid", "sigmoid_f(a)"),
            Unary::Relu => ("relu", "max(a, 0.0)"),
            Unary::LeakyRelu(_) => ("leakyrelu", "select(alpha * a, a, a >= 0.0)"),
            Unary::Gelu => ("gelu", "0.5 * a * (1.0 + erf_f(a * 0.7071067811865476))"),
            Unary::GeluTanh => {
                ("gelutanh", "0.5 * a * (1.0 + tanh_f(0.7978845608028654 * (a + 0.044715 * a * a * a)))")
            }
            // log(1 + e^a) without overflow: max(a, 0) + log(1 + e^-|a|).
            Unary::Softplus => ("softplus", "max(a, 0.0) + log(1.0 + exp(-abs(a)))"),
            Unary::Silu => ("silu", "a * sigmoid_f(a)"),
            Unary::Clip(..) => ("clip", "min(max(a, alpha), beta)"),
            Unary::Not => ("not", "select(0.0, 1.0, a == 0.0)"),
            // On the bits: compilers may fold `a != a` away under fast-math assumptions.
            Unary::FloatClass { .. } => (
                "floatclass",
                "select(0.0, 1.0, (alpha != 0.0 && (bitcast<u32>(f32(a)) & 0x7fffffffu) > 0x7f800000u) \
                 || ((u32(beta) & 1u) != 0u && bitcast<u32>(f32(a)) == 0x7f800000u) \
                 || ((u32(beta) & 2u) != 0u && bitcast<u32>(f32(a)) == 0xff800000u))",
            ),
            Unary::Floor => ("floor", "floor(a)"),
            Unary::Ceil => ("ceil", "ceil(a)"),
        }
    }
    fn scalars(self) -> (f32, f32) {
        match self {
            Unary::LeakyRelu(a) => (a, 0.0),
            Unary::Clip(lo, hi) => (lo, hi),
            Unary::FloatClass { nan, positive_infinity, negative_infinity } => {
                (nan as u8 as f32, (positive_infinity as u8 + 2 * negative_infinity as u8) as f32)
            }
            _ => (0.0, 0.0),
        }
    }
}

impl Binary {
    fn name_expr(self) -> (&'static str, &'static str) {
        match self {
            Binary::Add => ("add", "a + b"),
            Binary::Sub => ("sub", "a - b"),
            Binary::Mul => ("mul", "a * b"),
            Binary::Div => ("div", "a / b"),
            Binary::Pow => ("pow", "pow_f(a, b)"),
            Binary::Fmod => ("fmod", "a - b * trunc(a / b)"),
            Binary::Mod => ("mod", "a - b * floor(a / b)"),
            Binary::Min => ("min", "min(a, b)"),
            Binary::Max => ("max", "max(a, b)"),
            Binary::Equal => ("equal", "select(0.0, 1.0, a == b)"),
            Binary::Less => ("less", "select(0.0, 1.0, a < b)"),
            Binary::LessOrEqual => ("lessorequal", "select(0.0, 1.0, a <= b)"),
            Binary::Greater => ("greater", "select(0.0, 1.0, a > b)"),
            Binary::GreaterOrEqual => ("greaterorequal", "select(0.0, 1.0, a >= b)"),
            Binary::And => ("and", "select(0.0, 1.0, a != 0.0 && b != 0.0)"),
            Binary::Or => ("or", "select(0.0, 1.0, a != 0.0 || b != 0.0)"),
            Binary::Xor => ("xor", "select(0.0, 1.0, (a != 0.0) != (b != 0.0))"),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    shape: [u32; 8],
    out_strides: [u32; 8],
    a_strides: [u32; 8],
    b_strides: [u32; 8],
    c_strides: [u32; 8],
    offsets: [u32; 4],
    total: u32,
    rank: u32,
    alpha: f32,
    beta: f32,
}

const OP: &str = "elementwise";

pub fn unary(b: &mut ProgramBuilder, op: Unary, x: &View, out: &View) -> GpuResult<()> {
    let (name, expr) = op.name_expr();
    let (alpha, beta) = op.scalars();
    launch(b, name, expr, &[x], out, alpha, beta)
}

pub fn binary(b: &mut ProgramBuilder, op: Binary, x: &View, y: &View, out: &View) -> GpuResult<()> {
    let (name, expr) = op.name_expr();
    launch(b, name, expr, &[x, y], out, 0.0, 0.0)
}

pub fn ternary(
    b: &mut ProgramBuilder,
    op: Ternary,
    cond: &View,
    x: &View,
    y: &View,
    out: &View,
) -> GpuResult<()> {
    let Ternary::Where = op;
    launch(b, "where", "select(c, b, a != 0.0)", &[cond, x, y], out, 0.0, 0.0)
}

/// Broadcasts every input to `out.shape` and records one dispatch.
fn launch(
    b: &mut ProgramBuilder,
    name: &str,
    expr: &str,
    inputs: &[&View],
    out: &View,
    alpha: f32,
    beta: f32,
) -> GpuResult<()> {
    out.check(OP)?;
    let dtype = out.tensor.dtype();
    let mut views = Vec::new();
    for v in inputs {
        let bv = v.broadcast_to(&out.shape)?;
        bv.check(OP)?;
        views.push(bv);
    }
    let all: Vec<&[usize]> =
        std::iter::once(&out.strides[..]).chain(views.iter().map(|v| &v.strides[..])).collect();
    let (mut shape, mut st) = coalesce(&out.shape, &all);
    if shape.is_empty() {
        // One element: the kernel walks runs along a last dimension.
        (shape, st) = (vec![1], vec![vec![0]; all.len()]);
    }
    if shape.len() > MAX_RANK {
        return Err(GpuError::Unsupported {
            op: OP,
            message: format!(
                "shape {:?} has rank {} after merging contiguous dims (at most {MAX_RANK})",
                out.shape,
                shape.len()
            ),
        });
    }
    let mut strides = [[0u32; 8]; 3];
    let mut offsets = [u32_of(OP, out.offset)?, 0, 0, 0];
    for (i, v) in views.iter().enumerate() {
        strides[i] = dims8(OP, &st[i + 1])?;
        offsets[i + 1] = u32_of(OP, v.offset)?;
    }
    let total = out.numel();
    let params = Params {
        shape: dims8(OP, &shape)?,
        out_strides: dims8(OP, &st[0])?,
        a_strides: strides[0],
        b_strides: strides[1],
        c_strides: strides[2],
        offsets,
        total: u32_of(OP, total)?,
        rank: shape.len() as u32,
        alpha,
        beta,
    };
    let arity = inputs.len();
    // Storage types: the output's names the key (`elementwise.f16.add`); an input of another
    // type adds `a=f32` etc. Each is f32, or f16 where the adapter has shader-f16.
    let ctx = b.context();
    let mut variant = float_storage(ctx, OP, ShaderVariant::new(OP).tag(dtype.name()), "T", "", &out.tensor)?;
    for (v, (name, letter)) in views.iter().zip([("A_T", "a"), ("B_T", "b"), ("C_T", "c")]) {
        variant = float_storage(ctx, OP, variant, name, "", &v.tensor)?;
        if v.tensor.dtype() != dtype {
            variant = variant.tag(&format!("{letter}={}", v.tensor.dtype().name()));
        }
    }
    variant = variant.tag(name).define("OP", expr).define("WG", WG_LINEAR);
    variant = variant.define("OUT_BINDING", arity + 1).define("ACT", "x");
    if arity > 1 {
        variant = variant.flag(if arity == 2 { "ARITY2" } else { "ARITY3" });
    }
    let blocked = b.context().style() == KernelStyle::RegisterBlocked;
    let reads: Vec<_> = views.iter().map(|v| &v.tensor).collect();
    let types: Vec<DType> = views.iter().map(|v| v.tensor.dtype()).collect();
    if let Some(variant) = flat4(variant.clone(), &types, &shape, &st, &offsets) {
        // Four vectors (16 elements) per invocation on CPU adapters, one on GPUs.
        let run = if blocked { 4 } else { 1 };
        let variant =
            variant.define("RUN", format!("{run}u")).tag(&format!("wg{WG_LINEAR}")).tag(&format!("run{run}"));
        let invocations = (total / 4).div_ceil(run);
        // No loop but the run's.
        let groups = linear_workgroups(invocations, WG_LINEAR);
        return b.push(variant, &params, &reads, &[&out.tensor], groups, run as u64);
    }
    // Runs of 16 elements per invocation for CPU adapters' register-blocked style (see
    // elementwise.wgsl), one element on GPUs.
    let run = if blocked { 16 } else { 1 };
    let variant =
        variant.define("RUN", format!("{run}u")).tag(&format!("wg{WG_LINEAR}")).tag(&format!("run{run}"));
    let n_last = shape[shape.len() - 1];
    let invocations = if total == 0 { 0 } else { total / n_last * n_last.div_ceil(run) };
    // The outer dims (at most MAX_RANK - 1 trips) and the run.
    let loops = (MAX_RANK + run) as u64;
    b.push(variant, &params, &reads, &[&out.tensor], linear_workgroups(invocations, WG_LINEAR), loops)
}

/// The whole-vector variant, when the merged shape is one flat run that the output and every
/// input either walk contiguously (4-aligned) or take from a single element.
fn flat4(
    mut variant: ShaderVariant,
    input_types: &[DType],
    shape: &[usize],
    strides: &[Vec<usize>],
    offsets: &[u32; 4],
) -> Option<ShaderVariant> {
    let n = shape.iter().product::<usize>();
    if shape.len() != 1 || n % 4 != 0 || strides[0][0] != 1 || !offsets[0].is_multiple_of(4) {
        return None;
    }
    variant = variant.tag("flat4").flag("FLAT4");
    if strides.len() > 2 {
        variant = variant.flag("HAS_B");
    }
    for (i, (s, &offset)) in strides[1..].iter().zip(&offsets[1..]).enumerate() {
        let (letter, store) = (["A", "B", "C"][i], format!("{}_STORE", ["A", "B", "C"][i]));
        let dtype = input_types[i];
        let vector = format!("vec4<{}>", dtype.name());
        variant = match s[0] {
            1 if offset % 4 == 0 => variant.define(&store, &vector),
            0 => variant
                .tag(&format!("{}1", letter.to_lowercase()))
                .flag(&format!("{letter}_SPLAT"))
                .define(&store, dtype.name()),
            _ => return None,
        };
    }
    Some(variant)
}
