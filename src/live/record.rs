//! `--output FILE.mp4` in a live session: records what is shown, at the
//! times it happened.
//!
//! The video module's container sink copies an input file's streams and
//! timestamps; a live recording has neither, so this is a small encoder of
//! its own built from the video module's parts (the muxer choice by
//! extension, the encoder choice, options and stream setup, the swscale
//! wrapper, the temporary-file-then-rename handling). Each frame is stamped with its capture time in milliseconds
//! since the first frame, so frames the effect dropped leave gaps of the
//! right length (a variable frame rate) and the recording plays at the
//! speed of the scene. The file appears under its name only once it is
//! finished: a crash or a forced exit leaves no half-written video.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::{encoder, Packet, Rational};

use super::pipeline::{LiveSink, OutputFrame};
use crate::video::container::{
    choose_pixel_format, choose_video_encoder, muxer_for, open_video_stream, VideoStreamSpec,
};
use crate::video::frame::RgbFrame;
use crate::video::scale::{Colorimetry, Scaler};
use crate::video::sink::{temp_path_beside, EncodeOptions, TempOutput};
use crate::video::{ff_error, init_ffmpeg};

/// Timestamps are in milliseconds.
const TIME_BASE: Rational = Rational(1, 1000);

/// A live recording in progress.
pub struct Recorder {
    // Declared before `temp` so the file is closed before it is removed.
    octx: ffmpeg::format::context::Output,
    encoder: encoder::video::Encoder,
    to_yuv: Scaler,
    ost: usize,
    ost_tb: Rational,
    temp: TempOutput,
    target: PathBuf,
    first: Option<Instant>,
    last_pts: i64,
    frames: u64,
}

// SAFETY: the FFmpeg contexts have no thread affinity; the recorder is
// used by one thread at a time (`&mut self`), moved once to its output
// thread.
unsafe impl Send for Recorder {}

impl Recorder {
    /// Starts a recording of `width` x `height` frames (even sizes) into
    /// `target`, whose extension chooses the container (H.264 for .mp4,
    /// .mkv, .mov; VP9 for .webm unless `encode.codec` says otherwise).
    pub fn create(
        target: &Path,
        width: u32,
        height: u32,
        fps: Option<f64>,
        encode: &EncodeOptions,
    ) -> Result<Self> {
        init_ffmpeg();
        let t = target.display().to_string();
        crate::image_io::check_output_file(target, &[])?;
        let (muxer, fmt) = muxer_for(target)?;
        let (width, height) = (width & !1, height & !1);
        if width == 0 || height == 0 {
            bail!("cannot record {width}x{height} frames");
        }
        // The same encoder choice and settings as a converted video's.
        let codec = choose_video_encoder(&muxer, fmt, encode.codec.as_deref())?;
        let temp = TempOutput::new(temp_path_beside(target));
        let mut octx = ffmpeg::format::output_as(&temp.path, &muxer)
            .map_err(|e| anyhow!("cannot write {t}: {}", ff_error(&e)))?;
        let pixel = choose_pixel_format(codec);
        let rate = fps
            .filter(|f| f.is_finite() && *f > 0.0)
            .map(|f| Rational((f * 1000.0).round() as i32, 1000));
        let spec = VideoStreamSpec {
            width,
            height,
            pixel,
            time_base: TIME_BASE,
            frame_rate: rate,
            encode,
        };
        let mut notes = Vec::new();
        let (encoder, ost) = open_video_stream(&mut octx, &t, codec, &spec, |_| {}, &mut notes)?;
        for note in notes {
            eprintln!("record {t}: note: {note}");
        }
        octx.write_header()
            .map_err(|e| anyhow!("cannot write {t}: {}", ff_error(&e)))?;
        let ost_tb = octx.stream(ost).map(|s| s.time_base()).unwrap_or(TIME_BASE);
        Ok(Self {
            octx,
            encoder,
            to_yuv: Scaler::new(pixel, width, height, Colorimetry::default()),
            ost,
            ost_tb,
            temp,
            target: target.to_path_buf(),
            first: None,
            last_pts: -1,
            frames: 0,
        })
    }

    /// Adds a frame that was captured at `at`.
    pub fn write(&mut self, frame: &RgbFrame, at: Instant) -> Result<()> {
        let first = *self.first.get_or_insert(at);
        let ms = at.saturating_duration_since(first).as_millis() as i64;
        let pts = ms.max(self.last_pts + 1);
        self.last_pts = pts;
        let mut yuv = self
            .to_yuv
            .run(&frame.to_ffmpeg(), Colorimetry::default())?;
        yuv.set_pts(Some(pts));
        self.encoder
            .send_frame(&yuv)
            .map_err(|e| anyhow!("recording {}: {}", self.target.display(), ff_error(&e)))?;
        self.frames += 1;
        self.drain()
    }

    fn drain(&mut self) -> Result<()> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(self.ost);
            packet.rescale_ts(TIME_BASE, self.ost_tb);
            packet
                .write_interleaved(&mut self.octx)
                .map_err(|e| anyhow!("cannot write {}: {}", self.target.display(), ff_error(&e)))?;
        }
        Ok(())
    }

    /// Flushes the encoder, closes the file and renames it into place;
    /// returns the frames and bytes written. A recording without frames
    /// is removed instead.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        let t = self.target.display().to_string();
        if self.frames == 0 {
            bail!("nothing was recorded to {t}: no frame was painted");
        }
        self.encoder
            .send_eof()
            .map_err(|e| anyhow!("cannot finish {t}: {}", ff_error(&e)))?;
        self.drain()?;
        self.octx
            .write_trailer()
            .map_err(|e| anyhow!("cannot finish {t}: {}", ff_error(&e)))?;
        let Recorder {
            octx,
            temp,
            target,
            frames,
            ..
        } = self;
        drop(octx);
        let bytes = std::fs::metadata(&temp.path).map(|m| m.len()).unwrap_or(0);
        temp.persist(&target)?;
        Ok((frames, bytes))
    }
}

/// A recording as a live output.
pub struct RecordSink {
    recorder: Recorder,
}

impl RecordSink {
    pub fn new(recorder: Recorder) -> Self {
        Self { recorder }
    }
}

impl LiveSink for RecordSink {
    fn name(&self) -> String {
        self.recorder.target.display().to_string()
    }

    fn show(&mut self, frame: &OutputFrame) -> Result<()> {
        self.recorder.write(&frame.rgb, frame.captured)
    }

    fn finish(self: Box<Self>) -> Result<Option<String>> {
        let name = self.recorder.target.display().to_string();
        let (frames, bytes) = self.recorder.finish()?;
        Ok(Some(format!(
            "{name}: {frames} frames recorded ({:.1} MB)",
            bytes as f64 / 1e6
        )))
    }
}
