//! LayerNormalization and Group/InstanceNormalization with the affine part and an optional
//! fused activation (SiLU after GroupNorm in every UNet resnet block). BatchNormalization in
//! inference is a per-channel multiply-add: lower it to `elementwise` with broadcast views.

use bytemuck::{Pod, Zeroable};

use super::{float_storage, u32_of, Activation, WG_LINEAR};
use crate::gpu::context::KernelStyle;
use crate::gpu::error::{shape_err, GpuResult};
use crate::gpu::program::{linear_workgroups, ProgramBuilder, MAX_WORKGROUPS};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::{DType, GpuTensor};

/// gamma (scale) and beta (shift), one per normalised element (layer norm) or channel (group norm).
#[derive(Clone, Debug)]
pub struct Affine {
    pub gamma: GpuTensor,
    pub beta: GpuTensor,
}

/// FiLM / adaLN conditioning after a norm's affine part and before its activation:
/// `y * scale + shift`, one value of each per (row, channel) where the row is the norm's batch
/// item (group norm) or row (layer norm) divided by `n_div`, read through `[row, channel]`
/// strides (0 where it broadcasts).
#[derive(Clone, Debug)]
pub struct Modulation {
    pub scale: GpuTensor,
    pub shift: GpuTensor,
    pub n_div: usize,
    pub scale_strides: [usize; 2],
    pub shift_strides: [usize; 2],
}

impl Modulation {
    /// Binds scale and shift after the bindings so far (`binding` is the next free one).
    fn bind<'t>(
        &'t self,
        b: &ProgramBuilder,
        op: &'static str,
        variant: ShaderVariant,
        reads: &mut Vec<&'t GpuTensor>,
        binding: usize,
    ) -> GpuResult<ShaderVariant> {
        if self.n_div == 0 {
            return Err(shape_err(op, "modulation rows of 0 items"));
        }
        let v = float_storage(
            b.context(),
            op,
            variant.tag("modulated").flag("MODULATE"),
            "M_T",
            "m",
            &self.scale,
        )?;
        if self.shift.dtype() != self.scale.dtype() {
            return Err(shape_err(op, "modulation scale and shift need one storage type"));
        }
        reads.extend([&self.scale, &self.shift]);
        Ok(v.define("BIND_SCALE", binding).define("BIND_SHIFT", binding + 1))
    }

    fn params(m: Option<&Modulation>, op: &'static str) -> GpuResult<(u32, [u32; 2], [u32; 2])> {
        let Some(m) = m else { return Ok((1, [0; 2], [0; 2])) };
        let two = |s: [usize; 2]| -> GpuResult<[u32; 2]> { Ok([u32_of(op, s[0])?, u32_of(op, s[1])?]) };
        Ok((u32_of(op, m.n_div)?, two(m.scale_strides)?, two(m.shift_strides)?))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LayerParams {
    rows: u32,
    d: u32,
    eps: f32,
    act_alpha: f32,
    n_div: u32,
    _pad: u32,
    scale_strides: [u32; 2],
    shift_strides: [u32; 2],
    _pad2: [u32; 2],
}

/// Normalises each of `rows` rows of `d` contiguous elements (ONNX LayerNormalization with
/// axis = the first normalised dim; rows = product of the dims before it).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    b: &mut ProgramBuilder,
    x: &GpuTensor,
    rows: usize,
    d: usize,
    affine: Option<&Affine>,
    eps: f32,
    activation: Activation,
    out: &GpuTensor,
) -> GpuResult<()> {
    layer_norm_modulated(b, x, rows, d, affine, eps, None, activation, out)
}

/// [`layer_norm`] with a [`Modulation`] between the affine part and the activation (rows of
/// the modulation: `row / n_div`, channels: the `d` elements). On GPUs (`KernelStyle::Tiled`) the
/// rows run as one group each of a group norm over `[rows, d, 1]` (its per-"channel" gamma and
/// beta are per element here): a workgroup reduces each row and every element is written by its
/// own invocation, coalesced; one invocation per row suits CPU adapters.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_modulated(
    b: &mut ProgramBuilder,
    x: &GpuTensor,
    rows: usize,
    d: usize,
    affine: Option<&Affine>,
    eps: f32,
    modulation: Option<&Modulation>,
    activation: Activation,
    out: &GpuTensor,
) -> GpuResult<()> {
    const OP: &str = "layer_norm";
    // One invocation per row walks it three times (mean, variance, output); rows over the
    // adapter's loop limit (llvmpipe) take the workgroup-per-row form too.
    let per_invocation = 3 * d as u64;
    if (b.context().style() == KernelStyle::Tiled || !b.loops_fit(per_invocation)) && d > 0 {
        return group_norm_modulated(b, x, &[rows, d, 1], 1, affine, eps, modulation, activation, out);
    }
    if x.len() != rows * d || out.len() != rows * d || d == 0 {
        return Err(shape_err(
            OP,
            format!("{rows} rows of {d}: input {} and output {} elements", x.len(), out.len()),
        ));
    }
    let mut reads = vec![x];
    let mut variant = ShaderVariant::new("layernorm").tag("f32");
    variant = float_storage(b.context(), OP, variant, "X_T", "x", x)?;
    variant = float_storage(b.context(), OP, variant, "OUT_T", "out", out)?;
    if let Some(a) = affine {
        if a.gamma.len() < d
            || a.beta.len() < d
            || a.gamma.dtype() != DType::F32
            || a.beta.dtype() != DType::F32
        {
            return Err(shape_err(OP, format!("gamma and beta need {d} f32 values each")));
        }
        variant = variant.tag("affine").flag("AFFINE");
        reads.extend([&a.gamma, &a.beta]);
    }
    if let Some(m) = modulation {
        let next = reads.len() + 1;
        variant = m.bind(b, OP, variant, &mut reads, next)?;
    }
    let variant = variant.define("BIND_OUT", reads.len() + 1);
    let variant = activation.apply_to(variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR));
    let (n_div, scale_strides, shift_strides) = Modulation::params(modulation, OP)?;
    let params = LayerParams {
        rows: u32_of(OP, rows)?,
        d: u32_of(OP, d)?,
        eps,
        act_alpha: activation.alpha(),
        n_div,
        _pad: 0,
        scale_strides,
        shift_strides,
        _pad2: [0; 2],
    };
    b.push(variant, &params, &reads, &[out], linear_workgroups(rows, WG_LINEAR), per_invocation)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GroupParams {
    n: u32,
    c: u32,
    s: u32,
    groups: u32,
    eps: f32,
    act_alpha: f32,
    total: u32,
    n_div: u32,
    scale_strides: [u32; 2],
    shift_strides: [u32; 2],
}

/// GroupNormalization of contiguous x [N, C, *spatial] (`groups == C` is InstanceNormalization),
/// affine per channel, then `activation`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    b: &mut ProgramBuilder,
    x: &GpuTensor,
    shape: &[usize],
    groups: usize,
    affine: Option<&Affine>,
    eps: f32,
    activation: Activation,
    out: &GpuTensor,
) -> GpuResult<()> {
    group_norm_modulated(b, x, shape, groups, affine, eps, None, activation, out)
}

/// [`group_norm`] with a [`Modulation`] between the affine part and the activation (rows of
/// the modulation: batch item / `n_div`, channels: C).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_modulated(
    b: &mut ProgramBuilder,
    x: &GpuTensor,
    shape: &[usize],
    groups: usize,
    affine: Option<&Affine>,
    eps: f32,
    modulation: Option<&Modulation>,
    activation: Activation,
    out: &GpuTensor,
) -> GpuResult<()> {
    const OP: &str = "group_norm";
    if shape.len() < 2 || groups == 0 || !shape[1].is_multiple_of(groups) {
        return Err(shape_err(
            OP,
            format!("shape {shape:?} with {groups} groups: need [N, C, ...] with C divisible by groups"),
        ));
    }
    let (n, c) = (shape[0], shape[1]);
    let s: usize = shape[2..].iter().product();
    let total = n * c * s;
    if x.len() != total || out.len() != total {
        return Err(shape_err(
            OP,
            format!("input {} and output {} elements, shape {shape:?}", x.len(), out.len()),
        ));
    }
    let stats = b.scratch("group_norm.stats", DType::F32, n * groups * 2)?;
    let (n_div, scale_strides, shift_strides) = Modulation::params(modulation, OP)?;
    let params = GroupParams {
        n: u32_of(OP, n)?,
        c: u32_of(OP, c)?,
        s: u32_of(OP, s)?,
        groups: u32_of(OP, groups)?,
        eps,
        act_alpha: activation.alpha(),
        total: u32_of(OP, total)?,
        n_div,
        scale_strides,
        shift_strides,
    };
    let ng = n * groups;
    let stats_groups =
        [ng.min(MAX_WORKGROUPS as usize) as u32, ng.div_ceil(MAX_WORKGROUPS as usize) as u32, 1];
    let stats_variant = ShaderVariant::new("groupnorm").tag("f32.stats").flag("STATS").define("ACT", "x");
    let mut stats_variant = float_storage(b.context(), OP, stats_variant, "X_T", "x", x)?;
    if b.context().has_subgroups() {
        stats_variant = stats_variant.tag("subgroups").flag("SUBGROUPS");
    }
    let stats_variant = stats_variant.tag("wg64");
    // Two passes over every 64th element of a group, each ending in a workgroup reduction: a
    // loop over the subgroups (at most 64), or a 6-step tree.
    let tree = if b.context().has_subgroups() { 64 } else { 6 };
    let loops = 2 * ((c / groups * s) as u64).div_ceil(64) + 2 * tree;
    b.push(stats_variant, &params, &[x], &[&stats], stats_groups, loops)?;
    let mut reads = vec![x, &stats];
    let variant = ShaderVariant::new("groupnorm").tag("f32.apply").flag("APPLY");
    let variant = float_storage(b.context(), OP, variant, "X_T", "x", x)?;
    let mut variant = float_storage(b.context(), OP, variant, "OUT_T", "out", out)?;
    if let Some(a) = affine {
        if a.gamma.len() < c
            || a.beta.len() < c
            || a.gamma.dtype() != DType::F32
            || a.beta.dtype() != DType::F32
        {
            return Err(shape_err(OP, format!("gamma and beta need {c} f32 values each")));
        }
        variant = variant.tag("affine").flag("AFFINE");
        reads.extend([&a.gamma, &a.beta]);
    }
    if let Some(m) = modulation {
        // Binding 3 is the first after x and the statistics, 5 after gamma and beta.
        let next = reads.len() + 1;
        variant = m.bind(b, OP, variant, &mut reads, next)?;
    }
    let variant = variant.define("BIND_OUT", reads.len() + 1);
    let variant = activation.apply_to(variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR));
    b.push(variant, &params, &reads, &[out], linear_workgroups(total, WG_LINEAR), 0)
}
