//! Helpers shared by integration tests.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

use candle_core::{Device, Tensor};
use stylestream::vgg::{weights::resolve_vgg_path, Pooling, Vgg19};

/// The real VGG19 weights; the tests need them (`scripts/setup.sh` or
/// `stylestream fetch-vgg` installs them).
pub fn vgg() -> Vgg19 {
    let path = resolve_vgg_path(None);
    Vgg19::load(&path, &Device::Cpu, Pooling::Max).unwrap_or_else(|e| {
        panic!("these tests need the VGG19 weights: run `stylestream fetch-vgg` first ({e:#})")
    })
}

/// The shared data set beside the checkout, when present.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    p.exists().then_some(p)
}

/// A synthetic "photo": smooth colour gradients with a few shapes, so tests
/// work without the shared data.
pub fn synthetic_photo(h: usize, w: usize) -> Tensor {
    let mut data = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            let (fy, fx) = (y as f32 / h as f32, x as f32 / w as f32);
            let in_disc = (fx - 0.35).powi(2) + (fy - 0.5).powi(2) < 0.04;
            let in_box = fx > 0.6 && fx < 0.85 && fy > 0.2 && fy < 0.7;
            let (r, g, b) = if in_disc {
                (0.9, 0.8, 0.2)
            } else if in_box {
                (0.2, 0.3, 0.7)
            } else {
                (0.3 + 0.4 * fy, 0.6 - 0.3 * fx, 0.5 + 0.3 * fx * fy)
            };
            data[y * w + x] = r;
            data[h * w + y * w + x] = g;
            data[2 * h * w + y * w + x] = b;
        }
    }
    Tensor::from_vec(data, (1, 3, h, w), &Device::Cpu).unwrap()
}

/// A synthetic "painting": swirling coloured stripes.
pub fn synthetic_painting(h: usize, w: usize) -> Tensor {
    let mut data = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            let (fy, fx) = (y as f32, x as f32);
            let a = ((fx * 0.3 + (fy * 0.05).sin() * 6.0).sin() + 1.0) / 2.0;
            let b = ((fy * 0.21 + fx * 0.07).cos() + 1.0) / 2.0;
            data[y * w + x] = 0.1 + 0.8 * a * b;
            data[h * w + y * w + x] = 0.2 + 0.5 * b;
            data[2 * h * w + y * w + x] = 0.9 - 0.7 * a;
        }
    }
    Tensor::from_vec(data, (1, 3, h, w), &Device::Cpu).unwrap()
}

/// Loads an image file as a (1,3,H,W) tensor with the longer side `size`.
pub fn load(path: &std::path::Path, size: u32) -> Tensor {
    let img = stylestream::image_io::load_image(path).unwrap();
    let rgb = stylestream::image_io::resize_longer_side(&img.rgb, size);
    stylestream::image_io::image_to_tensor(&rgb, &Device::Cpu).unwrap()
}

/// Mean absolute difference between two tensors of the same shape.
pub fn mean_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Writes an H.264 clip of FFmpeg's test pattern (`size` like "160x120",
/// `rate` frames/s, `seconds` long) with the ffmpeg CLI, which
/// scripts/setup.sh installs, so that tests need no shared data.
/// Err when the CLI cannot be run.
pub fn testsrc_clip(
    path: &Path,
    size: &str,
    rate: u32,
    seconds: u32,
) -> std::io::Result<ExitStatus> {
    let source = format!("testsrc=size={size}:rate={rate}:duration={seconds}");
    Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", &source])
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx264"])
        .arg(path)
        .status()
}

/// Runs the `stylestream` binary with `args` and returns what it did.
/// DISPLAY and WAYLAND_DISPLAY are removed, so that no test opens a window
/// on the developer's screen.
pub fn stylestream<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_stylestream"))
        .args(args)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run the stylestream binary")
}

/// The command's stderr, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the command succeeded, with its stderr as the failure
/// message, and returns that stderr for further checks.
#[track_caller]
pub fn assert_success(out: &Output) -> String {
    let err = stderr(out);
    assert!(
        out.status.success(),
        "expected success, got {}: {err}",
        out.status
    );
    err
}

/// Asserts the way a command should fail on bad input: a non-zero exit, an
/// error that contains `expect`, and no panic. Returns the stderr.
#[track_caller]
pub fn assert_clean_failure(out: &Output, expect: &str) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(err.contains(expect), "expected '{expect}' in: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    err
}
