//! The geometry of the queue: slots, labels, windows and frame ids. Pure index arithmetic.
//!
//! Logical slot 0 is the head (cleanest). Without lookahead slot `p` sits at DDIM index `p`; with
//! lookahead `h = f/2` extra head slots come first, all at index 0, context that is never written.

use super::config::{FifoConfig, InitMode};

/// One window of an iteration: `f` consecutive slots of which only a suffix is written back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Position in the iteration's window list (0 = head side).
    pub id: usize,
    /// First logical slot.
    pub start: usize,
    /// Offset inside the window of the first slot written back (f/2 with lookahead, else 0).
    pub write_from: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// f
    pub window: usize,
    /// S = f * n
    pub steps: usize,
    /// Head slots: f/2 with lookahead, else 0.
    pub head: usize,
    /// First iteration whose head frame is emitted: it becomes frame id 0.
    pub first_emit: u64,
    warm_up: bool,
    windows: Vec<Window>,
}

impl QueueLayout {
    pub fn new(config: &FifoConfig) -> Self {
        let (f, n) = (config.window, config.partitions);
        let steps = f * n;
        let head = if config.lookahead { f / 2 } else { 0 };
        let windows = if config.lookahead {
            (0..2 * n).map(|r| Window { id: r, start: r * head, write_from: head }).collect()
        } else {
            (0..n).map(|r| Window { id: r, start: r * f, write_from: 0 }).collect()
        };
        let (first_emit, warm_up) = match config.init {
            // The official clip start keeps only the last N frames: the first S - f are discarded.
            InitMode::Clip => ((steps - f) as u64, false),
            // The Latte code emits from iteration `queue length` on.
            InitMode::Noise => ((steps + head) as u64, true),
        };
        Self { window: f, steps, head, first_emit, warm_up, windows }
    }

    /// L: slots in the queue.
    pub fn len(&self) -> usize {
        self.steps + self.head
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// DDIM index of a slot outside warm-up.
    pub fn base_label(&self, slot: usize) -> usize {
        slot.saturating_sub(self.head)
    }

    /// DDIM index of a slot at an iteration. During the pure-noise warm-up every slot ahead of the
    /// last `it + 1` takes the label of slot `L - 1 - it`, so the queue starts as an ordinary
    /// same-level clip and becomes diagonal after `L - 1` iterations.
    pub fn label(&self, slot: usize, iteration: u64) -> usize {
        let last = self.len() - 1;
        if self.warm_up && iteration < last as u64 {
            let pivot = last - iteration as usize;
            return self.base_label(slot.max(pivot));
        }
        self.base_label(slot)
    }

    /// Absolute id of the frame in `slot` at `iteration` (0 = first emitted frame).
    pub fn frame_id(&self, slot: usize, iteration: u64) -> i64 {
        iteration as i64 + slot as i64 - self.head as i64 - self.first_emit as i64
    }

    /// Slots that windows write: `head..L`, each exactly once per iteration.
    pub fn written_slots(&self) -> std::ops::Range<usize> {
        self.head..self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fifo::config::FifoConfig;

    fn layout(f: usize, n: usize, lookahead: bool, init: InitMode) -> QueueLayout {
        let config =
            FifoConfig { window: f, partitions: n, lookahead, init, ..FifoConfig::official(vec![1]) };
        QueueLayout::new(&config)
    }

    #[test]
    fn official_default_queue_has_72_slots_and_8_windows() {
        let l = layout(16, 4, true, InitMode::Clip);
        assert_eq!((l.len(), l.windows().len(), l.head), (72, 8, 8));
        assert_eq!(l.windows()[7], Window { id: 7, start: 56, write_from: 8 });
        assert_eq!((l.label(0, 0), l.label(8, 0), l.label(71, 0)), (0, 0, 63));
    }

    /// Every written slot is covered by exactly one window's write-back range, every window fits
    /// inside the queue, and every DDIM index is written exactly once.
    #[test]
    fn windows_write_every_index_exactly_once() {
        for (f, n, la) in [(16, 4, true), (16, 4, false), (4, 1, true), (8, 3, false), (2, 5, true)] {
            for init in [InitMode::Clip, InitMode::Noise] {
                let l = layout(f, n, la, init);
                let mut writes = vec![0; l.len()];
                for w in l.windows() {
                    assert!(w.start + f <= l.len());
                    (w.start + w.write_from..w.start + f).for_each(|s| writes[s] += 1);
                }
                for (slot, &count) in writes.iter().enumerate() {
                    assert_eq!(count, usize::from(l.written_slots().contains(&slot)));
                }
                let mut indices: Vec<usize> = l.written_slots().map(|s| l.label(s, 1 << 20)).collect();
                indices.sort();
                assert_eq!(indices, (0..f * n).collect::<Vec<_>>(), "f={f} n={n} la={la}");
            }
        }
    }

    #[test]
    fn warm_up_labels_turn_diagonal_after_queue_length_minus_one_iterations() {
        let l = layout(4, 2, true, InitMode::Noise); // S = 8, h = 2, L = 10
        let labels = |it| (0..l.len()).map(|s| l.label(s, it)).collect::<Vec<_>>();
        assert_eq!(labels(0), [7; 10]);
        assert_eq!(labels(1), [6, 6, 6, 6, 6, 6, 6, 6, 6, 7]);
        assert_eq!(labels(8), [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(labels(9), labels(1000));
        assert_eq!(l.first_emit, 10);
    }

    #[test]
    fn frame_ids_move_one_slot_per_iteration() {
        let l = layout(16, 4, true, InitMode::Clip);
        assert_eq!(l.first_emit, 48);
        assert_eq!(l.frame_id(l.head, 48), 0);
        assert_eq!(l.frame_id(l.head + 1, 48), l.frame_id(l.head, 49));
        assert_eq!(l.frame_id(0, 0), -56);
    }
}
