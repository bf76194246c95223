//! A trained feed-forward network as an effect: one forward pass per frame
//! (Johnson et al. 2016), the effect video and webcams use.

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::Effect;
use crate::models::{load_model, ModelInfo, TransformerNet};

/// Paints frames with a trained model file.
pub struct StyleNet {
    net: TransformerNet,
    info: ModelInfo,
    name: String,
}

impl StyleNet {
    /// Loads a model file (see [`crate::models::file`]) onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (net, info) = load_model(path, device)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| info.style.clone());
        Ok(Self { net, info, name })
    }

    /// What the model file says about itself.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The network.
    pub fn net(&self) -> &TransformerNet {
        &self.net
    }

    /// Paints a batch `(N, 3, H, W)` at once (video batches frames).
    pub fn apply_batch(&self, frames: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(frames)?)
    }
}

impl Effect for StyleNet {
    fn describe(&self) -> String {
        format!(
            "{} ({} {}, {})",
            self.name, self.info.objective, self.info.style, self.info.preset
        )
    }

    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        self.apply_batch(frame)
    }
}
