//! The video source: opens anything FFmpeg can (files, URLs, devices),
//! picks the video stream by FFmpeg's best-stream rule, and decodes it into
//! RGB frames at the processing size, with their timestamps.
//!
//! Packets of the other streams (audio, subtitles) are handed on untouched,
//! in the order the demuxer reads them, so the sink can copy them into the
//! output interleaved as they were in the input.
//!
//! Damage is counted, not fatal: a packet the demuxer or decoder rejects is
//! skipped and counted ([`SourceStats`]), and a read error part-way (a
//! truncated download) ends the stream with a note, so a long file with one
//! bad spot still converts. Only a file that cannot be opened at all, or has
//! no decodable video, is an error.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{anyhow, bail, Result};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::codec::packet::side_data::Type as SideDataType;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::util::error::EAGAIN;
use ffmpeg_next::{media, Packet, Rational};

use super::frame::{PlanarFrame, RgbFrame};
use super::scale::{Colorimetry, Scaler};
use super::{ff_error, init_ffmpeg, is_url};

/// What the pipeline needs to know about the input before decoding.
#[derive(Clone, Debug)]
pub struct VideoInfo {
    /// Index of the chosen video stream in the container.
    pub stream: usize,
    /// The video codec's name (e.g. `h264`).
    pub codec: String,
    /// Coded size, as stored (before any rotation for display).
    pub width: u32,
    pub height: u32,
    /// The stream's time base: timestamps are counted in these units.
    pub time_base: Rational,
    /// The average frame rate (or the container's base rate if the average
    /// is unknown); `None` when neither is known.
    pub frame_rate: Option<Rational>,
    /// Frame count from the header, or estimated from the duration.
    pub frames: Option<u64>,
    /// Whether [`VideoInfo::frames`] is the header's exact count (MP4,
    /// MOV) rather than an estimate.
    pub frames_exact: bool,
    /// Duration in seconds, when known.
    pub duration: Option<f64>,
    /// Clockwise quarter turns that display the stored frames upright
    /// (from the display matrix), 0..=3.
    pub rotation: u32,
    /// The raw display matrix, copied to the output as it was.
    pub display_matrix: Option<Vec<u8>>,
    /// Sample (pixel) aspect ratio; 0/1 or 1/1 for square pixels.
    pub sample_aspect: Rational,
    /// Colour tags of the stream.
    pub color: Colorimetry,
}

impl VideoInfo {
    /// The size as displayed: the stored size, turned by the rotation.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 2 == 1 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// One item of the demuxed input, in input order.
pub enum SourceItem {
    /// A decoded video frame, upright, at the processing size.
    Frame(DecodedFrame),
    /// A packet of another stream (its input stream index), to be copied
    /// or re-encoded by the sink.
    Packet(usize, Packet),
}

/// A decoded frame and where it sits in time.
pub struct DecodedFrame {
    /// 0-based position in the stream.
    pub index: u64,
    /// Presentation time in the stream's time base (strictly increasing).
    pub pts: i64,
    /// How long it is shown, in the same units (at least 1).
    pub duration: i64,
    pub image: PlanarFrame,
}

/// How to decode: size and orientation of the frames handed out, and which
/// other streams' packets to pass on.
#[derive(Clone, Debug)]
pub struct DecodeSettings {
    /// Size to scale to, in the stored orientation.
    pub width: u32,
    pub height: u32,
    /// Clockwise quarter turns applied after scaling (to process upright).
    pub turns: u32,
    /// For each input stream, whether its packets are passed on.
    pub pass_streams: Vec<bool>,
    /// Stop after this many frames (benchmarks and previews).
    pub max_frames: Option<u64>,
}

/// Damage and timing repairs seen while decoding.
#[derive(Clone, Debug, Default)]
pub struct SourceStats {
    /// Video frames handed out.
    pub frames: u64,
    /// Video packets that were damaged: flagged corrupt by the demuxer (and
    /// decoded as far as possible) or rejected by the demuxer or decoder
    /// (skipped).
    pub corrupt_packets: u64,
    /// Frames the decoder flagged as damaged (decoded with concealment).
    pub damaged_frames: u64,
    /// Frames whose timestamp was missing or went backwards and was
    /// replaced by the next free one.
    pub repaired_timestamps: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub ended_early: Option<String>,
    /// Frames the header lists, when the file held fewer (truncated or
    /// damaged).
    pub header_frames: Option<u64>,
}

/// The checks on an input that need no decoding: a local file exists, is
/// not empty and is not a folder (URLs and devices are left to FFmpeg).
pub fn check_input(path: &Path) -> Result<()> {
    if is_url(path) {
        return Ok(());
    }
    let name = path.display();
    match std::fs::metadata(path) {
        Err(e) => bail!("cannot open {name}: {}", super::one_line(&e)),
        Ok(m) if m.is_file() && m.len() == 0 => bail!("cannot open {name}: the file is empty"),
        Ok(m) if m.is_dir() => bail!("cannot open {name}: it is a directory, not a video"),
        Ok(_) => Ok(()),
    }
}

/// An opened input with its video decoder.
pub struct VideoSource {
    input: ffmpeg::format::context::Input,
    decoder: ffmpeg::decoder::Video,
    info: VideoInfo,
    name: String,
}

/// Demuxer errors in a row after which the input is treated as unreadable
/// (a demuxer normally resynchronises within a few packets).
const MAX_CONSECUTIVE_BAD_READS: u32 = 1000;

impl VideoSource {
    /// Opens `path` (a file, URL or device) and its best video stream.
    ///
    /// Every failure names the input and the reason: missing, empty, not a
    /// format FFmpeg knows, no video stream, or no decoder for its codec.
    pub fn open(path: &Path) -> Result<Self> {
        init_ffmpeg();
        let name = path.display().to_string();
        check_input(path)?;
        let input = ffmpeg::format::input(&path).map_err(|e| {
            anyhow!(
                "cannot open {name}: {} (not a video FFmpeg can read, or damaged)",
                ff_error(&e)
            )
        })?;
        let stream = input.streams().best(media::Type::Video).ok_or_else(|| {
            let kinds: Vec<String> = input
                .streams()
                .map(|s| {
                    format!(
                        "{:?} {}",
                        s.parameters().medium(),
                        s.parameters().id().name()
                    )
                    .to_lowercase()
                })
                .collect();
            if kinds.is_empty() {
                anyhow!("{name} has no video stream (it has no streams at all)")
            } else {
                anyhow!(
                    "{name} has no video stream (it holds: {})",
                    kinds.join(", ")
                )
            }
        })?;
        let index = stream.index();
        let params = stream.parameters();
        let codec_id = params.id();
        if ffmpeg::decoder::find(codec_id).is_none() {
            // SAFETY: the stream's parameters are valid while `input` lives.
            let tag = unsafe { (*params.as_ptr()).codec_tag };
            let fourcc: String = tag
                .to_le_bytes()
                .iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect();
            if codec_id == ffmpeg::codec::Id::None {
                bail!(
                    "cannot decode {name}: its video codec is not supported (FFmpeg knows no \
                     codec with the tag '{fourcc}')"
                );
            }
            bail!(
                "cannot decode {name}: its video codec '{}' is not supported (this FFmpeg build \
                 has no decoder for it)",
                codec_id.name()
            );
        }
        let mut ctx = ffmpeg::codec::context::Context::from_parameters(params)
            .map_err(|e| anyhow!("cannot decode {name}: {}", ff_error(&e)))?;
        // Frame threads: decoding must keep up with the effect without
        // taking the effect thread's time.
        ctx.set_threading(ffmpeg::threading::Config::kind(
            ffmpeg::threading::Type::Frame,
        ));
        let decoder = ctx.decoder().video().map_err(|e| {
            anyhow!(
                "cannot decode {name}: its video codec '{}' failed to open: {}",
                codec_id.name(),
                ff_error(&e)
            )
        })?;
        if decoder.width() == 0 || decoder.height() == 0 {
            bail!("cannot decode {name}: its video stream has no frame size (damaged header?)");
        }

        let time_base = stream.time_base();
        let rate = [stream.avg_frame_rate(), stream.rate()]
            .into_iter()
            .find(|r| r.numerator() > 0 && r.denominator() > 0);
        let duration = if stream.duration() > 0 {
            Some(stream.duration() as f64 * f64::from(time_base))
        } else if input.duration() > 0 {
            Some(input.duration() as f64 / ffmpeg::ffi::AV_TIME_BASE as f64)
        } else {
            None
        };
        let frames = if stream.frames() > 0 {
            Some(stream.frames() as u64)
        } else {
            match (duration, rate) {
                (Some(d), Some(r)) => Some((d * f64::from(r)).round().max(1.0) as u64),
                _ => None,
            }
        };
        let display_matrix = stream
            .side_data()
            .find(|sd| sd.kind() == SideDataType::DisplayMatrix)
            .map(|sd| sd.data().to_vec());
        let rotation = display_matrix
            .as_deref()
            .map(quarter_turns_from_matrix)
            .unwrap_or(0);
        let info = VideoInfo {
            stream: index,
            codec: codec_id.name().to_string(),
            width: decoder.width(),
            height: decoder.height(),
            time_base,
            frame_rate: rate,
            frames,
            frames_exact: stream.frames() > 0,
            duration,
            rotation,
            display_matrix,
            sample_aspect: decoder.aspect_ratio(),
            color: Colorimetry {
                space: decoder.color_space(),
                range: decoder.color_range(),
                primaries: decoder.color_primaries(),
                transfer: decoder.color_transfer_characteristic(),
            },
        };
        Ok(Self {
            input,
            decoder,
            info,
            name,
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// The demuxer, for reading the other streams' parameters and metadata.
    pub fn input(&self) -> &ffmpeg::format::context::Input {
        &self.input
    }

    /// Decodes the whole input, calling `emit` for every frame and passed-on
    /// packet in input order; stops early when `emit` returns false (the
    /// consumer is gone) or `cancel` is set.
    pub fn run(
        mut self,
        settings: &DecodeSettings,
        cancel: &AtomicBool,
        mut emit: impl FnMut(SourceItem) -> bool,
    ) -> Result<SourceStats> {
        let mut state = DecodeState {
            scaler: Scaler::new(
                Pixel::RGB24,
                settings.width,
                settings.height,
                Colorimetry::default(),
            ),
            turns: settings.turns,
            stats: SourceStats::default(),
            pending: None,
            last_pts: None,
            last_step: None,
            default_step: self.info.frame_rate.map(|r| {
                let tb = self.info.time_base;
                // One frame at the nominal rate, in time-base units.
                ((f64::from(r.invert()) / f64::from(tb)).round() as i64).max(1)
            }),
            max_frames: settings.max_frames,
            stopped: false,
        };
        let video = self.info.stream;
        let mut bad_reads = 0u32;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Ok(state.stats);
            }
            if state.stopped {
                state.flush(&mut emit);
                return Ok(state.stats);
            }
            let mut packet = Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => bad_reads = 0,
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::InvalidData) => {
                    state.stats.corrupt_packets += 1;
                    bad_reads += 1;
                    if bad_reads >= MAX_CONSECUTIVE_BAD_READS {
                        state.stats.ended_early =
                            Some("nothing readable after a damaged part".into());
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    state.stats.ended_early = Some(ff_error(&e));
                    break;
                }
            }
            let index = packet.stream();
            if index == video {
                // Demuxers flag packets they know are damaged (MPEG-TS
                // continuity errors); the decoder still gets them, since
                // it can conceal most of the damage and keep the frame.
                if packet
                    .flags()
                    .contains(ffmpeg::codec::packet::Flags::CORRUPT)
                {
                    state.stats.corrupt_packets += 1;
                }
                match self.decoder.send_packet(&packet) {
                    Ok(()) => {}
                    Err(ffmpeg::Error::Other { errno }) if errno == EAGAIN => {
                        // Cannot happen with the drain below; keep going.
                    }
                    Err(_) => state.stats.corrupt_packets += 1,
                }
                if !state.drain(&mut self.decoder, &mut emit)? {
                    return Ok(state.stats);
                }
            } else if settings.pass_streams.get(index).copied().unwrap_or(false)
                && !emit(SourceItem::Packet(index, packet))
            {
                return Ok(state.stats);
            }
        }
        // Flush the decoder's delayed frames (B-frames, threads).
        let _ = self.decoder.send_eof();
        if !state.drain(&mut self.decoder, &mut emit)? {
            return Ok(state.stats);
        }
        state.flush(&mut emit);
        if let (true, Some(listed)) = (self.info.frames_exact, self.info.frames) {
            if state.stats.frames < listed {
                state.stats.header_frames = Some(listed);
            }
        }
        if state.stats.frames == 0 && state.stats.ended_early.is_none() {
            bail!(
                "{}: no video frame could be decoded ({} damaged packets)",
                self.name,
                state.stats.corrupt_packets
            );
        }
        Ok(state.stats)
    }
}

/// Decoding state between packets.
struct DecodeState {
    scaler: Scaler,
    turns: u32,
    stats: SourceStats,
    /// The last frame, held back until the next one gives its duration.
    pending: Option<DecodedFrame>,
    last_pts: Option<i64>,
    last_step: Option<i64>,
    default_step: Option<i64>,
    max_frames: Option<u64>,
    stopped: bool,
}

impl DecodeState {
    /// Receives every frame the decoder has ready; false when the consumer
    /// is gone.
    fn drain(
        &mut self,
        decoder: &mut ffmpeg::decoder::Video,
        emit: &mut impl FnMut(SourceItem) -> bool,
    ) -> Result<bool> {
        let mut decoded = ffmpeg::frame::Video::empty();
        loop {
            match decoder.receive_frame(&mut decoded) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => return Ok(true),
                Err(ffmpeg::Error::Other { errno }) if errno == EAGAIN => return Ok(true),
                Err(_) => {
                    self.stats.corrupt_packets += 1;
                    return Ok(true);
                }
            }
            if self.stopped {
                continue;
            }
            if decoded.is_corrupt() || decoded.has_decode_errors() {
                self.stats.damaged_frames += 1;
            }
            let pts = self.next_pts(decoded.timestamp());
            let duration = decoded.packet().duration;
            let rgb = self.scaler.run(&decoded, Colorimetry::of_frame(&decoded))?;
            let image = RgbFrame::from_ffmpeg(&rgb)?
                .rotate_cw(self.turns)
                .to_planar();
            let frame = DecodedFrame {
                index: self.stats.frames,
                pts,
                duration,
                image,
            };
            self.stats.frames += 1;
            if let Some(mut prev) = self.pending.replace(frame) {
                let step = pts - prev.pts;
                self.last_step = Some(step);
                if prev.duration <= 0 {
                    prev.duration = step;
                }
                if !emit(SourceItem::Frame(prev)) {
                    return Ok(false);
                }
            }
            if self.max_frames.is_some_and(|m| self.stats.frames >= m) {
                self.stopped = true;
            }
        }
    }

    /// A strictly increasing timestamp: the frame's own when it has one
    /// that moves forward, else one step after the previous frame.
    fn next_pts(&mut self, ts: Option<i64>) -> i64 {
        let pts = match (ts, self.last_pts) {
            (Some(t), Some(last)) if t > last => t,
            (Some(t), None) => t,
            (_, Some(last)) => {
                self.stats.repaired_timestamps += 1;
                last + self.last_step.or(self.default_step).unwrap_or(1).max(1)
            }
            (None, None) => {
                self.stats.repaired_timestamps += 1;
                0
            }
        };
        self.last_pts = Some(pts);
        pts
    }

    /// Hands out the held-back last frame; its duration comes from its
    /// packet, else the previous frame's step, else the nominal rate.
    fn flush(&mut self, emit: &mut impl FnMut(SourceItem) -> bool) {
        if let Some(mut last) = self.pending.take() {
            if last.duration <= 0 {
                last.duration = self.last_step.or(self.default_step).unwrap_or(1).max(1);
            }
            emit(SourceItem::Frame(last));
        }
    }
}

/// Clockwise quarter turns that show frames upright, from a display matrix
/// (nine native-endian i32, as in `AV_PKT_DATA_DISPLAYMATRIX`). Angles that
/// are not a multiple of 90 degrees (and flips) round to the nearest
/// quarter turn; phones only write multiples of 90.
pub fn quarter_turns_from_matrix(bytes: &[u8]) -> u32 {
    if bytes.len() < 36 {
        return 0;
    }
    let mut m = [0i32; 9];
    for (i, v) in m.iter_mut().enumerate() {
        let b = [
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ];
        *v = i32::from_ne_bytes(b);
    }
    // SAFETY: the function reads exactly nine i32 from the pointer.
    let ccw = unsafe { ffmpeg::ffi::av_display_rotation_get(m.as_ptr()) };
    if ccw.is_nan() {
        return 0;
    }
    // FFmpeg's rotation is counter-clockwise; displaying upright means
    // turning the stored frame by the opposite (clockwise) angle, as
    // ffmpeg's own autorotate does (`theta = -rotation`).
    let cw = (-ccw).rem_euclid(360.0);
    ((cw / 90.0).round() as u32) % 4
}
