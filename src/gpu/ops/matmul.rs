//! Batched matmul / Gemm with broadcasting, alpha/beta, bias, fused activation and f32, f16 or
//! int8 (per-output-channel scales) weights. Transposed operands are just strides (Gemm transA/B,
//! torch's Linear weight [out, in]).

use bytemuck::{Pod, Zeroable};

use super::{u32_of, Activation};
use crate::gpu::context::{GpuContext, KernelStyle};
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{workgroup_count, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::{DType, GpuTensor, View};

const OP: &str = "matmul";

/// out = act(alpha * a @ w (* scales) + beta * d + bias). Shapes `[..., M, K] @ [..., K, N]`
/// broadcast in their batch dims like numpy; 1-D operands must be reshaped by the caller.
#[derive(Clone, Debug)]
pub struct MatMul {
    pub a: View,
    /// f32, f16 or i8 (then `scales` is required: one f32 per output column n).
    pub w: View,
    pub scales: Option<GpuTensor>,
    /// One f32 per output column.
    pub bias: Option<GpuTensor>,
    /// Gemm's C, broadcast to the output.
    pub d: Option<View>,
    pub alpha: f32,
    pub beta: f32,
    pub activation: Activation,
    pub out: View,
    /// Added after the activation (a residual connection), broadcast to the output's shape.
    pub residual: Option<View>,
    /// Overrides the adapter's kernel style (tests run both on one adapter).
    pub style: Option<KernelStyle>,
}

impl MatMul {
    pub fn new(a: View, w: View, out: View) -> Self {
        Self {
            a,
            w,
            scales: None,
            bias: None,
            d: None,
            alpha: 1.0,
            beta: 1.0,
            activation: Activation::None,
            out,
            residual: None,
            style: None,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    a_strides: [u32; 4],
    w_strides: [u32; 4],
    o_strides: [u32; 4],
    d_strides: [u32; 4],
    r_strides: [u32; 4],
    offsets: [u32; 4],
    m: u32,
    n: u32,
    k: u32,
    batch1: u32,
    alpha: f32,
    beta: f32,
    act_alpha: f32,
    r_offset: u32,
}

/// The weight-storage part of a variant, shared with conv: key tag and defines.
pub(crate) fn weight_variant(
    ctx: &GpuContext,
    op: &'static str,
    w: &GpuTensor,
    scales: Option<&GpuTensor>,
    v: ShaderVariant,
) -> GpuResult<ShaderVariant> {
    Ok(match (w.dtype(), scales) {
        (DType::F32, None) => v.tag("w=f32").flag("W_F32").define("W_STORE", "f32"),
        (DType::F16, None) if ctx.has_shader_f16() => {
            v.tag("w=f16").flag("W_F16").define("W_STORE", "f16").flag_once("ENABLE_F16")
        }
        (DType::F16, None) => v.tag("w=f16p").flag("W_F16P").define("W_STORE", "u32"),
        (DType::I8, Some(s)) if s.dtype() == DType::F32 => {
            v.tag("w=i8").flag("W_I8").define("W_STORE", "u32")
        }
        (DType::I8, _) => {
            return Err(GpuError::Unsupported {
                op,
                message: format!("int8 weights '{}' need f32 per-channel scales", w.name()),
            })
        }
        (dt, Some(_)) => {
            return Err(GpuError::Unsupported {
                op,
                message: format!("scales given for {} weights", dt.name()),
            })
        }
        (dt, None) => {
            return Err(GpuError::Unsupported { op, message: format!("weights of type {}", dt.name()) })
        }
    })
}

/// The arithmetic part of the key: `f32` (products and sums are f32 in every variant, f16
/// operands are converted on load); then `a=`/`out=` where activations or output are stored in
/// another type.
fn element_types(a: &GpuTensor, out: &GpuTensor, vec4: bool) -> ShaderVariant {
    let mut v = ShaderVariant::new(OP).tag("f32");
    let a_type = if vec4 { format!("vec4<{}>", a.dtype().name()) } else { a.dtype().name().to_string() };
    v = v.define("A_T", a_type).define("OUT_T", out.dtype().name());
    if a.dtype() != DType::F32 {
        v = v.tag(&format!("a={}", a.dtype().name()));
    }
    if out.dtype() != DType::F32 {
        v = v.tag(&format!("out={}", out.dtype().name()));
    }
    if a.dtype() == DType::F16 || out.dtype() == DType::F16 {
        v = v.flag_once("ENABLE_F16");
    }
    v
}

/// Whether the vec4 register-blocked path applies: f32 or f16 activations, A contiguous along K, W
/// contiguous along N (`Some(true)`) or K (`Some(false)`), K (and N for W along N) multiples of
/// 4, and every other stride and offset a multiple of 4, so that vec4 indices are exact.
fn vec4_layout(
    a: &View,
    w: &View,
    batch_strides: &[Vec<usize>],
    k: usize,
    n: usize,
    r: usize,
) -> Option<bool> {
    if !matches!(a.tensor.dtype(), DType::F32 | DType::F16) || !k.is_multiple_of(4) {
        return None;
    }
    let aligned = |vals: &[usize]| vals.iter().all(|v| v % 4 == 0);
    let (sam, sak) = (a.strides[r - 2], a.strides[r - 1]);
    let (swk, swn) = (w.strides[r - 2], w.strides[r - 1]);
    if sak != 1
        || !aligned(&[sam, a.offset, w.offset])
        || !aligned(&batch_strides[0])
        || !aligned(&batch_strides[1])
    {
        return None;
    }
    if swn == 1 && n.is_multiple_of(4) && swk % 4 == 0 {
        Some(true)
    } else if swk == 1 && swn % 4 == 0 {
        Some(false)
    } else {
        None
    }
}

/// Merges batch dims that are contiguous in every view, so any rank fits two batch dims.
fn collapse_batch(dims: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_dims: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for (d, &n) in dims.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let mergeable = !out_dims.is_empty()
            && strides.iter().zip(&out_strides).all(|(s, o)| *o.last().unwrap_or(&0) == s[d] * n);
        if mergeable {
            *out_dims.last_mut().unwrap_or(&mut 0) *= n;
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                if let Some(last) = o.last_mut() {
                    *last = s[d];
                }
            }
        } else {
            out_dims.push(n);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    (out_dims, out_strides)
}

pub fn matmul(b: &mut ProgramBuilder, mm: &MatMul) -> GpuResult<()> {
    let ctx = b.context();
    let r = mm.out.shape.len();
    if r < 2 || mm.a.shape.len() < 2 || mm.w.shape.len() < 2 {
        return Err(shape_err(OP, "operands and output need rank >= 2 (reshape vectors to [1, K] / [K, 1])"));
    }
    let (m, n) = (mm.out.shape[r - 2], mm.out.shape[r - 1]);
    let k = mm.a.shape[mm.a.shape.len() - 1];
    let batch = &mm.out.shape[..r - 2];
    let a = mm.a.broadcast_to(&[batch, &[m, k]].concat()).map_err(|_| {
        shape_err(OP, format!("a {:?} does not fit output {:?} with K = {k}", mm.a.shape, mm.out.shape))
    })?;
    let w = mm.w.broadcast_to(&[batch, &[k, n]].concat()).map_err(|_| {
        shape_err(OP, format!("w {:?} does not fit [.., {k}, {n}] for output {:?}", mm.w.shape, mm.out.shape))
    })?;
    let d = mm.d.as_ref().map(|d| d.broadcast_to(&mm.out.shape)).transpose()?;
    let res = mm.residual.as_ref().map(|r| r.broadcast_to(&mm.out.shape)).transpose()?;
    for v in [&a, &w, &mm.out].into_iter().chain(d.as_ref()).chain(res.as_ref()) {
        v.check(OP)?;
    }
    // Activations and output: f32, or f16 storage where the adapter has shader-f16; the
    // arithmetic is f32 either way.
    for t in [&a.tensor, &mm.out.tensor] {
        let native_f16 = t.dtype() == DType::F16 && ctx.has_shader_f16();
        if t.dtype() != DType::F32 && !native_f16 {
            return Err(GpuError::Unsupported {
                op: OP,
                message: format!(
                    "'{}' is {}: activations are f32 (or f16 with shader-f16)",
                    t.name(),
                    t.dtype().name()
                ),
            });
        }
    }
    for (name, t) in [("bias", &mm.bias), ("scales", &mm.scales)] {
        if let Some(t) = t {
            if t.len() < n || t.dtype() != DType::F32 {
                return Err(shape_err(OP, format!("{name} '{}' needs {n} f32 values", t.name())));
            }
        }
    }
    // Batch dims: [a, w, out, d, residual] strides (those present), collapsed to at most two.
    let views: Vec<&View> = [&a, &w, &mm.out].into_iter().chain(d.as_ref()).chain(res.as_ref()).collect();
    let strides: Vec<Vec<usize>> = views.iter().map(|v| v.strides[..r - 2].to_vec()).collect();
    let (bdims, bstrides) = collapse_batch(batch, &strides);
    if bdims.len() > 2 {
        return Err(GpuError::Unsupported {
            op: OP,
            message: format!("batch dims {batch:?} do not collapse to two; make an operand contiguous first"),
        });
    }
    let pad2 = |v: &[usize]| -> Vec<usize> { [vec![0; 2 - v.len()], v.to_vec()].concat() };
    let dims2 = [vec![1; 2 - bdims.len()], bdims.clone()].concat();
    let four = |bs: &[usize], x: usize, y: usize| -> GpuResult<[u32; 4]> {
        let bs = pad2(bs);
        Ok([u32_of(OP, bs[0])?, u32_of(OP, bs[1])?, u32_of(OP, x)?, u32_of(OP, y)?])
    };
    let st = |v: &View, i: usize| v.strides[r - 2 + i];
    let params = Params {
        a_strides: four(&bstrides[0], st(&a, 0), st(&a, 1))?,
        w_strides: four(&bstrides[1], st(&w, 0), st(&w, 1))?,
        o_strides: four(&bstrides[2], st(&mm.out, 0), st(&mm.out, 1))?,
        d_strides: match &d {
            Some(d) => four(&bstrides[3], st(d, 0), st(d, 1))?,
            None => [0; 4],
        },
        r_strides: match &res {
            Some(r) => four(&bstrides[views.len() - 1], st(r, 0), st(r, 1))?,
            None => [0; 4],
        },
        offsets: [
            u32_of(OP, a.offset)?,
            u32_of(OP, w.offset)?,
            u32_of(OP, mm.out.offset)?,
            u32_of(OP, d.as_ref().map_or(0, |d| d.offset))?,
        ],
        m: u32_of(OP, m)?,
        n: u32_of(OP, n)?,
        k: u32_of(OP, k)?,
        batch1: u32_of(OP, dims2[1])?,
        alpha: mm.alpha,
        beta: mm.beta,
        act_alpha: mm.activation.alpha(),
        r_offset: u32_of(OP, res.as_ref().map_or(0, |r| r.offset))?,
    };
    let style = mm.style.unwrap_or(ctx.style());
    let vec4 =
        if style == KernelStyle::RegisterBlocked { vec4_layout(&a, &w, &bstrides, k, n, r) } else { None };
    let types = element_types(&a.tensor, &mm.out.tensor, vec4.is_some());
    let mut variant = match (vec4, w.tensor.dtype()) {
        // f32 and native f16 weights bound as vec4 arrays; packed f16 and int8 read whole words.
        (Some(_), DType::F32) => types.tag("w=f32").flag("W_VEC4").define("W_STORE", "vec4<f32>"),
        (Some(_), DType::F16) if ctx.has_shader_f16() => {
            types.tag("w=f16").flag("W_F16V").define("W_STORE", "vec4<f16>").flag_once("ENABLE_F16")
        }
        _ => weight_variant(ctx, OP, &w.tensor, mm.scales.as_ref(), types)?,
    };
    let mut reads = vec![&a.tensor, &w.tensor];
    let mut binding = 3;
    let mut bind = |v: ShaderVariant, name: &str| {
        let v = v.define(name, binding);
        binding += 1;
        v
    };
    if let Some(s) = &mm.scales {
        variant = bind(variant, "BIND_SCALES");
        reads.push(s);
    }
    if let Some(bias) = &mm.bias {
        variant = bind(variant.tag("bias").flag("HAS_BIAS"), "BIND_BIAS");
        reads.push(bias);
    }
    if let Some(d) = &d {
        let v = super::float_storage(ctx, OP, variant.tag("beta").flag("HAS_D"), "D_T", "d", &d.tensor)?;
        variant = bind(v, "BIND_D");
        reads.push(&d.tensor);
    }
    if let Some(r) = &res {
        let v =
            super::float_storage(ctx, OP, variant.tag("residual").flag("HAS_RES"), "R_T", "r", &r.tensor)?;
        variant = bind(v, "BIND_RES");
        reads.push(&r.tensor);
    }
    variant = bind(variant, "BIND_OUT");
    // One invocation's K loop: every k (RB4X4), every fourth (RB4X4V), or per tile of 16 one
    // step plus its 16 inner ones (TILED, whose inner loop of constant trips may stay a loop);
    // the epilogue's 4x4 store loops have constant trips.
    let k = k as u64;
    let loops = match (style, vec4) {
        (KernelStyle::RegisterBlocked, Some(_)) => k / 4,
        (KernelStyle::RegisterBlocked, None) => k,
        (KernelStyle::Tiled, _) => k.div_ceil(16) * 17,
    };
    // 8-lane subgroups share A's loads (8 rows per workgroup, while they fit one grid dim).
    let subgroups8 =
        ctx.fixed_subgroup_size() == Some(8) && m.div_ceil(8) <= crate::gpu::program::MAX_WORKGROUPS as usize;
    let (variant, per_group) = match (style, vec4) {
        (KernelStyle::RegisterBlocked, Some(along_n)) if subgroups8 => {
            let v = variant.tag(if along_n { "sg8.wn" } else { "sg8.wk" }).flag("SG8");
            let v = if along_n { v.flag("W_ALONG_N") } else { v };
            let out = &mm.out;
            let rows_of_vec4 = st(out, 1) == 1
                && n % 4 == 0
                && [st(out, 0), out.offset].iter().chain(&bstrides[2]).all(|s| s % 4 == 0);
            (if rows_of_vec4 { v.tag("out4").flag("OUT_VEC4") } else { v }, [32, 8])
        }
        (KernelStyle::RegisterBlocked, Some(along_n)) => {
            let v = variant.tag(if along_n { "rb4x4v.wn" } else { "rb4x4v.wk" }).flag("RB4X4V");
            let v = if along_n { v.flag("W_ALONG_N") } else { v };
            (v.tag("wg8x8").define("WGX", 8).define("WGY", 8), [32, 32])
        }
        (KernelStyle::RegisterBlocked, None) => {
            (variant.tag("rb4x4.wg8x8").flag("RB4X4").define("WGX", 8).define("WGY", 8), [32, 32])
        }
        (KernelStyle::Tiled, _) => (variant.tag("tiled64.wg16x16").flag("TILED"), [64, 64]),
    };
    let variant = mm.activation.apply_to(variant);
    let groups = [
        workgroup_count(n.div_ceil(per_group[0])),
        workgroup_count(m.div_ceil(per_group[1])),
        workgroup_count(dims2[0] * dims2[1]),
    ];
    b.push(variant, &params, &reads, &[&mm.out.tensor], groups, loops)
}
