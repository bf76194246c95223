//! `stylestream-train`: learns feed-forward style networks (Johnson et al. 2016).
//!
//! Not implemented yet: this binary exists so the layout and the command
//! name are in place. Its `--help` says what it will do.

use clap::Parser;

/// Train a feed-forward style network (Johnson, Alahi, Fei-Fei 2016) — coming soon.
///
/// stylestream-train will learn a small convolutional network that paints any
/// photo in the style of one painting in a single forward pass, fast enough
/// for live video. It optimises the network on a folder of photos with VGG19
/// perceptual losses: a content loss (feature MSE), a style loss (Gram
/// matrices of the painting) and total variation, then writes the model as
/// safetensors for `stylestream stylize --model`.
///
/// Planned usage:
///   stylestream-train --style starry_night.jpg --content-dir photos/ --output starry.safetensors
///
/// Until then, `stylestream gatys` gives the same kind of painting by
/// optimising each image directly (slowly).
#[derive(Parser, Debug)]
#[command(name = "stylestream-train", version)]
struct Args {}

fn main() {
    let _ = Args::parse();
    eprintln!(
        "stylestream-train: training is not implemented yet; \
         see `stylestream-train --help` and use `stylestream gatys` meanwhile"
    );
    std::process::exit(2);
}
