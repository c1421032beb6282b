//! Layout ops that need more than a strided copy: Pad, ScatterND, Resize.

use super::*;

impl<'a, 'c> Lowering<'a, 'c> {
    pub(super) fn pad(&mut self, node: &Node, mode: PadMode) -> R<()> {
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
    pub(super) fn scatter_nd(&mut self, node: &Node, reduction: ScatterReduction) -> R<()> {
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

    pub(super) fn resize(&mut self, node: &Node, r: &crate::ops::layout::resize::Resize) -> R<()> {
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
