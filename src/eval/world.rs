//! The shapes world's constants (written by `tools/eval_fixtures/make_fixtures.py` from
//! `tools/model/world.py` into `world.json`) and its renderer, transcribed from world.py's signed
//! distance functions: the detector's shape templates are rendered with it.

use super::EvalError;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct Named<T> {
    pub name: String,
    #[serde(alias = "rgb", alias = "vector")]
    pub value: T,
}

/// Palette, backgrounds, shapes and directions of the world, in world.py's order.
#[derive(Clone, Debug, Deserialize)]
pub struct World {
    /// Frames are `size x size` pixels.
    pub size: usize,
    /// Object colours, RGB in [0, 1].
    pub colours: Vec<Named<[f32; 3]>>,
    /// Background colours, RGB in [0, 1].
    pub backgrounds: Vec<Named<[f32; 3]>>,
    pub shapes: Vec<String>,
    /// Unit motion per direction, (x, y) with y pointing down.
    pub directions: Vec<Named<[f32; 2]>>,
    /// Object radius range in pixels.
    pub radius: [f32; 2],
    /// Speed range in pixels per frame.
    pub speed: [f32; 2],
}

/// The shapes world.py renders (its `_SDF` list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
    Ring,
    Cross,
}

impl Shape {
    fn from_name(name: &str) -> Option<Shape> {
        Some(match name {
            "circle" => Shape::Circle,
            "square" => Shape::Square,
            "triangle" => Shape::Triangle,
            "star" => Shape::Star,
            "ring" => Shape::Ring,
            "cross" => Shape::Cross,
            _ => return None,
        })
    }

    /// Signed distance (negative inside) at offset `(px, py)` from the centre, y down.
    pub fn sdf(self, px: f32, py: f32, r: f32) -> f32 {
        match self {
            Shape::Circle => px.hypot(py) - r,
            Shape::Square => sd_box(px, py, 0.85 * r, 0.85 * r),
            Shape::Triangle => sd_triangle(px, py, r),
            Shape::Star => sd_star(px, py, r),
            Shape::Ring => (px.hypot(py) - 0.72 * r).abs() - 0.28 * r,
            Shape::Cross => sd_box(px, py, r, 0.36 * r).min(sd_box(px, py, 0.36 * r, r)),
        }
    }
}

fn sd_box(px: f32, py: f32, hx: f32, hy: f32) -> f32 {
    let (qx, qy) = (px.abs() - hx, py.abs() - hy);
    qx.max(0.0).hypot(qy.max(0.0)) + qx.max(qy).min(0.0)
}

fn sd_triangle(px: f32, py: f32, r: f32) -> f32 {
    let k = 3f32.sqrt();
    let s = 1.3 * r * k / 2.0;
    let (mut x, mut y) = (px.abs() - s, -py + s / k);
    if x + k * y > 0.0 {
        (x, y) = ((x - k * y) / 2.0, (-k * x - y) / 2.0);
    }
    x -= x.max(-2.0 * s).min(0.0);
    let sign = if y > 0.0 {
        1.0
    } else if y < 0.0 {
        -1.0
    } else {
        0.0
    };
    -x.hypot(y) * sign
}

const STAR_M: f32 = 2.0 * core::f32::consts::PI / 5.0;

fn sd_star(px: f32, py: f32, r: f32) -> f32 {
    // The edge from a point (angle 0, radius 1.25) to a notch (angle m/2, radius 0.55).
    let (p, q) = ((1.25f32, 0.0f32), (0.55 * (STAR_M / 2.0).cos(), 0.55 * (STAR_M / 2.0).sin()));
    let (dx, dy) = (q.0 - p.0, q.1 - p.1);
    let length = dx.hypot(dy);
    let (nx, ny) = (dy / length, -dx / length);
    let c = nx * p.0 + ny * p.1;
    let a = px.atan2(-py);
    let a = ((a + STAR_M / 2.0).rem_euclid(STAR_M) - STAR_M / 2.0).abs();
    let rho_edge = r * c / (nx * a.cos() + ny * a.sin());
    (px.hypot(py) - rho_edge) * 0.6
}

/// Shortest signed offset on a circle of length `size`.
pub fn wrap(d: f32, size: f32) -> f32 {
    (d + size / 2.0).rem_euclid(size) - size / 2.0
}

impl World {
    /// The world the project's default model was trained on (the committed `world.json`).
    pub fn shapes_world() -> World {
        // The committed file is checked by the tests; a damaged one fails them, not users.
        Self::from_json(include_str!("world.json")).unwrap_or_else(|e| panic!("src/eval/world.json: {e}"))
    }

    pub fn from_json(text: &str) -> Result<World, EvalError> {
        let world: World = serde_json::from_str(text)
            .map_err(|e| EvalError::World(format!("not a world description: {e}")))?;
        if let Some(bad) = world.shapes.iter().find(|s| Shape::from_name(s).is_none()) {
            return Err(EvalError::World(format!(
                "shape '{bad}' has no renderer; known: circle, square, triangle, star, ring, cross"
            )));
        }
        if world.size < 8 || world.colours.is_empty() || world.backgrounds.is_empty() {
            return Err(EvalError::World("needs a size of 8+ pixels, colours and backgrounds".into()));
        }
        if world.directions.is_empty() || world.shapes.is_empty() {
            return Err(EvalError::World("needs shapes and directions".into()));
        }
        Ok(world)
    }

    pub fn shape(&self, index: usize) -> Shape {
        Shape::from_name(&self.shapes[index]).unwrap_or(Shape::Circle)
    }

    /// Renders one object like world.py's `render`: RGB in [0, 1], row-major `[y][x][c]`.
    pub fn render(
        &self,
        shape: usize,
        colour: [f32; 3],
        background: [f32; 3],
        radius: f32,
        cx: f32,
        cy: f32,
    ) -> Vec<f32> {
        let n = self.size;
        let size = n as f32;
        let sdf = self.shape(shape);
        let mut out = Vec::with_capacity(n * n * 3);
        for y in 0..n {
            let py = wrap(y as f32 + 0.5 - cy, size);
            for x in 0..n {
                let px = wrap(x as f32 + 0.5 - cx, size);
                let alpha = (0.5 - sdf.sdf(px, py, radius)).clamp(0.0, 1.0);
                out.extend((0..3).map(|c| background[c] + alpha * (colour[c] - background[c])));
            }
        }
        out
    }
}
