//! Optimisers over image pixels.
//!
//! Gatys et al. optimise one tensor, the image, for a few hundred steps:
//! L-BFGS ([`lbfgs`]) converges in far fewer steps than first-order methods
//! there. Adam comes from candle-nn (`AdamW` with no weight decay).

pub mod lbfgs;

pub use lbfgs::Lbfgs;
