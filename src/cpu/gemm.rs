//! Single-precision GEMM through the `gemm` crate natively and `matrixmultiply` on wasm32, split
//! by rows or columns across threads.

use super::parallel;
use std::mem::MaybeUninit;

/// A matrix view: data with row and column strides in elements (transposes are stride swaps).
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> MatRef<'a> {
        MatRef { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// Columns `first..first + cols` of this view.
    pub fn columns(self, first: usize, cols: usize) -> MatRef<'a> {
        MatRef { data: &self.data[(first * self.col_stride).min(self.data.len())..], cols, ..self }
    }

    pub fn t(self) -> MatRef<'a> {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// What a GEMM's output is made of: floats, which `beta` scales, or slots not yet written
/// (`MaybeUninit`, for outputs that would otherwise be zeroed first), which need `beta = 0`:
/// the `gemm` crate then writes them without reading them.
pub trait OutputSlot: Send + Sync + Sized {
    /// Whether the slots hold values that `beta * c` may read.
    const READABLE: bool;
    /// `c = beta * c`, for a product without terms (k = 0).
    fn scale(c: &mut [Self], beta: f32);
}

impl OutputSlot for f32 {
    const READABLE: bool = true;
    fn scale(c: &mut [f32], beta: f32) {
        c.iter_mut().for_each(|x| *x *= beta);
    }
}

impl OutputSlot for MaybeUninit<f32> {
    const READABLE: bool = false;
    fn scale(c: &mut [MaybeUninit<f32>], _beta: f32) {
        c.iter_mut().for_each(|x| {
            x.write(0.0);
        });
    }
}

/// Checks the shapes; settles the products without terms (an empty side, or k = 0: c = beta * c)
/// and says whether any are left.
fn has_products<C: OutputSlot>(a: &MatRef, b: &MatRef, beta: f32, c: &mut [C]) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm inner dimensions");
    assert_eq!(c.len(), m * n, "gemm output size");
    assert!(fits(a) && fits(b), "gemm operand views exceed their data");
    assert!(C::READABLE || beta == 0.0, "gemm: an unwritten output can only be overwritten (beta = 0)");
    if k == 0 {
        C::scale(c, beta);
    }
    m > 0 && n > 0 && k > 0
}

/// Rows at least per task of a GEMM split by rows: each task packs all of B again.
const MIN_ROWS: usize = 64;

/// `c = alpha * a @ b + beta * c`, with `c` row-major `a.rows x b.cols`.
pub fn sgemm<C: OutputSlot>(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [C]) {
    if !has_products(&a, &b, beta, c) {
        return;
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m < 2 * MIN_ROWS && split_columns(alpha, a, b, beta, c) {
        return;
    }
    let rows_per_chunk = parallel::chunk_len(m, k * n).max(MIN_ROWS);
    parallel::for_each_chunk_mut(c, rows_per_chunk * n, |chunk, c_rows| {
        let row0 = chunk * rows_per_chunk;
        let rows = c_rows.len() / n;
        let a_rows = MatRef { data: &a.data[row0 * a.row_stride..], rows, ..a };
        sgemm_serial(alpha, a_rows, b, beta, c_rows);
    });
}

/// `c = alpha * a @ b + beta * c` on the calling thread, for callers that already run one task
/// per thread (each extra split would pack `b` again).
pub fn sgemm_serial<C: OutputSlot>(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [C]) {
    if !has_products(&a, &b, beta, c) {
        return;
    }
    // SAFETY: `fits` checked both operand views against their slices and `c` is m x n; slots
    // of either kind are f32-sized, and with beta = 0 (required of unwritten ones) they are
    // written without being read.
    unsafe { raw_sgemm(alpha, &a, &b, beta, c.as_mut_ptr().cast(), b.cols) }
}

/// The inner dimension is summed in blocks of at most this many terms, k split evenly (640 as
/// 320 + 320: a 128-term tail block would read and write the whole output again for little
/// work, 10-15% of a [64, 640] x [640, 1920] product), whatever the product's other sizes: the
/// `gemm` crate picks its own block for k > 512 from m and n (512 when both are at most 64,
/// else k split evenly), so the same output would be summed in another order, other bits,
/// when a conv's panel or a batch split changes its column count.
const K_BLOCK: usize = 512;

/// The terms per block of an inner dimension of `k`: at most [`K_BLOCK`], as even as can be.
fn k_block(k: usize) -> usize {
    k.div_ceil(k.div_ceil(K_BLOCK).max(1)).max(1)
}

/// `c = alpha * a @ b + beta * c` for `c` (a.rows x b.cols) at `c` with row stride `c_row_stride`
/// and unit column stride, the inner dimension in [`k_block`] blocks.
///
/// # Safety
/// The views must fit their data (`fits`), every element of `c` must be in bounds, and no one
/// else may access those elements meanwhile.
unsafe fn raw_sgemm(alpha: f32, a: &MatRef, b: &MatRef, beta: f32, c: *mut f32, c_row_stride: usize) {
    let k = a.cols;
    let block = k_block(k);
    for first in (0..k).step_by(block) {
        let terms = block.min(k - first);
        let (a, b) = (a.columns(first, terms), b.t().columns(first, terms).t());
        // Later blocks add onto what the earlier ones wrote.
        let beta = if first == 0 { beta } else { 1.0 };
        // SAFETY: the blocks are views inside `a` and `b`; the caller's promise covers `c`.
        unsafe { raw_sgemm_block(alpha, &a, &b, beta, c, c_row_stride) }
    }
}

/// [`raw_sgemm`] in one call of the GEMM crate.
///
/// # Safety
/// As [`raw_sgemm`].
unsafe fn raw_sgemm_block(alpha: f32, a: &MatRef, b: &MatRef, beta: f32, c: *mut f32, c_row_stride: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // The gemm crate's form: dst = alpha' * dst + beta' * lhs @ rhs, strides column first.
    #[cfg(not(target_arch = "wasm32"))]
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        c_row_stride as isize,
        beta != 0.0,
        a.data.as_ptr(),
        a.col_stride as isize,
        a.row_stride as isize,
        b.data.as_ptr(),
        b.col_stride as isize,
        b.row_stride as isize,
        beta,
        alpha,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
    #[cfg(target_arch = "wasm32")]
    matrixmultiply::sgemm(
        m,
        k,
        n,
        alpha,
        a.data.as_ptr(),
        a.row_stride as isize,
        a.col_stride as isize,
        b.data.as_ptr(),
        b.row_stride as isize,
        b.col_stride as isize,
        beta,
        c,
        c_row_stride as isize,
        1,
    );
}

/// Columns `first..first + cols` of a row-major output that one task owns.
pub struct ColumnBlock<'a, C> {
    ptr: *mut C,
    rows: usize,
    cols: usize,
    row_stride: usize,
    _output: std::marker::PhantomData<&'a mut [C]>,
}

impl<C: OutputSlot> ColumnBlock<'_, C> {
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `block = alpha * a @ b + beta * block` on the calling thread (`a` rows x k, `b` k x cols).
    pub fn sgemm(&mut self, alpha: f32, a: MatRef, b: MatRef, beta: f32) {
        assert_eq!((a.rows, b.cols), (self.rows, self.cols), "gemm output block size");
        assert_eq!(a.cols, b.rows, "gemm inner dimensions");
        assert!(fits(&a) && fits(&b), "gemm operand views exceed their data");
        assert!(C::READABLE || beta == 0.0, "gemm: an unwritten output can only be overwritten (beta = 0)");
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        if a.cols == 0 {
            for r in 0..self.rows {
                // SAFETY: row r of the block is in bounds and this task's own (see `column_blocks`).
                let row =
                    unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.row_stride), self.cols) };
                C::scale(row, beta);
            }
            return;
        }
        // SAFETY: the views fit (checked above); the block's elements are in bounds and only
        // this task's (see `column_blocks`); unwritten slots are written, not read (beta = 0).
        unsafe { raw_sgemm(alpha, &a, &b, beta, self.ptr.cast(), self.row_stride) }
    }
}

/// A pointer shared by tasks that write disjoint column blocks of one matrix.
struct SharedOutput<C>(*mut C);

// SAFETY: every task writes only its own columns, and the caller holds `&mut` to the whole.
unsafe impl<C: Send> Sync for SharedOutput<C> {}

impl<C> SharedOutput<C> {
    fn get(&self) -> *mut C {
        self.0
    }
}

/// Splits the columns of `c` (row-major, rows of `n`) into blocks of `cols_per_block` and calls
/// `f(first_column, block)` for each, in parallel natively.
pub fn column_blocks<C: OutputSlot>(
    c: &mut [C],
    n: usize,
    cols_per_block: usize,
    f: impl Fn(usize, ColumnBlock<C>) + Sync + Send,
) {
    let rows = c.len().checked_div(n).unwrap_or(0);
    assert_eq!(rows * n, c.len(), "output is not whole rows");
    let per_block = cols_per_block.max(1);
    let out = SharedOutput(c.as_mut_ptr());
    parallel::for_each_index(n.div_ceil(per_block), |j| {
        let first = j * per_block;
        // SAFETY: columns first..first + cols of every row lie inside `c`, which the caller lent
        // mutably for this call, and blocks do not overlap.
        let ptr = unsafe { out.get().add(first) };
        let cols = per_block.min(n - first);
        f(first, ColumnBlock { ptr, rows, cols, row_stride: n, _output: std::marker::PhantomData });
    });
}

/// Few rows but many columns (a conv with 64 output channels over a 32x32 image): threads take
/// column blocks instead. Returns false when one block would do.
fn split_columns<C: OutputSlot>(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [C]) -> bool {
    const MIN_COLS: usize = 128;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let cols_per_chunk = parallel::chunk_len(n, m * k).max(MIN_COLS);
    if n.div_ceil(cols_per_chunk) < 2 {
        return false;
    }
    column_blocks(c, n, cols_per_chunk, |first, mut block| {
        block.sgemm(alpha, a, b.columns(first, block.cols()), beta)
    });
    true
}

/// Whether `data` is long enough for the view's last element.
fn fits(m: &MatRef) -> bool {
    m.rows == 0 || m.cols == 0 || (m.rows - 1) * m.row_stride + (m.cols - 1) * m.col_stride < m.data.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_naive_with_transposes() {
        // Few rows and many columns take the column-split path on several threads.
        for (m, k, n) in [(67, 13, 9), (5, 7, 3000)] {
            check_gemm(m, k, n);
        }
    }

    #[test]
    fn column_blocks_compute_the_whole_product() {
        let (m, k, n) = (5, 9, 38);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let (am, bm) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
        let start: Vec<f32> = (0..m * n).map(|i| i as f32).collect();
        let mut want = start.clone();
        sgemm_serial(2.0, am, bm, 0.5, &mut want);
        // Blocks of 8 columns and a last one of 6; then k = 0 (c = beta * c).
        let mut got = start.clone();
        column_blocks(&mut got, n, 8, |first, mut block| {
            block.sgemm(2.0, am, bm.columns(first, block.cols()), 0.5)
        });
        assert_eq!(got, want);
        let empty = MatRef::row_major(&[], m, 0);
        let mut got = start.clone();
        column_blocks(&mut got, n, 8, |first, mut block| {
            block.sgemm(2.0, empty, MatRef::row_major(&[], 0, n).columns(first, block.cols()), 0.5)
        });
        assert_eq!(got, start.iter().map(|x| x * 0.5).collect::<Vec<_>>());
    }

    /// Unwritten slots (holding NaN here, so that one left unwritten shows) get the same product
    /// as floats, on the row split, the column split and with k = 0 (zeros).
    #[test]
    fn unwritten_outputs_are_all_written() {
        for (m, k, n) in [(200, 13, 9), (5, 7, 3000), (6, 0, 4)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
            let (am, bm) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
            let mut want = vec![f32::NAN; m * n];
            sgemm(1.5, am, bm, 0.0, &mut want);
            let mut slots = vec![MaybeUninit::new(f32::NAN); m * n];
            sgemm(1.5, am, bm, 0.0, &mut slots);
            // SAFETY: MaybeUninit::new initialised every slot.
            let got: Vec<f32> = slots.iter().map(|s| unsafe { s.assume_init() }).collect();
            assert!(got.iter().all(|x| !x.is_nan()), "{m}x{k}x{n}: a slot was left unwritten");
            if k > 0 {
                assert_eq!(got, want, "{m}x{k}x{n}");
            } else {
                assert!(got.iter().all(|&x| x == 0.0), "k = 0 gives zeros");
            }
        }
    }

    #[test]
    #[should_panic(expected = "beta = 0")]
    fn unwritten_outputs_cannot_be_accumulated() {
        let a = [1.0f32; 4];
        let mut slots = vec![MaybeUninit::new(0.0f32); 4];
        sgemm(1.0, MatRef::row_major(&a, 2, 2), MatRef::row_major(&a, 2, 2), 1.0, &mut slots);
    }

    /// A product's bits do not depend on how its rows or columns are split (conv panels, batch
    /// parts, threads), also where the inner dimension is long enough to be summed in blocks.
    /// Natively: wasm32's `matrixmultiply` blocks its own way, and wasm runs one thread, whole
    /// batches and whole-image panels, so nothing there splits a product by the thread count.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn splits_keep_the_bits() {
        for (m, k, n) in [(128, 600, 96), (70, 1300, 40), (9, 2000, 130)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1009) as f32 / 504.0 - 1.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 997) as f32 / 498.0 - 1.0).collect();
            let (am, bm) = (MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n));
            let mut whole = vec![0.0; m * n];
            sgemm_serial(1.0, am, bm, 0.0, &mut whole);
            // Rows 0..top and top..m in two products.
            let top = m / 3;
            let mut rows = vec![0.0; m * n];
            let (upper, lower) = rows.split_at_mut(top * n);
            sgemm_serial(1.0, MatRef { rows: top, ..am }, bm, 0.0, upper);
            sgemm_serial(1.0, MatRef { data: &a[top * k..], rows: m - top, ..am }, bm, 0.0, lower);
            assert!(rows == whole, "{m}x{k}x{n}: split rows give other bits");
            // The first few columns alone.
            let left = 7;
            let mut cols = vec![0.0; m * left];
            sgemm_serial(1.0, am, bm.columns(0, left), 0.0, &mut cols);
            let want: Vec<f32> = whole.chunks(n).flat_map(|r| r[..left].to_vec()).collect();
            assert!(cols == want, "{m}x{k}x{n}: split columns give other bits");
        }
    }

    #[test]
    fn inner_blocks_are_even_and_at_most_k_block() {
        for (k, want) in
            [(1, 1), (100, 100), (512, 512), (513, 257), (640, 320), (1024, 512), (1025, 342), (3072, 512)]
        {
            assert_eq!(k_block(k), want, "k = {k}");
        }
    }

    fn check_gemm(m: usize, k: usize, n: usize) {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let mut c = vec![1.0; m * n];
        // b stored transposed (n x k) and viewed back.
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        sgemm(2.0, MatRef::row_major(&a, m, k), MatRef::row_major(&bt, n, k).t(), 0.5, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>() * 2.0 + 0.5;
                assert!((c[i * n + j] - want).abs() < 1e-4, "{i},{j}");
            }
        }
    }
}
