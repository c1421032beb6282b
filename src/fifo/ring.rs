//! The queue's latents: a ring of frames, so that dequeue and enqueue move an index, not data.

#[derive(Clone, Debug, PartialEq)]
pub struct LatentRing {
    data: Vec<f32>,
    frame_len: usize,
    slots: usize,
    /// Physical index of logical slot 0.
    head: usize,
}

impl LatentRing {
    pub fn new(slots: usize, frame_len: usize) -> Self {
        Self { data: vec![0.0; slots * frame_len], frame_len, slots, head: 0 }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Physical index of a logical slot (0 = head).
    pub fn physical(&self, slot: usize) -> usize {
        debug_assert!(slot < self.slots);
        (self.head + slot) % self.slots
    }

    fn range(&self, slot: usize) -> std::ops::Range<usize> {
        let physical = self.physical(slot);
        physical * self.frame_len..(physical + 1) * self.frame_len
    }

    /// Every frame in physical order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn frame(&self, slot: usize) -> &[f32] {
        &self.data[self.range(slot)]
    }

    pub fn frame_mut(&mut self, slot: usize) -> &mut [f32] {
        let range = self.range(slot);
        &mut self.data[range]
    }

    /// Drops the head: the old head's storage becomes the new tail slot, to be overwritten.
    pub fn advance(&mut self) {
        self.head = (self.head + 1) % self.slots;
    }

    /// All frames, head first.
    pub fn logical_frames(&self) -> impl Iterator<Item = &[f32]> {
        (0..self.slots).map(|slot| self.frame(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_rotates_without_moving_data() {
        let mut ring = LatentRing::new(3, 2);
        for slot in 0..3 {
            ring.frame_mut(slot).fill(slot as f32);
        }
        let before = ring.data.as_ptr();
        ring.advance();
        ring.frame_mut(2).fill(9.0);
        let frames: Vec<Vec<f32>> = ring.logical_frames().map(<[f32]>::to_vec).collect();
        assert_eq!(frames, [vec![1.0, 1.0], vec![2.0, 2.0], vec![9.0, 9.0]]);
        assert_eq!(before, ring.data.as_ptr());
    }
}
