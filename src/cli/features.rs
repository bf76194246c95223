//! `stylestream features`: what VGG19 sees, written to a file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use stylestream::vgg::parse_layer_list;

use super::common::{load_for_effect, parse_size, ComputeArgs};

/// Write VGG19 activations of an image to a safetensors file.
///
/// Each requested layer is stored under its name (f32, NCHW, batch 1),
/// computed on the image at its own size unless --size is given. Use it to
/// inspect what the network sees or to compare with other implementations,
/// e.g. in Python: `safetensors.numpy.load_file("feats.safetensors")["relu4_2"]`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image (PNG, JPEG, WebP or BMP).
    #[arg(long, short, value_name = "IMAGE")]
    input: PathBuf,

    /// Comma-separated layer names: conv1_1..conv5_4, relu1_1..relu5_4, pool1..pool5.
    #[arg(
        long,
        value_name = "LAYERS",
        default_value = "relu1_1,relu2_1,relu3_1,relu4_1,relu4_2,relu5_1"
    )]
    layers: String,

    /// Output file (.safetensors).
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,

    /// Resize the image so its longer side has this many pixels first.
    #[arg(long, value_name = "PIXELS", value_parser = parse_size)]
    size: Option<u32>,

    #[command(flatten)]
    compute: ComputeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let layers = parse_layer_list(&args.layers)?;
    if args.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: the output of `features` must end in .safetensors",
            args.output.display()
        );
    }
    if args.output == args.input {
        bail!(
            "{}: output would overwrite the input",
            args.output.display()
        );
    }
    let (device, vgg) = args.compute.open()?;
    let image = load_for_effect(&args.input, args.size, &device)?;
    let acts = vgg.forward_rgb(&image.tensor, &layers)?;
    let named: std::collections::HashMap<String, candle_core::Tensor> = layers
        .iter()
        .map(|l| {
            Ok((
                l.name().to_string(),
                acts[l].to_device(&candle_core::Device::Cpu)?,
            ))
        })
        .collect::<Result<_>>()?;
    let tmp = args.output.with_extension("safetensors.tmp");
    candle_core::safetensors::save(&named, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}", args.output.display())
    })?;
    for l in &layers {
        eprintln!("{:>8}: {:?}", l.name(), acts[l].dims());
    }
    println!("wrote {} layers to {}", layers.len(), args.output.display());
    Ok(())
}
