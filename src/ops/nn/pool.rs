//! AveragePool, MaxPool (N-D, pads, auto_pad, ceil_mode, dilations) and the global pools.

use super::window::{multi_indices, Window, WindowAttrs};
use crate::cpu::parallel;
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo, FLOATS};
use crate::tensor::shape::strides;
use crate::tensor::{DType, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Average { count_include_pad: bool },
    Max,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub kind: PoolKind,
    /// `None` for the global pools, whose window is the whole plane.
    pub window: Option<WindowAttrs>,
}

impl Pool {
    fn resolve(&self, x: &[usize]) -> Result<Window, OpError> {
        if x.len() < 3 {
            return Err(OpError::invalid(format!("pooling needs [N, C, spatial...], got {x:?}")));
        }
        let spatial = &x[2..];
        match &self.window {
            Some(w) => w.resolve(spatial, None),
            None => WindowAttrs {
                kernel_shape: Some(spatial.to_vec()),
                strides: None,
                dilations: None,
                pads: None,
                auto_pad: super::window::AutoPad::Valid,
                ceil_mode: false,
            }
            .resolve(spatial, None),
        }
    }
}

fn pool_plane(kind: PoolKind, w: &Window, taps: &[Vec<usize>], src: &[f32], dst: &mut [f32]) {
    let in_strides = strides(&w.input);
    for (o, o_idx) in multi_indices(&w.output).iter().enumerate() {
        let (mut acc, mut valid, mut in_pad_region) = (
            match kind {
                PoolKind::Max => f32::NEG_INFINITY,
                _ => 0.0,
            },
            0usize,
            0usize,
        );
        for k_idx in taps {
            let mut off = Some(0);
            let mut inside_pads = true;
            for d in 0..o_idx.len() {
                let c = w.input_coord(d, o_idx[d], k_idx[d]);
                if c < -(w.pad_begin[d] as isize) || c >= (w.input[d] + w.pad_end[d]) as isize {
                    inside_pads = false;
                }
                if c < 0 || c as usize >= w.input[d] {
                    off = None;
                } else if let Some(x) = off.as_mut() {
                    *x += c as usize * in_strides[d];
                }
            }
            in_pad_region += inside_pads as usize;
            if let Some(off) = off {
                valid += 1;
                acc = match kind {
                    PoolKind::Max => acc.max(src[off]),
                    _ => acc + src[off],
                };
            }
        }
        dst[o] = match kind {
            // A window of padding only: f32's lowest finite value, onnxruntime's answer (the
            // ONNX spec leaves it open; the reference evaluator says NaN). Rounded to f16 it is
            // -inf, again as onnxruntime.
            PoolKind::Max if valid == 0 => f32::MIN,
            PoolKind::Max => acc,
            PoolKind::Average { count_include_pad: true } => acc / in_pad_region.max(1) as f32,
            PoolKind::Average { .. } => acc / valid.max(1) as f32,
        };
    }
}

impl OpSpec for Pool {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        expect_dtype("X", x.dtype(), FLOATS)?;
        let w = self.resolve(x.shape())?;
        Ok(vec![TensorType::new(x.dtype(), [&x.shape()[..2], &w.output].concat())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "X")?;
        let w = self.resolve(x.shape())?;
        let xv = x.f32s();
        let taps = w.kernel_positions();
        let (planes, plane_in, plane_out) = (x.shape()[0] * x.shape()[1], w.input_len(), w.output_len());
        let mut out = vec![0.0f32; planes * plane_out];
        parallel::for_each_chunk_mut(&mut out, plane_out.max(1), |p, dst| {
            pool_plane(self.kind, &w, &taps, &xv[p * plane_in..(p + 1) * plane_in], dst);
        });
        let out = Tensor::from_f32([&x.shape()[..2], &w.output].concat(), out)?;
        Ok(vec![if x.dtype() == DType::F32 { out } else { out.cast(x.dtype()) }])
    }
}

fn parse_average(attrs: &mut Attrs, node: &NodeContext) -> Result<Op, OpError> {
    let window = WindowAttrs::parse(attrs, node.opset >= 19, true)?;
    let count_include_pad = attrs.int_or("count_include_pad", 0)? != 0;
    Ok(Pool { kind: PoolKind::Average { count_include_pad }, window: Some(window) }.into())
}

fn parse_max(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    let window = WindowAttrs::parse(attrs, true, true)?;
    if attrs.int_or("storage_order", 0)? != 0 {
        return Err(OpError::unsupported("MaxPool storage_order 1", "storage_order 0"));
    }
    Ok(Pool { kind: PoolKind::Max, window: Some(window) }.into())
}

pub(crate) const DEFS: &[OpDef] = &[
    OpDef::new("AveragePool", (7, 21), (1, 1), (1, 1), parse_average),
    OpDef::new("MaxPool", (8, 21), (1, 1), (1, 1), parse_max),
    OpDef::new("GlobalAveragePool", (1, 21), (1, 1), (1, 1), |_, _| {
        Ok(Pool { kind: PoolKind::Average { count_include_pad: false }, window: None }.into())
    }),
    OpDef::new("GlobalMaxPool", (1, 21), (1, 1), (1, 1), |_, _| {
        Ok(Pool { kind: PoolKind::Max, window: None }.into())
    }),
];
