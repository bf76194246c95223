//! The live pipeline: capture, effect and outputs in their own threads,
//! joined by latest-frame slots.
//!
//! ```text
//!  capture thread        effect thread                  one thread per output
//!  FrameSource ─slot─▶  LiveChain, split, overlay ─┬─slot─▶ LiveSink (stream, v4l2, file)
//!                                                  └─slot─▶ Foreground (window; caller's thread)
//! ```
//!
//! Every slot holds one frame and a newer frame replaces an older one, so
//! no stage ever works through a backlog: the effect takes the newest
//! captured frame, each output shows the newest painted one, and a slow
//! output (a browser on a bad link) costs only its own frames. Drops are
//! counted per slot. The window runs on the caller's thread because
//! windowing systems want their windows used from the thread that made
//! them; it also reads the keys, which change [`Controls`] for the effect
//! thread's next frame.
//!
//! Ending: the source ends (end of a `--realtime` file, a camera gone for
//! good), or `stop` is set (Ctrl-C, the quit key, the window closed,
//! `duration` reached, an error in any stage). The capture thread then
//! closes its slot, the effect thread paints what is left and closes the
//! output slots, and every output finishes (a recording is flushed and
//! renamed into place) before [`run_live`] returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use candle_core::Device;

use super::chain::{Action, ControlState, Controls, LiveChain};
use super::overlay::{compose_split, draw_text_box};
use super::slot::{LatestSlot, Taken};
use super::source::{FrameSource, SourceEnd};
use super::stats::{LiveStats, OutputSummary};
use crate::video::frame::{frames_to_tensor, tensor_to_frames, RgbFrame};

/// A painted frame on its way to the outputs.
#[derive(Clone, Debug)]
pub struct OutputFrame {
    /// The source frame's number.
    pub seq: u64,
    /// When the source frame arrived (latency is measured from here).
    pub captured: Instant,
    pub rgb: RgbFrame,
}

/// An output running in its own thread.
pub trait LiveSink: Send {
    /// A short name for the log ("http://127.0.0.1:8080/", "clip.mp4").
    fn name(&self) -> String;
    /// Shows (writes, sends) one frame.
    fn show(&mut self, frame: &OutputFrame) -> Result<()>;
    /// Finishes the output (flushes and closes a recording); returns a
    /// line for the summary.
    fn finish(self: Box<Self>) -> Result<Option<String>>;
}

/// The output that runs on the caller's thread and takes the keys: the
/// preview window (or a stand-in in tests).
pub trait Foreground {
    fn name(&self) -> String;
    /// Shows one frame.
    fn show(&mut self, frame: &OutputFrame) -> Result<()>;
    /// Handles pending window events; returns what the keys asked for.
    fn poll(&mut self) -> Result<Vec<Action>>;
    /// False once the user closed it.
    fn is_open(&self) -> bool;
}

/// How a live session runs.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Where the effects' tensors live.
    pub device: Device,
    /// The settings at the start (keys change them).
    pub initial: ControlState,
    /// Stops the session when set (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Print a statistics line this often (and the start and end lines);
    /// `None` keeps the pipeline quiet.
    pub log_every: Option<Duration>,
    /// Where screenshots go.
    pub screenshot_dir: PathBuf,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            initial: ControlState::default(),
            stop: Arc::new(AtomicBool::new(false)),
            log_every: None,
            screenshot_dir: PathBuf::from("."),
            duration: None,
        }
    }
}

/// What a live session did.
#[derive(Clone, Debug, Default)]
pub struct LiveSummary {
    pub source: String,
    pub seconds: f64,
    /// Frames the source delivered.
    pub captured: u64,
    /// Frames the effect had no time for (replaced before it took them).
    pub dropped_before_effect: u64,
    pub painted: u64,
    /// Mean effect time per painted frame, in ms.
    pub effect_ms: Option<f64>,
    /// Per output: frames shown, rate, latency; and frames it had no time for.
    pub outputs: Vec<(OutputSummary, u64)>,
    /// Why the source ended, when it is worth saying.
    pub note: Option<String>,
    /// What the outputs said when they finished (file written, ...).
    pub finished: Vec<String>,
    pub screenshots: Vec<PathBuf>,
}

impl LiveSummary {
    /// The summary as lines for the terminal.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!(
            "{:.1} s: {} frames captured, {} painted ({} dropped before the effect{})",
            self.seconds,
            self.captured,
            self.painted,
            self.dropped_before_effect,
            self.effect_ms
                .map(|ms| format!("; effect {ms:.1} ms a frame"))
                .unwrap_or_default()
        )];
        for (o, dropped) in &self.outputs {
            v.push(format!(
                "{}: {} frames shown, {:.1} frames/s, latency median {} (90% under {}, max {}){}",
                o.name,
                o.shown,
                o.fps,
                ms(o.latency_median_ms),
                ms(o.latency_p90_ms),
                ms(o.latency_max_ms),
                if *dropped > 0 {
                    format!(", {dropped} frames skipped")
                } else {
                    String::new()
                }
            ));
        }
        v.extend(self.finished.iter().cloned());
        v.extend(self.note.iter().cloned());
        v
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

/// Runs a live session until the source ends or `config.stop` is set (see
/// the module docs). The outputs are finished before it returns, also on
/// errors; the first error of any stage is returned.
pub fn run_live(
    source: Box<dyn FrameSource>,
    chain: &mut LiveChain<'_>,
    sinks: Vec<Box<dyn LiveSink>>,
    mut foreground: Option<&mut dyn Foreground>,
    config: &LiveConfig,
) -> Result<LiveSummary> {
    let started = Instant::now();
    let source_name = source.describe();
    let log = config.log_every.is_some();
    // Output 0 is the window when there is one: its figures go on the overlay.
    let mut names: Vec<String> = foreground.iter().map(|f| f.name()).collect();
    names.extend(sinks.iter().map(|s| s.name()));
    if log {
        eprintln!("live: source: {source_name}");
        for line in chain.describe() {
            eprintln!("live: {line}");
        }
        eprintln!("live: outputs: {}", names.join(", "));
    }
    let stats = LiveStats::new(&names);
    let controls = Controls::new(config.initial.clone());
    let input: LatestSlot<super::source::CapturedFrame> = LatestSlot::new();
    let slots: Vec<LatestSlot<Arc<OutputFrame>>> =
        names.iter().map(|_| LatestSlot::new()).collect();
    let stop = &config.stop;
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let fail = |e: anyhow::Error| {
        stop.store(true, Ordering::SeqCst);
        errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    };
    let fg_offset = usize::from(foreground.is_some());
    let models = chain.model_count();
    let has_dream = chain.has_dream();
    let mut screenshots = Vec::new();
    let shot_counter = AtomicU64::new(0);

    let (end, finished) = std::thread::scope(|s| {
        let capture = s.spawn(|| {
            let end = source.run(stop, &mut |f| {
                input.put(f);
            });
            input.close();
            end
        });
        let effect = s.spawn(|| {
            if let Err(e) = effect_loop(chain, &input, &slots, &controls, &stats, config) {
                fail(e);
                // Unblock the capture thread's next put and end it.
                input.close();
            }
            for slot in &slots {
                slot.close();
            }
        });
        let sink_threads: Vec<_> = sinks
            .into_iter()
            .enumerate()
            .map(|(i, mut sink)| {
                let slot = &slots[i + fg_offset];
                let stats = &stats;
                let fail = &fail;
                s.spawn(move || {
                    loop {
                        match slot.take(Duration::from_millis(100)) {
                            Taken::Value(f) => {
                                if let Err(e) = sink.show(&f) {
                                    fail(e.context(format!("output {}", sink.name())));
                                    break;
                                }
                                stats.shown(i + fg_offset, f.captured);
                            }
                            Taken::Empty => {}
                            Taken::Closed => break,
                        }
                    }
                    match sink.finish() {
                        Ok(line) => line,
                        Err(e) => {
                            fail(e);
                            None
                        }
                    }
                })
            })
            .collect();

        // The caller's thread: the window, keys, the log, the clock.
        let mut last_log = Instant::now();
        let mut last_frame: Option<Arc<OutputFrame>> = None;
        loop {
            let mut actions = Vec::new();
            if let Some(fg) = foreground.as_deref_mut() {
                match slots[0].take(Duration::from_millis(10)) {
                    Taken::Value(f) => {
                        if let Err(e) = fg.show(&f) {
                            fail(e.context(format!("output {}", fg.name())));
                        } else {
                            stats.shown(0, f.captured);
                            last_frame = Some(f);
                        }
                    }
                    Taken::Empty => {}
                    Taken::Closed => break,
                }
                match fg.poll() {
                    Ok(a) => actions = a,
                    Err(e) => fail(e),
                }
                if !fg.is_open() {
                    stop.store(true, Ordering::SeqCst);
                }
            } else {
                if effect.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            for action in actions {
                match action {
                    Action::Quit => stop.store(true, Ordering::SeqCst),
                    Action::Screenshot => match &last_frame {
                        Some(f) => {
                            let n = shot_counter.fetch_add(1, Ordering::Relaxed);
                            match save_screenshot(&f.rgb, &config.screenshot_dir, n) {
                                Ok(p) => {
                                    eprintln!("live: screenshot {}", p.display());
                                    screenshots.push(p);
                                }
                                Err(e) => eprintln!("live: screenshot failed: {e:#}"),
                            }
                        }
                        None => eprintln!("live: no frame shown yet; no screenshot"),
                    },
                    other => {
                        if let Some(line) = controls.apply(other, models, has_dream) {
                            eprintln!("live: {line}");
                        }
                    }
                }
            }
            if let Some(every) = config.log_every {
                if last_log.elapsed() >= every {
                    last_log = Instant::now();
                    eprintln!("live: {}", status_line(&stats, &names, &input, &slots));
                }
            }
            if config.duration.is_some_and(|d| started.elapsed() >= d) {
                stop.store(true, Ordering::SeqCst);
            }
        }
        if effect.join().is_err() {
            fail(anyhow!("the effect thread crashed"));
        }
        let finished: Vec<String> = sink_threads
            .into_iter()
            .filter_map(|t| match t.join() {
                Ok(line) => line,
                Err(_) => {
                    fail(anyhow!("an output thread crashed"));
                    None
                }
            })
            .collect();
        let end = capture
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the capture thread crashed")));
        (end, finished)
    });

    let end: SourceEnd = match end {
        Ok(e) => e,
        Err(e) => {
            fail(e);
            SourceEnd::default()
        }
    };
    if let Some(e) = errors
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .next()
    {
        return Err(e);
    }
    let outputs = stats
        .summary()
        .into_iter()
        .zip(slots.iter().map(|s| s.dropped()))
        .collect();
    Ok(LiveSummary {
        source: source_name,
        seconds: started.elapsed().as_secs_f64(),
        captured: end.frames,
        dropped_before_effect: input.dropped(),
        painted: stats.painted_count(),
        effect_ms: stats.effect_mean_ms(),
        outputs,
        note: end.note,
        finished,
        screenshots,
    })
}

/// Takes the newest captured frame, paints it, and hands it to every
/// output, until the input slot closes.
fn effect_loop(
    chain: &mut LiveChain<'_>,
    input: &LatestSlot<super::source::CapturedFrame>,
    slots: &[LatestSlot<Arc<OutputFrame>>],
    controls: &Controls,
    stats: &LiveStats,
    config: &LiveConfig,
) -> Result<()> {
    loop {
        let frame = match input.take(Duration::from_millis(100)) {
            Taken::Value(f) => f,
            Taken::Empty => continue,
            Taken::Closed => return Ok(()),
        };
        let t0 = Instant::now();
        let state = controls.get();
        let original = state.split.then(|| frame.image.to_rgb());
        let tensor = frames_to_tensor(vec![frame.image], &config.device)?;
        let painted = chain.paint(&tensor, &state)?;
        let mut rgb = tensor_to_frames(&painted)?
            .pop()
            .ok_or_else(|| anyhow!("the effect returned no frame"))?
            .to_rgb();
        if let Some(o) = &original {
            compose_split(o, &mut rgb);
        }
        stats.painted(t0.elapsed().as_secs_f64() * 1e3);
        if state.overlay {
            draw_text_box(&mut rgb, &overlay_lines(chain, &state, stats, input));
        }
        let out = Arc::new(OutputFrame {
            seq: frame.seq,
            captured: frame.captured,
            rgb,
        });
        for slot in slots {
            slot.put(out.clone());
        }
    }
}

/// The overlay's text: rate and latency of the main output, then what is
/// painting.
fn overlay_lines(
    chain: &LiveChain<'_>,
    state: &ControlState,
    stats: &LiveStats,
    input: &LatestSlot<super::source::CapturedFrame>,
) -> Vec<String> {
    let r = stats.rolling(0);
    let mut first = format!("{:.1} fps", r.fps);
    if let Some(l) = r.latency_ms {
        first.push_str(&format!("  {l:.0} ms"));
    }
    if let Some(e) = r.effect_ms {
        first.push_str(&format!("  fx {e:.0} ms"));
    }
    first.push_str(&format!("  drop {}", input.dropped()));
    let mut second = match chain.model_name(state.model) {
        Some(name) => {
            // "name (style ..., preset)": the name is what tells models apart.
            let name = name.split(" (").next().unwrap_or(&name);
            let short: String = name.chars().take(32).collect();
            format!(
                "{}/{} {short}",
                state.model % chain.model_count() + 1,
                chain.model_count()
            )
        }
        None => "no model".to_string(),
    };
    if state.strength < 1.0 {
        second.push_str(&format!(" x{:.1}", state.strength));
    }
    if state.dream && chain.has_dream() {
        second.push_str(" +dream");
    }
    if state.split {
        second.push_str(" split");
    }
    vec![first, second]
}

/// The periodic log line.
fn status_line(
    stats: &LiveStats,
    names: &[String],
    input: &LatestSlot<super::source::CapturedFrame>,
    slots: &[LatestSlot<Arc<OutputFrame>>],
) -> String {
    let mut parts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let r = stats.rolling(i);
        parts.push(format!(
            "{name}: {:.1} fps, latency {}",
            r.fps,
            ms(r.latency_ms)
        ));
    }
    let r = stats.rolling(0);
    let skipped: u64 = slots.iter().map(|s| s.dropped()).sum();
    format!(
        "{}; effect {}; dropped {} before the effect, {} at outputs",
        parts.join("; "),
        r.effect_ms
            .map(|e| format!("{e:.0} ms/frame"))
            .unwrap_or_else(|| "-".into()),
        input.dropped(),
        skipped
    )
}

/// Saves a frame as `stylestream-<unix time>-<n>.png` in `dir`.
fn save_screenshot(frame: &RgbFrame, dir: &Path, n: u64) -> Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("stylestream-{secs}-{n}.png"));
    image::save_buffer_with_format(
        &path,
        &frame.data,
        frame.width,
        frame.height,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
