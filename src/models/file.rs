//! Trained-model files: safetensors whose metadata carry everything needed
//! to run the network, so that a model is one self-describing file.
//!
//! | metadata key                  | value                                               |
//! |-------------------------------|-----------------------------------------------------|
//! | `stylestream.format`          | `transform-net`                                     |
//! | `stylestream.format_version`  | `1`                                                 |
//! | `stylestream.arch`            | the canonical architecture spec string              |
//! | `stylestream.preset`          | `johnson`, `fast` or `custom`                       |
//! | `stylestream.style`           | the style's name (the painting's file stem)         |
//! | `stylestream.objective`       | `style` (Gram losses) or `dream` (activation ascent)|
//! | `stylestream.training`        | the training configuration and final losses, JSON   |
//!
//! Reading refuses a file without these keys (a random safetensors file,
//! a raw checkpoint) and a file whose tensors do not match its spec, each
//! with a message that names the file and says what to do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{Device, Tensor};

use super::{ArchSpec, TransformerNet, PRESETS};
use crate::image_io::write_file_atomic;

/// The value of `stylestream.format` in a model file.
pub const FORMAT: &str = "transform-net";
/// The model format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const KEY_FORMAT: &str = "stylestream.format";
const KEY_VERSION: &str = "stylestream.format_version";
const KEY_ARCH: &str = "stylestream.arch";
const KEY_PRESET: &str = "stylestream.preset";
const KEY_STYLE: &str = "stylestream.style";
const KEY_OBJECTIVE: &str = "stylestream.objective";
const KEY_TRAINING: &str = "stylestream.training";

/// What a model file says about itself.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub arch: ArchSpec,
    /// `johnson`, `fast` or `custom`.
    pub preset: String,
    pub style: String,
    /// `style` or `dream`.
    pub objective: String,
    /// Training configuration and results (free-form JSON).
    pub training: serde_json::Value,
}

impl ModelInfo {
    /// Info for a network of `arch`, naming its preset if it is one.
    pub fn new(arch: ArchSpec, style: &str, objective: &str, training: serde_json::Value) -> Self {
        Self {
            preset: preset_name(&arch),
            arch,
            style: style.to_string(),
            objective: objective.to_string(),
            training,
        }
    }

    fn to_metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (KEY_FORMAT.into(), FORMAT.into()),
            (KEY_VERSION.into(), FORMAT_VERSION.to_string()),
            (KEY_ARCH.into(), self.arch.to_string()),
            (KEY_PRESET.into(), self.preset.clone()),
            (KEY_STYLE.into(), self.style.clone()),
            (KEY_OBJECTIVE.into(), self.objective.clone()),
            (KEY_TRAINING.into(), self.training.to_string()),
        ])
    }

    fn from_metadata(path: &Path, meta: &HashMap<String, String>) -> Result<Self> {
        let p = path.display();
        let get = |key: &str| {
            meta.get(key).ok_or_else(|| {
                anyhow!(
                    "{p}: not a stylestream model (metadata key '{key}' missing); models are \
                     written by stylestream-train"
                )
            })
        };
        let format = get(KEY_FORMAT)?;
        if format != FORMAT {
            bail!("{p}: a '{format}' file, not a stylestream model ('{FORMAT}')");
        }
        let version: u32 = get(KEY_VERSION)?
            .parse()
            .map_err(|_| anyhow!("{p}: unreadable model format version"))?;
        if version > FORMAT_VERSION {
            bail!(
                "{p}: model format version {version} is newer than this stylestream reads \
                 ({FORMAT_VERSION}); update stylestream"
            );
        }
        let arch: ArchSpec = get(KEY_ARCH)?
            .parse()
            .map_err(|e| anyhow!("{p}: bad architecture in model metadata: {e}"))?;
        let training = meta
            .get(KEY_TRAINING)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(serde_json::Value::Null);
        Ok(Self {
            preset: meta
                .get(KEY_PRESET)
                .cloned()
                .unwrap_or_else(|| preset_name(&arch)),
            arch,
            style: get(KEY_STYLE)?.clone(),
            objective: meta
                .get(KEY_OBJECTIVE)
                .cloned()
                .unwrap_or_else(|| "style".into()),
            training,
        })
    }
}

/// `johnson`/`fast` when `arch` is that preset, else `custom`.
pub fn preset_name(arch: &ArchSpec) -> String {
    PRESETS
        .iter()
        .find(|(_, spec)| spec.parse::<ArchSpec>().ok().as_ref() == Some(arch))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| "custom".into())
}

/// Writes a model atomically: `tensors` (named as in
/// [`super::transformer`]) with `info` as metadata.
pub fn save_model(path: &Path, tensors: &HashMap<String, Tensor>, info: &ModelInfo) -> Result<()> {
    let meta = info.to_metadata();
    write_file_atomic(path, |tmp| {
        write_safetensors(tmp, tensors, meta)
            .with_context(|| format!("cannot write {}", path.display()))
    })
}

/// Writes `tensors` (moved to the CPU as needed, in name order, so that
/// the same tensors always give the same bytes) with string metadata.
///
/// The bytes are built in memory and written with `std::fs::write` rather
/// than `safetensors::serialize_to_file`, which goes through a private temp
/// file and so leaves the result readable by its owner only (mode 0600):
/// model files are meant to be shared. Callers make the write atomic
/// ([`write_file_atomic`]).
pub fn write_safetensors(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut named: Vec<(&String, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    named.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(named, Some(metadata))?;
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Reads only a model's metadata: the safetensors header (an 8-byte
/// little-endian length, then that much JSON), not the tensors, so that
/// `stylestream models` stays instant with many models.
pub fn read_model_info(path: &Path) -> Result<ModelInfo> {
    use std::io::Read;
    let p = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| anyhow!("cannot read model {p}: {e}"))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| anyhow!("{p}: not a safetensors model file (too short)"))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        bail!("{p}: not a safetensors model file (bad header length)");
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|_| anyhow!("{p}: not a safetensors model file (truncated header)"))?;
    let header: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|_| anyhow!("{p}: not a safetensors model file (header is not JSON)"))?;
    let meta: HashMap<String, String> = header
        .get("__metadata__")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    ModelInfo::from_metadata(path, &meta)
}

/// Loads a model onto `device`, checking its metadata and tensors.
pub fn load_model(path: &Path, device: &Device) -> Result<(TransformerNet, ModelInfo)> {
    let info = read_model_info(path)?;
    let net = TransformerNet::load(&info.arch, path, device)?;
    Ok((net, info))
}

/// Where bare model names are looked up, in order: `$STYLESTREAM_MODELS`
/// (a colon-separated list of folders), `./weights`, and the `weights/`
/// folder of the source tree this binary was built from.
pub fn model_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("STYLESTREAM_MODELS")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("weights"));
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights");
    if !dirs.contains(&built) {
        dirs.push(built);
    }
    dirs
}

/// Resolves `--model NAME|PATH`: a path that exists (or contains a `/` or
/// ends in `.safetensors`) is used as given; a bare name is looked up as
/// `NAME.safetensors` in [`model_dirs`].
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf> {
    let as_path = Path::new(name_or_path);
    if as_path.exists() || name_or_path.contains('/') || name_or_path.ends_with(".safetensors") {
        if !as_path.exists() {
            bail!("model file {name_or_path} does not exist");
        }
        return Ok(as_path.to_path_buf());
    }
    let dirs = model_dirs();
    for dir in &dirs {
        let candidate = dir.join(format!("{name_or_path}.safetensors"));
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let known: Vec<String> = list_models().into_iter().map(|m| m.name).collect();
    bail!(
        "no model named '{name_or_path}' (looked for {name_or_path}.safetensors in {}); \
         known models: {}; `stylestream models` lists them",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )
}

/// A model found by [`list_models`].
pub struct FoundModel {
    pub name: String,
    pub path: PathBuf,
    /// The metadata, or why it could not be read.
    pub info: std::result::Result<ModelInfo, String>,
}

/// Every `*.safetensors` in [`model_dirs`], first occurrence of a name
/// winning, sorted by name.
pub fn list_models() -> Vec<FoundModel> {
    let mut found: Vec<FoundModel> = Vec::new();
    for dir in model_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        paths.sort();
        for path in paths {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if found.iter().any(|m| m.name == name) {
                continue;
            }
            let info = read_model_info(&path).map_err(|e| format!("{e:#}"));
            found.push(FoundModel { name, path, info });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}
