//! Fused forms made by the fusion passes (`graph::phases::fuse`), never parsed from a model.
//! Attention runs the streaming kernel of [`super::attention`] (checked there against the unfused
//! ops), so the CPU backend never holds a score tensor either.

use super::attention;
use super::elementwise::binary::{Binary, BinaryKind};
use super::elementwise::unary::{Unary, UnaryKind};
use super::layout::transpose::{self, permute};
use super::linalg::matmul::{batched_matmul_onto, MatMul};
use super::nn::softmax::Softmax;
use super::norm::{Epilogue, PerChannel};
use super::{expect_dtype, required, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::gpu::Activation;
use crate::tensor::{DType, Tensor, TensorData};

#[derive(Clone, Debug, PartialEq)]
pub enum Fused {
    /// `softmax(scale * Q @ Kt, last axis) @ V`; inputs `[Q, Kt, V]`, `Kt` being the first
    /// MatMul's right operand (K transposed), each maybe permuted by `layout`.
    Attention { scale: f32, layout: AttentionLayout },
    /// `base` (GroupNorm, InstanceNorm, MatMul, Gemm, MatMulAdd, Conv or ConvTranspose) followed
    /// by `activation`; inputs are `base`'s.
    Activated { base: Box<Op>, activation: Activation },
    /// `MatMul(A, B) + C`, C repeating over the product (a bias `[n]`, or the product's shape);
    /// inputs `[A, B, C]`. The GPU adds C in the matmul kernel's epilogue.
    MatMulAdd,
    /// `base(...) + R`, R of the base's output type, broadcasting to its shape (a residual
    /// connection after a conv or a projection, a time embedding after a conv); inputs: `base`'s,
    /// padded to its full arity with `None`, then R. The GPU adds R in the matmul or conv kernel's
    /// epilogue, after the activation.
    Residual { base: Box<Op> },
    /// `activation(norm(...) * scale + shift)` (FiLM's or adaLN's conditioning after a Group,
    /// Instance or LayerNormalization), scale and shift broadcasting to the norm's output;
    /// inputs: the norm's, padded to 3 with `None`, then scale and shift.
    Modulated { norm: Box<Op>, activation: Activation },
}

/// Transposes folded into a fused attention (`fuse::AttentionLayoutPass`): operand `i` (Q, Kt,
/// V) is input `i` permuted by `inputs[i]`, and the node's output is the attention's output
/// permuted by `output` (torch's head split and merge around attention). With `sources[i]`,
/// input `i` is first narrowed and reshaped (`fuse::AttentionSourcePass`: Q, K and V as parts of
/// one fused projection). Both backends read and write through views, so the copies never run
/// (the CPU copies only a part that is no view: an empty one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AttentionLayout {
    pub inputs: [Option<Vec<usize>>; 3],
    pub output: Option<Vec<usize>>,
    pub sources: [Option<Box<OperandSource>>; 3],
}

/// An attention operand taken from a part of a larger tensor (the Split of a fused QKV or KV
/// projection, then the Reshape into heads): `reshape(narrow(input, axis, start, len), shape)`,
/// always expressible as a view of the input (`tensor::shape::reshaped_strides`).
#[derive(Clone, Debug, PartialEq)]
pub struct OperandSource {
    pub axis: usize,
    pub start: usize,
    pub len: usize,
    pub shape: Vec<usize>,
}

impl OperandSource {
    /// The strides of the part in a contiguous input of `shape`, where the part is a view of it.
    fn strides_in(&self, shape: &[usize]) -> Option<Vec<usize>> {
        let mut narrowed = shape.to_vec();
        *narrowed.get_mut(self.axis)? = self.len;
        if self.start + self.len > shape[self.axis] {
            return None;
        }
        crate::tensor::shape::reshaped_strides(&narrowed, &crate::tensor::shape::strides(shape), &self.shape)
    }

    /// The part of `whole` (a contiguous input) as a view, where it is one.
    fn view<'a>(&self, whole: attention::Strided<'a>) -> Option<attention::Strided<'a>> {
        let strides = self.strides_in(&whole.shape)?;
        let offset = self.start * whole.strides[self.axis];
        Some(attention::Strided { shape: self.shape.clone(), strides, offset, ..whole })
    }

    /// The part of a contiguous `t`, as a tensor of the source's shape.
    fn take(&self, t: &Tensor) -> Result<Tensor, OpError> {
        let own = crate::tensor::shape::strides(t.shape());
        let mut shape = t.shape().to_vec();
        if self.axis >= shape.len() || self.start + self.len > shape[self.axis] {
            return Err(OpError::invalid(format!("part {self:?} of a tensor of shape {shape:?}")));
        }
        shape[self.axis] = self.len;
        let view = crate::cpu::strided::View {
            shape,
            strides: own.iter().map(|&s| s as isize).collect(),
            offset: self.start * own[self.axis],
        };
        let data = crate::map_data!(t.data(), v => crate::cpu::strided::gather(v, &view));
        Ok(Tensor::new(self.shape.clone(), data)?)
    }
}

impl AttentionLayout {
    /// The operand shapes (Q, Kt, V) of inputs of these shapes.
    pub fn operand_shapes(&self, inputs: [&[usize]; 3]) -> [Vec<usize>; 3] {
        std::array::from_fn(|i| {
            let input = self.sources[i].as_ref().map_or(inputs[i], |s| &s.shape[..]);
            match &self.inputs[i] {
                Some(p) => p.iter().map(|&d| input[d]).collect(),
                None => input.to_vec(),
            }
        })
    }

    /// The node's output shape for an attention output of shape `out`.
    pub fn output_shape(&self, out: &[usize]) -> Vec<usize> {
        match &self.output {
            Some(p) => p.iter().map(|&d| out[d]).collect(),
            None => out.to_vec(),
        }
    }

    /// The attention's own output shape, before the output permutation, of a node whose output
    /// has shape `stored` (the inverse of [`AttentionLayout::output_shape`]).
    pub fn attention_shape(&self, stored: &[usize]) -> Vec<usize> {
        match &self.output {
            Some(p) => transpose::inverse(p).iter().map(|&d| stored[d]).collect(),
            None => stored.to_vec(),
        }
    }
}

/// Whether an attention of these operand and output shapes streams over its keys on the GPU (one
/// kernel through views); the others run as MatMul, softmax and MatMul there.
pub fn attention_streams(q: &[usize], kt: &[usize], v: &[usize], out: &[usize]) -> bool {
    let r = out.len();
    (3..=4).contains(&r)
        && q.len() == r
        && kt.len() == r
        && v.len() == r
        && q[..r - 2] == out[..r - 2]
        && q[r - 1] <= 256
}

fn permuted<'a>(t: &'a Tensor, perm: &Option<Vec<usize>>) -> Result<std::borrow::Cow<'a, Tensor>, OpError> {
    Ok(match perm {
        Some(p) => std::borrow::Cow::Owned(permute(t, p)?),
        None => std::borrow::Cow::Borrowed(t),
    })
}

const LAST: Softmax = Softmax { axis: -1, coerce_2d: false, log: false };

/// `activation` on the CPU through the unary op of the same arithmetic, so a fused norm computes
/// the bits the unfused Sigmoid and Mul (or Relu, Tanh, ...) would.
/// The unary op an activation is (`None` for none).
fn unary_kind(activation: Activation) -> Option<UnaryKind> {
    Some(match activation {
        Activation::None => return None,
        Activation::Relu => UnaryKind::Relu,
        Activation::LeakyRelu(alpha) => UnaryKind::LeakyRelu { alpha },
        Activation::Silu => UnaryKind::Silu,
        Activation::Gelu => UnaryKind::Gelu { tanh_approximation: false },
        Activation::GeluTanh => UnaryKind::Gelu { tanh_approximation: true },
        Activation::Sigmoid => UnaryKind::Sigmoid,
        Activation::Tanh => UnaryKind::Tanh,
    })
}

fn activate(t: Tensor, activation: Activation) -> Result<Tensor, OpError> {
    match unary_kind(activation) {
        None => Ok(t),
        Some(kind) => Ok(Unary { kind }.run(&[Some(&t)])?.remove(0)),
    }
}

/// A Group or Instance norm of f32 input followed by `then` in one pass over each channel's
/// plane, the unfused ops' bits (`norm::Epilogue`); `None` for other norms and dtypes, which run
/// the ops in sequence.
fn norm_then(norm: &Op, inputs: &[Option<&Tensor>], then: Epilogue) -> Option<Result<Tensor, OpError>> {
    if inputs.first().copied().flatten()?.dtype() != DType::F32 {
        return None;
    }
    match norm {
        Op::GroupNorm(n) => Some(n.run_then(inputs, then)),
        Op::InstanceNorm(n) => Some(n.run_then(inputs, then)),
        _ => None,
    }
}

impl OpSpec for Fused {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        match self {
            Fused::Attention { layout, .. } => {
                let (q, kt) = (required(inputs, 0, "Q")?, required(inputs, 1, "Kt")?);
                let v = required(inputs, 2, "V")?;
                let shapes = layout.operand_shapes([q.shape(), kt.shape(), v.shape()]);
                let [q, kt, v] = [(q, &shapes[0]), (kt, &shapes[1]), (v, &shapes[2])]
                    .map(|(x, s)| ValueInfo { ty: TensorType::new(x.dtype(), s.clone()), value: None });
                let scores = MatMul.infer(&[Some(&q), Some(&kt)])?.remove(0);
                let scores = ValueInfo { ty: scores, value: None };
                let mut out = MatMul.infer(&[Some(&scores), Some(&v)])?;
                out[0].shape = layout.output_shape(&out[0].shape);
                Ok(out)
            }
            Fused::Activated { base, .. } => base.spec().infer(inputs),
            Fused::Residual { base } => {
                let (r, base_inputs) = inputs.split_last().ok_or_else(|| OpError::invalid("no residual"))?;
                let r = r.ok_or_else(|| OpError::invalid("the residual is missing"))?;
                let out = base.spec().infer(base_inputs)?;
                let fits = out.len() == 1
                    && crate::tensor::shape::broadcast_shapes(&out[0].shape, r.shape())
                        .is_ok_and(|s| s == out[0].shape);
                if !fits || out[0].dtype != r.dtype() {
                    return Err(OpError::invalid(format!(
                        "residual {:?} {:?} does not match the product {out:?}",
                        r.dtype(),
                        r.shape()
                    )));
                }
                Ok(out)
            }
            Fused::Modulated { norm, .. } => {
                let (norm_inputs, conditioning) = split_modulation(inputs)?;
                let out = norm.spec().infer(norm_inputs)?;
                for (name, v) in [("scale", conditioning[0]), ("shift", conditioning[1])] {
                    let v = v.ok_or_else(|| OpError::invalid(format!("the modulation {name} is missing")))?;
                    let fits = out.len() == 1
                        && crate::tensor::shape::broadcast_shapes(&out[0].shape, v.shape())
                            .is_ok_and(|s| s == out[0].shape);
                    if !fits || v.dtype() != out[0].dtype {
                        return Err(OpError::invalid(format!(
                            "modulation {name} {:?} {:?} does not broadcast to the norm's output {out:?}",
                            v.dtype(),
                            v.shape()
                        )));
                    }
                }
                Ok(out)
            }
            Fused::MatMulAdd => {
                let (a, b, c) =
                    (required(inputs, 0, "A")?, required(inputs, 1, "B")?, required(inputs, 2, "C")?);
                let product = MatMul.infer(&[Some(a), Some(b)])?.remove(0);
                expect_dtype("C", c.dtype(), &[product.dtype])?;
                if !repeats_over(c.shape(), &product.shape) {
                    return Err(OpError::invalid(format!(
                        "C {:?} does not repeat over the product {:?}",
                        c.shape(),
                        product.shape
                    )));
                }
                Ok(vec![product])
            }
        }
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        match self {
            Fused::Attention { scale, layout } => {
                // A part that is no view of its input (an empty one) is copied out first.
                let parts: Vec<Option<Tensor>> = (0..3)
                    .map(|i| match (&layout.sources[i], inputs.get(i).copied().flatten()) {
                        (Some(s), Some(t)) if s.strides_in(t.shape()).is_none() => s.take(t).map(Some),
                        _ => Ok(None),
                    })
                    .collect::<Result<_, _>>()?;
                let names = ["Q", "Kt", "V"];
                let tensors = (0..3)
                    .map(|i| match &parts[i] {
                        Some(t) => Ok(t),
                        None => required(inputs, i, names[i]),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let values: Vec<_> = tensors.iter().map(|t| t.f32s()).collect();
                let mut views = Vec::with_capacity(3);
                for i in 0..3 {
                    let whole = attention::Strided::contiguous(tensors[i].shape(), &values[i]);
                    let view = match (&layout.sources[i], &parts[i]) {
                        (Some(s), None) => s.view(whole).expect("checked above"),
                        _ => whole,
                    };
                    views.push(match &layout.inputs[i] {
                        Some(p) => view.permuted(p)?,
                        None => view,
                    });
                }
                if views.iter().any(|v| v.shape.len() < 2) {
                    let [q, kt, v] = [0, 1, 2].map(|i| permuted(tensors[i], &layout.inputs[i]));
                    let mut out = attend_vectors(*scale, &*q?, &*kt?, &*v?)?;
                    if let Some(p) = &layout.output {
                        out[0] = permute(&out[0], p)?;
                    }
                    return Ok(out);
                }
                let (shape, out) = attention::attention_strided(
                    &views[0],
                    &views[1],
                    &views[2],
                    *scale,
                    layout.output.as_deref(),
                )?;
                in_dtype_of(tensors[0], shape, out)
            }
            Fused::Activated { base, activation } => {
                let then = Epilogue { modulation: None, activation: unary_kind(*activation) };
                if let Some(y) = norm_then(base, inputs, then) {
                    return Ok(vec![y?]);
                }
                let mut out = base.spec().run(inputs)?;
                let y = out.remove(0);
                out.insert(0, activate(y, *activation)?);
                Ok(out)
            }
            Fused::Residual { base } => {
                let (r, base_inputs) = inputs.split_last().ok_or_else(|| OpError::invalid("no residual"))?;
                let r = r.ok_or_else(|| OpError::invalid("the residual is missing"))?;
                let y = base.spec().run(base_inputs)?.remove(0);
                let shape = y.shape().to_vec();
                match (y.into_data(), r.as_f32()) {
                    (TensorData::F32(mut sum), Ok(rv)) if shape == r.shape() => {
                        // Onto the product in place: the bits of Add, without a third buffer.
                        sum.iter_mut().zip(rv).for_each(|(s, r)| *s += r);
                        Ok(vec![Tensor::from_f32(shape, sum)?])
                    }
                    (data, _) => ADD.run(&[Some(&Tensor::new(shape, data)?), Some(r)]),
                }
            }
            Fused::Modulated { norm, activation } => {
                let (norm_inputs, conditioning) = split_modulation(inputs)?;
                let (scale, shift) =
                    (required(conditioning, 0, "scale")?, required(conditioning, 1, "shift")?);
                if let (Some(x), Ok(sv), Ok(hv)) =
                    (required(norm_inputs, 0, "X").ok(), scale.as_f32(), shift.as_f32())
                {
                    let per_channel = |v, t: &Tensor| PerChannel::new(v, t.shape(), x.shape());
                    if let (Some(s), Some(h)) = (per_channel(sv, scale), per_channel(hv, shift)) {
                        let then = Epilogue { modulation: Some([s, h]), activation: unary_kind(*activation) };
                        if let Some(y) = norm_then(norm, norm_inputs, then) {
                            return Ok(vec![y?]);
                        }
                    }
                }
                // The unfused ops in sequence: the same bits.
                let y = norm.spec().run(norm_inputs)?.remove(0);
                let y = MUL.run(&[Some(&y), Some(scale)])?.remove(0);
                let y = ADD.run(&[Some(&y), Some(shift)])?.remove(0);
                Ok(vec![activate(y, *activation)?])
            }
            Fused::MatMulAdd => {
                let (a, b, c) =
                    (required(inputs, 0, "A")?, required(inputs, 1, "B")?, required(inputs, 2, "C")?);
                if [a, b, c].iter().all(|t| t.dtype() == DType::F32) {
                    let (shape, out) =
                        batched_matmul_onto(a.shape(), &a.f32s(), b.shape(), &b.f32s(), Some(&c.f32s()))?;
                    return Ok(vec![Tensor::from_f32(shape, out)?]);
                }
                let product = MatMul.run(&[Some(a), Some(b)])?.remove(0);
                ADD.run(&[Some(&product), Some(c)])
            }
        }
    }
}

/// The attention's f32 result as a tensor of Q's dtype.
fn in_dtype_of(q: &Tensor, shape: Vec<usize>, out: Vec<f32>) -> Result<Vec<Tensor>, OpError> {
    let out = Tensor::from_f32(shape, out)?;
    Ok(vec![if q.dtype() == DType::F32 { out } else { out.cast(q.dtype()) }])
}

/// The attention of operands in their logical layout (Q, Kt, V), one of them 1-D (numpy's vector
/// promotion): the ops in sequence.
fn attend_vectors(scale: f32, q: &Tensor, kt: &Tensor, v: &Tensor) -> Result<Vec<Tensor>, OpError> {
    let scores = MatMul.run(&[Some(q), Some(kt)])?.remove(0);
    let scores = activate_scaled(scores, scale)?;
    let p = LAST.run(&[Some(&scores)])?.remove(0);
    MatMul.run(&[Some(&p), Some(v)])
}

const ADD: Binary = Binary { kind: BinaryKind::Add };
const MUL: Binary = Binary { kind: BinaryKind::Mul };

/// The inputs of a fused op, split in two.
type Split<'a, T> = (&'a [Option<T>], &'a [Option<T>]);

/// A modulated norm's inputs: the norm's (three slots) and the scale and shift.
fn split_modulation<T>(inputs: &[Option<T>]) -> Result<Split<'_, T>, OpError> {
    if inputs.len() != 5 {
        return Err(OpError::invalid(format!("a modulated norm takes 5 inputs, got {}", inputs.len())));
    }
    Ok(inputs.split_at(3))
}

/// Whether `c` is the trailing part of `shape` (after leading 1s), so that repeating its
/// elements fills `shape` in order: a bias over the last dim, or the whole shape.
pub fn repeats_over(c: &[usize], shape: &[usize]) -> bool {
    let c = &c[c.iter().take_while(|&&d| d == 1).count()..];
    c.len() <= shape.len() && shape.ends_with(c)
}

fn activate_scaled(t: Tensor, scale: f32) -> Result<Tensor, OpError> {
    let dtype = t.dtype();
    let v: Vec<f32> = t.f32s().iter().map(|&x| x * scale).collect();
    let out = Tensor::from_f32(t.shape().to_vec(), v)?;
    Ok(if dtype == DType::F32 { out } else { out.cast(dtype) })
}
