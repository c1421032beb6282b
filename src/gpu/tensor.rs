//! Device tensors: a storage buffer, its element type and length. Shapes belong to the caller
//! (the graph IR); kernels take explicit shapes and strides through `View`s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::context::{DeviceMemory, GpuContext};
use super::error::{GpuError, GpuResult};

/// Element type of a device buffer. Sub-word types are packed little-endian into u32 words so
/// that every adapter can read them (no `shader-f16` or 8-bit storage needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I32,
    /// Two halves per u32 word (`unpack2x16float`), or `array<f16>` where shader-f16 exists.
    F16,
    /// Four signed bytes per u32 word; used for quantized weights.
    I8,
}

impl DType {
    /// Bytes for `len` elements, rounded up to whole u32 words (at least one word).
    pub fn storage_bytes(self, len: usize) -> u64 {
        let bytes = match self {
            DType::F32 | DType::I32 => len * 4,
            DType::F16 => len * 2,
            DType::I8 => len,
        } as u64;
        bytes.div_ceil(4).max(1) * 4
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::F16 => "f16",
            DType::I8 => "i8",
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A device buffer holding `len` elements of `dtype`. Clones share the buffer.
/// Aliases (`alias`) share the buffer and its id, so the memory plan can reuse one buffer for
/// tensors whose lifetimes do not overlap.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    inner: Arc<BufferInner>,
    name: Arc<str>,
    dtype: DType,
    len: usize,
}

#[derive(Debug)]
struct BufferInner {
    id: u64,
    buffer: wgpu::Buffer,
    /// The device's meter, told when the buffer goes.
    memory: Arc<DeviceMemory>,
}

impl Drop for BufferInner {
    fn drop(&mut self) {
        self.memory.freed(self.buffer.size());
    }
}

impl GpuTensor {
    /// Allocates an uninitialised (zeroed by wgpu) tensor. Fails with `TooLarge` naming the tensor
    /// when it exceeds one storage binding of this adapter.
    pub fn new(ctx: &GpuContext, name: &str, dtype: DType, len: usize) -> GpuResult<Self> {
        let bytes = dtype.storage_bytes(len);
        let limit = ctx.max_binding_bytes();
        if bytes > limit {
            return Err(GpuError::TooLarge { name: name.to_string(), bytes, limit });
        }
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        ctx.memory.allocated(bytes);
        let inner = BufferInner { id, buffer, memory: ctx.memory.clone() };
        Ok(Self { inner: Arc::new(inner), name: name.into(), dtype, len })
    }

    /// Another tensor living in this one's buffer (for memory reuse); fails if it does not fit.
    pub fn alias(&self, name: &str, dtype: DType, len: usize) -> GpuResult<Self> {
        let bytes = dtype.storage_bytes(len);
        if bytes > self.buffer().size() {
            return Err(GpuError::Shape {
                op: "alias",
                message: format!(
                    "'{name}' needs {bytes} bytes, buffer of '{}' has {}",
                    self.name,
                    self.buffer().size()
                ),
            });
        }
        Ok(Self { inner: self.inner.clone(), name: name.into(), dtype, len })
    }

    /// A new f32 tensor holding `data`.
    pub fn from_f32(ctx: &GpuContext, name: &str, data: &[f32]) -> GpuResult<Self> {
        let t = Self::new(ctx, name, DType::F32, data.len())?;
        t.write_f32(ctx, data)?;
        Ok(t)
    }

    /// A new tensor of `dtype` holding `data` converted (f16 rounds to nearest; i8 must already be
    /// integral in -128..=127 and is rounded and saturated; i32 is truncated).
    pub fn from_f32_as(ctx: &GpuContext, name: &str, dtype: DType, data: &[f32]) -> GpuResult<Self> {
        let t = Self::new(ctx, name, dtype, data.len())?;
        t.write_f32(ctx, data)?;
        Ok(t)
    }

    pub fn from_i32(ctx: &GpuContext, name: &str, data: &[i32]) -> GpuResult<Self> {
        let t = Self::new(ctx, name, DType::I32, data.len())?;
        ctx.write_buffer(t.buffer(), 0, &pad_words(bytemuck::cast_slice(data)));
        Ok(t)
    }

    /// A new int8 tensor holding `data` as is (four per word), e.g. quantized weights.
    pub fn from_i8(ctx: &GpuContext, name: &str, data: &[i8]) -> GpuResult<Self> {
        let t = Self::new(ctx, name, DType::I8, data.len())?;
        ctx.write_buffer(t.buffer(), 0, &pad_words(bytemuck::cast_slice(data)));
        Ok(t)
    }

    /// A new f16 tensor holding `data` as is (two per word), e.g. half-precision weights.
    pub fn from_f16(ctx: &GpuContext, name: &str, data: &[half::f16]) -> GpuResult<Self> {
        let t = Self::new(ctx, name, DType::F16, data.len())?;
        ctx.write_buffer(t.buffer(), 0, &pad_words(bytemuck::cast_slice(data)));
        Ok(t)
    }

    /// Queues an upload of `data` (converted to this tensor's dtype); it lands before the next
    /// submission.
    pub fn write_f32(&self, ctx: &GpuContext, data: &[f32]) -> GpuResult<()> {
        if data.len() != self.len() {
            return Err(GpuError::Shape {
                op: "upload",
                message: format!(
                    "tensor '{}' holds {} elements, got {}",
                    self.name(),
                    self.len(),
                    data.len()
                ),
            });
        }
        if self.dtype() == DType::F32 && !data.is_empty() {
            // Whole words already: straight into the queue's staging, no copy of our own.
            ctx.write_buffer(self.buffer(), 0, bytemuck::cast_slice(data));
            return Ok(());
        }
        let bytes: Vec<u8> = match self.dtype() {
            DType::F32 => bytemuck::cast_slice(data).to_vec(),
            DType::I32 => data.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
            DType::F16 => data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
            DType::I8 => data.iter().map(|&v| (v.round().clamp(-128.0, 127.0) as i8) as u8).collect(),
        };
        ctx.write_buffer(self.buffer(), 0, &pad_words(&bytes));
        Ok(())
    }

    pub fn id(&self) -> u64 {
        self.inner.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.inner.buffer
    }
    /// A contiguous view of the whole tensor with the given shape.
    pub fn view(&self, shape: &[usize]) -> View {
        View::contiguous(self, shape)
    }
}

/// `queue.write_buffer` needs whole words.
fn pad_words(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.resize(v.len().div_ceil(4).max(1) * 4, 0);
    v
}

/// Contiguous (row-major) strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// A strided window on a tensor: element `i` (multi-index) lives at `offset + sum(i[d]*strides[d])`.
/// Stride 0 broadcasts a dimension.
#[derive(Clone, Debug)]
pub struct View {
    pub tensor: GpuTensor,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

impl View {
    pub fn contiguous(tensor: &GpuTensor, shape: &[usize]) -> Self {
        Self { tensor: tensor.clone(), offset: 0, shape: shape.to_vec(), strides: contiguous_strides(shape) }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Numpy broadcasting of this view to `shape` (right-aligned, size-1 dims get stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> GpuResult<View> {
        let err = || GpuError::Shape {
            op: "broadcast",
            message: format!(
                "'{}' of shape {:?} does not broadcast to {:?}",
                self.tensor.name(),
                self.shape,
                shape
            ),
        };
        if self.shape.len() > shape.len() {
            return Err(err());
        }
        let lead = shape.len() - self.shape.len();
        let mut strides = vec![0; shape.len()];
        for (d, &size) in shape.iter().enumerate().skip(lead) {
            let own = self.shape[d - lead];
            strides[d] = match own {
                s if s == size => self.strides[d - lead],
                1 => 0,
                _ => return Err(err()),
            };
        }
        Ok(View { tensor: self.tensor.clone(), offset: self.offset, shape: shape.to_vec(), strides })
    }

    /// Reorders dimensions (`Transpose` with `perm`), without moving data.
    pub fn permute(&self, perm: &[usize]) -> GpuResult<View> {
        let mut seen = vec![false; self.shape.len()];
        if perm.len() != self.shape.len()
            || perm.iter().any(|&p| p >= seen.len() || std::mem::replace(&mut seen[p], true))
        {
            return Err(GpuError::Shape {
                op: "permute",
                message: format!("{perm:?} is not a permutation of rank {}", self.shape.len()),
            });
        }
        Ok(View {
            tensor: self.tensor.clone(),
            offset: self.offset,
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
        })
    }

    /// The largest element index this view touches, plus one (0 when empty).
    pub fn extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset + self.shape.iter().zip(&self.strides).map(|(&n, &s)| (n - 1) * s).sum::<usize>() + 1
    }

    /// Fails unless the view stays inside its tensor.
    pub(crate) fn check(&self, op: &'static str) -> GpuResult<()> {
        if self.shape.len() != self.strides.len() {
            return Err(GpuError::Shape {
                op,
                message: format!("'{}': shape and strides differ in rank", self.tensor.name()),
            });
        }
        if self.extent() > self.tensor.len() {
            return Err(GpuError::Shape {
                op,
                message: format!(
                    "view of '{}' (shape {:?}, strides {:?}, offset {}) reaches element {} of {}",
                    self.tensor.name(),
                    self.shape,
                    self.strides,
                    self.offset,
                    self.extent(),
                    self.tensor.len()
                ),
            });
        }
        Ok(())
    }
}

/// Merges dims that are contiguous in every stride set and drops size-1 dims, so strided
/// kernels do fewer divisions (a contiguous elementwise op becomes 1-D) and ranks above 8 still
/// fit when they collapse. Returns the new shape and each set's new strides.
pub fn coalesce(shape: &[usize], strides: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut dims: Vec<usize> = Vec::new();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for (d, &n) in shape.iter().enumerate() {
        if n == 1 {
            continue;
        }
        let inner_merges =
            !dims.is_empty() && strides.iter().zip(&out).all(|(s, o)| o.last() == Some(&(s[d] * n)));
        if inner_merges {
            if let Some(last) = dims.last_mut() {
                *last *= n;
            }
            for (s, o) in strides.iter().zip(out.iter_mut()) {
                if let Some(last) = o.last_mut() {
                    *last = s[d];
                }
            }
        } else {
            dims.push(n);
            for (s, o) in strides.iter().zip(out.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    (dims, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_contiguous_and_keeps_broadcast_apart() {
        // [2, 3, 4] contiguous, and a bias broadcast along the last two dims.
        let (shape, strides) = coalesce(&[2, 3, 4], &[&[12, 4, 1], &[1, 0, 0]]);
        assert_eq!(shape, vec![2, 12]);
        assert_eq!(strides, vec![vec![12, 1], vec![1, 0]]);
        // Fully contiguous rank 10 becomes 1-D; size-1 dims vanish.
        let s = [2, 1, 2, 2, 2, 2, 2, 2, 2, 2];
        let st = contiguous_strides(&s);
        assert_eq!(coalesce(&s, &[&st]), (vec![512], vec![vec![1]]));
        // A transposed view stays 2-D.
        assert_eq!(coalesce(&[3, 5], &[&[1, 3], &[5, 1]]).0, vec![3, 5]);
    }
}
