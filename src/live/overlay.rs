//! Drawing on output frames: the statistics overlay and the split screen.
//!
//! Both work on packed RGB bytes after the effect, on the effect thread,
//! so every output (window, stream, virtual camera, recording) shows the
//! same picture. Text uses the public-domain 8x8 bitmap font of the
//! `font8x8` crate: no font files, no rasteriser, a few microseconds a line.

use font8x8::legacy::BASIC_LEGACY;

use crate::video::frame::RgbFrame;

/// Writes `lines` in the top-left corner, white on a darkened box, at a
/// scale that stays readable on large frames.
pub fn draw_text_box(frame: &mut RgbFrame, lines: &[String]) {
    let scale = if frame.width >= 1200 {
        3
    } else if frame.width >= 720 {
        2
    } else {
        1
    };
    let glyph = 8 * scale;
    let pad = 4 * scale;
    let cols = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let box_w = (cols * glyph + 2 * pad).min(frame.width as usize);
    let box_h = (lines.len() * (glyph + scale) + 2 * pad).min(frame.height as usize);
    darken(frame, 0, 0, box_w, box_h);
    for (i, line) in lines.iter().enumerate() {
        let y = pad + i * (glyph + scale);
        for (j, ch) in line.chars().enumerate() {
            draw_char(frame, pad + j * glyph, y, ch, scale);
        }
    }
}

/// Halves the brightness of a rectangle (clipped to the frame).
fn darken(frame: &mut RgbFrame, x0: usize, y0: usize, w: usize, h: usize) {
    let fw = frame.width as usize;
    let x1 = (x0 + w).min(fw);
    let y1 = (y0 + h).min(frame.height as usize);
    for y in y0..y1 {
        for v in &mut frame.data[3 * (y * fw + x0)..3 * (y * fw + x1)] {
            *v /= 3;
        }
    }
}

/// Draws one character (ASCII; anything else as '?') at (x, y).
fn draw_char(frame: &mut RgbFrame, x: usize, y: usize, ch: char, scale: usize) {
    let code = if ch.is_ascii() {
        ch as usize
    } else {
        b'?' as usize
    };
    let rows = BASIC_LEGACY[code];
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    for (ry, bits) in rows.iter().enumerate() {
        for rx in 0..8 {
            // Bit 0 is the leftmost pixel.
            if bits & (1 << rx) == 0 {
                continue;
            }
            for sy in 0..scale {
                for sx in 0..scale {
                    let (px, py) = (x + rx * scale + sx, y + ry * scale + sy);
                    if px < fw && py < fh {
                        let i = 3 * (py * fw + px);
                        frame.data[i..i + 3].copy_from_slice(&[255, 255, 255]);
                    }
                }
            }
        }
    }
}

/// Split screen: the left half of `painted` becomes `original`'s, with a
/// thin white line at the seam.
pub fn compose_split(original: &RgbFrame, painted: &mut RgbFrame) {
    if (original.width, original.height) != (painted.width, painted.height) {
        return;
    }
    let w = painted.width as usize;
    let half = w / 2;
    for (dst, src) in painted
        .data
        .chunks_exact_mut(3 * w)
        .zip(original.data.chunks_exact(3 * w))
    {
        dst[..3 * half].copy_from_slice(&src[..3 * half]);
        if half > 0 {
            dst[3 * half - 3..3 * half].copy_from_slice(&[255, 255, 255]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grey(w: u32, h: u32, v: u8) -> RgbFrame {
        RgbFrame {
            width: w,
            height: h,
            data: vec![v; 3 * (w * h) as usize],
        }
    }

    #[test]
    fn text_is_drawn_in_the_corner_only() {
        let mut f = grey(64, 32, 150);
        draw_text_box(&mut f, &["Hi".to_string()]);
        let px = |x: usize, y: usize| f.data[3 * (y * 64 + x)];
        // Background darkened, some glyph pixels white, far corner untouched.
        assert!((0..20).any(|x| (0..12).any(|y| px(x, y) == 255)));
        assert_eq!(px(1, 1), 50);
        assert_eq!(px(63, 31), 150);
    }

    #[test]
    fn split_takes_the_left_half_from_the_original() {
        let orig = grey(8, 2, 10);
        let mut painted = grey(8, 2, 200);
        compose_split(&orig, &mut painted);
        assert_eq!(painted.data[0], 10);
        assert_eq!(painted.data[3 * 3], 255);
        assert_eq!(painted.data[3 * 4], 200);
    }
}
