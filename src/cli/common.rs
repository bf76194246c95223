//! Flags and helpers shared by several subcommands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use stylestream::device::DeviceChoice;
use stylestream::image_io::{self, LoadedImage};
use stylestream::vgg::{weights::resolve_vgg_path, Pooling, Vgg19};

/// `--device` and `--vgg`: where to compute, and which VGG19 weights to use.
#[derive(Args, Debug, Clone)]
pub struct ComputeArgs {
    /// Where to compute: cpu, cuda:N (needs a build with `--features cuda`),
    /// or auto (the first GPU if there is one, else the CPU).
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: DeviceChoice,

    /// VGG19 weights written by `stylestream fetch-vgg`. Defaults to
    /// $STYLESTREAM_VGG, else $XDG_DATA_HOME/stylestream/vgg19.safetensors
    /// (~/.local/share/stylestream/vgg19.safetensors).
    #[arg(long, value_name = "PATH")]
    pub vgg: Option<PathBuf>,

    /// VGG19's pooling: the trained network's max, or avg (smoother results).
    #[arg(long, value_enum, default_value_t = Pooling::Max)]
    pub pooling: Pooling,
}

impl ComputeArgs {
    pub fn open(&self) -> Result<(Device, Vgg19)> {
        let device = self.device.open()?;
        let path = resolve_vgg_path(self.vgg.as_deref());
        let vgg = Vgg19::load(&path, &device, self.pooling)?;
        Ok((device, vgg))
    }
}

/// Parses `--size`: a positive number of pixels for the longer side.
pub fn parse_size(s: &str) -> Result<u32> {
    let n: u32 = s
        .parse()
        .with_context(|| format!("--size must be a whole number of pixels, got '{s}'"))?;
    if !(16..=16384).contains(&n) {
        bail!("--size {n} is out of range: use 16 to 16384 pixels (the longer side)");
    }
    Ok(n)
}

/// An image ready for an effect: RGB tensor on the device, plus the alpha
/// plane (if any) to put back on output.
pub struct InputImage {
    pub tensor: Tensor,
    pub alpha: Option<image_io::AlphaPlane>,
}

/// Loads an image, composites any transparency on white for processing, and
/// resizes it so its longer side is `size` (if given).
pub fn load_for_effect(path: &Path, size: Option<u32>, device: &Device) -> Result<InputImage> {
    let LoadedImage { rgb, alpha } = image_io::load_image(path)?;
    let rgb = match &alpha {
        Some(a) => image_io::composite_on(&rgb, a, [1.0, 1.0, 1.0]),
        None => rgb,
    };
    let (rgb, alpha) = match size {
        Some(n) => (
            image_io::resize_longer_side(&rgb, n),
            alpha.map(|a| image_io::resize_alpha_longer_side(&a, n)),
        ),
        None => (rgb, alpha),
    };
    let tensor = image_io::image_to_tensor(&rgb, device)?;
    Ok(InputImage { tensor, alpha })
}

/// Writes an effect's output (atomically), with the input's alpha if kept.
pub fn save_result(
    tensor: &Tensor,
    alpha: Option<&image_io::AlphaPlane>,
    path: &Path,
) -> Result<()> {
    let rgb = image_io::tensor_to_image(tensor)?;
    image_io::save_image(&rgb, alpha, path)
}

/// A progress bar for `len` steps with a free-form message (loss terms).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} ({per_sec}, ETA {eta}) {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
