//! The one place that knows how the original VGG19 wants its input.
//!
//! The weights were trained in Caffe on BGR images in 0..255 with the
//! ImageNet channel means subtracted. The rest of stylestream works on RGB
//! images in 0..1 (NCHW); these two functions convert between the spaces
//! and are differentiable, so gradients flow back to RGB pixels.

use candle_core::{Result, Tensor};

/// ImageNet channel means in BGR order, on the 0..255 scale.
pub const BGR_MEAN: [f32; 3] = [103.939, 116.779, 123.68];

fn bgr_mean(like: &Tensor) -> Result<Tensor> {
    Tensor::new(&BGR_MEAN, like.device())?
        .to_dtype(like.dtype())?
        .reshape((1, 3, 1, 1))
}

/// Reverses the channel axis (dim 1): RGB <-> BGR.
fn swap_red_blue(x: &Tensor) -> Result<Tensor> {
    Tensor::cat(
        &[x.narrow(1, 2, 1)?, x.narrow(1, 1, 1)?, x.narrow(1, 0, 1)?],
        1,
    )
}

/// RGB 0..1 -> VGG input (BGR, 0..255, mean subtracted).
pub fn to_vgg_input(rgb: &Tensor) -> Result<Tensor> {
    swap_red_blue(&(rgb * 255.0)?)?.broadcast_sub(&bgr_mean(rgb)?)
}

/// VGG input -> RGB 0..1 (not clamped).
pub fn from_vgg_input(bgr: &Tensor) -> Result<Tensor> {
    swap_red_blue(&bgr.broadcast_add(&bgr_mean(bgr)?)?)? / 255.0
}

/// Per-channel limits of VGG input space that map back to 0..255 pixels,
/// shaped (1, 3, 1, 1) on `like`'s device: what an optimisation on the VGG
/// input (DeepDream, Gatys) keeps its image within.
pub fn vgg_pixel_bounds(like: &Tensor) -> Result<(Tensor, Tensor)> {
    let lo: Vec<f32> = BGR_MEAN.iter().map(|m| -m).collect();
    let hi: Vec<f32> = BGR_MEAN.iter().map(|m| 255.0 - m).collect();
    let lo = Tensor::new(lo.as_slice(), like.device())?.reshape((1, 3, 1, 1))?;
    let hi = Tensor::new(hi.as_slice(), like.device())?.reshape((1, 3, 1, 1))?;
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn preprocessing_matches_caffe_and_inverts() -> Result<()> {
        let rgb = Tensor::new(&[0.2f32, 0.5, 1.0], &Device::Cpu)?.reshape((1, 3, 1, 1))?;
        let v = to_vgg_input(&rgb)?.flatten_all()?.to_vec1::<f32>()?;
        let expected = [255.0 - 103.939, 127.5 - 116.779, 51.0 - 123.68];
        for (a, b) in v.iter().zip(expected) {
            assert!((a - b).abs() < 1e-4, "{v:?}");
        }
        let back = from_vgg_input(&to_vgg_input(&rgb)?)?;
        let err = (back - rgb)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-6);
        Ok(())
    }
}
