//! Elementwise ops, casts and DequantizeLinear.

use super::*;

impl<'a, 'c> Lowering<'a, 'c> {
    /// y = (x - zero_point) * scale, per tensor or along `axis`, from an integer tensor.
    pub(super) fn dequantize(&mut self, node: &Node, axis: i64) -> R<()> {
        let (x, s, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        let shape = self.shape(x).to_vec();
        let n: usize = shape.iter().product();
        if n == 0 {
            return Ok(());
        }
        let along = |t: GpuTensor, rank: usize| -> R<View> {
            let mut strides = vec![0; shape.len()];
            if rank == 1 && t.len() > 1 {
                strides[normalize_axis(axis, shape.len())?] = 1;
            } else if t.len() != 1 {
                return unsupported("blocked quantization (scale of rank > 1)");
            }
            Ok(View { tensor: t, offset: 0, shape: shape.clone(), strides })
        };
        let xt = self.tensor(x)?;
        let xf = if xt.dtype() == GDType::F32 {
            xt.view(&shape)
        } else {
            let tmp = self.scratch("dequantize.x", GDType::F32, n)?;
            ops::cast::cast(&mut self.b, &xt, &tmp)?;
            tmp.view(&shape)
        };
        let centered = match Self::opt_input(node, 2) {
            Some(zp) => {
                let zp_f = match self.constant(zp) {
                    Some(c) => along(self.upload_f32("zero_point", &c.to_f32_vec())?, c.rank())?,
                    None => return unsupported("a run-time zero point"),
                };
                let tmp = self.scratch("dequantize.centered", GDType::F32, n)?.view(&shape);
                ew::binary(&mut self.b, GBin::Sub, &xf, &zp_f, &tmp)?;
                tmp
            }
            None => xf,
        };
        let sv = along(self.tensor(s)?, self.shape(s).len())?;
        let out = self.view(y)?;
        Ok(ew::binary(&mut self.b, GBin::Mul, &centered, &sv, &out)?)
    }

    pub(super) fn unary(&mut self, node: &Node, kind: UnaryKind) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let op = match kind {
            UnaryKind::Sqrt => GUn::Sqrt,
            UnaryKind::Reciprocal => GUn::Reciprocal,
            UnaryKind::Exp => GUn::Exp,
            UnaryKind::Log => GUn::Log,
            UnaryKind::Neg => GUn::Neg,
            UnaryKind::Abs => GUn::Abs,
            UnaryKind::Sin => GUn::Sin,
            UnaryKind::Cos => GUn::Cos,
            UnaryKind::Tanh => GUn::Tanh,
            UnaryKind::Erf => GUn::Erf,
            UnaryKind::Sigmoid => GUn::Sigmoid,
            UnaryKind::Silu => GUn::Silu,
            UnaryKind::Relu => GUn::Relu,
            UnaryKind::LeakyRelu { alpha } => GUn::LeakyRelu(alpha),
            UnaryKind::Gelu { tanh_approximation: false } => GUn::Gelu,
            UnaryKind::Gelu { tanh_approximation: true } => GUn::GeluTanh,
            UnaryKind::Softplus => GUn::Softplus,
            UnaryKind::Floor => GUn::Floor,
            UnaryKind::Ceil => GUn::Ceil,
            UnaryKind::Not => GUn::Not,
        };
        let (xv, out) = (self.view(x)?, self.view(y)?);
        Ok(ew::unary(&mut self.b, op, &xv, &out)?)
    }

    pub(super) fn binary(&mut self, node: &Node, kind: BinaryKind) -> R<()> {
        let y = Self::output(node, 0)?;
        let op = match kind {
            BinaryKind::Add | BinaryKind::Sum => GBin::Add,
            BinaryKind::Sub => GBin::Sub,
            BinaryKind::Mul => GBin::Mul,
            BinaryKind::Div => GBin::Div,
            BinaryKind::Pow => GBin::Pow,
            BinaryKind::Min => GBin::Min,
            BinaryKind::Max => GBin::Max,
            BinaryKind::Equal => GBin::Equal,
            BinaryKind::Less => GBin::Less,
            BinaryKind::LessOrEqual => GBin::LessOrEqual,
            BinaryKind::Greater => GBin::Greater,
            BinaryKind::GreaterOrEqual => GBin::GreaterOrEqual,
            BinaryKind::And => GBin::And,
            BinaryKind::Or => GBin::Or,
            BinaryKind::Xor => GBin::Xor,
            BinaryKind::Mod { fmod: true } => GBin::Fmod,
            BinaryKind::Mod { fmod: false } => GBin::Mod,
        };
        let inputs: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        if let (GBin::Pow, [base, e]) = (op, inputs.as_slice()) {
            if self.float_operand(*base).is_ok() && device_dtype(self.dtype(*e)) == GDType::I32 {
                // A float base with an integer exponent: the exponent as f32.
                let (bv, out) = (self.view(*base)?, self.view(y)?);
                let et = self.tensor(*e)?;
                let ef = self.scratch("pow.exponent", GDType::F32, et.len())?;
                ops::cast::cast(&mut self.b, &et, &ef)?;
                let ev = ef.view(self.shape(*e));
                return Ok(ew::binary(&mut self.b, op, &bv, &ev, &out)?);
            }
        }
        for &v in &inputs {
            self.float_operand(v)?;
        }
        let out = self.view(y)?;
        match inputs.as_slice() {
            [] => unsupported("no inputs"),
            [a] => {
                let src = self.view(*a)?.broadcast_to(&out.shape)?;
                self.move_view(&src, &out)
            }
            [a, rest @ ..] => {
                // Variadic: fold left through scratch buffers, the last step into the output.
                let mut acc = self.view(*a)?;
                for (i, &v) in rest.iter().enumerate() {
                    let bv = self.view(v)?;
                    let dst = if i + 1 == rest.len() {
                        out.clone()
                    } else {
                        let shape = crate::tensor::shape::broadcast_shapes(&acc.shape, &bv.shape)?;
                        let n = shape.iter().product();
                        self.scratch("variadic", self.vtype(y), n)?.view(&shape)
                    };
                    ew::binary(&mut self.b, op, &acc, &bv, &dst)?;
                    acc = dst;
                }
                Ok(())
            }
        }
    }

    pub(super) fn cast(&mut self, x: ValueId, to: DType, y: ValueId) -> R<()> {
        let from = self.dtype(x);
        let xt = self.tensor(x)?;
        let yt = self.tensor(y)?;
        let n = xt.len().min(self.shape(x).iter().product());
        let flat = |t: &GpuTensor| t.view(&[n]);
        if n == 0 {
            return Ok(());
        }
        match (device_dtype(from), device_dtype(to)) {
            (GDType::F32, GDType::F32) if to == DType::Bool && from != DType::Bool => {
                // bool(x) = not(not(x)): nonzero -> 1.0.
                let tmp = self.scratch("cast.not", GDType::F32, n)?;
                ew::unary(&mut self.b, GUn::Not, &flat(&xt), &flat(&tmp))?;
                Ok(ew::unary(&mut self.b, GUn::Not, &flat(&tmp), &flat(&yt))?)
            }
            (GDType::F32, GDType::F32) if to == DType::F16 && yt.dtype() == GDType::F16 => {
                // f16 mode: the output buffer is f16, the cast rounds.
                Ok(ops::cast::cast(&mut self.b, &xt, &yt)?)
            }
            (GDType::F32, GDType::F32) if to == DType::F16 => {
                // Values are held as f32; the rounding to half precision is applied through an
                // f16 buffer so results match a half cast.
                let tmp = self.scratch("cast.f16", GDType::F16, n)?;
                ops::cast::cast(&mut self.b, &xt, &tmp)?;
                Ok(ops::cast::cast(&mut self.b, &tmp, &yt)?)
            }
            (GDType::F32, GDType::F32) | (GDType::I32, GDType::I32) if to != DType::Bool => {
                if matches!(to, DType::I8 | DType::U8) && from != to {
                    return unsupported(format!(
                        "cast from {} to {} (wrapping) has no GPU kernel",
                        from.name(),
                        to.name()
                    ));
                }
                self.move_view(&flat(&xt), &flat(&yt))
            }
            (GDType::F32, GDType::I32) => {
                if matches!(to, DType::I8 | DType::U8) {
                    return unsupported(format!("cast to {} (saturating) has no GPU kernel", to.name()));
                }
                Ok(ops::cast::cast(&mut self.b, &xt, &yt)?)
            }
            (GDType::I32, GDType::F32) => {
                if to == DType::Bool {
                    let tmp = self.scratch("cast.i", GDType::F32, n)?;
                    ops::cast::cast(&mut self.b, &xt, &tmp)?;
                    let tmp2 = self.scratch("cast.not", GDType::F32, n)?;
                    ew::unary(&mut self.b, GUn::Not, &flat(&tmp), &flat(&tmp2))?;
                    return Ok(ew::unary(&mut self.b, GUn::Not, &flat(&tmp2), &flat(&yt))?);
                }
                Ok(ops::cast::cast(&mut self.b, &xt, &yt)?)
            }
            _ => unsupported(format!("cast from {} to {}", from.name(), to.name())),
        }
    }
}
