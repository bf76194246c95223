//! Offline video conversion: a video file in, the same video painted out,
//! with the effect code that paints still images.
//!
//! The pipeline reads as sources → effects → sinks, one thread each, joined
//! by bounded queues so that decoding, the effect and encoding overlap and
//! memory stays flat however long the video is:
//!
//! ```text
//!  decode thread            caller's thread               encode thread
//!  VideoSource ──frames──▶  effects (batched tensors) ──▶  FrameSink
//!   (demux, decode,  └──audio/subtitle packets, in order──▶ (encode video,
//!    scale to RGB)                                          copy or re-encode
//!                                                           audio, mux, rename)
//! ```
//!
//! * [`source`] opens anything FFmpeg reads (files, URLs, devices), picks the
//!   video stream by FFmpeg's best-stream rule and decodes it to RGB at the
//!   processing size, upright, with its timestamps; other streams' packets
//!   are passed on untouched. Damaged packets are skipped and counted.
//! * [`frame`] holds frames as bytes (for FFmpeg and PNG) and as planar
//!   floats (the memory layout of a `(N, 3, H, W)` tensor), so the effect
//!   thread only wraps and unwraps tensors.
//! * [`pipeline`] runs the effects on the caller's thread (they own model
//!   weights and devices, and need not be `Sync`), batches frames when an
//!   effect asks for it, blends with `strength`, and drives the two other
//!   threads. Its entry point is [`convert`].
//! * [`sink`] writes the result: a container chosen by extension
//!   ([`container`]: H.264 in `.mp4`, VP9 in `.webm`, ...), a folder of
//!   numbered PNGs, or `yuv4mpegpipe` on stdout for `| ffplay -`. Audio is
//!   copied packet for packet when the container takes its codec and
//!   re-encoded otherwise ([`audio`]). Files are written under a temporary
//!   name and renamed when complete.
//! * [`interrupt`] turns Ctrl-C into a flag the three threads check, so an
//!   interrupted conversion removes its temporary file.
//!
//! Frame count and order, timestamps (constant or variable rate), duration,
//! pixel aspect and rotation metadata are kept: the effect never sees time,
//! and the sink stamps each painted frame with its input's timestamp.

pub mod audio;
pub mod container;
pub mod frame;
pub mod interrupt;
pub mod pipeline;
pub mod priority;
pub mod scale;
pub mod sink;
pub mod source;

use std::path::Path;
use std::sync::Once;

pub use pipeline::{check_paths, convert, Options, Summary};
pub use sink::{EncodeOptions, OutputTarget};
pub use source::{VideoInfo, VideoSource};

/// File extensions treated as video (any case). FFmpeg reads many more;
/// these are the ones a user would name on the command line.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "wmv", "flv", "mpg", "mpeg", "ts", "m2ts", "mts",
    "3gp", "ogv", "y4m", "mxf", "nut", "ivf", "gif",
];

/// Whether `path` names a video rather than a still image: a video
/// extension, a URL (`scheme://`), a device (`/dev/...`), or `-` (stdout,
/// for an output).
///
/// Decided by name, like [`crate::image_io::is_image_path`], so commands can
/// route an input before opening it (opening a URL to sniff it would read
/// from the network twice).
pub fn is_video_path(path: &Path) -> bool {
    if path.as_os_str() == "-" || is_url(path) || path.starts_with("/dev/") {
        return true;
    }
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Whether `path` is a URL FFmpeg opens through a protocol (`http://`,
/// `rtsp://`, `file:`...) rather than a plain file path.
pub fn is_url(path: &Path) -> bool {
    let s = path.to_string_lossy();
    match s.split_once(':') {
        Some((scheme, rest)) => {
            scheme.len() > 1
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && (rest.starts_with("//") || scheme == "file" || scheme == "pipe")
        }
        None => false,
    }
}

/// Initialises FFmpeg once and quietens its logging: its warnings about
/// damaged packets would tear through the progress bar, and the pipeline
/// counts and reports damage itself. `STYLESTREAM_FFMPEG_LOG=debug` (or
/// `info`, `warning`...) shows FFmpeg's own messages.
pub fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = ffmpeg_next::init();
        use ffmpeg_next::util::log::Level;
        let level = match std::env::var("STYLESTREAM_FFMPEG_LOG").as_deref() {
            Ok("debug") => Level::Debug,
            Ok("verbose") => Level::Verbose,
            Ok("info") => Level::Info,
            Ok("warning") => Level::Warning,
            Ok("error") => Level::Error,
            _ => Level::Fatal,
        };
        ffmpeg_next::util::log::set_level(level);
    });
}

/// An FFmpeg error as a short lower-case phrase.
pub(crate) fn ff_error(e: &ffmpeg_next::Error) -> String {
    let s = e.to_string();
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "unknown FFmpeg error".into(),
    }
}

/// An I/O error without the "(os error N)" tail.
pub(crate) fn one_line(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_paths_by_name() {
        assert!(is_video_path(Path::new("clip.MP4")));
        assert!(is_video_path(Path::new("a/b.webm")));
        assert!(is_video_path(Path::new("-")));
        assert!(is_video_path(Path::new("rtsp://camera/stream")));
        assert!(is_video_path(Path::new("/dev/video0")));
        assert!(!is_video_path(Path::new("photo.jpg")));
        assert!(!is_video_path(Path::new("c:/photos/a.png")));
        assert!(!is_url(Path::new("C:\\clip.mp4")));
    }
}
