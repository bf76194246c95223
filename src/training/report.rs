//! What a training run tells its user besides the progress bar: a JSON-lines
//! log of every iteration's losses, and at each checkpoint a plot of the
//! loss curves and a grid of validation photos stylised so far.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{anyhow, Result};
use image::Rgb32FImage;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::objective::LossValues;
use crate::image_io::{save_image, write_file_atomic};

/// One line of the log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogEntry {
    /// Iterations completed (1 after the first).
    pub iteration: u64,
    pub learning_rate: f64,
    /// Weighted training loss terms of this iteration's batch.
    pub train: LossValues,
    /// Validation losses, at checkpoints when there is a validation set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<LossValues>,
    pub images_per_second: f64,
    /// Training time so far, in seconds, over all sessions of the run.
    pub elapsed_seconds: f64,
}

/// Reads a log, keeping entries up to `up_to` iterations (a resumed run
/// drops what was logged after its checkpoint, so the log matches).
pub fn read_log(path: &Path, up_to: u64) -> Result<Vec<LogEntry>> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        if let Ok(e) = serde_json::from_str::<LogEntry>(&line) {
            if e.iteration <= up_to {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// Rewrites the log to exactly `entries` (atomically).
pub fn rewrite_log(path: &Path, entries: &[LogEntry]) -> Result<()> {
    write_file_atomic(path, |tmp| {
        let mut f = std::fs::File::create(tmp)?;
        for e in entries {
            writeln!(f, "{}", serde_json::to_string(e)?)?;
        }
        Ok(())
    })
}

/// Appends one entry.
pub fn append_log(path: &Path, entry: &LogEntry) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| anyhow!("cannot write log {}: {e}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(entry)?)?;
    Ok(())
}

/// Plots the training loss terms (smoothed over 20 iterations) and the
/// validation total against iterations, log scale, as SVG.
pub fn plot_losses(path: &Path, entries: &[LogEntry], title: &str) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    type Pick = fn(&LossValues) -> f64;
    let series: [(&str, Pick, RGBColor); 5] = [
        ("total", |v| v.total, BLACK),
        ("content", |v| v.content, BLUE),
        ("style", |v| v.style, RED),
        ("dream", |v| v.dream.abs(), MAGENTA),
        ("tv", |v| v.tv, GREEN),
    ];
    let smooth = |pick: Pick| -> Vec<(f64, f64)> {
        let window = 20usize;
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let lo = i.saturating_sub(window - 1);
                let mean = entries[lo..=i].iter().map(|e| pick(&e.train)).sum::<f64>()
                    / (i - lo + 1) as f64;
                (e.iteration as f64, mean)
            })
            .filter(|&(_, v)| v > 0.0 && v.is_finite())
            .collect()
    };
    type Curve<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);
    let curves: Vec<Curve> = series
        .iter()
        .map(|(name, pick, color)| (*name, smooth(*pick), *color))
        .filter(|(_, pts, _)| !pts.is_empty())
        .collect();
    let val: Vec<(f64, f64)> = entries
        .iter()
        .filter_map(|e| e.val.map(|v| (e.iteration as f64, v.total)))
        .filter(|&(_, v)| v > 0.0 && v.is_finite())
        .collect();
    let all = curves.iter().flat_map(|c| c.1.iter()).chain(val.iter());
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for &(_, v) in all {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo >= hi {
        hi = lo * 2.0 + 1e-9;
    }
    let max_x = entries.last().map_or(1.0, |e| e.iteration as f64).max(1.0);
    let svg = {
        let mut buf = String::new();
        {
            let root = SVGBackend::with_string(&mut buf, (900, 540)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(0f64..max_x, (lo * 0.9..hi * 1.1).log_scale())
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("iteration")
                .y_desc("weighted loss")
                .draw()
                .map_err(plot_err)?;
            for (name, pts, color) in &curves {
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), color))
                    .map_err(plot_err)?
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
            }
            if !val.is_empty() {
                chart
                    .draw_series(LineSeries::new(val.iter().copied(), CYAN.stroke_width(2)))
                    .map_err(plot_err)?
                    .label("validation total")
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], CYAN));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        buf
    };
    write_file_atomic(path, |tmp| Ok(std::fs::write(tmp, svg)?))
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("cannot draw the loss plot: {e:?}")
}

/// Saves a grid: the validation photos on the top row, their stylised
/// versions below.
pub fn save_grid(path: &Path, photos: &[Rgb32FImage], painted: &[Rgb32FImage]) -> Result<()> {
    let Some(first) = photos.first() else {
        return Ok(());
    };
    let (w, h) = first.dimensions();
    let cols = photos.len() as u32;
    let mut grid = Rgb32FImage::new(w * cols, h * 2);
    for (i, (a, b)) in photos.iter().zip(painted).enumerate() {
        image::imageops::replace(&mut grid, a, (i as u32 * w) as i64, 0);
        image::imageops::replace(&mut grid, b, (i as u32 * w) as i64, h as i64);
    }
    save_image(&grid, None, path)
}
