//! Live frame sources: what the capture thread runs.
//!
//! A [`FrameSource`] pushes frames as they arrive, in real time, and never
//! waits for the effect: the pipeline puts each one into a latest-frame
//! slot ([`super::slot`]) that drops what the effect had no time for.
//!
//! * [`super::camera::CameraSource`] — a webcam through nokhwa (V4L2).
//! * [`RealtimeFile`] — a video file or URL, decoded by the video module's
//!   [`VideoSource`] and released at its own timestamps, so it behaves
//!   like a camera (`--realtime`): this is how the live pipeline is tested
//!   and benchmarked on machines without a camera.
//! * [`SyntheticSource`] — a generated test pattern at a given rate, for
//!   tests that need neither a camera nor a video file.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::video::frame::PlanarFrame;
use crate::video::source::{DecodeSettings, SourceItem};
use crate::video::VideoSource;

/// One frame as the capture thread hands it on.
#[derive(Clone, Debug)]
pub struct CapturedFrame {
    /// 0-based number of the frame in the source (gaps at the effect mean
    /// frames were dropped).
    pub seq: u64,
    /// When the frame arrived: latency is measured from here to display.
    pub captured: Instant,
    /// The picture, upright, at the processing size.
    pub image: PlanarFrame,
}

/// How a source ended.
#[derive(Clone, Debug, Default)]
pub struct SourceEnd {
    /// Frames delivered.
    pub frames: u64,
    /// Why it ended, when not simply at the end of a file or on request
    /// (a camera unplugged, a stream cut).
    pub note: Option<String>,
}

/// A live source of frames (camera, real-time file, test pattern).
pub trait FrameSource: Send {
    /// One line for the log: what is captured, at which size and rate.
    fn describe(&self) -> String;

    /// Size of the frames handed out (width, height).
    fn size(&self) -> (u32, u32);

    /// The nominal frame rate, when known.
    fn frame_rate(&self) -> Option<f64>;

    /// Captures until the source ends or `stop` is set, calling `emit` for
    /// every frame as soon as it arrives.
    fn run(
        self: Box<Self>,
        stop: &AtomicBool,
        emit: &mut dyn FnMut(CapturedFrame),
    ) -> Result<SourceEnd>;
}

/// Sleeps until `due`, waking early (returning false) when `stop` is set.
pub(crate) fn sleep_until(due: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(20)));
    }
}

/// Size with the longer side `longer`, the aspect kept, both sides even
/// (what YUV outputs such as H.264 and YUYV need).
pub fn live_dims(w: u32, h: u32, longer: Option<u32>) -> (u32, u32) {
    let (w, h) = match longer {
        Some(n) if w >= h => (n, (h as f64 * n as f64 / w as f64).round() as u32),
        Some(n) => ((w as f64 * n as f64 / h as f64).round() as u32, n),
        None => (w, h),
    };
    ((w & !1).max(2), (h & !1).max(2))
}

/// A video file or URL played as if it were a camera (`--realtime`): frames
/// are released at their timestamps (relative to the first), whether or
/// not the effect has taken the previous one.
pub struct RealtimeFile {
    source: VideoSource,
    name: String,
    width: u32,
    height: u32,
    loops: bool,
}

impl RealtimeFile {
    /// Opens `path` (anything FFmpeg reads); frames are scaled so the
    /// longer side is `size` when given. Errors name the input and why.
    pub fn open(path: &Path, size: Option<u32>) -> Result<Self> {
        let source = VideoSource::open(path)?;
        let (dw, dh) = source.info().display_size();
        let (width, height) = live_dims(dw, dh, size);
        Ok(Self {
            source,
            name: path.display().to_string(),
            width,
            height,
            loops: false,
        })
    }

    /// Starts again from the beginning at the end of the file, until
    /// stopped (a URL is opened again).
    pub fn looping(mut self, loops: bool) -> Self {
        self.loops = loops;
        self
    }
}

impl FrameSource for RealtimeFile {
    fn describe(&self) -> String {
        let info = self.source.info();
        format!(
            "{} in real time ({} {}x{}, {}) at {}x{}{}",
            self.name,
            info.codec,
            info.width,
            info.height,
            info.frame_rate
                .map(|r| format!("{:.2} fps", f64::from(r)))
                .unwrap_or_else(|| "unknown rate".into()),
            self.width,
            self.height,
            if self.loops { ", looping" } else { "" }
        )
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn frame_rate(&self) -> Option<f64> {
        self.source.info().frame_rate.map(f64::from)
    }

    fn run(
        self: Box<Self>,
        stop: &AtomicBool,
        emit: &mut dyn FnMut(CapturedFrame),
    ) -> Result<SourceEnd> {
        let RealtimeFile {
            mut source,
            name,
            width,
            height,
            loops,
        } = *self;
        let mut seq = 0u64;
        // Where the next pass starts on the wall clock, so a looped file
        // continues at its own pace without a jump.
        let mut pass_start = Instant::now();
        loop {
            let info = source.info().clone();
            let turns = info.rotation;
            let (sw, sh) = if turns % 2 == 1 {
                (height, width)
            } else {
                (width, height)
            };
            let settings = DecodeSettings {
                width: sw,
                height: sh,
                turns,
                pass_streams: vec![false; source.input().nb_streams() as usize],
                max_frames: None,
            };
            let tb = f64::from(info.time_base);
            let mut first_pts = None;
            let mut last_due = pass_start;
            let stats = source.run(&settings, stop, |item| {
                let SourceItem::Frame(frame) = item else {
                    return true;
                };
                let t0 = *first_pts.get_or_insert(frame.pts);
                let offset = ((frame.pts - t0) as f64 * tb).max(0.0);
                let due = pass_start + Duration::from_secs_f64(offset);
                // The frame "arrives" at its timestamp: if decoding ran
                // late, latency is still counted from when a camera would
                // have delivered it.
                if !sleep_until(due, stop) {
                    return false;
                }
                last_due = due + Duration::from_secs_f64((frame.duration as f64 * tb).max(0.0));
                emit(CapturedFrame {
                    seq,
                    captured: due,
                    image: frame.image,
                });
                seq += 1;
                true
            })?;
            if stop.load(Ordering::Relaxed) {
                return Ok(SourceEnd {
                    frames: seq,
                    note: None,
                });
            }
            if !loops {
                return Ok(SourceEnd {
                    frames: seq,
                    note: stats
                        .ended_early
                        .map(|why| format!("{name} ended early: {why}")),
                });
            }
            // Show the last frame for its duration, then start over.
            if !sleep_until(last_due, stop) {
                return Ok(SourceEnd {
                    frames: seq,
                    note: None,
                });
            }
            pass_start = last_due;
            source = VideoSource::open(Path::new(&name))?;
        }
    }
}

/// A moving test pattern at a fixed rate: a colour gradient with a bright
/// bar whose position follows the frame number.
pub struct SyntheticSource {
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    /// Frames to deliver before ending (`None`: until stopped).
    pub frames: Option<u64>,
}

impl SyntheticSource {
    /// The picture of frame `seq`.
    pub fn pattern(width: u32, height: u32, seq: u64) -> PlanarFrame {
        let (w, h) = (width as usize, height as usize);
        let n = w * h;
        let mut data = vec![0f32; 3 * n];
        let bar = (seq as usize * 4) % w.max(1);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let on_bar = x >= bar && x < bar + (w / 16).max(1);
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let (r, g, b) = if on_bar {
                    (1.0, 1.0, 1.0)
                } else {
                    (fx, fy, 0.5 * (1.0 - fx))
                };
                data[i] = r;
                data[n + i] = g;
                data[2 * n + i] = b;
            }
        }
        PlanarFrame {
            width,
            height,
            data,
        }
    }
}

impl FrameSource for SyntheticSource {
    fn describe(&self) -> String {
        format!(
            "test pattern {}x{} at {} fps",
            self.width, self.height, self.fps
        )
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn frame_rate(&self) -> Option<f64> {
        Some(self.fps)
    }

    fn run(
        self: Box<Self>,
        stop: &AtomicBool,
        emit: &mut dyn FnMut(CapturedFrame),
    ) -> Result<SourceEnd> {
        let start = Instant::now();
        let step = 1.0 / self.fps.max(1e-3);
        let mut seq = 0u64;
        while self.frames.is_none_or(|n| seq < n) {
            let due = start + Duration::from_secs_f64(seq as f64 * step);
            if !sleep_until(due, stop) {
                break;
            }
            emit(CapturedFrame {
                seq,
                captured: Instant::now(),
                image: Self::pattern(self.width, self.height, seq),
            });
            seq += 1;
        }
        Ok(SourceEnd {
            frames: seq,
            note: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_sizes_are_even_and_keep_the_aspect() {
        assert_eq!(live_dims(640, 480, None), (640, 480));
        assert_eq!(live_dims(641, 481, None), (640, 480));
        assert_eq!(live_dims(1280, 720, Some(640)), (640, 360));
        assert_eq!(live_dims(720, 1280, Some(320)), (180, 320));
        assert_eq!(live_dims(768, 432, Some(500)), (500, 280));
    }
}
