//! Conv 1-D/2-D/3-D (groups, stride, padding, dilation) as an implicit GEMM with fused bias,
//! int8/f16 weights and activation, and ConvTranspose. 1-D and 2-D run as 3-D with unit dims.

use bytemuck::{Pod, Zeroable};

use super::matmul::{matmul, weight_variant, MatMul};
use super::{float_storage, u32_of, Activation, WG_LINEAR};
use crate::gpu::context::{GpuContext, KernelStyle};
use crate::gpu::error::{shape_err, GpuError, GpuResult};
use crate::gpu::program::{linear_workgroups, nested_loops, workgroup_count, ProgramBuilder};
use crate::gpu::shader::ShaderVariant;
use crate::gpu::tensor::{DType, GpuTensor, View};

/// Window geometry over the spatial dims (1 to 3 of them), shared with pooling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads_begin: Vec<usize>,
    pub pads_end: Vec<usize>,
}

impl Geometry {
    /// Stride 1, dilation 1, no padding.
    pub fn new(kernel: &[usize]) -> Self {
        let r = kernel.len();
        Self {
            kernel: kernel.to_vec(),
            strides: vec![1; r],
            dilations: vec![1; r],
            pads_begin: vec![0; r],
            pads_end: vec![0; r],
        }
    }
    pub fn with_strides(mut self, s: &[usize]) -> Self {
        self.strides = s.to_vec();
        self
    }
    pub fn with_dilations(mut self, d: &[usize]) -> Self {
        self.dilations = d.to_vec();
        self
    }
    pub fn with_pads(mut self, begin: &[usize], end: &[usize]) -> Self {
        self.pads_begin = begin.to_vec();
        self.pads_end = end.to_vec();
        self
    }

    pub(crate) fn check(&self, op: &'static str, spatial: usize) -> GpuResult<()> {
        let r = self.kernel.len();
        let lens = [self.strides.len(), self.dilations.len(), self.pads_begin.len(), self.pads_end.len()];
        if !(1..=3).contains(&r) || r != spatial || lens.iter().any(|&l| l != r) {
            return Err(shape_err(
                op,
                format!("{spatial} spatial dims but geometry {self:?} (1 to 3 dims, all the same length)"),
            ));
        }
        if self.strides.contains(&0) || self.dilations.contains(&0) || self.kernel.contains(&0) {
            return Err(shape_err(op, "kernel, strides and dilations must be positive"));
        }
        Ok(())
    }

    /// Output size of a convolution or pooling (floor mode) over `input` spatial dims.
    pub fn output(&self, input: &[usize]) -> Vec<usize> {
        (0..input.len())
            .map(|d| {
                let span = self.dilations[d] * (self.kernel[d] - 1) + 1;
                let padded = input[d] + self.pads_begin[d] + self.pads_end[d];
                if padded < span {
                    0
                } else {
                    (padded - span) / self.strides[d] + 1
                }
            })
            .collect()
    }

    /// Output size of a transposed convolution (ONNX, output_padding given separately).
    pub fn transposed_output(&self, input: &[usize], output_padding: &[usize]) -> Vec<usize> {
        (0..input.len())
            .map(|d| {
                (self.strides[d] * (input[d] - 1)
                    + output_padding[d]
                    + self.dilations[d] * (self.kernel[d] - 1)
                    + 1)
                .saturating_sub(self.pads_begin[d] + self.pads_end[d])
            })
            .collect()
    }
}

/// Left-pads 1-D/2-D values to 3-D with `fill`.
pub(crate) fn three(v: &[usize], fill: usize) -> [usize; 3] {
    let mut out = [fill; 3];
    out[3 - v.len()..].copy_from_slice(v);
    out
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct WindowParams {
    pub in_dims: [u32; 4],
    pub out_dims: [u32; 4],
    pub kernel: [u32; 4],
    pub stride: [u32; 4],
    pub dilation: [u32; 4],
    pub pad: [u32; 4],
    pub act_alpha: f32,
    /// Strides of the residual over (batch item, output channel, output pixel); conv only.
    pub residual_strides: [u32; 3],
}

/// A convolution: x [N, Cin, *spatial] * w [Cout, Cin/groups, *kernel] -> out [N, Cout, *out_spatial].
#[derive(Clone, Debug)]
pub struct Conv {
    pub x: GpuTensor,
    pub x_shape: Vec<usize>,
    /// f32, f16 or i8 (with `scales`, one per output channel).
    pub w: GpuTensor,
    pub scales: Option<GpuTensor>,
    pub bias: Option<GpuTensor>,
    pub out: GpuTensor,
    pub out_channels: usize,
    pub groups: usize,
    pub geometry: Geometry,
    pub activation: Activation,
    /// `w` holds weights (f32, f16 or int8) re-laid by `pack_weights` (faster: one vec4 load
    /// per tap).
    pub packed_weights: bool,
    /// Overrides the adapter's kernel style (tests and benchmarks run both on one adapter).
    pub style: Option<KernelStyle>,
    /// Added after the activation (a residual connection), broadcast to the output's shape: the
    /// output's own shape, or one value per batch item and channel (`[N or 1, Cout or 1, 1, ..]`,
    /// a time embedding added after the conv).
    pub residual: Option<View>,
}

/// Re-lays conv weights [Cout, Cin/groups, *kernel] (f32, f16 or int8 values) as [groups,
/// Cin/groups * kernel, Cout/groups] for `Conv::packed_weights` (once, when a session loads its
/// weights).
pub fn pack_weights<T: Copy + Default>(w: &[T], out_channels: usize, groups: usize) -> Vec<T> {
    let per = w.len() / out_channels.max(1);
    let cout_g = out_channels / groups.max(1);
    let mut packed = vec![T::default(); w.len()];
    for (co, taps) in w.chunks_exact(per).enumerate() {
        let (g, c) = (co / cout_g, co % cout_g);
        for (t, &v) in taps.iter().enumerate() {
            packed[(g * per + t) * cout_g + c] = v;
        }
    }
    packed
}

impl Conv {
    /// Output shape `[N, Cout, *spatial]`.
    pub fn out_shape(&self) -> Vec<usize> {
        [&self.x_shape[..1], &[self.out_channels], &self.geometry.output(&self.x_shape[2..])[..]].concat()
    }
}

fn check_channels(op: &'static str, cin: usize, cout: usize, groups: usize) -> GpuResult<()> {
    if groups == 0 || !cin.is_multiple_of(groups) || !cout.is_multiple_of(groups) {
        return Err(shape_err(
            op,
            format!("{cin} input and {cout} output channels are not divisible by {groups} groups"),
        ));
    }
    Ok(())
}

fn epilogue_bindings(
    ctx: &GpuContext,
    op: &'static str,
    mut variant: ShaderVariant,
    reads: &mut Vec<GpuTensor>,
    scales: &Option<GpuTensor>,
    bias: &Option<GpuTensor>,
    residual: Option<&GpuTensor>,
) -> GpuResult<ShaderVariant> {
    let mut binding = 3;
    if let Some(s) = scales {
        variant = variant.define("BIND_SCALES", binding);
        reads.push(s.clone());
        binding += 1;
    }
    if let Some(b) = bias {
        variant = variant.tag("bias").flag("HAS_BIAS").define("BIND_BIAS", binding);
        reads.push(b.clone());
        binding += 1;
    }
    if let Some(r) = residual {
        let v = float_storage(ctx, op, variant.tag("residual").flag("HAS_RES"), "R_T", "r", r)?;
        variant = v.define("BIND_RES", binding);
        reads.push(r.clone());
        binding += 1;
    }
    Ok(variant.define("BIND_OUT", binding))
}

fn window_params(
    op: &'static str,
    x_shape: &[usize],
    out_shape: &[usize],
    g: &Geometry,
    groups: usize,
    last: usize,
    act: Activation,
) -> GpuResult<WindowParams> {
    let u4 = |v: [usize; 4]| -> GpuResult<[u32; 4]> {
        Ok([u32_of(op, v[0])?, u32_of(op, v[1])?, u32_of(op, v[2])?, u32_of(op, v[3])?])
    };
    let [d, h, w] = three(&x_shape[2..], 1);
    let [od, oh, ow] = three(&out_shape[2..], 1);
    let [kd, kh, kw] = three(&g.kernel, 1);
    let [sd, sh, sw] = three(&g.strides, 1);
    let [dd, dh, dw] = three(&g.dilations, 1);
    let [pd, ph, pw] = three(&g.pads_begin, 0);
    Ok(WindowParams {
        in_dims: u4([x_shape[1], d, h, w])?,
        out_dims: u4([out_shape[1], od, oh, ow])?,
        kernel: u4([kd, kh, kw, groups])?,
        stride: u4([sd, sh, sw, x_shape[0]])?,
        dilation: u4([dd, dh, dw, 0])?,
        pad: u4([pd, ph, pw, last])?,
        act_alpha: act.alpha(),
        residual_strides: [0; 3],
    })
}

/// The start of a conv variant of kernel `family`: f32 arithmetic, the input's and output's
/// storage types.
fn activation_types(
    ctx: &GpuContext,
    op: &'static str,
    family: &'static str,
    x: &GpuTensor,
    out: &GpuTensor,
) -> GpuResult<ShaderVariant> {
    let v = ShaderVariant::new(family).tag("f32");
    let v = float_storage(ctx, op, v, "X_T", "x", x)?;
    float_storage(ctx, op, v, "OUT_T", "out", out)
}

pub fn conv(b: &mut ProgramBuilder, c: &Conv) -> GpuResult<()> {
    const OP: &str = "conv";
    let ctx = b.context();
    c.geometry.check(OP, c.x_shape.len().saturating_sub(2))?;
    let (cin, cout) = (c.x_shape[1], c.out_channels);
    check_channels(OP, cin, cout, c.groups)?;
    let out_shape = c.out_shape();
    let kvol: usize = c.geometry.kernel.iter().product();
    let expect = [
        (&c.x, c.x_shape.iter().product()),
        (&c.w, cout * cin / c.groups * kvol),
        (&c.out, out_shape.iter().product()),
    ];
    for (t, len) in expect {
        if t.len() != len {
            return Err(shape_err(
                OP,
                format!("'{}' holds {} elements, expected {len} (output {out_shape:?})", t.name(), t.len()),
            ));
        }
    }
    if is_pointwise(ctx, c) {
        return pointwise_as_matmul(b, c, &out_shape);
    }
    let tiled = uses_tiles(c.style.unwrap_or(ctx.style()), cin / c.groups, cout / c.groups);
    let variant = activation_types(ctx, OP, if tiled { "conv_tiled" } else { "conv" }, &c.x, &c.out)?;
    let mut params = window_params(OP, &c.x_shape, &out_shape, &c.geometry, c.groups, 0, c.activation)?;
    let variant = if c.packed_weights {
        if !(cout / c.groups).is_multiple_of(4) {
            return Err(GpuError::Unsupported {
                op: OP,
                message: format!(
                    "packed weights '{}' need output channels per group a multiple of 4 (got {})",
                    c.w.name(),
                    cout / c.groups
                ),
            });
        }
        let stored = match (c.w.dtype(), &c.scales) {
            (DType::F32, None) => variant.tag("w=f32").flag("W_VEC4").define("W_STORE", "vec4<f32>"),
            _ => weight_variant(ctx, OP, &c.w, c.scales.as_ref(), variant)?,
        };
        stored.tag("packed").flag("W_PACKED")
    } else {
        weight_variant(ctx, OP, &c.w, c.scales.as_ref(), variant)?
    };
    let mut reads = vec![c.x.clone(), c.w.clone()];
    let (residual, residual_strides) = match &c.residual {
        Some(r) => {
            let (tensor, strides) = residual_strides(r, &out_shape)?;
            (Some(tensor), strides)
        }
        None => (None, [0; 3]),
    };
    params.residual_strides = residual_strides;
    let variant = epilogue_bindings(ctx, OP, variant, &mut reads, &c.scales, &c.bias, residual.as_ref())?;
    let npx: usize = out_shape[2..].iter().product();
    let reads: Vec<&GpuTensor> = reads.iter().collect();
    let [kd, kh, kw] = three(&c.geometry.kernel, 1).map(|v| v as u64);
    let cin_g = (cin / c.groups) as u64;
    // The store loops: 4 channels x `count` (at most 4) pixels.
    let store = 4 + 16;
    if tiled {
        // Per tap, per block of 16 input channels: the step, 4 loads and 16 products.
        let loops =
            nested_loops(&[kd * kh * kw, cin_g.div_ceil(16)]) + kd * kh * kw * cin_g.div_ceil(16) * 20;
        let loops = loops + store;
        // 64 channels x 64 columns (pixels of every batch item) per workgroup, one group per z.
        let groups = [
            workgroup_count((c.x_shape[0] * npx).div_ceil(64)),
            workgroup_count((cout / c.groups).div_ceil(64)),
            workgroup_count(c.groups),
        ];
        let variant = c.activation.apply_to(variant.tag("tiled64.wg16x16"));
        return b.push(variant, &params, &reads, &[&c.out], groups, loops);
    }
    let row3 = c.packed_weights && is_row3(&c.geometry);
    // Input channels x kernel depth x kernel rows (x kernel columns, unless ROW3 does the 3 taps
    // of a row at once), then the store loops.
    let loops =
        if row3 { nested_loops(&[cin_g, kd, kh]) } else { nested_loops(&[cin_g, kd, kh, kw]) } + store;
    // Blocks of 4 pixels within each output row (ROW3), or of the flattened pixels.
    let ow = *out_shape.last().expect("a spatial dim");
    let columns = if row3 { npx / ow * ow.div_ceil(4) } else { npx.div_ceil(4) };
    // 3x3 and 1x3 windows (one deep) where subgroups are 8 lanes: the lanes share weight loads,
    // over the blocks of every batch item (while their workgroups fit one dim).
    let all_blocks = c.x_shape[0] * columns;
    let subgroups8 = row3
        && kd == 1
        && (kh == 3 || kh == 1)
        && ctx.fixed_subgroup_size() == Some(8)
        && all_blocks.div_ceil(8) <= crate::gpu::program::MAX_WORKGROUPS as usize;
    let variant = match (subgroups8, kh) {
        (true, 1) => variant.tag("sg8.1x3").flag("SG8").flag("KH1").define("KVOL", "3u"),
        (true, _) => variant.tag("sg8").flag("SG8").define("KVOL", "9u"),
        _ => variant,
    };
    let variant = if row3 { variant.tag("row3").flag("ROW3") } else { variant };
    if subgroups8 {
        // 8 blocks of 4 pixels (of every batch item) x 4 channels per workgroup.
        let groups = [
            workgroup_count(all_blocks.div_ceil(8)),
            workgroup_count((cout / c.groups).div_ceil(4)),
            workgroup_count(c.groups),
        ];
        let variant = c.activation.apply_to(variant.tag("wg8"));
        return b.push(variant, &params, &reads, &[&c.out], groups, loops);
    }
    let variant = c.activation.apply_to(variant.tag("rb4x4.wg8x8").define("WGX", 8).define("WGY", 8));
    let groups = [
        workgroup_count(columns.div_ceil(8)),
        workgroup_count((cout / c.groups).div_ceil(32)),
        workgroup_count(c.x_shape[0] * c.groups),
    ];
    b.push(variant, &params, &reads, &[&c.out], groups, loops)
}

/// A residual view broadcast to the output shape `[N, Cout, *spatial]` as its tensor and strides
/// over (batch item, channel, pixel): one value per pixel in the output's layout, or one per
/// batch item and channel.
fn residual_strides(r: &View, out_shape: &[usize]) -> GpuResult<(GpuTensor, [u32; 3])> {
    const OP: &str = "conv";
    let v = r.broadcast_to(out_shape)?;
    v.check(OP)?;
    let (spatial, strides) = (&out_shape[2..], &v.strides[2..]);
    let contiguous = crate::gpu::tensor::contiguous_strides(spatial);
    let pixel = if spatial.iter().zip(strides).all(|(&n, &s)| n == 1 || s == 0) {
        0
    } else if spatial.iter().zip(strides).zip(&contiguous).all(|((&n, &s), &c)| n == 1 || s == c) {
        1
    } else {
        return Err(GpuError::Unsupported {
            op: OP,
            message: format!(
                "residual '{}' {:?} for an output {out_shape:?}: it must cover every pixel in the output's layout or broadcast over all of them",
                r.tensor.name(),
                r.shape
            ),
        });
    };
    if v.offset != 0 {
        return Err(shape_err(
            OP,
            format!("residual '{}' must start at its tensor's first element", r.tensor.name()),
        ));
    }
    Ok((v.tensor.clone(), [u32_of(OP, v.strides[0])?, u32_of(OP, v.strides[1])?, pixel]))
}

/// Whether a conv takes the workgroup-tiled kernel: on GPUs, unless a group has too few channels
/// to fill its 64-channel x 16-input-channel tiles (depthwise convs, a 3-channel image input),
/// where the register-blocked kernel wastes less.
fn uses_tiles(style: KernelStyle, cin_per_group: usize, cout_per_group: usize) -> bool {
    style == KernelStyle::Tiled && cout_per_group >= 16 && cin_per_group >= 8
}

/// Whether the kernel is 3 wide with stride and dilation 1 along the last axis (the row kernel).
fn is_row3(g: &Geometry) -> bool {
    g.kernel.last() == Some(&3) && g.strides.last() == Some(&1) && g.dilations.last() == Some(&1)
}

/// A 1x1 convolution with stride 1 and no padding is a matmul: the vec4 matmul path beats the
/// implicit-GEMM kernel there (f32 or native f16 weights, one group).
fn is_pointwise(ctx: &GpuContext, c: &Conv) -> bool {
    let g = &c.geometry;
    // The weights become matmul's left operand: f32, or f16 the adapter reads natively.
    let w_ok = c.w.dtype() == DType::F32 || (c.w.dtype() == DType::F16 && ctx.has_shader_f16());
    let ones = |v: &[usize]| v.iter().all(|&x| x == 1);
    let zeros = |v: &[usize]| v.iter().all(|&x| x == 0);
    c.groups == 1
        && c.scales.is_none()
        && w_ok
        && ones(&g.kernel)
        && ones(&g.strides)
        && zeros(&g.pads_begin)
        && zeros(&g.pads_end)
}

/// out[n] = act(W [Cout, Cin] @ x[n] [Cin, S] + bias[:, None]); the bias rides on Gemm's beta term.
fn pointwise_as_matmul(b: &mut ProgramBuilder, c: &Conv, out_shape: &[usize]) -> GpuResult<()> {
    let (n, cin, cout) = (c.x_shape[0], c.x_shape[1], c.out_channels);
    let s: usize = out_shape[2..].iter().product();
    // Packed weights are [Cin, Cout]: the same matrix, transposed.
    let w_strides = if c.packed_weights { vec![0, 1, cout] } else { vec![0, cin, 1] };
    let a = View { tensor: c.w.clone(), offset: 0, shape: vec![n, cout, cin], strides: w_strides };
    let mut mm = MatMul::new(a, c.x.view(&[n, cin, s]), c.out.view(&[n, cout, s]));
    if let Some(bias) = &c.bias {
        mm.d =
            Some(View { tensor: bias.clone(), offset: 0, shape: vec![n, cout, s], strides: vec![0, 1, 0] });
        mm.beta = 1.0;
    }
    mm.activation = c.activation;
    if let Some(r) = &c.residual {
        let (tensor, [rn, rc, rp]) = residual_strides(r, out_shape)?;
        let strides = vec![rn as usize, rc as usize, rp as usize];
        mm.residual = Some(View { tensor, offset: 0, shape: vec![n, cout, s], strides });
    }
    matmul(b, &mm)
}

/// ConvTranspose: x [N, Cin, *spatial] with w [Cin, Cout/groups, *kernel] -> out [N, Cout, ...].
#[derive(Clone, Debug)]
pub struct ConvTranspose {
    pub x: GpuTensor,
    pub x_shape: Vec<usize>,
    pub w: GpuTensor,
    pub scales: Option<GpuTensor>,
    pub bias: Option<GpuTensor>,
    pub out: GpuTensor,
    pub out_channels: usize,
    pub groups: usize,
    pub geometry: Geometry,
    pub output_padding: Vec<usize>,
    pub activation: Activation,
}

impl ConvTranspose {
    pub fn out_shape(&self) -> Vec<usize> {
        let spatial = self.geometry.transposed_output(&self.x_shape[2..], &self.output_padding);
        [&self.x_shape[..1], &[self.out_channels], &spatial[..]].concat()
    }
}

pub fn conv_transpose(b: &mut ProgramBuilder, c: &ConvTranspose) -> GpuResult<()> {
    const OP: &str = "conv_transpose";
    let ctx = b.context();
    c.geometry.check(OP, c.x_shape.len().saturating_sub(2))?;
    if c.output_padding.len() != c.geometry.kernel.len() {
        return Err(shape_err(OP, "output_padding needs one value per spatial dim"));
    }
    let (cin, cout) = (c.x_shape[1], c.out_channels);
    check_channels(OP, cin, cout, c.groups)?;
    let out_shape = c.out_shape();
    let kvol: usize = c.geometry.kernel.iter().product();
    let total: usize = out_shape.iter().product();
    let expect = [(&c.x, c.x_shape.iter().product()), (&c.w, cin * cout / c.groups * kvol), (&c.out, total)];
    for (t, len) in expect {
        if t.len() != len {
            return Err(shape_err(
                OP,
                format!("'{}' holds {} elements, expected {len} (output {out_shape:?})", t.name(), t.len()),
            ));
        }
    }
    let params = window_params(OP, &c.x_shape, &out_shape, &c.geometry, c.groups, total, c.activation)?;
    let types = activation_types(ctx, OP, OP, &c.x, &c.out)?;
    let variant = weight_variant(ctx, OP, &c.w, c.scales.as_ref(), types)?;
    let mut reads = vec![c.x.clone(), c.w.clone()];
    let variant = epilogue_bindings(ctx, OP, variant, &mut reads, &c.scales, &c.bias, None)?;
    let variant = c.activation.apply_to(variant.tag(&format!("wg{WG_LINEAR}")).define("WG", WG_LINEAR));
    let reads: Vec<&GpuTensor> = reads.iter().collect();
    // Kernel depth x rows x columns x input channels of the group.
    let [kd, kh, kw] = three(&c.geometry.kernel, 1).map(|v| v as u64);
    let loops = nested_loops(&[kd, kh, kw, (cin / c.groups) as u64]);
    b.push(variant, &params, &reads, &[&c.out], linear_workgroups(total, WG_LINEAR), loops)
}
