//! `stylestream dream`: multi-octave DeepDream on a still image or a video.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use stylestream::effects::dream::{mean_activations, Dream, DreamConfig, PRESETS};
use stylestream::effects::dream_stream::{DreamStream, StreamConfig};
use stylestream::effects::Effect;
use stylestream::image_io;
use stylestream::vgg::parse_layer_list;

use super::common::{load_for_effect, parse_size, progress_bar, save_result, ComputeArgs};
use super::video_args::{is_video_job, run_video, VideoArgs};

/// Amplify what VGG19 sees in an image (DeepDream).
///
/// Gradient ascent on the image makes the chosen layer's activations
/// stronger: shallow layers (relu2_x, relu3_x) grow strokes and textures,
/// deep ones (relu4_x, relu5_x) grow eyes, animal faces and architecture.
/// The image is dreamed at several scales (octaves), smallest first, with a
/// random shift (jitter) each step so the patterns do not follow the pixel grid.
///
/// A video input (anything FFmpeg reads) gives a video output with the
/// same frames, timing and audio; each frame starts from what the previous
/// one dreamed (--carry), so the patterns stay put instead of boiling.
///
/// Examples:
///   stylestream dream --input photo.jpg --output dream.png
///   stylestream dream --input photo.jpg --output fur.png --layers relu4_1 --channels 12,40
///   stylestream dream --input clip.mp4 --output dream.mp4 --size 480 --octaves 2 --steps 4
///   stylestream dream --input clip.mp4 --output - --size 320 | ffplay -
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image or video to dream on (a video file, URL or device).
    #[arg(long, short, value_name = "IMAGE|VIDEO")]
    input: PathBuf,

    /// Where to write the result: an image (.png, .jpg, .webp, .bmp); for a
    /// video, a video file (.mp4, .webm, .mkv, .mov, .avi), a folder (an
    /// existing one, or a name ending in /) for numbered PNG frames, or -
    /// for yuv4mpegpipe on stdout (`| ffplay -`).
    #[arg(long, short, value_name = "IMAGE|VIDEO|DIR|-")]
    output: PathBuf,

    /// A named set of the settings below: light, medium (the default),
    /// deep, or video (light per frame, for --carry). Flags given
    /// explicitly override the preset's values.
    #[arg(long, visible_alias = "dream-preset", default_value = "medium", value_parser = parse_preset)]
    preset: String,

    /// Layers to amplify, comma separated (conv/relu/pool names) [preset
    /// medium: relu4_2].
    #[arg(long)]
    layers: Option<String>,

    /// Amplify only these channels of the layers (comma separated numbers)
    /// instead of the whole layer: each channel is one "thing" the network sees.
    #[arg(long, value_delimiter = ',')]
    channels: Vec<usize>,

    /// Number of scales to dream at [medium: 4].
    #[arg(long)]
    octaves: Option<usize>,

    /// Size ratio between consecutive octaves [medium: 1.4].
    #[arg(long)]
    octave_scale: Option<f64>,

    /// Gradient-ascent steps per octave [medium: 10].
    #[arg(long)]
    steps: Option<usize>,

    /// Step length in pixel levels (0..255) after gradient normalisation
    /// [medium: 1.5].
    #[arg(long)]
    step_size: Option<f64>,

    /// Largest random shift in pixels before each step (0 disables jitter)
    /// [medium: 32].
    #[arg(long)]
    jitter: Option<usize>,

    /// Seed for the jitter.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Compute each step's gradient in tiles of at most this many pixels a
    /// side, so that large images fit in memory (0: never tile).
    #[arg(long, default_value_t = DreamConfig::default().tile_size, value_name = "PIXELS")]
    tile_size: usize,

    /// Longer side to dream at, in pixels (default: the image's own size).
    #[arg(long, value_name = "PIXELS", value_parser = parse_size)]
    size: Option<u32>,

    /// Video only: how much of the previous frame's dream carries into the
    /// next (0: dream every frame afresh, which flickers; 0.9: patterns
    /// persist strongly). Carried frames take fewer steps; scene cuts reset.
    #[arg(long, visible_alias = "dream-carry", default_value_t = StreamConfig::default().carry, value_name = "0..1")]
    carry: f64,

    /// Video only: mean change between consecutive frames (0..1 pixel
    /// values) above which a frame is a scene cut that resets the carry.
    #[arg(long, default_value_t = StreamConfig::default().cut_threshold, value_name = "0..1")]
    cut_threshold: f64,

    #[command(flatten)]
    video: VideoArgs,

    #[command(flatten)]
    compute: ComputeArgs,
}

/// Checks `--preset` against the known names.
fn parse_preset(s: &str) -> Result<String> {
    match DreamConfig::preset(s) {
        Some(_) => Ok(s.to_string()),
        None => bail!(
            "unknown preset '{s}'; choose one of: {}",
            PRESETS
                .iter()
                .map(|(n, d)| format!("{n} ({d})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The preset's settings with the explicitly given flags on top.
fn dream_config(args: &Args) -> Result<DreamConfig> {
    let mut c = DreamConfig::preset(&args.preset).expect("checked by parse_preset");
    if let Some(l) = &args.layers {
        c.layers = parse_layer_list(l)?;
    }
    c.channels = args.channels.clone();
    c.octaves = args.octaves.unwrap_or(c.octaves);
    c.octave_scale = args.octave_scale.unwrap_or(c.octave_scale);
    c.steps = args.steps.unwrap_or(c.steps);
    c.step_size = args.step_size.unwrap_or(c.step_size);
    c.jitter = args.jitter.unwrap_or(c.jitter);
    c.seed = args.seed;
    c.tile_size = args.tile_size;
    Ok(c)
}

pub fn run(args: Args) -> Result<()> {
    if !(0.0..1.0).contains(&args.carry) {
        bail!(
            "--carry {} is out of range: use 0 (no carry) up to, not including, 1",
            args.carry
        );
    }
    if is_video_job(&args.input, &args.output) {
        return run_on_video(args);
    }
    args.video.warn_if_image("dream");
    image_io::check_output_path(&args.output, &[&args.input])?;
    let config = dream_config(&args)?;
    let layers = config.layers.clone();
    let (device, vgg) = args.compute.open()?;
    let input = load_for_effect(&args.input, args.size, &device)?;
    let (_, _, h, w) = input.tensor.dims4()?;

    let probe = Dream::new(&vgg, config.clone())?;
    let total = probe.steps_per_frame(h, w);
    drop(probe);
    eprintln!(
        "dream: {}x{} px on {}, {} steps",
        w,
        h,
        stylestream::device::describe(&device),
        total
    );
    let bar = progress_bar(total as u64, "dream");
    let bar_for_steps = bar.clone();
    let started = Instant::now();
    let mut dream = Dream::new(&vgg, config)?.on_step(move |p| {
        bar_for_steps.inc(1);
        bar_for_steps.set_message(format!("octave {} objective {:.3e}", p.octave, p.objective));
    });
    let mut dreamed = dream.dream(&input.tensor)?;
    bar.finish_and_clear();
    let s = args.video.strength;
    if s < 1.0 {
        dreamed = ((dreamed * s)? + (&input.tensor * (1.0 - s))?)?;
    }
    save_result(&dreamed, input.alpha.as_ref(), &args.output)?;
    let before = mean_activations(&vgg, &input.tensor, &layers)?;
    let after = mean_activations(&vgg, &dreamed, &layers)?;
    for ((layer, b), a) in layers.iter().zip(before).zip(after) {
        eprintln!(
            "dream: mean {layer} activation {b:.3} -> {a:.3} ({:.2}x)",
            a / b.max(1e-12)
        );
    }
    eprintln!("dream: done in {:.1}s", started.elapsed().as_secs_f64());
    println!("{}", args.output.display());
    Ok(())
}

/// `dream` on a video: a [`DreamStream`] (or a plain [`Dream`] with
/// `--carry 0`) through the video pipeline.
fn run_on_video(args: Args) -> Result<()> {
    // Path mistakes before the VGG19 weights load.
    stylestream::video::check_paths(&args.input, &args.output)?;
    let config = dream_config(&args)?;
    let (device, vgg) = args.compute.open()?;
    let dream = Dream::new(&vgg, config)?;
    let effect: Box<dyn Effect + '_> = if args.carry > 0.0 {
        Box::new(DreamStream::new(
            dream,
            StreamConfig {
                carry: args.carry,
                cut_threshold: args.cut_threshold,
            },
        ))
    } else {
        Box::new(dream)
    };
    eprintln!("dream: on {}", stylestream::device::describe(&device));
    let options = args.video.options(args.size, device);
    let mut effects = [effect];
    run_video("dream", &args.input, &args.output, &options, &mut effects)
}
