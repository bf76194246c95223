//! `stylestream-train`: learns feed-forward style networks (Johnson, Alahi,
//! Fei-Fei 2016). This binary only parses flags and reports; the training
//! itself is library code (`stylestream::training`) shared with tests.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use stylestream::device::DeviceChoice;
use stylestream::image_io::check_output_file;
use stylestream::models::{preset, ArchSpec, PRESETS};
use stylestream::training::{train, DreamLoss, Objective, TrainConfig, TrainOptions, TrainOutcome};
use stylestream::vgg::{parse_layer_list, weights::resolve_vgg_path, Pooling};

const LONG_ABOUT: &str = "\
Train a feed-forward style network (Johnson, Alahi, Fei-Fei 2016).

The network learns to paint any photo in the style of one painting in a
single forward pass, fast enough for video. It is trained on a folder of
photos with VGG19 perceptual losses: content (feature MSE against the photo),
style (Gram matrices of the painting) and total variation. The result is a
self-describing safetensors model for `stylestream stylize --model`.

  stylestream-train --style starry_night.jpg --content-dir photos/ \\
      --output weights/starry_night.safetensors --arch fast

Training writes a checkpoint folder (default: OUTPUT minus its extension,
plus .ckpt/) holding checkpoint.safetensors, log.jsonl (every loss term of
every iteration), losses.svg (the curves) and validation.png (validation
photos, top, and the network's paintings of them, below). Ctrl-C writes a
checkpoint and exits; run the same command with --resume to continue, with
the same result as an uninterrupted run.

Architectures (--arch): a preset or a spec string in the paper's notation:
  johnson  c9s1-32,d64,d128,R128x5,u64,u32,c9s1-3  (94.5 GFLOP at 640x480)
  fast     c3s1-8,d16,d32,R32,R32,u8,u8,c3s1-3     (2.7 GFLOP, live on a CPU)
Tokens: cKsS-C conv, dC stride-2 conv, RC residual block, uC upsample+conv.

--objective dream trains a dreaming network instead: it amplifies the
--dream-layers activations (a feed-forward DeepDream) and needs no --style.";

/// Train a feed-forward style network from one painting and a folder of photos.
#[derive(Parser, Debug)]
#[command(name = "stylestream-train", version, long_about = LONG_ABOUT)]
struct Args {
    /// The painting to learn (JPEG, PNG, WebP, BMP). Required for the style
    /// objective.
    #[arg(long, value_name = "PAINTING")]
    style: Option<PathBuf>,

    /// Folder of training photos: every JPEG and PNG under it, recursively.
    /// Unreadable ones are reported and skipped.
    #[arg(long, value_name = "DIR")]
    content_dir: PathBuf,

    /// Where to write the trained model (.safetensors).
    #[arg(long, short, value_name = "MODEL")]
    output: PathBuf,

    /// Network architecture: johnson, fast, or a spec string.
    #[arg(long, default_value = "johnson")]
    arch: String,

    /// What to learn: style (paint like --style) or dream.
    #[arg(long, value_enum, default_value_t = Objective::Style)]
    objective: Objective,

    /// Name recorded in the model (default: the painting's file name, or
    /// dream_<layers>).
    #[arg(long)]
    name: Option<String>,

    /// Folder of validation photos (the first --val-count in name order):
    /// evaluated and painted at every checkpoint.
    #[arg(long, value_name = "DIR")]
    val_dir: Option<PathBuf>,

    /// How many validation photos to use.
    #[arg(long, default_value_t = 8)]
    val_count: usize,

    /// Side of the square training crops, in pixels.
    #[arg(long, default_value_t = 256)]
    image_size: u32,

    /// Longer side the painting is resized to. Larger makes the brush
    /// strokes the network learns smaller relative to the photo.
    #[arg(long, default_value_t = 512)]
    style_size: u32,

    /// Photos per iteration.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,

    /// Training iterations (batches).
    #[arg(long, default_value_t = 2000)]
    iterations: u64,

    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,

    /// Learning-rate decay: the rate falls exponentially to
    /// learning-rate x this at the last iteration (1 keeps it constant).
    #[arg(long, default_value_t = 0.1)]
    lr_decay: f64,

    /// Seed for initial weights and the photos sampled: the same seed and
    /// flags give the same model.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Content layers (VGG19 names, comma separated). relu2_2 keeps the
    /// photo's edges and lets the style repaint textures; relu3_1 keeps
    /// more of the objects' shapes but also of their textures.
    #[arg(long, default_value = "relu2_2")]
    content_layers: String,

    /// Weight of the content loss. With the default layers and style
    /// weight, 150 keeps objects recognisable while the style repaints
    /// them; at 30 or less a short training collapses to one texture that
    /// ignores the photo (see weights/README.md).
    #[arg(long, default_value_t = 150.0)]
    content_weight: f64,

    /// Style layers (equal weights).
    #[arg(long, default_value = "relu1_1,relu2_1,relu3_1,relu4_1")]
    style_layers: String,

    /// Weight of the style loss.
    #[arg(long, default_value_t = 100.0)]
    style_weight: f64,

    /// Weight of the total-variation (smoothness) loss.
    #[arg(long, default_value_t = 1.0)]
    tv_weight: f64,

    /// Layers a dream network amplifies (--objective dream).
    #[arg(long, default_value = "relu4_2")]
    dream_layers: String,

    /// Weight of the dream term. With the default --dream-loss log and
    /// content weight, relu4_2 at 20 paints DeepDream's eyes along the
    /// photo's edges, photo still recognisable; relu3_3 takes ~30 for its
    /// textures (train/dream_calibration.md). With --dream-loss linear the
    /// usable range is narrow: relu4_2 at 4 is a mild filter, at 10 the
    /// network collapses to one texture of eyes within 100 iterations.
    #[arg(long, default_value_t = 20.0)]
    dream_weight: f64,

    /// Form of the dream term. log (default): the photo's mean square
    /// activation times the log of the output's over it; it pulls like
    /// linear at first and weakens as the dream grows, so the content term
    /// can hold it. linear: minus the mean square activation, what the
    /// iterative dream climbs; unbounded, so strong weights collapse.
    #[arg(long, value_enum, default_value_t = DreamLoss::Log)]
    dream_loss: DreamLoss,

    /// VGG19's pooling.
    #[arg(long, value_enum, default_value_t = Pooling::Max)]
    pooling: Pooling,

    /// Write a checkpoint (and validate, plot, draw the grid) every N iterations.
    #[arg(long, default_value_t = 200)]
    checkpoint_every: u64,

    /// Checkpoint folder (default: OUTPUT without extension + .ckpt).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,

    /// Continue from the checkpoint in the checkpoint folder.
    #[arg(long)]
    resume: bool,

    /// Where to compute: cpu, cuda:N, or auto.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,

    /// VGG19 weights (default: as `stylestream fetch-vgg` installs them).
    #[arg(long, value_name = "PATH")]
    vgg: Option<PathBuf>,

    /// No progress bar (log lines only).
    #[arg(long)]
    quiet: bool,
}

fn canonical_layers(list: &str) -> Result<Vec<String>> {
    Ok(parse_layer_list(list)?
        .into_iter()
        .map(|l| l.to_string())
        .collect())
}

fn run(args: Args) -> Result<()> {
    let spec: ArchSpec = match preset(&args.arch) {
        Some(spec) => spec,
        None => args.arch.parse().map_err(|e| {
            anyhow!(
                "--arch '{}' is neither a preset ({}) nor a valid spec: {e}",
                args.arch,
                PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
            )
        })?,
    };
    if args.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "--output {} must end in .safetensors",
            args.output.display()
        );
    }
    let mut inputs = vec![args.content_dir.as_path()];
    if let Some(s) = &args.style {
        inputs.push(s);
    }
    check_output_file(&args.output, &inputs)?;
    let style_name = match (&args.name, args.objective, &args.style) {
        (Some(n), _, _) => n.clone(),
        (None, Objective::Style, Some(s)) => s
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "style".into()),
        (None, Objective::Style, None) => {
            bail!("--style PAINTING is required (or --objective dream)")
        }
        (None, Objective::Dream, _) => format!("dream_{}", args.dream_layers.replace(',', "_")),
    };
    let config = TrainConfig {
        arch: spec.to_string(),
        objective: args.objective,
        style_image: args.style.clone(),
        style_name,
        style_size: args.style_size,
        content_dir: args.content_dir.clone(),
        val_dir: args.val_dir.clone(),
        val_count: args.val_count,
        image_size: args.image_size,
        batch_size: args.batch_size,
        iterations: args.iterations,
        learning_rate: args.learning_rate,
        lr_decay: args.lr_decay,
        seed: args.seed,
        content_layers: canonical_layers(&args.content_layers)?,
        content_weight: args.content_weight,
        style_layers: canonical_layers(&args.style_layers)?,
        style_weight: args.style_weight,
        tv_weight: args.tv_weight,
        dream_layers: canonical_layers(&args.dream_layers)?,
        dream_weight: args.dream_weight,
        dream_loss: args.dream_loss,
        pooling: match args.pooling {
            Pooling::Max => "max".into(),
            Pooling::Avg => "avg".into(),
        },
        checkpoint_every: args.checkpoint_every.max(1),
    };
    let checkpoint_dir = args
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| args.output.with_extension("ckpt"));
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("\nstylestream-train: second interrupt, exiting without a checkpoint");
                std::process::exit(130);
            }
            eprintln!(
                "\nstylestream-train: interrupted; writing a checkpoint after this iteration"
            );
        })
        .map_err(|e| anyhow!("cannot install the Ctrl-C handler: {e}"))?;
    }
    let options = TrainOptions {
        output: args.output.clone(),
        checkpoint_dir: checkpoint_dir.clone(),
        resume: args.resume,
        vgg_path: resolve_vgg_path(args.vgg.as_deref()),
        device: args.device.open()?,
        progress: !args.quiet,
        interrupt,
    };
    eprintln!(
        "stylestream-train: {} '{}' ({} parameters, {:.1} GFLOP per {}x{} image), batch {}, {} iterations; checkpoints in {}",
        config.objective.name(),
        config.style_name,
        spec.num_params(),
        spec.flops(config.image_size as usize, config.image_size as usize) as f64 / 1e9,
        config.image_size,
        config.image_size,
        config.batch_size,
        config.iterations,
        checkpoint_dir.display()
    );
    match train(&config, &options)? {
        TrainOutcome::Finished {
            iterations,
            final_val,
        } => {
            eprintln!(
                "stylestream-train: done after {iterations} iterations; model written to {}",
                args.output.display()
            );
            if let Some(v) = final_val {
                eprintln!(
                    "validation losses: content {:.4e}, style {:.4e}, dream {:.4e}, tv {:.4e}, total {:.4e}",
                    v.content, v.style, v.dream, v.tv, v.total
                );
            }
            Ok(())
        }
        TrainOutcome::Interrupted { iteration } => {
            eprintln!(
                "stylestream-train: stopped at iteration {iteration}; checkpoint in {}; add --resume to continue",
                checkpoint_dir.display()
            );
            std::process::exit(130);
        }
    }
}

fn main() -> ExitCode {
    stylestream::ops::allocator::keep_freed_memory();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stylestream-train: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
