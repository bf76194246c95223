//! Flags for video inputs, shared by the commands that paint video
//! (`dream`, and `stylize` by flattening [`VideoArgs`]), and the one
//! function that runs a conversion with a progress bar, Ctrl-C handling and
//! a summary.

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::Device;
use stylestream::effects::Effect;
use stylestream::video::{self, EncodeOptions, Options};

/// How a video output is encoded and blended (ignored for still images,
/// except `--strength`).
#[derive(clap::Args, Debug, Clone)]
pub struct VideoArgs {
    /// Video encoder for a video output: libx264 (the default for .mp4,
    /// .mov, .mkv, .avi), libvpx-vp9 (the default for .webm), libx265,
    /// libaom-av1, libsvtav1, ... (`ffmpeg -encoders` lists them).
    #[arg(long, value_name = "ENCODER")]
    pub codec: Option<String>,

    /// Constant quality of a video output, lower is better (the encoder's
    /// scale: libx264 default 23, libvpx-vp9 31).
    #[arg(long, value_name = "N")]
    pub crf: Option<f32>,

    /// Encoder speed for a video output: ultrafast, superfast, veryfast
    /// (the default: the encoder must keep up with the effect), faster,
    /// fast, medium, slow, slower, veryslow (slower gives smaller files;
    /// mapped to cpu-used for VP9/AV1), or the encoder's own value.
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,

    /// Write a video at the input's size instead of the processing size
    /// (--size): frames are painted small, then scaled back up.
    #[arg(long)]
    pub keep_size: bool,

    /// Blend the effect with the original frame: 1 is the full effect, 0
    /// the original.
    #[arg(long, default_value_t = 1.0, value_parser = parse_strength, value_name = "0..1")]
    pub strength: f64,

    /// Frames per effect call for video (default: what the effect prefers;
    /// batching helps networks on GPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batch: Option<u16>,
}

/// Parses `--strength` (0..1).
pub fn parse_strength(s: &str) -> Result<f64> {
    let v: f64 = s
        .parse()
        .map_err(|_| anyhow::anyhow!("--strength must be a number from 0 to 1, got '{s}'"))?;
    if !(0.0..=1.0).contains(&v) {
        bail!("--strength {v} is out of range: use 0 (the original) to 1 (the full effect)");
    }
    Ok(v)
}

impl VideoArgs {
    /// Pipeline options for these flags, `--size` and the device, with the
    /// progress bar on and Ctrl-C wired to stop the conversion.
    pub fn options(&self, size: Option<u32>, device: Device) -> Options {
        Options {
            size,
            keep_size: self.keep_size,
            strength: self.strength,
            encode: EncodeOptions {
                codec: self.codec.clone(),
                crf: self.crf,
                preset: self.preset.clone(),
            },
            device,
            batch: self.batch.map(usize::from),
            progress: true,
            cancel: Some(video::interrupt::flag()),
            ..Options::default()
        }
    }

    /// Warns about video-only flags given for a still image.
    pub fn warn_if_image(&self, command: &str) {
        if self.codec.is_some() || self.crf.is_some() || self.preset.is_some() || self.keep_size {
            eprintln!(
                "{command}: note: --codec, --crf, --preset and --keep-size only apply to video"
            );
        }
    }
}

/// Whether a command should treat this input/output pair as video: the
/// input has a video name (or is a URL or device), or it is not a still
/// image and the output is a video name, `-` or a folder.
pub fn is_video_job(input: &Path, output: &Path) -> bool {
    let out = output.to_string_lossy();
    let output_is_video = video::is_video_path(output) || output.is_dir() || out.ends_with('/');
    video::is_video_path(input)
        || (!input.is_dir() && !stylestream::image_io::is_image_path(input) && output_is_video)
}

/// Converts a video through `effects`, printing the plan, a progress bar
/// and a summary on stderr (`command: ...`), and the output path on stdout
/// (unless the video itself goes to stdout).
pub fn run_video(
    command: &str,
    input: &Path,
    output: &Path,
    options: &Options,
    effects: &mut [Box<dyn Effect + '_>],
) -> Result<()> {
    let summary = video::convert(input, output, options, effects)?;
    for line in summary.lines() {
        eprintln!("{command}: {line}");
    }
    if output.as_os_str() != "-" {
        println!("{}", output.display());
    }
    Ok(())
}
