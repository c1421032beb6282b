//! 3x3 stride-1 2-D convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016): a 2x2 output tile costs 16
//! multiplies per (input, output) channel pair instead of 36. The 16 products of a tile are 16
//! GEMMs over the channels, one per transformed position. The transforms only add, subtract
//! and halve, so the rounding stays at the direct convolution's level (see the tests).
//!
//! Panels of whole tile rows (any image's) keep the transformed input and the products in
//! cache. Both transforms run over a whole panel at once, each of a tile's 16 patch (or product)
//! elements a row of the panel's tiles, so that their loops are long, unit-stride and vectorise.

use super::gemm::{sgemm_serial, MatRef};
use super::panel_conv::{with_scratch, DisjointOutput};
use super::{parallel, simd};
use crate::ops::nn::window::Window;

/// Channels (input and output, per group) below which the GEMMs are too thin for the
/// transforms to pay: measured on the shipped UNet's convs (4 -> 48 channels, 48 -> 4).
const MIN_CHANNELS: usize = 16;
/// Tiles per panel at most (rounded to whole tile rows): 64-128 measured best with the `gemm`
/// crate.
const PANEL_TILES: usize = 96;
/// Tiles per panel at least, where that still leaves every thread a panel: thinner GEMMs fall
/// to the `gemm` crate's one-register kernels (AVX-512, 64 or 128 output channels, k = 128:
/// 51-66 GFLOP/s at 16 tiles, 88 at 32, 96 at 48).
const MIN_PANEL_TILES: usize = 32;

/// How a conv's tile rows are cut into panels: tiles per panel at least and at most, and the
/// threads that share them. A cut changes only the GEMMs' column count, which leaves the bits
/// alone (`gemm` sums the inner dimension in blocks that depend on its length alone; see
/// `the_panels_do_not_change_the_bits`), so it may follow the thread count.
#[derive(Clone, Copy, Debug)]
struct Cut {
    least_tiles: usize,
    most_tiles: usize,
    threads: usize,
}

impl Cut {
    /// Tile rows per panel: at most `most_tiles`, two panels per thread where the rows allow
    /// (one thread takes whole panels), then raised towards `least_tiles` while every thread
    /// still has a panel.
    fn rows_per_panel(&self, tile_rows: usize, tiles_w: usize) -> usize {
        let threads = self.threads.max(1);
        let wanted_panels = if threads == 1 { 1 } else { 2 * threads };
        let rows = (self.most_tiles / tiles_w).clamp(1, tile_rows.div_ceil(wanted_panels).max(1));
        let every_thread_busy = tile_rows.div_ceil(threads).max(1);
        rows.max(self.least_tiles.div_ceil(tiles_w).min(every_thread_busy)).min(tile_rows.max(1))
    }
}

/// Whether [`conv`] computes this convolution: 2-D, 3x3, unit strides and dilations, and
/// enough channels on both sides for it to be faster.
pub fn applies(w: &Window, cg: usize, mg: usize) -> bool {
    fits(w) && cg >= MIN_CHANNELS && mg >= MIN_CHANNELS
}

fn fits(w: &Window) -> bool {
    w.kernel == [3, 3] && w.strides == [1, 1] && w.dilations == [1, 1]
}

/// The filters transformed, `G g Gᵀ` per (output, input) channel pair, laid out
/// `[output channel][position (16)][cg]`: the GEMM operand of a group and position is the
/// `mg x cg` matrix with row stride `16 * cg`. Vectorised across the input channels and
/// parallel across the output channels: a small model's conv at batch 1 spends as long here
/// as in its GEMMs otherwise.
pub fn transform_filters(weights: &[f32], oc: usize, cg: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; oc * 16 * cg];
    let per_chunk = parallel::chunk_len(oc, 16 * 9 * cg);
    parallel::for_each_chunk_mut(&mut u, per_chunk * 16 * cg, |chunk, u| {
        // The 9 taps of one output channel's filters, tap-major, then G g (4 x 3 rows).
        let (mut taps, mut gg) = (vec![0.0f32; 9 * cg], vec![0.0f32; 12 * cg]);
        for (i, u) in u.chunks_exact_mut(16 * cg).enumerate() {
            let filters = &weights[(chunk * per_chunk + i) * cg * 9..][..cg * 9];
            for (c, g) in filters.chunks_exact(9).enumerate() {
                for (k, &v) in g.iter().enumerate() {
                    taps[k * cg + c] = v;
                }
            }
            simd::vectorised(
                #[inline(always)]
                || transform_filter(&taps, &mut gg, u, cg),
            );
        }
    });
    u
}

/// `G g Gᵀ` of one output channel's filters (`taps`: tap-major, `9 x cg`) into `u` (`16 x cg`).
#[inline(always)]
fn transform_filter(taps: &[f32], gg: &mut [f32], u: &mut [f32], cg: usize) {
    // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2 of each column.
    for j in 0..3 {
        let (a, b, e) = (&taps[j * cg..][..cg], &taps[(3 + j) * cg..][..cg], &taps[(6 + j) * cg..][..cg]);
        let (rows01, rows23) = gg.split_at_mut(6 * cg);
        rows01[j * cg..][..cg].copy_from_slice(a);
        half_sum(&mut rows01[(3 + j) * cg..][..cg], a, b, e, 1.0);
        half_sum(&mut rows23[j * cg..][..cg], a, b, e, -1.0);
        rows23[(3 + j) * cg..][..cg].copy_from_slice(e);
    }
    // (G g) Gᵀ: the same along each row.
    for i in 0..4 {
        let row = &gg[i * 3 * cg..][..3 * cg];
        let (a, b, e) = (&row[..cg], &row[cg..2 * cg], &row[2 * cg..]);
        let at = |j: usize| (i * 4 + j) * cg;
        u[at(0)..][..cg].copy_from_slice(a);
        half_sum(&mut u[at(1)..][..cg], a, b, e, 1.0);
        half_sum(&mut u[at(2)..][..cg], a, b, e, -1.0);
        u[at(3)..][..cg].copy_from_slice(e);
    }
}

/// `out[k] = (a[k] + sign * b[k] + e[k]) * 0.5`.
#[inline(always)]
fn half_sum(out: &mut [f32], a: &[f32], b: &[f32], e: &[f32], sign: f32) {
    for (((o, &a), &b), &e) in out.iter_mut().zip(a).zip(b).zip(e) {
        *o = (a + sign * b + e) * 0.5;
    }
}

/// The geometry of the tiles: `tiles_h x tiles_w` per image, tile rows numbered across images.
#[derive(Clone, Copy)]
struct Tiling {
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    pad_top: usize,
    pad_left: usize,
    tiles_h: usize,
    tiles_w: usize,
}

impl Tiling {
    fn new(w: &Window) -> Tiling {
        let (out_h, out_w) = (w.output[0], w.output[1]);
        Tiling {
            in_h: w.input[0],
            in_w: w.input[1],
            out_h,
            out_w,
            pad_top: w.pad_begin[0],
            pad_left: w.pad_begin[1],
            tiles_h: out_h.div_ceil(2),
            tiles_w: out_w.div_ceil(2),
        }
    }

    /// `cols[j][t]`: input column `2t + j - pad_left` of row `y` of `plane` (zero outside the
    /// image), the 4 tap columns `j` of a tile row's patches.
    #[inline(always)]
    fn tap_columns(&self, plane: &[f32], y: isize, cols: [&mut [f32]; 4]) {
        let tw = self.tiles_w;
        if y < 0 || y as usize >= self.in_h {
            cols.into_iter().for_each(|c| c[..tw].fill(0.0));
            return;
        }
        let row = &plane[y as usize * self.in_w..][..self.in_w];
        let (pl, w) = (self.pad_left, self.in_w);
        let at = |x: usize| if x >= pl && x - pl < w { row[x - pl] } else { 0.0 };
        // Tiles whose 4 columns all lie inside the row take the fast loop, the others `at`.
        let lo = pl.div_ceil(2).min(tw);
        let hi = ((w + pl).saturating_sub(2) / 2).clamp(lo, tw);
        let [c0, c1, c2, c3] = cols;
        for t in (0..lo).chain(hi..tw) {
            let x = 2 * t;
            (c0[t], c1[t], c2[t], c3[t]) = (at(x), at(x + 1), at(x + 2), at(x + 3));
        }
        if lo < hi {
            let src = &row[2 * lo - pl..][..2 * (hi - lo) + 2];
            let (c0, c1, c2, c3) = (&mut c0[lo..hi], &mut c1[lo..hi], &mut c2[lo..hi], &mut c3[lo..hi]);
            for t in 0..hi - lo {
                c0[t] = src[2 * t];
                c1[t] = src[2 * t + 1];
                c2[t] = src[2 * t + 2];
                c3[t] = src[2 * t + 3];
            }
        }
    }
}

/// `out[k] = f(a[k], b[k])`: the transforms' loops, over whole panels so that they vectorise.
#[inline(always)]
fn combine(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}

/// `y[n, grp*mg + m] = conv3x3(x[n, grp*cg..], w[grp*mg + m]) (+ bias)` for `x` `[batch,
/// groups * cg, h, w]`, weights `[groups * mg, cg, 3, 3]` given as their
/// [`transform_filters`]; requires [`applies`].
#[allow(clippy::too_many_arguments)]
pub fn conv(
    w: &Window,
    batch: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    x: &[f32],
    filters: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let cut = Cut { least_tiles: MIN_PANEL_TILES, most_tiles: PANEL_TILES, threads: parallel::num_threads() };
    conv_in_panels(w, batch, groups, cg, mg, x, filters, bias, out, cut)
}

#[allow(clippy::too_many_arguments)]
fn conv_in_panels(
    w: &Window,
    batch: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    cut: Cut,
) {
    assert!(fits(w), "Winograd F(2x2, 3x3) needs a 3x3 stride-1 2-D conv");
    let tiling = Tiling::new(w);
    let (in_len, out_len) = (w.input_len(), w.output_len());
    let oc = groups * mg;
    assert_eq!(out.len(), batch * oc * out_len, "conv output size");
    if out.is_empty() {
        return;
    }
    assert_eq!(u.len(), oc * 16 * cg, "transformed filters size");
    let tw = tiling.tiles_w;
    let tile_rows = batch * tiling.tiles_h;
    let rows_per_panel = cut.rows_per_panel(tile_rows, tw);
    let panels = tile_rows.div_ceil(rows_per_panel);
    let per_panel = rows_per_panel * tw;
    let per_task = parallel::chunk_len(panels, 16 * cg * mg * per_panel);
    let out = DisjointOutput(out.as_mut_ptr(), out.len());
    // Transformed input [16][cg][tiles], products [16][mg][tiles], and the transforms' rows.
    let (v_len, m_len) = (16 * cg * per_panel, 16 * mg * per_panel);
    parallel::for_each_index(panels.div_ceil(per_task), |task| {
        with_scratch(v_len + m_len + 32 * per_panel, |scratch| {
            let (v, rest) = scratch.split_at_mut(v_len);
            let (prod, tmp) = rest.split_at_mut(m_len);
            for panel in task * per_task..((task + 1) * per_task).min(panels) {
                let first_row = panel * rows_per_panel;
                let rows = rows_per_panel.min(tile_rows - first_row);
                let tiles = rows * tw;
                for grp in 0..groups {
                    simd::vectorised_256(
                        #[inline(always)]
                        || {
                            input_panel(
                                &tiling,
                                x,
                                (grp * cg, groups * cg, in_len),
                                cg,
                                first_row,
                                rows,
                                v,
                                tmp,
                            )
                        },
                    );
                    for p in 0..16 {
                        let filters = &u[(grp * mg * 16 + p) * cg..][..(mg - 1) * 16 * cg + cg];
                        let a =
                            MatRef { data: filters, rows: mg, cols: cg, row_stride: 16 * cg, col_stride: 1 };
                        let b = MatRef::row_major(&v[p * cg * tiles..][..cg * tiles], cg, tiles);
                        sgemm_serial(1.0, a, b, 0.0, &mut prod[p * mg * tiles..][..mg * tiles]);
                    }
                    let bias = bias.map(|b| &b[grp * mg..][..mg]);
                    simd::vectorised_256(
                        #[inline(always)]
                        || {
                            output_panel(
                                &tiling,
                                &prod[..16 * mg * tiles],
                                (grp * mg, oc),
                                mg,
                                first_row,
                                rows,
                                bias,
                                &out,
                                tmp,
                            )
                        },
                    );
                }
            }
        })
    });
}

/// Transforms the input of tile rows `first_row..first_row + rows` for channels
/// `channel0..channel0 + cg` (`planes`: first channel, channels per image, plane length) into
/// `v` `[16][cg][rows * tiles_w]`; `tmp` holds 32 * rows * tiles_w floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_panel(
    t: &Tiling,
    x: &[f32],
    (channel0, channels, plane_len): (usize, usize, usize),
    cg: usize,
    first_row: usize,
    rows: usize,
    v: &mut [f32],
    tmp: &mut [f32],
) {
    let tw = t.tiles_w;
    let tiles = rows * tw;
    // patches[(4i + j) * tiles + tile]: element (i, j) of every tile's 4x4 input patch;
    // combos: Bᵀ d, in the same layout.
    let (patches, combos) = tmp[..32 * tiles].split_at_mut(16 * tiles);
    for c in 0..cg {
        for row in 0..rows {
            let (n, ty) = ((first_row + row) / t.tiles_h, (first_row + row) % t.tiles_h);
            let plane = &x[((n * channels) + channel0 + c) * plane_len..][..plane_len];
            let y0 = (2 * ty) as isize - t.pad_top as isize;
            for i in 0..4 {
                let at = |j: usize| (4 * i + j) * tiles + row * tw;
                // Four disjoint tw-float runs of `patches`, one per tap column.
                let (a, rest) = patches[at(0)..].split_at_mut(tiles);
                let (b, rest) = rest.split_at_mut(tiles);
                let (c, d) = rest.split_at_mut(tiles);
                t.tap_columns(
                    plane,
                    y0 + i as isize,
                    [&mut a[..tw], &mut b[..tw], &mut c[..tw], &mut d[..tw]],
                );
            }
        }
        // Bᵀ d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3, column by column.
        for j in 0..4 {
            let d = |i: usize| &patches[(4 * i + j) * tiles..][..tiles];
            let mut out = |i: usize, a: &[f32], b: &[f32], f: fn(f32, f32) -> f32| {
                combine(&mut combos[(4 * i + j) * tiles..][..tiles], a, b, f)
            };
            out(0, d(0), d(2), |a, b| a - b);
            out(1, d(1), d(2), |a, b| a + b);
            out(2, d(2), d(1), |a, b| a - b);
            out(3, d(1), d(3), |a, b| a - b);
        }
        // (Bᵀ d) B: along each row, a - c, b + c, c - b, b - e.
        for i in 0..4 {
            let r = |j: usize| &combos[(4 * i + j) * tiles..][..tiles];
            let mut out = |j: usize, a: &[f32], b: &[f32], f: fn(f32, f32) -> f32| {
                combine(&mut v[((4 * i + j) * cg + c) * tiles..][..tiles], a, b, f)
            };
            out(0, r(0), r(2), |a, c| a - c);
            out(1, r(1), r(2), |b, c| b + c);
            out(2, r(2), r(1), |c, b| c - b);
            out(3, r(1), r(3), |b, e| b - e);
        }
    }
}

/// `Aᵀ m A` (+ bias) of the products `prod` `[16][mg][rows * tiles_w]` into the output
/// channels `channel0..channel0 + mg` of `oc` per image; `tmp` holds 12 * rows * tiles_w floats.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn output_panel(
    t: &Tiling,
    prod: &[f32],
    (channel0, oc): (usize, usize),
    mg: usize,
    first_row: usize,
    rows: usize,
    bias: Option<&[f32]>,
    out: &DisjointOutput,
    tmp: &mut [f32],
) {
    let tw = t.tiles_w;
    let tiles = rows * tw;
    let out_len = t.out_h * t.out_w;
    // s[(4k + j) * tiles + tile]: row k of Aᵀ m; y[(2k + l) * tiles + tile]: output (k, l).
    let (s, y) = tmp[..12 * tiles].split_at_mut(8 * tiles);
    for m in 0..mg {
        let b = bias.map_or(0.0, |b| b[m]);
        let p = |i: usize| &prod[(i * mg + m) * tiles..][..tiles];
        // Aᵀ m: rows m0 + m1 + m2 and m1 - m2 - m3, column by column.
        for j in 0..4 {
            let (top, bottom) = s.split_at_mut(4 * tiles);
            let (top, bottom) = (&mut top[j * tiles..][..tiles], &mut bottom[j * tiles..][..tiles]);
            let (m0, m1, m2, m3) = (p(j), p(4 + j), p(8 + j), p(12 + j));
            for k in 0..tiles {
                top[k] = m0[k] + m1[k] + m2[k];
                bottom[k] = m1[k] - m2[k] - m3[k];
            }
        }
        // (Aᵀ m) A: a + b + c and b - c - e along each row, plus the bias.
        for k in 0..2 {
            let r = |j: usize| &s[(4 * k + j) * tiles..][..tiles];
            let (left, right) = y[2 * k * tiles..][..2 * tiles].split_at_mut(tiles);
            let (a, b1, c, e) = (r(0), r(1), r(2), r(3));
            for q in 0..tiles {
                left[q] = a[q] + b1[q] + c[q] + b;
                right[q] = b1[q] - c[q] - e[q] + b;
            }
        }
        for row in 0..rows {
            let (n, ty) = ((first_row + row) / t.tiles_h, (first_row + row) % t.tiles_h);
            let second_row = 2 * ty + 1 < t.out_h;
            let at = (n * oc + channel0 + m) * out_len + 2 * ty * t.out_w;
            // SAFETY: tile rows belong to one panel and panels to one task, so no other task
            // writes these two output rows of this channel.
            let dst = unsafe { out.slice(at, if second_row { 2 * t.out_w } else { t.out_w }) };
            let (top, bottom) = dst.split_at_mut(t.out_w);
            let part = |i: usize| &y[i * tiles + row * tw..][..tw];
            interleave(top, part(0), part(1));
            if second_row {
                interleave(bottom, part(2), part(3));
            }
        }
    }
}

/// `row[2k] = even[k]`, `row[2k + 1] = odd[k]`, as far as the row goes.
#[inline(always)]
fn interleave(row: &mut [f32], even: &[f32], odd: &[f32]) {
    let half = row.len() / 2;
    let mut pairs = row.chunks_exact_mut(2);
    for ((pair, &a), &b) in (&mut pairs).zip(even).zip(odd) {
        pair[0] = a;
        pair[1] = b;
    }
    if let [last] = pairs.into_remainder() {
        *last = even[half];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::conv_reference::direct;
    use crate::cpu::panel_conv;

    fn window(input: [usize; 2], pad_begin: [usize; 2], pad_end: [usize; 2]) -> Window {
        Window {
            input: input.to_vec(),
            kernel: vec![3, 3],
            strides: vec![1, 1],
            dilations: vec![1, 1],
            pad_begin: pad_begin.to_vec(),
            pad_end: pad_end.to_vec(),
            output: (0..2).map(|d| (input[d] + pad_begin[d] + pad_end[d]).saturating_sub(2)).collect(),
        }
    }

    /// Deterministic data in [-1, 1) from an integer hash.
    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len as u64)
            .map(|i| ((i * 2654435761 + seed as u64 * 40503) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Largest error against the definition, relative to the output's largest magnitude.
    fn relative_error(got: &[f32], want: &[f64]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        got.iter().zip(want).map(|(&g, &w)| (g as f64 - w).abs()).fold(0.0, f64::max) / scale
    }

    #[test]
    fn tiles_match_the_definition() {
        // (input, pad_begin, pad_end, batch, groups, cg, mg): odd and even sizes (a last tile
        // half outside the output), images smaller than a tile, asymmetric and wide padding,
        // padding wider than the kernel (outputs that see only padding), groups.
        type Case = ([usize; 2], [usize; 2], [usize; 2], usize, usize, usize, usize);
        let cases: &[Case] = &[
            ([8, 8], [1, 1], [1, 1], 2, 1, 3, 4),
            ([7, 9], [1, 1], [1, 1], 3, 1, 4, 5),
            ([5, 6], [0, 0], [0, 0], 1, 1, 2, 3),
            ([3, 3], [0, 0], [0, 0], 2, 1, 3, 2),
            ([1, 1], [1, 1], [1, 1], 2, 1, 2, 2),
            ([1, 7], [1, 2], [1, 0], 1, 1, 3, 2),
            ([6, 5], [2, 0], [1, 2], 2, 2, 3, 2),
            ([4, 4], [3, 3], [3, 3], 1, 1, 2, 2),
            ([2, 9], [0, 1], [2, 1], 2, 1, 5, 3),
            ([10, 3], [1, 1], [1, 1], 1, 3, 2, 3),
        ];
        for &(input, pb, pe, batch, groups, cg, mg) in cases {
            let w = window(input, pb, pe);
            let x = data(batch * groups * cg * w.input_len(), 1);
            let k = data(groups * mg * cg * 9, 2);
            let b = data(groups * mg, 3);
            let want = direct(&w, batch, groups, cg, mg, &x, &k, &b);
            let u = transform_filters(&k, groups * mg, cg);
            // One tile row per panel, a few, everything in one panel, and the default bounds.
            for (least_tiles, most_tiles) in [(1, 1), (1, 5), (1, 1 << 20), (MIN_PANEL_TILES, PANEL_TILES)] {
                let panel_tiles = Cut { least_tiles, most_tiles, threads: 2 };
                let mut got = vec![f32::NAN; want.len()];
                conv_in_panels(&w, batch, groups, cg, mg, &x, &u, Some(&b), &mut got, panel_tiles);
                let err = relative_error(&got, &want);
                assert!(
                    err < 1e-6,
                    "{input:?} pads {pb:?}/{pe:?} panel {panel_tiles:?}: relative error {err:e}"
                );
            }
            let mut no_bias = vec![f32::NAN; want.len()];
            let cut = Cut { least_tiles: 1, most_tiles: 7, threads: 1 };
            conv_in_panels(&w, batch, groups, cg, mg, &x, &u, None, &mut no_bias, cut);
            let want: Vec<f64> = want
                .iter()
                .enumerate()
                .map(|(i, v)| v - b[i / w.output_len() % (groups * mg)] as f64)
                .collect();
            assert!(relative_error(&no_bias, &want) < 1e-6, "{input:?} without bias");
        }
    }

    /// The transforms add and halve only: over many channels the error stays at the direct
    /// convolution's level (f64 definition as the reference for both).
    #[test]
    fn as_accurate_as_the_direct_convolution() {
        let (w, batch, cg, mg) = (window([12, 10], [1, 1], [1, 1]), 2, 64, 16);
        let x = data(batch * cg * w.input_len(), 4);
        let k = data(mg * cg * 9, 5);
        let b = data(mg, 6);
        let want = direct(&w, batch, 1, cg, mg, &x, &k, &b);
        let (mut winograd, mut im2col) = (vec![0.0; want.len()], vec![0.0; want.len()]);
        assert!(applies(&w, cg, mg));
        conv(&w, batch, 1, cg, mg, &x, &transform_filters(&k, mg, cg), Some(&b), &mut winograd);
        panel_conv::conv(&w, batch, 1, cg, mg, &x, &k, Some(&b), &mut im2col);
        let (ours, theirs) = (relative_error(&winograd, &want), relative_error(&im2col, &want));
        assert!(ours < 1e-6 && ours < 4.0 * theirs.max(1e-8), "Winograd {ours:e}, im2col {theirs:e}");
    }

    /// Panels of any size, for any thread count, give the same bits, so the cut may follow the
    /// threads. Enough input channels that the GEMMs sum their inner dimension in blocks.
    /// Natively (see `gemm::tests::splits_keep_the_bits`).
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_panels_do_not_change_the_bits() {
        let (w, batch, cg, mg) = (window([14, 18], [1, 1], [1, 1]), 3, 600, 20);
        let x = data(batch * cg * w.input_len(), 7);
        let u = transform_filters(&data(mg * cg * 9, 8), mg, cg);
        let run = |cut: Cut| {
            let mut out = vec![f32::NAN; batch * mg * w.output_len()];
            conv_in_panels(&w, batch, 1, cg, mg, &x, &u, None, &mut out, cut);
            out
        };
        let first = run(Cut { least_tiles: MIN_PANEL_TILES, most_tiles: PANEL_TILES, threads: 1 });
        for (least_tiles, most_tiles, threads) in
            [(1, 1, 1), (1, 9, 2), (MIN_PANEL_TILES, PANEL_TILES, 16), (1, 1 << 20, 3)]
        {
            let cut = Cut { least_tiles, most_tiles, threads };
            assert!(run(cut) == first, "{cut:?}: other bits");
        }
    }

    #[test]
    fn panels_follow_the_threads() {
        let cut = |threads| Cut { least_tiles: MIN_PANEL_TILES, most_tiles: PANEL_TILES, threads };
        // A 32x32 output (16 rows of 16 tiles) and a 16x16 one (8 rows of 8).
        assert_eq!(cut(1).rows_per_panel(16, 16), 6, "one thread: the most tiles");
        assert_eq!(cut(1).rows_per_panel(8, 8), 8, "one thread: the whole image in one panel");
        assert_eq!(cut(2).rows_per_panel(16, 16), 4, "two panels per thread");
        assert_eq!(cut(2).rows_per_panel(8, 8), 4, "the least tiles while each thread has a panel");
        assert_eq!(cut(16).rows_per_panel(16, 16), 1, "a panel for every thread");
        assert_eq!(cut(16).rows_per_panel(8, 8), 1);
        assert_eq!(cut(4).rows_per_panel(0, 8), 1, "no rows");
    }

    #[test]
    fn only_3x3_unit_stride_2d_convs_with_enough_channels() {
        let base = window([8, 8], [1, 1], [1, 1]);
        assert!(applies(&base, 16, 16));
        assert!(!applies(&base, 15, 16) && !applies(&base, 16, 8));
        let strided = Window { strides: vec![2, 1], ..base.clone() };
        let dilated = Window { dilations: vec![1, 2], ..base.clone() };
        let wide = Window { kernel: vec![3, 5], ..base.clone() };
        let one_d =
            Window { input: vec![8], kernel: vec![3], strides: vec![1], dilations: vec![1], ..base.clone() };
        for w in [strided, dilated, wide, one_d] {
            assert!(!applies(&w, 32, 32), "{w:?}");
        }
    }
}
