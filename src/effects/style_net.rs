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
}

impl Effect for StyleNet {
    fn describe(&self) -> String {
        format!(
            "{} ({} {}, {})",
            self.name, self.info.objective, self.info.style, self.info.preset
        )
    }

    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(frame)?)
    }

    /// The whole batch in one forward pass.
    fn apply_batch(&mut self, frames: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(frames)?)
    }

    /// On a GPU a batch fills the device better; on a CPU the kernels are
    /// already parallel within a frame, so batching only adds latency.
    fn preferred_batch(&self) -> usize {
        if self.net.device().is_cpu() {
            1
        } else {
            8
        }
    }
}
