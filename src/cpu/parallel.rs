//! The only place that knows whether kernels run on a thread pool: rayon natively,
//! a plain loop on wasm32.

/// Below this many elements of work, splitting costs more than it saves.
pub const MIN_PARALLEL_WORK: usize = 1 << 15;

/// Calls `f(chunk_index, chunk)` for consecutive `chunk_len`-sized pieces of `out`.
pub fn for_each_chunk_mut<T: Send>(
    out: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk_len = chunk_len.max(1);
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        if out.len() > chunk_len {
            out.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
            return;
        }
    }
    out.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
}

/// Calls `f(i)` for every `i` in `0..count`, in parallel natively.
pub fn for_each_index(count: usize, f: impl Fn(usize) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..count).into_par_iter().for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    (0..count).for_each(f);
}

/// Calls `f(item)` for every item, in parallel natively (tasks that own disjoint outputs).
pub fn for_each_item<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        items.into_par_iter().for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    items.into_iter().for_each(f);
}

/// A chunk length that splits `len` elements into a few pieces per thread, each worth at least
/// `MIN_PARALLEL_WORK` units when every element costs `work_per_item`.
pub fn chunk_len(len: usize, work_per_item: usize) -> usize {
    let threads = num_threads();
    if threads == 1 {
        return len.max(1);
    }
    let min_items = MIN_PARALLEL_WORK.div_ceil(work_per_item.max(1));
    len.div_ceil(threads * 4).max(min_items).max(1)
}

/// Column blocks for a GEMM-like task over `len` columns: two per thread (so a thread that
/// another process delays leaves its second block to be stolen), each at least `min` long.
pub fn blocks_of(len: usize, min: usize) -> usize {
    let threads = num_threads();
    if threads == 1 {
        return len.max(1);
    }
    len.div_ceil(2 * threads).max(min).max(1)
}

/// Runs `f` on a worker of the pool (natively), so the parallel loops inside it start on a
/// thread that takes its own share of the work instead of waking the pool and sleeping once per
/// loop: with 2 threads, the caller's wake-up per op was a measurable share of a small model.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::scope(|_| f())
    }
    #[cfg(target_arch = "wasm32")]
    {
        f()
    }
}

pub fn num_threads() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}
