//! The training configuration: every choice that shapes the result, kept
//! together so that checkpoints and model files record exactly how a model
//! was made.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the network learns to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Paint in the style of one painting (Gram-matrix style loss).
    Style,
    /// Dream: amplify chosen VGG19 activations (a feed-forward DeepDream).
    Dream,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Style => "style",
            Objective::Dream => "dream",
        }
    }
}

/// How the dream term grows with the activations it amplifies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DreamLoss {
    /// Minus the mean square activation, as the iterative dream climbs it.
    /// Unbounded: past a narrow range of weights the network learns to
    /// paint one texture everywhere (train/dream_calibration.md). The
    /// loss of models trained before the choice existed.
    #[default]
    Linear,
    /// Minus the photo's mean square activation times the log of the
    /// output's over it: the same pull as `linear` where the output's
    /// activations are the photo's, falling off as they grow (halved at
    /// twice the energy), so the content term can hold the dream at a
    /// level instead of losing to it.
    Log,
}

impl DreamLoss {
    pub fn name(self) -> &'static str {
        match self {
            DreamLoss::Linear => "linear",
            DreamLoss::Log => "log",
        }
    }
}

/// Everything `stylestream-train` was asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Canonical architecture spec string.
    pub arch: String,
    pub objective: Objective,
    /// The painting (style objective).
    pub style_image: Option<PathBuf>,
    /// The model's style name (the painting's file stem, or the dream layers).
    pub style_name: String,
    /// Longer side the painting is resized to before its Grams are taken.
    pub style_size: u32,
    pub content_dir: PathBuf,
    pub val_dir: Option<PathBuf>,
    /// Validation photos used (the first ones in name order).
    pub val_count: usize,
    /// Side of the square training crops.
    pub image_size: u32,
    pub batch_size: usize,
    pub iterations: u64,
    pub learning_rate: f64,
    /// The learning rate decays exponentially to `learning_rate * lr_decay`
    /// at the last iteration (1 keeps it constant).
    pub lr_decay: f64,
    pub seed: u64,
    pub content_layers: Vec<String>,
    pub content_weight: f64,
    pub style_layers: Vec<String>,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub dream_layers: Vec<String>,
    /// Weight of the dream term. `stylestream-train` defaults to 20 with
    /// the log form, chosen for relu4_2 with content weight 150
    /// (train/dream_calibration.md, part 3).
    pub dream_weight: f64,
    /// The dream term's form (absent in files from before it existed:
    /// linear).
    #[serde(default)]
    pub dream_loss: DreamLoss,
    /// VGG19 pooling (`max` or `avg`).
    pub pooling: String,
    pub checkpoint_every: u64,
}

impl TrainConfig {
    /// The learning rate at `iteration` (0-based).
    pub fn learning_rate_at(&self, iteration: u64) -> f64 {
        let progress = iteration as f64 / self.iterations.max(1) as f64;
        self.learning_rate * self.lr_decay.powf(progress)
    }
}
