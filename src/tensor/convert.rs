//! Conversions between dtypes: ONNX Cast semantics and the f32/i64 views ops compute in.

use super::{DType, Tensor, TensorData};
use half::f16;

/// Every element as f32 (integers and bools convert exactly where f32 can hold them).
pub(crate) fn to_f32_vec(data: &TensorData) -> Vec<f32> {
    match data {
        TensorData::F32(v) => v.clone(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as f32).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as f32).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
    }
}

/// Every element as i64; floats truncate toward zero like ONNX Cast.
pub(crate) fn to_i64_vec(data: &TensorData) -> Vec<i64> {
    match data {
        TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32() as i64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
        TensorData::I64(v) => v.clone(),
        TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
    }
}

fn to_bool_vec(data: &TensorData) -> Vec<bool> {
    match data {
        TensorData::F32(v) => v.iter().map(|&x| x != 0.0).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32() != 0.0).collect(),
        TensorData::Bool(v) => v.clone(),
        other => to_i64_vec(other).into_iter().map(|x| x != 0).collect(),
    }
}

/// Integer targets wrap like numpy's `astype` for integers; floats saturate through `as`.
fn cast_data(data: &TensorData, to: DType) -> TensorData {
    if data.dtype() == to {
        return data.clone();
    }
    let from_float = data.dtype().is_float();
    macro_rules! int_from {
        ($t:ty) => {
            if from_float {
                to_f32_vec(data).into_iter().map(|x| x as $t).collect()
            } else {
                to_i64_vec(data).into_iter().map(|x| x as $t).collect()
            }
        };
    }
    match to {
        DType::F32 => TensorData::F32(to_f32_vec(data)),
        // Going through f32 can double-round huge int64 values; acceptable for a half target.
        DType::F16 => TensorData::F16(to_f32_vec(data).into_iter().map(f16::from_f32).collect()),
        DType::I8 => TensorData::I8(int_from!(i8)),
        DType::U8 => TensorData::U8(int_from!(u8)),
        DType::I32 => TensorData::I32(int_from!(i32)),
        DType::I64 => TensorData::I64(to_i64_vec(data)),
        DType::Bool => TensorData::Bool(to_bool_vec(data)),
    }
}

impl Tensor {
    /// ONNX `Cast`. To the same type it shares the data (ops cast their result to the output
    /// type unconditionally, and copying every Add's output cost more than the add).
    pub fn cast(&self, to: DType) -> Tensor {
        if self.dtype() == to {
            return self.clone();
        }
        Tensor { shape: self.shape.clone(), data: std::sync::Arc::new(cast_data(&self.data, to)) }
    }

    /// The elements as f32, borrowed when the tensor already is float32 (no copy on hot paths).
    pub fn f32s(&self) -> std::borrow::Cow<'_, [f32]> {
        match self.data.as_ref() {
            TensorData::F32(v) => std::borrow::Cow::Borrowed(v),
            other => std::borrow::Cow::Owned(to_f32_vec(other)),
        }
    }

    pub fn to_f32_vec(&self) -> Vec<f32> {
        to_f32_vec(&self.data)
    }

    pub fn to_i64_vec(&self) -> Vec<i64> {
        to_i64_vec(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_to_the_same_type_shares_the_data() {
        let t = Tensor::from_f32(vec![2], vec![1.5, -2.0]).unwrap();
        assert!(std::sync::Arc::ptr_eq(&t.cast(DType::F32).data, &t.data));
        let h = t.cast(DType::F16);
        assert_eq!((h.dtype(), h.to_f32_vec()), (DType::F16, vec![1.5, -2.0]));
    }
}
