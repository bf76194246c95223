//! Still-image sources and sinks: decoding files into float images, moving
//! them to and from candle tensors, and writing results atomically.
//!
//! Everything here works in plain sRGB values in `0..=1` (no linearisation):
//! the networks the effects use were trained on sRGB pixels, so converting
//! would only add error.
//!
//! Three project rules shape this module:
//!
//! * Bad input is a one-line error that names the file and the problem, never
//!   a panic: a user pointing the tool at the wrong file should learn which
//!   file and why, not read a backtrace.
//! * Outputs are written to a temporary file beside the target and renamed
//!   into place, so an interrupted or failed write never leaves a half-written
//!   image where a good one (or nothing) was before.
//! * An output never overwrites an input ([`check_output_path`]), because a
//!   style transfer that runs for minutes and then destroys its own source
//!   photo is the worst possible failure.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Result};
use candle_core::{DType, Device, Tensor};
use image::codecs::bmp::BmpEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::{self, FilterType};
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, ImageBuffer, ImageDecoder, ImageEncoder, ImageError,
    ImageFormat, ImageReader, Limits, Luma, Rgb32FImage,
};

/// A single-channel opacity plane in `0..=1` (1 = opaque), kept apart from
/// the colour so effects can work on RGB alone and the alpha can be put back
/// on output.
pub type AlphaPlane = ImageBuffer<Luma<f32>, Vec<f32>>;

/// The largest width or height [`load_image`] accepts. A file's header can
/// claim any size up to 4 billion pixels a side; refusing up front turns a
/// hostile or broken header into a clear error instead of an out-of-memory
/// abort. 16384 is also the most the CLI's `--size` allows.
pub const MAX_SIDE: u32 = 16384;

/// Output extensions [`save_image`] understands, as listed in error messages.
pub const SUPPORTED_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "bmp"];

/// Quality for JPEG output: high enough that the encoder's blocking does not
/// show in the fine brush texture style transfer produces.
const JPEG_QUALITY: u8 = 95;

/// A decoded image: colour and (optional) opacity, both as `0..=1` floats.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// sRGB colour exactly as stored in the file (not premultiplied, not
    /// composited), with grayscale expanded to three equal channels.
    pub rgb: Rgb32FImage,
    /// The file's alpha channel, or `None` if it has none or every pixel is
    /// fully opaque (an all-opaque channel carries no information and would
    /// only make every output needlessly RGBA).
    pub alpha: Option<AlphaPlane>,
}

/// The still-image formats this tool reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutFormat {
    Png,
    Jpeg,
    WebP,
    Bmp,
}

impl OutFormat {
    /// Whether the format can store transparency (otherwise alpha is
    /// composited on white, the usual page/background colour).
    fn keeps_alpha(self) -> bool {
        matches!(self, OutFormat::Png | OutFormat::WebP)
    }
}

/// Maps a file extension (any case) to an output format.
fn format_from_extension(path: &Path) -> Option<OutFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some(OutFormat::Png),
        "jpg" | "jpeg" => Some(OutFormat::Jpeg),
        "webp" => Some(OutFormat::WebP),
        "bmp" => Some(OutFormat::Bmp),
        _ => None,
    }
}

/// Whether `path` has an image extension this tool handles (any case).
///
/// Meant for walking directories of inputs, where opening every file to
/// sniff its content would be slow and would turn stray text files into
/// errors; [`load_image`] itself trusts the content, not the name.
pub fn is_image_path(path: &Path) -> bool {
    format_from_extension(path).is_some()
}

/// The output format for `path`, or an error naming the supported extensions.
fn output_format(path: &Path) -> Result<OutFormat> {
    if let Some(f) = format_from_extension(path) {
        return Ok(f);
    }
    let supported = SUPPORTED_EXTENSIONS
        .iter()
        .map(|e| format!(".{e}"))
        .collect::<Vec<_>>()
        .join(", ");
    match path.extension() {
        Some(ext) => bail!(
            "{}: unsupported output format '.{}' (supported: {supported})",
            path.display(),
            ext.to_string_lossy()
        ),
        None => bail!(
            "{}: no file extension to choose an output format from (supported: {supported})",
            path.display()
        ),
    }
}

/// Joins a decoder's message into one line, so every error stays one line.
fn one_line(msg: impl std::fmt::Display) -> String {
    msg.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Turns a decoding failure into the project's one-line error for `path`.
fn decode_error(path: &Path, err: ImageError) -> anyhow::Error {
    let p = path.display();
    match err {
        ImageError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            anyhow!("{p}: corrupt or truncated image: unexpected end of file")
        }
        ImageError::IoError(e) => anyhow!("cannot read {p}: {}", one_line(e)),
        ImageError::Limits(e) => anyhow!("{p}: image too large to decode: {}", one_line(e)),
        ImageError::Unsupported(e) => {
            anyhow!("{p}: unsupported image variant: {}", one_line(e))
        }
        other => anyhow!("{p}: corrupt or truncated image: {}", one_line(other)),
    }
}

/// Reads a PNG, JPEG, WebP or BMP file into float sRGB plus optional alpha.
///
/// The format is detected from the file's first bytes, not its name, because
/// files in the wild are often misnamed (a JPEG saved as `.png`) and we would
/// rather work than complain. JPEG/WebP EXIF orientation is applied, so phone
/// photos come out the way every viewer shows them. 16-bit images are scaled
/// by 65535, grayscale is expanded to RGB, and alpha is split off untouched
/// (the colour is not premultiplied), leaving it to the caller whether to
/// composite ([`composite_on`]) or keep it for output.
///
/// Every failure is a one-line error naming the file: missing/unreadable,
/// a directory, empty, not an image (or an unsupported format), larger than
/// [`MAX_SIDE`] a side, or corrupt/truncated (with the decoder's message).
pub fn load_image(path: &Path) -> Result<LoadedImage> {
    let p = path.display();
    let meta = fs::metadata(path).map_err(|e| anyhow!("cannot read {p}: {}", one_line(e)))?;
    if meta.is_dir() {
        bail!("cannot read {p}: it is a directory, not an image file");
    }
    if meta.len() == 0 {
        bail!("{p} is empty (0 bytes), not an image");
    }
    let file = File::open(path).map_err(|e| anyhow!("cannot read {p}: {}", one_line(e)))?;

    // Sniff the format from the content only: a reader built from a plain
    // stream has no name to guess from.
    let mut reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| anyhow!("cannot read {p}: {}", one_line(e)))?;
    match reader.format() {
        None => bail!("{p} is not an image (or unsupported format)"),
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Bmp) => {}
        Some(other) => bail!(
            "{p} is a {} image, which is not supported (use PNG, JPEG, WebP or BMP)",
            other
                .extensions_str()
                .first()
                .unwrap_or(&"unknown")
                .to_uppercase()
        ),
    }

    // The side limit is checked by hand below for a clearer message; the
    // allocation cap only has to admit the largest image that passes it
    // (16384² RGBA16 = 2 GiB) while still stopping absurd metadata chunks.
    let mut limits = Limits::default();
    limits.max_alloc = Some(3 << 30);
    reader.limits(limits);

    let mut decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        bail!("{p}: corrupt image: it claims to be {w}x{h} pixels");
    }
    if w > MAX_SIDE || h > MAX_SIDE {
        bail!("{p} is {w}x{h} pixels; the largest supported is {MAX_SIDE} pixels a side");
    }
    // A broken EXIF block should not cost the user their image: ignore it.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, e))?;
    img.apply_orientation(orientation);

    let alpha = extract_alpha(&img).filter(|a| a.as_raw().iter().any(|&v| v < 1.0));
    let rgb = img.to_rgb32f();
    Ok(LoadedImage { rgb, alpha })
}

/// Copies the alpha channel out of a decoded image, scaled to `0..=1`.
fn extract_alpha(img: &DynamicImage) -> Option<AlphaPlane> {
    let (w, h) = (img.width(), img.height());
    let plane = |data: Vec<f32>| ImageBuffer::from_raw(w, h, data);
    match img {
        DynamicImage::ImageLumaA8(b) => plane(b.pixels().map(|p| p[1] as f32 / 255.0).collect()),
        DynamicImage::ImageRgba8(b) => plane(b.pixels().map(|p| p[3] as f32 / 255.0).collect()),
        DynamicImage::ImageLumaA16(b) => plane(b.pixels().map(|p| p[1] as f32 / 65535.0).collect()),
        DynamicImage::ImageRgba16(b) => plane(b.pixels().map(|p| p[3] as f32 / 65535.0).collect()),
        DynamicImage::ImageRgba32F(b) => plane(b.pixels().map(|p| p[3].clamp(0.0, 1.0)).collect()),
        // Any other layout with alpha (the enum is non-exhaustive): go
        // through a generic conversion rather than silently drop it.
        other if other.color().has_alpha() => {
            plane(other.to_rgba32f().pixels().map(|p| p[3]).collect())
        }
        _ => None,
    }
}

/// Blends `rgb` over a solid `background` using `alpha` (straight, not
/// premultiplied): `c·a + bg·(1−a)`.
///
/// Effects that only see RGB need this so transparent regions (whose stored
/// colour is often arbitrary, e.g. black) do not leak into the result. If the
/// plane's size differs from the image's, it is stretched to fit, since both
/// describe the same picture.
pub fn composite_on(rgb: &Rgb32FImage, alpha: &AlphaPlane, background: [f32; 3]) -> Rgb32FImage {
    let alpha = fit_alpha(alpha, rgb.width(), rgb.height());
    let mut out = rgb.clone();
    for (px, a) in out.pixels_mut().zip(alpha.as_raw().iter()) {
        let a = a.clamp(0.0, 1.0);
        for (c, bg) in px.0.iter_mut().zip(background) {
            *c = *c * a + bg * (1.0 - a);
        }
    }
    out
}

/// Returns `alpha` at `w`x`h`, resampling only when the size differs.
///
/// Effects may change the frame size slightly (networks that downsample by 4
/// round odd sizes), and refusing to save after minutes of work over a pixel
/// of mismatch would be absurd; stretching the plane is the faithful fix.
fn fit_alpha(alpha: &AlphaPlane, w: u32, h: u32) -> std::borrow::Cow<'_, AlphaPlane> {
    if alpha.dimensions() == (w, h) {
        std::borrow::Cow::Borrowed(alpha)
    } else {
        std::borrow::Cow::Owned(imageops::resize(alpha, w, h, FilterType::Triangle))
    }
}

/// Target size with the longer side `longer` and the aspect ratio kept.
///
/// Shared by the RGB and alpha resizers and by video frames, so that an
/// image and a frame at the same `--size` always agree exactly.
pub fn longer_side_dims(w: u32, h: u32, longer: u32) -> (u32, u32) {
    let longer = longer.max(1);
    let scale = |short: u32, long: u32| {
        ((short as f64 * longer as f64 / long as f64).round() as u32).clamp(1, longer)
    };
    if w >= h {
        (longer, scale(h, w))
    } else {
        (scale(w, h), longer)
    }
}

/// Resizes so the longer side is `longer` pixels, keeping the aspect ratio
/// (the shorter side is rounded, and at least 1 px).
///
/// Uses Lanczos3: style and content losses are computed on fine texture, and
/// a soft filter would blur exactly what the networks look at. Lanczos
/// overshoot is clamped to `0..=1` by the resampler. An image already at the
/// requested size is returned unchanged (no resampling loss).
pub fn resize_longer_side(img: &Rgb32FImage, longer: u32) -> Rgb32FImage {
    let (w, h) = longer_side_dims(img.width(), img.height(), longer);
    if (w, h) == img.dimensions() {
        return img.clone();
    }
    imageops::resize(img, w, h, FilterType::Lanczos3)
}

/// [`resize_longer_side`] for an alpha plane, giving exactly the same size
/// for the same input size, so the plane can be reattached to the resized
/// colour image.
pub fn resize_alpha_longer_side(alpha: &AlphaPlane, longer: u32) -> AlphaPlane {
    let (w, h) = longer_side_dims(alpha.width(), alpha.height(), longer);
    if (w, h) == alpha.dimensions() {
        return alpha.clone();
    }
    imageops::resize(alpha, w, h, FilterType::Lanczos3)
}

/// Converts an image into a `(1, 3, H, W)` f32 tensor of `0..=1` RGB values
/// on `device`.
///
/// The interleaved-to-planar shuffle is done in one pass on the CPU before a
/// single upload: doing it with tensor ops (permute + contiguous) would cost
/// an extra full copy, and on a GPU an extra kernel per frame.
pub fn image_to_tensor(img: &Rgb32FImage, device: &Device) -> candle_core::Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut planar = Vec::with_capacity(3 * w * h);
    append_planar(img, &mut planar);
    Tensor::from_vec(planar, (1, 3, h, w), device)
}

/// Appends `img` to `out` as three planes (R, G, B), the layout of one
/// item of an NCHW batch.
pub fn append_planar(img: &Rgb32FImage, out: &mut Vec<f32>) {
    let n = (img.width() * img.height()) as usize;
    let start = out.len();
    out.resize(start + 3 * n, 0.0);
    let (r, rest) = out[start..].split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
}

/// Converts a `(1, 3, H, W)` or `(3, H, W)` RGB tensor (any dtype, any
/// device) back into an image, clamping to `0..=1`.
///
/// Optimisation results routinely overshoot the valid range, so clamping
/// here keeps every caller from having to; NaNs (a diverged run) become 0
/// rather than undefined bytes in the file.
pub fn tensor_to_image(t: &Tensor) -> Result<Rgb32FImage> {
    let dims = t.dims();
    let (h, w) = match *dims {
        [1, 3, h, w] | [3, h, w] => (h, w),
        _ => bail!("expected an image tensor of shape (1, 3, H, W) or (3, H, W), got {dims:?}"),
    };
    if h == 0 || w == 0 {
        bail!("cannot make an image from an empty tensor of shape {dims:?}");
    }
    let (wu, hu) = (u32::try_from(w)?, u32::try_from(h)?);
    let data = t
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let n = h * w;
    let mut out = vec![0f32; 3 * n];
    let clamp = |v: f32| if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    for (c, plane) in data.chunks_exact(n).enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            out[3 * i + c] = clamp(v);
        }
    }
    Ok(ImageBuffer::from_raw(wu, hu, out).expect("buffer length matches dimensions"))
}

/// Absolute, symlink-free form of `path` for identity comparisons: the file
/// itself if it exists, else its (existing) directory joined with its name.
fn canonical_or_lexical(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = fs::canonicalize(path) {
        return Some(p);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::canonicalize(parent).ok().map(|p| p.join(name))
}

/// Whether two paths name the same file. On Unix, existing files are also
/// compared by device and inode, which catches hard links and
/// case-insensitive file systems that canonicalisation alone misses.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (canonical_or_lexical(a), canonical_or_lexical(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The directory an output goes in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Checks that the output directory exists and the target is not a directory.
fn check_output_location(output: &Path) -> Result<()> {
    let o = output.display();
    let dir = parent_dir(output);
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!("cannot write {o}: {} is not a directory", dir.display()),
        Err(_) => bail!(
            "cannot write {o}: directory {} does not exist",
            dir.display()
        ),
    }
    if output.is_dir() {
        bail!("cannot write {o}: it is a directory");
    }
    Ok(())
}

/// Validates an output path before any work starts, so a typo costs a
/// second, not the minutes an effect takes before [`save_image`] would fail.
///
/// Refuses an extension [`save_image`] cannot write, a directory that does
/// not exist, a target that is itself a directory, and an output that is the
/// same file as any of `inputs` (compared as canonical paths, and on Unix by
/// inode, so `./a.png` vs `a.png` or a symlink is caught) — overwriting an
/// input would destroy the user's original.
pub fn check_output_path(output: &Path, inputs: &[&Path]) -> Result<()> {
    output_format(output)?;
    check_output_file(output, inputs)
}

/// [`check_output_path`] for any kind of file (models, videos): the
/// directory exists, the target is not a directory, and it is none of
/// `inputs`. The extension is the caller's business.
pub fn check_output_file(output: &Path, inputs: &[&Path]) -> Result<()> {
    check_output_location(output)?;
    for input in inputs {
        if same_file(output, input) {
            bail!(
                "refusing to write {}: it is the input {} (choose another output file)",
                output.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Quantises `0..=1` floats to bytes with rounding (NaN → 0).
fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// A temp file that deletes itself unless [`TempFile::persist`] renames it
/// into place, so every failure path (including a panic) cleans up.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn persist(mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A hidden, unique temp name beside `target` (same directory, hence same
/// file system, which is what makes the final rename atomic).
fn temp_path_for(target: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    parent_dir(target).join(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Writes any file atomically: `write` fills a hidden temp path beside
/// `path` (same directory, hence same file system), which is then flushed
/// and renamed over `path`. On an error (or a panic) the temp file is
/// removed and `path` keeps whatever it held before. Model files,
/// checkpoints and video outputs go through this as well as images.
pub fn write_file_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let p = path.display();
    let tmp = TempFile {
        path: temp_path_for(path),
        armed: true,
    };
    write(&tmp.path)?;
    File::open(&tmp.path)
        .and_then(|f| f.sync_all())
        .map_err(|e| anyhow!("cannot write {p}: {}", one_line(e)))?;
    tmp.persist(path)
        .map_err(|e| anyhow!("cannot write {p}: {}", one_line(e)))
}

/// Writes `rgb` (with `alpha` if given) to `path`, choosing the format from
/// the extension: PNG, JPEG (quality 95), WebP (lossless) or BMP, 8 bits per
/// channel.
///
/// Alpha is kept where the format can store it (PNG, WebP) and composited on
/// white otherwise, so a transparent input never turns into black in a JPEG.
/// An alpha plane of a different size is stretched to the image.
///
/// The extension and directory are checked before any conversion. The file
/// is written to a hidden temp file in the same directory, flushed to disk,
/// and renamed over the target: readers (and a crash) see either the old file
/// or the complete new one, never a partial image, and the temp file is
/// removed on any error. This does not check against inputs; call
/// [`check_output_path`] up front for that.
pub fn save_image(rgb: &Rgb32FImage, alpha: Option<&AlphaPlane>, path: &Path) -> Result<()> {
    let format = output_format(path)?;
    check_output_location(path)?;
    let p = path.display();
    let (w, h) = rgb.dimensions();

    let (bytes, color) = match alpha {
        Some(a) if format.keeps_alpha() => {
            let a = fit_alpha(a, w, h);
            let mut buf = Vec::with_capacity(4 * (w as usize) * (h as usize));
            for (px, &av) in rgb.as_raw().chunks_exact(3).zip(a.as_raw().iter()) {
                buf.extend(px.iter().map(|&v| to_u8(v)));
                buf.push(to_u8(av));
            }
            (buf, ExtendedColorType::Rgba8)
        }
        Some(a) => {
            let flat = composite_on(rgb, a, [1.0, 1.0, 1.0]);
            let buf = flat.as_raw().iter().map(|&v| to_u8(v)).collect();
            (buf, ExtendedColorType::Rgb8)
        }
        None => {
            let buf = rgb.as_raw().iter().map(|&v| to_u8(v)).collect();
            (buf, ExtendedColorType::Rgb8)
        }
    };

    let tmp_path = temp_path_for(path);
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .map_err(|e| anyhow!("cannot write {p}: {}", one_line(e)))?;
    let tmp = TempFile {
        path: tmp_path,
        armed: true,
    };

    let mut out = BufWriter::new(file);
    let encoded = match format {
        OutFormat::Png => PngEncoder::new(&mut out).write_image(&bytes, w, h, color),
        OutFormat::Jpeg => {
            JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).write_image(&bytes, w, h, color)
        }
        OutFormat::WebP => WebPEncoder::new_lossless(&mut out).write_image(&bytes, w, h, color),
        OutFormat::Bmp => BmpEncoder::new(&mut out).write_image(&bytes, w, h, color),
    };
    encoded.map_err(|e| anyhow!("cannot write {p}: {}", one_line(e)))?;
    let file = out
        .into_inner()
        .map_err(|e| anyhow!("cannot write {p}: {}", one_line(e.error())))?;
    // Flush to disk before the rename, or a crash could leave the new name
    // pointing at an empty file.
    file.sync_all()
        .map_err(|e| anyhow!("cannot write {p}: {}", one_line(e)))?;
    drop(file);
    tmp.persist(path)
        .map_err(|e| anyhow!("cannot write {p}: {}", one_line(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_side_dims_keep_aspect_and_min_one() {
        assert_eq!(longer_side_dims(400, 200, 100), (100, 50));
        assert_eq!(longer_side_dims(200, 400, 100), (50, 100));
        assert_eq!(longer_side_dims(1000, 1, 10), (10, 1));
        assert_eq!(longer_side_dims(33, 17, 33), (33, 17));
        assert_eq!(longer_side_dims(5, 5, 0), (1, 1));
    }

    #[test]
    fn quantisation_rounds_and_clamps() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(2.0), 255);
        assert_eq!(to_u8(f32::NAN), 0);
        assert_eq!(to_u8(128.0 / 255.0), 128);
    }
}
