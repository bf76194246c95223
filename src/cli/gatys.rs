//! `stylestream gatys`: optimisation-based style transfer on a still image.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use stylestream::effects::gatys::{Gatys, GatysConfig, GatysInit, GatysOptimizer};
use stylestream::image_io;
use stylestream::losses::equal_weights;
use stylestream::vgg::parse_layer_list;

use super::common::{load_for_effect, parse_size, progress_bar, save_result, ComputeArgs};

/// Paint a photo in the style of a painting by optimising its pixels (Gatys et al.).
///
/// Slow but needs no training: each step runs VGG19 forward and backward.
/// On a CPU expect about a minute per 100 steps at 256 px and several at
/// 512 px; the progress bar shows the loss terms (content, style, total
/// variation) falling. Raise --style-weight for bolder brushwork, raise
/// --content-weight to keep more of the photo, and use --preserve-color to
/// keep the photo's colours.
///
/// Example:
///   stylestream gatys --content photo.jpg --style starry_night.jpg --output out.png --size 384
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The photo to paint.
    #[arg(long, short, value_name = "IMAGE")]
    content: PathBuf,

    /// The painting whose style to take.
    #[arg(long, short, value_name = "IMAGE")]
    style: PathBuf,

    /// Where to write the result (.png, .jpg, .webp or .bmp).
    #[arg(long, short, value_name = "IMAGE")]
    output: PathBuf,

    /// Longer side of the result, in pixels.
    #[arg(long, value_name = "PIXELS", default_value = "512", value_parser = parse_size)]
    size: u32,

    /// Longer side the style image is scaled to (default: --size). Smaller
    /// values give larger brush strokes.
    #[arg(long, value_name = "PIXELS", value_parser = parse_size)]
    style_size: Option<u32>,

    /// Optimisation steps (each one VGG19 forward + backward).
    #[arg(long, default_value_t = 300)]
    steps: usize,

    /// Weight of the content loss (feature MSE at the content layers).
    #[arg(long, default_value_t = GatysConfig::default().content_weight)]
    content_weight: f64,

    /// Weight of the style loss (Gram-matrix MSE, layers weighted equally).
    #[arg(long, default_value_t = GatysConfig::default().style_weight)]
    style_weight: f64,

    /// Weight of the total-variation smoothness term.
    #[arg(long, default_value_t = GatysConfig::default().tv_weight)]
    tv_weight: f64,

    /// Layers whose Gram matrices define the style.
    #[arg(long, default_value = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1")]
    style_layers: String,

    /// Layers whose activations define the content.
    #[arg(long, default_value = "relu4_2")]
    content_layers: String,

    /// lbfgs converges in fewer steps; adam is steadier on very large images.
    #[arg(long, value_enum, default_value_t = GatysOptimizer::Lbfgs)]
    optimizer: GatysOptimizer,

    /// Learning rate (default: 1 for lbfgs, 2 pixel levels for adam).
    #[arg(long)]
    learning_rate: Option<f64>,

    /// Start from the content photo or from random noise.
    #[arg(long, value_enum, default_value_t = GatysInit::Content)]
    init: GatysInit,

    /// Seed for the noise initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Keep the photo's colours: transfer only luminance.
    #[arg(long)]
    preserve_color: bool,

    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn run(args: Args) -> Result<()> {
    image_io::check_output_path(&args.output, &[&args.content, &args.style])?;
    let style_layers = parse_layer_list(&args.style_layers)?;
    let content_layers = parse_layer_list(&args.content_layers)?;
    let config = GatysConfig {
        content_layers,
        style_layers: equal_weights(&style_layers),
        content_weight: args.content_weight,
        style_weight: args.style_weight,
        tv_weight: args.tv_weight,
        steps: args.steps,
        optimizer: args.optimizer,
        learning_rate: args.learning_rate.unwrap_or(match args.optimizer {
            GatysOptimizer::Lbfgs => 1.0,
            GatysOptimizer::Adam => 2.0,
        }),
        init: args.init,
        seed: args.seed,
        preserve_color: args.preserve_color,
    };

    let (device, vgg) = args.compute.open()?;
    let content = load_for_effect(&args.content, Some(args.size), &device)?;
    let style = load_for_effect(
        &args.style,
        Some(args.style_size.unwrap_or(args.size)),
        &device,
    )?;
    let (_, _, h, w) = content.tensor.dims4()?;
    eprintln!(
        "gatys: {}x{} px on {}, {} steps of {:?}",
        w,
        h,
        stylestream::device::describe(&device),
        args.steps,
        args.optimizer
    );

    let bar = progress_bar(args.steps as u64, "gatys");
    let started = Instant::now();
    let bar_for_steps = bar.clone();
    let mut gatys = Gatys::new(&vgg, &style.tensor, config)?.on_step(move |l| {
        bar_for_steps.set_position(l.step as u64);
        bar_for_steps.set_message(format!(
            "content {:.3e} style {:.3e} tv {:.3e}",
            l.content, l.style, l.tv
        ));
    });
    let painted = gatys.paint(&content.tensor)?;
    bar.finish_and_clear();
    save_result(&painted, content.alpha.as_ref(), &args.output)?;
    let (first, last) = (gatys.first, gatys.best);
    eprintln!(
        "gatys: {} steps in {:.1}s (best at step {}); style loss {:.3e} -> {:.3e} ({:.1}x lower), content {:.3e}, tv {:.3e}",
        gatys.steps_run,
        started.elapsed().as_secs_f64(),
        last.step,
        first.style,
        last.style,
        first.style / last.style.max(f64::MIN_POSITIVE),
        last.content,
        last.tv
    );
    println!("{}", args.output.display());
    Ok(())
}
