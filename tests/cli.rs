//! The `stylestream` binary end to end: what a user sees on success and on
//! bad input (a one-line error naming the problem, non-zero exit, no output).

mod common;

use common::{assert_success, stderr, stylestream};

use std::path::{Path, PathBuf};
use std::process::Command;

/// A small PNG photo in `dir`.
fn photo(dir: &Path, name: &str, h: usize, w: usize) -> PathBuf {
    let path = dir.join(name);
    let t = common::synthetic_photo(h, w);
    let img = stylestream::image_io::tensor_to_image(&t).unwrap();
    stylestream::image_io::save_image(&img, None, &path).unwrap();
    path
}

fn painting(dir: &Path) -> PathBuf {
    let path = dir.join("painting.png");
    let t = common::synthetic_painting(64, 64);
    let img = stylestream::image_io::tensor_to_image(&t).unwrap();
    stylestream::image_io::save_image(&img, None, &path).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn help_teaches_every_command() {
    let out = stylestream(["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["fetch-vgg", "gatys", "dream", "features"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}");
    }
    let out = stylestream(["dream", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--octave-scale"));
    let out = stylestream(["stylize", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model starry_night_fast --dream",
        "--dream-preset",
        "--dream-carry",
    ] {
        assert!(
            text.contains(flag),
            "stylize --help does not mention {flag}"
        );
    }
    let train = Command::new(env!("CARGO_BIN_EXE_stylestream-train"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(train.status.success());
    assert!(String::from_utf8_lossy(&train.stdout).contains("Johnson"));
}

#[test]
fn gatys_writes_a_painting() {
    let dir = tempfile::tempdir().unwrap();
    let content = photo(dir.path(), "photo.png", 48, 64);
    let style = painting(dir.path());
    let output = dir.path().join("out.jpg");
    let out = stylestream([
        "gatys",
        "--content",
        s(&content),
        "--style",
        s(&style),
        "--output",
        s(&output),
        "--size",
        "64",
        "--steps",
        "5",
        "--device",
        "cpu",
    ]);
    assert_success(&out);
    let img = image::open(&output).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));
    assert!(stderr(&out).contains("style loss"));
}

#[test]
fn gatys_with_adam_noise_init_and_preserved_colour() {
    let dir = tempfile::tempdir().unwrap();
    let content = photo(dir.path(), "photo.png", 40, 56);
    let style = painting(dir.path());
    let output = dir.path().join("out.png");
    let out = stylestream([
        "gatys",
        "--content",
        s(&content),
        "--style",
        s(&style),
        "--output",
        s(&output),
        "--size",
        "56",
        "--steps",
        "8",
        "--optimizer",
        "adam",
        "--init",
        "noise",
        "--seed",
        "3",
        "--preserve-color",
        "--pooling",
        "avg",
        "--style-size",
        "48",
        "--device",
        "cpu",
    ]);
    assert_success(&out);
    let img = image::open(&output).unwrap();
    assert_eq!((img.width(), img.height()), (56, 40));
}

#[test]
fn dream_and_features_write_their_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "photo.png", 60, 80);
    let output = dir.path().join("dream.png");
    let out = stylestream([
        "dream",
        "--input",
        s(&input),
        "--output",
        s(&output),
        "--octaves",
        "2",
        "--steps",
        "2",
        "--layers",
        "relu3_1",
        "--device",
        "cpu",
    ]);
    assert_success(&out);
    assert!(output.exists());
    assert!(stderr(&out).contains("mean relu3_1 activation"));

    let feats = dir.path().join("f.safetensors");
    let out = stylestream([
        "features",
        "--input",
        s(&input),
        "--layers",
        "relu1_1,pool2,relu4_2",
        "--output",
        s(&feats),
        "--device",
        "cpu",
    ]);
    assert_success(&out);
    let t = candle_core::safetensors::load(&feats, &candle_core::Device::Cpu).unwrap();
    assert_eq!(t["relu1_1"].dims(), &[1, 64, 60, 80]);
    assert_eq!(t["pool2"].dims(), &[1, 128, 15, 20]);
    assert_eq!(t["relu4_2"].dims(), &[1, 512, 7, 10]);
}

/// `stylize --model M --dream` paints, then dreams; `--dream --model M`
/// dreams, then paints: each order equals the two effects applied one
/// after the other by hand, and the two differ.
#[test]
fn stylize_chains_dream_passes_in_command_line_order() {
    use stylestream::effects::dream::{Dream, DreamConfig};
    use stylestream::effects::style_net::StyleNet;
    use stylestream::effects::Effect;

    let vgg = common::vgg();
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "photo.png", 48, 64);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/starry_night_fast.safetensors");
    let settings = [
        "--dream-layers",
        "relu3_1",
        "--dream-octaves",
        "1",
        "--dream-steps",
        "3",
        "--dream-step-size",
        "12",
        "--dream-jitter",
        "0",
        "--dream-seed",
        "7",
        "--size",
        "64",
        "--device",
        "cpu",
    ];
    let run = |order: &[&str], name: &str| -> candle_core::Tensor {
        let output = dir.path().join(name);
        let mut args = vec!["stylize", "--input", s(&input), "--output", s(&output)];
        args.extend_from_slice(&settings);
        args.extend_from_slice(order);
        let out = stylestream(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        common::load(&output, 64)
    };
    let m = s(&model);
    let painted_then_dreamed = run(&["--model", m, "--dream"], "model-dream.png");
    let dreamed_then_painted = run(&["--dream", "--model", m], "dream-model.png");

    // The same by hand, from the same 64-pixel tensor.
    let photo = common::load(&input, 64);
    let mut net = StyleNet::load(&model, &candle_core::Device::Cpu).unwrap();
    let config = DreamConfig {
        layers: vec!["relu3_1".parse().unwrap()],
        octaves: 1,
        steps: 3,
        step_size: 12.0,
        jitter: 0,
        seed: 7,
        ..DreamConfig::preset("medium").unwrap()
    };
    let mut dream = Dream::new(&vgg, config).unwrap();
    let by_hand_md = dream.apply(&net.apply(&photo).unwrap()).unwrap();
    let by_hand_dm = net.apply(&dream.apply(&photo).unwrap()).unwrap();

    // The PNGs hold 8-bit values: half a level of rounding, plus a little.
    let tol = 1.5 / 255.0;
    let d = common::max_abs_diff(&painted_then_dreamed, &by_hand_md);
    assert!(
        d <= tol,
        "--model M --dream differs from dream(model(x)) by {d}"
    );
    let d = common::max_abs_diff(&dreamed_then_painted, &by_hand_dm);
    assert!(
        d <= tol,
        "--dream --model M differs from model(dream(x)) by {d}"
    );
    let d = common::mean_abs_diff(&painted_then_dreamed, &dreamed_then_painted);
    assert!(
        d > 0.02,
        "the two orders give nearly the same picture ({d})"
    );
}

/// Runs a command expected to fail and checks the message and that no
/// output file appeared.
fn assert_fails(args: &[&str], output: &Path, expect: &str) {
    let out = stylestream(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = stderr(&out);
    assert!(
        err.contains(expect),
        "{args:?}: expected '{expect}' in: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!output.exists(), "{args:?} left {}", output.display());
}

#[test]
fn bad_input_is_a_clear_error_with_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "photo.png", 40, 40);
    let out = dir.path().join("out.png");
    let missing = dir.path().join("missing.jpg");
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").unwrap();

    assert_fails(
        &["dream", "--input", s(&missing), "--output", s(&out)],
        &out,
        "missing.jpg",
    );
    assert_fails(
        &["dream", "--input", s(&text), "--output", s(&out)],
        &out,
        "notes.png",
    );
    // --preset is the encoder's speed; the dream's is --dream-preset.
    let dream_preset = [
        "dream",
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--preset",
        "deep",
    ];
    assert_fails(&dream_preset, &out, "--dream-preset deep");
    assert_fails(
        &[
            "dream",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--layers",
            "relu9_9",
        ],
        &out,
        "unknown VGG19 layer 'relu9_9'",
    );
    assert_fails(
        &[
            "dream",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--size",
            "0",
        ],
        &out,
        "--size",
    );
    assert_fails(
        &[
            "dream",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--size",
            "big",
        ],
        &out,
        "--size",
    );
    assert_fails(
        &["dream", "--input", s(&input), "--output", s(&input)],
        &out,
        "input",
    );
    assert_fails(
        &[
            "gatys",
            "--content",
            s(&input),
            "--style",
            s(&missing),
            "--output",
            s(&out),
        ],
        &out,
        "missing.jpg",
    );
    let bad_ext = dir.path().join("out.xyz");
    assert_fails(
        &["dream", "--input", s(&input), "--output", s(&bad_ext)],
        &bad_ext,
        "xyz",
    );
    // The input is untouched by all of this.
    assert!(image::open(&input).is_ok());
}

#[test]
fn missing_vgg_weights_name_the_command_that_fetches_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = photo(dir.path(), "photo.png", 40, 40);
    let out = dir.path().join("out.png");
    let nowhere = dir.path().join("nowhere/vgg19.safetensors");
    assert_fails(
        &[
            "dream",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--vgg",
            s(&nowhere),
        ],
        &out,
        "stylestream fetch-vgg",
    );
}
