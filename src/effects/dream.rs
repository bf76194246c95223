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
    preprocess::{from_vgg_input, to_vgg_input, vgg_pixel_bounds},
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
    /// Compute gradients in tiles of at most this many pixels a side
    /// (0: never tile). Bounds memory on large frames; see [`Dream`].
    pub tile_size: usize,
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
            tile_size: DEFAULT_TILE_SIZE,
        }
    }
}

/// Named settings a user can pick without knowing the knobs
/// (`--dream-preset`): name, description, and the config.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "light",
        "soft textures and strokes (relu3_3, 3 octaves x 6 steps)",
    ),
    (
        "medium",
        "eyes, scales and swirls (relu4_2, 4 octaves x 10 steps; the default)",
    ),
    (
        "deep",
        "animals and architecture (relu4_2 + relu5_1, 5 octaves x 15 steps)",
    ),
    (
        "video",
        "for video with --dream-carry: light per frame (relu4_1, 2 octaves x 4 steps)",
    ),
];

impl DreamConfig {
    /// The config of a preset in [`PRESETS`].
    pub fn preset(name: &str) -> Option<Self> {
        let layers = |names: &[&str]| {
            names
                .iter()
                .map(|n| n.parse().expect("known layer"))
                .collect()
        };
        let base = Self::default();
        Some(match name {
            "light" => Self {
                layers: layers(&["relu3_3"]),
                octaves: 3,
                steps: 6,
                step_size: 1.0,
                ..base
            },
            "medium" => base,
            "deep" => Self {
                layers: layers(&["relu4_2", "relu5_1"]),
                octaves: 5,
                steps: 15,
                step_size: 2.0,
                ..base
            },
            "video" => Self {
                layers: layers(&["relu4_1"]),
                octaves: 2,
                steps: 4,
                step_size: 1.5,
                ..base
            },
            _ => return None,
        })
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

/// Default [`DreamConfig::tile_size`]: a 640x480 frame, the usual live
/// size, is dreamed whole; a 1920x1080 frame in 3x2 tiles of 640x540,
/// which keeps VGG19's stored activations for the backward pass to a few
/// hundred MB instead of several GB.
pub const DEFAULT_TILE_SIZE: usize = 640;

/// Smallest side, in pixels, an octave may have: below it VGG's deeper
/// layers have no spatial extent left.
const MIN_OCTAVE_SIDE: usize = 32;

/// Multi-octave DeepDream on frames.
///
/// # Tiles
/// On a frame larger than [`DreamConfig::tile_size`] the gradient of each
/// step is computed tile by tile (as the TensorFlow DeepDream tutorial
/// does), each tile's objective weighted by its share of the frame so that
/// the tiles add up to the whole frame's objective. Memory then depends on
/// the tile size, not the frame size. A tile sees zero padding at its
/// borders where the whole frame would see its neighbour, so gradients
/// differ within a receptive field of a tile border; the random shift
/// (jitter) of every step moves the borders around the image, so no seam
/// accumulates.
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

    /// The objective's gradient with respect to a VGG-space image, and the
    /// objective's value: whole, or tile by tile on a large image (see
    /// [`Dream`]).
    pub fn gradient(&self, x: &Tensor) -> Result<(Tensor, f64)> {
        let (_, _, h, w) = x.dims4()?;
        let rows = tile_spans(h, self.config.tile_size);
        let cols = tile_spans(w, self.config.tile_size);
        let area = (h * w) as f64;
        let mut value = 0.0;
        let mut grad_rows = Vec::with_capacity(rows.len());
        for &(y0, th) in &rows {
            let mut grad_cols = Vec::with_capacity(cols.len());
            for &(x0, tw) in &cols {
                let tile = Var::from_tensor(&x.narrow(2, y0, th)?.narrow(3, x0, tw)?)?;
                let share = (th * tw) as f64 / area;
                let objective = (self.objective(tile.as_tensor())? * share)?;
                value += objective.to_scalar::<f32>()? as f64;
                let grads = objective.backward()?;
                let g = grads
                    .get(&tile)
                    .ok_or_else(|| anyhow::anyhow!("no gradient reached the image"))?;
                grad_cols.push(g.clone());
            }
            grad_rows.push(Tensor::cat(&grad_cols, 3)?);
        }
        Ok((Tensor::cat(&grad_rows, 2)?, value))
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
        self.dream_steps(frame, self.config.steps)
    }

    /// [`Self::dream`] with `steps` steps per octave instead of the
    /// configured number (a stream refining a carried dream needs fewer).
    pub fn dream_steps(&mut self, frame: &Tensor, steps: usize) -> Result<Tensor> {
        let (_, _, height, width) = frame.dims4()?;
        let base = to_vgg_input(frame)?.detach();
        let sizes = self.octave_sizes(height, width);
        let (lo, hi) = vgg_pixel_bounds(&base)?;
        let mut detail: Option<Tensor> = None;
        let mut x = base.clone();
        for (octave, &(h, w)) in sizes.iter().enumerate() {
            let octave_base = resize(&base, h, w)?;
            x = match &detail {
                Some(d) => (&octave_base + resize(d, h, w)?)?,
                None => octave_base.clone(),
            };
            for step in 0..steps {
                let j = self.config.jitter as i32;
                let (oy, ox) = if j > 0 {
                    (self.rng.random_range(-j..=j), self.rng.random_range(-j..=j))
                } else {
                    (0, 0)
                };
                let shifted = x.roll(oy, 2)?.roll(ox, 3)?;
                let (g, objective) = self.gradient(&shifted)?;
                if let Some(f) = self.on_step.as_mut() {
                    f(&DreamProgress {
                        octave: octave + 1,
                        step: step + 1,
                        objective,
                    });
                }
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

/// Splits `0..n` into the fewest near-equal spans of at most `tile`
/// (`tile == 0`: one span), as `(start, len)`.
fn tile_spans(n: usize, tile: usize) -> Vec<(usize, usize)> {
    let count = if tile == 0 {
        1
    } else {
        n.div_ceil(tile).max(1)
    };
    (0..count)
        .map(|i| {
            let start = i * n / count;
            (start, (i + 1) * n / count - start)
        })
        .collect()
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
