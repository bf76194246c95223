//! Frames between FFmpeg and the effects.
//!
//! Two layouts, each where it is cheapest:
//!
//! * [`RgbFrame`] — packed 8-bit RGB, what swscale reads and writes and what
//!   PNG files hold. Rotations and padding are done here, on bytes.
//! * [`PlanarFrame`] — planar `0..=1` floats, exactly the memory layout of a
//!   candle `(1, 3, H, W)` tensor, so the effect thread turns it into a
//!   tensor without a shuffle ([`frames_to_tensor`]) and back with one copy
//!   ([`tensor_to_frames`]).
//!
//! The byte/float conversions run on the decode and encode threads, not on
//! the effect thread: the effect is the pipeline's bottleneck, and every
//! millisecond taken off it is throughput.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use ffmpeg_next as ffmpeg;

/// A packed RGB24 image: `3 * width * height` bytes, rows without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// A planar RGB image in `0..=1`: the R plane, then G, then B.
#[derive(Clone, Debug)]
pub struct PlanarFrame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl RgbFrame {
    /// Copies an FFmpeg `RGB24` frame, dropping its row padding (`linesize`
    /// is usually rounded up for SIMD, so rows cannot be copied in one go).
    pub fn from_ffmpeg(frame: &ffmpeg::frame::Video) -> Result<Self> {
        if frame.format() != ffmpeg::format::Pixel::RGB24 {
            bail!(
                "internal: expected an RGB24 frame, got {:?}",
                frame.format()
            );
        }
        let (w, h) = (frame.width(), frame.height());
        let row = 3 * w as usize;
        let stride = frame.stride(0);
        let src = frame.data(0);
        let mut data = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            data.extend_from_slice(&src[y * stride..y * stride + row]);
        }
        Ok(Self {
            width: w,
            height: h,
            data,
        })
    }

    /// An FFmpeg `RGB24` frame holding these pixels (for swscale).
    pub fn to_ffmpeg(&self) -> ffmpeg::frame::Video {
        let mut frame =
            ffmpeg::frame::Video::new(ffmpeg::format::Pixel::RGB24, self.width, self.height);
        let row = 3 * self.width as usize;
        let stride = frame.stride(0);
        let dst = frame.data_mut(0);
        for (y, src) in self.data.chunks_exact(row).enumerate() {
            dst[y * stride..y * stride + row].copy_from_slice(src);
        }
        frame
    }

    /// Rotates by `quarter_turns` x 90 degrees clockwise (0..=3).
    ///
    /// Used to process rotated phone videos upright (effects such as
    /// DeepDream are not rotation invariant) and to turn the result back
    /// before it is stored with the input's rotation metadata.
    pub fn rotate_cw(&self, quarter_turns: u32) -> Self {
        let (w, h) = (self.width as usize, self.height as usize);
        let turns = quarter_turns % 4;
        if turns == 0 {
            return self.clone();
        }
        let (nw, nh) = if turns == 2 { (w, h) } else { (h, w) };
        let mut out = vec![0u8; self.data.len()];
        for y in 0..h {
            for x in 0..w {
                // Destination of source pixel (x, y) in the rotated image.
                let (dx, dy) = match turns {
                    1 => (h - 1 - y, x),
                    2 => (w - 1 - x, h - 1 - y),
                    _ => (y, w - 1 - x),
                };
                let s = 3 * (y * w + x);
                let d = 3 * (dy * nw + dx);
                out[d..d + 3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        Self {
            width: nw as u32,
            height: nh as u32,
            data: out,
        }
    }

    /// Grows an odd width or height by one pixel, repeating the last column
    /// or row, so that 4:2:0 chroma (one sample per 2x2 block) covers the
    /// frame. Repeating the edge rather than adding black keeps the extra
    /// line invisible in the picture and cheap for the encoder.
    pub fn pad_to_even(&self) -> Self {
        let (w, h) = (self.width as usize, self.height as usize);
        let (nw, nh) = (w + w % 2, h + h % 2);
        if (nw, nh) == (w, h) {
            return self.clone();
        }
        let mut out = Vec::with_capacity(3 * nw * nh);
        for y in 0..nh {
            let src = &self.data[3 * w * y.min(h - 1)..3 * w * (y.min(h - 1) + 1)];
            out.extend_from_slice(src);
            if nw > w {
                out.extend_from_slice(&src[3 * (w - 1)..]);
            }
        }
        Self {
            width: nw as u32,
            height: nh as u32,
            data: out,
        }
    }

    /// Converts to planar floats in `0..=1`.
    pub fn to_planar(&self) -> PlanarFrame {
        let n = self.width as usize * self.height as usize;
        let mut data = vec![0f32; 3 * n];
        let (r, rest) = data.split_at_mut(n);
        let (g, b) = rest.split_at_mut(n);
        const SCALE: f32 = 1.0 / 255.0;
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            r[i] = px[0] as f32 * SCALE;
            g[i] = px[1] as f32 * SCALE;
            b[i] = px[2] as f32 * SCALE;
        }
        PlanarFrame {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

impl PlanarFrame {
    /// Quantises to packed bytes, rounding, clamping to `0..=1` and mapping
    /// NaN (a diverged effect) to 0 rather than to undefined bytes.
    pub fn to_rgb(&self) -> RgbFrame {
        let n = self.width as usize * self.height as usize;
        let q = |v: f32| {
            if v.is_nan() {
                0
            } else {
                (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
            }
        };
        let (r, rest) = self.data.split_at(n);
        let (g, b) = rest.split_at(n);
        let mut data = Vec::with_capacity(3 * n);
        for i in 0..n {
            data.extend_from_slice(&[q(r[i]), q(g[i]), q(b[i])]);
        }
        RgbFrame {
            width: self.width,
            height: self.height,
            data,
        }
    }
}

/// Stacks frames of one size into an `(N, 3, H, W)` f32 tensor on `device`.
///
/// A single frame's buffer becomes the tensor without a copy; a batch is
/// concatenated once on the CPU and uploaded in one transfer.
pub fn frames_to_tensor(frames: Vec<PlanarFrame>, device: &Device) -> Result<Tensor> {
    let Some(first) = frames.first() else {
        bail!("internal: no frames to stack");
    };
    let (w, h, n) = (first.width as usize, first.height as usize, frames.len());
    if frames
        .iter()
        .any(|f| (f.width as usize, f.height as usize) != (w, h))
    {
        bail!("internal: frames of different sizes in one batch");
    }
    let data = if n == 1 {
        frames
            .into_iter()
            .next()
            .map(|f| f.data)
            .unwrap_or_default()
    } else {
        let mut all = Vec::with_capacity(n * 3 * w * h);
        for f in frames {
            all.extend_from_slice(&f.data);
        }
        all
    };
    let t = Tensor::from_vec(data, (n, 3, h, w), &Device::Cpu)?;
    Ok(t.to_device(device)?)
}

/// Splits an `(N, 3, H, W)` tensor (any device, any float dtype) into
/// planar frames on the CPU.
pub fn tensor_to_frames(t: &Tensor) -> Result<Vec<PlanarFrame>> {
    let (n, c, h, w) = t.dims4()?;
    if c != 3 || h == 0 || w == 0 {
        bail!(
            "an effect returned a tensor of shape {:?}, not (N, 3, H, W)",
            t.dims()
        );
    }
    let data = t
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let per = 3 * h * w;
    Ok((0..n)
        .map(|i| PlanarFrame {
            width: w as u32,
            height: h as u32,
            data: data[i * per..(i + 1) * per].to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32) -> RgbFrame {
        RgbFrame {
            width: w,
            height: h,
            data: (0..3 * w * h).map(|i| (i % 251) as u8).collect(),
        }
    }

    #[test]
    fn four_quarter_turns_are_the_identity() {
        let f = frame(5, 3);
        let once = f.rotate_cw(1);
        assert_eq!((once.width, once.height), (3, 5));
        // The top-left pixel goes to the top-right corner.
        assert_eq!(&once.data[3 * 2..3 * 3], &f.data[0..3]);
        assert_eq!(once.rotate_cw(3), f);
        assert_eq!(f.rotate_cw(2).rotate_cw(2), f);
    }

    #[test]
    fn padding_repeats_the_edges() {
        let f = frame(3, 3);
        let p = f.pad_to_even();
        assert_eq!((p.width, p.height), (4, 4));
        assert_eq!(&p.data[3 * 3..3 * 4], &f.data[3 * 2..3 * 3]);
        assert_eq!(&p.data[3 * 4 * 3..3 * 4 * 3 + 9], &f.data[3 * 3 * 2..]);
        assert_eq!(frame(4, 2).pad_to_even(), frame(4, 2));
    }

    #[test]
    fn bytes_survive_the_float_round_trip() {
        let f = frame(7, 5);
        assert_eq!(f.to_planar().to_rgb(), f);
        let t = frames_to_tensor(vec![f.to_planar(), f.to_planar()], &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3, 5, 7]);
        let back = tensor_to_frames(&t).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].to_rgb(), f);
    }
}
