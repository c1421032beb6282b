//! Buffer reuse from liveness: tensors whose lifetimes (first..=last step using them) do not
//! overlap share one buffer. Greedy by size, largest first, so a slot is as big as its first
//! tenant. `FIFO_NO_BUFFER_REUSE=1` gives every tensor its own buffer, to rule reuse out when
//! debugging a wrong result.

use super::context::GpuContext;
use super::error::GpuResult;
use super::tensor::{DType, GpuTensor};

/// When a tensor is alive, in step indices (inclusive), and how many bytes it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub bytes: u64,
    pub first: usize,
    pub last: usize,
}

/// Slot of each tensor (same order as the lifetimes) and each slot's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReusePlan {
    pub slot_of: Vec<usize>,
    pub slot_bytes: Vec<u64>,
}

impl ReusePlan {
    pub fn total_bytes(&self) -> u64 {
        self.slot_bytes.iter().sum()
    }
}

/// Whether reuse is on (`FIFO_NO_BUFFER_REUSE=1` turns it off; always on in the browser).
pub fn reuse_enabled() -> bool {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::env::var("FIFO_NO_BUFFER_REUSE").map_or(true, |v| v != "1")
    }
    #[cfg(target_arch = "wasm32")]
    {
        true
    }
}

pub fn plan_reuse(lifetimes: &[Lifetime], reuse: bool) -> ReusePlan {
    let mut order: Vec<usize> = (0..lifetimes.len()).collect();
    // Largest first; ties by first use so the plan is deterministic.
    order.sort_by_key(|&i| (std::cmp::Reverse(lifetimes[i].bytes), lifetimes[i].first, i));
    let mut slot_of = vec![usize::MAX; lifetimes.len()];
    let mut slot_bytes: Vec<u64> = Vec::new();
    let mut tenants: Vec<Vec<usize>> = Vec::new();
    for i in order {
        let me = lifetimes[i];
        let overlaps = |j: &usize| {
            let other = lifetimes[*j];
            me.first <= other.last && other.first <= me.last
        };
        let free = if reuse { tenants.iter().position(|t| !t.iter().any(overlaps)) } else { None };
        let slot = free.unwrap_or_else(|| {
            slot_bytes.push(me.bytes);
            tenants.push(Vec::new());
            slot_bytes.len() - 1
        });
        tenants[slot].push(i);
        slot_of[i] = slot;
    }
    ReusePlan { slot_of, slot_bytes }
}

/// Allocates a plan's slots and hands out each tensor as an alias of its slot.
pub struct BufferPool {
    slots: Vec<GpuTensor>,
    plan: ReusePlan,
}

impl BufferPool {
    pub fn new(ctx: &GpuContext, plan: ReusePlan) -> GpuResult<Self> {
        let slots = plan
            .slot_bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| GpuTensor::new(ctx, &format!("slot{i}"), DType::I8, b as usize))
            .collect::<GpuResult<_>>()?;
        Ok(Self { slots, plan })
    }

    /// The `index`-th planned tensor (the order of `plan_reuse`'s lifetimes).
    pub fn tensor(&self, index: usize, name: &str, dtype: DType, len: usize) -> GpuResult<GpuTensor> {
        self.slots[self.plan.slot_of[index]].alias(name, dtype, len)
    }

    pub fn plan(&self) -> &ReusePlan {
        &self.plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn life(bytes: u64, first: usize, last: usize) -> Lifetime {
        Lifetime { bytes, first, last }
    }

    #[test]
    fn disjoint_lifetimes_share_a_slot() {
        let l = [life(100, 0, 1), life(80, 2, 3), life(50, 1, 2)];
        let plan = plan_reuse(&l, true);
        assert_eq!(plan.slot_of[0], plan.slot_of[1]);
        assert_ne!(plan.slot_of[0], plan.slot_of[2]);
        assert_eq!(plan.total_bytes(), 150);
    }

    #[test]
    fn reuse_off_gives_every_tensor_a_slot() {
        let l = [life(100, 0, 1), life(80, 2, 3), life(50, 1, 2)];
        let plan = plan_reuse(&l, false);
        assert_eq!(plan.slot_bytes.len(), 3);
        assert_eq!(plan.total_bytes(), 230);
    }

    #[test]
    fn chain_uses_two_slots() {
        // a -> b -> c -> d: each tensor overlaps only its neighbours.
        let l: Vec<_> = (0..4).map(|i| life(64, i, i + 1)).collect();
        assert_eq!(plan_reuse(&l, true).slot_bytes.len(), 2);
    }
}
