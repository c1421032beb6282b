//! Outputs written without zeroing them first: `vec![0.0; n]` on recycled heap memory is a
//! memset of every output on the calling thread alone (3-7% of a UNet's CPU time), wasted where
//! a kernel writes every element anyway.

use super::parallel;
use std::mem::MaybeUninit;

/// `len` values written by `fill`.
///
/// # Safety
/// `fill` must write every slot of the slice it is given.
pub unsafe fn written<T>(len: usize, fill: impl FnOnce(&mut [MaybeUninit<T>])) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(len);
    // Debug builds (the tests) fill the slots with 0xFF bytes first, NaN as floats, so that a
    // kernel that leaves one unwritten fails its tests instead of passing on memory that
    // happened to hold the right value.
    if cfg!(debug_assertions) {
        // SAFETY: the capacity holds `len` slots, and unwritten slots may hold any bytes.
        unsafe { out.as_mut_ptr().write_bytes(0xFF, len) };
    }
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: `fill` wrote all `len` slots (the caller's promise).
    unsafe { out.set_len(len) };
    out
}

/// `len` values written by `fill(piece_index, piece)` over consecutive `chunk`-long pieces, in
/// parallel natively.
///
/// # Safety
/// `fill` must write every slot of every piece it is given.
pub unsafe fn filled<T: Send>(
    len: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    // SAFETY: the pieces cover the slice, and `fill` writes each (the caller's promise).
    unsafe { written(len, |out| parallel::for_each_chunk_mut(out, chunk, fill)) }
}

/// The slots as the values they now hold.
///
/// # Safety
/// Every slot must have been written.
pub unsafe fn assume_init<T>(slots: &mut [MaybeUninit<T>]) -> &mut [T] {
    // SAFETY: MaybeUninit<T> has T's layout, and every slot holds a T (the caller's promise).
    unsafe { std::slice::from_raw_parts_mut(slots.as_mut_ptr().cast::<T>(), slots.len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_land_where_they_belong() {
        // Three pieces of 4 and a last of 1, each written with its index and offset.
        // SAFETY: every slot of every piece is written.
        let got = unsafe {
            filled(13, 4, |i, piece| {
                for (j, slot) in piece.iter_mut().enumerate() {
                    slot.write(i * 100 + j);
                }
            })
        };
        let want: Vec<usize> = (0..13).map(|k| k / 4 * 100 + k % 4).collect();
        assert_eq!(got, want);
        if cfg!(debug_assertions) {
            // SAFETY: the slot is written (by the debug builds' poison, which this checks).
            let poisoned: Vec<f32> = unsafe { written(1, |_| {}) };
            assert!(poisoned[0].is_nan(), "debug builds poison unwritten slots");
        }
        // SAFETY: nothing to write.
        assert!(unsafe { written::<f32>(0, |_| {}) }.is_empty());
    }
}
