//! The conversion itself: three threads joined by bounded queues.
//!
//! * The decode thread owns the [`VideoSource`] and fills the first queue
//!   with frames (already planar floats) and other streams' packets.
//! * The caller's thread runs the effects: it owns them (they hold model
//!   weights and device handles, and need not be `Sync`), takes up to a
//!   batch of frames from the queue, paints them in one tensor, blends with
//!   `strength`, and passes frames and packets on in input order.
//! * The encode thread owns the [`FrameSink`] and writes.
//!
//! The queues are short (a few frames), so memory does not grow with the
//! video's length, and a stalled stage stops the others instead of
//! buffering. When the effect is the slow stage, as it is for any real
//! effect, decoding and encoding happen while it works and add nothing to
//! the total time; [`Summary`] reports the effect's own rate beside the
//! end-to-end rate so the overlap can be checked.
//!
//! Ending: the output is finished (flushed, renamed into place) only when
//! the source was read to its end and every frame was painted and written.
//! On an error in any stage, or Ctrl-C, the other stages stop at their next
//! queue operation and the sink's temporary file is removed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use candle_core::{Device, Tensor};
use ffmpeg_next::Packet;
use indicatif::{ProgressBar, ProgressStyle};

use super::frame::{frames_to_tensor, tensor_to_frames, PlanarFrame};
use super::priority::{self, ThreadSnapshot};
use super::sink::{open_sink, EncodeOptions, Finished, FrameSink, OutputTarget, SinkGeometry};
use super::source::{DecodeSettings, DecodedFrame, SourceItem, SourceStats, VideoInfo};
use super::{is_url, VideoSource};
use crate::effects::Effect;
use crate::image_io::longer_side_dims;

/// How to convert.
#[derive(Clone, Debug)]
pub struct Options {
    /// Process frames with this longer side (`--size`); default: as input.
    pub size: Option<u32>,
    /// Write at the input's size rather than the processing size.
    pub keep_size: bool,
    /// Blend of effect and original frame: 1 is the full effect.
    pub strength: f64,
    pub encode: EncodeOptions,
    /// Where the effects' tensors live.
    pub device: Device,
    /// Frames per effect call; default: the smallest
    /// [`Effect::preferred_batch`] of the effects.
    pub batch: Option<usize>,
    /// Frames each queue holds (memory is about 2 x this many frames).
    pub queue: usize,
    /// Show a progress bar and the plan (notes) on stderr.
    pub progress: bool,
    /// Stops the conversion when set (see [`super::interrupt::flag`]).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Convert only the first frames (previews, benchmarks).
    pub max_frames: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            size: None,
            keep_size: false,
            strength: 1.0,
            encode: EncodeOptions::default(),
            device: Device::Cpu,
            batch: None,
            queue: 8,
            progress: false,
            cancel: None,
            max_frames: None,
        }
    }
}

/// What a conversion did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub input: VideoInfo,
    /// Where it went (`-` for stdout).
    pub output: String,
    /// Frames written.
    pub frames: u64,
    /// Wall time of the whole conversion.
    pub seconds: f64,
    /// Time spent in the effects (and blending), the pipeline's floor.
    pub effect_seconds: f64,
    /// Processing size (upright).
    pub width: u32,
    pub height: u32,
    /// Size of the output bytes written.
    pub output_bytes: u64,
    pub source: SourceStats,
    /// Other-stream packets the output could not take.
    pub dropped_packets: u64,
    pub audio_copied: usize,
    pub audio_reencoded: usize,
    /// What was changed or left out (padding, dropped streams...).
    pub notes: Vec<String>,
}

impl Summary {
    /// End-to-end frames per second.
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }

    /// Frames per second of the effects alone.
    pub fn effect_fps(&self) -> f64 {
        self.frames as f64 / self.effect_seconds.max(1e-9)
    }

    /// The summary as lines for the terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{} frames at {}x{} in {:.1}s: {:.1} fps (the effect alone: {:.1} fps); wrote {} ({})",
            self.frames,
            self.width,
            self.height,
            self.seconds,
            self.fps(),
            self.effect_fps(),
            self.output,
            human_bytes(self.output_bytes)
        )];
        if self.audio_copied + self.audio_reencoded > 0 {
            out.push(format!(
                "audio: {} stream(s) copied, {} re-encoded",
                self.audio_copied, self.audio_reencoded
            ));
        }
        let s = &self.source;
        if s.corrupt_packets > 0 || s.damaged_frames > 0 {
            out.push(format!(
                "damaged input: {} damaged packet(s) skipped or repaired by the decoder, {} frame(s) decoded with errors",
                s.corrupt_packets, s.damaged_frames
            ));
        }
        if s.repaired_timestamps > 0 {
            out.push(format!(
                "{} frame(s) had missing or backward timestamps and were given the next free one",
                s.repaired_timestamps
            ));
        }
        if let Some(why) = &s.ended_early {
            out.push(format!(
                "the input ended early ({why}): the output holds the frames before that"
            ));
        }
        if let Some(listed) = s.header_frames {
            out.push(format!(
                "the input holds {} of the {listed} frames its header lists (truncated or damaged); \
                 the output has every frame that could be decoded",
                s.frames
            ));
        }
        if self.dropped_packets > 0 {
            out.push(format!(
                "{} audio/subtitle packet(s) could not be written and were skipped",
                self.dropped_packets
            ));
        }
        out
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// Rough memory budget of each queue between threads.
const QUEUE_BYTES: usize = 256 << 20;

/// Messages to the encode thread.
enum SinkMsg {
    Frame(DecodedFrame),
    Packet(usize, Packet),
    /// Everything was painted: finish the output and rename it into place.
    Finish,
}

/// The checks [`convert`] makes before any work, for commands to call
/// before loading their models: the input exists (for a local file) and is
/// not empty; the output's folder exists, its name gives a video format,
/// and it is not the input.
pub fn check_paths(input: &Path, output: &Path) -> Result<()> {
    super::source::check_input(input)?;
    match OutputTarget::parse(output) {
        OutputTarget::File(path) => {
            let inputs: &[&Path] = if is_url(input) { &[] } else { &[input] };
            crate::image_io::check_output_file(&path, inputs)?;
            super::container::muxer_for(&path)?;
        }
        OutputTarget::Frames(dir) => {
            if dir.exists() && !dir.is_dir() {
                bail!("cannot write frames into {}: it is a file", dir.display());
            }
        }
        OutputTarget::Stdout => {}
    }
    Ok(())
}

/// Converts the video `input` into `output` through `effects`, applied in
/// order to every frame (see the module docs for the threads).
///
/// `output` is a video file (format from the extension), a folder (an
/// existing directory or a path ending in `/`) for numbered PNG frames, or
/// `-` for `yuv4mpegpipe` on stdout. The output is refused if it is the
/// input. Nothing appears under the output's name unless the whole video
/// was converted.
pub fn convert(
    input: &Path,
    output: &Path,
    options: &Options,
    effects: &mut [Box<dyn Effect + '_>],
) -> Result<Summary> {
    let started = Instant::now();
    check_paths(input, output)?;
    let target = OutputTarget::parse(output);
    if !(0.0..=1.0).contains(&options.strength) {
        bail!(
            "strength {} is out of range: use 0 (the original) to 1 (the full effect)",
            options.strength
        );
    }
    // See `priority`: on the CPU the codecs give way to the effect.
    let codecs_yield = options.device.is_cpu();
    let before_codecs = ThreadSnapshot::now();
    let source = VideoSource::open(input)?;
    let info = source.info().clone();
    let (dw, dh) = info.display_size();
    let (width, height) = match options.size {
        Some(n) => longer_side_dims(dw, dh, n),
        None => (dw, dh),
    };
    let turns = info.rotation;
    let (sw, sh) = if turns % 2 == 1 {
        (height, width)
    } else {
        (width, height)
    };
    let (out_width, out_height) = if options.keep_size {
        (info.width, info.height)
    } else {
        (sw, sh)
    };
    let geometry = SinkGeometry {
        width,
        height,
        out_width,
        out_height,
        turns,
    };
    let plan = open_sink(&target, &source, &geometry, &options.encode)?;
    if codecs_yield {
        before_codecs.yield_new_threads();
    }
    let settings = DecodeSettings {
        width: sw,
        height: sh,
        turns,
        pass_streams: plan.pass_streams,
        max_frames: options.max_frames,
    };
    let notes = plan.notes;
    let output_name = target
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".into());
    let total = match (info.frames, options.max_frames) {
        (Some(f), Some(m)) => Some(f.min(m)),
        (f, m) => f.or(m),
    };
    let bar = progress_bar(options.progress, total);
    if options.progress {
        let names: Vec<String> = effects.iter().map(|e| e.describe()).collect();
        say(
            &bar,
            &format!(
                "video: {} ({} {}x{}{}, {}) -> {output_name} at {width}x{height}{}; effects: {}",
                input.display(),
                info.codec,
                info.width,
                info.height,
                if turns != 0 {
                    format!(", shown turned {}° clockwise", turns * 90)
                } else {
                    String::new()
                },
                info.frame_rate
                    .map(|r| format!("{:.3} fps", f64::from(r)))
                    .unwrap_or_else(|| "unknown rate".into()),
                if options.keep_size && (out_width, out_height) != (sw, sh) {
                    format!(" (written at {out_width}x{out_height})")
                } else {
                    String::new()
                },
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(" -> ")
                }
            ),
        );
        for n in &notes {
            say(&bar, &format!("video: note: {n}"));
        }
    }

    let cancel = options
        .cancel
        .clone()
        .unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    let batch = options
        .batch
        .unwrap_or_else(|| {
            effects
                .iter()
                .map(|e| e.preferred_batch())
                .min()
                .unwrap_or(1)
        })
        .max(1);
    // Frames in flight are planar f32 (12 bytes a pixel): cap each queue
    // at about QUEUE_BYTES so 4K video does not hold gigabytes, but keep
    // room for a full batch.
    let frame_bytes = 12 * width as usize * height as usize;
    let queue = options
        .queue
        .min((QUEUE_BYTES / frame_bytes.max(1)).max(2))
        .max(batch)
        .max(1);
    let (src_tx, src_rx) = sync_channel::<SourceItem>(queue);
    let (sink_tx, sink_rx) = sync_channel::<SinkMsg>(queue);
    let sink = plan.sink;

    let (decoded, painted, written) = std::thread::scope(|s| {
        let cancel_d = &cancel;
        let settings = &settings;
        let decode = s.spawn(move || {
            if codecs_yield {
                priority::yield_this_thread();
            }
            source.run(settings, cancel_d, |item| src_tx.send(item).is_ok())
        });
        let bar_e = bar.clone();
        let encode = s.spawn(move || {
            if codecs_yield {
                priority::yield_this_thread();
            }
            write_loop(sink, sink_rx, &bar_e)
        });
        let painted = paint_loop(src_rx, &sink_tx, effects, options, batch, &cancel);
        let decoded = decode
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the decoder thread crashed")));
        // Finish only a complete, uninterrupted conversion; otherwise
        // dropping the queue makes the encode thread abandon the output.
        if painted.is_ok() && decoded.is_ok() && !cancel.load(Ordering::SeqCst) {
            let _ = sink_tx.send(SinkMsg::Finish);
        }
        drop(sink_tx);
        let written = encode
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the encoder thread crashed")));
        (decoded, painted, written)
    });
    bar.finish_and_clear();

    // The first real cause wins: an encoder error explains a "queue
    // closed" in the effect loop, and so on.
    let written = written?;
    if cancel.load(Ordering::SeqCst) {
        bail!("interrupted: nothing was written to {output_name}");
    }
    let source_stats = decoded?;
    let effect_seconds = match painted {
        Ok(t) => t,
        Err(e) if e.is::<SinkGone>() => bail!("the output stopped accepting frames"),
        Err(e) => return Err(e),
    };
    let Some((frames, finished)) = written else {
        bail!("the conversion stopped before the end: nothing was written to {output_name}");
    };
    Ok(Summary {
        input: info,
        output: output_name,
        frames,
        seconds: started.elapsed().as_secs_f64(),
        effect_seconds,
        width,
        height,
        output_bytes: finished.bytes,
        source: source_stats,
        dropped_packets: finished.dropped_packets,
        audio_copied: plan.audio_copied,
        audio_reencoded: plan.audio_reencoded,
        notes,
    })
}

/// The effect loop's "the encode thread is gone" (its own error says why).
#[derive(Debug)]
struct SinkGone;

impl std::fmt::Display for SinkGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the output stopped accepting frames")
    }
}

impl std::error::Error for SinkGone {}

/// An item waiting for its batch to be painted.
enum Held {
    Frame(DecodedFrame),
    Packet(usize, Packet),
}

/// Paints frames in batches and forwards everything in input order;
/// returns the seconds spent painting.
fn paint_loop(
    rx: Receiver<SourceItem>,
    tx: &SyncSender<SinkMsg>,
    effects: &mut [Box<dyn Effect + '_>],
    options: &Options,
    batch: usize,
    cancel: &AtomicBool,
) -> Result<f64> {
    let mut painting = Duration::ZERO;
    let mut held: Vec<Held> = Vec::new();
    loop {
        if cancel.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        // Wait for one item, then take whatever else is ready up to a full
        // batch: batches fill when decoding is ahead (the usual case) and
        // never wait for frames that are not there yet.
        let first = match rx.recv() {
            Ok(item) => item,
            Err(_) => break,
        };
        let mut frames = 0;
        let mut closed = false;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                SourceItem::Frame(f) => {
                    frames += 1;
                    held.push(Held::Frame(f));
                }
                SourceItem::Packet(i, p) => held.push(Held::Packet(i, p)),
            }
            if frames < batch {
                match rx.try_recv() {
                    Ok(item) => next = Some(item),
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => closed = true,
                }
            }
        }
        if frames > 0 {
            let t0 = Instant::now();
            paint_batch(&mut held, effects, options)?;
            painting += t0.elapsed();
        }
        for h in held.drain(..) {
            let msg = match h {
                Held::Frame(f) => SinkMsg::Frame(f),
                Held::Packet(i, p) => SinkMsg::Packet(i, p),
            };
            if tx.send(msg).is_err() {
                return Err(SinkGone.into());
            }
        }
        if closed {
            break;
        }
    }
    Ok(painting.as_secs_f64())
}

/// Runs the effects on the held frames (one tensor), in place.
fn paint_batch(
    held: &mut [Held],
    effects: &mut [Box<dyn Effect + '_>],
    options: &Options,
) -> Result<()> {
    let images: Vec<PlanarFrame> = held
        .iter_mut()
        .filter_map(|h| match h {
            Held::Frame(f) => Some(std::mem::replace(
                &mut f.image,
                PlanarFrame {
                    width: 0,
                    height: 0,
                    data: Vec::new(),
                },
            )),
            Held::Packet(..) => None,
        })
        .collect();
    let n = images.len();
    let input = frames_to_tensor(images, &options.device)?;
    let (_, _, h, w) = input.dims4()?;
    let mut x = input.clone();
    for e in effects.iter_mut() {
        x = e.apply_batch(&x)?;
        let (xn, _, xh, xw) = x.dims4()?;
        if xn != n {
            bail!("the effect {} returned {xn} frames for {n}", e.describe());
        }
        // A network may round an odd size; the video keeps one size.
        if (xh, xw) != (h, w) {
            x = x.upsample_bilinear2d(h, w, false)?;
        }
    }
    if options.strength < 1.0 {
        let x32 = x.to_dtype(input.dtype())?;
        x = blend(&x32, &input, options.strength)?;
    }
    let mut painted = tensor_to_frames(&x)?.into_iter();
    for h in held.iter_mut() {
        if let Held::Frame(f) = h {
            f.image = painted
                .next()
                .ok_or_else(|| anyhow!("internal: batch came back short"))?;
        }
    }
    Ok(())
}

/// `strength * painted + (1 - strength) * original`.
fn blend(painted: &Tensor, original: &Tensor, strength: f64) -> Result<Tensor> {
    Ok(((painted * strength)? + (original * (1.0 - strength))?)?)
}

/// Writes everything that arrives; finishes the output on `Finish`.
/// Returns `None` when the queue closed without `Finish` (the output was
/// abandoned and its temporary file removed).
fn write_loop(
    mut sink: Box<dyn FrameSink>,
    rx: Receiver<SinkMsg>,
    bar: &ProgressBar,
) -> Result<Option<(u64, Finished)>> {
    let mut frames = 0u64;
    for msg in rx {
        match msg {
            SinkMsg::Frame(f) => {
                sink.write_frame(&f)?;
                frames += 1;
                bar.inc(1);
            }
            SinkMsg::Packet(i, p) => sink.write_packet(i, p)?,
            SinkMsg::Finish => return Ok(Some((frames, sink.finish()?))),
        }
    }
    Ok(None)
}

/// Prints a line above the bar, or plainly when the bar is not drawn
/// (stderr is not a terminal), so logs keep the plan and notes.
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

fn progress_bar(show: bool, total: Option<u64>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    let template = if total.is_some() {
        "video [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} frames ({per_sec}, ETA {eta}) {msg}"
    } else {
        "video [{elapsed_precise}] {spinner} {pos} frames ({per_sec}) {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}
