//! Host tensors: a dtype, a static shape and owned data. Shapes and strides are plain data so
//! that the GPU backend can upload them as uniforms.

mod convert;
mod dtype;
pub mod shape;

pub use dtype::DType;
use half::f16;
use std::sync::Arc;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TensorError {
    #[error("shape {shape:?} needs {expected} elements but the data has {actual}")]
    Length { shape: Vec<usize>, expected: usize, actual: usize },
    #[error("shape {0:?} has more elements than this machine can address")]
    TooLarge(Vec<usize>),
    #[error("shapes {0:?} and {1:?} do not broadcast")]
    Broadcast(Vec<usize>, Vec<usize>),
    #[error("axis {axis} is out of range for rank {rank} (or repeated)")]
    Axis { axis: i64, rank: usize },
    #[error("expected a {expected} tensor, got {actual}")]
    DType { expected: &'static str, actual: DType },
}

/// Owned element storage, one variant per [`DType`].
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

/// Applies a generic expression to the vector inside any [`TensorData`] variant and wraps the
/// result in the same variant (`map_data!(data, v => expr)`), for dtype-agnostic layout ops.
#[macro_export]
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {{
        use $crate::tensor::TensorData as D;
        match $data {
            D::F32($v) => D::F32($body),
            D::F16($v) => D::F16($body),
            D::I8($v) => D::I8($body),
            D::U8($v) => D::U8($body),
            D::I32($v) => D::I32($body),
            D::I64($v) => D::I64($body),
            D::Bool($v) => D::Bool($body),
        }
    }};
}

/// Like [`map_data!`] but for an expression with any result type.
#[macro_export]
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {{
        use $crate::tensor::TensorData as D;
        match $data {
            D::F32($v) => $body,
            D::F16($v) => $body,
            D::I8($v) => $body,
            D::U8($v) => $body,
            D::I32($v) => $body,
            D::I64($v) => $body,
            D::Bool($v) => $body,
        }
    }};
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` copies of the zero value of `dtype`.
    pub fn zeros(dtype: DType, len: usize) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![0.0; len]),
            DType::F16 => TensorData::F16(vec![f16::ZERO; len]),
            DType::I8 => TensorData::I8(vec![0; len]),
            DType::U8 => TensorData::U8(vec![0; len]),
            DType::I32 => TensorData::I32(vec![0; len]),
            DType::I64 => TensorData::I64(vec![0; len]),
            DType::Bool => TensorData::Bool(vec![false; len]),
        }
    }

    /// Elements picked by index: the workhorse of the layout ops (Transpose, Slice, Gather, ...).
    pub fn take(&self, indices: &[usize]) -> TensorData {
        map_data!(self, v => indices.iter().map(|&i| v[i]).collect())
    }

    /// Concatenation of same-typed parts; `None` when the dtypes differ.
    pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
        let first = parts.first()?;
        let mut out = TensorData::zeros(first.dtype(), 0);
        for p in parts {
            out.extend(p)?;
        }
        Some(out)
    }

    fn extend(&mut self, other: &TensorData) -> Option<()> {
        self.extend_from_range(other, 0..other.len())
    }

    /// Appends `other[range]`; `None` when the dtypes differ.
    pub fn extend_from_range(&mut self, other: &TensorData, range: std::ops::Range<usize>) -> Option<()> {
        match (self, other) {
            (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(&b[range]),
            (TensorData::F16(a), TensorData::F16(b)) => a.extend_from_slice(&b[range]),
            (TensorData::I8(a), TensorData::I8(b)) => a.extend_from_slice(&b[range]),
            (TensorData::U8(a), TensorData::U8(b)) => a.extend_from_slice(&b[range]),
            (TensorData::I32(a), TensorData::I32(b)) => a.extend_from_slice(&b[range]),
            (TensorData::I64(a), TensorData::I64(b)) => a.extend_from_slice(&b[range]),
            (TensorData::Bool(a), TensorData::Bool(b)) => a.extend_from_slice(&b[range]),
            _ => return None,
        }
        Some(())
    }
}

/// A host tensor with a static row-major shape. The data is shared, so clones and reshapes
/// (Reshape, Squeeze, Identity, ...) cost no copy.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<TensorData>,
}

impl Tensor {
    /// The data allocation, shared by clones: its address identifies the values for caches
    /// (`cpu::prepared`).
    pub(crate) fn shared_data(&self) -> &Arc<TensorData> {
        &self.data
    }

    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor, TensorError> {
        let expected = shape::checked_numel(&shape)?;
        if expected != data.len() {
            return Err(TensorError::Length { shape, expected, actual: data.len() });
        }
        Ok(Tensor { shape, data: Arc::new(data) })
    }

    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let n = shape::checked_numel(&shape)?;
        Ok(Tensor { shape, data: Arc::new(TensorData::zeros(dtype, n)) })
    }

    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, TensorData::F32(data))
    }

    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Tensor, TensorError> {
        Tensor::new(shape, TensorData::I64(data))
    }

    /// A rank-1 int64 tensor, the form ONNX uses for shapes, axes and pads.
    pub fn vector_i64(data: Vec<i64>) -> Tensor {
        Tensor { shape: vec![data.len()], data: Arc::new(TensorData::I64(data)) }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The data, copied only if another tensor still shares it.
    pub fn into_data(self) -> TensorData {
        Arc::unwrap_or_clone(self.data)
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }

    /// The same data under another shape with as many elements.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let expected = shape::checked_numel(&shape)?;
        if expected != self.len() {
            return Err(TensorError::Length { shape, expected, actual: self.len() });
        }
        Ok(Tensor { shape, data: self.data })
    }

    pub fn as_f32(&self) -> Result<&[f32], TensorError> {
        match self.data.as_ref() {
            TensorData::F32(v) => Ok(v),
            _ => Err(TensorError::DType { expected: "float32", actual: self.dtype() }),
        }
    }

    pub fn as_bool(&self) -> Result<&[bool], TensorError> {
        match self.data.as_ref() {
            TensorData::Bool(v) => Ok(v),
            _ => Err(TensorError::DType { expected: "bool", actual: self.dtype() }),
        }
    }
}
