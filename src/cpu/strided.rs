//! Copies out of strided views (Transpose, Slice, Split): dims are coalesced first, so a
//! transpose of `[B, H, W, C]` to `[B, C, H, W]` becomes a few long runs, contiguous runs are
//! `memcpy`s, and rows are spread over threads. No per-element offset tables.

use super::parallel;

/// A view of a flat buffer: `shape`, a signed stride per dim (in elements) and the offset of the
/// first element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
    pub offset: usize,
}

impl View {
    /// The same view with size-1 dims dropped and adjacent dims merged where one walk covers
    /// both (`stride[d] == stride[d + 1] * shape[d + 1]`). Keeps at least one dim.
    fn coalesced(&self) -> View {
        let mut shape: Vec<usize> = Vec::new();
        let mut strides: Vec<isize> = Vec::new();
        for (&n, &s) in self.shape.iter().zip(&self.strides) {
            if n == 1 {
                continue;
            }
            match (shape.last_mut(), strides.last_mut()) {
                (Some(last_n), Some(last_s)) if *last_s == s * n as isize => {
                    *last_n *= n;
                    *last_s = s;
                }
                _ => {
                    shape.push(n);
                    strides.push(s);
                }
            }
        }
        if shape.is_empty() {
            shape.push(1);
            strides.push(1);
        }
        View { shape, strides, offset: self.offset }
    }
}

/// The elements of `src` seen through `view`, in row-major order of `view.shape`.
/// The caller guarantees every position of the view lies inside `src`.
pub fn gather<T: Copy + Send + Sync + Default>(src: &[T], view: &View) -> Vec<T> {
    let len: usize = view.shape.iter().product();
    if len == 0 {
        return Vec::new();
    }
    let v = view.coalesced();
    let rank = v.shape.len();
    let inner = v.shape[rank - 1];
    let inner_stride = v.strides[rank - 1];
    let (outer_shape, outer_strides) = (&v.shape[..rank - 1], &v.strides[..rank - 1]);
    // A transpose whose source-contiguous dim is not the next-outer one ([B, F, C, HW] to
    // [B, HW, C, F] around a temporal conv): groups along that dim, wherever it is.
    let contiguous = outer_strides.iter().rposition(|&s| s == 1);
    if let Some(p) = contiguous.filter(|&p| inner_stride != 1 && p + 1 < outer_shape.len()) {
        if outer_shape[p] % GROUP == 0 {
            return gather_grouped(src, &v, p);
        }
    }
    let mut out = vec![T::default(); len];
    // Chunks hold whole rows so each starts at a row boundary.
    let rows_per_chunk = parallel::chunk_len(len / inner, inner).max(1);
    parallel::for_each_chunk_mut(&mut out, rows_per_chunk * inner, |chunk, dst| {
        let row = chunk * rows_per_chunk;
        // Multi-index of `row` over the outer dims, and the source offset it maps to.
        let mut index = vec![0usize; outer_shape.len()];
        let mut rest = row;
        for d in (0..outer_shape.len()).rev() {
            index[d] = rest % outer_shape[d];
            rest /= outer_shape[d];
        }
        let mut base =
            v.offset as isize + index.iter().zip(outer_strides).map(|(&i, &s)| i as isize * s).sum::<isize>();
        // A transpose (the next-outer dim walks the source contiguously): GROUP output rows at a
        // time, so each source cache line serves GROUP outputs instead of one.
        let transposed = inner_stride != 1 && outer_strides.last() == Some(&1);
        let rows = dst.len() / inner;
        let mut r = 0;
        while r < rows {
            let last = outer_shape.len().wrapping_sub(1);
            let g = if transposed && r + GROUP <= rows && index[last] + GROUP <= outer_shape[last] {
                GROUP
            } else {
                1
            };
            let out_rows = &mut dst[r * inner..(r + g) * inner];
            if inner_stride == 1 {
                out_rows.copy_from_slice(&src[base as usize..base as usize + inner]);
            } else if g == GROUP {
                // One fixed-size block per source line: unrolled (a loop over a variable
                // count of rows made the whole transpose 3x slower).
                for j in 0..inner {
                    let s = (base + j as isize * inner_stride) as usize;
                    let block: &[T; GROUP] = src[s..s + GROUP].try_into().expect("a whole block");
                    for (t, &x) in block.iter().enumerate() {
                        out_rows[t * inner + j] = x;
                    }
                }
            } else {
                for (j, x) in out_rows.iter_mut().enumerate() {
                    *x = src[(base + j as isize * inner_stride) as usize];
                }
            }
            for _ in 0..g {
                step(&mut index, &mut base, outer_shape, outer_strides);
            }
            r += g;
        }
    });
    out
}

/// Output rows a transposing gather fills together.
const GROUP: usize = 16;

/// [`gather`] of a coalesced view whose outer dim `p` (not the last outer one) walks the source
/// contiguously: `GROUP` indices of `p` at a time, so each source cache line serves `GROUP`
/// output rows (`rows_between` rows apart) instead of one. `v.shape[p]` is a multiple of `GROUP`.
fn gather_grouped<T: Copy + Send + Sync + Default>(src: &[T], v: &View, p: usize) -> Vec<T> {
    let rank = v.shape.len();
    let (inner, inner_stride) = (v.shape[rank - 1], v.strides[rank - 1]);
    // The rows between consecutive indices of `p`, and their source offsets from the first.
    let between = &v.shape[p + 1..rank - 1];
    let rows_between: usize = between.iter().product();
    let mut sub_offsets = Vec::with_capacity(rows_between);
    let (mut index, mut off) = (vec![0usize; between.len()], 0isize);
    for _ in 0..rows_between {
        sub_offsets.push(off);
        step(&mut index, &mut off, between, &v.strides[p + 1..rank - 1]);
    }
    let groups_per_combo = v.shape[p] / GROUP;
    let unit = GROUP * rows_between * inner; // output elements of one group
    let len: usize = v.shape.iter().product();
    let mut out = vec![T::default(); len];
    let units_per_chunk = parallel::chunk_len(len / unit, unit);
    parallel::for_each_chunk_mut(&mut out, units_per_chunk * unit, |chunk, dst| {
        for (u, dst) in dst.chunks_mut(unit).enumerate() {
            let u = chunk * units_per_chunk + u;
            let (mut combo, first) = (u / groups_per_combo, (u % groups_per_combo) * GROUP);
            // Source offset of the group's first row: the combo's index over the dims before p.
            let mut base = v.offset as isize + (first as isize) * v.strides[p];
            for d in (0..p).rev() {
                base += (combo % v.shape[d]) as isize * v.strides[d];
                combo /= v.shape[d];
            }
            for (sub, &sub_off) in sub_offsets.iter().enumerate() {
                for j in 0..inner {
                    let s = (base + sub_off + j as isize * inner_stride) as usize;
                    for (t, &x) in src[s..s + GROUP].iter().enumerate() {
                        dst[(t * rows_between + sub) * inner + j] = x;
                    }
                }
            }
        }
    });
    out
}

/// One odometer step over the outer dims: the next row's multi-index and source offset.
fn step(index: &mut [usize], base: &mut isize, shape: &[usize], strides: &[isize]) {
    for d in (0..shape.len()).rev() {
        index[d] += 1;
        *base += strides[d];
        if index[d] < shape[d] {
            break;
        }
        *base -= strides[d] * shape[d] as isize;
        index[d] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element by element, the definition.
    fn reference(src: &[i32], view: &View) -> Vec<i32> {
        let len: usize = view.shape.iter().product();
        (0..len)
            .map(|mut flat| {
                let mut off = view.offset as isize;
                for d in (0..view.shape.len()).rev() {
                    off += (flat % view.shape[d]) as isize * view.strides[d];
                    flat /= view.shape[d];
                }
                src[off as usize]
            })
            .collect()
    }

    #[test]
    fn transposes_slices_and_reversals_match_the_definition() {
        let src: Vec<i32> = (0..2 * 3 * 4 * 5).collect();
        let cases = [
            // [2,3,4,5] -> perm [0,2,3,1]
            View { shape: vec![2, 4, 5, 3], strides: vec![60, 5, 1, 20], offset: 0 },
            // contiguous, with size-1 dims
            View { shape: vec![1, 6, 1, 20], strides: vec![120, 20, 7, 1], offset: 0 },
            // slice [:, 1:3, ::2, 4:0:-1]
            View { shape: vec![2, 2, 2, 4], strides: vec![60, 20, 10, -1], offset: 20 + 4 },
            // scalar-like
            View { shape: vec![1, 1], strides: vec![0, 0], offset: 17 },
            // empty
            View { shape: vec![2, 0, 3], strides: vec![60, 20, 1], offset: 0 },
        ];
        for view in &cases {
            assert_eq!(gather(&src, view), reference(&src, view), "{view:?}");
        }
    }

    /// Source-contiguous dims below the next-outer one, as around a temporal conv: [B, F, C, HW]
    /// to [B, HW, C, F] and to [B, HW, F, C].
    #[test]
    fn grouped_transposes_match_the_definition() {
        let (b, f, c, hw) = (3, 5, 7, 32);
        let src: Vec<i32> = (0..(b * f * c * hw) as i32).collect();
        let st = [(f * c * hw) as isize, (c * hw) as isize, hw as isize, 1];
        let views = [
            View { shape: vec![b, hw, c, f], strides: vec![st[0], st[3], st[2], st[1]], offset: 0 },
            View { shape: vec![b, hw, f, c], strides: vec![st[0], st[3], st[1], st[2]], offset: 0 },
        ];
        for view in &views {
            assert_eq!(gather(&src, view), reference(&src, view), "{view:?}");
        }
    }

    #[test]
    fn large_views_split_across_threads_match_the_definition() {
        let (b, h, w, c) = (3, 37, 41, 19);
        let src: Vec<i32> = (0..(b * h * w * c) as i32).collect();
        // NHWC -> NCHW, odd sizes so chunks end mid-plane.
        let view = View {
            shape: vec![b, c, h, w],
            strides: vec![(h * w * c) as isize, 1, (w * c) as isize, c as isize],
            offset: 0,
        };
        assert_eq!(gather(&src, &view), reference(&src, &view));
    }
}
