//! `stylestream stylize`: paint images with trained style networks, and
//! DeepDream passes, chained in command-line order.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::Tensor;
use clap::{ArgAction, ArgMatches};
use stylestream::device::DeviceChoice;
use stylestream::effects::color::transfer_luminance;
use stylestream::effects::style_net::StyleNet;
use stylestream::effects::Effect;
use stylestream::image_io;
use stylestream::live::LiveChain;
use stylestream::models::resolve_model;
use stylestream::vgg::{weights::resolve_vgg_path, Pooling, Vgg19};

use super::common::{load_for_effect, parse_size, progress_bar, save_result};
use super::dream_args::DreamArgs;
use super::live::{LiveArgs, Session};
use super::video_args::{is_video_job, run_video, VideoArgs};

/// Paint images in a learned style, in one fast pass per image; add
/// DeepDream passes anywhere in the chain.
///
/// A model is a network trained by `stylestream-train` on one painting.
/// `--model NAME` looks for weights/NAME.safetensors (see `stylestream
/// models` for the list); a path to a .safetensors file works too. Several
/// --model flags apply the models one after another, in order.
///
/// `--dream` puts a DeepDream pass (see `stylestream dream`) into the same
/// chain, at its place on the command line: `--model starry_night_fast
/// --dream` paints, then dreams on the painting; `--dream --model
/// starry_night_fast` dreams, then paints the dream. It may be repeated,
/// and alone (no --model) it just dreams. The dream's settings are those
/// of `stylestream dream` under --dream-* names (--dream-preset,
/// --dream-layers, --dream-steps, ...; see "DeepDream settings" below);
/// the preset defaults to medium for images and to video for video and
/// live, where each frame's dream carries into the next (--dream-carry,
/// --cut-threshold).
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
///   stylestream stylize --input photo.jpg --output dreamy.png --model starry_night_fast --dream
///   stylestream stylize --input clip.mp4 --output out.mp4 --size 480 --dream --model starry_night_fast
///
/// Live: `--input webcam` (or webcam:N, see `stylestream devices`), or any
/// video with --realtime, is painted as it comes; several --model flags
/// are then alternatives switched with the arrow keys, and --dream passes
/// run before or after the model as given, the D key turning them on and
/// off. Outputs (any combination): `--output window` (the default),
/// `--output v4l2:/dev/videoN` (a virtual camera), `--serve
/// 127.0.0.1:8080` (MJPEG for a browser), `--output rec.mp4`. The window's
/// keys are listed when it opens.
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// An image, a folder of images, a video, or webcam[:N] (live).
    #[arg(long, short, value_name = "IMAGE|DIR|VIDEO|webcam")]
    input: PathBuf,

    /// The output image, or folder when the input is a folder. Live, it
    /// may be repeated: window, v4l2:/dev/videoN, or a video file.
    #[arg(long, short, value_name = "IMAGE|DIR")]
    output: Vec<PathBuf>,

    /// Model name (weights/NAME.safetensors) or path; repeat to chain models.
    #[arg(
        long,
        short,
        value_name = "NAME|PATH",
        required_unless_present = "dream"
    )]
    model: Vec<String>,

    /// A DeepDream pass at this place in the chain (before or after the
    /// --model flags, as given); repeat for several. Settings: --dream-*.
    #[arg(long, num_args = 0, default_missing_value = "true", action = ArgAction::Append)]
    dream: Vec<bool>,

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

    /// VGG19 weights for --dream (default as for `stylestream dream`).
    #[arg(long, value_name = "PATH")]
    vgg: Option<PathBuf>,

    #[command(flatten)]
    video: VideoArgs,

    #[command(flatten)]
    dream_settings: DreamArgs,

    #[command(flatten)]
    live: LiveArgs,
}

/// One link of the chain, in command-line order.
enum Step {
    Model(Box<StyleNet>),
    Dream,
}

/// The `--model` and `--dream` flags in the order they were given (their
/// argument positions in `matches`), with the models loaded.
fn load_steps(
    args: &Args,
    matches: Option<&ArgMatches>,
    device: &candle_core::Device,
) -> Result<Vec<Step>> {
    let positions = |id: &str| -> Vec<usize> {
        matches
            .and_then(|m| m.indices_of(id))
            .map(|i| i.collect())
            .unwrap_or_default()
    };
    let (model_at, dream_at) = (positions("model"), positions("dream"));
    let mut order: Vec<(usize, Option<&String>)> = Vec::new();
    for (k, m) in args.model.iter().enumerate() {
        order.push((model_at.get(k).copied().unwrap_or(k), Some(m)));
    }
    for k in 0..args.dream.len() {
        let fallback = args.model.len() + k;
        order.push((dream_at.get(k).copied().unwrap_or(fallback), None));
    }
    order.sort_by_key(|(at, _)| *at);
    let mut steps = Vec::new();
    for (_, model) in order {
        steps.push(match model {
            Some(m) => Step::Model(Box::new(StyleNet::load(&resolve_model(m)?, device)?)),
            None => Step::Dream,
        });
    }
    Ok(steps)
}

/// VGG19, when the chain has a dream pass.
fn load_vgg(args: &Args, steps: &[Step], device: &candle_core::Device) -> Result<Option<Vgg19>> {
    if !steps.iter().any(|s| matches!(s, Step::Dream)) {
        return Ok(None);
    }
    args.dream_settings.stream()?; // a bad --dream-carry before the weights load
    let path = resolve_vgg_path(args.vgg.as_deref());
    Ok(Some(Vgg19::load(&path, device, Pooling::Max)?))
}

/// The chain as effects, in order. Dream passes use `preset` unless
/// --dream-preset says otherwise, and carry from frame to frame when
/// `frames` (video, live).
fn build_chain<'a>(
    steps: Vec<Step>,
    vgg: Option<&'a Vgg19>,
    dream: &DreamArgs,
    preset: &str,
    frames: bool,
) -> Result<Vec<Box<dyn Effect + 'a>>> {
    let mut chain: Vec<Box<dyn Effect + 'a>> = Vec::new();
    for step in steps {
        chain.push(match (step, vgg) {
            (Step::Model(net), _) => net,
            (Step::Dream, Some(vgg)) => dream.pass(vgg, preset, frames)?,
            (Step::Dream, None) => bail!("internal: a dream pass without VGG19"),
        });
    }
    Ok(chain)
}

/// Logs the chain, in order.
fn log_chain(chain: &[Box<dyn Effect + '_>]) {
    let names: Vec<String> = chain.iter().map(|e| e.describe()).collect();
    eprintln!("stylize: {}", names.join(" -> "));
}

/// The chain followed by the photo's colours, as one effect, for
/// `--preserve-color` on video.
struct KeepColors<'a>(Vec<Box<dyn Effect + 'a>>);

impl Effect for KeepColors<'_> {
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
fn paint(effects: &mut [Box<dyn Effect + '_>], frame: &Tensor, args: &Args) -> Result<Tensor> {
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

/// The live filter (webcam, --realtime): the models are alternatives; the
/// dream passes given before the first --model run before it, the others
/// after it.
fn run_live(args: &Args, steps: Vec<Step>, device: candle_core::Device) -> Result<()> {
    let (input, outputs, size) = (&args.input, &args.output, args.size);
    let session = Session::open(input, outputs, size, &args.video, &args.live)?;
    let vgg = load_vgg(args, &steps, &device)?;
    let (mut before, mut models, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let mut title = "stylestream - dream".to_string();
    for step in steps {
        let is_model = matches!(step, Step::Model(_));
        if let Step::Model(net) = &step {
            if models.is_empty() {
                title = format!("stylestream - {}", net.describe());
            }
        }
        let mut effect = build_chain(
            vec![step],
            vgg.as_ref(),
            &args.dream_settings,
            "video",
            true,
        )?;
        match (is_model, models.is_empty()) {
            (true, _) => models.append(&mut effect),
            (false, true) => before.append(&mut effect),
            (false, false) => after.append(&mut effect),
        }
    }
    if models.is_empty() {
        // Dream passes alone: nothing to come before.
        std::mem::swap(&mut before, &mut after);
    }
    let dream_on = !(before.is_empty() && after.is_empty());
    let mut chain = LiveChain::ordered(before, models, after, args.preserve_color);
    session.run(
        &mut chain,
        &title,
        device,
        dream_on,
        &args.video,
        &args.live,
    )
}

/// The output name for `input` inside an output folder.
fn output_in_dir(dir: &Path, input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    dir.join(format!("{stem}.png"))
}

/// Runs `stylize`; `matches` (its own) tell the order of --model and
/// --dream.
pub fn run(args: Args, matches: Option<&ArgMatches>) -> Result<()> {
    let device = args.device.open()?;
    let steps = load_steps(&args, matches, &device)?;

    // The live filter (webcam, --realtime): src/cli/live.rs.
    if args.live.is_live(&args.input) {
        return run_live(&args, steps, device);
    }
    args.live.check_not_given()?;
    let output = match args.output.as_slice() {
        [one] => one.clone(),
        [] => bail!("--output is required (the image, folder or video to write)"),
        _ => bail!("one --output only (several are for the live filter: webcam or --realtime)"),
    };

    if is_video_job(&args.input, &output) {
        stylestream::video::check_paths(&args.input, &output)?;
        let vgg = load_vgg(&args, &steps, &device)?;
        let effects = build_chain(steps, vgg.as_ref(), &args.dream_settings, "video", true)?;
        log_chain(&effects);
        let mut chain: Vec<Box<dyn Effect + '_>> = if args.preserve_color {
            vec![Box::new(KeepColors(effects))]
        } else {
            effects
        };
        let options = args.video.options(args.size, device);
        return run_video("stylize", &args.input, &output, &options, &mut chain);
    }
    args.video.warn_if_image("stylize");
    let vgg = load_vgg(&args, &steps, &device)?;
    let mut effects = build_chain(steps, vgg.as_ref(), &args.dream_settings, "medium", false)?;
    log_chain(&effects);

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
