//! Gatys et al. (2016): style transfer by optimising the pixels.
//!
//! Starting from the content photo (or noise), gradient steps on the image
//! lower a weighted sum of a content loss (VGG features of the photo), a
//! style loss (Gram matrices of the painting) and total variation. It is
//! slow — hundreds of forward/backward passes through VGG19 per image — but
//! needs no training, and it is the quality yardstick for the feed-forward
//! networks.
//!
//! The optimised variable is the image in VGG space (BGR, 0..255, mean
//! subtracted), as in the original implementations: it is what the network
//! sees, and the loss weights keep their published meaning.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{color::transfer_luminance, Effect, StepCallback};
use crate::losses::{content_loss, equal_weights, total_variation, StyleTarget};
use crate::optim::lbfgs::StepOutcome;
use crate::optim::Lbfgs;
use crate::vgg::{
    preprocess::{from_vgg_input, to_vgg_input, vgg_pixel_bounds},
    Layer, Vgg19,
};

/// Which optimiser moves the pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GatysOptimizer {
    /// Converges in a few hundred steps; the classic choice.
    Lbfgs,
    /// Cheaper per step and more robust on huge images; needs more steps.
    Adam,
}

/// Where the optimisation starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GatysInit {
    /// The content photo: keeps its layout from the first step.
    Content,
    /// Random noise: more painterly, less faithful.
    Noise,
}

#[derive(Clone, Debug)]
pub struct GatysConfig {
    pub content_layers: Vec<Layer>,
    /// Style layers with their relative weights.
    pub style_layers: Vec<(Layer, f64)>,
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub steps: usize,
    pub optimizer: GatysOptimizer,
    /// Learning rate: L-BFGS's step scale (1 is right), or Adam's step in pixel levels.
    pub learning_rate: f64,
    pub init: GatysInit,
    pub seed: u64,
    pub preserve_color: bool,
}

impl Default for GatysConfig {
    fn default() -> Self {
        let style: Vec<Layer> = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
            .iter()
            .map(|n| n.parse().expect("known layer"))
            .collect();
        Self {
            content_layers: vec!["relu4_2".parse().expect("known layer")],
            style_layers: equal_weights(&style),
            content_weight: 1.0,
            // The ratio of Johnson's neural-style (content 5, style 100 summed
            // over five layers), with our per-layer weights summing to one.
            style_weight: 100.0,
            tv_weight: 1.0,
            steps: 300,
            optimizer: GatysOptimizer::Lbfgs,
            learning_rate: 1.0,
            init: GatysInit::Content,
            seed: 0,
            preserve_color: false,
        }
    }
}

/// The loss terms after one step, weighted as they enter the total.
#[derive(Clone, Copy, Debug, Default)]
pub struct GatysLosses {
    pub step: usize,
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    pub total: f64,
}

/// A painting's style, ready to be transferred onto any number of photos.
pub struct Gatys<'a> {
    vgg: &'a Vgg19,
    style: StyleTarget,
    config: GatysConfig,
    /// Called after each step with the losses; drives progress bars.
    on_step: Option<StepCallback<'a, GatysLosses>>,
    /// Losses of the latest run: at its first step, and of the picture it
    /// returned (the best step; its `step` says which).
    pub first: GatysLosses,
    pub best: GatysLosses,
    /// Steps the latest run took (fewer than asked when it converged).
    pub steps_run: usize,
}

impl<'a> Gatys<'a> {
    /// Computes the painting's Gram matrices once, up front.
    pub fn new(vgg: &'a Vgg19, style_rgb: &Tensor, config: GatysConfig) -> Result<Self> {
        if config.content_layers.is_empty() || config.style_layers.is_empty() {
            bail!("Gatys needs at least one content layer and one style layer");
        }
        let layers: Vec<Layer> = config.style_layers.iter().map(|(l, _)| *l).collect();
        let acts = vgg.forward_rgb(style_rgb, &layers)?;
        let style = StyleTarget::from_activations(&acts, &config.style_layers)?;
        Ok(Self {
            vgg,
            style,
            config,
            on_step: None,
            first: GatysLosses::default(),
            best: GatysLosses::default(),
            steps_run: 0,
        })
    }

    pub fn on_step(mut self, f: impl FnMut(&GatysLosses) + Send + 'a) -> Self {
        self.on_step = Some(Box::new(f));
        self
    }

    pub fn config(&self) -> &GatysConfig {
        &self.config
    }

    /// Runs the optimisation for `content_rgb` and returns the painted image.
    pub fn paint(&mut self, content_rgb: &Tensor) -> Result<Tensor> {
        let cfg = self.config.clone();
        let content_vgg = to_vgg_input(content_rgb)?;
        let content_targets = self.vgg.forward(&content_vgg, &cfg.content_layers)?;
        let mut layers = cfg.content_layers.clone();
        layers.extend(self.style.layer_list());

        let start = match cfg.init {
            GatysInit::Content => content_vgg.clone(),
            GatysInit::Noise => {
                let mut rng = StdRng::seed_from_u64(cfg.seed);
                let noise: Vec<f32> = (0..content_rgb.elem_count())
                    .map(|_| rng.random::<f32>())
                    .collect();
                let noise = Tensor::from_vec(noise, content_rgb.shape(), content_rgb.device())?;
                to_vgg_input(&noise)?
            }
        };
        let x = Var::from_tensor(&start.to_dtype(DType::F32)?)?;

        // No pixel moves across its whole range (255 levels) in one step.
        let mut lbfgs = Lbfgs::new(cfg.learning_rate, 100).with_max_step(255.0);
        let mut adam = match cfg.optimizer {
            GatysOptimizer::Adam => Some(AdamW::new(
                vec![x.clone()],
                ParamsAdamW {
                    lr: cfg.learning_rate,
                    weight_decay: 0.0,
                    ..Default::default()
                },
            )?),
            GatysOptimizer::Lbfgs => None,
        };

        let edges = edge_bounds(x.as_tensor())?;
        let mut best: Option<Tensor> = None;
        for step in 0..cfg.steps {
            let acts = self.vgg.forward(x.as_tensor(), &layers)?;
            let mut content = Tensor::zeros((), DType::F32, x.device())?;
            for layer in &cfg.content_layers {
                content = (content + content_loss(&acts[layer], &content_targets[layer])?)?;
            }
            let content = (content * cfg.content_weight)?;
            let style = (self.style.loss(&acts)? * cfg.style_weight)?;
            // On the RGB 0..1 image, as training and `evaluate` measure it.
            let tv = (total_variation(&from_vgg_input(x.as_tensor())?)? * cfg.tv_weight)?;
            let total = (&content + &style + &tv)?;
            let losses = GatysLosses {
                step: step + 1,
                content: content.to_scalar::<f32>()? as f64,
                style: style.to_scalar::<f32>()? as f64,
                tv: tv.to_scalar::<f32>()? as f64,
                total: total.to_scalar::<f32>()? as f64,
            };
            if step == 0 {
                self.first = losses;
            }
            self.steps_run = step + 1;
            if let Some(f) = self.on_step.as_mut() {
                f(&losses);
            }
            if !losses.total.is_finite() {
                bail!(
                    "the loss diverged at step {} (try a smaller learning rate)",
                    step + 1
                );
            }
            // The picture returned is the best one evaluated: the last step's
            // update is never measured, and L-BFGS may have just overshot.
            if best.is_none() || losses.total < self.best.total {
                best = Some(x.as_tensor().copy()?);
                self.best = losses;
            }
            let grads = total.backward()?;
            let grad = grads
                .get(&x)
                .ok_or_else(|| anyhow::anyhow!("no gradient reached the image"))?;
            match adam.as_mut() {
                Some(adam) => adam.step(&grads)?,
                None => {
                    let free = free_pixels(x.as_tensor(), grad, &edges)?;
                    if lbfgs.step(&x, grad, losses.total, Some(&free))? == StepOutcome::Converged {
                        break;
                    }
                }
            }
            // Keep the image displayable: unconstrained, the optimisation
            // reaches its style loss with pixels far outside 0..1, and the
            // saved (clamped) picture lost most of it (style loss 1.3e6 in
            // the optimisation, 8.9e6 measured on the saved file).
            x.set(&to_vgg_input(
                &from_vgg_input(x.as_tensor())?.clamp(0f32, 1f32)?,
            )?)?;
        }

        let best = best.unwrap_or_else(|| x.as_tensor().clone());
        let painted = from_vgg_input(&best)?.clamp(0f32, 1f32)?;
        if cfg.preserve_color {
            Ok(transfer_luminance(&painted, content_rgb)?)
        } else {
            Ok(painted)
        }
    }
}

/// Where [`free_pixels`] counts a pixel as on the edge of the displayable
/// range: [`vgg_pixel_bounds`] moved in by a hundredth of a level (within
/// that of a bound counts as on it). Built once per run, not per step.
fn edge_bounds(like: &Tensor) -> Result<(Tensor, Tensor)> {
    let (lo, hi) = vgg_pixel_bounds(like)?;
    Ok((lo.affine(1.0, 0.01)?, hi.affine(1.0, -0.01)?))
}

/// 1 where a pixel (VGG input space) may move, 0 where it sits on an edge,
/// `(lo, hi)` from [`edge_bounds`], and its descent direction points out of
/// the range.
fn free_pixels(x: &Tensor, grad: &Tensor, (lo, hi): &(Tensor, Tensor)) -> Result<Tensor> {
    let f32_mask = |t: Tensor| t.to_dtype(DType::F32);
    // Descent moves along -grad: held at the lower bound when grad > 0.
    let held_lo = (f32_mask(x.broadcast_le(lo)?)? * f32_mask(grad.gt(0f64)?)?)?;
    let held_hi = (f32_mask(x.broadcast_ge(hi)?)? * f32_mask(grad.lt(0f64)?)?)?;
    Ok((held_lo.affine(-1.0, 1.0)? - held_hi)?)
}

impl Effect for Gatys<'_> {
    fn describe(&self) -> String {
        format!(
            "gatys ({} steps, {:?})",
            self.config.steps, self.config.optimizer
        )
    }

    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        self.paint(frame)
    }
}
