//! `stylestream dream`: multi-octave DeepDream on a still image or a video.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use stylestream::effects::dream::{mean_activations, Dream, DreamConfig};
use stylestream::image_io;
use stylestream::live::LiveChain;

use super::common::{load_for_effect, parse_size, progress_bar, save_result, ComputeArgs};
use super::dream_args::{Bare, DreamArgs};
use super::live::{LiveArgs, Session};
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
/// Live: `--input webcam` (or webcam:N), or any video with --realtime, is
/// dreamed as it comes, to the same outputs as `stylestream stylize`'s
/// live filter (a window by default, --serve, v4l2:/dev/videoN, a
/// recording); use small sizes and few steps on a CPU. To dream on a
/// style network's painting, or paint a dream, chain them with
/// `stylestream stylize --model NAME --dream`.
///
/// Examples:
///   stylestream dream --input photo.jpg --output dream.png
///   stylestream dream --input photo.jpg --output fur.png --layers relu4_1 --channels 12,40
///   stylestream dream --input clip.mp4 --output dream.mp4 --size 480 --octaves 2 --steps 4
///   stylestream dream --input clip.mp4 --output - --size 320 | ffplay -
///   stylestream dream --input webcam --size 320 --dream-preset video --steps 2
///   stylestream dream --input clip.mp4 --realtime --size 320 --output live.mp4 --duration 10
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The image or video to dream on (a video file, URL or device), or
    /// webcam[:N] (live).
    #[arg(long, short, value_name = "IMAGE|VIDEO|webcam")]
    input: PathBuf,

    /// Where to write the result: an image (.png, .jpg, .webp, .bmp); for a
    /// video, a video file (.mp4, .webm, .mkv, .mov, .avi), a folder (an
    /// existing one, or a name ending in /) for numbered PNG frames, or -
    /// for yuv4mpegpipe on stdout (`| ffplay -`). Live, it may be repeated:
    /// window, v4l2:/dev/videoN, or a video file.
    #[arg(long, short, value_name = "IMAGE|VIDEO|DIR|-")]
    output: Vec<PathBuf>,

    /// Longer side to dream at, in pixels (default: the image's own size).
    #[arg(long, value_name = "PIXELS", value_parser = parse_size)]
    size: Option<u32>,

    #[command(flatten)]
    dream: Bare,

    #[command(flatten)]
    video: VideoArgs,

    #[command(flatten)]
    compute: ComputeArgs,

    #[command(flatten)]
    live: LiveArgs,
}

impl Args {
    fn settings(&self) -> &DreamArgs {
        &self.dream.0
    }
}

/// The one output of a still image or video job.
fn single_output(outputs: &[PathBuf]) -> Result<&Path> {
    match outputs {
        [one] => Ok(one),
        [] => bail!("--output is required (the image or video to write)"),
        _ => bail!("one --output only (several are for live input: webcam or --realtime)"),
    }
}

pub fn run(args: Args) -> Result<()> {
    args.settings().stream()?; // checks --carry
                               // `--preset` was the dream's preset before it was the encoder's; the
                               // dream-only names cannot be encoder speeds (medium is both).
    if let Some(p) = args.video.preset.as_deref() {
        if p != "medium" && DreamConfig::preset(p).is_some() {
            bail!("--preset sets the video encoder's speed; for the dream's preset, use --dream-preset {p}");
        }
    }
    if args.live.is_live(&args.input) {
        return run_live(args);
    }
    args.live.check_not_given()?;
    let output = single_output(&args.output)?.to_path_buf();
    if is_video_job(&args.input, &output) {
        return run_on_video(args, &output);
    }
    args.video.warn_if_image("dream");
    image_io::check_output_path(&output, &[&args.input])?;
    let config = args.settings().config("medium")?;
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
    save_result(&dreamed, input.alpha.as_ref(), &output)?;
    let before = mean_activations(&vgg, &input.tensor, &layers)?;
    let after = mean_activations(&vgg, &dreamed, &layers)?;
    for ((layer, b), a) in layers.iter().zip(before).zip(after) {
        eprintln!(
            "dream: mean {layer} activation {b:.3} -> {a:.3} ({:.2}x)",
            a / b.max(1e-12)
        );
    }
    eprintln!("dream: done in {:.1}s", started.elapsed().as_secs_f64());
    println!("{}", output.display());
    Ok(())
}

/// `dream` on a video: a carried dream pass (a plain [`Dream`] with
/// `--carry 0`) through the video pipeline.
fn run_on_video(args: Args, output: &Path) -> Result<()> {
    // Path mistakes before the VGG19 weights load.
    stylestream::video::check_paths(&args.input, output)?;
    let (device, vgg) = args.compute.open()?;
    let effect = args.settings().pass(&vgg, "medium", true)?;
    eprintln!("dream: on {}", stylestream::device::describe(&device));
    let options = args.video.options(args.size, device);
    let mut effects = [effect];
    run_video("dream", &args.input, output, &options, &mut effects)
}

/// `dream` live (webcam, --realtime): stylize's live path with a dream
/// pass and no model; the D key turns the dream off and on.
fn run_live(args: Args) -> Result<()> {
    let (input, outputs, size) = (&args.input, &args.output, args.size);
    let session = Session::open(input, outputs, size, &args.video, &args.live)?;
    let (device, vgg) = args.compute.open()?;
    let pass = args.settings().pass(&vgg, "video", true)?;
    eprintln!(
        "dream: {} on {}",
        pass.describe(),
        stylestream::device::describe(&device)
    );
    let mut chain = LiveChain::new(Vec::new(), Some(pass), false);
    session.run(
        &mut chain,
        "stylestream - dream",
        device,
        true,
        &args.video,
        &args.live,
    )
}
