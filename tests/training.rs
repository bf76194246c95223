//! Training end to end on tiny images: the model it writes, exact resume
//! after an interrupt, that the losses fall, and the errors a user meets.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::{assert_clean_failure, assert_success, stylestream};

use candle_core::{Device, Tensor};
use stylestream::effects::style_net::StyleNet;
use stylestream::effects::Effect;
use stylestream::image_io::{save_image, tensor_to_image};
use stylestream::models::file::read_model_info;
use stylestream::training::checkpoint::load_checkpoint;
use stylestream::training::trainer::checkpoint_path;
use stylestream::training::{train, Objective, TrainConfig, TrainOptions, TrainOutcome};
use stylestream::vgg::weights::resolve_vgg_path;

/// A tiny network, so that tests take seconds.
const TINY_ARCH: &str = "c3s1-4,d8,R8,u4,c3s1-3";

fn save(t: &Tensor, path: &Path) {
    save_image(&tensor_to_image(t).unwrap(), None, path).unwrap();
}

/// A content folder of synthetic photos (one in a subfolder, one broken)
/// and a painting.
fn data(dir: &Path) -> (PathBuf, PathBuf) {
    let content = dir.join("photos");
    std::fs::create_dir_all(content.join("sub")).unwrap();
    for (i, (h, w)) in [(40, 56), (48, 48), (64, 40)].iter().enumerate() {
        let t = common::synthetic_photo(*h, *w);
        let t = if i == 1 { t.flip(&[3]).unwrap() } else { t };
        save(&t, &content.join(format!("p{i}.png")));
    }
    save(
        &common::synthetic_photo(50, 60),
        &content.join("sub/deep.png"),
    );
    std::fs::write(content.join("broken.jpg"), b"not a jpeg").unwrap();
    let painting = dir.join("painting.png");
    save(&common::synthetic_painting(64, 64), &painting);
    (content, painting)
}

fn config(content: &Path, painting: &Path, iterations: u64) -> TrainConfig {
    TrainConfig {
        arch: TINY_ARCH.into(),
        objective: Objective::Style,
        style_image: Some(painting.to_path_buf()),
        style_name: "painting".into(),
        style_size: 64,
        content_dir: content.to_path_buf(),
        val_dir: Some(content.to_path_buf()),
        val_count: 2,
        image_size: 32,
        batch_size: 2,
        iterations,
        learning_rate: 1e-2,
        lr_decay: 0.5,
        seed: 7,
        content_layers: vec!["relu2_2".into()],
        content_weight: 1.0,
        style_layers: ["relu1_1", "relu2_1", "relu3_1"].map(String::from).to_vec(),
        style_weight: 100.0,
        tv_weight: 1.0,
        dream_layers: vec!["relu4_2".into()],
        dream_weight: 1.0,
        dream_loss: Default::default(),
        pooling: "max".into(),
        checkpoint_every: 4,
    }
}

fn options(dir: &Path, name: &str, resume: bool, interrupt: bool) -> TrainOptions {
    TrainOptions {
        output: dir.join(format!("{name}.safetensors")),
        checkpoint_dir: dir.join(format!("{name}.ckpt")),
        resume,
        vgg_path: resolve_vgg_path(None),
        device: Device::Cpu,
        progress: false,
        interrupt: Arc::new(AtomicBool::new(interrupt)),
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn trains_a_model_that_runs_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (content, painting) = data(dir.path());
    let cfg = config(&content, &painting, 8);

    // Uninterrupted.
    let straight = options(dir.path(), "straight", false, false);
    let outcome = train(&cfg, &straight).unwrap();
    assert!(matches!(
        outcome,
        TrainOutcome::Finished { iterations: 8, .. }
    ));

    // Interrupted after the first iteration (the Ctrl-C flag), then resumed.
    let first = options(dir.path(), "resumed", false, true);
    match train(&cfg, &first).unwrap() {
        TrainOutcome::Interrupted { iteration } => assert_eq!(iteration, 1),
        other => panic!("expected an interrupt, got {other:?}"),
    }
    assert!(!first.output.exists(), "an interrupted run writes no model");
    let ckpt = load_checkpoint(&checkpoint_path(&first.checkpoint_dir), &Device::Cpu).unwrap();
    assert_eq!(ckpt.iteration, 1);
    // Starting again without --resume must not overwrite the checkpoint.
    let err = train(&cfg, &options(dir.path(), "resumed", false, false)).unwrap_err();
    assert!(format!("{err:#}").contains("--resume"), "{err:#}");
    train(&cfg, &options(dir.path(), "resumed", true, false)).unwrap();

    let a = candle_core::safetensors::load(&straight.output, &Device::Cpu).unwrap();
    let b = candle_core::safetensors::load(&first.output, &Device::Cpu).unwrap();
    assert_eq!(a.len(), b.len());
    for (name, ta) in &a {
        let d = max_abs_diff(ta, &b[name]);
        assert!(d <= 1e-6, "{name} differs by {d} after resume");
    }

    // The log has one line per iteration, validation at checkpoints, and
    // the plot and grid exist.
    let log = std::fs::read_to_string(first.checkpoint_dir.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 8);
    assert_eq!(log.lines().filter(|l| l.contains("\"val\"")).count(), 2);
    assert!(first.checkpoint_dir.join("losses.svg").exists());
    assert!(first.checkpoint_dir.join("validation.png").exists());
    let svg = std::fs::read_to_string(first.checkpoint_dir.join("losses.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("polyline"),
        "no curves drawn"
    );

    // The model describes itself and runs as an effect.
    let info = read_model_info(&straight.output).unwrap();
    assert_eq!(info.arch.to_string(), TINY_ARCH);
    assert_eq!(info.style, "painting");
    assert_eq!(info.objective, "style");
    assert_eq!(info.training["iterations"], 8);
    let mut net = StyleNet::load(&straight.output, &Device::Cpu).unwrap();
    let frame = common::synthetic_photo(37, 51);
    let out = net.apply(&frame).unwrap();
    assert_eq!(out.dims(), frame.dims());
}

#[test]
fn training_lowers_the_style_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (content, painting) = data(dir.path());
    let mut cfg = config(&content, &painting, 40);
    cfg.checkpoint_every = 40;
    cfg.lr_decay = 1.0;
    let opts = options(dir.path(), "learn", false, false);
    train(&cfg, &opts).unwrap();
    let log = std::fs::read_to_string(opts.checkpoint_dir.join("log.jsonl")).unwrap();
    let styles: Vec<f64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["train"]["style"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let early: f64 = styles[..5].iter().sum::<f64>() / 5.0;
    let late: f64 = styles[styles.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(
        late < early / 3.0,
        "style loss fell only from {early:.3e} to {late:.3e}"
    );
}

fn train_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stylestream-train"))
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (content, painting) = data(dir.path());
    let out = dir.path().join("m.safetensors");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let base = |content: &Path, style: &Path, out: &Path| -> Vec<String> {
        [
            "--content-dir",
            s(content),
            "--style",
            s(style),
            "--output",
            s(out),
            "--image-size",
            "32",
            "--iterations",
            "1",
            "--device",
            "cpu",
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |mut args: Vec<String>, extra: &[&str]| {
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        train_cli(&refs)
    };
    assert_clean_failure(
        &run(base(&empty, &painting, &out), &[]),
        "no JPEG or PNG photos",
    );
    assert_clean_failure(
        &run(base(&content, &dir.path().join("nope.png"), &out), &[]),
        "nope.png",
    );
    assert_clean_failure(
        &run(base(&content, &painting, &out), &["--arch", "c3s1-8,d16"]),
        "--arch",
    );
    assert_clean_failure(
        &run(
            base(
                &content,
                &painting,
                &dir.path().join("no/such/m.safetensors"),
            ),
            &[],
        ),
        "does not exist",
    );
    assert_clean_failure(
        &run(base(&content, &painting, &dir.path().join("m.png")), &[]),
        ".safetensors",
    );
    assert!(!out.exists());

    // A checkpoint from another architecture is refused on --resume.
    let ok = run(base(&content, &painting, &out), &["--arch", TINY_ARCH]);
    assert_success(&ok);
    let before = std::fs::read(&out).unwrap();
    let other = run(
        base(&content, &painting, &out),
        &["--arch", "c3s1-4,d8,u4,c3s1-3", "--resume"],
    );
    assert_clean_failure(&other, "architecture");
    assert_eq!(std::fs::read(&out).unwrap(), before, "model overwritten");

    // stylize refuses files that are not models, naming them.
    let not_model = dir.path().join("plain.safetensors");
    let t = Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("x".to_string(), t)]),
        &not_model,
    )
    .unwrap();
    let photo = content.join("p0.png");
    let st = stylestream([
        "stylize",
        "-i",
        s(&photo),
        "-o",
        s(&dir.path().join("o.png")),
        "-m",
        s(&not_model),
    ]);
    assert_clean_failure(&st, "not a stylestream model");
    assert!(!dir.path().join("o.png").exists());
}

/// A dream network (`--objective dream`): the dream term rises as it
/// trains, the model file says what it is, and it paints a video through
/// `stylestream stylize` like any style network (every frame kept).
#[test]
fn a_dream_model_trains_round_trips_and_converts_a_video() {
    let dir = tempfile::tempdir().unwrap();
    let (content, painting) = data(dir.path());
    let mut cfg = config(&content, &painting, 12);
    cfg.objective = Objective::Dream;
    cfg.style_image = None;
    cfg.style_name = "dream".into();
    cfg.dream_layers = vec!["relu3_1".into()];
    cfg.dream_weight = 5.0;
    cfg.checkpoint_every = 12;
    cfg.lr_decay = 1.0;
    let opts = options(dir.path(), "dream_relu3_1", false, false);
    train(&cfg, &opts).unwrap();

    let log = std::fs::read_to_string(opts.checkpoint_dir.join("log.jsonl")).unwrap();
    let dream: Vec<f64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["train"]["dream"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let (first, last) = (
        dream[..3].iter().sum::<f64>(),
        dream[dream.len() - 3..].iter().sum::<f64>(),
    );
    assert!(last < first, "the dream term did not grow: {dream:?}");

    let info = read_model_info(&opts.output).unwrap();
    assert_eq!(info.objective, "dream");
    assert_eq!(info.training["config"]["dream_layers"][0], "relu3_1");

    // A 12-frame clip through the video path.
    let clip = dir.path().join("clip.mp4");
    let made = common::testsrc_clip(&clip, "64x48", 12, 1);
    let Ok(made) = made else {
        eprintln!("no ffmpeg CLI; video part skipped");
        return;
    };
    assert!(made.success());
    let painted = dir.path().join("dreamed.mp4");
    let out = stylestream([
        "stylize",
        "--input",
        s(&clip),
        "--output",
        s(&painted),
        "--model",
        s(&opts.output),
    ]);
    assert_success(&out);
    let v = stylestream::video::VideoSource::open(&painted).unwrap();
    assert_eq!(v.info().frames, Some(12));
}

/// `--dream-loss log` pulls exactly like `linear` where the output's
/// activations are the photo's (same gradient; the term itself is 0
/// there), and less once the dream has doubled their energy: the reason it
/// exists (a linear dream term runs away at strong weights).
#[test]
fn the_log_dream_loss_pulls_like_linear_at_the_photo_and_less_past_it() {
    use candle_core::Var;
    use stylestream::training::objective::{DreamTerm, PerceptualObjective};
    use stylestream::training::DreamLoss;
    use stylestream::vgg::{parse_layer_list, Pooling, Vgg19};

    let device = Device::Cpu;
    let vgg = Vgg19::load(&resolve_vgg_path(None), &device, Pooling::Max).unwrap();
    let layers = parse_layer_list("relu3_1").unwrap();
    let photo = Tensor::rand(0f32, 1f32, (1, 3, 40, 48), &device).unwrap();
    let objective = |loss| {
        let term = DreamTerm {
            layers: layers.clone(),
            weight: 1.0,
            loss,
        };
        PerceptualObjective::dream(&vgg, (&layers, 0.0), term, 0.0).unwrap()
    };
    // (dream term, its gradient) at `output`.
    let dream_at = |loss, output: &Tensor| {
        let x = Var::from_tensor(output).unwrap();
        let terms = objective(loss).evaluate(x.as_tensor(), &photo).unwrap();
        let d = terms.dream.unwrap();
        let grads = d.backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().clone();
        (d.to_scalar::<f32>().unwrap(), g)
    };
    let norm = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt()
    };

    let (log_value, log_grad) = dream_at(DreamLoss::Log, &photo);
    let (_, linear_grad) = dream_at(DreamLoss::Linear, &photo);
    assert!(log_value.abs() < 1e-3, "log term at the photo: {log_value}");
    let diff = norm(&(&log_grad - &linear_grad).unwrap());
    assert!(
        diff < 1e-3 * norm(&linear_grad),
        "gradients differ at the photo: {diff} vs {}",
        norm(&linear_grad)
    );

    // Brighter, more contrasted input: more energy at relu3_1.
    let boosted = ((&photo - 0.5).unwrap() * 3.0)
        .unwrap()
        .affine(1.0, 0.5)
        .unwrap();
    let (_, log_grad) = dream_at(DreamLoss::Log, &boosted);
    let (_, linear_grad) = dream_at(DreamLoss::Linear, &boosted);
    assert!(
        norm(&log_grad) < 0.8 * norm(&linear_grad),
        "the log term does not weaken: {} vs {}",
        norm(&log_grad),
        norm(&linear_grad)
    );
}
