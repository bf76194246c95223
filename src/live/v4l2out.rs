//! `--output v4l2:/dev/videoN`: a virtual camera other programs (video
//! calls, OBS) can pick, through the v4l2loopback kernel module.
//!
//! One-time setup (the module is not in every kernel's default set):
//!
//! ```sh
//! sudo apt install v4l2loopback-dkms      # Debian/Ubuntu
//! sudo modprobe v4l2loopback devices=1 video_nr=10 card_label=stylestream exclusive_caps=1
//! stylestream stylize --input webcam --model NAME --output v4l2:/dev/video10
//! ```
//!
//! `exclusive_caps=1` makes the device show up as a camera only once
//! someone writes to it, which is what Chrome and most video-call apps need
//! to list it. We set the format with `VIDIOC_S_FMT` on the OUTPUT buffer
//! type and then `write()` whole frames in YUYV (4:2:2, BT.601 limited
//! range), the format every consumer reads.

use std::fs::File;
use std::io::Write;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use v4l::capability::Flags;
use v4l::format::{Colorspace, FieldOrder};
use v4l::video::Output;
use v4l::{Device, Format, FourCC};

use super::pipeline::{LiveSink, OutputFrame};
use crate::video::frame::RgbFrame;

/// The one-time setup, for error messages and help.
pub const SETUP_HINT: &str = "load v4l2loopback once with: sudo modprobe v4l2loopback devices=1 \
video_nr=10 card_label=stylestream exclusive_caps=1 (package v4l2loopback-dkms), then use \
--output v4l2:/dev/video10";

/// Parses `v4l2:/dev/videoN`; `None` for anything else.
pub fn parse_v4l2_output(s: &str) -> Option<PathBuf> {
    s.strip_prefix("v4l2:").map(PathBuf::from)
}

/// Converts packed RGB to YUYV (BT.601, limited range), two pixels per
/// four bytes sharing the average of their chroma. An odd last column is
/// dropped (YUYV needs an even width).
pub fn rgb_to_yuyv(frame: &RgbFrame) -> Vec<u8> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let even = w & !1;
    let mut out = Vec::with_capacity(2 * even * h);
    let y_of = |r: i32, g: i32, b: i32| (16 + ((66 * r + 129 * g + 25 * b + 128) >> 8)) as u8;
    for row in frame.data.chunks_exact(3 * w).take(h) {
        for pair in row[..3 * even].chunks_exact(6) {
            let (r0, g0, b0) = (pair[0] as i32, pair[1] as i32, pair[2] as i32);
            let (r1, g1, b1) = (pair[3] as i32, pair[4] as i32, pair[5] as i32);
            let (r, g, b) = (r0 + r1, g0 + g1, b0 + b1);
            // Sums of two pixels: the shift is one more to average.
            let u = (128 + ((-38 * r - 74 * g + 112 * b + 256) >> 9)).clamp(0, 255) as u8;
            let v = (128 + ((112 * r - 94 * g - 18 * b + 256) >> 9)).clamp(0, 255) as u8;
            out.extend_from_slice(&[y_of(r0, g0, b0), u, y_of(r1, g1, b1), v]);
        }
    }
    out
}

/// A v4l2loopback device being written.
pub struct V4l2Sink {
    path: PathBuf,
    _device: Device,
    file: File,
    width: u32,
    height: u32,
    frames: u64,
    skipped: u64,
}

impl V4l2Sink {
    /// Opens `path`, checks it is a video output (a loopback device, not a
    /// camera) and sets it to `width` x `height` YUYV at `fps`.
    pub fn open(path: &Path, width: u32, height: u32, fps: Option<f64>) -> Result<Self> {
        let name = path.display();
        let device = Device::with_path(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!("{name} does not exist: {SETUP_HINT}"),
            std::io::ErrorKind::PermissionDenied => {
                anyhow!("cannot open {name}: permission denied (add yourself to the 'video' group)")
            }
            _ => anyhow!("cannot open {name}: {e}"),
        })?;
        let caps = device
            .query_caps()
            .map_err(|e| anyhow!("{name} is not a V4L2 device ({e}): {SETUP_HINT}"))?;
        if !caps.capabilities.contains(Flags::VIDEO_OUTPUT) {
            bail!(
                "{name} ({}, driver {}) is not a video output device (a camera?): {SETUP_HINT}",
                caps.card,
                caps.driver
            );
        }
        let even = width & !1;
        let mut fmt = Format::new(even, height, FourCC::new(b"YUYV"));
        fmt.field_order = FieldOrder::Progressive;
        fmt.stride = 2 * even;
        fmt.size = 2 * even * height;
        fmt.colorspace = Colorspace::SRGB;
        let set = device
            .set_format(&fmt)
            .map_err(|e| anyhow!("{name}: cannot set {even}x{height} YUYV: {e}"))?;
        if set.width != even || set.height != height || set.fourcc != fmt.fourcc {
            bail!(
                "{name} refused {even}x{height} YUYV (it offers {}x{} {}); another program may \
                 be writing to it with another size",
                set.width,
                set.height,
                set.fourcc
            );
        }
        if let Some(fps) = fps.filter(|f| *f >= 1.0) {
            // Only what consumers are told; ignore devices that refuse it.
            let _ =
                device.set_params(&v4l::video::output::Parameters::with_fps(fps.round() as u32));
        }
        // SAFETY: the descriptor belongs to `device`, which outlives this
        // borrow; the clone is a separate descriptor (dup) we own.
        let fd = unsafe { BorrowedFd::borrow_raw(device.handle().fd()) }
            .try_clone_to_owned()
            .map_err(|e| anyhow!("{name}: {e}"))?;
        Ok(Self {
            path: path.to_path_buf(),
            _device: device,
            file: File::from(fd),
            width: even,
            height,
            frames: 0,
            skipped: 0,
        })
    }
}

impl LiveSink for V4l2Sink {
    fn name(&self) -> String {
        format!("v4l2:{}", self.path.display())
    }

    fn show(&mut self, frame: &OutputFrame) -> Result<()> {
        if frame.rgb.width & !1 != self.width || frame.rgb.height != self.height {
            bail!(
                "a {}x{} frame for a {}x{} device",
                frame.rgb.width,
                frame.rgb.height,
                self.width,
                self.height
            );
        }
        let yuyv = rgb_to_yuyv(&frame.rgb);
        match self.file.write(&yuyv) {
            Ok(_) => self.frames += 1,
            // The device opens non-blocking: a full queue skips a frame.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.skipped += 1,
            Err(e) => bail!("cannot write to {}: {e}", self.path.display()),
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Option<String>> {
        Ok(Some(format!(
            "v4l2:{}: {} frames written{}",
            self.path.display(),
            self.frames,
            if self.skipped > 0 {
                format!(", {} skipped (device busy)", self.skipped)
            } else {
                String::new()
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_of_known_colours() {
        let f = RgbFrame {
            width: 4,
            height: 1,
            data: vec![0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255],
        };
        assert_eq!(rgb_to_yuyv(&f), vec![16, 128, 16, 128, 235, 128, 235, 128]);
    }

    #[test]
    fn missing_device_says_how_to_set_it_up() {
        let e = V4l2Sink::open(Path::new("/dev/video-does-not-exist"), 640, 480, None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("modprobe v4l2loopback"), "{e}");
        assert_eq!(
            parse_v4l2_output("v4l2:/dev/video10"),
            Some(PathBuf::from("/dev/video10"))
        );
    }
}
