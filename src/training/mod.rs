//! Training feed-forward transform networks (Johnson, Alahi, Fei-Fei 2016):
//! what `stylestream-train` runs.
//!
//! A network ([`crate::models::TransformerNet`]) learns to paint any photo
//! in one forward pass by minimising, over a folder of photos, the same
//! perceptual losses that Gatys et al. minimise per image:
//!
//! ```text
//! photos ─► data (background thread: decode, random crop, resize, flip)
//!        ─► network ─► objective (VGG19: content + style Gram + TV, or dream)
//!        ─► Adam ─► checkpoint (model, optimiser, iteration) ─► model file
//! ```
//!
//! * [`config`] — every training choice, serialised into checkpoints and
//!   the final model's metadata.
//! * [`data`] — the content photos: listing, deterministic sampling (the
//!   batch of iteration `i` depends only on the seed and `i`, so a resumed
//!   run sees the same photos as an uninterrupted one), background loading,
//!   and the fixed validation set.
//! * [`init`] — seeded weight initialisation (candle cannot seed its CPU
//!   generator).
//! * [`objective`] — the loss terms.
//! * [`checkpoint`] — one file holding model, optimiser state and iteration.
//! * [`report`] — the JSON-lines log, loss plots and validation grids.
//! * [`trainer`] — the loop that ties them together.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod init;
pub mod objective;
pub mod report;
pub mod trainer;

pub use config::{DreamLoss, Objective, TrainConfig};
pub use trainer::{train, TrainOptions, TrainOutcome};
