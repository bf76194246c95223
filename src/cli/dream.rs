//! `stylestream dream`: multi-octave DeepDream on a still image.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use stylestream::effects::dream::{mean_activations, Dream, DreamConfig};
use stylestream::image_io;
use stylestream::vgg::parse_layer_list;

use super::common::{load_for_effect, parse_size, progress_bar, save_result, ComputeArgs};

/// Amplify what VGG19 sees in an image (DeepDream).
///
/// Gradient ascent on the image makes the chosen layer's activations
/// stronger: shallow layers (relu2_x, relu3_x) grow strokes and textures,
/// deep ones (relu4_x, relu5_x) grow eyes, animal faces and architecture.
/// The image is dreamed at several scales (octaves), smallest first, with a
/// random shift (jitter) each step so the patterns do not follow the pixel grid.
///
/// Examples:
///   stylestream dream --input photo.jpg --output dream.png
///   stylestream dream --input photo.jpg --output fur.png --layers relu4_1 --channels 12,40
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image to dream on.
    #[arg(long, short, value_name = "IMAGE")]
    input: PathBuf,

    /// Where to write the result (.png, .jpg, .webp or .bmp).
    #[arg(long, short, value_name = "IMAGE")]
    output: PathBuf,

    /// Layers to amplify, comma separated (conv/relu/pool names).
    #[arg(long, default_value = "relu4_2")]
    layers: String,

    /// Amplify only these channels of the layers (comma separated numbers)
    /// instead of the whole layer: each channel is one "thing" the network sees.
    #[arg(long, value_delimiter = ',')]
    channels: Vec<usize>,

    /// Number of scales to dream at.
    #[arg(long, default_value_t = DreamConfig::default().octaves)]
    octaves: usize,

    /// Size ratio between consecutive octaves.
    #[arg(long, default_value_t = DreamConfig::default().octave_scale)]
    octave_scale: f64,

    /// Gradient-ascent steps per octave.
    #[arg(long, default_value_t = DreamConfig::default().steps)]
    steps: usize,

    /// Step length in pixel levels (0..255) after gradient normalisation.
    #[arg(long, default_value_t = DreamConfig::default().step_size)]
    step_size: f64,

    /// Largest random shift in pixels before each step (0 disables jitter).
    #[arg(long, default_value_t = DreamConfig::default().jitter)]
    jitter: usize,

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

    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn run(args: Args) -> Result<()> {
    image_io::check_output_path(&args.output, &[&args.input])?;
    let layers = parse_layer_list(&args.layers)?;
    let config = DreamConfig {
        layers: layers.clone(),
        channels: args.channels,
        octaves: args.octaves,
        octave_scale: args.octave_scale,
        steps: args.steps,
        step_size: args.step_size,
        jitter: args.jitter,
        seed: args.seed,
        tile_size: args.tile_size,
    };
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
    let dreamed = dream.dream(&input.tensor)?;
    bar.finish_and_clear();
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
