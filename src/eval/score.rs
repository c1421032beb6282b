//! Scores of a video from its per-frame detections and per-frame prompts: adherence (colour,
//! shape, background, direction), temporal consistency (persistence, identity switches, speed
//! mean and coefficient of variation on the torus, background flicker) and stationarity.

use super::detect::Detection;
use super::prompt::{FramePrompts, Prompt};
use super::world::{wrap, World};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ops::Range;

/// A displacement shorter than this (pixels per frame) is no motion in any direction.
pub const MIN_MOTION: f32 = 0.5;
/// Stationarity compares these windows (frames), FIFO-Diffusion's "does frame 1000 look like
/// frame 10" question; a shorter video (200+ frames) compares its first and last 100 frames.
pub const EARLY: Range<usize> = 0..100;
pub const LATE: Range<usize> = 900..1000;

/// Scores over a range of frames. Fractions are in [0, 1]; `None` where nothing could be
/// measured (no scored frame, no pair of consecutive frames with an object).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scores {
    pub frames: usize,
    /// Frames with a prompt (frames inside a blend between prompts are not scored).
    pub scored_frames: usize,
    /// Fraction of frames with an object.
    pub present: f64,
    /// Fraction of scored frames whose object has the prompt's colour / shape (no object = miss),
    /// and whose background is the prompt's.
    pub colour: Option<f64>,
    pub shape: Option<f64>,
    pub background: Option<f64>,
    /// Fraction of consecutive scored pairs (same prompt, object in both) whose displacement
    /// points in the prompt's direction and is at least [`MIN_MOTION`] long.
    pub direction: Option<f64>,
    /// Fraction of consecutive pairs with an object in both whose detected colour or shape changes.
    pub identity_switches: Option<f64>,
    /// Mean displacement per frame on the torus (pixels) and its coefficient of variation.
    pub speed_mean: Option<f64>,
    pub speed_cv: Option<f64>,
    /// Mean RGB distance (in [0, 1] units) between consecutive frames' background colours.
    pub background_flicker: Option<f64>,
    /// Longest run of frames without an object.
    pub longest_gap: usize,
}

/// The detected colour, shape (majority over frames with an object) and direction (of the mean
/// displacement) of a clip, like tools/model/detect.py's per-clip outputs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub colour: Option<usize>,
    pub shape: Option<usize>,
    pub direction: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Window {
    pub start: usize,
    pub end: usize,
    pub scores: Scores,
}

/// The same scores early and late in the video, and `late - early` per metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stationarity {
    pub early: Window,
    pub late: Window,
    pub delta: BTreeMap<String, Option<f64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub prompt: String,
    pub start: usize,
    pub end: usize,
    pub scores: Scores,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub frames: usize,
    pub overall: Scores,
    /// One per run of frames with the same prompt.
    pub segments: Vec<Segment>,
    pub stationarity: Option<Stationarity>,
}

fn fraction(hits: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| hits as f64 / total as f64)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The displacement from `a` to `b` on the torus.
fn step(world: &World, a: &Detection, b: &Detection) -> (f32, f32) {
    let size = world.size as f32;
    (wrap(b.x - a.x, size), wrap(b.y - a.y, size))
}

/// The direction whose unit vector best matches `(dx, dy)`, if it is long enough to be motion.
pub fn direction_of(world: &World, dx: f32, dy: f32) -> Option<usize> {
    if dx.hypot(dy) < MIN_MOTION {
        return None;
    }
    let dot = |i: usize| world.directions[i].value[0] * dx + world.directions[i].value[1] * dy;
    (0..world.directions.len()).max_by(|&a, &b| dot(a).total_cmp(&dot(b)))
}

impl Scores {
    pub fn measure(
        world: &World,
        det: &[Detection],
        prompts: &[Option<Prompt>],
        range: Range<usize>,
    ) -> Scores {
        // Frames beyond either list are not scored (never an out-of-range panic).
        let len = det.len().min(prompts.len());
        let range = range.start.min(len)..range.end.min(len);
        let (d, p) = (&det[range.clone()], &prompts[range]);
        let scored: Vec<(&Detection, &Prompt)> =
            d.iter().zip(p).filter_map(|(d, p)| Some((d, p.as_ref()?))).collect();
        let hits = |f: &dyn Fn(&Detection, &Prompt) -> bool| {
            scored.iter().filter(|(d, p)| d.present && f(d, p)).count()
        };
        let colour = fraction(hits(&|d, p| d.colour == p.colour), scored.len());
        let shape = fraction(hits(&|d, p| d.shape == p.shape), scored.len());
        // The background is judged with or without an object.
        let background =
            fraction(scored.iter().filter(|(d, p)| d.background == p.background).count(), scored.len());
        let (mut dir_hits, mut dir_pairs, mut switches, mut both) = (0, 0, 0, 0);
        let mut speeds = Vec::new();
        for i in 1..d.len() {
            let (a, b) = (&d[i - 1], &d[i]);
            if !(a.present && b.present) {
                continue;
            }
            both += 1;
            switches += usize::from(a.colour != b.colour || a.shape != b.shape);
            let (dx, dy) = step(world, a, b);
            speeds.push(dx.hypot(dy) as f64);
            if let (Some(pa), Some(pb)) = (p[i - 1], p[i]) {
                if pa == pb {
                    dir_pairs += 1;
                    dir_hits += usize::from(direction_of(world, dx, dy) == Some(pb.direction));
                }
            }
        }
        let speed_mean = mean(&speeds);
        let speed_cv = speed_mean.filter(|&m| speeds.len() >= 2 && m > 1e-6).map(|m| {
            let var = speeds.iter().map(|s| (s - m).powi(2)).sum::<f64>() / speeds.len() as f64;
            var.sqrt() / m
        });
        let flicker: Vec<f64> = d
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0].background_rgb, w[1].background_rgb);
                ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt() as f64
            })
            .collect();
        let (mut gap, mut longest_gap) = (0, 0);
        for x in d {
            gap = if x.present { 0 } else { gap + 1 };
            longest_gap = longest_gap.max(gap);
        }
        Scores {
            frames: d.len(),
            scored_frames: scored.len(),
            present: fraction(d.iter().filter(|x| x.present).count(), d.len()).unwrap_or(0.0),
            colour,
            shape,
            background,
            direction: fraction(dir_hits, dir_pairs),
            identity_switches: fraction(switches, both),
            speed_mean,
            speed_cv,
            background_flicker: mean(&flicker),
            longest_gap,
        }
    }

    /// Every metric by name (`longest_gap` and `present` included), for differences.
    pub fn metrics(&self) -> Vec<(&'static str, Option<f64>)> {
        vec![
            ("present", Some(self.present)),
            ("colour", self.colour),
            ("shape", self.shape),
            ("background", self.background),
            ("direction", self.direction),
            ("identity_switches", self.identity_switches),
            ("speed_mean", self.speed_mean),
            ("speed_cv", self.speed_cv),
            ("background_flicker", self.background_flicker),
            ("longest_gap", Some(self.longest_gap as f64)),
        ]
    }
}

impl Verdict {
    pub fn of(world: &World, det: &[Detection]) -> Verdict {
        let vote = |k: usize, pick: &dyn Fn(&Detection) -> usize| {
            let mut counts = vec![0usize; k];
            det.iter().filter(|d| d.present).for_each(|d| counts[pick(d)] += 1);
            // The first of equal counts, as torch's argmax.
            let best = counts.iter().enumerate().fold((0, 0), |b, (i, &c)| if c > b.1 { (i, c) } else { b });
            (best.1 > 0).then_some(best.0)
        };
        let (mut sx, mut sy, mut pairs) = (0.0f32, 0.0f32, 0usize);
        for w in det.windows(2) {
            if w[0].present && w[1].present {
                let (dx, dy) = step(world, &w[0], &w[1]);
                (sx, sy, pairs) = (sx + dx, sy + dy, pairs + 1);
            }
        }
        let direction =
            if pairs == 0 { None } else { direction_of(world, sx / pairs as f32, sy / pairs as f32) };
        Verdict {
            colour: vote(world.colours.len(), &|d| d.colour),
            shape: vote(world.shapes.len(), &|d| d.shape),
            direction,
        }
    }
}

fn window(world: &World, det: &[Detection], prompts: &[Option<Prompt>], r: Range<usize>) -> Window {
    Window { start: r.start, end: r.end, scores: Scores::measure(world, det, prompts, r) }
}

/// Scores a video from its detections and the prompt of each frame.
pub fn report(world: &World, det: &[Detection], prompts: &FramePrompts) -> Report {
    let per_frame: Vec<Option<Prompt>> =
        prompts.per_frame.iter().map(|p| p.map(|i| prompts.parsed[i])).collect();
    let n = det.len();
    let segments = prompts
        .segments()
        .into_iter()
        .map(|(p, start, end)| Segment {
            prompt: prompts.texts[p].clone(),
            start,
            end,
            scores: Scores::measure(world, det, &per_frame, start..end),
        })
        .collect();
    let windows = if n >= LATE.end {
        Some((EARLY, LATE))
    } else if n >= 2 * EARLY.len() {
        Some((EARLY, n - EARLY.len()..n))
    } else {
        None
    };
    let stationarity = windows.map(|(e, l)| {
        let (early, late) = (window(world, det, &per_frame, e), window(world, det, &per_frame, l));
        let delta = early
            .scores
            .metrics()
            .into_iter()
            .zip(late.scores.metrics())
            .map(|((name, a), (_, b))| (name.to_string(), a.zip(b).map(|(a, b)| b - a)))
            .collect();
        Stationarity { early, late, delta }
    });
    Report { frames: n, overall: Scores::measure(world, det, &per_frame, 0..n), segments, stationarity }
}
