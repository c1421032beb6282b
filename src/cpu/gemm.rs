//! Single-precision GEMM through `matrixmultiply`, split by rows across threads.

use super::parallel;

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

/// Checks the shapes; settles the products without terms (an empty side, or k = 0: c = beta * c)
/// and says whether any are left.
fn has_products(a: &MatRef, b: &MatRef, beta: f32, c: &mut [f32]) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "gemm inner dimensions");
    assert_eq!(c.len(), m * n, "gemm output size");
    assert!(fits(a) && fits(b), "gemm operand views exceed their data");
    if k == 0 {
        c.iter_mut().for_each(|x| *x *= beta);
    }
    m > 0 && n > 0 && k > 0
}

/// `c = alpha * a @ b + beta * c`, with `c` row-major `a.rows x b.cols`.
pub fn sgemm(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    if !has_products(&a, &b, beta, c) {
        return;
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // Each piece packs all of B again, so pieces keep at least MIN_ROWS rows.
    const MIN_ROWS: usize = 64;
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
pub fn sgemm_serial(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    if !has_products(&a, &b, beta, c) {
        return;
    }
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // SAFETY: `fits` checked both operand views against their slices and `c` is m x n.
    unsafe {
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
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// A pointer shared by tasks that write disjoint column blocks of one matrix.
struct SharedOutput(*mut f32);

// SAFETY: every task writes only its own columns, and the caller holds `&mut` to the whole.
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Few rows but many columns (a conv with 64 output channels over a 32x32 image): threads take
/// column blocks instead. Returns false when one block would do.
fn split_columns(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) -> bool {
    const MIN_COLS: usize = 128;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let cols_per_chunk = parallel::chunk_len(n, m * k).max(MIN_COLS);
    let chunks = n.div_ceil(cols_per_chunk);
    if chunks < 2 {
        return false;
    }
    let out = SharedOutput(c.as_mut_ptr());
    parallel::for_each_index(chunks, |j| {
        let first = j * cols_per_chunk;
        let cols = cols_per_chunk.min(n - first);
        // SAFETY: columns first..first+cols of B (k x n) and of C (m x n, row-major) are in
        // bounds (`fits` checked B, `c.len() == m * n`), and no other task writes them.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                cols,
                alpha,
                a.data.as_ptr(),
                a.row_stride as isize,
                a.col_stride as isize,
                b.data.as_ptr().add(first * b.col_stride),
                b.row_stride as isize,
                b.col_stride as isize,
                beta,
                out.get().add(first),
                n as isize,
                1,
            );
        }
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
