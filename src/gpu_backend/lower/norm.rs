//! Normalisations, reductions and the fused attention.

use super::*;

impl<'a, 'c> Lowering<'a, 'c> {
    /// GroupNormalization or InstanceNormalization, then `activation` (fused SiLU).
    pub(super) fn norm(&mut self, node: &Node, op: &Op, activation: Activation) -> R<()> {
        let x = Self::input(node, 0)?;
        let (groups, eps, affine) = self.group_norm_setup(node, op)?;
        let (xt, yt) = (self.tensor(x)?, self.tensor(Self::output(node, 0)?)?);
        let shape = self.shape(x);
        Ok(ops::norm::group_norm(&mut self.b, &xt, shape, groups, Some(&affine), eps, activation, &yt)?)
    }

    /// A Group/InstanceNormalization's groups, epsilon and per-channel affine part.
    fn group_norm_setup(&mut self, node: &Node, op: &Op) -> R<(usize, f32, Affine)> {
        let x = Self::input(node, 0)?;
        self.float_operand(x)?;
        let shape = self.shape(x);
        let c = *shape.get(1).ok_or("input needs [N, C, ...]")?;
        let (groups, eps, affine) = match op {
            Op::GroupNorm(g) => {
                let per_channel = |v: Option<Vec<f32>>| -> R<Vec<f32>> {
                    let v = v.ok_or("scale and bias are required")?;
                    if g.per_channel_affine || v.len() == c {
                        return Ok(v);
                    }
                    if g.num_groups == 0 || v.len() != g.num_groups {
                        return unsupported(format!("scale/bias of {} values for {c} channels", v.len()));
                    }
                    let per = c / g.num_groups;
                    Ok((0..c).map(|ch| v[ch / per]).collect())
                };
                let gamma = per_channel(self.const_f32s(node, 1, "GroupNormalization scale")?)?;
                let beta = per_channel(self.const_f32s(node, 2, "GroupNormalization bias")?)?;
                let affine = Affine {
                    gamma: self.upload_f32("gamma", &gamma)?,
                    beta: self.upload_f32("beta", &beta)?,
                };
                (g.num_groups, g.epsilon, affine)
            }
            Op::InstanceNorm(n) => {
                let affine = Affine {
                    gamma: self.param(Self::input(node, 1)?)?,
                    beta: self.param(Self::input(node, 2)?)?,
                };
                (c, n.epsilon, affine)
            }
            _ => return unsupported("an activation fused into this op"),
        };
        Ok((groups, eps, affine))
    }

    /// `activation(norm(x) * scale + shift)`: the norm kernels read the scale and shift per
    /// (batch item, channel) for a Group/InstanceNormalization, per (outermost index, element)
    /// for a LayerNormalization (the fusion pass takes only those).
    pub(super) fn modulated(&mut self, node: &Node, norm: &Op, activation: Activation) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
        let (scale, shift) = (Self::input(node, 3)?, Self::input(node, 4)?);
        self.float_operand(x)?;
        let shape = self.shape(x).to_vec();
        let rank = shape.len();
        // Strides of scale and shift broadcast to x's shape; rows: the first `axis` dims.
        let axis = match norm {
            Op::LayerNorm(l) => normalize_axis(l.axis, rank)?,
            _ => 1,
        };
        let mut strides = Vec::new();
        for v in [scale, shift] {
            self.float_operand(v)?;
            let view = self.tensor(v)?.view(self.shape(v)).broadcast_to(&shape)?;
            let varies = |d: usize| view.strides[d] != 0 && shape[d] > 1;
            let outer = if axis >= 1 { view.strides[0] } else { 0 };
            let pair = match norm {
                // Per element of the normalised dims (all of them, contiguous) or the same for all.
                Op::LayerNorm(_) => [outer, usize::from((axis..rank).any(varies))],
                // Per channel; never per pixel.
                _ if (2..rank).any(varies) => return unsupported("a modulation that varies over pixels"),
                _ => [outer, view.strides[1]],
            };
            strides.push(pair);
        }
        let rows: usize = shape[..axis].iter().product();
        let modulation = Modulation {
            scale: self.tensor(scale)?,
            shift: self.tensor(shift)?,
            // Rows per modulation row: the rows under one index of the first dim.
            n_div: if axis >= 1 { rows / shape[0].max(1) } else { 1 }.max(1),
            scale_strides: strides[0],
            shift_strides: strides[1],
        };
        let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
        match norm {
            Op::LayerNorm(l) => {
                let d: usize = shape[axis..].iter().product();
                let affine = self.affine(node, d, "LayerNormalization")?;
                let m = Some(&modulation);
                Ok(ops::norm::layer_norm_modulated(
                    &mut self.b,
                    &xt,
                    rows,
                    d,
                    Some(&affine),
                    l.epsilon,
                    m,
                    activation,
                    &yt,
                )?)
            }
            _ => {
                let (groups, eps, affine) = self.group_norm_setup(node, norm)?;
                let m = Some(&modulation);
                Ok(ops::norm::group_norm_modulated(
                    &mut self.b,
                    &xt,
                    &shape,
                    groups,
                    Some(&affine),
                    eps,
                    m,
                    activation,
                    &yt,
                )?)
            }
        }
    }

    /// softmax(scale * Q Kt) V through the streaming kernel (K is Kt's last two dims swapped);
    /// shapes it does not take run as MatMul, Softmax, MatMul.
    pub(super) fn attention(&mut self, node: &Node, scale: f32, layout: &AttentionLayout) -> R<()> {
        let (q, kt, v, y) =
            (Self::input(node, 0)?, Self::input(node, 1)?, Self::input(node, 2)?, Self::output(node, 0)?);
        for x in [q, kt, v] {
            self.float_operand(x)?;
        }
        // Folded Transposes: the operands are permuted views of the inputs, and the attention
        // writes its output through the inverse of the output's permutation.
        let permuted = |v: View, p: &Option<Vec<usize>>| match p {
            Some(p) => v.permute(p),
            None => Ok(v),
        };
        let qv = permuted(self.operand_view(q, &layout.sources[0])?, &layout.inputs[0])?;
        let ktv = permuted(self.operand_view(kt, &layout.sources[1])?, &layout.inputs[1])?;
        let vv = permuted(self.operand_view(v, &layout.sources[2])?, &layout.inputs[2])?;
        let out = match &layout.output {
            Some(p) => self.view(y)?.permute(&crate::ops::layout::transpose::inverse(p))?,
            None => self.view(y)?,
        };
        let r = ktv.shape.len();
        if attention_streams(&qv.shape, &ktv.shape, &vv.shape, &out.shape) {
            let mut perm: Vec<usize> = (0..r).collect();
            perm.swap(r - 1, r - 2);
            let k = ktv.permute(&perm)?;
            let a = ops::attention::Attention { q: qv.clone(), k, v: vv.clone(), out: out.clone(), scale };
            return Ok(ops::attention::attention(&mut self.b, &a)?);
        }
        if layout != &AttentionLayout::default() {
            return unsupported("a fused attention with folded transposes that does not stream");
        }
        let q2 = if qv.shape.len() == 1 { qv.tensor.view(&[1, qv.shape[0]]) } else { qv };
        let k2 = if ktv.shape.len() == 1 { ktv.tensor.view(&[ktv.shape[0], 1]) } else { ktv };
        let (m, n) = (q2.shape[q2.shape.len() - 2], k2.shape[k2.shape.len() - 1]);
        let batch = crate::tensor::shape::broadcast_shapes(
            &q2.shape[..q2.shape.len() - 2],
            &k2.shape[..k2.shape.len() - 2],
        )?;
        let sshape = [batch, vec![m, n]].concat();
        let len = sshape.iter().product::<usize>();
        // Scores in f32 whatever the precision: softmax reads them, and f16 scores scaled by
        // 1/sqrt(d) lose what the exp amplifies.
        let scores = self.scratch("attention.scores", GDType::F32, len)?;
        let probs = self.scratch("attention.probs", self.vtype(y), len)?;
        let mut mm = ops::matmul::MatMul::new(q2, k2, scores.view(&sshape));
        mm.alpha = scale;
        ops::matmul::matmul(&mut self.b, &mm)?;
        ops::reduce::softmax(&mut self.b, &scores, &sshape, sshape.len() - 1, false, &probs)?;
        let v2 = if vv.shape.len() == 1 { vv.tensor.view(&[vv.shape[0], 1]) } else { vv };
        let oshape = [sshape[..sshape.len() - 2].to_vec(), vec![m, v2.shape[v2.shape.len() - 1]]].concat();
        let mm = ops::matmul::MatMul::new(probs.view(&sshape), v2, out.tensor.view(&oshape));
        Ok(ops::matmul::matmul(&mut self.b, &mm)?)
    }

    /// An attention input as a view, narrowed and reshaped first where the layout takes the
    /// operand from a part of it (no copy: the fusion pass checked the reshape keeps a view).
    fn operand_view(&mut self, x: ValueId, source: &Option<Box<OperandSource>>) -> R<View> {
        let view = self.view(x)?;
        let Some(s) = source else { return Ok(view) };
        let mut shape = view.shape.clone();
        if s.axis >= shape.len() || s.start + s.len > shape[s.axis] {
            return unsupported(format!("part {s:?} of '{}' {shape:?}", self.name(x)));
        }
        shape[s.axis] = s.len;
        let Some(strides) = crate::tensor::shape::reshaped_strides(&shape, &view.strides, &s.shape) else {
            return unsupported(format!("part {s:?} of '{}' is not a view", self.name(x)));
        };
        Ok(View {
            offset: view.offset + s.start * view.strides[s.axis],
            shape: s.shape.clone(),
            strides,
            ..view
        })
    }

    pub(super) fn affine(&mut self, node: &Node, d: usize, op: &str) -> R<Affine> {
        let gamma = self.param(Self::input(node, 1)?)?;
        let beta = match Self::opt_input(node, 2) {
            Some(v) => self.param(v)?,
            None => self.upload_f32("zeros", &vec![0.0; d])?,
        };
        if gamma.len() != d || beta.len() != d {
            return unsupported(format!("{op} scale/bias must hold {d} values (no broadcasting)"));
        }
        Ok(Affine { gamma, beta })
    }

    pub(super) fn reduce(&mut self, node: &Node, r: &crate::ops::nn::reduce::Reduce) -> R<()> {
        let (x, y) = (Self::input(node, 0)?, Self::output(node, 0)?);
        self.float_operand(x)?;
        let shape = self.shape(x).to_vec();
        let input_axes = self.const_i64s(node, 1, "axes")?;
        let mask = crate::ops::nn::reduce::reduced_dims(r, shape.len(), input_axes)?;
        let (xt, yt) = (self.tensor(x)?, self.tensor(y)?);
        let total: usize = shape.iter().product();
        let op = match r.kind {
            ReduceKind::Sum => ReduceOp::Sum,
            ReduceKind::Mean => ReduceOp::Mean,
            ReduceKind::Max => ReduceOp::Max,
            ReduceKind::Min => ReduceOp::Min,
            ReduceKind::L2 => ReduceOp::L2,
            ReduceKind::Prod => ReduceOp::Prod,
        };
        let Some(mask) = mask.filter(|m| m.iter().any(|&b| b)) else {
            if op == ReduceOp::L2 && total > 0 {
                // Nothing reduced, yet each element becomes sqrt(x * x): a reduction over 1.
                return Ok(ops::reduce::reduce(&mut self.b, op, &xt, &[total, 1], &[1], &yt)?);
            }
            return self.move_view(&xt.view(&[total]), &yt.view(&[total]));
        };
        if total == 0 || shape.iter().zip(&mask).any(|(&d, &m)| m && d == 0) {
            return unsupported("reduction of an empty tensor");
        }
        // Kept dims first, reduced dims last; a transposing copy when they are not already so.
        let kept: Vec<usize> = (0..shape.len()).filter(|&d| !mask[d]).collect();
        let red: Vec<usize> = (0..shape.len()).filter(|&d| mask[d]).collect();
        let adjacent = red.windows(2).all(|w| w[1] == w[0] + 1);
        if adjacent {
            return Ok(ops::reduce::reduce(&mut self.b, op, &xt, &shape, &red, &yt)?);
        }
        let perm: Vec<usize> = kept.iter().chain(&red).copied().collect();
        let src = xt.view(&shape).permute(&perm)?;
        let tmp = self.scratch("reduce.permuted", xt.dtype(), total)?;
        self.move_view(&src, &tmp.view(&src.shape))?;
        let axes: Vec<usize> = (kept.len()..shape.len()).collect();
        Ok(ops::reduce::reduce(&mut self.b, op, &tmp, &src.shape, &axes, &yt)?)
    }
}
