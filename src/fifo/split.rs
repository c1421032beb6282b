//! An iteration's windows split over several devices, and the frames they trade between
//! iterations.
//!
//! Each device takes a contiguous range of windows (head side on the first device) and keeps the
//! queue slots those windows read. Windows read the queue as it was at the start of the iteration,
//! so the devices run their ranges independently; between iterations each device receives only
//! the slots it will read next and did not write itself: with the queue moving one slot towards
//! the head per iteration, that is the first written slot of its tail-side neighbour, plus, with
//! lookahead, the `f/2 - 1` last written slots of its head-side neighbour (the context half of
//! its first window). Nothing else crosses devices, whatever the queue length.

use super::layout::QueueLayout;
use super::FifoError;
use std::ops::Range;

/// One frame that must reach `to` before the next iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Device (position in the split) that holds the frame's new value.
    pub from: usize,
    pub to: usize,
    /// Logical slot of the frame in the iteration that just ran (before the dequeue).
    pub slot: usize,
}

/// Contiguous window ranges per device, head side first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSplit {
    ranges: Vec<Range<usize>>,
}

impl WindowSplit {
    /// `counts[d]` windows for device `d`, in order. Every device but the first may take none
    /// (a device too slow to help); the first holds the head and must take at least one.
    pub fn new(layout: &QueueLayout, counts: &[usize]) -> Result<Self, FifoError> {
        let windows = layout.windows().len();
        if counts.iter().sum::<usize>() != windows || counts.first().is_none_or(|&c| c == 0) {
            return Err(FifoError::Config(format!(
                "a split of {counts:?} windows over devices does not cover the {windows} windows of \
                 an iteration with at least one on the first device"
            )));
        }
        let mut start = 0;
        let ranges = counts
            .iter()
            .map(|&c| {
                start += c;
                start - c..start
            })
            .collect();
        Ok(Self { ranges })
    }

    /// Windows shared as evenly as possible over `devices` (head-side devices take the extra).
    pub fn even(layout: &QueueLayout, devices: usize) -> Self {
        let windows = layout.windows().len();
        let devices = devices.clamp(1, windows);
        let counts: Vec<usize> =
            (0..devices).map(|d| windows / devices + usize::from(d < windows % devices)).collect();
        Self::new(layout, &counts).expect("an even split covers every window")
    }

    /// The split that finishes an iteration soonest when device `d` needs `fixed[d]` seconds plus
    /// `per_window[d]` seconds per window (measured): each window goes to the device on which it
    /// would finish first. The first device always keeps at least one window.
    pub fn balanced(layout: &QueueLayout, per_window: &[f64], fixed: &[f64]) -> Self {
        let windows = layout.windows().len();
        let devices = per_window.len().max(1);
        let mut counts = vec![0usize; devices];
        counts[0] = 1;
        let finish = |d: usize, n: usize| {
            fixed.get(d).copied().unwrap_or(0.0) + n as f64 * per_window.get(d).copied().unwrap_or(0.0)
        };
        for _ in 1..windows {
            let best = (0..devices)
                .min_by(|&a, &b| finish(a, counts[a] + 1).total_cmp(&finish(b, counts[b] + 1)))
                .expect("at least one device");
            counts[best] += 1;
        }
        Self::new(layout, &counts).expect("every window was placed")
    }

    /// Where to run an iteration when device `d` needs `per_window[d]` seconds a window and the
    /// head device also decodes the emitted frame, which took `decode` seconds on device 0
    /// (measured) and takes proportionally as long on the others. Every device is tried as the
    /// head (on a tie the faster leads); the others follow fastest first. Returns the device order (head first) and the
    /// split over that order that finishes an iteration soonest.
    pub fn placed(layout: &QueueLayout, per_window: &[f64], decode: f64) -> (Vec<usize>, Self) {
        let speed = |d: usize| per_window[d] / per_window[0].max(f64::MIN_POSITIVE);
        let mut best: Option<(f64, Vec<usize>, Self)> = None;
        // Fastest first, so that on a tie the faster device leads.
        let mut heads: Vec<usize> = (0..per_window.len().max(1)).collect();
        heads.sort_by(|&a, &b| per_window[a].total_cmp(&per_window[b]));
        for head in heads {
            let mut order: Vec<usize> = (0..per_window.len()).filter(|&d| d != head).collect();
            order.sort_by(|&a, &b| per_window[a].total_cmp(&per_window[b]));
            order.insert(0, head);
            let times: Vec<f64> = order.iter().map(|&d| per_window[d]).collect();
            let mut fixed = vec![0.0; order.len()];
            fixed[0] = decode * speed(head);
            let split = Self::balanced(layout, &times, &fixed);
            let counts = split.counts();
            let makespan =
                counts.iter().enumerate().map(|(i, &n)| fixed[i] + n as f64 * times[i]).fold(0.0, f64::max);
            if best.as_ref().is_none_or(|(m, ..)| makespan < *m) {
                best = Some((makespan, order, split));
            }
        }
        let (_, order, split) = best.expect("at least one device");
        (order, split)
    }

    pub fn devices(&self) -> usize {
        self.ranges.len()
    }

    /// Windows of device `d`.
    pub fn windows(&self, d: usize) -> Range<usize> {
        self.ranges[d].clone()
    }

    /// Windows per device.
    pub fn counts(&self) -> Vec<usize> {
        self.ranges.iter().map(|r| r.len()).collect()
    }

    /// Logical slots device `d` reads in an iteration (empty for a device without windows).
    pub fn reads(&self, layout: &QueueLayout, d: usize) -> Range<usize> {
        let r = &self.ranges[d];
        if r.is_empty() {
            return 0..0;
        }
        let w = layout.windows();
        w[r.start].start..w[r.end - 1].start + layout.window
    }

    /// Logical slots device `d` writes in an iteration.
    pub fn writes(&self, layout: &QueueLayout, d: usize) -> Range<usize> {
        let r = &self.ranges[d];
        if r.is_empty() {
            return 0..0;
        }
        let w = layout.windows();
        w[r.start].start + w[r.start].write_from..w[r.end - 1].start + layout.window
    }

    /// The device whose copy of logical slot `slot` is current between iterations: the first one
    /// that reads it (every slot is read by some window).
    pub fn holder(&self, layout: &QueueLayout, slot: usize) -> usize {
        (0..self.devices())
            .find(|&d| self.reads(layout, d).contains(&slot))
            .expect("the windows cover the whole queue")
    }

    /// The device holding the head (emits and decodes) and the one holding the tail (enqueues).
    pub fn head_device(&self) -> usize {
        0
    }

    pub fn tail_device(&self) -> usize {
        (0..self.devices()).rev().find(|&d| !self.ranges[d].is_empty()).expect("the first device has windows")
    }

    /// The frames to move after an iteration so that every device holds, at the start of the
    /// next, every slot it reads then. The new tail is the tail device's own fresh noise.
    pub fn transfers(&self, layout: &QueueLayout) -> Vec<Transfer> {
        let source = |slot: usize| {
            (0..self.devices())
                .find(|&d| self.writes(layout, d).contains(&slot))
                .unwrap_or_else(|| self.holder(layout, slot))
        };
        let mut transfers = Vec::new();
        for to in 0..self.devices() {
            let reads = self.reads(layout, to);
            if reads.is_empty() {
                continue;
            }
            // Next iteration's logical slot s is this iteration's s + 1.
            for slot in reads.start + 1..(reads.end + 1).min(layout.len()) {
                let from = source(slot);
                if from != to {
                    transfers.push(Transfer { from, to, slot });
                }
            }
        }
        transfers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fifo::{FifoConfig, InitMode};

    fn layout(f: usize, n: usize, lookahead: bool) -> QueueLayout {
        let config = FifoConfig {
            window: f,
            partitions: n,
            lookahead,
            init: InitMode::Noise,
            ..FifoConfig::official(vec![1])
        };
        QueueLayout::new(&config)
    }

    /// Simulates the queue as per-device copies of "which version of which frame" and checks that
    /// with the transfers every device reads exactly what a single queue holds, over many
    /// iterations, for every split of several layouts; and that nothing superfluous is moved.
    #[test]
    fn transfers_keep_every_read_slot_current() {
        for (f, n, la) in [(4, 2, true), (4, 3, false), (16, 4, true), (2, 5, true), (8, 2, false)] {
            let l = layout(f, n, la);
            let windows = l.windows().len();
            for devices in 1..=windows.min(4) {
                for counts in compositions(windows, devices) {
                    let split = WindowSplit::new(&l, &counts).unwrap();
                    check_simulation(&l, &split, &counts);
                }
            }
        }
    }

    fn check_simulation(l: &QueueLayout, split: &WindowSplit, counts: &[usize]) {
        let len = l.len();
        // A value is (frame id, times denoised): what the single queue would hold.
        let mut truth: Vec<(i64, u32)> = (0..len).map(|s| (l.frame_id(s, 0), 0)).collect();
        let mut copies = vec![truth.clone(); split.devices()];
        let transfers = split.transfers(l);
        for it in 0..3 * len as u64 {
            for (d, copy) in copies.iter().enumerate() {
                for s in split.reads(l, d) {
                    assert_eq!(copy[s], truth[s], "{counts:?}: device {d} reads a stale slot {s} at {it}");
                }
            }
            for s in l.written_slots() {
                truth[s].1 += 1;
            }
            for (d, copy) in copies.iter_mut().enumerate() {
                for s in split.writes(l, d) {
                    copy[s].1 += 1;
                }
            }
            let snapshot = copies.clone();
            for t in &transfers {
                assert!(
                    split.writes(l, t.from).contains(&t.slot) || split.reads(l, t.from).contains(&t.slot)
                );
                copies[t.to][t.slot] = snapshot[t.from][t.slot];
            }
            // Dequeue the head, enqueue a fresh frame at the tail (on the tail device).
            let fresh = (l.frame_id(len - 1, it + 1), 0);
            truth.remove(0);
            truth.push(fresh);
            for (d, copy) in copies.iter_mut().enumerate() {
                copy.remove(0);
                copy.push(if d == split.tail_device() { fresh } else { (i64::MIN, 0) });
            }
        }
        let per_boundary = if l.head > 0 { l.head } else { 1 };
        let boundaries = counts.iter().filter(|&&c| c > 0).count() - 1;
        assert_eq!(transfers.len(), per_boundary * boundaries, "{counts:?}: {transfers:?}");
    }

    /// Every way to write `total` as `parts` counts, the first at least 1.
    fn compositions(total: usize, parts: usize) -> Vec<Vec<usize>> {
        if parts == 1 {
            return vec![vec![total]];
        }
        let mut out = Vec::new();
        for first in 0..=total {
            for mut rest in compositions(total - first, parts - 1) {
                rest.insert(0, first);
                out.push(rest);
            }
        }
        out.retain(|c| c[0] > 0);
        out
    }

    #[test]
    fn splits_are_even_or_follow_measured_speed() {
        let l = layout(16, 4, true); // 8 windows
        assert_eq!(WindowSplit::even(&l, 3).counts(), [3, 3, 2]);
        assert_eq!(WindowSplit::even(&l, 20).counts(), [1; 8]);
        // A device three times as fast takes three quarters of the windows.
        assert_eq!(WindowSplit::balanced(&l, &[1.0, 3.0], &[0.0, 0.0]).counts(), [6, 2]);
        // The head device also decodes: a fixed cost moves windows to the other one.
        assert_eq!(WindowSplit::balanced(&l, &[1.0, 1.0], &[4.0, 0.0]).counts(), [2, 6]);
        // A device a hundred times slower gets nothing, and then trades nothing.
        let slow = WindowSplit::balanced(&l, &[1.0, 100.0], &[0.0, 0.0]);
        assert_eq!(slow.counts(), [8, 0]);
        assert!(slow.transfers(&l).is_empty());
        assert_eq!(slow.tail_device(), 0);
        assert!(WindowSplit::new(&l, &[0, 8]).is_err());
        assert!(WindowSplit::new(&l, &[4, 3]).is_err());
    }

    /// The soonest an iteration can finish, over every split and every head (brute force).
    fn best_makespan(windows: usize, per_window: &[f64], decode: f64) -> f64 {
        let mut best = f64::INFINITY;
        for head in 0..per_window.len() {
            for counts in compositions(windows, per_window.len()) {
                // `counts[0]` is the head's share; the others in any order.
                let others: Vec<usize> = (0..per_window.len()).filter(|&d| d != head).collect();
                let mut finish =
                    decode * per_window[head] / per_window[0] + counts[0] as f64 * per_window[head];
                for (i, &d) in others.iter().enumerate() {
                    finish = finish.max(counts[i + 1] as f64 * per_window[d]);
                }
                best = best.min(finish);
            }
        }
        best
    }

    #[test]
    fn placement_counts_the_decoder_on_the_head() {
        let l = layout(16, 4, true); // 8 windows
                                     // Equal devices, a decode as long as 4 windows: the head takes fewer windows.
        let (order, split) = WindowSplit::placed(&l, &[1.0, 1.0], 4.0);
        assert_eq!((order, split.counts()), (vec![0, 1], vec![2, 6]));
        // No decode cost: the faster device leads and takes its share.
        let (order, split) = WindowSplit::placed(&l, &[3.0, 1.0], 0.0);
        assert_eq!((order, split.counts()), (vec![1, 0], vec![6, 2]));
        // A slow device decoding would hold everyone up; a fast one decodes.
        let (order, _) = WindowSplit::placed(&l, &[5.0, 1.0, 1.0], 2.0);
        assert_eq!(order[0], 1);
        // Never worse than the best split of all (brute force over heads and counts).
        for (per_window, decode) in [
            (vec![1.0, 1.0], 3.0),
            (vec![1.0, 2.5], 6.0),
            (vec![2.0, 1.0, 1.5], 4.0),
            (vec![1.0, 1.0, 1.0], 0.5),
            (vec![1.0, 7.0], 1.0),
        ] {
            let (order, split) = WindowSplit::placed(&l, &per_window, decode);
            let counts = split.counts();
            let finish = counts.iter().enumerate().map(|(i, &n)| {
                let d = order[i];
                let head = if i == 0 { decode * per_window[d] / per_window[0] } else { 0.0 };
                head + n as f64 * per_window[d]
            });
            let makespan = finish.fold(0.0, f64::max);
            let best = best_makespan(8, &per_window, decode);
            assert!(makespan <= best + 1e-9, "{per_window:?} decode {decode}: {makespan} vs best {best}");
        }
    }
}
