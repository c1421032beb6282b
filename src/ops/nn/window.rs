//! Sliding-window geometry shared by Conv, ConvTranspose and the pools: kernel, strides,
//! dilations and padding (explicit or `auto_pad`), resolved against an input shape.

use crate::ops::{Attrs, OpError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

/// The window attributes as written in the node; lengths are checked against the input rank.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowAttrs {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    /// `[begin_0, begin_1, ..., end_0, end_1, ...]` as in ONNX.
    pub pads: Option<Vec<usize>>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
}

/// Geometry resolved for one input: everything a kernel needs, as plain numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pad_begin: Vec<usize>,
    pub pad_end: Vec<usize>,
    pub output: Vec<usize>,
}

fn non_negative(
    name: &'static str,
    v: Option<Vec<i64>>,
    positive: bool,
) -> Result<Option<Vec<usize>>, OpError> {
    v.map(|v| {
        v.into_iter()
            .map(|x| {
                if x < 0 || (positive && x == 0) {
                    Err(OpError::bad_attribute(name, format!("has invalid value {x}")))
                } else {
                    Ok(x as usize)
                }
            })
            .collect()
    })
    .transpose()
}

impl WindowAttrs {
    pub fn parse(
        attrs: &mut Attrs,
        with_dilations: bool,
        with_ceil_mode: bool,
    ) -> Result<WindowAttrs, OpError> {
        let auto_pad =
            match attrs.choice("auto_pad", "NOTSET", &["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])? {
                "SAME_UPPER" => AutoPad::SameUpper,
                "SAME_LOWER" => AutoPad::SameLower,
                "VALID" => AutoPad::Valid,
                _ => AutoPad::NotSet,
            };
        Ok(WindowAttrs {
            kernel_shape: non_negative("kernel_shape", attrs.ints("kernel_shape")?, true)?,
            strides: non_negative("strides", attrs.ints("strides")?, true)?,
            dilations: if with_dilations {
                non_negative("dilations", attrs.ints("dilations")?, true)?
            } else {
                None
            },
            pads: non_negative("pads", attrs.ints("pads")?, false)?,
            auto_pad,
            ceil_mode: with_ceil_mode && attrs.int_or("ceil_mode", 0)? != 0,
        })
    }

    fn per_dim(
        name: &str,
        v: &Option<Vec<usize>>,
        rank: usize,
        default: usize,
    ) -> Result<Vec<usize>, OpError> {
        match v {
            None => Ok(vec![default; rank]),
            Some(v) if v.len() == rank => Ok(v.clone()),
            Some(v) => {
                Err(OpError::bad_attribute(name, format!("has {} values for {rank} spatial dims", v.len())))
            }
        }
    }

    /// Resolves the geometry for `input` spatial dims, with the kernel from the weights if given.
    pub fn resolve(&self, input: &[usize], weight_kernel: Option<&[usize]>) -> Result<Window, OpError> {
        let rank = input.len();
        let kernel = match (&self.kernel_shape, weight_kernel) {
            (Some(k), Some(w)) if k.as_slice() != w => {
                return Err(OpError::bad_attribute(
                    "kernel_shape",
                    format!("{k:?} disagrees with the weights {w:?}"),
                ))
            }
            (Some(k), _) => k.clone(),
            (None, Some(w)) => w.to_vec(),
            (None, None) => return Err(OpError::bad_attribute("kernel_shape", "is required")),
        };
        if kernel.contains(&0) {
            return Err(OpError::bad_attribute("kernel_shape", format!("{kernel:?} has a zero dim")));
        }
        if kernel.len() != rank {
            return Err(OpError::bad_attribute(
                "kernel_shape",
                format!("has {} dims for {rank} spatial dims", kernel.len()),
            ));
        }
        let strides = Self::per_dim("strides", &self.strides, rank, 1)?;
        let dilations = Self::per_dim("dilations", &self.dilations, rank, 1)?;
        let pads = Self::per_dim("pads", &self.pads, 2 * rank, 0)?;
        let (mut pad_begin, mut pad_end) = (pads[..rank].to_vec(), pads[rank..].to_vec());
        let mut output = Vec::with_capacity(rank);
        for d in 0..rank {
            let span = dilations[d] * (kernel[d] - 1) + 1;
            let out = match self.auto_pad {
                AutoPad::SameUpper | AutoPad::SameLower => {
                    let out = input[d].div_ceil(strides[d]);
                    let total = ((out.max(1) - 1) * strides[d] + span).saturating_sub(input[d]);
                    let small = total / 2;
                    (pad_begin[d], pad_end[d]) = if self.auto_pad == AutoPad::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    out
                }
                mode => {
                    if mode == AutoPad::Valid {
                        (pad_begin[d], pad_end[d]) = (0, 0);
                    }
                    let padded = input[d] + pad_begin[d] + pad_end[d];
                    if padded < span {
                        return Err(OpError::invalid(format!(
                            "window of span {span} does not fit in padded size {padded} (dim {d})"
                        )));
                    }
                    let steps = padded - span;
                    if self.ceil_mode {
                        let mut out = steps.div_ceil(strides[d]) + 1;
                        // The last window must start inside the input or its leading pad.
                        if (out - 1) * strides[d] >= input[d] + pad_begin[d] {
                            out -= 1;
                        }
                        out
                    } else {
                        steps / strides[d] + 1
                    }
                }
            };
            output.push(out);
        }
        Ok(Window { input: input.to_vec(), kernel, strides, dilations, pad_begin, pad_end, output })
    }
}

impl Window {
    pub fn kernel_len(&self) -> usize {
        self.kernel.iter().product()
    }

    pub fn output_len(&self) -> usize {
        self.output.iter().product()
    }

    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// Every kernel position as a multi-index, in row-major order.
    pub fn kernel_positions(&self) -> Vec<Vec<usize>> {
        multi_indices(&self.kernel)
    }

    /// The input coordinate (possibly outside the input) that output `o`, kernel tap `k` reads.
    #[inline]
    pub fn input_coord(&self, d: usize, o: usize, k: usize) -> isize {
        (o * self.strides[d] + k * self.dilations[d]) as isize - self.pad_begin[d] as isize
    }
}

/// All multi-indices of `shape` in row-major order.
pub fn multi_indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0; shape.len()];
    for _ in 0..total {
        out.push(idx.clone());
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(auto_pad: AutoPad, ceil_mode: bool) -> WindowAttrs {
        WindowAttrs {
            kernel_shape: Some(vec![3]),
            strides: Some(vec![2]),
            dilations: None,
            pads: None,
            auto_pad,
            ceil_mode,
        }
    }

    #[test]
    fn same_padding_puts_the_odd_pixel_where_asked() {
        let w = attrs(AutoPad::SameUpper, false).resolve(&[6], None).unwrap();
        assert_eq!((w.output.clone(), w.pad_begin.clone(), w.pad_end.clone()), (vec![3], vec![0], vec![1]));
        let w = attrs(AutoPad::SameLower, false).resolve(&[6], None).unwrap();
        assert_eq!((w.pad_begin, w.pad_end), (vec![1], vec![0]));
    }

    #[test]
    fn ceil_mode_adds_a_partial_window() {
        assert_eq!(attrs(AutoPad::NotSet, false).resolve(&[6], None).unwrap().output, vec![2]);
        assert_eq!(attrs(AutoPad::NotSet, true).resolve(&[6], None).unwrap().output, vec![3]);
    }
}
