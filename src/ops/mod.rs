//! ONNX operators: one file per op or op family, each with its opset range, arity, typed
//! attributes, shape inference and CPU reference, tests beside it.
//!
//! A parsed node is an [`Op`]: plain data that the CPU backend runs through [`OpSpec`] and that a
//! GPU lowering can match on.

mod attrs;
mod error;
mod registry;

pub mod attention;
pub mod elementwise;
pub mod fused;
pub mod layout;
pub mod linalg;
pub mod nn;
pub mod norm;
pub mod quant;
pub mod source;

pub use attrs::{AttrValue, Attrs};
pub use error::OpError;
pub use registry::{find, parse_node, supported_op_types, NodeContext, OpDef, ParseError};

use crate::tensor::{DType, Tensor};
use std::sync::Arc;

/// Static type of a value: its dtype and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>) -> TensorType {
        TensorType { dtype, shape }
    }

    pub fn of(tensor: &Tensor) -> TensorType {
        TensorType::new(tensor.dtype(), tensor.shape().to_vec())
    }

    pub fn size_bytes(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size_bytes()
    }
}

/// What shape inference knows about an input: its type and, when known at build time, its value.
#[derive(Clone, Debug)]
pub struct ValueInfo {
    pub ty: TensorType,
    pub value: Option<Arc<Tensor>>,
}

impl ValueInfo {
    pub fn constant(tensor: Arc<Tensor>) -> ValueInfo {
        ValueInfo { ty: TensorType::of(&tensor), value: Some(tensor) }
    }

    pub fn shape(&self) -> &[usize] {
        &self.ty.shape
    }

    pub fn dtype(&self) -> DType {
        self.ty.dtype
    }
}

/// Behaviour shared by every op: static shape inference and the CPU reference.
pub trait OpSpec {
    /// Output types from input types; optional inputs that were omitted are `None`.
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError>;

    /// The CPU reference implementation.
    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError>;

    /// Outputs computable from input types alone (Shape, Size), so they fold even when the
    /// input's values are only known at run time.
    fn fold_from_types(&self, _inputs: &[Option<&ValueInfo>]) -> Option<Vec<Tensor>> {
        None
    }

    /// Whether building may evaluate the op when all its inputs are constants. Ops whose
    /// unfolded form matters to a backend (DequantizeLinear of int8 weights) say no.
    fn foldable(&self) -> bool {
        true
    }
}

/// An input that must be present.
pub(crate) fn required<'a, T: ?Sized>(
    inputs: &[Option<&'a T>],
    index: usize,
    name: &'static str,
) -> Result<&'a T, OpError> {
    inputs.get(index).copied().flatten().ok_or(OpError::MissingInput { index, name })
}

/// An optional input whose value must be known at build time, read as int64s.
pub(crate) fn const_i64s(
    inputs: &[Option<&ValueInfo>],
    index: usize,
    name: &'static str,
) -> Result<Option<Vec<i64>>, OpError> {
    match inputs.get(index).copied().flatten() {
        None => Ok(None),
        Some(info) => match &info.value {
            Some(t) => Ok(Some(t.to_i64_vec())),
            None => Err(OpError::NotConstant { name }),
        },
    }
}

/// An optional input read as int64s at run time.
pub(crate) fn opt_i64s(inputs: &[Option<&Tensor>], index: usize) -> Option<Vec<i64>> {
    inputs.get(index).copied().flatten().map(|t| t.to_i64_vec())
}

/// Checks that an input has one of the accepted dtypes.
pub(crate) fn expect_dtype(name: &'static str, actual: DType, accepted: &[DType]) -> Result<(), OpError> {
    if accepted.contains(&actual) {
        Ok(())
    } else {
        Err(OpError::InputType {
            name,
            actual,
            expected: accepted.iter().map(|d| d.name()).collect::<Vec<_>>().join(" or "),
        })
    }
}

pub(crate) const FLOATS: &[DType] = &[DType::F32, DType::F16];

/// Declares [`Op`], one variant per op config type, and its dispatch to [`OpSpec`].
macro_rules! op_enum {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A parsed ONNX node: the op kind and its typed attributes.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op { $($variant($ty)),* }

        impl Op {
            pub fn spec(&self) -> &dyn OpSpec {
                match self { $(Op::$variant(op) => op),* }
            }
        }

        $(impl From<$ty> for Op {
            fn from(op: $ty) -> Op { Op::$variant(op) }
        })*
    };
}

op_enum! {
    Unary(elementwise::unary::Unary),
    Binary(elementwise::binary::Binary),
    Clip(elementwise::clip::Clip),
    FloatClass(elementwise::classify::FloatClass),
    Where(elementwise::where_op::Where),
    Cast(elementwise::cast::Cast),
    MatMul(linalg::matmul::MatMul),
    Gemm(linalg::gemm::Gemm),
    Einsum(linalg::einsum::Einsum),
    Conv(nn::conv::Conv),
    ConvTranspose(nn::conv_transpose::ConvTranspose),
    Pool(nn::pool::Pool),
    Softmax(nn::softmax::Softmax),
    Reduce(nn::reduce::Reduce),
    GroupNorm(norm::group_norm::GroupNorm),
    InstanceNorm(norm::instance_norm::InstanceNorm),
    LayerNorm(norm::layer_norm::LayerNorm),
    BatchNorm(norm::batch_norm::BatchNorm),
    Reshape(layout::reshape::Reshape),
    Flatten(layout::reshape::Flatten),
    Squeeze(layout::squeeze::Squeeze),
    Unsqueeze(layout::squeeze::Unsqueeze),
    Transpose(layout::transpose::Transpose),
    Concat(layout::concat::Concat),
    Split(layout::split::Split),
    Slice(layout::slice::Slice),
    Gather(layout::gather::Gather),
    GatherNd(layout::gather_nd::GatherNd),
    ScatterNd(layout::scatter_nd::ScatterNd),
    Expand(layout::expand::Expand),
    Tile(layout::tile::Tile),
    Pad(layout::pad::Pad),
    Resize(layout::resize::Resize),
    Shape(source::shape::Shape),
    Size(source::shape::Size),
    Constant(source::constant::Constant),
    ConstantOfShape(source::constant::ConstantOfShape),
    Range(source::range::Range),
    Identity(source::identity::Identity),
    DequantizeLinear(quant::Dequantize),
    QuantizeLinear(quant::Quantize),
    Fused(fused::Fused),
}
