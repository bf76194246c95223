//! The perceptual losses of neural style transfer, shared by Gatys
//! optimisation, training and DeepDream.
//!
//! All are means rather than sums so that their size does not depend on the
//! image size: a weight tuned at 256 px still works at 1024 px.
//!
//! * content: mean squared difference of features (Gatys et al. 2016, eq. 1);
//! * style: mean squared difference of Gram matrices, each normalised by
//!   `C·H·W` (Johnson et al. 2016), weighted per layer;
//! * total variation: mean squared difference of neighbouring pixels, which
//!   smooths high-frequency noise the optimiser would otherwise add.

use candle_core::{Result, Tensor};

use crate::vgg::{Activations, Layer};

/// Mean squared error between two feature maps of the same shape.
pub fn content_loss(features: &Tensor, target: &Tensor) -> Result<Tensor> {
    (features - target)?.sqr()?.mean_all()
}

/// Gram matrices of an (N,C,H,W) feature map: (N,C,C), normalised by C·H·W.
pub fn gram_matrix(features: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = features.dims4()?;
    let f = features.reshape((n, c, h * w))?;
    let gram = f.matmul(&f.transpose(1, 2)?)?;
    gram / (c * h * w) as f64
}

/// Mean squared difference of two Gram matrices. The target may have batch 1
/// and is then broadcast over the batch.
pub fn gram_loss(gram: &Tensor, target: &Tensor) -> Result<Tensor> {
    gram.broadcast_sub(target)?.sqr()?.mean_all()
}

/// Total variation: mean squared difference between vertical and between
/// horizontal neighbours of an (N,C,H,W) image.
pub fn total_variation(image: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = image.dims4()?;
    let mut tv = Tensor::zeros((), image.dtype(), image.device())?;
    if h > 1 {
        let dy = (image.narrow(2, 1, h - 1)? - image.narrow(2, 0, h - 1)?)?;
        tv = (tv + dy.sqr()?.mean_all()?)?;
    }
    if w > 1 {
        let dx = (image.narrow(3, 1, w - 1)? - image.narrow(3, 0, w - 1)?)?;
        tv = (tv + dx.sqr()?.mean_all()?)?;
    }
    Ok(tv)
}

/// The Gram matrices of a style image at the layers of a style loss, with each
/// layer's weight: what a style is, once computed.
#[derive(Clone)]
pub struct StyleTarget {
    pub layers: Vec<(Layer, f64, Tensor)>,
}

impl StyleTarget {
    /// Computes target Grams from the style image's activations.
    pub fn from_activations(acts: &Activations, layer_weights: &[(Layer, f64)]) -> Result<Self> {
        let layers = layer_weights
            .iter()
            .map(|&(layer, weight)| {
                let feats = acts.get(&layer).ok_or_else(|| {
                    candle_core::Error::Msg(format!("style activation {layer} missing"))
                })?;
                Ok((layer, weight, gram_matrix(feats)?.detach()))
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    pub fn layer_list(&self) -> Vec<Layer> {
        self.layers.iter().map(|(l, _, _)| *l).collect()
    }

    /// Weighted sum of the Gram losses of `acts` against this style.
    pub fn loss(&self, acts: &Activations) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (layer, weight, target) in &self.layers {
            let feats = acts.get(layer).ok_or_else(|| {
                candle_core::Error::Msg(format!("activation {layer} missing for style loss"))
            })?;
            let term = (gram_loss(&gram_matrix(feats)?, target)? * *weight)?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
        total.ok_or_else(|| candle_core::Error::Msg("style loss with no layers".into()))
    }
}

/// Equal weights summing to one, the usual default for style layers.
pub fn equal_weights(layers: &[Layer]) -> Vec<(Layer, f64)> {
    let w = 1.0 / layers.len().max(1) as f64;
    layers.iter().map(|&l| (l, w)).collect()
}
