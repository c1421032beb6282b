//! Small ONNX models written node by node (opset 18, IR 9), for the tests that need a graph no
//! fixture has: value types, nodes, attributes, initializers and the model bytes.

pub use fifo_diffusion::onnx::proto::tensor_proto::DataType;
use fifo_diffusion::onnx::proto::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, ModelProto, OperatorSetIdProto,
    TensorShapeProto, TypeProto,
};
pub use fifo_diffusion::onnx::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use prost::Message;

/// One dimension of a declared shape: a size, or a name (`"batch"`: a symbolic dimension; a
/// string that parses as a number is that size).
pub trait IntoDim: Copy {
    fn into_dim(self) -> tensor_shape_proto::Dimension;
}

fn dim_value(value: tensor_shape_proto::dimension::Value) -> tensor_shape_proto::Dimension {
    tensor_shape_proto::Dimension { value: Some(value), ..Default::default() }
}

impl IntoDim for i64 {
    fn into_dim(self) -> tensor_shape_proto::Dimension {
        dim_value(tensor_shape_proto::dimension::Value::DimValue(self))
    }
}

/// What an unsuffixed literal (`&[2, 3]`) is.
impl IntoDim for i32 {
    fn into_dim(self) -> tensor_shape_proto::Dimension {
        (self as i64).into_dim()
    }
}

impl IntoDim for usize {
    fn into_dim(self) -> tensor_shape_proto::Dimension {
        (self as i64).into_dim()
    }
}

impl IntoDim for &str {
    fn into_dim(self) -> tensor_shape_proto::Dimension {
        match self.parse::<i64>() {
            Ok(n) => n.into_dim(),
            Err(_) => dim_value(tensor_shape_proto::dimension::Value::DimParam(self.to_string())),
        }
    }
}

/// A tensor value of `dtype` and shape `dims` (graph inputs and outputs).
pub fn value_info<D: IntoDim>(name: &str, dtype: DataType, dims: &[D]) -> ValueInfoProto {
    let tensor = type_proto::Tensor {
        elem_type: Some(dtype as i32),
        shape: Some(TensorShapeProto { dim: dims.iter().map(|d| d.into_dim()).collect() }),
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// A float tensor value of shape `dims`.
pub fn float_info<D: IntoDim>(name: &str, dims: &[D]) -> ValueInfoProto {
    value_info(name, DataType::Float, dims)
}

/// A value named without a type (a graph output whose type the build infers).
pub fn untyped(name: &str) -> ValueInfoProto {
    ValueInfoProto { name: Some(name.into()), ..Default::default() }
}

pub fn int_attr(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

pub fn float_attr(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(value),
        ..Default::default()
    }
}

pub fn ints_attr(name: &str, values: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: values,
        ..Default::default()
    }
}

pub fn string_attr(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(value.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A node writing `output`, named after it.
pub fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) -> NodeProto {
    named_node(output, op, inputs, output, attributes)
}

/// A node named `name` writing `output`.
pub fn named_node(
    name: &str,
    op: &str,
    inputs: &[&str],
    output: &str,
    attributes: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attributes,
        ..Default::default()
    }
}

/// A constant of `dtype` from its little-endian bytes (`raw_data`, as exporters write them).
pub fn initializer<D: IntoDim>(name: &str, dtype: DataType, dims: &[D], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| extent(d)).collect(),
        data_type: Some(dtype as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// An f32 constant in `raw_data`.
pub fn f32_initializer<D: IntoDim>(name: &str, dims: &[D], data: &[f32]) -> TensorProto {
    initializer(name, DataType::Float, dims, data.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// An f32 constant in `float_data` (the other encoding ONNX allows; a scalar with no `dims`).
pub fn f32_float_data<D: IntoDim>(name: &str, dims: &[D], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| extent(d)).collect(),
        data_type: Some(DataType::Float as i32),
        float_data: data,
        ..Default::default()
    }
}

/// An f32 scalar constant in `float_data`.
pub fn f32_scalar(name: &str, value: f32) -> TensorProto {
    f32_float_data::<i64>(name, &[], vec![value])
}

/// The size of a constant's dimension (a name is not one).
fn extent<D: IntoDim>(d: D) -> i64 {
    match d.into_dim().value {
        Some(tensor_shape_proto::dimension::Value::DimValue(n)) => n,
        other => panic!("a constant's dimension must be a size, not {other:?}"),
    }
}

/// A graph (without a name) of `nodes` over `initializer` constants.
pub fn graph(
    nodes: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    input: Vec<ValueInfoProto>,
    output: Vec<ValueInfoProto>,
) -> GraphProto {
    GraphProto { node: nodes, initializer, input, output, ..Default::default() }
}

/// The bytes of a model of `graph` (IR 9, the default domain at opset 18).
pub fn model_bytes(graph: GraphProto) -> Vec<u8> {
    ModelProto {
        ir_version: Some(9),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(18) }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// The bytes of a model of an unnamed graph: [`graph`] then [`model_bytes`].
pub fn model(
    nodes: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    input: Vec<ValueInfoProto>,
    output: Vec<ValueInfoProto>,
) -> Vec<u8> {
    model_bytes(graph(nodes, initializer, input, output))
}
