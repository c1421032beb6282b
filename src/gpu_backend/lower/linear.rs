//! MatMul, Gemm and Einsum (with their fused bias, activation and residual).

use super::*;

impl<'a, 'c> Lowering<'a, 'c> {
    /// A `[.., M, K]` or 1-D operand as a rank >= 2 view.
    pub(super) fn promoted(&mut self, v: ValueId, is_left: bool) -> R<View> {
        let mut view = self.view(v)?;
        if view.shape.len() == 1 {
            let k = view.shape[0];
            view = if is_left { view.tensor.view(&[1, k]) } else { view.tensor.view(&[k, 1]) };
        }
        Ok(view)
    }

    /// MatMul, with FusedMatMulAdd's addend `c` (repeating over the product) and a fused
    /// activation applied in the kernel's epilogue: a constant bias over the last axis as the
    /// kernel's f32 bias, any other addend as its broadcast `d` operand (beta 1); then a fused
    /// `residual` added after the activation.
    pub(super) fn matmul(
        &mut self,
        node: &Node,
        c: Option<ValueId>,
        activation: Activation,
        residual: Option<ValueId>,
    ) -> R<()> {
        let (a, w, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        self.float_operand(a)?;
        self.float_operand(w)?;
        let av = self.promoted(a, true)?;
        let (wv, scales) = match self.stored_operand(node, w, None)? {
            Some(s) => (s.tensor.view(self.shape(w)), s.scales),
            None => (self.promoted(w, false)?, None),
        };
        let (m, n) = (av.shape[av.shape.len() - 2], wv.shape[wv.shape.len() - 1]);
        let batch = crate::tensor::shape::broadcast_shapes(
            &av.shape[..av.shape.len() - 2],
            &wv.shape[..wv.shape.len() - 2],
        )?;
        let out_shape = [batch, vec![m, n]].concat();
        let yt = self.tensor(y)?;
        if out_shape.iter().product::<usize>() == 0 {
            return Ok(());
        }
        let vectors = (self.shape(a).len() == 1, self.shape(w).len() == 1);
        let mut mm = ops::matmul::MatMul::new(av, wv, yt.view(&out_shape));
        mm.activation = activation;
        mm.residual = self.residual(residual, y, &out_shape)?;
        if let Some(c) = c {
            self.float_operand(c)?;
            // C without its leading 1s is the trailing part of the product's shape.
            let cs = self.shape(c);
            let trailing = &cs[cs.iter().take_while(|&&d| d == 1).count()..];
            let bias_like = trailing == [n] && !vectors.1 && self.constant(c).is_some();
            if bias_like {
                mm.bias = Some(self.param(c)?);
            } else {
                let d = self.addend(c, trailing, self.shape(y), vectors, &out_shape)?;
                mm.d = Some(d);
            }
        }
        if mm.a.shape[mm.a.shape.len() - 1] == 0 {
            // No products: the output is the addend, or zero.
            if activation != Activation::None {
                return unsupported("an empty K with a fused activation");
            }
            let src = match (&mm.d, &mm.bias) {
                (Some(d), _) => d.clone(),
                (None, Some(bias)) => bias.view(&[n]).broadcast_to(&out_shape)?,
                (None, None) => {
                    let zeros = self.upload_f32("zero", &[0.0])?;
                    View {
                        tensor: zeros,
                        offset: 0,
                        shape: out_shape.clone(),
                        strides: vec![0; out_shape.len()],
                    }
                }
            };
            return self.move_view(&src, &mm.out);
        }
        mm.scales = self.upload_scales(w, scales)?;
        Ok(ops::matmul::matmul(&mut self.b, &mm)?)
    }

    /// FusedMatMulAdd's addend `c` (`trailing`: its shape without leading 1s) as a view of the
    /// kernel's output shape `out_shape`: broadcast to the product's shape, then with the unit
    /// dims of 1-D operands (`vectors`: A, B) put back. Where the output has more than two batch
    /// dims, a broadcast addend might not collapse with the others, so it is copied out first.
    pub(super) fn addend(
        &mut self,
        c: ValueId,
        trailing: &[usize],
        product: &[usize],
        vectors: (bool, bool),
        out_shape: &[usize],
    ) -> R<View> {
        let t = self.tensor(c)?;
        let mut d = t.view(trailing).broadcast_to(product)?;
        if vectors.1 {
            d.shape.push(1);
            d.strides.push(0);
        }
        if vectors.0 {
            let at = d.shape.len().saturating_sub(1);
            d.shape.insert(at, 1);
            d.strides.insert(at, 0);
        }
        if d.shape != out_shape {
            return unsupported(format!("addend {trailing:?} for a product of {out_shape:?}"));
        }
        if out_shape.len() > 4 && d.strides != contiguous_strides(out_shape) {
            let copy = self.scratch("matmul.addend", t.dtype(), d.numel())?;
            let whole = copy.view(out_shape);
            self.move_view(&d, &whole)?;
            return Ok(whole);
        }
        Ok(d)
    }

    /// An int8 weight's per-channel scales on the device.
    pub(super) fn upload_scales(&mut self, w: ValueId, scales: Option<Vec<f32>>) -> R<Option<GpuTensor>> {
        let name = format!("{}.scales", self.name(w));
        scales.map(|s| self.upload_f32(&name, &s)).transpose()
    }

    pub(super) fn gemm(
        &mut self,
        node: &Node,
        g: &crate::ops::linalg::gemm::Gemm,
        activation: Activation,
    ) -> R<()> {
        let (a, w, y) = (Self::input(node, 0)?, Self::input(node, 1)?, Self::output(node, 0)?);
        self.float_operand(a)?;
        let mut av = self.view(a)?;
        let (mut wv, scales) = match self.stored_operand(node, w, None)? {
            Some(s) => (s.tensor.view(self.shape(w)), s.scales),
            None => (self.view(w)?, None),
        };
        if g.trans_a {
            av = av.permute(&[1, 0])?;
        }
        if g.trans_b {
            wv = wv.permute(&[1, 0])?;
        }
        let out = self.view(y)?;
        let mut mm = ops::matmul::MatMul::new(av, wv, out.clone());
        mm.scales = self.upload_scales(w, scales)?;
        mm.alpha = g.alpha;
        mm.activation = activation;
        if let Some(c) = Self::opt_input(node, 2) {
            if g.beta != 0.0 {
                mm.d = Some(self.view(c)?.broadcast_to(&out.shape)?);
                mm.beta = g.beta;
            }
        }
        Ok(ops::matmul::matmul(&mut self.b, &mm)?)
    }

    /// Einsum as one batched matmul: labels of each operand are split into batch (in both and
    /// the output), free (in one operand and the output) and contracted (in both, not the output)
    /// and the operands permuted as strides; one operand is a permuted copy.
    pub(super) fn einsum(&mut self, node: &Node, e: &crate::ops::linalg::einsum::Einsum) -> R<()> {
        let y = Self::output(node, 0)?;
        let out = self.view(y)?;
        let has_repeat = |l: &[char]| (0..l.len()).any(|i| l[i + 1..].contains(&l[i]));
        if e.operands.iter().any(|l| has_repeat(l)) || has_repeat(&e.output) {
            return unsupported("repeated labels (traces/diagonals)");
        }
        match e.operands.len() {
            1 => {
                let x = Self::input(node, 0)?;
                let labels = &e.operands[0];
                if labels.iter().any(|c| !e.output.contains(c)) {
                    return unsupported("one-operand Einsum with summed labels");
                }
                let perm: Vec<usize> =
                    e.output.iter().map(|c| labels.iter().position(|l| l == c).unwrap_or(0)).collect();
                let src = self.view(x)?.permute(&perm)?;
                self.move_view(&src, &out)
            }
            2 => {
                let (a, w) = (Self::input(node, 0)?, Self::input(node, 1)?);
                let (la, lw, lo) = (&e.operands[0], &e.operands[1], &e.output);
                let batch: Vec<char> =
                    lo.iter().copied().filter(|c| la.contains(c) && lw.contains(c)).collect();
                let m: Vec<char> = lo.iter().copied().filter(|c| la.contains(c) && !lw.contains(c)).collect();
                let n: Vec<char> = lo.iter().copied().filter(|c| lw.contains(c) && !la.contains(c)).collect();
                let k: Vec<char> = la.iter().copied().filter(|c| lw.contains(c) && !lo.contains(c)).collect();
                if la.iter().chain(lw.iter()).any(|c| !lo.contains(c) && (!la.contains(c) || !lw.contains(c)))
                {
                    return unsupported("a label summed within one operand");
                }
                let (av, wv) = (self.view(a)?, self.view(w)?);
                let size = |c: &char| -> usize {
                    la.iter()
                        .position(|l| l == c)
                        .map(|i| av.shape[i])
                        .or_else(|| lw.iter().position(|l| l == c).map(|i| wv.shape[i]))
                        .unwrap_or(1)
                };
                // Operand views [batch..., M..., K...] / [batch..., K..., N...] merged into
                // [batch, M, K] through a contiguous copy each.
                let pack = |lb: &mut Lowering,
                            v: &View,
                            labels: &[char],
                            order: &[&[char]]|
                 -> R<(GpuTensor, Vec<usize>)> {
                    let perm: Vec<usize> = order
                        .iter()
                        .flat_map(|g| g.iter())
                        .map(|c| labels.iter().position(|l| l == c).unwrap_or(0))
                        .collect();
                    let p = v.permute(&perm)?;
                    let t = lb.scratch("einsum.operand", v.tensor.dtype(), p.numel().max(1))?;
                    if p.numel() > 0 {
                        lb.move_view(&p, &t.view(&p.shape))?;
                    }
                    let dims = order.iter().map(|g| g.iter().map(size).product()).collect();
                    Ok((t, dims))
                };
                let (ta, da) = pack(self, &av, la, &[&batch, &m, &k])?;
                let (tw, dw) = pack(self, &wv, lw, &[&batch, &k, &n])?;
                let (bsz, msz, ksz, nsz) = (da[0], da[1], da[2], dw[2]);
                let tmp = self.scratch("einsum.out", out.tensor.dtype(), (bsz * msz * nsz).max(1))?;
                if bsz * msz * nsz == 0 {
                    return Ok(());
                }
                if ksz == 0 {
                    return unsupported("an empty contracted dim");
                }
                let mm = ops::matmul::MatMul::new(
                    ta.view(&[bsz, msz, ksz]),
                    tw.view(&[bsz, ksz, nsz]),
                    tmp.view(&[bsz, msz, nsz]),
                );
                ops::matmul::matmul(&mut self.b, &mm)?;
                // tmp is [batch..., M..., N...]; the output order may differ.
                let natural: Vec<char> = batch.iter().chain(&m).chain(&n).copied().collect();
                let nat_shape: Vec<usize> = natural.iter().map(size).collect();
                let perm: Vec<usize> =
                    lo.iter().map(|c| natural.iter().position(|l| l == c).unwrap_or(0)).collect();
                let src = tmp.view(&nat_shape).permute(&perm)?;
                self.move_view(&src, &out)
            }
            k => unsupported(format!("Einsum with {k} operands")),
        }
    }

    /// A residual operand as a view for a kernel whose output has shape `kernel_shape`: the
    /// output `y`'s own shape (`kernel_shape` may add unit dims for vector operands), or a shape
    /// that broadcasts to it (the kernels take its strides).
    pub(super) fn residual(
        &mut self,
        r: Option<ValueId>,
        y: ValueId,
        kernel_shape: &[usize],
    ) -> R<Option<View>> {
        let Some(r) = r else { return Ok(None) };
        self.float_operand(r)?;
        let t = self.tensor(r)?;
        Ok(Some(if self.shape(r) == self.shape(y) { t.view(kernel_shape) } else { t.view(self.shape(r)) }))
    }
}
