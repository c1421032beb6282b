//! TensorProto to [`Tensor`]: raw little-endian data, typed fields and external data files.

use super::generated::{tensor_proto, TensorProto};
use super::LoadError;
use crate::tensor::shape::checked_numel;
use crate::tensor::{DType, Tensor, TensorData};
use half::f16;
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Component, Path};

/// Decodes a serialized TensorProto (the `.pb` files of ONNX test data).
pub fn decode_tensor(bytes: &[u8]) -> Result<(String, Tensor), LoadError> {
    let proto = TensorProto::decode(bytes)?;
    let tensor = tensor_from_proto(&proto, ExternalData::None)?;
    Ok((proto.name().to_string(), tensor))
}

fn dtype_of(proto: &TensorProto) -> Result<DType, LoadError> {
    let code = proto.data_type();
    DType::from_onnx_code(code).ok_or_else(|| {
        let name = tensor_proto::DataType::try_from(code)
            .map_or_else(|_| format!("code {code}"), |d| d.as_str_name().to_string());
        LoadError::tensor(
            proto.name(),
            format!("dtype {name} is not supported; supported: {}", DType::ALL.map(|d| d.name()).join(", ")),
        )
    })
}

/// Where the external data files a model names are found.
#[derive(Clone, Copy, Debug, Default)]
pub enum ExternalData<'a> {
    /// The model came as bytes alone: a tensor stored outside it is an error.
    #[default]
    None,
    /// The folder of the model file.
    Dir(&'a Path),
    /// Files held in memory, by their path relative to the model (`/`-separated): a package the
    /// browser fetched.
    Files(&'a BTreeMap<String, Vec<u8>>),
}

impl<'a> From<Option<&'a Path>> for ExternalData<'a> {
    fn from(dir: Option<&'a Path>) -> Self {
        dir.map_or(ExternalData::None, ExternalData::Dir)
    }
}

/// Converts a TensorProto; `external` says where its external data file lives.
pub(crate) fn tensor_from_proto(proto: &TensorProto, external: ExternalData) -> Result<Tensor, LoadError> {
    let name = proto.name();
    let dtype = dtype_of(proto)?;
    if proto.segment.is_some() {
        return Err(LoadError::tensor(name, "segmented tensors are not supported"));
    }
    let shape: Vec<usize> = proto
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| LoadError::tensor(name, format!("negative dim {d}"))))
        .collect::<Result<_, _>>()?;
    let numel = checked_numel(&shape).map_err(|e| LoadError::tensor(name, e.to_string()))?;
    let data = if proto.data_location() == tensor_proto::DataLocation::External {
        let bytes = read_external(proto, external, numel.checked_mul(dtype.size_bytes()))?;
        from_le_bytes(dtype, &bytes)
    } else if let Some(raw) = &proto.raw_data {
        if Some(raw.len()) != numel.checked_mul(dtype.size_bytes()) {
            return Err(LoadError::tensor(
                name,
                format!(
                    "raw_data has {} bytes; shape {shape:?} of {dtype} needs {}",
                    raw.len(),
                    numel.saturating_mul(dtype.size_bytes())
                ),
            ));
        }
        from_le_bytes(dtype, raw)
    } else {
        from_typed_fields(proto, dtype)?
    };
    Tensor::new(shape, data).map_err(|e| LoadError::tensor(name, e.to_string()))
}

fn from_le_bytes(dtype: DType, b: &[u8]) -> TensorData {
    macro_rules! le {
        ($t:ty, $n:literal) => {
            b.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n]))).collect()
        };
    }
    match dtype {
        DType::F32 => TensorData::F32(le!(f32, 4)),
        DType::F16 => TensorData::F16(
            b.chunks_exact(2).map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]]))).collect(),
        ),
        DType::I8 => TensorData::I8(b.iter().map(|&x| x as i8).collect()),
        DType::U8 => TensorData::U8(b.to_vec()),
        DType::I32 => TensorData::I32(le!(i32, 4)),
        DType::I64 => TensorData::I64(le!(i64, 8)),
        DType::Bool => TensorData::Bool(b.iter().map(|&x| x != 0).collect()),
    }
}

/// The typed repeated fields: int32_data also carries int8, uint8, bool and float16 bits.
fn from_typed_fields(p: &TensorProto, dtype: DType) -> Result<TensorData, LoadError> {
    let i32s = &p.int32_data;
    Ok(match dtype {
        DType::F32 => TensorData::F32(p.float_data.clone()),
        DType::F16 => TensorData::F16(i32s.iter().map(|&x| f16::from_bits(x as u16)).collect()),
        DType::I8 => TensorData::I8(i32s.iter().map(|&x| x as i8).collect()),
        DType::U8 => TensorData::U8(i32s.iter().map(|&x| x as u8).collect()),
        DType::I32 => TensorData::I32(i32s.clone()),
        DType::I64 => TensorData::I64(p.int64_data.clone()),
        DType::Bool => TensorData::Bool(i32s.iter().map(|&x| x != 0).collect()),
    })
}

/// Reads `length` bytes at `offset` of a file beside the model. Paths that are absolute or
/// climb out of the model's folder are refused.
fn read_external(
    proto: &TensorProto,
    external: ExternalData,
    expected: Option<usize>,
) -> Result<Vec<u8>, LoadError> {
    let entry =
        |key: &str| proto.external_data.iter().find(|e| e.key() == key).map(|e| e.value().to_string());
    let location = entry("location").unwrap_or_default();
    let fail = |problem: String| LoadError::ExternalData {
        tensor: proto.name().to_string(),
        location: location.clone(),
        problem,
    };
    let number = |key: &str| -> Result<Option<u64>, LoadError> {
        entry(key)
            .map(|v| v.parse::<u64>().map_err(|_| fail(format!("{key} '{v}' is not a number"))))
            .transpose()
    };
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    let relative = Path::new(&location);
    if location.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(fail("the location must be a relative path inside the model's folder".into()));
    }
    let expected = expected.ok_or_else(|| fail("tensor too large".into()))?;
    if length.is_some_and(|l| l != expected as u64) {
        return Err(fail(format!("length {length:?} does not match the {expected} bytes the shape needs")));
    }
    match external {
        ExternalData::None => {
            Err(fail("external data needs the model to be loaded from a file path, or with its files".into()))
        }
        ExternalData::Dir(base) => {
            read_range(&base.join(relative), offset, expected).map_err(|e| fail(e.to_string()))
        }
        ExternalData::Files(files) => {
            let key: Vec<_> = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect();
            let file = files
                .get(&key.join("/"))
                .ok_or_else(|| fail("no such file among the model's files".into()))?;
            let range = usize::try_from(offset)
                .ok()
                .and_then(|start| Some(start..start.checked_add(expected)?))
                .filter(|r| r.end <= file.len())
                .ok_or_else(|| {
                    fail(format!(
                        "the file has {} bytes, fewer than offset {offset} + length {expected}",
                        file.len()
                    ))
                })?;
            Ok(file[range].to_vec())
        }
    }
}

fn read_range(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if offset.checked_add(len as u64).is_none_or(|end| end > size) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file has {size} bytes, fewer than offset {offset} + length {len}"),
        ));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::generated::StringStringEntryProto;

    fn external(location: &str) -> TensorProto {
        let entry = |k: &str, v: &str| StringStringEntryProto { key: Some(k.into()), value: Some(v.into()) };
        TensorProto {
            name: Some("w".into()),
            dims: vec![2],
            data_type: Some(DType::F32.onnx_code()),
            data_location: Some(tensor_proto::DataLocation::External as i32),
            external_data: vec![entry("location", location), entry("offset", "4"), entry("length", "8")],
            ..Default::default()
        }
    }

    #[test]
    #[cfg_attr(target_arch = "wasm32", ignore = "no writable temp dir under the WASI test runner")]
    fn external_data_reads_the_range_beside_the_model() {
        let dir = std::env::temp_dir().join(format!("fifo-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes: Vec<u8> = [0.0f32, 1.5, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join("weights.bin"), bytes).unwrap();
        let t = tensor_from_proto(&external("weights.bin"), ExternalData::Dir(&dir)).unwrap();
        assert_eq!(t.to_f32_vec(), vec![1.5, -2.0]);
        let short = tensor_from_proto(
            &TensorProto { dims: vec![3], ..external("weights.bin") },
            ExternalData::Dir(&dir),
        );
        assert!(short.unwrap_err().to_string().contains("length"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn external_data_reads_the_range_of_a_file_in_memory() {
        let bytes: Vec<u8> = [0.0f32, 1.5, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let files = BTreeMap::from([("sub/weights.bin".to_string(), bytes)]);
        let t = tensor_from_proto(&external("sub/weights.bin"), ExternalData::Files(&files)).unwrap();
        assert_eq!(t.to_f32_vec(), vec![1.5, -2.0]);
        let short = TensorProto { dims: vec![3], ..external("sub/weights.bin") };
        let err = tensor_from_proto(&short, ExternalData::Files(&files)).unwrap_err().to_string();
        assert!(err.contains("length"), "{err}");
        let err = tensor_from_proto(&external("weights.bin"), ExternalData::Files(&files)).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    fn external_paths_may_not_leave_the_model_folder() {
        for location in ["../secret.bin", "/etc/passwd", "a/../../b", ""] {
            let err =
                tensor_from_proto(&external(location), ExternalData::Dir(Path::new("/tmp"))).unwrap_err();
            assert!(err.to_string().contains("inside the model's folder"), "{location}: {err}");
        }
    }

    #[test]
    fn raw_data_of_the_wrong_length_is_an_error() {
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(DType::F32.onnx_code()),
            raw_data: Some(vec![0; 8]),
            ..Default::default()
        };
        assert!(tensor_from_proto(&t, ExternalData::None)
            .unwrap_err()
            .to_string()
            .contains("raw_data has 8 bytes"));
        let huge = TensorProto { dims: vec![1 << 40, 1 << 40], ..t };
        assert!(tensor_from_proto(&huge, ExternalData::None).is_err());
    }
}
