//! DequantizeLinear and QuantizeLinear, per tensor or per axis, int8 and uint8.
//! DequantizeLinear is not folded at build time: backends run int8 weights as they are.

use crate::cpu::parallel;
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::normalize_axis;
use crate::tensor::{DType, Tensor, TensorData};

const QUANTIZED: &[DType] = &[DType::I8, DType::U8, DType::I32];

#[derive(Clone, Debug, PartialEq)]
pub struct Dequantize {
    pub axis: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Quantize {
    pub axis: i64,
    /// Output dtype when no zero point is given (`output_dtype`, opset 21; uint8 by default).
    pub output_dtype: DType,
}

/// Which scale/zero-point entry applies to each element: one for all, or one per index along
/// the axis (`(i / inner) % dim`).
struct ParamIndex {
    inner: usize,
    dim: usize,
}

impl ParamIndex {
    fn at(&self, i: usize) -> usize {
        (i / self.inner) % self.dim
    }
}

fn param_index(shape: &[usize], scale_shape: &[usize], axis: i64) -> Result<ParamIndex, OpError> {
    let count: usize = scale_shape.iter().product();
    if count == 1 && scale_shape.len() <= 1 {
        return Ok(ParamIndex { inner: 1, dim: 1 });
    }
    let axis = normalize_axis(axis, shape.len())?;
    if scale_shape != [shape[axis]] {
        return Err(OpError::invalid(format!(
            "scale {scale_shape:?} is neither a scalar nor [{}] along axis {axis} (blocked quantization is not supported)",
            shape[axis]
        )));
    }
    let inner: usize = shape[axis + 1..].iter().product();
    Ok(ParamIndex { inner: inner.max(1), dim: shape[axis].max(1) })
}

fn zero_points(zp: Option<&Tensor>, n: usize) -> Vec<f32> {
    zp.map_or_else(|| vec![0.0; n], |z| z.to_f32_vec())
}

/// A stored integer type of DequantizeLinear.
trait Quantized: Copy + Sync {
    fn value(self) -> f32;
}

macro_rules! quantized {
    ($($t:ty),*) => {$(impl Quantized for $t {
        fn value(self) -> f32 {
            self as f32
        }
    })*};
}
quantized!(i8, u8, i32);

/// `(x - zp) * scale` into `out`, row by row: a row holds one run of `inner` elements per
/// scale, so both per-axis layouts (a conv's output channels first, a MatMul's last) become plain
/// loops the compiler vectorises. This runs on every CPU call of an int8 model (its weights stay
/// int8 in memory), so it must be cheap.
fn dequantize_runs<T: Quantized>(x: &[T], which: &ParamIndex, s: &[f32], zp: &[f32], out: &mut [f32]) {
    // Per tensor: one run over everything.
    let (dim, inner) = if which.dim == 1 { (1, x.len().max(1)) } else { (which.dim, which.inner) };
    let row = dim * inner;
    let rows_per_chunk = parallel::chunk_len(x.len().div_ceil(row), row);
    parallel::for_each_chunk_mut(out, rows_per_chunk * row, |c, dst| {
        let src = &x[c * rows_per_chunk * row..];
        for (dst, src) in dst.chunks_mut(row).zip(src.chunks(row)) {
            if inner == 1 {
                for (((d, &v), &s), &zp) in dst.iter_mut().zip(src).zip(s).zip(zp) {
                    *d = (v.value() - zp) * s;
                }
                continue;
            }
            for ((dst, src), (&s, &zp)) in dst.chunks_mut(inner).zip(src.chunks(inner)).zip(s.iter().zip(zp))
            {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = (v.value() - zp) * s;
                }
            }
        }
    });
}

impl OpSpec for Dequantize {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "x")?;
        let scale = required(inputs, 1, "x_scale")?;
        expect_dtype("x", x.dtype(), QUANTIZED)?;
        expect_dtype("x_scale", scale.dtype(), &[DType::F32, DType::F16])?;
        param_index(x.shape(), scale.shape(), self.axis)?;
        if let Some(zp) = inputs.get(2).copied().flatten() {
            expect_dtype("x_zero_point", zp.dtype(), &[x.dtype()])?;
            let count = |shape: &[usize]| shape.iter().product::<usize>();
            if count(zp.shape()) != count(scale.shape()) {
                return Err(OpError::invalid(format!(
                    "x_zero_point {:?} and x_scale {:?} differ in size",
                    zp.shape(),
                    scale.shape()
                )));
            }
        }
        Ok(vec![TensorType::new(scale.dtype(), x.shape().to_vec())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "x")?;
        let scale = required(inputs, 1, "x_scale")?;
        let which = param_index(x.shape(), scale.shape(), self.axis)?;
        let s = scale.to_f32_vec();
        let zp = zero_points(inputs.get(2).copied().flatten(), s.len());
        if zp.len() != s.len() {
            return Err(OpError::invalid(format!("{} zero points for {} scales", zp.len(), s.len())));
        }
        let mut out = vec![0.0f32; x.len()];
        match x.data() {
            TensorData::I8(v) => dequantize_runs(v, &which, &s, &zp, &mut out),
            TensorData::U8(v) => dequantize_runs(v, &which, &s, &zp, &mut out),
            TensorData::I32(v) => dequantize_runs(v, &which, &s, &zp, &mut out),
            other => return Err(OpError::invalid(format!("x of type {:?} is not quantized", other.dtype()))),
        }
        Ok(vec![Tensor::from_f32(x.shape().to_vec(), out)?.cast(scale.dtype())])
    }

    fn foldable(&self) -> bool {
        false
    }
}

impl Quantize {
    fn output_dtype(&self, zp: Option<DType>) -> DType {
        zp.unwrap_or(self.output_dtype)
    }
}

impl OpSpec for Quantize {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "x")?;
        let scale = required(inputs, 1, "y_scale")?;
        expect_dtype("x", x.dtype(), &[DType::F32, DType::F16])?;
        param_index(x.shape(), scale.shape(), self.axis)?;
        let zp = inputs.get(2).copied().flatten().map(|z| z.dtype());
        let out = self.output_dtype(zp);
        expect_dtype("y_zero_point", out, &[DType::I8, DType::U8])?;
        Ok(vec![TensorType::new(out, x.shape().to_vec())])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "x")?;
        let scale = required(inputs, 1, "y_scale")?;
        let which = param_index(x.shape(), scale.shape(), self.axis)?;
        let s = scale.to_f32_vec();
        let zp_tensor = inputs.get(2).copied().flatten();
        let zp = zero_points(zp_tensor, s.len());
        let out_dtype = self.output_dtype(zp_tensor.map(|z| z.dtype()));
        let (lo, hi) = if out_dtype == DType::I8 { (-128.0, 127.0) } else { (0.0, 255.0) };
        // Round half to even, then saturate, as the spec requires.
        let q: Vec<i64> = x
            .to_f32_vec()
            .into_iter()
            .enumerate()
            .map(|(i, v)| ((v / s[which.at(i)]).round_ties_even() + zp[which.at(i)]).clamp(lo, hi) as i64)
            .collect();
        Ok(vec![Tensor::from_i64(x.shape().to_vec(), q)?.cast(out_dtype)])
    }
}

fn check_block_size(attrs: &mut Attrs) -> Result<(), OpError> {
    if attrs.int_or("block_size", 0)? != 0 {
        return Err(OpError::unsupported("blocked quantization (block_size > 0)", "per-tensor and per-axis"));
    }
    Ok(())
}

fn parse_dequantize(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    check_block_size(attrs)?;
    Ok(Dequantize { axis: attrs.int_or("axis", 1)? }.into())
}

fn parse_quantize(attrs: &mut Attrs, _: &NodeContext) -> Result<Op, OpError> {
    check_block_size(attrs)?;
    // Only float8 targets read `saturate`; int8 and uint8 always saturate.
    attrs.ignore("saturate");
    let output_dtype = match attrs.int_or("output_dtype", 0)? {
        0 => DType::U8,
        code => {
            DType::from_onnx_code(code as i32).filter(|d| matches!(d, DType::I8 | DType::U8)).ok_or_else(
                || OpError::unsupported(format!("QuantizeLinear output_dtype {code}"), "int8, uint8"),
            )?
        }
    };
    Ok(Quantize { axis: attrs.int_or("axis", 1)?, output_dtype }.into())
}

pub(crate) const DEFS: &[&[OpDef]] = &[&[
    OpDef::new("DequantizeLinear", (10, 21), (2, 3), (1, 1), parse_dequantize),
    OpDef::new("QuantizeLinear", (10, 21), (2, 3), (1, 1), parse_quantize),
]];

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook formula, element by element, as the reference for the row-wise loops.
    fn naive(x: &[f32], shape: &[usize], axis: usize, s: &[f32], zp: &[f32]) -> Vec<f32> {
        let inner: usize = shape[axis + 1..].iter().product();
        x.iter()
            .enumerate()
            .map(|(i, &v)| (v - zp[(i / inner) % shape[axis]]) * s[(i / inner) % shape[axis]])
            .collect()
    }

    #[test]
    fn dequantize_matches_the_formula_on_every_axis_and_type() {
        // 64 x 3 x 600 spans several parallel chunks natively; odd sizes end runs mid-chunk.
        let shape = [64usize, 3, 600];
        let n: usize = shape.iter().product();
        let raw: Vec<i32> = (0..n as i32).map(|i| (i * 7919 % 255) - 127).collect();
        let inputs = [
            Tensor::new(shape.to_vec(), TensorData::I8(raw.iter().map(|&v| v as i8).collect())).unwrap(),
            Tensor::new(shape.to_vec(), TensorData::U8(raw.iter().map(|&v| (v + 127) as u8).collect()))
                .unwrap(),
            Tensor::new(shape.to_vec(), TensorData::I32(raw.iter().map(|&v| v * 1000).collect())).unwrap(),
        ];
        for x in &inputs {
            let xf = x.to_f32_vec();
            for axis in 0..3 {
                let d = shape[axis];
                let s: Vec<f32> = (0..d).map(|c| 0.01 + 0.003 * c as f32).collect();
                let zp: Vec<f32> = (0..d).map(|c| c as f32 * 3.0 - 2.0).collect();
                let zp_tensor = match x.dtype() {
                    DType::I8 => Tensor::new(vec![d], TensorData::I8(zp.iter().map(|&z| z as i8).collect())),
                    DType::U8 => {
                        Tensor::new(vec![d], TensorData::U8(zp.iter().map(|&z| (z + 2.0) as u8).collect()))
                    }
                    _ => Tensor::new(vec![d], TensorData::I32(zp.iter().map(|&z| z as i32).collect())),
                }
                .unwrap();
                let scale = Tensor::from_f32(vec![d], s.clone()).unwrap();
                let op = Dequantize { axis: axis as i64 - 3 };
                let got = op.run(&[Some(x), Some(&scale), Some(&zp_tensor)]).unwrap().remove(0);
                let want = naive(&xf, &shape, axis, &s, &zp_tensor.to_f32_vec());
                assert_eq!(got.shape(), shape, "axis {axis}");
                assert_eq!(got.to_f32_vec(), want, "{:?} axis {axis}", x.dtype());
            }
            // Per tensor, no zero point.
            let scale = Tensor::from_f32(vec![], vec![0.25]).unwrap();
            let got = Dequantize { axis: 1 }.run(&[Some(x), Some(&scale), None]).unwrap().remove(0);
            assert_eq!(got.to_f32_vec(), xf.iter().map(|v| v * 0.25).collect::<Vec<_>>());
        }
        // Zero points that do not match the scales are an error, not a partial result.
        let x = &inputs[0];
        let scale = Tensor::from_f32(vec![3], vec![0.1, 0.2, 0.3]).unwrap();
        let zp = Tensor::new(vec![2], TensorData::I8(vec![1, 2])).unwrap();
        let err = Dequantize { axis: 1 }.run(&[Some(x), Some(&scale), Some(&zp)]).unwrap_err();
        assert!(err.to_string().contains("2 zero points for 3 scales"), "{err}");
    }
}
