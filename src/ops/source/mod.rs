//! Ops that make values from attributes or shapes: Shape, Size, Constant, ConstantOfShape,
//! Range, and the pass-throughs Identity and Dropout.

pub mod constant;
pub mod identity;
pub mod range;
pub mod shape;

use crate::ops::OpDef;

pub(crate) const DEFS: &[&[OpDef]] = &[constant::DEFS, identity::DEFS, range::DEFS, shape::DEFS];
