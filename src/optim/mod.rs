//! Optimisers.
//!
//! * [`lbfgs`] — Gatys et al. optimise one tensor, the image, for a few
//!   hundred steps: L-BFGS converges in far fewer steps than first-order
//!   methods there.
//! * [`adam`] — training the transform networks, with a state that
//!   checkpoints save and restore exactly.

pub mod adam;
pub mod lbfgs;

pub use adam::{Adam, AdamConfig};
pub use lbfgs::Lbfgs;
