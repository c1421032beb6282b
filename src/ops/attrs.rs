//! Typed access to ONNX node attributes. Every attribute an op does not read is an error at
//! session build, so an unknown attribute can never be silently ignored.

use super::OpError;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    String(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<String>),
    Tensor(Tensor),
    /// A kind the executor does not use (graphs, sparse tensors, type protos), by name.
    Other(&'static str),
}

/// The attributes of one node, consumed by the op's parser.
#[derive(Clone, Debug, Default)]
pub struct Attrs {
    values: BTreeMap<String, AttrValue>,
    read: Vec<&'static str>,
}

impl Attrs {
    pub fn new(values: BTreeMap<String, AttrValue>) -> Attrs {
        Attrs { values, read: Vec::new() }
    }

    fn take(&mut self, name: &'static str) -> Option<AttrValue> {
        self.read.push(name);
        self.values.remove(name)
    }

    fn kind_error(name: &str, want: &str, got: &AttrValue) -> OpError {
        OpError::bad_attribute(name, format!("must be {want}, got {got:?}"))
    }

    pub fn int(&mut self, name: &'static str) -> Result<Option<i64>, OpError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(v)),
            Some(other) => Err(Self::kind_error(name, "an int", &other)),
        }
    }

    pub fn int_or(&mut self, name: &'static str, default: i64) -> Result<i64, OpError> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn float_or(&mut self, name: &'static str, default: f32) -> Result<f32, OpError> {
        Ok(self.float_opt(name)?.unwrap_or(default))
    }

    pub fn float_opt(&mut self, name: &'static str) -> Result<Option<f32>, OpError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Float(v)) => Ok(Some(v)),
            Some(other) => Err(Self::kind_error(name, "a float", &other)),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn string(&mut self, name: &'static str) -> Result<Option<String>, OpError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::String(v)) => Ok(Some(v)),
            Some(other) => Err(Self::kind_error(name, "a string", &other)),
        }
    }

    pub fn string_or(&mut self, name: &'static str, default: &str) -> Result<String, OpError> {
        Ok(self.string(name)?.unwrap_or_else(|| default.to_string()))
    }

    pub fn ints(&mut self, name: &'static str) -> Result<Option<Vec<i64>>, OpError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v)),
            Some(other) => Err(Self::kind_error(name, "a list of ints", &other)),
        }
    }

    pub fn floats(&mut self, name: &'static str) -> Result<Option<Vec<f32>>, OpError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v)),
            Some(other) => Err(Self::kind_error(name, "a list of floats", &other)),
        }
    }

    pub fn tensor(&mut self, name: &'static str) -> Result<Option<Tensor>, OpError> {
        match self.take(name) {
            None => Ok(None),
            Some(AttrValue::Tensor(v)) => Ok(Some(v)),
            Some(other) => Err(Self::kind_error(name, "a tensor", &other)),
        }
    }

    /// Reads an enumerated string attribute, naming the accepted values when it is not one.
    pub fn choice(
        &mut self,
        name: &'static str,
        default: &'static str,
        accepted: &[&'static str],
    ) -> Result<&'static str, OpError> {
        let value = self.string_or(name, default)?;
        accepted
            .iter()
            .find(|a| **a == value)
            .copied()
            .ok_or_else(|| OpError::unsupported(format!("{name} '{value}'"), accepted.join(", ")))
    }

    /// Accepts an attribute that does not change the result in inference (e.g. Dropout's seed).
    pub fn ignore(&mut self, name: &'static str) {
        self.take(name);
    }

    /// Fails on the first attribute nobody read.
    pub fn finish(self) -> Result<(), OpError> {
        match self.values.into_keys().next() {
            None => Ok(()),
            Some(name) => Err(OpError::UnknownAttribute {
                name,
                known: if self.read.is_empty() { "none".to_string() } else { self.read.join(", ") },
            }),
        }
    }
}
