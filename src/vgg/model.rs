//! VGG19's convolutional part, as a plain model struct.
//!
//! The forward pass takes a VGG-space image (see [`super::preprocess`]) and
//! returns the activations of the layers asked for, stopping at the deepest
//! one: style transfer rarely needs `conv5_*`, and every layer not computed is
//! time saved in each optimisation step. The weights are plain tensors, not
//! `Var`s, so no gradient is ever computed for them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::layers::{Layer, LayerKind};
use super::preprocess::to_vgg_input;
use super::weights::{load_vgg_tensors, VGG19_CONV_LAYERS};
use crate::ops::{
    conv2d::{conv2d, conv2d_relu},
    pool::max_pool2x2,
};

/// How VGG downsamples between blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooling {
    /// The trained network's own pooling.
    #[default]
    Max,
    /// Gatys et al. found average pooling gives slightly smoother results.
    Avg,
}

struct Conv {
    weight: Tensor,
    bias: Tensor,
}

/// The 16 convolutions of VGG19 with their pretrained weights.
pub struct Vgg19 {
    convs: Vec<Conv>,
    pooling: Pooling,
    device: Device,
}

/// Activations by layer.
pub type Activations = HashMap<Layer, Tensor>;

impl Vgg19 {
    /// Loads the converted weights (see `stylestream fetch-vgg`) onto `device`.
    pub fn load(path: &Path, device: &Device, pooling: Pooling) -> Result<Self> {
        let mut tensors = load_vgg_tensors(path, device)?;
        let mut convs = Vec::with_capacity(VGG19_CONV_LAYERS.len());
        for name in VGG19_CONV_LAYERS {
            let mut take = |suffix: &str| {
                let key = format!("{name}.{suffix}");
                tensors
                    .remove(&key)
                    .ok_or_else(|| anyhow::anyhow!("{}: tensor {key} missing", path.display()))
            };
            let weight = take("weight")?;
            let bias = take("bias")?;
            convs.push(Conv { weight, bias });
        }
        Ok(Self {
            convs,
            pooling,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Runs the network on a VGG-space image (N,3,H,W) and returns the
    /// activations of `layers`, computing nothing past the deepest of them.
    pub fn forward(&self, x: &Tensor, layers: &[Layer]) -> candle_core::Result<Activations> {
        let mut out = Activations::with_capacity(layers.len());
        let Some(deepest) = layers.iter().max().copied() else {
            return Ok(out);
        };
        let mut x = x.clone();
        // Whether the last convolution already applied its ReLU.
        let mut fused = false;
        for layer in Layer::all().take(deepest.index() + 1) {
            x = match layer.kind() {
                LayerKind::Conv(i) => {
                    let conv = &self.convs[i];
                    // Every conv is followed by its ReLU; one op does both
                    // (forward and backward) unless the pre-ReLU output
                    // itself is asked for.
                    fused = !layers.contains(&layer);
                    if fused {
                        conv2d_relu(&x, &conv.weight, Some(&conv.bias), 1, 1)?
                    } else {
                        conv2d(&x, &conv.weight, Some(&conv.bias), 1, 1)?
                    }
                }
                LayerKind::Relu if fused => x,
                LayerKind::Relu => x.relu()?,
                LayerKind::Pool => self.pool(&x)?,
            };
            if layers.contains(&layer) {
                out.insert(layer, x.clone());
            }
        }
        Ok(out)
    }

    /// [`Self::forward`] on an RGB 0..1 image.
    pub fn forward_rgb(&self, rgb: &Tensor, layers: &[Layer]) -> candle_core::Result<Activations> {
        self.forward(&to_vgg_input(rgb)?, layers)
    }

    fn pool(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.pooling {
            Pooling::Max => max_pool2x2(x),
            Pooling::Avg => {
                let (_, _, h, w) = x.dims4()?;
                x.narrow(2, 0, h / 2 * 2)?
                    .narrow(3, 0, w / 2 * 2)?
                    .avg_pool2d(2)
            }
        }
    }
}
