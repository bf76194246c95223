//! Reflection padding of NCHW tensors (PyTorch's `ReflectionPad2d` with the
//! same padding on all four sides), as a candle custom op with a fast CPU
//! forward and backward.
//!
//! Why a custom op: candle has no reflection padding, and building one from
//! its ops (a `narrow` + `flip` + `cat` per side, or an `index_select` per
//! axis) costs several full copies of the tensor forward and, backward, an
//! `index_add` or a chain of `cat`/`narrow` gradients per axis. The feed-
//! forward style network pads before each of its 15 convolutions, so those
//! copies add up.
//!
//! How it is fast: the work is cut into whole rows (of all planes at once,
//! so even the 3-channel input image keeps both cores busy) on rayon's pool.
//! Forward, each output row is one `copy_from_slice` of its (reflected)
//! source row plus `pad` mirrored columns at each end. Backward gathers
//! instead of scattering: each input-gradient row is written once, from the
//! output-gradient row it was copied to plus the (at most one) mirrored row,
//! so rows never race and no zero-initialised buffer is re-read.
//!
//! Non-CPU devices and non-f32 dtypes fall back to two candle
//! `index_select`s (one per spatial axis), whose autograd accumulates the
//! mirrored gradients with `index_add`.

use super::contiguous_f32;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Pads the last two axes of an `(N, C, H, W)` tensor by `pad` on every side
/// with their mirror image, excluding the edge itself (`ReflectionPad2d`):
/// row `-k` is row `k` and row `H-1+k` is row `H-1-k`.
///
/// Returns `(N, C, H + 2*pad, W + 2*pad)`. Reflection needs `pad < H` and
/// `pad < W`; anything else is an error. `pad == 0` returns `x` itself.
pub fn reflection_pad2d(x: &Tensor, pad: usize) -> Result<Tensor> {
    let &[_, _, h, w] = x.dims() else {
        bail!(
            "reflection_pad2d: input must be (N, C, H, W), got {:?}",
            x.dims()
        )
    };
    if pad >= h || pad >= w {
        bail!("reflection_pad2d: padding {pad} must be smaller than the height {h} and the width {w} of the input")
    }
    if pad == 0 {
        return Ok(x.clone());
    }
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return candle_reflection_pad2d(x, pad);
    }
    // The kernels read dense NCHW slices; `contiguous` is free when the
    // tensor already is, and keeps the autograd graph when it is not.
    x.contiguous()?.apply_op1(ReflectionPad { pad })
}

/// Index of the source of padded position `i` (in `0..n + 2*pad`) on an
/// axis of length `n`.
fn reflect(i: usize, pad: usize, n: usize) -> usize {
    if i < pad {
        pad - i
    } else if i - pad < n {
        i - pad
    } else {
        2 * (n - 1) + pad - i
    }
}

/// The fallback: one `index_select` per spatial axis with the reflected
/// indices. Its backward (`index_add`) accumulates correctly.
fn candle_reflection_pad2d(x: &Tensor, pad: usize) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let indices = |n: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..n + 2 * pad)
            .map(|i| reflect(i, pad, n) as u32)
            .collect();
        Tensor::from_vec(idx, n + 2 * pad, x.device())
    };
    // candle's index_select wants a contiguous input.
    x.contiguous()?
        .index_select(&indices(h)?, 2)?
        .index_select(&indices(w)?, 3)
}

struct ReflectionPad {
    pad: usize,
}

impl CustomOp1 for ReflectionPad {
    fn name(&self) -> &'static str {
        "stylestream-reflection-pad2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = layout.shape().dims4()?;
        let p = self.pad;
        if p >= h || p >= w {
            bail!("reflection_pad2d: padding {p} must be smaller than {h}x{w}")
        }
        let src = contiguous_f32(storage, layout, "reflection_pad2d")?;
        let (oh, ow) = (h + 2 * p, w + 2 * p);
        let mut dst = vec![0f32; n * c * oh * ow];
        if !dst.is_empty() {
            dst.par_chunks_mut(ow).enumerate().for_each(|(r, out)| {
                let (plane, oy) = (r / oh, r % oh);
                let sy = plane * h + reflect(oy, p, h);
                pad_row(out, &src[sy * w..(sy + 1) * w], p);
            });
        }
        Ok((CpuStorage::F32(dst), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(grad.apply_op1_no_bwd(&ReflectionPadBackward {
            pad: self.pad,
        })?))
    }
}

/// One padded row: the source row in the middle, `p` mirrored columns at
/// each end.
fn pad_row(out: &mut [f32], src: &[f32], p: usize) {
    let w = src.len();
    out[p..p + w].copy_from_slice(src);
    for j in 0..p {
        out[j] = src[p - j];
        out[p + w + j] = src[w - 2 - j];
    }
}

/// Folds one output-gradient row back onto an input-gradient row: the
/// middle columns map one to one, the `p` columns at each end onto their
/// mirror images. `assign` writes instead of adding (the first
/// contribution).
fn fold_row(dst: &mut [f32], grad: &[f32], p: usize, assign: bool) {
    let w = dst.len();
    let middle = &grad[p..p + w];
    if assign {
        dst.copy_from_slice(middle);
    } else {
        for (d, &g) in dst.iter_mut().zip(middle) {
            *d += g;
        }
    }
    for j in 0..p {
        dst[p - j] += grad[j];
        dst[w - 2 - j] += grad[p + w + j];
    }
}

/// Input gradient from the padded output's gradient: every position adds
/// the gradients of all the padded positions that copied it.
struct ReflectionPadBackward {
    pad: usize,
}

impl CustomOp1 for ReflectionPadBackward {
    fn name(&self) -> &'static str {
        "stylestream-reflection-pad2d-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, oh, ow) = layout.shape().dims4()?;
        let p = self.pad;
        if oh <= 3 * p || ow <= 3 * p {
            bail!("reflection_pad2d backward: gradient {oh}x{ow} is too small for padding {p}")
        }
        let (h, w) = (oh - 2 * p, ow - 2 * p);
        let grad = contiguous_f32(storage, layout, "reflection_pad2d")?;
        let mut dst = vec![0f32; n * c * h * w];
        if !dst.is_empty() {
            dst.par_chunks_mut(w).enumerate().for_each(|(r, out)| {
                let (plane, sy) = (r / h, r % h);
                let row = |oy: usize| {
                    let start = (plane * oh + oy) * ow;
                    &grad[start..start + ow]
                };
                // The row itself, then its mirror images above the top
                // edge (padded row `p - sy`) and below the bottom edge
                // (padded row `p + 2(h-1) - sy`), where they exist.
                fold_row(out, row(sy + p), p, true);
                if (1..=p).contains(&sy) {
                    fold_row(out, row(p - sy), p, false);
                }
                if sy + 1 + p >= h && sy + 1 < h {
                    fold_row(out, row(p + 2 * (h - 1) - sy), p, false);
                }
            });
        }
        Ok((CpuStorage::F32(dst), Shape::from((n, c, h, w))))
    }
}
