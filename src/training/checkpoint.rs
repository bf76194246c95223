//! Training checkpoints: the model's variables, Adam's moments and the
//! iteration, in one safetensors file written atomically, so that a crash
//! mid-write never leaves a checkpoint that does not match itself.
//!
//! Tensors are stored as `model.NAME` and `adam.m.NAME` / `adam.v.NAME`;
//! the metadata hold the iteration, the architecture and the configuration
//! (JSON) the run was started with.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use candle_core::{Device, Tensor};

use super::config::TrainConfig;
use crate::image_io::write_file_atomic;
use crate::models::file::write_safetensors;

const KEY_KIND: &str = "stylestream.checkpoint";
const KEY_ITERATION: &str = "iteration";
const KEY_ARCH: &str = "arch";
const KEY_CONFIG: &str = "config";

/// A checkpoint read back.
pub struct Checkpoint {
    /// Iterations completed.
    pub iteration: u64,
    pub arch: String,
    pub config: TrainConfig,
    pub model: HashMap<String, Tensor>,
    pub adam: HashMap<String, Tensor>,
}

/// Writes a checkpoint after `iteration` completed iterations.
pub fn save_checkpoint(
    path: &Path,
    iteration: u64,
    config: &TrainConfig,
    model: &HashMap<String, Tensor>,
    adam: &HashMap<String, Tensor>,
) -> Result<()> {
    let mut tensors = HashMap::new();
    for (k, t) in model {
        tensors.insert(format!("model.{k}"), t.clone());
    }
    for (k, t) in adam {
        tensors.insert(format!("adam.{k}"), t.clone());
    }
    let meta = HashMap::from([
        (KEY_KIND.to_string(), "1".to_string()),
        (KEY_ITERATION.to_string(), iteration.to_string()),
        (KEY_ARCH.to_string(), config.arch.clone()),
        (KEY_CONFIG.to_string(), serde_json::to_string(config)?),
    ]);
    write_file_atomic(path, |tmp| write_safetensors(tmp, &tensors, meta))
}

/// Reads a checkpoint onto `device`.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let p = path.display();
    let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read checkpoint {p}: {e}"))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{p}: not a checkpoint (not safetensors: {e})"))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if !meta.contains_key(KEY_KIND) {
        bail!("{p}: not a stylestream-train checkpoint");
    }
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| anyhow!("{p}: checkpoint metadata '{k}' missing"))
    };
    let iteration: u64 = get(KEY_ITERATION)?
        .parse()
        .map_err(|_| anyhow!("{p}: bad iteration in checkpoint"))?;
    let config: TrainConfig = serde_json::from_str(get(KEY_CONFIG)?)
        .map_err(|e| anyhow!("{p}: unreadable configuration in checkpoint: {e}"))?;
    let all = candle_core::safetensors::load_buffer(&bytes, device)
        .map_err(|e| anyhow!("{p}: unreadable checkpoint tensors: {e}"))?;
    let mut model = HashMap::new();
    let mut adam = HashMap::new();
    for (k, t) in all {
        if let Some(name) = k.strip_prefix("model.") {
            model.insert(name.to_string(), t);
        } else if let Some(name) = k.strip_prefix("adam.") {
            adam.insert(name.to_string(), t);
        }
    }
    Ok(Checkpoint {
        iteration,
        arch: get(KEY_ARCH)?.clone(),
        config,
        model,
        adam,
    })
}
