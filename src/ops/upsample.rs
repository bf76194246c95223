//! 2x nearest-neighbour upsampling of NCHW tensors (every pixel becomes a
//! 2x2 block), as a candle custom op with a fast CPU forward and a correct
//! backward.
//!
//! Why not candle's `upsample_nearest2d`: its backward *overwrites* the
//! input's accumulated gradient with this op's contribution instead of
//! adding to it, so the gradient is wrong whenever the input feeds anything
//! else too (a skip connection, or the same upsampled tensor used twice);
//! and it computes the 2x2 block sums with a grouped convolution, which is
//! slow on CPU. Here the backward returns the block sums and candle adds
//! them to the store like any other gradient.
//!
//! How it is fast: one rayon task per input row (of all planes at once):
//! forward writes one doubled output row and copies it to the next;
//! backward reads the two output-gradient rows of an input row and writes
//! each input gradient once, so no zeroed buffer is re-read.
//!
//! Non-CPU devices and non-f32 dtypes fall back to a reshape + broadcast +
//! reshape, whose autograd (a sum over the broadcast axes) accumulates
//! correctly as well.

use super::contiguous_f32;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Nearest-neighbour 2x upsampling of an `(N, C, H, W)` tensor: returns
/// `(N, C, 2H, 2W)` with `y[.., 2i + a, 2j + b] = x[.., i, j]`, the same
/// values as candle's `upsample_nearest2d(2H, 2W)`.
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    if x.rank() != 4 {
        bail!(
            "upsample_nearest2x: input must be (N, C, H, W), got {:?}",
            x.dims()
        )
    }
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return candle_upsample_nearest2x(x);
    }
    x.contiguous()?.apply_op1(UpsampleNearest2x)
}

/// The fallback: each pixel broadcast to a 2x2 block. Unlike
/// `upsample_nearest2d`, its backward accumulates.
fn candle_upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h, 1, w, 1))?
        .broadcast_as((n, c, h, 2, w, 2))?
        .reshape((n, c, 2 * h, 2 * w))
}

struct UpsampleNearest2x;

impl CustomOp1 for UpsampleNearest2x {
    fn name(&self) -> &'static str {
        "stylestream-upsample-nearest2x"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let src = contiguous_f32(storage, layout, "upsample_nearest2x")?;
        let mut dst = vec![0f32; 4 * src.len()];
        if !dst.is_empty() {
            // Input rows of consecutive planes are consecutive, so input row
            // `r` is output rows `2r` and `2r + 1` of the whole tensor.
            dst.par_chunks_mut(4 * w)
                .zip(src.par_chunks(w))
                .for_each(|(out, row)| {
                    let (top, bottom) = out.split_at_mut(2 * w);
                    for (pair, &v) in top.chunks_exact_mut(2).zip(row) {
                        pair[0] = v;
                        pair[1] = v;
                    }
                    bottom.copy_from_slice(top);
                });
        }
        Ok((CpuStorage::F32(dst), Shape::from((n, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(grad.apply_op1_no_bwd(&UpsampleNearest2xBackward)?))
    }
}

/// Sums each 2x2 block of the output gradient.
struct UpsampleNearest2xBackward;

impl CustomOp1 for UpsampleNearest2xBackward {
    fn name(&self) -> &'static str {
        "stylestream-upsample-nearest2x-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, oh, ow) = layout.shape().dims4()?;
        if oh % 2 != 0 || ow % 2 != 0 {
            bail!("upsample_nearest2x backward: gradient {oh}x{ow} has an odd side")
        }
        let (h, w) = (oh / 2, ow / 2);
        let grad = contiguous_f32(storage, layout, "upsample_nearest2x")?;
        let mut dst = vec![0f32; n * c * h * w];
        if !dst.is_empty() {
            dst.par_chunks_mut(w)
                .zip(grad.par_chunks(4 * w))
                .for_each(|(out, g)| {
                    let (top, bottom) = g.split_at(2 * w);
                    for ((d, t), b) in out
                        .iter_mut()
                        .zip(top.chunks_exact(2))
                        .zip(bottom.chunks_exact(2))
                    {
                        *d = (t[0] + t[1]) + (b[0] + b[1]);
                    }
                });
        }
        Ok((CpuStorage::F32(dst), Shape::from((n, c, h, w))))
    }
}
