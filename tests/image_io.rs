//! Still-image I/O: decoding every supported layout, tensor conversion,
//! resizing, atomic saving, and the one-line errors for bad input.
//!
//! Every image is generated in a temp dir, so these tests need no data.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::{
    GrayAlphaImage, GrayImage, ImageBuffer, Luma, LumaA, Rgb, Rgb32FImage, RgbImage, Rgba,
    RgbaImage,
};
use stylestream::image_io::{
    check_output_path, composite_on, image_to_tensor, is_image_path, load_image,
    resize_alpha_longer_side, resize_longer_side, save_image, tensor_to_image, AlphaPlane,
};

/// A deterministic RGB8 pattern that uses the whole 0..=255 range.
fn pattern_rgb8(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            ((x * 37 + y * 11) % 256) as u8,
            ((x * 5 + y * 53 + 7) % 256) as u8,
            ((x * y * 3 + 200) % 256) as u8,
        ])
    })
}

fn pattern_f32(w: u32, h: u32) -> Rgb32FImage {
    let src = pattern_rgb8(w, h);
    Rgb32FImage::from_fn(w, h, |x, y| {
        let p = src.get_pixel(x, y);
        Rgb([
            p[0] as f32 / 255.0,
            p[1] as f32 / 255.0,
            p[2] as f32 / 255.0,
        ])
    })
}

/// Names of everything in `dir`, sorted, to spot leftover temp files.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts an error is one line and mentions `path`; returns its text.
fn err_text(result: anyhow::Result<impl std::fmt::Debug>, path: &Path) -> String {
    let err = result.expect_err("expected an error");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&path.display().to_string()),
        "error should name {}: {msg}",
        path.display()
    );
    assert!(!msg.contains('\n'), "error should be one line: {msg:?}");
    msg
}

fn assert_close(a: f32, b: f32, tol: f32) {
    assert!((a - b).abs() <= tol, "{a} vs {b} (tolerance {tol})");
}

#[test]
fn rgb8_png_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let src = pattern_rgb8(33, 17);
    let input = dir.path().join("in.png");
    src.save(&input).unwrap();

    let loaded = load_image(&input).unwrap();
    assert!(loaded.alpha.is_none());
    assert_eq!(loaded.rgb.dimensions(), (33, 17));
    for (a, b) in loaded.rgb.pixels().zip(src.pixels()) {
        for c in 0..3 {
            assert_close(a[c], b[c] as f32 / 255.0, 1e-6);
        }
    }

    let output = dir.path().join("out.png");
    save_image(&loaded.rgb, None, &output).unwrap();
    let back = image::open(&output).unwrap();
    assert_eq!(back.color(), image::ColorType::Rgb8);
    assert_eq!(back.to_rgb8(), src, "8-bit values must survive exactly");
    assert_eq!(listing(dir.path()), ["in.png", "out.png"]);
}

#[test]
fn sixteen_bit_png_is_scaled_to_unit_range() {
    let dir = tempfile::tempdir().unwrap();
    let values = [0u16, 1, 1234, 32768, 65534, 65535];
    let rgb16: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(6, 2, |x, y| {
        Rgb([
            values[x as usize],
            65535 - values[x as usize],
            300 * y as u16,
        ])
    });
    let path = dir.path().join("rgb16.png");
    rgb16.save(&path).unwrap();
    let loaded = load_image(&path).unwrap();
    assert!(loaded.alpha.is_none());
    for (a, b) in loaded.rgb.pixels().zip(rgb16.pixels()) {
        for c in 0..3 {
            assert_close(a[c], b[c] as f32 / 65535.0, 1e-6);
        }
    }

    // 16-bit gray: expanded to three equal channels, same scaling.
    let l16: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_fn(6, 1, |x, _| Luma([values[x as usize]]));
    let path = dir.path().join("l16.png");
    l16.save(&path).unwrap();
    let loaded = load_image(&path).unwrap();
    for (x, px) in loaded.rgb.pixels().enumerate() {
        let want = values[x] as f32 / 65535.0;
        assert_eq!(px[0], px[1]);
        assert_eq!(px[1], px[2]);
        assert_close(px[0], want, 1e-6);
    }

    // 16-bit RGBA: alpha split off and scaled too.
    let rgba16: ImageBuffer<Rgba<u16>, Vec<u16>> =
        ImageBuffer::from_fn(6, 1, |x, _| Rgba([1000, 2000, 3000, values[x as usize]]));
    let path = dir.path().join("rgba16.png");
    rgba16.save(&path).unwrap();
    let loaded = load_image(&path).unwrap();
    let alpha = loaded.alpha.expect("16-bit alpha");
    for (x, a) in alpha.pixels().enumerate() {
        assert_close(a[0], values[x] as f32 / 65535.0, 1e-6);
    }
    assert_close(loaded.rgb.get_pixel(0, 0)[2], 3000.0 / 65535.0, 1e-6);
}

#[test]
fn grayscale_and_alpha_layouts_load() {
    let dir = tempfile::tempdir().unwrap();

    let gray = GrayImage::from_fn(5, 3, |x, y| Luma([(x * 50 + y) as u8]));
    let path = dir.path().join("gray.png");
    gray.save(&path).unwrap();
    let loaded = load_image(&path).unwrap();
    assert!(loaded.alpha.is_none());
    for (a, g) in loaded.rgb.pixels().zip(gray.pixels()) {
        let v = g[0] as f32 / 255.0;
        assert_eq!(a[0], a[1]);
        assert_eq!(a[1], a[2]);
        assert_close(a[0], v, 1e-6);
    }

    let la = GrayAlphaImage::from_fn(5, 3, |x, y| LumaA([(x * 50) as u8, (y * 100) as u8]));
    let path = dir.path().join("la.png");
    la.save(&path).unwrap();
    let loaded = load_image(&path).unwrap();
    let alpha = loaded.alpha.expect("gray+alpha has alpha");
    assert_eq!(alpha.dimensions(), (5, 3));
    for ((a, rgb), src) in alpha.pixels().zip(loaded.rgb.pixels()).zip(la.pixels()) {
        assert_close(a[0], src[1] as f32 / 255.0, 1e-6);
        let v = src[0] as f32 / 255.0;
        assert_eq!(rgb[0], rgb[2]);
        assert_close(rgb[0], v, 1e-6); // not premultiplied
    }

    // Colour under fully transparent pixels is kept as stored.
    let rgba = RgbaImage::from_fn(4, 4, |x, y| {
        Rgba([200, (x * 60) as u8, (y * 60) as u8, (x * 80) as u8])
    });
    let path = dir.path().join("rgba.png");
    rgba.save(&path).unwrap();
    let loaded = load_image(&path).unwrap();
    let alpha = loaded.alpha.expect("rgba has alpha");
    for ((a, rgb), src) in alpha.pixels().zip(loaded.rgb.pixels()).zip(rgba.pixels()) {
        assert_close(a[0], src[3] as f32 / 255.0, 1e-6);
        for c in 0..3 {
            assert_close(rgb[c], src[c] as f32 / 255.0, 1e-6);
        }
    }

    // An alpha channel that is opaque everywhere carries nothing: dropped.
    let opaque = RgbaImage::from_pixel(3, 3, Rgba([10, 20, 30, 255]));
    let path = dir.path().join("opaque.png");
    opaque.save(&path).unwrap();
    assert!(load_image(&path).unwrap().alpha.is_none());
}

#[test]
fn jpeg_webp_bmp_load_and_format_comes_from_content() {
    let dir = tempfile::tempdir().unwrap();
    let src = RgbImage::from_fn(40, 24, |x, _| Rgb([if x < 20 { 220 } else { 30 }, 120, 60]));

    let jpg = dir.path().join("photo.jpg");
    src.save(&jpg).unwrap();
    let loaded = load_image(&jpg).unwrap();
    assert_eq!(loaded.rgb.dimensions(), (40, 24));
    let p = loaded.rgb.get_pixel(5, 12);
    assert_close(p[0], 220.0 / 255.0, 0.05);
    assert_close(p[1], 120.0 / 255.0, 0.05);

    // A PNG with a .jpg name still loads: the content decides.
    let misnamed = dir.path().join("really_png.jpg");
    image::DynamicImage::ImageRgb8(src.clone())
        .save_with_format(&misnamed, image::ImageFormat::Png)
        .unwrap();
    let loaded = load_image(&misnamed).unwrap();
    assert_eq!(loaded.rgb.get_pixel(30, 3)[0], 30.0 / 255.0);

    for name in ["lossless.webp", "plain.bmp"] {
        let path = dir.path().join(name);
        src.save(&path).unwrap();
        let loaded = load_image(&path).unwrap();
        assert_eq!(loaded.rgb.dimensions(), (40, 24), "{name}");
        assert_eq!(loaded.rgb.get_pixel(30, 3)[0], 30.0 / 255.0, "{name}");
    }
}

#[test]
fn tensor_round_trip_keeps_odd_shapes_exact() {
    let img = pattern_f32(33, 17);
    let t = image_to_tensor(&img, &Device::Cpu).unwrap();
    assert_eq!(t.dims(), &[1, 3, 17, 33]);
    assert_eq!(t.dtype(), candle_core::DType::F32);
    // Planar layout: channel c of pixel (x, y) is t[0, c, y, x].
    let planes = t.squeeze(0).unwrap().to_vec3::<f32>().unwrap();
    for (x, y, px) in img.enumerate_pixels() {
        for c in 0..3 {
            assert_eq!(planes[c][y as usize][x as usize], px[c]);
        }
    }
    assert_eq!(tensor_to_image(&t).unwrap(), img);
    assert_eq!(tensor_to_image(&t.squeeze(0).unwrap()).unwrap(), img);

    // Out-of-range values are clamped, whatever the dtype.
    let wild = Tensor::new(
        &[[[-0.5f32, 0.25]], [[1.5, 1.0]], [[0.0, 2.0]]],
        &Device::Cpu,
    )
    .unwrap();
    let out = tensor_to_image(&wild.to_dtype(candle_core::DType::F64).unwrap()).unwrap();
    assert_eq!(out.dimensions(), (2, 1));
    assert_eq!(out.get_pixel(0, 0).0, [0.0, 1.0, 0.0]);
    assert_eq!(out.get_pixel(1, 0).0, [0.25, 1.0, 1.0]);

    for bad in [
        vec![2, 3, 4, 4],
        vec![1, 4, 4, 4],
        vec![4, 4],
        vec![1, 3, 4, 4, 1],
    ] {
        let t = Tensor::zeros(bad.as_slice(), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(
            tensor_to_image(&t).is_err(),
            "shape {bad:?} should be refused"
        );
    }
}

#[test]
fn resize_keeps_aspect_ratio() {
    let landscape = pattern_f32(400, 200);
    assert_eq!(resize_longer_side(&landscape, 100).dimensions(), (100, 50));
    assert_eq!(resize_longer_side(&landscape, 800).dimensions(), (800, 400));
    let portrait = pattern_f32(30, 90);
    assert_eq!(resize_longer_side(&portrait, 45).dimensions(), (15, 45));
    let sliver = pattern_f32(500, 2);
    assert_eq!(resize_longer_side(&sliver, 50).dimensions(), (50, 1));
    // Same size: untouched.
    assert_eq!(resize_longer_side(&portrait, 90), portrait);
    // Values stay in range despite Lanczos overshoot.
    let small = resize_longer_side(&landscape, 37);
    assert!(small.as_raw().iter().all(|v| (0.0..=1.0).contains(v)));

    let alpha: AlphaPlane = ImageBuffer::from_pixel(33, 17, Luma([0.5]));
    let rgb = pattern_f32(33, 17);
    for n in [16, 20, 64, 99] {
        assert_eq!(
            resize_alpha_longer_side(&alpha, n).dimensions(),
            resize_longer_side(&rgb, n).dimensions()
        );
    }
}

#[test]
fn composite_blends_over_background() {
    let rgb = Rgb32FImage::from_pixel(2, 1, Rgb([0.0, 0.5, 1.0]));
    let alpha: AlphaPlane = ImageBuffer::from_raw(2, 1, vec![1.0, 0.25]).unwrap();
    let out = composite_on(&rgb, &alpha, [1.0, 1.0, 1.0]);
    assert_eq!(out.get_pixel(0, 0).0, [0.0, 0.5, 1.0]);
    let p = out.get_pixel(1, 0);
    assert_close(p[0], 0.75, 1e-6);
    assert_close(p[1], 0.875, 1e-6);
    assert_close(p[2], 1.0, 1e-6);
}

#[test]
fn save_keeps_alpha_where_supported_and_composites_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = pattern_f32(9, 7);
    let alpha: AlphaPlane = ImageBuffer::from_fn(9, 7, |x, _| Luma([x as f32 / 8.0]));

    for name in ["a.png", "a.webp"] {
        let path = dir.path().join(name);
        save_image(&rgb, Some(&alpha), &path).unwrap();
        let back = load_image(&path).unwrap();
        assert_eq!(back.rgb, rgb, "{name}: lossless colour");
        let a = back.alpha.unwrap_or_else(|| panic!("{name} keeps alpha"));
        for (got, want) in a.pixels().zip(alpha.pixels()) {
            assert_close(got[0], want[0], 0.5 / 255.0 + 1e-6);
        }
    }

    // BMP: composited on white, so the transparent column is white.
    let path = dir.path().join("a.bmp");
    save_image(&rgb, Some(&alpha), &path).unwrap();
    let back = load_image(&path).unwrap();
    assert!(back.alpha.is_none());
    assert_eq!(back.rgb.get_pixel(0, 3).0, [1.0, 1.0, 1.0]);
    assert_eq!(back.rgb.get_pixel(8, 3), rgb.get_pixel(8, 3));

    let path = dir.path().join("a.JPEG");
    save_image(&rgb, Some(&alpha), &path).unwrap();
    let back = load_image(&path).unwrap();
    assert!(back.alpha.is_none());
    assert_eq!(back.rgb.dimensions(), (9, 7));

    // Overwriting an earlier output is fine (it is not an input).
    save_image(&rgb, None, &dir.path().join("a.png")).unwrap();
    assert!(load_image(&dir.path().join("a.png"))
        .unwrap()
        .alpha
        .is_none());

    assert_eq!(listing(dir.path()), ["a.JPEG", "a.bmp", "a.png", "a.webp"]);
}

#[test]
fn bad_inputs_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("nope.png");
    let msg = err_text(load_image(&missing), &missing);
    assert!(msg.contains("cannot read"), "{msg}");

    let msg = err_text(load_image(dir.path()), dir.path());
    assert!(msg.contains("directory"), "{msg}");

    let empty = dir.path().join("empty.png");
    fs::write(&empty, b"").unwrap();
    let msg = err_text(load_image(&empty), &empty);
    assert!(msg.contains("empty"), "{msg}");

    let text = dir.path().join("notes.png");
    fs::write(&text, "this is not a picture\n").unwrap();
    let msg = err_text(load_image(&text), &text);
    assert!(msg.contains("not an image"), "{msg}");

    let full = dir.path().join("full.png");
    pattern_rgb8(64, 64).save(&full).unwrap();
    let bytes = fs::read(&full).unwrap();
    let truncated = dir.path().join("truncated.png");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let msg = err_text(load_image(&truncated), &truncated);
    assert!(msg.contains("corrupt or truncated"), "{msg}");

    // A header-only stub is truncated too, not "not an image".
    let stub = dir.path().join("stub.png");
    fs::write(&stub, &bytes[..20]).unwrap();
    let msg = err_text(load_image(&stub), &stub);
    assert!(msg.contains("corrupt or truncated"), "{msg}");

    // Absurd sizes are refused from the header, before decoding.
    let huge = dir.path().join("huge.png");
    GrayImage::new(20000, 1).save(&huge).unwrap();
    let msg = err_text(load_image(&huge), &huge);
    assert!(msg.contains("16384"), "{msg}");
}

#[test]
fn output_path_checks_run_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.png");
    pattern_rgb8(4, 4).save(&input).unwrap();

    let tiff = dir.path().join("out.tiff");
    let msg = err_text(check_output_path(&tiff, &[&input]), &tiff);
    assert!(
        msg.contains(".png") && msg.contains(".jpg") && msg.contains(".webp"),
        "{msg}"
    );
    let bare = dir.path().join("out");
    err_text(check_output_path(&bare, &[&input]), &bare);

    // The same file, however it is spelled.
    err_text(check_output_path(&input, &[&input]), &input);
    let dotted = dir.path().join(".").join("in.png");
    err_text(check_output_path(&dotted, &[&input]), &dotted);
    fs::create_dir(dir.path().join("sub")).unwrap();
    let roundabout = dir.path().join("sub").join("..").join("in.png");
    err_text(
        check_output_path(&roundabout, &[Path::new("/nonexistent/x.png"), &input]),
        &roundabout,
    );

    let missing_dir = dir.path().join("no_such_dir").join("out.png");
    let msg = err_text(check_output_path(&missing_dir, &[&input]), &missing_dir);
    assert!(msg.contains("does not exist"), "{msg}");

    check_output_path(&dir.path().join("out.PNG"), &[&input]).unwrap();
    check_output_path(&dir.path().join("out.jpeg"), &[&input]).unwrap();
    assert_eq!(listing(dir.path()), ["in.png", "sub"]);
}

/// `./x.png` vs `x.png`-style spellings relative to the working directory:
/// built by climbing from the current directory to the root and down into
/// the temp dir, so no file has to be created in the checkout.
#[cfg(unix)]
#[test]
fn relative_spelling_of_an_input_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.png");
    pattern_rgb8(2, 2).save(&input).unwrap();

    let cwd = std::env::current_dir().unwrap();
    let mut relative = PathBuf::new();
    for _ in 1..cwd.components().count() {
        relative.push("..");
    }
    relative.push(input.strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    let dotted = PathBuf::from(".").join(&relative);

    err_text(check_output_path(&relative, &[&input]), &relative);
    err_text(check_output_path(&dotted, &[&relative]), &dotted);
    err_text(check_output_path(&input, &[&dotted]), &input);
}

#[test]
fn failed_saves_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let rgb = pattern_f32(4, 4);

    let missing_dir = dir.path().join("absent");
    let target = missing_dir.join("out.png");
    err_text(save_image(&rgb, None, &target), &target);
    assert!(!missing_dir.exists());

    let gif = dir.path().join("out.gif");
    let msg = err_text(save_image(&rgb, None, &gif), &gif);
    assert!(msg.contains(".png"), "{msg}");

    // The WebP encoder rejects widths over 16384 after the temp file exists:
    // it must be cleaned up and no output created.
    let wide = Rgb32FImage::new(16385, 1);
    let webp = dir.path().join("wide.webp");
    err_text(save_image(&wide, None, &webp), &webp);

    // A failed overwrite leaves the previous output intact.
    let keep = dir.path().join("keep.webp");
    save_image(&rgb, None, &keep).unwrap();
    let before = fs::read(&keep).unwrap();
    assert!(save_image(&wide, None, &keep).is_err());
    assert_eq!(fs::read(&keep).unwrap(), before);

    assert_eq!(listing(dir.path()), ["keep.webp"]);
}

#[test]
fn image_extensions_are_recognised() {
    for p in ["a.png", "b.JPG", "c.jpeg", "d.webp", "e.Bmp", "dir/f.png"] {
        assert!(is_image_path(Path::new(p)), "{p}");
    }
    for p in ["a.txt", "b", "c.png.bak", ".png", "d.gif"] {
        assert!(!is_image_path(Path::new(p)), "{p}");
    }
}
