//! swscale conversions between a video's YUV frames and RGB, with the
//! colour matrix and range the stream declares.
//!
//! swscale assumes BT.601 limited range unless told otherwise, which shifts
//! the colours of every HD (BT.709) video slightly towards green and
//! magenta; both directions are therefore told the stream's matrix and range
//! ([`Colorimetry`]), so a video painted with an identity effect comes out
//! with the colours it went in with.

use anyhow::{anyhow, Result};
use ffmpeg_next as ffmpeg;
use ffmpeg_next::color;
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling::{self, Flags};

/// The colour tags of a video stream, carried from input to output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Colorimetry {
    pub space: color::Space,
    pub range: color::Range,
    pub primaries: color::Primaries,
    pub transfer: color::TransferCharacteristic,
}

impl Default for Colorimetry {
    fn default() -> Self {
        Self {
            space: color::Space::Unspecified,
            range: color::Range::Unspecified,
            primaries: color::Primaries::Unspecified,
            transfer: color::TransferCharacteristic::Unspecified,
        }
    }
}

impl Colorimetry {
    /// The tags of a decoded frame.
    pub fn of_frame(frame: &ffmpeg::frame::Video) -> Self {
        Self {
            space: frame.color_space(),
            range: frame.color_range(),
            primaries: frame.color_primaries(),
            transfer: frame.color_transfer_characteristic(),
        }
    }

    /// Whether YUV samples use the full 0..255 range (JPEG) rather than
    /// 16..235 (MPEG, the default for video when unspecified).
    fn full_range(&self, format: Pixel) -> bool {
        self.range == color::Range::JPEG
            || matches!(
                format,
                Pixel::YUVJ420P | Pixel::YUVJ422P | Pixel::YUVJ444P | Pixel::YUVJ440P
            )
    }

    /// swscale's coefficient table for this matrix (unknown values fall back
    /// to BT.601 inside swscale, as FFmpeg itself does).
    fn coefficients(&self) -> *const i32 {
        let space: ffmpeg::ffi::AVColorSpace = self.space.into();
        // SAFETY: sws_getCoefficients accepts any int and returns a pointer
        // to a static table.
        unsafe { ffmpeg::ffi::sws_getCoefficients(space as i32) }
    }
}

/// Whether a pixel format is RGB (so the colour matrix does not apply).
fn is_rgb(format: Pixel) -> bool {
    format
        .descriptor()
        .map(|d| {
            // AV_PIX_FMT_FLAG_RGB
            // SAFETY: descriptor pointers are static.
            unsafe { (*d.as_ptr()).flags & (1 << 5) != 0 }
        })
        .unwrap_or(false)
}

/// A swscale context that rebuilds itself when the input changes (a stream
/// may change resolution mid-way; decoders report it frame by frame).
pub struct Scaler {
    context: Option<scaling::Context>,
    key: (Pixel, u32, u32, Colorimetry),
    dst: (Pixel, u32, u32),
    dst_color: Colorimetry,
}

// SAFETY: an SwsContext has no thread affinity; it is only unsafe to use
// from two threads at once, which `&mut self` on every use rules out. The
// decode and encode threads each own their scalers and move them once.
unsafe impl Send for Scaler {}

impl Scaler {
    /// A scaler to `format` at `width` x `height`; `dst_color` gives the
    /// matrix and range when the destination is YUV.
    pub fn new(format: Pixel, width: u32, height: u32, dst_color: Colorimetry) -> Self {
        Self {
            context: None,
            key: (Pixel::None, 0, 0, Colorimetry::default()),
            dst: (format, width, height),
            dst_color,
        }
    }

    /// Converts `src` (whose colour tags are `src_color`) into a new frame.
    pub fn run(
        &mut self,
        src: &ffmpeg::frame::Video,
        src_color: Colorimetry,
    ) -> Result<ffmpeg::frame::Video> {
        let key = (src.format(), src.width(), src.height(), src_color);
        if self.context.is_none() || self.key != key {
            self.context = Some(self.build(key)?);
            self.key = key;
        }
        let mut out = ffmpeg::frame::Video::empty();
        let ctx = self
            .context
            .as_mut()
            .ok_or_else(|| anyhow!("internal: no scaler"))?;
        ctx.run(src, &mut out)
            .map_err(|e| anyhow!("cannot convert a frame's pixels: {e}"))?;
        Ok(out)
    }

    fn build(
        &self,
        (format, w, h, color): (Pixel, u32, u32, Colorimetry),
    ) -> Result<scaling::Context> {
        let (dst_format, dw, dh) = self.dst;
        // Bicubic when resizing (sharp, no ringing worth mentioning at these
        // ratios); bilinear chroma upsampling when only converting.
        let flags = if (w, h) == (dw, dh) {
            Flags::BILINEAR
        } else {
            Flags::BICUBIC
        };
        let mut ctx =
            scaling::Context::get(format, w, h, dst_format, dw, dh, flags).map_err(|e| {
                anyhow!(
                    "cannot convert {}x{} {:?} frames to {}x{} {:?}: {e}",
                    w,
                    h,
                    format,
                    dw,
                    dh,
                    dst_format
                )
            })?;
        let src_full = if is_rgb(format) {
            true
        } else {
            color.full_range(format)
        };
        let dst_full = if is_rgb(dst_format) {
            true
        } else {
            self.dst_color.full_range(dst_format)
        };
        let src_table = if is_rgb(format) {
            self.dst_color.coefficients()
        } else {
            color.coefficients()
        };
        let dst_table = if is_rgb(dst_format) {
            src_table
        } else {
            self.dst_color.coefficients()
        };
        // SAFETY: the context is valid; the tables are swscale's statics.
        // A failure (unsupported combination) leaves swscale's defaults,
        // which is still a correct conversion, only less exact in colour.
        unsafe {
            ffmpeg::ffi::sws_setColorspaceDetails(
                ctx.as_mut_ptr(),
                src_table,
                src_full as i32,
                dst_table,
                dst_full as i32,
                0,
                1 << 16,
                1 << 16,
            );
        }
        Ok(ctx)
    }
}
