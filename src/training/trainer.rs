//! The training loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::checkpoint::{load_checkpoint, save_checkpoint};
use super::config::{Objective, TrainConfig};
use super::data::{list_photos, to_planar, validation_set, BatchLoader};
use super::init::initial_parameters;
use super::objective::{DreamTerm, LossValues, PerceptualObjective};
use super::report::{append_log, plot_losses, read_log, rewrite_log, save_grid, LogEntry};
use crate::image_io::{image_to_tensor, load_image, resize_longer_side, tensor_to_image};
use crate::models::{save_model, ArchSpec, ModelInfo, TransformerNet};
use crate::optim::{Adam, AdamConfig};
use crate::vgg::{parse_layer_list, Pooling, Vgg19};

/// Where and how to run a training configuration.
pub struct TrainOptions {
    /// The final model file.
    pub output: PathBuf,
    /// Checkpoint, log, plot and validation grid go here.
    pub checkpoint_dir: PathBuf,
    /// Continue from the checkpoint in `checkpoint_dir`.
    pub resume: bool,
    pub vgg_path: PathBuf,
    pub device: Device,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Set (by Ctrl-C) to stop after the current iteration, checkpointing.
    pub interrupt: Arc<AtomicBool>,
}

/// How a run ended.
#[derive(Debug)]
pub enum TrainOutcome {
    /// All iterations done; the model was written.
    Finished {
        iterations: u64,
        final_val: Option<LossValues>,
    },
    /// Stopped by the interrupt flag after a checkpoint at `iteration`.
    Interrupted { iteration: u64 },
}

/// The checkpoint file inside a checkpoint folder.
pub fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join("checkpoint.safetensors")
}

fn layers(names: &[String]) -> Result<Vec<crate::vgg::Layer>> {
    parse_layer_list(&names.join(","))
}

/// Trains (or resumes training) a network as `config` says.
pub fn train(config: &TrainConfig, options: &TrainOptions) -> Result<TrainOutcome> {
    let device = &options.device;
    let spec: ArchSpec = config
        .arch
        .parse()
        .map_err(|e| anyhow!("bad architecture '{}': {e}", config.arch))?;
    let min = spec.min_input_size() as u32;
    if config.image_size < min {
        bail!(
            "--image-size {} is too small for architecture '{spec}' (at least {min})",
            config.image_size
        );
    }
    if config.batch_size == 0 || config.iterations == 0 {
        bail!("--batch-size and --iterations must be at least 1");
    }
    let files = list_photos(&config.content_dir)?;
    let pooling = match config.pooling.as_str() {
        "avg" => Pooling::Avg,
        _ => Pooling::Max,
    };
    let vgg = Vgg19::load(&options.vgg_path, device, pooling)?;
    let content_layers = layers(&config.content_layers)?;
    let objective = match config.objective {
        Objective::Style => {
            let path = config
                .style_image
                .as_ref()
                .ok_or_else(|| anyhow!("the style objective needs --style PAINTING"))?;
            let painting = load_image(path)?;
            let rgb = resize_longer_side(&painting.rgb, config.style_size);
            let style = image_to_tensor(&rgb, device)?;
            PerceptualObjective::style(
                &vgg,
                (&content_layers, config.content_weight),
                &style,
                (&layers(&config.style_layers)?, config.style_weight),
                config.tv_weight,
            )?
        }
        Objective::Dream => PerceptualObjective::dream(
            &vgg,
            (&content_layers, config.content_weight),
            DreamTerm {
                layers: layers(&config.dream_layers)?,
                weight: config.dream_weight,
                loss: config.dream_loss,
            },
            config.tv_weight,
        )?,
    };
    let val = match &config.val_dir {
        Some(dir) => {
            let (images, skipped) = validation_set(dir, config.val_count, config.image_size)?;
            for s in skipped {
                eprintln!("warning: skipping validation photo: {s}");
            }
            images
        }
        None => Vec::new(),
    };

    std::fs::create_dir_all(&options.checkpoint_dir).with_context(|| {
        format!(
            "cannot create checkpoint folder {}",
            options.checkpoint_dir.display()
        )
    })?;
    let ckpt_path = checkpoint_path(&options.checkpoint_dir);
    let log_path = options.checkpoint_dir.join("log.jsonl");

    // Start fresh or from the checkpoint.
    let (start, params, adam_state) = if options.resume {
        if !ckpt_path.exists() {
            bail!(
                "--resume: no checkpoint at {} (start without --resume)",
                ckpt_path.display()
            );
        }
        let ckpt = load_checkpoint(&ckpt_path, device)?;
        let theirs: ArchSpec = ckpt
            .arch
            .parse()
            .map_err(|e| anyhow!("{}: bad architecture: {e}", ckpt_path.display()))?;
        if theirs != spec {
            bail!(
                "{} was trained with architecture '{theirs}', not '{spec}': pass the same --arch \
                 to resume, or use another --checkpoint-dir",
                ckpt_path.display()
            );
        }
        if ckpt.config.objective != config.objective
            || ckpt.config.style_image != config.style_image
        {
            eprintln!(
                "warning: resuming a checkpoint made with objective {:?} and style {:?}",
                ckpt.config.objective, ckpt.config.style_image
            );
        }
        (ckpt.iteration, ckpt.model, Some(ckpt.adam))
    } else {
        if ckpt_path.exists() {
            bail!(
                "{} already holds a checkpoint: pass --resume to continue it, or choose another \
                 --checkpoint-dir (nothing was overwritten)",
                ckpt_path.display()
            );
        }
        (0, initial_parameters(&spec, config.seed, device)?, None)
    };
    if start > config.iterations {
        bail!(
            "the checkpoint is at iteration {start}, past --iterations {}",
            config.iterations
        );
    }

    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("varmap lock");
        for (name, t) in &params {
            data.insert(name.clone(), Var::from_tensor(t)?);
        }
    }
    let net = TransformerNet::new(&spec, VarBuilder::from_varmap(&varmap, DType::F32, device))?;
    let named_vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut adam = Adam::new(named_vars, AdamConfig::default())?;
    if let Some(state) = &adam_state {
        adam.load_state(state, start)?;
    }

    let mut log = read_log(&log_path, start)?;
    rewrite_log(&log_path, &log)?;
    let elapsed_before = log.last().map_or(0.0, |e| e.elapsed_seconds);

    let model_tensors = || -> HashMap<String, Tensor> {
        varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    };
    let val_photos: Option<Tensor> = if val.is_empty() {
        None
    } else {
        let s = config.image_size as usize;
        Some(Tensor::from_vec(
            to_planar(&val),
            (val.len(), 3, s, s),
            device,
        )?)
    };
    let evaluate_val = || -> Result<Option<(LossValues, Vec<image::Rgb32FImage>)>> {
        let Some(photos) = &val_photos else {
            return Ok(None);
        };
        let mut sum = LossValues::default();
        let mut painted = Vec::new();
        for i in 0..photos.dim(0)? {
            let photo = photos.narrow(0, i, 1)?;
            let out = net.forward(&photo)?.detach();
            let v = objective.evaluate(&out, &photo)?.values()?;
            sum.content += v.content;
            sum.style += v.style;
            sum.dream += v.dream;
            sum.tv += v.tv;
            sum.total += v.total;
            painted.push(tensor_to_image(&out)?);
        }
        let n = photos.dim(0)? as f64;
        for x in [
            &mut sum.content,
            &mut sum.style,
            &mut sum.dream,
            &mut sum.tv,
            &mut sum.total,
        ] {
            *x /= n;
        }
        Ok(Some((sum, painted)))
    };

    let bar = if options.progress {
        ProgressBar::with_draw_target(Some(config.iterations), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise} < {eta_precise}] {wide_bar} {pos}/{len} it  {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(start);
    bar.reset_eta();

    let size = config.image_size as usize;
    let loader = BatchLoader::spawn(
        files,
        config.seed,
        start,
        config.iterations,
        config.batch_size,
        config.image_size,
    );
    let session_start = Instant::now();
    let mut last_val = log.iter().rev().find_map(|e| e.val);
    for iteration in start..config.iterations {
        let t0 = Instant::now();
        let batch = loader.next_batch()?;
        debug_assert_eq!(batch.iteration, iteration);
        for s in &batch.skipped {
            bar.println(format!("warning: skipping content photo: {s}"));
        }
        let photos = Tensor::from_vec(batch.pixels, (config.batch_size, 3, size, size), device)?;
        let painted = net.forward(&photos)?;
        let terms = objective.evaluate(&painted, &photos)?;
        let grads = terms.total.backward()?;
        let lr = config.learning_rate_at(iteration);
        adam.step(&grads, lr)?;
        let values = terms.values()?;
        if !values.total.is_finite() {
            bail!(
                "training diverged at iteration {} (loss {}); lower --learning-rate",
                iteration + 1,
                values.total
            );
        }
        let done = iteration + 1;
        let ips = config.batch_size as f64 / t0.elapsed().as_secs_f64();
        let is_checkpoint = done % config.checkpoint_every == 0 || done == config.iterations;
        let interrupted = options.interrupt.load(Ordering::SeqCst);
        let mut entry = LogEntry {
            iteration: done,
            learning_rate: lr,
            train: values,
            val: None,
            images_per_second: ips,
            elapsed_seconds: elapsed_before + session_start.elapsed().as_secs_f64(),
        };
        if is_checkpoint || interrupted {
            save_checkpoint(&ckpt_path, done, config, &model_tensors(), &adam.state())?;
            if is_checkpoint {
                if let Some((v, painted)) = evaluate_val()? {
                    entry.val = Some(v);
                    last_val = Some(v);
                    save_grid(
                        &options.checkpoint_dir.join("validation.png"),
                        &val,
                        &painted,
                    )?;
                }
            }
        }
        append_log(&log_path, &entry)?;
        log.push(entry);
        if is_checkpoint {
            plot_losses(
                &options.checkpoint_dir.join("losses.svg"),
                &log,
                &format!("{} ({})", config.style_name, spec),
            )?;
        }
        bar.set_message(format!(
            "{ips:.2} img/s  content {:.3e}  {} {:.3e}  tv {:.3e}",
            values.content,
            if config.objective == Objective::Dream {
                "dream"
            } else {
                "style"
            },
            if config.objective == Objective::Dream {
                values.dream
            } else {
                values.style
            },
            values.tv
        ));
        bar.set_position(done);
        if interrupted && done < config.iterations {
            bar.abandon();
            return Ok(TrainOutcome::Interrupted { iteration: done });
        }
    }
    bar.finish();
    drop(loader);

    let elapsed = log.last().map_or(0.0, |e| e.elapsed_seconds);
    let training = serde_json::json!({
        "config": config,
        "iterations": config.iterations,
        "images_seen": config.iterations * config.batch_size as u64,
        "training_seconds": elapsed,
        "device": format!("{:?}", options.device),
        "final_validation": last_val,
    });
    let info = ModelInfo::new(spec, &config.style_name, config.objective.name(), training);
    save_model(&options.output, &model_tensors(), &info)?;
    Ok(TrainOutcome::Finished {
        iterations: config.iterations,
        final_val: last_val,
    })
}
