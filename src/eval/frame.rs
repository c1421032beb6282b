//! A decoded RGB frame, in [0, 1], from u8 pixels or from a model's f32 output.

use super::EvalError;

#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    width: usize,
    height: usize,
    /// Row-major `[y][x][c]`, RGB in [0, 1].
    rgb: Vec<f32>,
}

fn check(width: usize, height: usize, len: usize, what: &str) -> Result<(), EvalError> {
    let want = width.checked_mul(height).and_then(|p| p.checked_mul(3));
    if width == 0 || height == 0 || want != Some(len) {
        return Err(EvalError::Frame(format!(
            "{what}: {len} values do not make a {width}x{height} RGB frame"
        )));
    }
    Ok(())
}

impl Frame {
    /// Interleaved RGB bytes, row-major.
    pub fn from_rgb8(width: usize, height: usize, rgb: &[u8]) -> Result<Frame, EvalError> {
        check(width, height, rgb.len(), "rgb8")?;
        Ok(Frame { width, height, rgb: rgb.iter().map(|&v| v as f32 / 255.0).collect() })
    }

    /// Interleaved RGB floats in [0, 1], row-major; values outside are clamped, NaN is an error.
    pub fn from_rgb_f32(width: usize, height: usize, rgb: &[f32]) -> Result<Frame, EvalError> {
        check(width, height, rgb.len(), "rgb f32")?;
        if rgb.iter().any(|v| v.is_nan()) {
            return Err(EvalError::Frame("rgb f32: the frame holds NaN".into()));
        }
        Ok(Frame { width, height, rgb: rgb.iter().map(|v| v.clamp(0.0, 1.0)).collect() })
    }

    /// A decoder's output `[3, H, W]` (planar) in [-1, 1], as the models produce it.
    pub fn from_planar_signed(width: usize, height: usize, chw: &[f32]) -> Result<Frame, EvalError> {
        check(width, height, chw.len(), "planar f32")?;
        let plane = width * height;
        let rgb: Vec<f32> =
            (0..plane).flat_map(|p| (0..3).map(move |c| (chw[c * plane + p] + 1.0) / 2.0)).collect();
        Self::from_rgb_f32(width, height, &rgb)
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Row-major `[y][x][c]`, RGB in [0, 1].
    pub fn rgb(&self) -> &[f32] {
        &self.rgb
    }

    pub fn pixel(&self, x: usize, y: usize) -> [f32; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}
