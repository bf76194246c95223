//! `stylestream stylize`: paint images with trained style networks.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::Tensor;
use stylestream::device::DeviceChoice;
use stylestream::effects::color::transfer_luminance;
use stylestream::effects::style_net::StyleNet;
use stylestream::effects::Effect;
use stylestream::image_io;
use stylestream::models::resolve_model;

use super::common::{load_for_effect, parse_size, progress_bar, save_result};
use super::live::LiveArgs;
use super::video_args::{is_video_job, run_video, VideoArgs};

/// Paint images in a learned style, in one fast pass per image.
///
/// A model is a network trained by `stylestream-train` on one painting.
/// `--model NAME` looks for weights/NAME.safetensors (see `stylestream
/// models` for the list); a path to a .safetensors file works too. Several
/// --model flags apply the models one after another, in order.
///
/// The input may be one image, a folder of images (the output is then a
/// folder, created if needed, with one PNG per input; unreadable images are
/// reported and skipped) or a video (anything FFmpeg reads). A video is
/// written with every frame, its timing and its audio kept: to a video
/// file (codec from the extension: .mp4 H.264, .webm VP9, .mkv), to a
/// folder of numbered PNGs, or as y4m to stdout with `--output -`.
///
/// Examples:
///   stylestream stylize --input photo.jpg --output painted.png --model starry_night
///   stylestream stylize --input photos/ --output painted/ --model the_scream_fast --size 640
///   stylestream stylize --input clip.mp4 --output painted.mp4 --model udnie_fast --size 640
///   stylestream stylize --input clip.mp4 --output - --model udnie_fast | ffplay -
///
/// Live: `--input webcam` (or webcam:N, see `stylestream devices`), or any
/// video with --realtime, is painted as it comes; several --model flags
/// are then alternatives switched with the arrow keys. Outputs (any
/// combination): `--output window` (the default), `--output
/// v4l2:/dev/videoN` (a virtual camera), `--serve 127.0.0.1:8080` (MJPEG
/// for a browser), `--output rec.mp4`. The window's keys are listed when it
/// opens.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// An image, a folder of images, a video, or webcam[:N] (live).
    #[arg(long, short, value_name = "IMAGE|DIR|VIDEO|webcam")]
    input: PathBuf,

    /// The output image, or folder when the input is a folder. Live, it
    /// may be repeated: window, v4l2:/dev/videoN, or a video file.
    #[arg(long, short, value_name = "IMAGE|DIR")]
    output: Vec<PathBuf>,

    /// Model name (weights/NAME.safetensors) or path; repeat to chain models.
    #[arg(long, short, value_name = "NAME|PATH", required = true)]
    model: Vec<String>,

    /// Longer side to paint at, in pixels (default: the image's own size).
    /// The networks' strokes have a fixed size in pixels, so smaller sizes
    /// give bolder strokes.
    #[arg(long, value_name = "PIXELS", value_parser = parse_size)]
    size: Option<u32>,

    /// Keep the photo's colours: take only the painting's luminance.
    #[arg(long)]
    preserve_color: bool,

    /// Where to compute: cpu, cuda:N (needs a build with `--features cuda`),
    /// or auto.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    device: DeviceChoice,

    #[command(flatten)]
    video: VideoArgs,

    #[command(flatten)]
    live: LiveArgs,
}

/// The model chain followed by the photo's colours, as one effect, for
/// `--preserve-color` on video.
struct KeepColors(Vec<StyleNet>);

impl Effect for KeepColors {
    fn describe(&self) -> String {
        let names: Vec<String> = self.0.iter().map(|n| n.describe()).collect();
        format!("{}, photo colours kept", names.join(" -> "))
    }

    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        let mut out = frame.clone();
        for net in self.0.iter_mut() {
            out = net.apply(&out)?;
        }
        Ok(transfer_luminance(&out, frame)?)
    }
}

/// Applies the chain, then the colour and strength options.
fn paint(effects: &mut [StyleNet], frame: &Tensor, args: &Args) -> Result<Tensor> {
    let mut out = frame.clone();
    for e in effects.iter_mut() {
        out = e.apply(&out)?;
    }
    if args.preserve_color {
        out = transfer_luminance(&out, frame)?;
    }
    let strength = args.video.strength;
    if strength < 1.0 {
        out = ((out * strength)? + (frame * (1.0 - strength))?)?;
    }
    Ok(out)
}

/// The output name for `input` inside an output folder.
fn output_in_dir(dir: &Path, input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    dir.join(format!("{stem}.png"))
}

pub fn run(args: Args) -> Result<()> {
    let device = args.device.open()?;
    let mut effects = Vec::new();
    for m in &args.model {
        let path = resolve_model(m)?;
        let net = StyleNet::load(&path, &device)?;
        eprintln!("stylize: model {}", net.describe());
        effects.push(net);
    }

    // The live filter (webcam, --realtime): src/cli/live.rs.
    if args.live.is_live(&args.input) {
        let (input, outputs) = (&args.input, &args.output);
        let (preserve, size, video) = (args.preserve_color, args.size, &args.video);
        return super::live::run(
            input, outputs, effects, preserve, size, device, video, &args.live,
        );
    }
    args.live.check_not_given()?;
    let output = match args.output.as_slice() {
        [one] => one.clone(),
        [] => bail!("--output is required (the image, folder or video to write)"),
        _ => bail!("one --output only (several are for the live filter: webcam or --realtime)"),
    };

    if is_video_job(&args.input, &output) {
        stylestream::video::check_paths(&args.input, &output)?;
        let mut chain: Vec<Box<dyn Effect>> = if args.preserve_color {
            vec![Box::new(KeepColors(effects))]
        } else {
            effects
                .into_iter()
                .map(|n| Box::new(n) as Box<dyn Effect>)
                .collect()
        };
        let options = args.video.options(args.size, device);
        return run_video("stylize", &args.input, &output, &options, &mut chain);
    }
    args.video.warn_if_image("stylize");

    if args.input.is_dir() {
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&args.input)
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", args.input.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && image_io::is_image_path(p))
            .collect();
        inputs.sort();
        if inputs.is_empty() {
            bail!("no images in {}", args.input.display());
        }
        if output.exists() && !output.is_dir() {
            bail!(
                "the input {} is a folder, so --output must be a folder; {} is a file",
                args.input.display(),
                output.display()
            );
        }
        if output.canonicalize().ok() == args.input.canonicalize().ok() {
            bail!(
                "refusing to write into the input folder {}",
                args.input.display()
            );
        }
        std::fs::create_dir_all(&output).map_err(|e| {
            anyhow::anyhow!("cannot create output folder {}: {e}", output.display())
        })?;
        let bar = progress_bar(inputs.len() as u64, "stylize");
        let started = Instant::now();
        let mut failed = 0usize;
        for input in &inputs {
            let out_path = output_in_dir(&output, input);
            let result = load_for_effect(input, args.size, &device).and_then(|img| {
                let painted = paint(&mut effects, &img.tensor, &args)?;
                save_result(&painted, img.alpha.as_ref(), &out_path)
            });
            if let Err(e) = result {
                bar.println(format!("stylize: skipping {}: {e:#}", input.display()));
                failed += 1;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        eprintln!(
            "stylize: {} of {} images painted into {} in {:.1}s",
            inputs.len() - failed,
            inputs.len(),
            output.display(),
            started.elapsed().as_secs_f64()
        );
        if failed > 0 {
            bail!("{failed} image(s) could not be painted (see above)");
        }
        return Ok(());
    }

    image_io::check_output_path(&output, &[&args.input])?;
    let img = load_for_effect(&args.input, args.size, &device)?;
    let started = Instant::now();
    let painted = paint(&mut effects, &img.tensor, &args)?;
    save_result(&painted, img.alpha.as_ref(), &output)?;
    let (_, _, h, w) = img.tensor.dims4()?;
    eprintln!(
        "stylize: {w}x{h} painted in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    println!("{}", output.display());
    Ok(())
}
