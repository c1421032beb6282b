//! The per-frame detector: background, object colour, a soft object mask, its wrap-aware centroid
//! and area, and its shape by template matching. It knows the world's palette, backgrounds and
//! shapes, never the prompt. Follows tools/model/detect.py, with a refined centroid.

use super::frame::Frame;
use super::world::{wrap, World};
use super::EvalError;
use serde::Serialize;

/// Foreground area (pixels of the soft mask) below which a frame has no object (detect.py's).
pub const MIN_AREA: f32 = 20.0;
/// Colour distance (RGB in [0, 1]) from the background beyond which a pixel may be object.
const MASK_THRESHOLD: f32 = 0.15;
/// Core pixels: beyond this distance and beyond `CORE_OF_PEAK` of the farthest pixel's.
const CORE_THRESHOLD: f32 = 0.2;
const CORE_OF_PEAK: f32 = 0.6;
/// Pixels at least this fraction of the way from the background to the object colour are solid.
const SOLID_OF_SPAN: f32 = 0.5;

/// What the detector sees in one frame. Indices refer to the [`World`]'s lists.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    /// An object covers at least [`MIN_AREA`] pixels.
    pub present: bool,
    /// Nearest palette colour to the object's core pixels, and the RGB distance to it.
    pub colour: usize,
    pub colour_distance: f32,
    /// Best-matching shape template and its soft IoU.
    pub shape: usize,
    pub shape_iou: f32,
    /// Centre in pixels, in `[0, size)`, measured on the torus.
    pub x: f32,
    pub y: f32,
    /// Soft mask area in pixels.
    pub area: f32,
    /// Nearest world background to the frame's median colour, and that median.
    pub background: usize,
    pub background_rgb: [f32; 3],
    pub object_rgb: [f32; 3],
}

/// Shape templates rendered once per world.
pub struct Detector {
    world: World,
    /// `[template][y][x]` soft masks centred at `(size / 2, size / 2)`.
    templates: Vec<Vec<f32>>,
    template_shape: Vec<usize>,
}

fn dist3(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn nearest(colour: [f32; 3], table: &[super::world::Named<[f32; 3]>]) -> (usize, f32) {
    table.iter().enumerate().map(|(i, c)| (i, dist3(colour, c.value))).fold((0, f32::INFINITY), |best, c| {
        if c.1 < best.1 {
            c
        } else {
            best
        }
    })
}

/// The weighted mean position on a circle of `w.len()` pixels: circular mean first (robust to
/// the wrap), then the linear mean of offsets from it (exact for any shape that does not cover
/// half the circle).
fn torus_mean(w: &[f32]) -> f32 {
    let n = w.len() as f32;
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for (i, &v) in w.iter().enumerate() {
        let a = (i as f64 + 0.5) * core::f64::consts::TAU / n as f64;
        s += v as f64 * a.sin();
        c += v as f64 * a.cos();
    }
    let first = ((s.atan2(c) / core::f64::consts::TAU) as f32 * n).rem_euclid(n);
    let (mut sum, mut total) = (0.0f64, 0.0f64);
    for (i, &v) in w.iter().enumerate() {
        sum += v as f64 * wrap(i as f32 + 0.5 - first, n) as f64;
        total += v as f64;
    }
    if total <= 0.0 {
        return first;
    }
    (first + (sum / total) as f32).rem_euclid(n)
}

fn median(mut v: Vec<f32>) -> f32 {
    let mid = (v.len() - 1) / 2; // the lower median, as torch's
    *v.select_nth_unstable_by(mid, f32::total_cmp).1
}

impl Detector {
    pub fn new(world: World) -> Detector {
        let size = world.size as f32;
        let (lo, hi) = (world.radius[0] - 1.0, world.radius[1] + 1.0);
        let mut templates = Vec::new();
        let mut template_shape = Vec::new();
        for shape in 0..world.shapes.len() {
            let mut r = lo;
            while r <= hi + 1e-3 {
                let img = world.render(shape, [1.0; 3], [0.0; 3], r, size / 2.0, size / 2.0);
                templates.push(img.chunks_exact(3).map(|p| p[0]).collect());
                template_shape.push(shape);
                r += 1.0;
            }
        }
        Detector { world, templates, template_shape }
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    pub fn detect(&self, frame: &Frame) -> Result<Detection, EvalError> {
        let n = self.world.size;
        if frame.width() != n || frame.height() != n {
            return Err(EvalError::Frame(format!(
                "the evaluator knows the {n}x{n} shapes world; got a {}x{} frame",
                frame.width(),
                frame.height()
            )));
        }
        let rgb = frame.rgb();
        let bg: [f32; 3] =
            core::array::from_fn(|c| median(rgb.chunks_exact(3).map(|p| p[c]).collect::<Vec<f32>>()));
        let dist: Vec<f32> = rgb.chunks_exact(3).map(|p| dist3([p[0], p[1], p[2]], bg)).collect();
        let peak = dist.iter().copied().fold(0.0f32, f32::max).max(1e-3);
        let (mut col, mut count) = ([0.0f32; 3], 0usize);
        for (p, &d) in rgb.chunks_exact(3).zip(&dist) {
            if d > CORE_OF_PEAK * peak && d > CORE_THRESHOLD {
                (0..3).for_each(|c| col[c] += p[c]);
                count += 1;
            }
        }
        let col = col.map(|v| v / count.max(1) as f32);
        let span = dist3(col, bg).max(1e-3);
        // Pixels beyond the threshold, and the anti-aliased edge pixels next to solid ones (so
        // that a faint edge pixel counts on every side of the object alike).
        let solid: Vec<bool> = dist.iter().map(|&d| d > SOLID_OF_SPAN * span).collect();
        let near_solid = |i: usize| {
            let (x, y) = ((i % n) as isize, (i / n) as isize);
            let at = |dx: isize, dy: isize| {
                let (x, y) = ((x + dx).rem_euclid(n as isize), (y + dy).rem_euclid(n as isize));
                solid[y as usize * n + x as usize]
            };
            (-1..=1).any(|dy| (-1..=1).any(|dx| at(dx, dy)))
        };
        let mask: Vec<f32> = dist
            .iter()
            .enumerate()
            .map(|(i, &d)| if d > MASK_THRESHOLD || near_solid(i) { (d / span).clamp(0.0, 1.0) } else { 0.0 })
            .collect();
        let area: f32 = mask.iter().sum();
        let rows: Vec<f32> = mask.chunks_exact(n).map(|r| r.iter().sum()).collect();
        let cols: Vec<f32> = (0..n).map(|x| (0..n).map(|y| mask[y * n + x]).sum()).collect();
        let (x, y) = (torus_mean(&cols), torus_mean(&rows));
        let (shape, shape_iou) = self.match_shape(&mask, x, y);
        let (colour, colour_distance) = nearest(col, &self.world.colours);
        let (background, _) = nearest(bg, &self.world.backgrounds);
        Ok(Detection {
            present: area > MIN_AREA,
            colour,
            colour_distance,
            shape,
            shape_iou,
            x,
            y,
            area,
            background,
            background_rgb: bg,
            object_rgb: col,
        })
    }

    /// Soft IoU of the mask, centred by its centroid, with every template.
    fn match_shape(&self, mask: &[f32], x: f32, y: f32) -> (usize, f32) {
        let n = self.world.size;
        let shift =
            |c: f32| (c.round_ties_even() as isize - (n / 2) as isize).rem_euclid(n as isize) as usize;
        let (sx, sy) = (shift(x), shift(y));
        let centred: Vec<f32> = (0..n * n).map(|i| mask[((i / n + sy) % n) * n + (i % n + sx) % n]).collect();
        let mut best = (0, -1.0f32);
        for (t, template) in self.templates.iter().enumerate() {
            let (mut inter, mut union) = (0.0f32, 0.0f32);
            for (&a, &b) in centred.iter().zip(template) {
                inter += a.min(b);
                union += a.max(b);
            }
            let iou = inter / union.max(1e-3);
            if iou > best.1 {
                best = (self.template_shape[t], iou);
            }
        }
        best
    }
}
