//! ConvTranspose (any rank; 2-D is what UNets export): GEMM + col2im on the CPU.

use super::window::{AutoPad, Window, WindowAttrs};
use crate::cpu::gemm::{sgemm, MatRef};
use crate::cpu::im2col::col2im;
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose {
    pub window: WindowAttrs,
    pub group: usize,
    pub output_padding: Option<Vec<usize>>,
    pub output_shape: Option<Vec<usize>>,
}

/// Shapes of one transposed convolution. `window` is seen from the output side: its `input` is
/// the output image and its `output` the input image, so col2im can reuse the conv geometry.
pub(crate) struct Geometry {
    pub(crate) batch: usize,
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    pub(crate) window: Window,
}

impl ConvTranspose {
    pub(crate) fn geometry(&self, x: &[usize], w: &[usize]) -> Result<Geometry, OpError> {
        if x.len() < 3
            || w.len() != x.len()
            || self.group == 0
            || x[1] != w[0]
            || !w[0].is_multiple_of(self.group)
        {
            return Err(OpError::invalid(format!(
                "ConvTranspose cannot take X {x:?} and W {w:?} with group {}",
                self.group
            )));
        }
        let rank = x.len() - 2;
        let (input, kernel) = (&x[2..], &w[2..]);
        if input.contains(&0) || kernel.contains(&0) {
            return Err(OpError::invalid(format!("ConvTranspose with empty X {x:?} or W {w:?}")));
        }
        let attrs = &self.window;
        let per_dim = |v: &Option<Vec<usize>>, name: &str, default: usize| match v {
            None => Ok(vec![default; rank]),
            Some(v) if v.len() == rank => Ok(v.clone()),
            Some(_) => Err(OpError::bad_attribute(name, format!("needs {rank} values"))),
        };
        let strides = per_dim(&attrs.strides, "strides", 1)?;
        let dilations = per_dim(&attrs.dilations, "dilations", 1)?;
        let out_pad = per_dim(&self.output_padding, "output_padding", 0)?;
        if let Some(k) = &attrs.kernel_shape {
            if k.as_slice() != kernel {
                return Err(OpError::bad_attribute("kernel_shape", "disagrees with the weights"));
            }
        }
        let pads = match &attrs.pads {
            Some(p) if p.len() == 2 * rank => p.clone(),
            Some(_) => return Err(OpError::bad_attribute("pads", format!("needs {} values", 2 * rank))),
            None => vec![0; 2 * rank],
        };
        let (mut pad_begin, mut pad_end) = (pads[..rank].to_vec(), pads[rank..].to_vec());
        let mut output = Vec::with_capacity(rank);
        for d in 0..rank {
            let full = strides[d] * (input[d] - 1) + out_pad[d] + (kernel[d] - 1) * dilations[d] + 1;
            let wanted = match (&self.output_shape, attrs.auto_pad) {
                (Some(s), _) => Some(
                    *s.get(s.len().wrapping_sub(rank) + d)
                        .ok_or_else(|| OpError::bad_attribute("output_shape", "is too short"))?,
                ),
                (None, AutoPad::SameUpper | AutoPad::SameLower) => Some(input[d] * strides[d]),
                _ => None,
            };
            match wanted {
                Some(target) => {
                    let total = full.checked_sub(target).ok_or_else(|| {
                        OpError::bad_attribute(
                            "output_shape",
                            "is larger than the transposed convolution can produce",
                        )
                    })?;
                    let small = total / 2;
                    (pad_begin[d], pad_end[d]) = if attrs.auto_pad == AutoPad::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    output.push(target);
                }
                None => output.push(
                    full.checked_sub(pad_begin[d] + pad_end[d])
                        .ok_or_else(|| OpError::invalid("ConvTranspose pads exceed the output"))?,
                ),
            }
        }
        Ok(Geometry {
            batch: x[0],
            in_channels: x[1],
            out_channels: w[1] * self.group,
            window: Window {
                input: output,
                kernel: kernel.to_vec(),
                strides,
                dilations,
                pad_begin,
                pad_end,
                output: input.to_vec(),
            },
        })
    }
}

impl Geometry {
    fn output_shape(&self) -> Vec<usize> {
        [vec![self.batch, self.out_channels], self.window.input.clone()].concat()
    }
}

impl OpSpec for ConvTranspose {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        expect_dtype("X", x.dtype(), FLOATS)?;
        expect_dtype("W", w.dtype(), &[x.dtype()])?;
        let g = self.geometry(x.shape(), w.shape())?;
        if let Some(b) = inputs.get(2).copied().flatten() {
            if b.shape() != [g.out_channels] {
                return Err(OpError::invalid("ConvTranspose bias must be [out_channels]"));
            }
        }
        Ok(vec![TensorType::new(x.dtype(), g.output_shape())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "X")?;
        let w = required(inputs, 1, "W")?;
        let g = self.geometry(x.shape(), w.shape())?;
        let (xv, wv) = (x.f32s(), w.f32s());
        let bias = inputs.get(2).copied().flatten().map(|b| b.f32s());
        let (cg, mg) = (g.in_channels / self.group, g.out_channels / self.group);
        let (k, i, o) = (g.window.kernel_len(), g.window.output_len(), g.window.input_len());
        let mut out = vec![0.0f32; g.batch * g.out_channels * o];
        let mut col = vec![0.0f32; mg * k * i];
        for n in 0..g.batch {
            for grp in 0..self.group {
                // col = W_g^T (mg*k x cg) @ X_g (cg x i)
                let w_g = MatRef::row_major(&wv[grp * cg * mg * k..][..cg * mg * k], cg, mg * k).t();
                let x_g = MatRef::row_major(&xv[(n * g.in_channels + grp * cg) * i..][..cg * i], cg, i);
                sgemm(1.0, w_g, x_g, 0.0, &mut col);
                let out_g = &mut out[(n * g.out_channels + grp * mg) * o..][..mg * o];
                col2im(&col, mg, &g.window, out_g);
                if let Some(b) = &bias {
                    for (m, plane) in out_g.chunks_mut(o.max(1)).enumerate() {
                        plane.iter_mut().for_each(|v| *v += b[grp * mg + m]);
                    }
                }
            }
        }
        let out = Tensor::from_f32(g.output_shape(), out)?;
        Ok(vec![if x.dtype() == DType::F32 { out } else { out.cast(x.dtype()) }])
    }
}

fn parse(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let window = WindowAttrs::parse(attrs, true, false)?;
    let group = attrs.int_or("group", 1)?.max(0) as usize;
    let to_usize = |v: Option<Vec<i64>>| v.map(|v| v.into_iter().map(|x| x.max(0) as usize).collect());
    Ok(ConvTranspose {
        window,
        group,
        output_padding: to_usize(attrs.ints("output_padding")?),
        output_shape: to_usize(attrs.ints("output_shape")?),
    }
    .into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("ConvTranspose", (1, 21), (2, 3), (1, 1), parse)];
