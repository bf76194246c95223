//! DeepDream (Mordvintsev, Olah, Tyka 2015): gradient *ascent* on the image
//! to amplify whatever a VGG19 layer already sees in it.
//!
//! The recipe that makes it look like the famous pictures rather than noise:
//! * octaves — dream first on a small copy of the image, so patterns grow to
//!   a size the layer's receptive field cannot reach at full resolution; the
//!   detail gained at each octave is upscaled and carried into the next;
//! * jitter — shift the image by a random offset each step, so the patterns
//!   do not lock onto the pixel grid;
//! * normalised steps — divide the gradient by its mean absolute value, so
//!   the step size means "pixel levels per step" whatever the layer.
//!
//! The effect takes a frame and returns a frame; video and webcam use it too.

use anyhow::{bail, Result};
use candle_core::{Tensor, Var, D};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{Effect, StepCallback};
use crate::vgg::{
    preprocess::{from_vgg_input, to_vgg_input, BGR_MEAN},
    Layer, Vgg19,
};

#[derive(Clone, Debug)]
pub struct DreamConfig {
    /// Layers whose activations are amplified (their objectives add up).
    pub layers: Vec<Layer>,
    /// If not empty, amplify only these channels of the layers (mean
    /// activation) instead of the whole layer (mean square).
    pub channels: Vec<usize>,
    /// Number of scales; the smallest is `octave_scale^(octaves-1)` times smaller.
    pub octaves: usize,
    pub octave_scale: f64,
    /// Gradient-ascent steps per octave.
    pub steps: usize,
    /// Step length in pixel levels (0..255) per step, after normalisation.
    pub step_size: f64,
    /// Largest random shift, in pixels, applied before each step.
    pub jitter: usize,
    pub seed: u64,
}

impl Default for DreamConfig {
    fn default() -> Self {
        Self {
            layers: vec!["relu4_2".parse().expect("known layer")],
            channels: Vec::new(),
            octaves: 4,
            octave_scale: 1.4,
            steps: 10,
            step_size: 1.5,
            jitter: 32,
            seed: 0,
        }
    }
}

/// Progress of one dream step.
#[derive(Clone, Copy, Debug)]
pub struct DreamProgress {
    /// 1-based, smallest octave first.
    pub octave: usize,
    pub step: usize,
    /// The objective before the step.
    pub objective: f64,
}

/// Smallest side, in pixels, an octave may have: below it VGG's deeper
/// layers have no spatial extent left.
const MIN_OCTAVE_SIDE: usize = 32;

pub struct Dream<'a> {
    vgg: &'a Vgg19,
    config: DreamConfig,
    rng: StdRng,
    on_step: Option<StepCallback<'a, DreamProgress>>,
}

impl<'a> Dream<'a> {
    pub fn new(vgg: &'a Vgg19, config: DreamConfig) -> Result<Self> {
        if config.layers.is_empty() {
            bail!("dream needs at least one layer");
        }
        if config.octaves == 0 || config.octave_scale < 1.0 {
            bail!("dream needs at least one octave and an octave scale of 1 or more");
        }
        for layer in &config.layers {
            if let Some(&c) = config.channels.iter().find(|&&c| c >= layer.channels()) {
                bail!(
                    "channel {c} does not exist in {layer}, which has {} channels (0..{})",
                    layer.channels(),
                    layer.channels() - 1
                );
            }
        }
        Ok(Self {
            vgg,
            rng: StdRng::seed_from_u64(config.seed),
            config,
            on_step: None,
        })
    }

    pub fn on_step(mut self, f: impl FnMut(&DreamProgress) + Send + 'a) -> Self {
        self.on_step = Some(Box::new(f));
        self
    }

    pub fn config(&self) -> &DreamConfig {
        &self.config
    }

    /// Total number of steps one frame takes (for progress bars).
    pub fn steps_per_frame(&self, height: usize, width: usize) -> usize {
        self.octave_sizes(height, width).len() * self.config.steps
    }

    /// The quantity the ascent maximises, on a VGG-space image.
    pub fn objective(&self, x_vgg: &Tensor) -> candle_core::Result<Tensor> {
        let acts = self.vgg.forward(x_vgg, &self.config.layers)?;
        let mut total = Tensor::zeros((), x_vgg.dtype(), x_vgg.device())?;
        for layer in &self.config.layers {
            let a = &acts[layer];
            let term = if self.config.channels.is_empty() {
                a.sqr()?.mean_all()?
            } else {
                let idx: Vec<u32> = self.config.channels.iter().map(|&c| c as u32).collect();
                let idx = Tensor::new(idx.as_slice(), a.device())?;
                a.index_select(&idx, 1)?.mean_all()?
            };
            total = (total + term)?;
        }
        Ok(total)
    }

    /// Octave sizes, smallest first, ending with the frame's own size.
    fn octave_sizes(&self, height: usize, width: usize) -> Vec<(usize, usize)> {
        let mut sizes = vec![(height, width)];
        for i in 1..self.config.octaves {
            let f = self.config.octave_scale.powi(i as i32);
            let (h, w) = (
                (height as f64 / f).round() as usize,
                (width as f64 / f).round() as usize,
            );
            if h.min(w) < MIN_OCTAVE_SIDE {
                break;
            }
            sizes.push((h, w));
        }
        sizes.reverse();
        sizes
    }

    /// Dreams on one RGB 0..1 frame (1,3,H,W).
    pub fn dream(&mut self, frame: &Tensor) -> Result<Tensor> {
        let (_, _, height, width) = frame.dims4()?;
        let base = to_vgg_input(frame)?.detach();
        let sizes = self.octave_sizes(height, width);
        let (lo, hi) = pixel_bounds(&base)?;
        let mut detail: Option<Tensor> = None;
        let mut x = base.clone();
        for (octave, &(h, w)) in sizes.iter().enumerate() {
            let octave_base = resize(&base, h, w)?;
            x = match &detail {
                Some(d) => (&octave_base + resize(d, h, w)?)?,
                None => octave_base.clone(),
            };
            for step in 0..self.config.steps {
                let j = self.config.jitter as i32;
                let (oy, ox) = if j > 0 {
                    (self.rng.random_range(-j..=j), self.rng.random_range(-j..=j))
                } else {
                    (0, 0)
                };
                let shifted = Var::from_tensor(&x.roll(oy, 2)?.roll(ox, 3)?)?;
                let objective = self.objective(shifted.as_tensor())?;
                if let Some(f) = self.on_step.as_mut() {
                    f(&DreamProgress {
                        octave: octave + 1,
                        step: step + 1,
                        objective: objective.to_scalar::<f32>()? as f64,
                    });
                }
                let grads = objective.backward()?;
                let g = grads
                    .get(&shifted)
                    .ok_or_else(|| anyhow::anyhow!("no gradient reached the image"))?;
                let g = g.roll(-oy, 2)?.roll(-ox, 3)?;
                let scale = g.abs()?.mean_all()?.to_scalar::<f32>()? as f64 + 1e-8;
                x = (x + (g * (self.config.step_size / scale))?)?;
                x = x.broadcast_maximum(&lo)?.broadcast_minimum(&hi)?;
            }
            detail = Some((&x - &octave_base)?);
        }
        Ok(from_vgg_input(&x)?.clamp(0f32, 1f32)?)
    }
}

/// Per-channel limits of VGG space that map back to 0..255 pixels.
fn pixel_bounds(like: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let lo: Vec<f32> = BGR_MEAN.iter().map(|m| -m).collect();
    let hi: Vec<f32> = BGR_MEAN.iter().map(|m| 255.0 - m).collect();
    let lo = Tensor::new(lo.as_slice(), like.device())?.reshape((1, 3, 1, 1))?;
    let hi = Tensor::new(hi.as_slice(), like.device())?.reshape((1, 3, 1, 1))?;
    Ok((lo, hi))
}

/// Bilinear resize of an NCHW tensor (identity when the size already matches).
fn resize(x: &Tensor, h: usize, w: usize) -> candle_core::Result<Tensor> {
    let (_, _, xh, xw) = x.dims4()?;
    if (xh, xw) == (h, w) {
        Ok(x.clone())
    } else {
        x.upsample_bilinear2d(h, w, false)
    }
}

/// Mean activation (mean over all elements) of each layer on an RGB 0..1
/// image: how strongly the network "sees" something there. A dreamed image
/// scores higher than its source on the dreamed layers.
pub fn mean_activations(vgg: &Vgg19, rgb: &Tensor, layers: &[Layer]) -> Result<Vec<f64>> {
    let acts = vgg.forward_rgb(rgb, layers)?;
    layers
        .iter()
        .map(|l| {
            let a = acts[l].flatten_from(1)?.mean(D::Minus1)?.mean_all()?;
            Ok(a.to_scalar::<f32>()? as f64)
        })
        .collect()
}

impl Effect for Dream<'_> {
    fn describe(&self) -> String {
        let layers: Vec<&str> = self.config.layers.iter().map(|l| l.name()).collect();
        format!(
            "dream ({}, {} octaves x {} steps)",
            layers.join(","),
            self.config.octaves,
            self.config.steps
        )
    }

    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        self.dream(frame)
    }
}
