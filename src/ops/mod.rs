//! Fast CPU kernels for the layers the networks use, as candle custom ops
//! with CPU forward and backward; on other devices they fall back to
//! candle's own ops.

pub mod activation;
pub mod allocator;
pub mod conv2d;
pub mod direct;
pub mod instance_norm;
pub mod pool;
pub mod reflection_pad;
pub mod upsample;
pub(crate) mod winograd;

use candle_core::{bail, CpuStorage, Layout, Result};

/// The f32 elements of a contiguous CPU tensor. The ops make their inputs
/// contiguous before applying themselves, so anything else is a bug, which
/// this reports with the op's name.
pub(crate) fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: expected a contiguous tensor"),
    }
}
