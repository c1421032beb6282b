//! .npy files to and from executor tensors (C order; float32, float16, int8, uint8, int32,
//! int64, bool).

use anyhow::{bail, Context, Result};
use fifo_diffusion::tensor::{Tensor, TensorData};
use half::f16;
use npyz::WriterBuilder;
use std::path::Path;

pub fn read(path: &Path) -> Result<Tensor> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let npy = npyz::NpyFile::new(std::io::BufReader::new(file))
        .with_context(|| format!("{} is not a .npy file", path.display()))?;
    if npy.order() != npyz::Order::C && npy.shape().len() > 1 {
        bail!("{}: Fortran-order arrays are not supported; save with np.ascontiguousarray", path.display());
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let data = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f4" => TensorData::F32(npy.into_vec()?),
        "f2" => TensorData::F16(npy.into_vec::<f16>()?),
        "i1" => TensorData::I8(npy.into_vec()?),
        "u1" => TensorData::U8(npy.into_vec()?),
        "i4" => TensorData::I32(npy.into_vec()?),
        "i8" => TensorData::I64(npy.into_vec()?),
        "b1" => TensorData::Bool(npy.into_vec()?),
        _ => bail!(
            "{}: dtype {descr} is not supported (float32, float16, int8, uint8, int32, int64, bool)",
            path.display()
        ),
    };
    Ok(Tensor::new(shape, data)?)
}

fn write_typed<T: npyz::AutoSerialize>(path: &Path, shape: &[u64], values: &[T]) -> Result<()> {
    let file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut writer = npyz::WriteOptions::new().default_dtype().shape(shape).writer(file).begin_nd()?;
    writer.extend(values.iter())?;
    writer.finish()?;
    Ok(())
}

pub fn write(path: &Path, tensor: &Tensor) -> Result<()> {
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    match tensor.data() {
        TensorData::F32(v) => write_typed(path, &shape, v),
        TensorData::F16(v) => write_typed(path, &shape, v),
        TensorData::I8(v) => write_typed(path, &shape, v),
        TensorData::U8(v) => write_typed(path, &shape, v),
        TensorData::I32(v) => write_typed(path, &shape, v),
        TensorData::I64(v) => write_typed(path, &shape, v),
        TensorData::Bool(v) => write_typed(path, &shape, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fifo_diffusion::tensor::DType;

    #[test]
    fn every_dtype_round_trips() {
        let dir = std::env::temp_dir().join(format!("fifo-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for dtype in DType::ALL {
            let t = Tensor::from_f32(vec![2, 3], vec![0.0, 1.0, -2.0, 3.0, 4.0, 0.0]).unwrap().cast(dtype);
            let path = dir.join(format!("{dtype}.npy"));
            write(&path, &t).unwrap();
            assert_eq!(read(&path).unwrap(), t, "{dtype}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
