//! Weights in a kernel's own layout (Winograd's transformed filters), computed once per weight
//! tensor instead of once per run: a model's weights are the same constant tensors every run, so
//! a node keeps what it derived from them for as long as it is handed the same tensor.
//!
//! Identity is the tensor's data allocation, held by a `Weak`: while the cache holds it, that
//! address cannot be reused by another tensor, and tensor data is never written in place after
//! it is shared (`Arc::get_mut` would refuse it anyway while a `Weak` exists). All caches of the
//! process share a byte budget ([`BUDGET_BYTES`]) so that a large model does not keep a second
//! copy of every weight; past it, nodes derive per run as before.

use crate::tensor::{Tensor, TensorData};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Bytes all caches together may hold: the shipped UNet's 3x3 convs need 7.7 MiB of transformed
/// filters, a large UNet's a few GiB (which would rather be derived per run).
pub const BUDGET_BYTES: usize = 512 << 20;
static USED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// What one node derived from one weight tensor. Clones start empty; equality ignores it (a
/// cache is not part of an op's meaning).
#[derive(Default)]
pub struct Prepared<T: AsRef<[f32]>> {
    slot: Mutex<Option<Entry<T>>>,
}

struct Entry<T> {
    source: Weak<TensorData>,
    value: Arc<T>,
    bytes: usize,
}

impl<T: AsRef<[f32]>> Prepared<T> {
    /// The value derived from `source`: the cached one if `source` is the tensor it was derived
    /// from, else `derive()` (kept when the budget allows). Derives outside the lock: a derivation
    /// may run on the thread pool, whose threads may be asked to run this node for another part
    /// of a batch meanwhile.
    pub fn get_or_derive(&self, source: &Tensor, derive: impl FnOnce() -> T) -> Arc<T> {
        self.get_or_derive_within(BUDGET_BYTES, source, derive)
    }

    fn get_or_derive_within(&self, budget: usize, source: &Tensor, derive: impl FnOnce() -> T) -> Arc<T> {
        let data = source.shared_data();
        if let Some(entry) = &*self.lock() {
            if std::ptr::eq(entry.source.as_ptr(), Arc::as_ptr(data)) {
                return entry.value.clone();
            }
        }
        let value = Arc::new(derive());
        let bytes = std::mem::size_of_val(value.as_ref().as_ref());
        let mut slot = self.lock();
        if let Some(old) = slot.take() {
            USED_BYTES.fetch_sub(old.bytes, Ordering::Relaxed);
        }
        let fits = USED_BYTES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + bytes <= budget).then_some(used + bytes)
            })
            .is_ok();
        if fits {
            *slot = Some(Entry { source: Arc::downgrade(data), value: value.clone(), bytes });
        }
        value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Entry<T>>> {
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a value is kept (for tests).
    #[cfg(test)]
    fn holds(&self) -> bool {
        self.lock().is_some()
    }
}

impl<T: AsRef<[f32]>> Drop for Prepared<T> {
    fn drop(&mut self) {
        if let Some(entry) = self.lock().take() {
            USED_BYTES.fetch_sub(entry.bytes, Ordering::Relaxed);
        }
    }
}

impl<T: AsRef<[f32]>> Clone for Prepared<T> {
    fn clone(&self) -> Self {
        Prepared { slot: Mutex::new(None) }
    }
}

impl<T: AsRef<[f32]>> PartialEq for Prepared<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T: AsRef<[f32]>> std::fmt::Debug for Prepared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn tensor(values: &[f32]) -> Tensor {
        Tensor::from_f32(vec![values.len()], values.to_vec()).unwrap()
    }

    #[test]
    fn derives_once_per_tensor_and_again_for_another() {
        let cache = Prepared::<Vec<f32>>::default();
        let calls = Cell::new(0);
        let double = |t: &Tensor| {
            calls.set(calls.get() + 1);
            t.f32s().iter().map(|v| v * 2.0).collect::<Vec<f32>>()
        };
        let (a, b) = (tensor(&[1.0, 2.0]), tensor(&[1.0, 2.0]));
        assert_eq!(*cache.get_or_derive(&a, || double(&a)), [2.0, 4.0]);
        assert_eq!(*cache.get_or_derive(&a.clone(), || double(&a)), [2.0, 4.0]);
        assert_eq!(calls.get(), 1, "a clone shares the data: derived once");
        // Equal values in another allocation are another tensor (its values could differ).
        let c = tensor(&[3.0, 5.0]);
        assert_eq!(*cache.get_or_derive(&b, || double(&b)), [2.0, 4.0]);
        assert_eq!(*cache.get_or_derive(&c, || double(&c)), [6.0, 10.0]);
        assert_eq!(calls.get(), 3);
        assert!(cache.holds());
        assert!(!cache.clone().holds(), "a clone starts empty");
    }

    #[test]
    fn past_the_budget_values_are_derived_and_not_kept() {
        let cache = Prepared::<Vec<f32>>::default();
        let weights = tensor(&[0.0]);
        let calls = Cell::new(0);
        let derive = || {
            calls.set(calls.get() + 1);
            vec![1.0; 4]
        };
        // 16 bytes against a budget of 15.
        assert_eq!(cache.get_or_derive_within(15, &weights, derive).len(), 4);
        assert!(!cache.holds());
        cache.get_or_derive_within(15, &weights, derive);
        assert_eq!(calls.get(), 2, "not kept, so derived again");
    }
}
