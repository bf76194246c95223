//! Content photos for training: which files, which crop of which photo at
//! each iteration, and loading them ahead of the compute in a background
//! thread.
//!
//! Sampling is a pure function of `(seed, iteration)`: the batch of
//! iteration `i` does not depend on how many iterations ran before in this
//! process. That is what makes a resumed run reproduce an uninterrupted
//! one exactly, with no generator state to save.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use anyhow::{bail, Result};
use image::imageops::{self, FilterType};
use image::Rgb32FImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::image_io::{append_planar, composite_on, load_image};

/// Extensions of the photos training reads.
const PHOTO_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// How much of the shorter side a random crop covers, at least. Crops of
/// 70-100 % vary the scale of what the network sees a little (so it does
/// not learn one brush size per object size) without zooming into blur.
const MIN_CROP_FRACTION: f32 = 0.7;

/// Batches decoded ahead of the compute.
const QUEUE_DEPTH: usize = 3;

/// Every JPEG and PNG under `dir`, recursively, in name order.
pub fn list_photos(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!(
            "content folder {} does not exist or is not a folder",
            dir.display()
        );
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| anyhow::anyhow!("cannot list {}: {e}", d.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| PHOTO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(path);
            }
        }
    }
    if out.is_empty() {
        bail!(
            "no JPEG or PNG photos under {} (searched recursively)",
            dir.display()
        );
    }
    out.sort();
    Ok(out)
}

/// The generator for one iteration's choices.
fn iteration_rng(seed: u64, iteration: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Loads a photo as RGB (transparency composited on white).
fn load_rgb(path: &Path) -> Result<Rgb32FImage> {
    let img = load_image(path)?;
    Ok(match &img.alpha {
        Some(a) => composite_on(&img.rgb, a, [1.0; 3]),
        None => img.rgb,
    })
}

/// A random square crop (side 70-100 % of the shorter side, anywhere),
/// resized to `size`, flipped left-right half the time.
fn random_crop(img: &Rgb32FImage, size: u32, rng: &mut StdRng) -> Rgb32FImage {
    let (w, h) = img.dimensions();
    let short = w.min(h);
    let side =
        ((short as f32 * rng.random_range(MIN_CROP_FRACTION..=1.0)).round() as u32).clamp(1, short);
    let x = rng.random_range(0..=w - side);
    let y = rng.random_range(0..=h - side);
    let crop = imageops::crop_imm(img, x, y, side, side).to_image();
    let mut out = imageops::resize(&crop, size, size, FilterType::Triangle);
    if rng.random_bool(0.5) {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// The centre square of `img` resized to `size`: the validation view.
pub fn center_crop(img: &Rgb32FImage, size: u32) -> Rgb32FImage {
    let (w, h) = img.dimensions();
    let side = w.min(h);
    let crop = imageops::crop_imm(img, (w - side) / 2, (h - side) / 2, side, side).to_image();
    imageops::resize(&crop, size, size, FilterType::Triangle)
}

/// Planar `(N, 3, S, S)` floats from square RGB images of side `S`.
pub fn to_planar(images: &[Rgb32FImage]) -> Vec<f32> {
    let mut out = Vec::new();
    for img in images {
        append_planar(img, &mut out);
    }
    out
}

/// One iteration's photos, ready to become a tensor.
pub struct Batch {
    pub iteration: u64,
    /// `(batch, 3, size, size)`, RGB 0..1, planar.
    pub pixels: Vec<f32>,
    /// Photos that could not be read while building this batch (each is
    /// reported once, then skipped for good).
    pub skipped: Vec<String>,
}

/// Builds the batch of `iteration`: `batch` photos drawn uniformly (with
/// replacement) by the iteration's generator; an unreadable photo is
/// replaced by the next readable one in name order.
pub fn make_batch(
    files: &[PathBuf],
    bad: &mut HashSet<usize>,
    seed: u64,
    iteration: u64,
    batch: usize,
    size: u32,
) -> Result<Batch> {
    let mut rng = iteration_rng(seed, iteration);
    let mut images = Vec::with_capacity(batch);
    let mut skipped = Vec::new();
    for _ in 0..batch {
        let mut index = rng.random_range(0..files.len());
        let img = loop {
            if bad.len() == files.len() {
                bail!("none of the {} content photos could be read", files.len());
            }
            if !bad.contains(&index) {
                match load_rgb(&files[index]) {
                    Ok(img) if img.width() >= 2 && img.height() >= 2 => break img,
                    Ok(_) => {
                        skipped.push(format!("{}: too small", files[index].display()));
                        bad.insert(index);
                    }
                    Err(e) => {
                        skipped.push(format!("{e:#}"));
                        bad.insert(index);
                    }
                }
            }
            index = (index + 1) % files.len();
        };
        images.push(random_crop(&img, size, &mut rng));
    }
    Ok(Batch {
        iteration,
        pixels: to_planar(&images),
        skipped,
    })
}

/// Decodes batches for iterations `start..end` in a background thread, a
/// few ahead of the consumer, so that the compute never waits on JPEG
/// decoding. Dropping the loader stops the thread.
pub struct BatchLoader {
    rx: Receiver<Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl BatchLoader {
    pub fn spawn(
        files: Vec<PathBuf>,
        seed: u64,
        start: u64,
        end: u64,
        batch: usize,
        size: u32,
    ) -> Self {
        let (tx, rx) = sync_channel(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("train-data".into())
            .spawn(move || {
                let mut bad = HashSet::new();
                for iteration in start..end {
                    let b = make_batch(&files, &mut bad, seed, iteration, batch, size);
                    let failed = b.is_err();
                    if tx.send(b).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawning a thread");
        Self {
            rx,
            handle: Some(handle),
        }
    }

    /// The next batch, in iteration order.
    pub fn next_batch(&self) -> Result<Batch> {
        match self.rx.recv() {
            Ok(b) => b,
            Err(_) => bail!("the data loader stopped unexpectedly"),
        }
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Unblock the thread (its send fails once the receiver is gone) by
        // draining nothing: replacing the receiver drops it.
        let (_, rx) = sync_channel(1);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The fixed validation set: the first `count` readable photos of `dir` in
/// name order, centre-cropped to `size`. Unreadable ones are skipped and
/// returned as messages.
pub fn validation_set(
    dir: &Path,
    count: usize,
    size: u32,
) -> Result<(Vec<Rgb32FImage>, Vec<String>)> {
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for path in list_photos(dir)? {
        if images.len() == count {
            break;
        }
        match load_rgb(&path) {
            Ok(img) => images.push(center_crop(&img, size)),
            Err(e) => skipped.push(format!("{e:#}")),
        }
    }
    if images.is_empty() {
        bail!("no readable validation photos under {}", dir.display());
    }
    Ok((images, skipped))
}
