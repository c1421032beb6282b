//! Conv, ConvTranspose and pooling.

use super::*;

impl<'a, 'c> Lowering<'a, 'c> {
    pub(super) fn conv(
        &mut self,
        node: &Node,
        c: &crate::ops::nn::conv::Conv,
        activation: Activation,
        residual: Option<ValueId>,
    ) -> R<()> {
        let (x, w, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let b = Self::opt_input(node, 2);
        let bshape = b.map(|b| self.shape(b).to_vec());
        let g = c.geometry(self.shape(x), self.shape(w), bshape.as_deref())?;
        let win = &g.window;
        let geometry = Geometry::new(&win.kernel)
            .with_strides(&win.strides)
            .with_dilations(&win.dilations)
            .with_pads(&win.pad_begin, &win.pad_end);
        // Four output channels per group make one vec4 (one int8 word) per tap: pack.
        let pack = (g.out_channels / g.group) % 4 == 0;
        let stored = self.stored_operand(node, w, pack.then_some((g.out_channels, g.group)))?;
        let (packed, wt, scales) = match (stored, self.constant(w)) {
            (Some(s), _) => (pack, s.tensor, self.upload_scales(w, s.scales)?),
            (None, Some(wc)) if pack && wc.dtype() == DType::F32 => {
                let packed = ops::conv::pack_weights(&wc.f32s(), g.out_channels, g.group);
                let name = format!("{}.packed", self.name(w));
                let t = GpuTensor::from_f32_as(self.ctx(), &name, self.vtype(w), &packed)?;
                (true, self.filled_at_build(t), None)
            }
            (None, _) => (false, self.tensor(w)?, None),
        };
        let bias = match b {
            Some(b) => Some(self.param(b)?),
            None => None,
        };
        let conv = GConv {
            x: self.tensor(x)?,
            x_shape: self.shape(x).to_vec(),
            w: wt,
            scales,
            bias,
            out: self.tensor(y)?,
            out_channels: g.out_channels,
            groups: g.group,
            geometry,
            activation,
            packed_weights: packed,
            style: None,
            residual: self.residual(residual, y, self.shape(y))?,
        };
        if self.shape(y).iter().product::<usize>() == 0 {
            return Ok(());
        }
        Ok(ops::conv::conv(&mut self.b, &conv)?)
    }

    pub(super) fn conv_transpose(
        &mut self,
        node: &Node,
        c: &crate::ops::nn::conv_transpose::ConvTranspose,
        activation: Activation,
    ) -> R<()> {
        let (x, w, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let g = c.geometry(self.shape(x), self.shape(w))?;
        let win = &g.window;
        let geometry = Geometry::new(&win.kernel)
            .with_strides(&win.strides)
            .with_dilations(&win.dilations)
            .with_pads(&win.pad_begin, &win.pad_end);
        // Output padding: whatever makes the GPU's size formula give the inferred output.
        let xin = &self.shape(x)[2..];
        let mut output_padding = Vec::new();
        for (d, &len) in xin.iter().enumerate() {
            let base = (win.strides[d] * (len - 1) + win.dilations[d] * (win.kernel[d] - 1) + 1) as i64
                - (win.pad_begin[d] + win.pad_end[d]) as i64;
            let extra = win.input[d] as i64 - base;
            if extra < 0 {
                return unsupported(format!("output size {} below the transposed size {base}", win.input[d]));
            }
            output_padding.push(extra as usize);
        }
        let bias = match Self::opt_input(node, 2) {
            Some(b) => Some(self.param(b)?),
            None => None,
        };
        // Stored int8 scales run along the weight's axis 1 (Cout / group); the kernel takes one
        // per output channel, the same for every group.
        let (wt, scales) = match self.stored_operand(node, w, None)? {
            Some(s) => (s.tensor, s.scales.map(|per_group| per_group.repeat(c.group))),
            None => (self.tensor(w)?, None),
        };
        let ct = GConvT {
            x: self.tensor(x)?,
            x_shape: self.shape(x).to_vec(),
            w: wt,
            scales: self.upload_scales(w, scales)?,
            bias,
            out: self.tensor(y)?,
            out_channels: g.out_channels,
            groups: c.group,
            geometry,
            output_padding,
            activation,
        };
        Ok(ops::conv::conv_transpose(&mut self.b, &ct)?)
    }

    pub(super) fn pool(&mut self, node: &Node, p: &crate::ops::nn::pool::Pool) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::single_output(node)?);
        self.float_operand(x)?;
        let shape = self.shape(x).to_vec();
        let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
        let Some(attrs) = &p.window else {
            let op = match p.kind {
                PoolKind::Max => ReduceOp::Max,
                PoolKind::Average { .. } => ReduceOp::Mean,
            };
            if shape.len() <= 2 {
                let n = shape.iter().product();
                return self.move_view(&xt.view(&[n]), &yt.view(&[n]));
            }
            let axes: Vec<usize> = (2..shape.len()).collect();
            return Ok(ops::reduce::reduce(&mut self.b, op, &xt, &shape, &axes, &yt)?);
        };
        let win = attrs.resolve(&shape[2..], None)?;
        let mut pads_end = win.pad_end.clone();
        #[allow(clippy::needless_range_loop)] // d indexes six per-dim vectors
        for d in 0..win.input.len() {
            // Ceil mode: extend the trailing pad so the floor formula yields the larger output.
            let span = win.dilations[d] * (win.kernel[d] - 1) + 1;
            let need = ((win.output[d].max(1) - 1) * win.strides[d] + span) as i64
                - (win.input[d] + win.pad_begin[d]) as i64;
            if need > pads_end[d] as i64 {
                if matches!(p.kind, PoolKind::Average { count_include_pad: true }) {
                    return unsupported("ceil_mode with count_include_pad");
                }
                pads_end[d] = need as usize;
            }
        }
        let geometry = Geometry::new(&win.kernel)
            .with_strides(&win.strides)
            .with_dilations(&win.dilations)
            .with_pads(&win.pad_begin, &pads_end);
        let kind = match p.kind {
            PoolKind::Max => GPoolKind::Max,
            PoolKind::Average { count_include_pad } => GPoolKind::Average { count_include_pad },
        };
        Ok(ops::pool::pool(&mut self.b, kind, &xt, &shape, &geometry, &yt)?)
    }
}
