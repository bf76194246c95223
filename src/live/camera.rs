//! Webcams through nokhwa (V4L2 on Linux): listing, choosing a format,
//! converting frames, and surviving an unplugged camera.
//!
//! Cameras offer a list of (size, pixel format, rate) combinations. We read
//! the two that nearly every webcam has and that convert cheaply: MJPEG
//! (JPEG frames; high sizes at full rate over USB 2) and YUYV (4:2:2,
//! uncompressed; exact but bandwidth-limited). [`choose_format`] picks the
//! one closest to `--camera-size` and `--camera-fps`, and the log says
//! which one was taken, since "640x480 at 30 fps" often turns out to be
//! YUYV at 10 fps on a cheap camera.
//!
//! A camera that stops delivering (unplugged, driver error) is reopened for
//! a few seconds with the same format; if it does not come back the source
//! ends normally, so recordings are finished and the program exits cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use ffmpeg_next::format::Pixel;
use nokhwa::utils::{
    buf_yuyv422_to_rgb, mjpeg_to_rgb, ApiBackend, CameraFormat, CameraIndex, FrameFormat,
    RequestedFormat, RequestedFormatType, Resolution,
};
use nokhwa::{Camera, NokhwaError};

use super::source::{live_dims, sleep_until, CapturedFrame, FrameSource, SourceEnd};
use crate::video::frame::RgbFrame;
use crate::video::scale::{Colorimetry, Scaler};

/// The pixel formats stylestream converts, in order of preference at equal
/// size and rate (YUYV needs no decoding and has no compression artefacts).
pub const READ_FORMATS: [FrameFormat; 2] = [FrameFormat::YUYV, FrameFormat::MJPEG];

/// Every format nokhwa knows, so a camera opens whatever it offers and we
/// can say what that was when it is none of [`READ_FORMATS`].
const ALL_FORMATS: [FrameFormat; 6] = [
    FrameFormat::MJPEG,
    FrameFormat::YUYV,
    FrameFormat::NV12,
    FrameFormat::GRAY,
    FrameFormat::RAWRGB,
    FrameFormat::RAWBGR,
];

/// How long a camera that stopped delivering is tried again.
pub const REOPEN_SECONDS: f64 = 5.0;

/// Parses `webcam` (camera 0) or `webcam:N`; `None` for anything else.
pub fn parse_webcam(input: &str) -> Option<Result<u32>> {
    let rest = input.strip_prefix("webcam")?;
    if rest.is_empty() {
        return Some(Ok(0));
    }
    let n = rest.strip_prefix(':')?;
    Some(n.parse::<u32>().map_err(|_| {
        anyhow!("--input {input}: expected webcam or webcam:N with N a camera number (see `stylestream devices`)")
    }))
}

/// What the user asked of the camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CameraRequest {
    pub index: u32,
    /// `--camera-size` (default 640x480).
    pub width: u32,
    pub height: u32,
    /// `--camera-fps` (default 30).
    pub fps: u32,
}

impl CameraRequest {
    pub fn new(index: u32, size: Option<(u32, u32)>, fps: Option<u32>) -> Self {
        let (width, height) = size.unwrap_or((640, 480));
        Self {
            index,
            width,
            height,
            fps: fps.unwrap_or(30),
        }
    }
}

/// The offered format closest to the request: nearest size first (by the
/// ratio of the sides, so 1280x720 is as far from 640x360 as 320x180),
/// then a rate at or above the request (the nearest), then YUYV over MJPEG.
/// Formats other than MJPEG and YUYV are never chosen.
pub fn choose_format(offered: &[CameraFormat], want: &CameraRequest) -> Option<CameraFormat> {
    let size_err = |f: &CameraFormat| {
        let rw = (f.width().max(1) as f64 / want.width.max(1) as f64)
            .ln()
            .abs();
        let rh = (f.height().max(1) as f64 / want.height.max(1) as f64)
            .ln()
            .abs();
        // Millesimal steps, so rounding noise does not beat the rate.
        ((rw + rh) * 1000.0).round() as u64
    };
    let rate_key = |f: &CameraFormat| {
        let r = f.frame_rate();
        if r >= want.fps {
            (0, r - want.fps)
        } else {
            (1, want.fps - r)
        }
    };
    let pref = |f: &CameraFormat| {
        READ_FORMATS
            .iter()
            .position(|&x| x == f.format())
            .unwrap_or(usize::MAX)
    };
    offered
        .iter()
        .filter(|f| READ_FORMATS.contains(&f.format()) && f.frame_rate() > 0)
        .min_by_key(|f| (size_err(f), rate_key(f), pref(f)))
        .copied()
}

/// Converts a YUYV (4:2:2) frame of `width` x `height` to RGB with
/// nokhwa's BT.601 conversion. Rows may carry padding (`bytesperline`
/// larger than `2 * width`), which is skipped.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbFrame> {
    let (w, h) = (width as usize, height as usize);
    let row = 2 * w;
    if w % 2 != 0 || h == 0 || data.len() < row * h {
        bail!(
            "a YUYV frame of {} bytes cannot hold {width}x{height} pixels",
            data.len()
        );
    }
    let stride = data.len() / h;
    let packed;
    let src = if stride == row {
        &data[..row * h]
    } else {
        packed = data
            .chunks_exact(stride)
            .take(h)
            .flat_map(|r| &r[..row])
            .copied()
            .collect::<Vec<u8>>();
        &packed[..]
    };
    let mut rgb = vec![0u8; 3 * w * h];
    buf_yuyv422_to_rgb(src, &mut rgb, false).map_err(|e| anyhow!("bad YUYV frame: {e}"))?;
    Ok(RgbFrame {
        width,
        height,
        data: rgb,
    })
}

/// Decodes an MJPEG frame (one JPEG) with nokhwa's decoder; it must be
/// `width` x `height`.
pub fn mjpeg_frame_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbFrame> {
    // The JPEG library reports some damage by unwinding; a damaged frame
    // must not take the capture thread down.
    let decoded = std::panic::catch_unwind(|| mjpeg_to_rgb(data, false))
        .map_err(|_| anyhow!("a damaged MJPEG frame ({} bytes)", data.len()))?
        .map_err(|e| anyhow!("a damaged MJPEG frame: {e}"))?;
    let expected = 3 * width as usize * height as usize;
    if decoded.len() != expected {
        bail!(
            "an MJPEG frame decoded to {} bytes, not {width}x{height} RGB",
            decoded.len()
        );
    }
    Ok(RgbFrame {
        width,
        height,
        data: decoded,
    })
}

/// Converts one captured buffer in `format` to RGB.
pub fn convert_frame(
    data: &[u8],
    format: FrameFormat,
    width: u32,
    height: u32,
) -> Result<RgbFrame> {
    match format {
        FrameFormat::YUYV => yuyv_to_rgb(data, width, height),
        FrameFormat::MJPEG => mjpeg_frame_to_rgb(data, width, height),
        other => bail!("cannot convert {other} frames (stylestream reads MJPEG and YUYV)"),
    }
}

/// A camera's name and formats, for `stylestream devices`.
#[derive(Clone, Debug)]
pub struct CameraListing {
    pub index: u32,
    pub name: String,
    pub description: String,
    /// Its formats, or why they could not be read (in use, permissions).
    pub formats: std::result::Result<Vec<CameraFormat>, String>,
}

/// The cameras the system knows (an empty list when there are none).
pub fn list_cameras() -> Result<Vec<CameraListing>> {
    let infos = nokhwa::query(ApiBackend::Auto)
        .map_err(|e| anyhow!("cannot list cameras: {}", one_line(&e)))?;
    let mut out = Vec::new();
    for info in infos {
        let index = match info.index() {
            CameraIndex::Index(i) => *i,
            CameraIndex::String(s) => s.parse().unwrap_or(u32::MAX),
        };
        let formats = open_any(index)
            .and_then(|mut cam| {
                cam.compatible_camera_formats()
                    .map_err(|e| one_line(&e))
                    .map(|mut f| {
                        f.sort_by_key(|f| {
                            (
                                f.format().to_string(),
                                f.width(),
                                f.height(),
                                f.frame_rate(),
                            )
                        });
                        f
                    })
            })
            .map_err(|e| e.to_string());
        out.push(CameraListing {
            index,
            name: info.human_name(),
            description: info.description().to_string(),
            formats,
        });
    }
    Ok(out)
}

/// A nokhwa error on one line, with the reasons people can act on spelled out.
fn one_line(e: &NokhwaError) -> String {
    let s = e.to_string().replace('\n', " ");
    let lower = s.to_lowercase();
    if lower.contains("busy") {
        format!("{s} (the camera is in use by another program)")
    } else if lower.contains("permission denied") {
        format!("{s} (add yourself to the 'video' group, or check the device's permissions)")
    } else {
        s
    }
}

/// Opens camera `index` in whatever format it is set to.
fn open_any(index: u32) -> std::result::Result<Camera, String> {
    Camera::new(
        CameraIndex::Index(index),
        RequestedFormat::with_formats(RequestedFormatType::None, &ALL_FORMATS),
    )
    .map_err(|e| one_line(&e))
}

/// Opens camera `index` in `format` and starts streaming.
fn open_streaming(index: u32, format: CameraFormat) -> std::result::Result<Camera, String> {
    let mut cam = Camera::new(
        CameraIndex::Index(index),
        RequestedFormat::with_formats(RequestedFormatType::Exact(format), &READ_FORMATS),
    )
    .map_err(|e| one_line(&e))?;
    cam.open_stream().map_err(|e| one_line(&e))?;
    Ok(cam)
}

/// A webcam as a live source.
///
/// nokhwa's `Camera` may not move between threads, so [`CameraSource::open`]
/// opens the camera to check it, choose and test the format, closes it,
/// and the capture thread opens it again with that exact format.
pub struct CameraSource {
    index: u32,
    format: CameraFormat,
    request: CameraRequest,
    width: u32,
    height: u32,
    name: String,
}

impl CameraSource {
    /// Opens the camera, chooses its format (see [`choose_format`]) and
    /// starts it. `size` is the processing size (`--size`, longer side);
    /// by default frames are painted at the camera's size.
    ///
    /// Errors say what to do: no camera at all, this one missing, in use,
    /// or offering no format stylestream reads.
    pub fn open(request: CameraRequest, size: Option<u32>) -> Result<Self> {
        let index = request.index;
        let mut camera = open_any(index).map_err(|e| no_camera_error(index, &e))?;
        let offered = camera
            .compatible_camera_formats()
            .map_err(|e| anyhow!("camera {index}: cannot read its formats: {}", one_line(&e)))?;
        let Some(format) = choose_format(&offered, &request) else {
            let mut kinds: Vec<String> = offered.iter().map(|f| f.format().to_string()).collect();
            kinds.sort();
            kinds.dedup();
            bail!(
                "camera {index} offers no format stylestream reads (MJPEG or YUYV); it offers: {}",
                if kinds.is_empty() {
                    "nothing".to_string()
                } else {
                    kinds.join(", ")
                }
            );
        };
        if camera.camera_format() != format {
            camera
                .set_camera_requset(RequestedFormat::with_formats(
                    RequestedFormatType::Exact(format),
                    &READ_FORMATS,
                ))
                .map_err(|e| {
                    anyhow!(
                        "camera {index}: cannot switch to {}: {}",
                        describe_format(&format),
                        one_line(&e)
                    )
                })?;
        }
        camera
            .open_stream()
            .map_err(|e| anyhow!("camera {index}: cannot start it: {}", one_line(&e)))?;
        let name = camera.info().human_name();
        drop(camera);
        let (width, height) = live_dims(format.width(), format.height(), size);
        Ok(Self {
            index,
            format,
            request,
            width,
            height,
            name,
        })
    }

    /// The format in use.
    pub fn format(&self) -> CameraFormat {
        self.format
    }
}

/// The error for a camera that does not open, naming the likely reason.
fn no_camera_error(index: u32, why: &str) -> anyhow::Error {
    let listed = nokhwa::query(ApiBackend::Auto).unwrap_or_default();
    if listed.is_empty() {
        anyhow!(
            "no camera found (opening camera {index} failed: {why}). Connect a webcam, or use \
             --input VIDEO --realtime to run the live filter on a video file"
        )
    } else {
        let names: Vec<String> = listed
            .iter()
            .map(|c| format!("{} ({})", c.index(), c.human_name()))
            .collect();
        anyhow!(
            "cannot open camera {index}: {why}. Cameras: {}; `stylestream devices` lists their formats",
            names.join(", ")
        )
    }
}

/// "640x480 MJPEG at 30 fps".
pub fn describe_format(f: &CameraFormat) -> String {
    format!(
        "{}x{} {} at {} fps",
        f.width(),
        f.height(),
        f.format(),
        f.frame_rate()
    )
}

impl FrameSource for CameraSource {
    fn describe(&self) -> String {
        let r = &self.request;
        let mut s = format!(
            "camera {} ({}): {} (asked for {}x{} at {} fps)",
            self.index,
            self.name,
            describe_format(&self.format),
            r.width,
            r.height,
            r.fps
        );
        if (self.width, self.height) != (self.format.width(), self.format.height()) {
            s.push_str(&format!(", painted at {}x{}", self.width, self.height));
        }
        s
    }

    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn frame_rate(&self) -> Option<f64> {
        Some(self.format.frame_rate() as f64)
    }

    fn run(
        self: Box<Self>,
        stop: &AtomicBool,
        emit: &mut dyn FnMut(CapturedFrame),
    ) -> Result<SourceEnd> {
        let CameraSource {
            index,
            format,
            width,
            height,
            ..
        } = *self;
        let mut camera = Some(open_streaming(index, format).map_err(|e| {
            anyhow!(
                "camera {index}: cannot start it in {}: {e}",
                describe_format(&format)
            )
        })?);
        let (cw, ch) = (format.width(), format.height());
        let mut scaler = ((cw, ch) != (width, height))
            .then(|| Scaler::new(Pixel::RGB24, width, height, Colorimetry::default()));
        let mut seq = 0u64;
        let mut bad_frames = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let Some(cam) = camera.as_mut() else { break };
            let buffer = match cam.frame() {
                Ok(b) => b,
                Err(e) => {
                    let why = one_line(&e);
                    // Close it before trying to open it again.
                    drop(camera.take());
                    eprintln!(
                        "live: camera {index} stopped delivering frames ({why}); unplugged? \
                         trying to reopen it for {REOPEN_SECONDS:.0} s"
                    );
                    match reopen(index, format, stop) {
                        Some(c) => {
                            eprintln!("live: camera {index} is back");
                            camera = Some(c);
                            continue;
                        }
                        None if stop.load(Ordering::Relaxed) => break,
                        None => {
                            return Ok(SourceEnd {
                                frames: seq,
                                note: Some(format!(
                                    "camera {index} was lost ({why}) and did not come back within {REOPEN_SECONDS:.0} s"
                                )),
                            })
                        }
                    }
                }
            };
            let captured = Instant::now();
            let rgb = match convert_frame(buffer.buffer(), format.format(), cw, ch) {
                Ok(f) => f,
                Err(e) => {
                    // Cameras send the odd broken frame (USB bandwidth);
                    // skip those, but not a camera that sends only those.
                    bad_frames += 1;
                    if bad_frames == 1 || bad_frames.is_multiple_of(100) {
                        eprintln!("live: camera {index}: skipped {bad_frames} bad frame(s): {e:#}");
                    }
                    if bad_frames > 300 && seq == 0 {
                        bail!("camera {index} delivers no usable frames: {e:#}");
                    }
                    continue;
                }
            };
            let rgb = match scaler.as_mut() {
                Some(s) => {
                    RgbFrame::from_ffmpeg(&s.run(&rgb.to_ffmpeg(), Colorimetry::default())?)?
                }
                None => rgb,
            };
            emit(CapturedFrame {
                seq,
                captured,
                image: rgb.to_planar(),
            });
            seq += 1;
        }
        Ok(SourceEnd {
            frames: seq,
            note: None,
        })
    }
}

/// Tries to open camera `index` again in `format` for [`REOPEN_SECONDS`].
fn reopen(index: u32, format: CameraFormat, stop: &AtomicBool) -> Option<Camera> {
    let deadline = Instant::now() + Duration::from_secs_f64(REOPEN_SECONDS);
    while Instant::now() < deadline {
        if let Ok(c) = open_streaming(index, format) {
            return Some(c);
        }
        if !sleep_until(Instant::now() + Duration::from_millis(500), stop) {
            return None;
        }
    }
    None
}

/// A [`CameraFormat`] from its parts (tests and listings).
pub fn camera_format(width: u32, height: u32, format: FrameFormat, fps: u32) -> CameraFormat {
    CameraFormat::new(Resolution::new(width, height), format, fps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webcam_inputs() {
        assert_eq!(parse_webcam("webcam").unwrap().unwrap(), 0);
        assert_eq!(parse_webcam("webcam:2").unwrap().unwrap(), 2);
        assert!(parse_webcam("webcam:x").unwrap().is_err());
        assert!(parse_webcam("clip.mp4").is_none());
        assert!(parse_webcam("webcams").is_none());
    }
}
