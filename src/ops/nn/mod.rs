//! Neural-network ops: convolutions, pooling, softmax, reductions.

pub mod conv;
pub mod conv_transpose;
pub mod pool;
pub mod reduce;
pub mod softmax;
pub mod window;

use crate::ops::OpDef;

pub(crate) const DEFS: &[&[OpDef]] =
    &[conv::DEFS, conv_transpose::DEFS, pool::DEFS, reduce::DEFS, softmax::DEFS];
