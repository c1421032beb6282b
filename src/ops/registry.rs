//! The table of supported ONNX ops: name, opset range, arity and parser.

use super::{AttrValue, Attrs, Op, OpError};
use std::collections::BTreeMap;

/// How to recognise and parse one ONNX op type.
pub struct OpDef {
    pub op_type: &'static str,
    /// First and last opset (inclusive) whose semantics the parser implements.
    pub opsets: (u32, u32),
    /// Minimum and maximum number of inputs (trailing omitted inputs count as absent).
    pub inputs: (usize, usize),
    pub outputs: (usize, usize),
    pub parse: fn(&mut Attrs, &NodeContext) -> Result<Op, OpError>,
}

/// What a parser may know about the node besides its attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeContext {
    /// The opset of the node's domain in the model.
    pub opset: u32,
    /// Inputs up to the last one given (omitted optional inputs in between count).
    pub num_inputs: usize,
    pub num_outputs: usize,
}

impl OpDef {
    pub const fn new(
        op_type: &'static str,
        opsets: (u32, u32),
        inputs: (usize, usize),
        outputs: (usize, usize),
        parse: fn(&mut Attrs, &NodeContext) -> Result<Op, OpError>,
    ) -> OpDef {
        OpDef { op_type, opsets, inputs, outputs, parse }
    }
}

/// Variadic arity upper bound.
pub const MANY: usize = usize::MAX;

/// Every op family's table, one per op file.
fn families() -> impl Iterator<Item = &'static [OpDef]> {
    use super::*;
    [elementwise::DEFS, linalg::DEFS, nn::DEFS, norm::DEFS, layout::DEFS, source::DEFS, quant::DEFS]
        .into_iter()
        .flatten()
        .copied()
}

/// The definition of `op_type` whose opset range covers `opset`, if any.
pub fn find(op_type: &str, opset: u32) -> Option<&'static OpDef> {
    families().flatten().find(|d| d.op_type == op_type && (d.opsets.0..=d.opsets.1).contains(&opset))
}

/// Sorted names of all supported op types (for error messages and `fifo onnx inspect`).
pub fn supported_op_types() -> Vec<&'static str> {
    let mut names: Vec<_> = families().flatten().map(|d| d.op_type).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Why a node could not be parsed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ParseError {
    #[error("op '{op_type}' is not supported; supported ops: {}", supported_op_types().join(" "))]
    UnknownOp { op_type: String },
    #[error("op '{op_type}' is supported in opsets {ranges}, not in opset {opset}")]
    Opset { op_type: String, opset: u32, ranges: String },
    #[error("{op_type} takes {} {}, got {actual}{}", arity(*min, *max), if *max == 1 { what.trim_end_matches('s') } else { what }, unsupported_optional(what, *max, *actual))]
    Arity { op_type: &'static str, what: &'static str, min: usize, max: usize, actual: usize },
    #[error(transparent)]
    Op(#[from] OpError),
}

/// What to do when a node has optional outputs we do not compute.
fn unsupported_optional(what: &str, max: usize, actual: usize) -> String {
    if what == "outputs" && actual > max {
        format!(
            ": its other optional outputs are not computed here; remove the last {} from the node",
            actual - max
        )
    } else {
        String::new()
    }
}

fn arity(min: usize, max: usize) -> String {
    match (min, max) {
        (a, b) if a == b => a.to_string(),
        (a, MANY) => format!("at least {a}"),
        (a, b) => format!("{a} to {b}"),
    }
}

/// Parses one node of the default ONNX domain.
pub fn parse_node(
    op_type: &str,
    opset: u32,
    attributes: BTreeMap<String, AttrValue>,
    num_inputs: usize,
    num_outputs: usize,
) -> Result<Op, ParseError> {
    let def = find(op_type, opset).ok_or_else(|| {
        let ranges: Vec<String> = families()
            .flatten()
            .filter(|d| d.op_type == op_type)
            .map(|d| format!("{}..={}", d.opsets.0, d.opsets.1))
            .collect();
        if ranges.is_empty() {
            ParseError::UnknownOp { op_type: op_type.to_string() }
        } else {
            ParseError::Opset { op_type: op_type.to_string(), opset, ranges: ranges.join(", ") }
        }
    })?;
    for (what, (min, max), actual) in
        [("inputs", def.inputs, num_inputs), ("outputs", def.outputs, num_outputs)]
    {
        if actual < min || actual > max {
            return Err(ParseError::Arity { op_type: def.op_type, what, min, max, actual });
        }
    }
    let mut attrs = Attrs::new(attributes);
    let node = NodeContext { opset, num_inputs, num_outputs };
    let op = (def.parse)(&mut attrs, &node)?;
    attrs.finish()?;
    Ok(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two definitions of one op must not claim the same opset: `find` would pick one silently.
    #[test]
    fn opset_ranges_of_one_op_do_not_overlap() {
        let defs: Vec<&OpDef> = families().flatten().collect();
        for (i, a) in defs.iter().enumerate() {
            assert!(a.opsets.0 <= a.opsets.1, "{} has an empty range", a.op_type);
            for b in &defs[i + 1..] {
                let overlap = a.opsets.0 <= b.opsets.1 && b.opsets.0 <= a.opsets.1;
                assert!(
                    !(a.op_type == b.op_type && overlap),
                    "{} is defined twice for some opsets",
                    a.op_type
                );
            }
        }
    }

    #[test]
    fn errors_say_what_is_supported() {
        let unknown = parse_node("Frobnicate", 18, BTreeMap::new(), 1, 1).unwrap_err().to_string();
        assert!(unknown.contains("Frobnicate") && unknown.contains("MatMul"), "{unknown}");
        let opset = parse_node("Gelu", 18, BTreeMap::new(), 1, 1).unwrap_err().to_string();
        assert!(opset.contains("opsets 20..=21, not in opset 18"), "{opset}");
        let arity = parse_node("Add", 18, BTreeMap::new(), 3, 1).unwrap_err().to_string();
        assert!(arity.contains("Add takes 2 inputs, got 3"), "{arity}");
    }
}
