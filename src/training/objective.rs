//! The training losses: what "painted well" means, in VGG19's eyes.
//!
//! * content: feature MSE between the output and the input photo at the
//!   content layers (keeps the photo recognisable);
//! * style: Gram-matrix MSE against the painting at the style layers;
//! * dream (instead of style): minus the mean square activation of the
//!   dream layers (the objective of the iterative dream,
//!   [`crate::effects::dream`]), so that minimising the total amplifies
//!   what they see;
//! * total variation: smoothness.
//!
//! These are the functions of [`crate::losses`], the same ones Gatys
//! optimisation uses, so that a network's losses and Gatys' are comparable.

use anyhow::{bail, Result};
use candle_core::Tensor;

use super::config::DreamLoss;
use crate::losses::{content_loss, equal_weights, total_variation, StyleTarget};
use crate::vgg::{Layer, Vgg19};

/// The weighted terms of one evaluation (weights already applied), and
/// their sum.
pub struct LossTerms {
    pub content: Tensor,
    pub style: Option<Tensor>,
    pub dream: Option<Tensor>,
    pub tv: Tensor,
    pub total: Tensor,
}

/// The loss values as plain numbers, for logs.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LossValues {
    pub content: f64,
    pub style: f64,
    pub dream: f64,
    pub tv: f64,
    pub total: f64,
}

impl LossTerms {
    pub fn values(&self) -> candle_core::Result<LossValues> {
        let v = |t: &Tensor| t.to_scalar::<f32>().map(f64::from);
        Ok(LossValues {
            content: v(&self.content)?,
            style: self.style.as_ref().map(v).transpose()?.unwrap_or(0.0),
            dream: self.dream.as_ref().map(v).transpose()?.unwrap_or(0.0),
            tv: v(&self.tv)?,
            total: v(&self.total)?,
        })
    }
}

/// The perceptual objective, with the painting's Grams computed once.
pub struct PerceptualObjective<'a> {
    vgg: &'a Vgg19,
    content_layers: Vec<Layer>,
    content_weight: f64,
    style: Option<(StyleTarget, f64)>,
    dream: Option<DreamTerm>,
    tv_weight: f64,
    /// Every layer the output's forward pass must reach.
    output_layers: Vec<Layer>,
    /// Every layer the photo's forward pass must reach.
    photo_layers: Vec<Layer>,
}

/// The dream objective's term: which activations, how strongly, in what
/// form.
#[derive(Clone, Debug)]
pub struct DreamTerm {
    pub layers: Vec<Layer>,
    pub weight: f64,
    pub loss: DreamLoss,
}

impl<'a> PerceptualObjective<'a> {
    /// A style objective; `style_rgb` is the painting, (1,3,H,W) 0..1.
    pub fn style(
        vgg: &'a Vgg19,
        content: (&[Layer], f64),
        style_rgb: &Tensor,
        style: (&[Layer], f64),
        tv_weight: f64,
    ) -> Result<Self> {
        if style.0.is_empty() {
            bail!("no style layers given");
        }
        let acts = vgg.forward_rgb(style_rgb, style.0)?;
        let target = StyleTarget::from_activations(&acts, &equal_weights(style.0))?;
        Self::build(vgg, content, Some((target, style.1)), None, tv_weight)
    }

    /// A dream objective: amplify `dream.layers`.
    pub fn dream(
        vgg: &'a Vgg19,
        content: (&[Layer], f64),
        dream: DreamTerm,
        tv_weight: f64,
    ) -> Result<Self> {
        if dream.layers.is_empty() {
            bail!("no dream layers given");
        }
        Self::build(vgg, content, None, Some(dream), tv_weight)
    }

    fn build(
        vgg: &'a Vgg19,
        content: (&[Layer], f64),
        style: Option<(StyleTarget, f64)>,
        dream: Option<DreamTerm>,
        tv_weight: f64,
    ) -> Result<Self> {
        let mut output_layers: Vec<Layer> = content.0.to_vec();
        let mut photo_layers = output_layers.clone();
        if let Some((s, _)) = &style {
            output_layers.extend(s.layer_list());
        }
        if let Some(d) = &dream {
            output_layers.extend(d.layers.iter().copied());
            if d.loss == DreamLoss::Log {
                photo_layers.extend(d.layers.iter().copied());
            }
        }
        for layers in [&mut output_layers, &mut photo_layers] {
            layers.sort();
            layers.dedup();
        }
        Ok(Self {
            vgg,
            content_layers: content.0.to_vec(),
            content_weight: content.1,
            style,
            dream,
            tv_weight,
            output_layers,
            photo_layers,
        })
    }

    /// The losses of `output` (the network's painting of `photo`), both
    /// `(N,3,H,W)` RGB 0..1. Only `output` carries gradients.
    pub fn evaluate(&self, output: &Tensor, photo: &Tensor) -> Result<LossTerms> {
        let targets = self.vgg.forward_rgb(&photo.detach(), &self.photo_layers)?;
        let acts = self.vgg.forward_rgb(output, &self.output_layers)?;
        let mut content: Option<Tensor> = None;
        for layer in &self.content_layers {
            let term = content_loss(&acts[layer], &targets[layer].detach())?;
            content = Some(match content {
                Some(c) => (c + term)?,
                None => term,
            });
        }
        let n = self.content_layers.len().max(1) as f64;
        let content = match content {
            Some(c) => (c * (self.content_weight / n))?,
            None => Tensor::zeros((), output.dtype(), output.device())?,
        };
        let tv = (total_variation(output)? * self.tv_weight)?;
        let mut total = (&content + &tv)?;
        let style = match &self.style {
            Some((target, w)) => {
                let s = (target.loss(&acts)? * *w)?;
                total = (total + &s)?;
                Some(s)
            }
            None => None,
        };
        let dream = match &self.dream {
            Some(term) => {
                let mut sum: Option<Tensor> = None;
                for layer in &term.layers {
                    let energy = acts[layer].sqr()?.mean_all()?;
                    let gain = match term.loss {
                        DreamLoss::Linear => energy,
                        DreamLoss::Log => {
                            // reference * ln(energy / reference), with the
                            // photo's energy as the (constant) reference.
                            let reference = targets[layer].detach().sqr()?.mean_all()?;
                            ((energy / &reference)?.log()? * reference)?
                        }
                    };
                    sum = Some(match sum {
                        Some(s) => (s + gain)?,
                        None => gain,
                    });
                }
                let d = (sum.expect("dream layers checked non-empty")
                    * (-term.weight / term.layers.len() as f64))?;
                total = (total + &d)?;
                Some(d)
            }
            None => None,
        };
        Ok(LossTerms {
            content,
            style,
            dream,
            tv,
            total,
        })
    }
}
