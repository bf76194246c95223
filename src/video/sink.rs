//! Where painted frames go: a video container ([`super::container`]), a
//! folder of numbered PNGs, or a `yuv4mpegpipe` stream on stdout.
//!
//! Every sink takes frames upright at the processing size, with their input
//! timestamps, plus the other streams' packets in input order, and
//! [`FrameSink::finish`] makes the output appear under its final name only
//! once it is complete: files and folders are written under a hidden
//! temporary name beside the target and renamed, so an error or Ctrl-C never
//! leaves a half-written video where the user expects a finished one.

use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context, Result};
use ffmpeg_next::format::Pixel;
use ffmpeg_next::Packet;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

use super::frame::RgbFrame;
use super::one_line;
use super::scale::{Colorimetry, Scaler};
use super::source::{DecodedFrame, VideoInfo};

/// Where a conversion writes, decided from the `--output` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputTarget {
    /// A video file; the container comes from the extension.
    File(PathBuf),
    /// A folder of `frame_000001.png`, ...: an existing directory, or a
    /// path ending in `/`.
    Frames(PathBuf),
    /// `-`: uncompressed `yuv4mpegpipe` on stdout, for `| ffplay -` or
    /// `| ffmpeg -i - ...`.
    Stdout,
}

impl OutputTarget {
    pub fn parse(path: &Path) -> Self {
        let s = path.as_os_str().to_string_lossy();
        if s == "-" {
            OutputTarget::Stdout
        } else if path.is_dir() || s.ends_with('/') || s.ends_with(std::path::MAIN_SEPARATOR) {
            OutputTarget::Frames(path.to_path_buf())
        } else {
            OutputTarget::File(path.to_path_buf())
        }
    }

    /// The file system path written, if any (stdout has none).
    pub fn path(&self) -> Option<&Path> {
        match self {
            OutputTarget::File(p) | OutputTarget::Frames(p) => Some(p),
            OutputTarget::Stdout => None,
        }
    }
}

/// Video encoder settings (`--codec`, `--crf`, `--preset`).
#[derive(Clone, Debug, Default)]
pub struct EncodeOptions {
    /// FFmpeg encoder name (`libx264`, `libx265`, `libvpx-vp9`,
    /// `libaom-av1`, `libsvtav1`, ...); default from the container.
    pub codec: Option<String>,
    /// Constant-quality level (lower is better; the encoder's own scale).
    pub crf: Option<f32>,
    /// Speed/size trade-off: x264 names (`ultrafast` ... `veryslow`) for
    /// every encoder (mapped to `cpu-used` for VP9 and AV1), or the
    /// encoder's own value. Default: `veryfast` (the encoder must keep up
    /// with the effect).
    pub preset: Option<String>,
}

/// The geometry of the frames a sink receives and of what it writes.
#[derive(Clone, Debug)]
pub struct SinkGeometry {
    /// Size of the frames the effects return (upright).
    pub width: u32,
    pub height: u32,
    /// Size to store, in the input's stored orientation (the processing
    /// size turned back, or the input's size with `--keep-size`).
    pub out_width: u32,
    pub out_height: u32,
    /// Clockwise quarter turns that made the input upright; the container
    /// sink turns frames back and keeps the rotation metadata.
    pub turns: u32,
}

/// A destination for painted frames.
pub trait FrameSink: Send {
    /// Writes one painted frame (upright, processing size).
    fn write_frame(&mut self, frame: &DecodedFrame) -> Result<()>;
    /// Copies or re-encodes a packet of input stream `stream`.
    fn write_packet(&mut self, stream: usize, packet: Packet) -> Result<()>;
    /// Flushes encoders and moves the output to its final name.
    fn finish(self: Box<Self>) -> Result<Finished>;
}

/// What a finished sink wrote.
#[derive(Clone, Debug, Default)]
pub struct Finished {
    /// Bytes written (the file, or all frames of a folder, or stdout).
    pub bytes: u64,
    /// Packets of other streams that could not be written (counted, not
    /// fatal).
    pub dropped_packets: u64,
}

/// How a sink was set up: which input streams it wants packets of, and
/// what it had to change or leave out (printed before the conversion).
pub struct SinkPlan {
    pub sink: Box<dyn FrameSink>,
    pub pass_streams: Vec<bool>,
    pub notes: Vec<String>,
    /// Audio streams copied and re-encoded.
    pub audio_copied: usize,
    pub audio_reencoded: usize,
}

/// Opens the sink for `target`.
pub fn open_sink(
    target: &OutputTarget,
    source: &super::VideoSource,
    geometry: &SinkGeometry,
    encode: &EncodeOptions,
) -> Result<SinkPlan> {
    let info = source.info();
    let streams = source.input().nb_streams() as usize;
    let mut notes = Vec::new();
    let others = streams.saturating_sub(1);
    match target {
        OutputTarget::File(path) => {
            super::container::ContainerSink::open(path, source, geometry, encode)
        }
        OutputTarget::Frames(dir) => {
            if others > 0 {
                notes.push(format!(
                    "{others} other stream(s) (audio, subtitles) are not written: a folder of PNGs holds frames only"
                ));
            }
            if info.rotation != 0 {
                notes.push("frames are written upright (the input's rotation applied)".into());
            }
            Ok(SinkPlan {
                sink: Box::new(PngFolderSink::create(dir)?),
                pass_streams: vec![false; streams],
                notes,
                audio_copied: 0,
                audio_reencoded: 0,
            })
        }
        OutputTarget::Stdout => {
            if io::stdout().is_terminal() {
                bail!(
                    "refusing to write video to the terminal: pipe --output - into a player or \
                     encoder (| ffplay -, | ffmpeg -i - out.mkv)"
                );
            }
            if others > 0 {
                notes.push(format!(
                    "{others} other stream(s) (audio, subtitles) are not written: yuv4mpegpipe holds video only"
                ));
            }
            if info.rotation != 0 {
                notes.push("frames are written upright (the input's rotation applied)".into());
            }
            let sink = Y4mSink::new(info, geometry, &mut notes);
            Ok(SinkPlan {
                sink: Box::new(sink),
                pass_streams: vec![false; streams],
                notes,
                audio_copied: 0,
                audio_reencoded: 0,
            })
        }
    }
}

/// A hidden temporary path beside `target`, keeping its extension so that
/// tools guessing a format from the name (FFmpeg) still can.
pub(crate) fn temp_path_beside(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = target
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let ext = target
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    dir.join(format!(".{stem}.tmp-{}-{n}{ext}", std::process::id()))
}

/// A temporary file or folder that removes itself unless persisted, so
/// every way out of a conversion (error, Ctrl-C, panic) cleans up.
pub(crate) struct TempOutput {
    pub path: PathBuf,
    armed: bool,
}

impl TempOutput {
    pub fn new(path: PathBuf) -> Self {
        super::interrupt::register_temp(&path);
        Self { path, armed: true }
    }

    /// Renames the temporary file onto `target` (atomic on one file system).
    pub fn persist(mut self, target: &Path) -> Result<()> {
        fs::rename(&self.path, target)
            .map_err(|e| anyhow!("cannot write {}: {}", target.display(), one_line(&e)))?;
        self.armed = false;
        super::interrupt::unregister_temp(&self.path);
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if self.armed {
            if self.path.is_dir() {
                let _ = fs::remove_dir_all(&self.path);
            } else {
                let _ = fs::remove_file(&self.path);
            }
            super::interrupt::unregister_temp(&self.path);
        }
    }
}

/// Numbered PNG frames (`frame_000001.png`, 1-based as FFmpeg's image2
/// muxer and `ffmpeg -i frame_%06d.png` expect), written into a hidden
/// folder and moved into place at the end.
pub struct PngFolderSink {
    target: PathBuf,
    temp: TempOutput,
    bytes: u64,
}

impl PngFolderSink {
    pub fn create(target: &Path) -> Result<Self> {
        let t = target.display();
        let trimmed = PathBuf::from(
            target
                .to_string_lossy()
                .trim_end_matches(['/', std::path::MAIN_SEPARATOR]),
        );
        let target = if trimmed.as_os_str().is_empty() {
            target.to_path_buf()
        } else {
            trimmed
        };
        if target.exists() && !target.is_dir() {
            bail!("cannot write frames into {t}: it is a file, not a folder");
        }
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            bail!(
                "cannot write frames into {t}: folder {} does not exist",
                parent.display()
            );
        }
        let temp = TempOutput::new(temp_path_beside(&target));
        fs::create_dir(&temp.path)
            .map_err(|e| anyhow!("cannot write frames into {t}: {}", one_line(&e)))?;
        Ok(Self {
            target,
            temp,
            bytes: 0,
        })
    }
}

/// The name of frame `index` (0-based) in a PNG folder.
pub fn frame_file_name(index: u64) -> String {
    format!("frame_{:06}.png", index + 1)
}

impl FrameSink for PngFolderSink {
    fn write_frame(&mut self, frame: &DecodedFrame) -> Result<()> {
        let rgb = frame.image.to_rgb();
        let path = self.temp.path.join(frame_file_name(frame.index));
        let file = File::create(&path)
            .map_err(|e| anyhow!("cannot write {}: {}", path.display(), one_line(&e)))?;
        let mut out = BufWriter::new(file);
        // Fast compression: a frame folder is an intermediate format, and
        // default zlib effort would make PNG writing the bottleneck.
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
            .write_image(&rgb.data, rgb.width, rgb.height, ExtendedColorType::Rgb8)
            .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?;
        out.flush()
            .map_err(|e| anyhow!("cannot write {}: {}", path.display(), one_line(&e)))?;
        self.bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Ok(())
    }

    fn write_packet(&mut self, _stream: usize, _packet: Packet) -> Result<()> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Finished> {
        let t = self.target.display();
        if !self.target.exists() {
            self.temp.persist(&self.target)?;
        } else {
            // An existing folder (perhaps with the user's other files):
            // move the frames in one by one, replacing same-named frames.
            let entries = fs::read_dir(&self.temp.path)
                .map_err(|e| anyhow!("cannot write frames into {t}: {}", one_line(&e)))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| anyhow!("cannot write frames into {t}: {}", one_line(&e)))?;
                fs::rename(entry.path(), self.target.join(entry.file_name()))
                    .map_err(|e| anyhow!("cannot write frames into {t}: {}", one_line(&e)))?;
            }
            // `temp` (now empty) is removed when dropped.
        }
        Ok(Finished {
            bytes: self.bytes,
            dropped_packets: 0,
        })
    }
}

/// `yuv4mpegpipe` on stdout: a text header, then `FRAME` and the three
/// 4:2:0 planes per frame. Written by hand (it is that simple) rather than
/// through FFmpeg's muxer, so broken pipes surface as plain I/O errors.
///
/// The format has one constant frame rate, so variable-rate timestamps are
/// lost (the note says so); frames are written upright, with the pixel
/// aspect in the header.
pub struct Y4mSink {
    out: BufWriter<io::Stdout>,
    header: String,
    header_written: bool,
    to_yuv: Option<Scaler>,
    pad: bool,
    bytes: u64,
}

impl Y4mSink {
    fn new(info: &VideoInfo, geometry: &SinkGeometry, notes: &mut Vec<String>) -> Self {
        let (w, h) = (geometry.width, geometry.height);
        let pad = w % 2 == 1 || h % 2 == 1;
        let (pw, ph) = (w + w % 2, h + h % 2);
        if pad {
            notes.push(pad_note(w, h));
        }
        let rate = info
            .frame_rate
            .map(|r| (r.numerator(), r.denominator()))
            .unwrap_or((25, 1));
        let sar = info.sample_aspect;
        let aspect = if sar.numerator() > 0 && sar.denominator() > 0 {
            // Frames turned by 90 degrees swap the pixel aspect too.
            if geometry.turns % 2 == 1 {
                (sar.denominator(), sar.numerator())
            } else {
                (sar.numerator(), sar.denominator())
            }
        } else {
            (1, 1)
        };
        notes.push(format!(
            "yuv4mpegpipe has one frame rate: frames are timed at {}/{} fps",
            rate.0, rate.1
        ));
        let header = format!(
            "YUV4MPEG2 W{pw} H{ph} F{}:{} Ip A{}:{} C420mpeg2 XYSCSS=420MPEG2\n",
            rate.0, rate.1, aspect.0, aspect.1
        );
        Self {
            out: BufWriter::with_capacity(1 << 20, io::stdout()),
            header,
            header_written: false,
            to_yuv: None,
            pad,
            bytes: 0,
        }
    }

    fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data).map_err(stdout_error)?;
        self.bytes += data.len() as u64;
        Ok(())
    }
}

fn stdout_error(e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        anyhow!("cannot write to stdout: the reading program closed the pipe")
    } else {
        anyhow!("cannot write to stdout: {}", one_line(&e))
    }
}

/// The note printed when an odd size is padded for 4:2:0 chroma.
pub fn pad_note(w: u32, h: u32) -> String {
    let what = match (w % 2 == 1, h % 2 == 1) {
        (true, true) => "the last column and row",
        (true, false) => "the last column",
        _ => "the last row",
    };
    format!(
        "{w}x{h} is odd: padded to {}x{} by repeating {what} (yuv420p needs even sizes)",
        w + w % 2,
        h + h % 2
    )
}

impl FrameSink for Y4mSink {
    fn write_frame(&mut self, frame: &DecodedFrame) -> Result<()> {
        if !self.header_written {
            let header = std::mem::take(&mut self.header);
            self.write_all(header.as_bytes())?;
            self.header_written = true;
        }
        let mut rgb: RgbFrame = frame.image.to_rgb();
        if self.pad {
            rgb = rgb.pad_to_even();
        }
        let scaler = self.to_yuv.get_or_insert_with(|| {
            Scaler::new(
                Pixel::YUV420P,
                rgb.width,
                rgb.height,
                Colorimetry::default(),
            )
        });
        let yuv = scaler.run(&rgb.to_ffmpeg(), Colorimetry::default())?;
        self.write_all(b"FRAME\n")?;
        for plane in 0..3 {
            let (pw, ph) = (
                yuv.plane_width(plane) as usize,
                yuv.plane_height(plane) as usize,
            );
            let stride = yuv.stride(plane);
            let data = yuv.data(plane);
            for y in 0..ph {
                let row = &data[y * stride..y * stride + pw];
                self.out.write_all(row).map_err(stdout_error)?;
            }
            self.bytes += (pw * ph) as u64;
        }
        Ok(())
    }

    fn write_packet(&mut self, _stream: usize, _packet: Packet) -> Result<()> {
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Finished> {
        self.out
            .flush()
            .map_err(stdout_error)
            .context("finishing the stream")?;
        Ok(Finished {
            bytes: self.bytes,
            dropped_packets: 0,
        })
    }
}
