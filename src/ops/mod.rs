//! Fast CPU kernels for the layers the networks use, as candle custom ops
//! with CPU forward and backward; on other devices they fall back to
//! candle's own ops.

pub mod conv2d;
pub mod instance_norm;
pub mod pool;
pub mod reflection_pad;
pub mod upsample;
