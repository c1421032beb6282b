//! Conv: 1-D, 2-D and 3-D (any rank), groups, strides, dilations, explicit or automatic
//! padding; on the CPU im2col + GEMM over panels of output columns, Winograd F(2x2, 3x3)
//! for 3x3 stride-1 2-D convs with enough channels (`cpu::winograd`), or register blocks over
//! shifted reads for stride-1 2-D convs with few output channels (`cpu::narrow_conv`).

use super::window::{Window, WindowAttrs};
use crate::cpu::prepared::Prepared;
use crate::cpu::{narrow_conv, panel_conv, winograd};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    pub window: WindowAttrs,
    pub group: usize,
    /// Winograd's transform of the weights this node last ran with (the same constant tensor
    /// every run of a model): the transform cost as much as a small conv's GEMMs.
    pub filters: Prepared<Vec<f32>>,
}

/// Shapes of one convolution, resolved for its inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub group: usize,
    pub window: Window,
}

impl Conv {
    pub fn geometry(
        &self,
        x: &[usize],
        w: &[usize],
        bias: Option<&[usize]>,
    ) -> Result<ConvGeometry, OpError> {
        if x.len() < 3 || w.len() != x.len() {
            return Err(OpError::invalid(format!(
                "Conv needs X [N, C, spatial...] and W of the same rank; got {x:?} and {w:?}"
            )));
        }
        let (in_channels, out_channels) = (x[1], w[0]);
        if self.group == 0 || in_channels != w[1] * self.group || out_channels % self.group != 0 {
            return Err(OpError::invalid(format!(
                "Conv with group {} cannot take X {x:?} and W {w:?}",
                self.group
            )));
        }
        if let Some(b) = bias {
            if b != [out_channels] {
                return Err(OpError::invalid(format!("Conv bias {b:?} is not [{out_channels}]")));
            }
        }
        Ok(ConvGeometry {
            batch: x[0],
            in_channels,
            out_channels,
            group: self.group,
            window: self.window.resolve(&x[2..], Some(&w[2..]))?,
        })
    }
}

impl ConvGeometry {
    pub fn output_shape(&self) -> Vec<usize> {
        [vec![self.batch, self.out_channels], self.window.output.clone()].concat()
    }
}

impl Conv {
    /// The CPU convolution in f32.
    fn conv_f32(&self, g: &ConvGeometry, x: &[f32], w: &Tensor, bias: Option<&[f32]>) -> Vec<f32> {
        let (cg, mg) = (g.in_channels / g.group, g.out_channels / g.group);
        let mut out = vec![0.0f32; g.batch * g.out_channels * g.window.output_len()];
        if shaped_kernels() && winograd::applies(&g.window, cg, mg) {
            let u =
                self.filters.get_or_derive(w, || winograd::transform_filters(&w.f32s(), g.out_channels, cg));
            winograd::conv(&g.window, g.batch, g.group, cg, mg, x, &u, bias, &mut out);
        } else if shaped_kernels() && narrow_conv::applies(&g.window, g.batch, g.in_channels, mg) {
            narrow_conv::conv(&g.window, g.batch, g.group, cg, mg, x, &w.f32s(), bias, &mut out);
        } else {
            panel_conv::conv(&g.window, g.batch, g.group, cg, mg, x, &w.f32s(), bias, &mut out);
        }
        out
    }
}

/// Whether the kernels for particular shapes (Winograd's, the narrow one) may take a conv:
/// `FIFO_CPU_CONV=direct` sends every conv to the im2col panels (to compare them).
fn shaped_kernels() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| std::env::var_os("FIFO_CPU_CONV").is_none_or(|v| v != "direct"))
    }
    #[cfg(target_arch = "wasm32")]
    true
}

impl OpSpec for Conv {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        expect_dtype("X", x.dtype(), FLOATS)?;
        expect_dtype("W", w.dtype(), &[x.dtype()])?;
        let b = inputs.get(2).copied().flatten();
        let g = self.geometry(x.shape(), w.shape(), b.map(|b| b.shape()))?;
        Ok(vec![TensorType::new(x.dtype(), g.output_shape())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        let b = inputs.get(2).copied().flatten();
        let g = self.geometry(x.shape(), w.shape(), b.map(|b| b.shape()))?;
        let bias = b.map(|b| b.f32s());
        let out = self.conv_f32(&g, &x.f32s(), w, bias.as_deref());
        let out = Tensor::from_f32(g.output_shape(), out)?;
        Ok(vec![if x.dtype() == DType::F32 { out } else { out.cast(x.dtype()) }])
    }
}

fn parse_conv(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let window = WindowAttrs::parse(attrs, true, false)?;
    let group = attrs.int_or("group", 1)?;
    if group < 1 {
        return Err(OpError::bad_attribute("group", format!("must be >= 1, got {group}")));
    }
    Ok(Conv { window, group: group as usize, filters: Prepared::default() }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Conv", (1, 21), (2, 3), (1, 1), parse_conv)];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::nn::window::AutoPad;

    /// A 3x3 conv with 16 channels each side (Winograd's case), padded to keep 6x6.
    fn conv() -> Conv {
        let window = WindowAttrs {
            kernel_shape: None,
            strides: None,
            dilations: None,
            pads: Some(vec![1, 1, 1, 1]),
            auto_pad: AutoPad::NotSet,
            ceil_mode: false,
        };
        Conv { window, group: 1, filters: Prepared::default() }
    }

    fn tensor(shape: Vec<usize>, seed: u32) -> Tensor {
        let n = shape.iter().product::<usize>();
        let values = (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0);
        Tensor::from_f32(shape, values.collect()).unwrap()
    }

    fn run(op: &Conv, x: &Tensor, w: &Tensor) -> Vec<f32> {
        op.run(&[Some(x), Some(w)]).unwrap()[0].to_f32_vec()
    }

    #[test]
    fn kept_filters_serve_only_the_weights_they_came_from() {
        assert!(winograd::applies(
            &conv().geometry(&[1, 16, 6, 6], &[16, 16, 3, 3], None).unwrap().window,
            16,
            16
        ));
        let x = tensor(vec![1, 16, 6, 6], 1);
        let (w1, w2) = (tensor(vec![16, 16, 3, 3], 2), tensor(vec![16, 16, 3, 3], 3));
        let op = conv();
        let first = run(&op, &x, &w1);
        assert_eq!(run(&op, &x, &w1.clone()), first, "the same weights again");
        // Other weights of the same shape (a Conv whose W is a graph input) are transformed anew.
        assert_eq!(run(&op, &x, &w2), run(&conv(), &x, &w2));
        assert_ne!(run(&op, &x, &w2), first);
        assert_eq!(run(&op, &x, &w1), first);
    }
}
