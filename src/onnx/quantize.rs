//! Weight-only quantization of an ONNX model, written back as standard ONNX.
//!
//! The weight initializer of every Conv (input 1), MatMul (input 1) and Gemm (input 1) becomes
//! either symmetric per-output-channel int8 (`q = round_half_even(w / s)` in [-127, 127],
//! `s = max|w| / 127` per channel; axis 0 for Conv, the last axis for MatMul `[.., K, N]`, 0 or 1
//! for Gemm by `transB`) feeding a `DequantizeLinear` whose output keeps the weight's name, or f16
//! feeding a `Cast` to f32. Everything else (biases, norms, embeddings, weights that another op
//! reads too) stays f32. External data is read and written inline.

use super::generated::{
    attribute_proto::AttributeType, tensor_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    StringStringEntryProto, TensorProto,
};
use super::tensor::{tensor_from_proto, ExternalData};
use super::LoadError;
use crate::tensor::{DType, TensorData};
use half::f16;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    Int8,
    F16,
}

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("the model has no graph")]
    NoGraph,
    #[error("int8 weights need DequantizeLinear with an axis (opset 13+); the model imports opset {0}: re-export it with opset 13 or later, or use --weights f16")]
    Opset(i64),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// One converted weight.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConvertedWeight {
    pub name: String,
    pub op_type: String,
    pub shape: Vec<usize>,
    /// The per-channel axis (int8 only).
    pub axis: Option<usize>,
    /// Largest |dequantized - original| over the tensor, relative to its largest |w|.
    pub max_relative_error: f32,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct QuantizeReport {
    pub converted: Vec<ConvertedWeight>,
    /// Float weights of Conv/MatMul/Gemm that stayed f32, with the reason.
    pub kept: Vec<(String, String)>,
    /// Bytes of all initializers before and after.
    pub initializer_bytes_before: usize,
    pub initializer_bytes_after: usize,
}

fn tensor_bytes(t: &TensorData) -> Vec<u8> {
    match t {
        TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::F16(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as u8).collect(),
        TensorData::U8(v) => v.clone(),
        TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| x as u8).collect(),
    }
}

fn raw_tensor(name: String, dtype: DType, dims: &[usize], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(dtype.onnx_code()),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// Rewrites every initializer as inline raw data (reading external data from `base_dir`).
fn inline_initializers(graph: &mut GraphProto, base_dir: Option<&Path>) -> Result<(), LoadError> {
    for init in &mut graph.initializer {
        let external = init.data_location() == tensor_proto::DataLocation::External;
        if external || init.raw_data.is_none() {
            let t = tensor_from_proto(init, base_dir.into())?;
            *init = raw_tensor(init.name().to_string(), t.dtype(), t.shape(), tensor_bytes(t.data()));
        }
    }
    Ok(())
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name() == name).and_then(|a| a.i)
}

/// The per-channel axis if `slot` of `node` is a weight this pass converts.
fn weight_axis(node: &NodeProto, slot: usize, rank: usize) -> Result<usize, String> {
    let op = node.op_type();
    let axis = match (node.domain(), op, slot) {
        ("" | "ai.onnx", "Conv", 1) if rank >= 3 => 0,
        ("" | "ai.onnx", "MatMul", 1) if rank >= 2 => rank - 1,
        ("" | "ai.onnx", "Gemm", 1) if rank == 2 => usize::from(int_attr(node, "transB").unwrap_or(0) == 0),
        _ => return Err(format!("also read by {op} '{}' as input {slot}", node.name())),
    };
    Ok(axis)
}

fn names_read_by_subgraphs(graph: &GraphProto, out: &mut HashSet<String>) {
    for node in &graph.node {
        for a in &node.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                for n in &g.node {
                    out.extend(n.input.iter().cloned());
                }
                names_read_by_subgraphs(g, out);
            }
        }
    }
}

fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(value),
        ..Default::default()
    }
}

/// Symmetric int8 per channel along `axis`: (values, scales).
pub fn quantize_per_channel(w: &[f32], shape: &[usize], axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let channel = |i: usize| (i / inner.max(1)) % channels.max(1);
    let mut max = vec![0.0f32; channels];
    for (i, v) in w.iter().enumerate() {
        max[channel(i)] = max[channel(i)].max(v.abs());
    }
    // An all-zero channel keeps scale 1 (its values quantize to 0 exactly).
    let scales: Vec<f32> = max.iter().map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 }).collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel(i)]).round_ties_even().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

/// Converts the model's weights in place; `base_dir` is the model's folder (external data).
pub fn quantize_weights(
    model: &mut ModelProto,
    base_dir: Option<&Path>,
    format: WeightFormat,
) -> Result<QuantizeReport, QuantizeError> {
    let opset =
        model.opset_import.iter().find(|o| matches!(o.domain(), "" | "ai.onnx")).map_or(0, |o| o.version());
    if format == WeightFormat::Int8 && opset < 13 {
        return Err(QuantizeError::Opset(opset));
    }
    let graph = model.graph.as_mut().ok_or(QuantizeError::NoGraph)?;
    inline_initializers(graph, base_dir)?;
    let bytes = |g: &GraphProto| g.initializer.iter().map(|t| t.raw_data.as_ref().map_or(0, Vec::len)).sum();
    let initializer_bytes_before = bytes(graph);

    let mut readers: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
    for (n, node) in graph.node.iter().enumerate() {
        for (slot, name) in node.input.iter().enumerate() {
            readers.entry(name.as_str()).or_default().push((n, slot));
        }
    }
    let mut elsewhere: HashSet<String> = graph.output.iter().map(|o| o.name().to_string()).collect();
    names_read_by_subgraphs(graph, &mut elsewhere);
    let mut taken: HashSet<String> = graph.initializer.iter().map(|t| t.name().to_string()).collect();
    taken.extend(graph.node.iter().flat_map(|n| n.output.iter().cloned()));
    taken.extend(graph.input.iter().map(|i| i.name().to_string()));
    let mut fresh = |base: String| {
        let mut name = base.clone();
        let mut k = 1;
        while !taken.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    };

    let mut converted = Vec::new();
    let mut kept = Vec::new();
    let mut new_inits: Vec<TensorProto> = Vec::new();
    let mut new_nodes: Vec<NodeProto> = Vec::new();
    let mut removed: HashSet<String> = HashSet::new();
    for init in &graph.initializer {
        let name = init.name().to_string();
        let Some(uses) = readers.get(name.as_str()) else { continue };
        let weight_use = uses
            .iter()
            .any(|&(n, slot)| slot == 1 && matches!(graph.node[n].op_type(), "Conv" | "MatMul" | "Gemm"));
        if !weight_use || init.data_type() != DType::F32.onnx_code() {
            continue;
        }
        let t = tensor_from_proto(init, ExternalData::None)?;
        let shape = t.shape().to_vec();
        let axes: Result<Vec<usize>, String> =
            uses.iter().map(|&(n, slot)| weight_axis(&graph.node[n], slot, shape.len())).collect();
        let axis = match axes {
            Err(why) => {
                kept.push((name, why));
                continue;
            }
            Ok(a) if a.iter().any(|&x| x != a[0]) => {
                kept.push((name, "its readers need different channel axes".into()));
                continue;
            }
            Ok(a) => a[0],
        };
        if elsewhere.contains(&name) {
            kept.push((name, "also a graph output or read inside a subgraph".into()));
            continue;
        }
        let w = t.to_f32_vec();
        let peak = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
        let op_type = graph.node[uses[0].0].op_type().to_string();
        let (node, err, axis_used) = match format {
            WeightFormat::Int8 => {
                let (q, scales) = quantize_per_channel(&w, &shape, axis);
                let inner: usize = shape[axis + 1..].iter().product();
                let err = w
                    .iter()
                    .zip(&q)
                    .enumerate()
                    .map(|(i, (v, &q))| (v - q as f32 * scales[(i / inner.max(1)) % shape[axis]]).abs())
                    .fold(0.0f32, f32::max);
                let (qn, sn, zn) = (
                    fresh(format!("{name}_quantized")),
                    fresh(format!("{name}_scale")),
                    fresh(format!("{name}_zero_point")),
                );
                let channels = scales.len();
                new_inits.push(raw_tensor(
                    qn.clone(),
                    DType::I8,
                    &shape,
                    q.iter().map(|&x| x as u8).collect(),
                ));
                new_inits.push(raw_tensor(
                    sn.clone(),
                    DType::F32,
                    &[channels],
                    scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
                ));
                new_inits.push(raw_tensor(zn.clone(), DType::I8, &[channels], vec![0; channels]));
                let node = NodeProto {
                    name: Some(fresh(format!("{name}_DequantizeLinear"))),
                    op_type: Some("DequantizeLinear".into()),
                    input: vec![qn, sn, zn],
                    output: vec![name.clone()],
                    attribute: vec![attr_int("axis", axis as i64)],
                    ..Default::default()
                };
                (node, err, Some(axis))
            }
            WeightFormat::F16 => {
                let h: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                let err = w.iter().zip(&h).map(|(v, h)| (v - h.to_f32()).abs()).fold(0.0f32, f32::max);
                let hn = fresh(format!("{name}_f16"));
                new_inits.push(raw_tensor(
                    hn.clone(),
                    DType::F16,
                    &shape,
                    h.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
                ));
                let node = NodeProto {
                    name: Some(fresh(format!("{name}_Cast"))),
                    op_type: Some("Cast".into()),
                    input: vec![hn],
                    output: vec![name.clone()],
                    attribute: vec![attr_int("to", DType::F32.onnx_code() as i64)],
                    ..Default::default()
                };
                (node, err, None)
            }
        };
        new_nodes.push(node);
        removed.insert(name.clone());
        converted.push(ConvertedWeight {
            name,
            op_type,
            shape,
            axis: axis_used,
            max_relative_error: err / peak,
        });
    }
    graph.initializer.retain(|t| !removed.contains(t.name()));
    graph.initializer.extend(new_inits);
    // Older exporters list initializers as graph inputs too; a removed one is no input now.
    graph.input.retain(|i| !removed.contains(i.name()));
    // The new nodes read only initializers: they go first, keeping the order topological.
    new_nodes.append(&mut graph.node);
    graph.node = new_nodes;
    Ok(QuantizeReport { converted, kept, initializer_bytes_before, initializer_bytes_after: bytes(graph) })
}

/// Initializers of at least this many bytes move to the data file when a model is saved with
/// external data.
pub const EXTERNAL_MIN_BYTES: usize = 1024;
/// protobuf's limit: a model beyond it must keep its weights in an external file.
pub const PROTOBUF_LIMIT: usize = (1 << 31) - 1;

/// Writes `model` to `path`, inline; or with the large initializers in `<file name>.data` beside
/// it when `external` is set or the inline model would pass protobuf's 2 GiB limit. Returns the
/// files written. Initializers are expected inline (as [`quantize_weights`] leaves them).
pub fn save_model(mut model: ModelProto, path: &Path, external: bool) -> Result<Vec<String>, QuantizeError> {
    let io = |p: &Path| {
        let path = p.display().to_string();
        move |source| QuantizeError::Io { path, source }
    };
    let external = external || model.encoded_len() > PROTOBUF_LIMIT;
    let mut written = Vec::new();
    if external {
        let file_name = path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        let location = format!("{file_name}.data");
        let data_path = path.with_file_name(&location);
        let mut data = Vec::new();
        let graph = model.graph.as_mut().ok_or(QuantizeError::NoGraph)?;
        for init in &mut graph.initializer {
            if init.raw_data.as_ref().is_none_or(|r| r.len() < EXTERNAL_MIN_BYTES) {
                continue;
            }
            let raw = init.raw_data.take().unwrap_or_default();
            data.resize(data.len().next_multiple_of(64), 0);
            let entry = |k: &str, v: String| StringStringEntryProto { key: Some(k.into()), value: Some(v) };
            init.external_data = vec![
                entry("location", location.clone()),
                entry("offset", data.len().to_string()),
                entry("length", raw.len().to_string()),
            ];
            init.data_location = Some(tensor_proto::DataLocation::External as i32);
            data.extend(raw);
        }
        std::fs::write(&data_path, data).map_err(io(&data_path))?;
        written.push(data_path.display().to_string());
    }
    std::fs::write(path, model.encode_to_vec()).map_err(io(path))?;
    written.insert(0, path.display().to_string());
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::generated::OperatorSetIdProto;

    fn f32_init(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
        raw_tensor(name.into(), DType::F32, dims, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..Default::default()
        }
    }

    /// x @ W and x @ V + V: W is converted, V (also read by Add) stays f32.
    fn model() -> ModelProto {
        ModelProto {
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(18) }],
            graph: Some(GraphProto {
                node: vec![
                    node("MatMul", &["x", "W"], "a"),
                    node("MatMul", &["x", "V"], "b"),
                    node("Add", &["b", "V"], "c"),
                ],
                initializer: vec![
                    f32_init("W", &[2, 3], &[1.0, -0.5, 0.0, 0.25, 2.0, 0.0]),
                    f32_init("V", &[2, 2], &[1.0, 2.0, 3.0, 4.0]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn shared_weights_stay_f32_and_columns_get_their_own_scales() {
        let mut m = model();
        let report = quantize_weights(&mut m, None, WeightFormat::Int8).unwrap();
        assert_eq!(report.converted.len(), 1);
        assert_eq!((report.converted[0].name.as_str(), report.converted[0].axis), ("W", Some(1)));
        assert_eq!(report.kept.len(), 1);
        assert!(report.kept[0].1.contains("Add"), "{:?}", report.kept);
        let g = m.graph.unwrap();
        assert_eq!(g.node[0].op_type(), "DequantizeLinear");
        assert_eq!(g.node[0].output, ["W"]);
        let scale = g.initializer.iter().find(|t| t.name() == "W_scale").unwrap();
        let scales: Vec<f32> =
            scale.raw_data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        // Column maxima 1, 2, 0 (an all-zero column keeps scale 1).
        assert_eq!(scales, [1.0 / 127.0, 2.0 / 127.0, 1.0]);
    }

    #[test]
    fn per_channel_values_round_half_to_even_and_saturate() {
        let (q, s) = quantize_per_channel(&[127.0, 0.5, -63.5, 1.5, 3.0, -3.0], &[2, 3], 0);
        assert_eq!(s, [1.0, 3.0 / 127.0]);
        assert_eq!(q, [127, 0, -64, 64, 127, -127]);
    }
}
