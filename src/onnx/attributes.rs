//! AttributeProto to [`AttrValue`].

use super::generated::{attribute_proto::AttributeType, AttributeProto};
use super::tensor::{tensor_from_proto, ExternalData};
use super::LoadError;
use crate::ops::AttrValue;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn convert(
    node: &str,
    a: &AttributeProto,
    external: ExternalData,
) -> Result<AttrValue, LoadError> {
    let fail = |problem: String| LoadError::Attribute {
        node: node.to_string(),
        attribute: a.name().to_string(),
        problem,
    };
    // Old exporters leave `type` unset; then the one field that is present decides.
    let kind = match a.r#type() {
        AttributeType::Undefined => guess_type(a),
        k => k,
    };
    Ok(match kind {
        AttributeType::Int => AttrValue::Int(a.i()),
        AttributeType::Float => AttrValue::Float(a.f()),
        AttributeType::String => AttrValue::String(text(a.s())),
        AttributeType::Ints => AttrValue::Ints(a.ints.clone()),
        AttributeType::Floats => AttrValue::Floats(a.floats.clone()),
        AttributeType::Strings => AttrValue::Strings(a.strings.iter().map(|s| text(s)).collect()),
        AttributeType::Tensor => {
            let t = a.t.as_ref().ok_or_else(|| fail("tensor attribute without a tensor".into()))?;
            AttrValue::Tensor(tensor_from_proto(t, external).map_err(|e| fail(e.to_string()))?)
        }
        AttributeType::Graph | AttributeType::Graphs => AttrValue::Other("graph"),
        AttributeType::SparseTensor | AttributeType::SparseTensors => AttrValue::Other("sparse tensor"),
        AttributeType::Tensors => AttrValue::Other("tensors"),
        AttributeType::TypeProto | AttributeType::TypeProtos => AttrValue::Other("type proto"),
        AttributeType::Undefined => return Err(fail("has no value".into())),
    })
}

fn guess_type(a: &AttributeProto) -> AttributeType {
    if a.i.is_some() {
        AttributeType::Int
    } else if a.f.is_some() {
        AttributeType::Float
    } else if a.s.is_some() {
        AttributeType::String
    } else if a.t.is_some() {
        AttributeType::Tensor
    } else if !a.ints.is_empty() {
        AttributeType::Ints
    } else if !a.floats.is_empty() {
        AttributeType::Floats
    } else if !a.strings.is_empty() {
        AttributeType::Strings
    } else {
        AttributeType::Undefined
    }
}
