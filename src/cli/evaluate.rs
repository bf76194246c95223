//! `stylestream evaluate`: the perceptual losses of a painted image, to
//! compare results (a trained network's against Gatys', say) by the same
//! measure training and Gatys optimise.

use std::path::PathBuf;

use anyhow::{bail, Result};
use stylestream::image_io;
use stylestream::training::objective::PerceptualObjective;
use stylestream::vgg::parse_layer_list;

use super::common::{load_for_effect, parse_size, ComputeArgs};

/// Measure how well an image paints a photo in a painting's style.
///
/// Prints the weighted content, style and total-variation losses of
/// --image against --content (the photo) and --style (the painting), as
/// `stylestream-train` and `stylestream gatys` define them; lower is better
/// for each. Both images are resized to --size first, so results of
/// different sizes compare fairly.
///
/// Example:
///   stylestream evaluate --content photo.jpg --style starry_night.jpg --image painted.png
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The photo that was painted.
    #[arg(long, short, value_name = "IMAGE")]
    content: PathBuf,

    /// The painting whose style was meant.
    #[arg(long, short, value_name = "IMAGE")]
    style: PathBuf,

    /// The painted result to measure.
    #[arg(long, short, value_name = "IMAGE")]
    image: PathBuf,

    /// Longer side both images are compared at.
    #[arg(long, default_value = "512", value_parser = parse_size)]
    size: u32,

    /// Longer side the painting is scaled to (default: 512, as in training).
    #[arg(long, default_value = "512", value_parser = parse_size)]
    style_size: u32,

    #[arg(long, default_value = "relu2_2")]
    content_layers: String,

    #[arg(long, default_value = "relu1_1,relu2_1,relu3_1,relu4_1")]
    style_layers: String,

    /// Defaults: stylestream-train's.
    #[arg(long, default_value_t = 150.0)]
    content_weight: f64,

    #[arg(long, default_value_t = 100.0)]
    style_weight: f64,

    #[arg(long, default_value_t = 1.0)]
    tv_weight: f64,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let (device, vgg) = args.compute.open()?;
    let photo = load_for_effect(&args.content, Some(args.size), &device)?.tensor;
    let image = load_for_effect(&args.image, Some(args.size), &device)?.tensor;
    if photo.dims() != image.dims() {
        bail!(
            "{} is {:?} at --size {}, but {} is {:?}: they must have the same aspect ratio",
            args.image.display(),
            image.dims(),
            args.size,
            args.content.display(),
            photo.dims()
        );
    }
    let painting = image_io::load_image(&args.style)?;
    let painting = image_io::image_to_tensor(
        &image_io::resize_longer_side(&painting.rgb, args.style_size),
        &device,
    )?;
    let objective = PerceptualObjective::style(
        &vgg,
        (
            &parse_layer_list(&args.content_layers)?,
            args.content_weight,
        ),
        &painting,
        (&parse_layer_list(&args.style_layers)?, args.style_weight),
        args.tv_weight,
    )?;
    let v = objective.evaluate(&image, &photo)?.values()?;
    if args.json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!("content {:.4e}", v.content);
        println!("style   {:.4e}", v.style);
        println!("tv      {:.4e}", v.tv);
        println!("total   {:.4e}", v.total);
    }
    Ok(())
}
