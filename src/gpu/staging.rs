//! Read-back staging buffers kept for reuse. A fresh `MAP_READ` buffer per read costs an
//! allocation and the driver's mapping of new host pages (on a discrete GPU a large share of a
//! 32 MB read); a run that reads the same outputs every time takes the same buffers back.

use std::sync::Mutex;

/// Buffers kept between reads: enough for a session's outputs, small next to any model.
const KEEP_BUFFERS: usize = 4;
/// Bytes kept between reads; a larger read gets a buffer of its own, dropped after it.
const KEEP_BYTES: u64 = 256 << 20;
/// Sizes are rounded up to this, so reads of nearly the same size share buffers.
const GRANULE: u64 = 64 << 10;

#[derive(Debug, Default)]
pub(crate) struct StagingPool {
    free: Mutex<Vec<wgpu::Buffer>>,
}

impl StagingPool {
    /// An unmapped `MAP_READ | COPY_DST` buffer of at least `size` bytes (at most twice that).
    pub fn take(&self, device: &wgpu::Device, size: u64) -> wgpu::Buffer {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.size() >= size && b.size() <= size.saturating_mul(2).max(GRANULE))
            .min_by_key(|(_, b)| b.size())
            .map(|(i, _)| i);
        if let Some(i) = best {
            return free.swap_remove(i);
        }
        drop(free);
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: size.max(4).next_multiple_of(GRANULE),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Keeps an unmapped buffer for the next read, dropping the oldest ones over the limits.
    pub fn give(&self, buffer: wgpu::Buffer) {
        if buffer.size() > KEEP_BYTES {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.push(buffer);
        while free.len() > KEEP_BUFFERS || free.iter().map(|b| b.size()).sum::<u64>() > KEEP_BYTES {
            free.remove(0);
        }
    }

    /// Buffers kept now (for tests).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
