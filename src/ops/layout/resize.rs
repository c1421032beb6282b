//! Resize (opset 11+): nearest (every nearest_mode) and N-linear, with every coordinate
//! transformation mode except tf_crop_and_resize; output from `scales` or `sizes`.

use super::{offsets_from_tables, take_or_fill};
use crate::ops::registry::{NodeContext, OpDef};
use crate::ops::{const_i64s, expect_dtype, required, Attrs, Op, OpError, OpSpec, TensorType, ValueInfo};
use crate::tensor::shape::{normalize_axes, strides};
use crate::tensor::{DType, Tensor, TensorData};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinateMode {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest(NearestMode),
    Linear,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coordinates: CoordinateMode,
    pub axes: Option<Vec<i64>>,
}

/// Output shape and per-dim scale factors.
pub(crate) struct Plan {
    pub(crate) shape: Vec<usize>,
    pub(crate) scales: Vec<f32>,
}

impl Resize {
    pub(crate) fn plan(
        &self,
        input: &[usize],
        scales: Option<Vec<f32>>,
        sizes: Option<Vec<i64>>,
    ) -> Result<Plan, OpError> {
        let rank = input.len();
        if input.contains(&0) {
            return Err(OpError::invalid(format!("Resize of an empty tensor {input:?}")));
        }
        let axes = match &self.axes {
            Some(a) => normalize_axes(a, rank)?,
            None => (0..rank).collect(),
        };
        let mut plan = Plan { shape: input.to_vec(), scales: vec![1.0; rank] };
        match (scales.filter(|s| !s.is_empty()), sizes.filter(|s| !s.is_empty())) {
            (Some(s), None) if s.len() == axes.len() => {
                for (&a, &f) in axes.iter().zip(&s) {
                    if f.is_nan() || f <= 0.0 {
                        return Err(OpError::invalid(format!("Resize scale {f} must be positive")));
                    }
                    plan.scales[a] = f;
                    plan.shape[a] = (input[a] as f32 * f).floor() as usize;
                }
            }
            (None, Some(s)) if s.len() == axes.len() => {
                for (&a, &n) in axes.iter().zip(&s) {
                    if n < 0 || input[a] == 0 {
                        return Err(OpError::invalid(format!(
                            "Resize size {n} for dim {} is invalid",
                            input[a]
                        )));
                    }
                    plan.shape[a] = n as usize;
                    plan.scales[a] = n as f32 / input[a] as f32;
                }
            }
            _ => {
                return Err(OpError::invalid(
                    "Resize needs exactly one of scales and sizes, one value per axis",
                ))
            }
        }
        Ok(plan)
    }

    /// Source coordinate of output index `x` in a dim resized from `len_in` to `len_out`.
    fn source_coord(&self, x: usize, len_in: usize, len_out: usize, scale: f32) -> f32 {
        let x = x as f32;
        match self.coordinates {
            CoordinateMode::HalfPixel => (x + 0.5) / scale - 0.5,
            CoordinateMode::PytorchHalfPixel if len_out > 1 => (x + 0.5) / scale - 0.5,
            CoordinateMode::PytorchHalfPixel => 0.0,
            CoordinateMode::AlignCorners if len_out > 1 => x * (len_in as f32 - 1.0) / (len_out as f32 - 1.0),
            CoordinateMode::AlignCorners => 0.0,
            CoordinateMode::Asymmetric => x / scale,
            CoordinateMode::HalfPixelSymmetric => {
                let adjustment = len_out as f32 / (scale * len_in as f32);
                let center = len_in as f32 / 2.0;
                center * (1.0 - adjustment) + (x + 0.5) / scale - 0.5
            }
        }
    }
}

fn nearest(mode: NearestMode, c: f32) -> i64 {
    let frac = c - c.floor();
    (match mode {
        NearestMode::Floor => c.floor(),
        NearestMode::Ceil => c.ceil(),
        NearestMode::RoundPreferFloor if frac == 0.5 => c.floor(),
        NearestMode::RoundPreferCeil if frac == 0.5 => c.ceil(),
        _ => c.round(),
    }) as i64
}

/// The `scales` and `sizes` inputs, when given.
type Targets = (Option<Vec<f32>>, Option<Vec<i64>>);

fn read_inputs(inputs: &[Option<&ValueInfo>]) -> Result<Targets, OpError> {
    let scales = match inputs.get(2).copied().flatten() {
        None => None,
        Some(v) => Some(v.value.as_ref().ok_or(OpError::NotConstant { name: "scales" })?.to_f32_vec()),
    };
    Ok((scales, const_i64s(inputs, 3, "sizes")?))
}

impl OpSpec for Resize {
    fn infer(&self, inputs: &[Option<&ValueInfo>]) -> Result<Vec<TensorType>, OpError> {
        let x = required(inputs, 0, "X")?;
        if self.mode == ResizeMode::Linear {
            expect_dtype("X", x.dtype(), &[DType::F32, DType::F16])?;
        }
        let (scales, sizes) = read_inputs(inputs)?;
        Ok(vec![TensorType::new(x.dtype(), self.plan(x.shape(), scales, sizes)?.shape)])
    }

    fn run(&self, inputs: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let x = required(inputs, 0, "X")?;
        let scales = inputs.get(2).copied().flatten().map(|t| t.to_f32_vec());
        let sizes = inputs.get(3).copied().flatten().map(|t| t.to_i64_vec());
        let plan = self.plan(x.shape(), scales, sizes)?;
        match self.mode {
            ResizeMode::Nearest(mode) => self.run_nearest(x, &plan, mode),
            ResizeMode::Linear => self.run_linear(x, &plan),
        }
    }
}

impl Resize {
    fn run_nearest(&self, x: &Tensor, plan: &Plan, mode: NearestMode) -> Result<Vec<Tensor>, OpError> {
        let own = strides(x.shape());
        // Per dim and output index: the offset of the nearest source index (clamped into range).
        let tables: Vec<Vec<usize>> = (0..x.rank())
            .map(|d| {
                let (len_in, len_out) = (x.shape()[d], plan.shape[d]);
                (0..len_out)
                    .map(|o| {
                        let c = nearest(mode, self.source_coord(o, len_in, len_out, plan.scales[d]));
                        c.clamp(0, len_in as i64 - 1) as usize * own[d]
                    })
                    .collect()
            })
            .collect();
        if let (TensorData::F32(v), Some((inner, outer))) = (x.data(), tables.split_last()) {
            let out = gather_rows(v, &plan.shape, outer, inner);
            return Ok(vec![Tensor::from_f32(plan.shape.clone(), out)?]);
        }
        Ok(vec![take_by_tables(x, &plan.shape, &tables)?])
    }

    /// N-linear interpolation as a weighted sum over the two neighbours in every dim.
    fn run_linear(&self, x: &Tensor, plan: &Plan) -> Result<Vec<Tensor>, OpError> {
        let own = strides(x.shape());
        // Per dim and output index: (offset, weight) of the lower and upper neighbour.
        let taps: Vec<Vec<[(usize, f32); 2]>> = (0..x.rank())
            .map(|d| {
                let (len_in, len_out) = (x.shape()[d], plan.shape[d]);
                (0..len_out)
                    .map(|o| {
                        let c = self
                            .source_coord(o, len_in, len_out, plan.scales[d])
                            .clamp(0.0, len_in as f32 - 1.0);
                        let lo = c.floor() as usize;
                        let hi = (lo + 1).min(len_in - 1);
                        let w = c - lo as f32;
                        [(lo * own[d], 1.0 - w), (hi * own[d], w)]
                    })
                    .collect()
            })
            .collect();
        let xv = x.f32s();
        // Expand dim by dim: each step doubles the (offset, weight) terms of every output prefix.
        let mut terms: Vec<Vec<(usize, f32)>> = vec![vec![(0, 1.0)]];
        for dim_taps in &taps {
            terms = terms
                .iter()
                .flat_map(|prefix| {
                    dim_taps.iter().map(move |pair| {
                        prefix
                            .iter()
                            .flat_map(|&(o, w)| {
                                pair.iter().filter(|t| t.1 != 0.0).map(move |&(to, tw)| (o + to, w * tw))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
        }
        let out: Vec<f32> = terms.iter().map(|t| t.iter().map(|&(o, w)| xv[o] * w).sum()).collect();
        let out = Tensor::from_f32(plan.shape.clone(), out)?;
        Ok(vec![if x.dtype() == DType::F32 { out } else { out.cast(x.dtype()) }])
    }
}

/// Every dtype: one source offset per output element, then a take.
fn take_by_tables(x: &Tensor, shape: &[usize], tables: &[Vec<usize>]) -> Result<Tensor, OpError> {
    let tables: Vec<Vec<Option<usize>>> =
        tables.iter().map(|t| t.iter().map(|&o| Some(o)).collect()).collect();
    take_or_fill(x, shape.to_vec(), &offsets_from_tables(shape, &tables), None)
}

/// The f32 form of [`take_by_tables`]: offsets per output row (all dims but the last), then each
/// row gathered through the last dim's table, without a per-element offset vector.
fn gather_rows(x: &[f32], shape: &[usize], outer: &[Vec<usize>], inner: &[usize]) -> Vec<f32> {
    let rows: Vec<Option<usize>> = {
        let tables: Vec<Vec<Option<usize>>> =
            outer.iter().map(|t| t.iter().map(|&o| Some(o)).collect()).collect();
        offsets_from_tables(&shape[..outer.len()], &tables)
    };
    let mut out = vec![0.0f32; rows.len() * inner.len()];
    for (dst, row) in out.chunks_mut(inner.len().max(1)).zip(rows) {
        let src = &x[row.unwrap_or(0)..];
        dst.iter_mut().zip(inner).for_each(|(d, &t)| *d = src[t]);
    }
    out
}

fn parse(attrs: &mut Attrs, node: &NodeContext) -> Result<Op, OpError> {
    let mode = attrs.choice("mode", "nearest", &["nearest", "linear"])?;
    let mut coordinate_modes = vec!["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"];
    if node.opset >= 19 {
        coordinate_modes.push("half_pixel_symmetric");
    }
    let coordinates = match attrs.choice("coordinate_transformation_mode", "half_pixel", &coordinate_modes)? {
        "pytorch_half_pixel" => CoordinateMode::PytorchHalfPixel,
        "align_corners" => CoordinateMode::AlignCorners,
        "asymmetric" => CoordinateMode::Asymmetric,
        "half_pixel_symmetric" => CoordinateMode::HalfPixelSymmetric,
        _ => CoordinateMode::HalfPixel,
    };
    let nearest_mode = match attrs.choice(
        "nearest_mode",
        "round_prefer_floor",
        &["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"],
    )? {
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        _ => NearestMode::RoundPreferFloor,
    };
    // Only cubic mode and tf_crop_and_resize read these; their defaults are harmless.
    attrs.ignore("cubic_coeff_a");
    attrs.ignore("extrapolation_value");
    if attrs.int_or("exclude_outside", 0)? != 0 {
        return Err(OpError::unsupported("Resize exclude_outside 1", "exclude_outside 0"));
    }
    if attrs.int_or("antialias", 0)? != 0 {
        return Err(OpError::unsupported("Resize antialias 1", "antialias 0"));
    }
    attrs.choice("keep_aspect_ratio_policy", "stretch", &["stretch"])?;
    let axes = attrs.ints("axes")?;
    let mode = if mode == "linear" { ResizeMode::Linear } else { ResizeMode::Nearest(nearest_mode) };
    Ok(Resize { mode, coordinates, axes }.into())
}

pub(crate) const DEFS: &[OpDef] = &[OpDef::new("Resize", (11, 21), (1, 4), (1, 1), parse)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_rows_gather_what_the_offset_take_does() {
        // Up 2x in the last two dims (the UNet's upsampling), down in one, and a 1-D resize.
        let cases: &[(&[usize], &[f32])] =
            &[(&[1, 3, 4, 5], &[1.0, 1.0, 2.0, 2.0]), (&[2, 6, 3], &[1.0, 0.5, 3.0]), (&[7], &[1.5])];
        for &(shape, scales) in cases {
            let len = shape.iter().product::<usize>();
            let x = Tensor::from_f32(shape.to_vec(), (0..len).map(|i| i as f32 - 3.0).collect()).unwrap();
            for coordinates in
                [CoordinateMode::HalfPixel, CoordinateMode::Asymmetric, CoordinateMode::AlignCorners]
            {
                let op = Resize {
                    mode: ResizeMode::Nearest(NearestMode::RoundPreferFloor),
                    coordinates,
                    axes: None,
                };
                let plan = op.plan(shape, Some(scales.to_vec()), None).unwrap();
                let got = op.run_nearest(&x, &plan, NearestMode::RoundPreferFloor).unwrap().remove(0);
                // The same tables through the generic path (an integer copy of x takes it).
                let xi = x.cast(DType::I64);
                let want = op.run_nearest(&xi, &plan, NearestMode::RoundPreferFloor).unwrap().remove(0);
                assert_eq!(got.shape(), want.shape());
                assert_eq!(got.to_f32_vec(), want.to_f32_vec(), "{shape:?} {scales:?} {coordinates:?}");
            }
        }
    }

    #[test]
    fn nearest_modes_break_ties_as_named() {
        assert_eq!(nearest(NearestMode::RoundPreferFloor, 1.5), 1);
        assert_eq!(nearest(NearestMode::RoundPreferCeil, 1.5), 2);
        assert_eq!(nearest(NearestMode::Floor, 1.7), 1);
        assert_eq!(nearest(NearestMode::Ceil, 1.2), 2);
    }
}
