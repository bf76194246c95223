//! The video pipeline end to end: small clips generated with the `ffmpeg`
//! command (with audio, odd sizes, variable frame rate, rotation, damage)
//! go through `video::convert` with fast test effects, and the outputs are
//! checked with `ffprobe`: frame count, timestamps, duration, rotation,
//! audio packets (checksums), and the error paths (clear message, no
//! output, no temporary file left behind).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use candle_core::{Device, Tensor};
use stylestream::effects::Effect;
use stylestream::video::{self, Options};

use common::{assert_clean_failure, assert_success, stderr, stylestream};

// ---------------------------------------------------------------- effects

/// Returns the frame unchanged.
struct Identity;

impl Effect for Identity {
    fn describe(&self) -> String {
        "identity".into()
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        Ok(frame.clone())
    }
}

/// `1 - frame`, batched; records the batch sizes it saw.
struct Invert {
    batches: Arc<Mutex<Vec<usize>>>,
    preferred: usize,
}

impl Invert {
    fn new(preferred: usize) -> (Self, Arc<Mutex<Vec<usize>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        (
            Self {
                batches: batches.clone(),
                preferred,
            },
            batches,
        )
    }
}

impl Effect for Invert {
    fn describe(&self) -> String {
        "invert".into()
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        self.apply_batch(frame)
    }
    fn apply_batch(&mut self, frames: &Tensor) -> Result<Tensor> {
        self.batches.lock().unwrap().push(frames.dim(0)?);
        Ok(frames.affine(-1.0, 1.0)?)
    }
    fn preferred_batch(&self) -> usize {
        self.preferred
    }
}

/// Fails (or sets a cancel flag) at frame `at`.
struct StopAt {
    at: usize,
    seen: usize,
    cancel: Option<Arc<AtomicBool>>,
}

impl Effect for StopAt {
    fn describe(&self) -> String {
        "stop".into()
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        self.seen += 1;
        if self.seen == self.at {
            match &self.cancel {
                Some(c) => c.store(true, Ordering::SeqCst),
                None => anyhow::bail!("the test effect failed on purpose"),
            }
        }
        Ok(frame.clone())
    }
}

/// Returns a frame one pixel smaller, as a network rounding an odd size would.
struct Shrink;

impl Effect for Shrink {
    fn describe(&self) -> String {
        "shrink".into()
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = frame.dims4()?;
        Ok(frame.narrow(2, 0, h - 1)?.narrow(3, 0, w - 1)?)
    }
}

fn identity() -> Vec<Box<dyn Effect>> {
    vec![Box::new(Identity)]
}

// ---------------------------------------------------------------- helpers

fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd} (install FFmpeg: scripts/setup.sh): {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `ffmpeg -v error -y ARGS`.
fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-v", "error", "-y"];
    all.extend_from_slice(args);
    run("ffmpeg", &all);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A test clip: testsrc2 at `size`, 25 fps, `secs` seconds, with a sine
/// tone as AAC audio when `audio`.
fn clip(dir: &Path, name: &str, size: &str, secs: &str, audio: bool, codec: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let src = format!("testsrc2=size={size}:rate=25");
    let mut args = vec!["-f", "lavfi", "-i", &src];
    if audio {
        args.extend_from_slice(&["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    args.extend_from_slice(&["-t", secs]);
    args.extend_from_slice(codec);
    if audio {
        args.extend_from_slice(&["-c:a", "aac", "-shortest"]);
    }
    args.push(s(&path));
    ffmpeg(&args);
    path
}

const H264: &[&str] = &[
    "-c:v",
    "libx264",
    "-pix_fmt",
    "yuv420p",
    "-preset",
    "ultrafast",
];

/// `ffprobe` entries of a stream as `key=value` maps, one per row.
fn probe(path: &Path, select: &str, section: &str, entries: &str) -> Vec<Vec<(String, String)>> {
    let show = format!("{section}={entries}");
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            select,
            "-show_entries",
            &show,
            "-of",
            "compact=p=0:nk=0",
            s(path),
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("side_data"))
        .map(|l| {
            l.split('|')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn field<'a>(row: &'a [(String, String)], key: &str) -> &'a str {
    row.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {row:?}"))
}

/// Presentation times (seconds) of every video frame, in output order.
fn frame_times(path: &Path) -> Vec<f64> {
    probe(path, "v:0", "frame", "best_effort_timestamp_time")
        .iter()
        .map(|r| field(r, "best_effort_timestamp_time").parse().unwrap())
        .collect()
}

/// Width, height, rotation (0 if none) of the first video stream.
fn video_geometry(path: &Path) -> (u32, u32, i32) {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height:stream_side_data=rotation",
            "-of",
            "default=nw=1",
            s(path),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim().to_string())
    };
    (
        get("width").unwrap().parse().unwrap(),
        get("height").unwrap().parse().unwrap(),
        get("rotation").map(|r| r.parse().unwrap()).unwrap_or(0),
    )
}

/// Codec name of each stream of `kind` (`a`, `v`, `s`).
fn codecs(path: &Path, kind: &str) -> Vec<String> {
    probe(path, kind, "stream", "codec_name")
        .iter()
        .map(|r| field(r, "codec_name").to_string())
        .collect()
}

/// Container duration in seconds.
fn duration(path: &Path) -> f64 {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=nw=1:nk=1",
            s(path),
        ],
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Size and MD5 of every packet of the first audio stream.
fn audio_packets(path: &Path) -> Vec<(String, String)> {
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            s(path),
            "-map",
            "0:a:0",
            "-c",
            "copy",
            "-f",
            "framemd5",
            "-",
        ],
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let cols: Vec<&str> = l.split(',').map(str::trim).collect();
            (cols[4].to_string(), cols[5].to_string())
        })
        .collect()
}

/// Files in `dir` whose names start with a dot (temporary outputs).
fn hidden_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn options() -> Options {
    Options::default()
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "frame counts differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "frame {i}: {x} vs {y}");
    }
}

// ---------------------------------------------------------------- tests

#[test]
fn mp4_keeps_frames_timestamps_duration_and_audio_packets() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "96x64", "2", true, H264);
    let output = dir.path().join("out.mp4");
    let summary = video::convert(&input, &output, &options(), &mut identity()).unwrap();

    assert_eq!(summary.frames, 50);
    assert_eq!(summary.audio_copied, 1);
    assert_close(&frame_times(&output), &frame_times(&input), 1e-3);
    assert!((duration(&output) - duration(&input)).abs() < 0.05);
    assert_eq!(codecs(&output, "v"), ["h264"]);
    let (a, b) = (audio_packets(&input), audio_packets(&output));
    assert!(!a.is_empty());
    assert_eq!(a, b, "audio must be copied packet for packet");
    assert!(hidden_files(dir.path()).is_empty());
    assert!(summary.lines()[0].contains("50 frames"));
}

#[test]
fn odd_sizes_are_padded_and_the_size_flags_work() {
    let dir = tempfile::tempdir().unwrap();
    // FFV1 in 4:4:4 stores odd sizes losslessly.
    let odd = ["-vf", "format=yuv444p,crop=65:47:0:0", "-c:v", "ffv1"];
    let input = clip(dir.path(), "odd.mkv", "66x48", "1", false, &odd);
    assert_eq!(video_geometry(&input), (65, 47, 0));
    let output = dir.path().join("odd.mp4");
    let summary = video::convert(&input, &output, &options(), &mut identity()).unwrap();
    assert_eq!(summary.frames, 25);
    assert_eq!(video_geometry(&output), (66, 48, 0));
    assert!(
        summary.notes.iter().any(|n| n.contains("padded to 66x48")),
        "{:?}",
        summary.notes
    );

    // --size: the longer side; the output is at the processing size.
    let small = dir.path().join("small.mkv");
    let opts = Options {
        size: Some(32),
        ..options()
    };
    let summary = video::convert(&input, &small, &opts, &mut identity()).unwrap();
    assert_eq!((summary.width, summary.height), (32, 23));
    assert_eq!(video_geometry(&small), (32, 24, 0));

    // --keep-size: processed small, written at the input's size.
    let kept = dir.path().join("kept.mkv");
    let opts = Options {
        size: Some(32),
        keep_size: true,
        ..options()
    };
    video::convert(&input, &kept, &opts, &mut identity()).unwrap();
    assert_eq!(video_geometry(&kept), (66, 48, 0));

    // An effect that returns a slightly smaller frame is scaled back.
    let shrunk = dir.path().join("shrunk.mp4");
    let mut effects: Vec<Box<dyn Effect>> = vec![Box::new(Shrink)];
    video::convert(&input, &shrunk, &options(), &mut effects).unwrap();
    assert_eq!(video_geometry(&shrunk), (66, 48, 0));
}

#[test]
fn variable_frame_rate_timestamps_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("vfr.mp4");
    // Gaps that grow frame by frame: no constant rate fits.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25",
        "-t",
        "1",
        "-vf",
        "setpts=(N+N*N/20)/25/TB",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        s(&input),
    ]);
    let times = frame_times(&input);
    assert!(times.len() > 10);
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.last().unwrap() > &(2.0 * gaps[0]),
        "the test clip is not VFR: {gaps:?}"
    );

    for name in ["vfr-out.mp4", "vfr-out.mkv"] {
        let output = dir.path().join(name);
        video::convert(&input, &output, &options(), &mut identity()).unwrap();
        // Matroska stores milliseconds.
        assert_close(&frame_times(&output), &times, 1.5e-3);
        assert!(
            (duration(&output) - duration(&input)).abs() < 0.05,
            "{name}"
        );
    }
}

#[test]
fn rotation_metadata_is_kept_and_frames_are_processed_upright() {
    let dir = tempfile::tempdir().unwrap();
    let plain = clip(dir.path(), "plain.mp4", "96x64", "1", false, H264);
    let rotated = dir.path().join("rotated.mp4");
    ffmpeg(&[
        "-i",
        s(&plain),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        s(&rotated),
    ]);
    let (w, h, rot) = video_geometry(&rotated);
    assert_eq!((w, h), (96, 64));
    assert_ne!(rot, 0, "the test clip has no rotation");

    let output = dir.path().join("out.mp4");
    let summary = video::convert(&rotated, &output, &options(), &mut identity()).unwrap();
    // Upright, the frames are 64 wide and 96 tall.
    assert_eq!((summary.width, summary.height), (64, 96));
    assert_eq!(video_geometry(&output), (96, 64, rot));

    // PNG frames cannot carry the rotation: they are written upright.
    let frames = dir.path().join("frames/");
    video::convert(&rotated, &frames, &options(), &mut identity()).unwrap();
    let img = image::open(frames.join("frame_000001.png")).unwrap();
    assert_eq!((img.width(), img.height()), (64, 96));
}

#[test]
fn webm_reencodes_audio_as_opus_and_png_folders_hold_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "64x48", "1", true, H264);
    let output = dir.path().join("out.webm");
    let opts = Options {
        encode: video::EncodeOptions {
            preset: Some("ultrafast".into()),
            ..Default::default()
        },
        ..options()
    };
    let summary = video::convert(&input, &output, &opts, &mut identity()).unwrap();
    assert_eq!(summary.audio_reencoded, 1);
    assert_eq!(codecs(&output, "v"), ["vp9"]);
    assert_eq!(codecs(&output, "a"), ["opus"]);
    assert_eq!(frame_times(&output).len(), 25);
    assert!((duration(&output) - duration(&input)).abs() < 0.1);

    // An existing folder gets numbered PNGs, one per frame.
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    let summary = video::convert(&input, &frames, &options(), &mut identity()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&frames)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 25);
    assert_eq!(names[0], "frame_000001.png");
    assert_eq!(names[24], "frame_000025.png");
    assert!(summary.notes.iter().any(|n| n.contains("not written")));
    assert!(hidden_files(dir.path()).is_empty());
}

#[test]
fn identity_is_faithful_and_strength_blends_batched_effects() {
    let dir = tempfile::tempdir().unwrap();
    // Lossless in, PNG frames out: only the colour conversions differ.
    let input = clip(
        dir.path(),
        "in.mkv",
        "64x48",
        "0.4",
        false,
        &["-c:v", "ffv1"],
    );
    let reference = dir.path().join("ref");
    std::fs::create_dir(&reference).unwrap();
    ffmpeg(&["-i", s(&input), &format!("{}/f%06d.png", s(&reference))]);
    let refs: Vec<image::RgbImage> = (1..=10)
        .map(|i| {
            image::open(reference.join(format!("f{i:06}.png")))
                .unwrap()
                .to_rgb8()
        })
        .collect();

    let mean_diff = |dir: &Path, invert: bool| {
        let mut total = 0.0;
        let mut n = 0.0;
        for (i, r) in refs.iter().enumerate() {
            let img = image::open(dir.join(format!("frame_{:06}.png", i + 1)))
                .unwrap()
                .to_rgb8();
            for (a, b) in img.as_raw().iter().zip(r.as_raw()) {
                let b = if invert { 255 - *b } else { *b };
                total += (*a as f64 - b as f64).abs();
                n += 1.0;
            }
        }
        total / n
    };

    let same = dir.path().join("same/");
    video::convert(&input, &same, &options(), &mut identity()).unwrap();
    let d = mean_diff(&same, false);
    assert!(
        d < 2.0,
        "identity changed the pixels by {d} levels on average"
    );

    // Invert at strength 1, batched by 4 (10 frames: 4 + 4 + 2, or smaller
    // batches when decoding lags).
    let inverted = dir.path().join("inverted/");
    let (invert, _) = Invert::new(4);
    let mut effects: Vec<Box<dyn Effect>> = vec![Box::new(invert)];
    video::convert(&input, &inverted, &options(), &mut effects).unwrap();
    let d = mean_diff(&inverted, true);
    assert!(d < 2.0, "invert is off by {d} levels");

    // Strength 0: the original, whatever the effect.
    let none = dir.path().join("none/");
    let opts = Options {
        strength: 0.0,
        ..options()
    };
    video::convert(&input, &none, &opts, &mut effects).unwrap();
    assert!(mean_diff(&none, false) < 2.0);
}

#[test]
fn batches_never_exceed_the_preferred_size_and_cover_every_frame() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "32x32", "1", true, H264);
    let output = dir.path().join("out.mkv");
    let (invert, batches) = Invert::new(4);
    let mut effects: Vec<Box<dyn Effect>> = vec![Box::new(invert)];
    let summary = video::convert(&input, &output, &options(), &mut effects).unwrap();
    assert_eq!(summary.frames, 25);
    assert_eq!(frame_times(&output).len(), 25);
    assert_eq!(audio_packets(&input), audio_packets(&output));
    let batches = batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 25, "{batches:?}");
    assert!(batches.iter().all(|&b| (1..=4).contains(&b)), "{batches:?}");
}

#[test]
fn damaged_and_truncated_inputs() {
    let dir = tempfile::tempdir().unwrap();
    // Damage in the middle of an MPEG-TS file: skipped, counted, converted.
    let ts = clip(
        dir.path(),
        "in.ts",
        "128x96",
        "4",
        false,
        &["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10"],
    );
    let mut bytes = std::fs::read(&ts).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 3000] {
        *b = 0x5a;
    }
    let damaged = dir.path().join("damaged.ts");
    std::fs::write(&damaged, &bytes).unwrap();
    let output = dir.path().join("damaged-out.mp4");
    let summary = video::convert(&damaged, &output, &options(), &mut identity()).unwrap();
    assert!(summary.frames > 50, "{} frames", summary.frames);
    assert!(
        summary.source.corrupt_packets + summary.source.damaged_frames > 0,
        "the damage went unnoticed: {:?}",
        summary.source
    );
    assert!(summary.lines().iter().any(|l| l.contains("damaged input")));

    // An MP4 cut in half with its index up front: the frames before the cut.
    let fast = clip(
        dir.path(),
        "fast.mp4",
        "128x96",
        "2",
        true,
        &[
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ],
    );
    let bytes = std::fs::read(&fast).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let output = dir.path().join("cut-out.mp4");
    let summary = video::convert(&cut, &output, &options(), &mut identity()).unwrap();
    assert!(
        summary.frames > 5 && summary.frames < 50,
        "{} frames",
        summary.frames
    );
    assert!(
        summary
            .lines()
            .iter()
            .any(|l| l.contains("of the 50 frames its header lists")),
        "{:?}",
        summary.lines()
    );

    // An MP4 cut before its index: nothing to decode, a clear error.
    let plain = clip(dir.path(), "plain.mp4", "64x48", "1", false, H264);
    let bytes = std::fs::read(&plain).unwrap();
    let headless = dir.path().join("truncated.mp4");
    std::fs::write(&headless, &bytes[..bytes.len() / 2]).unwrap();
    let output = dir.path().join("never.mp4");
    let err = video::convert(&headless, &output, &options(), &mut identity()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("truncated.mp4"), "{msg}");
    assert!(!output.exists());
}

#[test]
fn bad_inputs_and_outputs_are_clear_errors_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = clip(dir.path(), "good.mp4", "32x32", "0.2", false, H264);
    let out = dir.path().join("out.mp4");
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("text.mp4");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    let audio = dir.path().join("audio.m4a");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine",
        "-t",
        "0.5",
        "-c:a",
        "aac",
        s(&audio),
    ]);

    let cases: Vec<(PathBuf, PathBuf, &str)> = vec![
        (dir.path().join("missing.mp4"), out.clone(), "missing.mp4"),
        (empty.clone(), out.clone(), "empty"),
        (text.clone(), out.clone(), "text.mp4"),
        (audio.clone(), out.clone(), "no video stream"),
        (good.clone(), good.clone(), "is the input"),
        (good.clone(), dir.path().join("out.xyz"), "format"),
        (good.clone(), dir.path().join("out.png"), "still-image"),
        (
            good.clone(),
            dir.path().join("nodir/out.mp4"),
            "does not exist",
        ),
    ];
    for (input, output, expect) in cases {
        let err = video::convert(&input, &output, &options(), &mut identity()).expect_err(
            &format!("{} -> {} should fail", input.display(), output.display()),
        );
        let msg = format!("{err:#}");
        assert!(msg.contains(expect), "expected '{expect}' in: {msg}");
        if output != good {
            assert!(!output.exists(), "{} was written", output.display());
        }
    }
    let bad_codec = Options {
        encode: video::EncodeOptions {
            codec: Some("no-such-encoder".into()),
            ..Default::default()
        },
        ..options()
    };
    let err = video::convert(&good, &out, &bad_codec, &mut identity()).unwrap_err();
    assert!(format!("{err:#}").contains("no-such-encoder"));
    let bad_preset = Options {
        encode: video::EncodeOptions {
            preset: Some("warp-speed".into()),
            ..Default::default()
        },
        ..options()
    };
    let err = video::convert(&good, &out, &bad_preset, &mut identity()).unwrap_err();
    assert!(format!("{err:#}").contains("libx264"), "{err:#}");
    assert!(!out.exists());
    assert!(
        hidden_files(dir.path()).is_empty(),
        "{:?}",
        hidden_files(dir.path())
    );
}

/// Through the binary: an input whose video codec FFmpeg cannot decode
/// (an AVI with an unknown FourCC) and output codecs that do not exist or
/// that the container refuses are one-line errors naming the file and the
/// reason, exit status 1, no panic, nothing written.
#[test]
fn unsupported_codecs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // MPEG-4 video stored under a FourCC no decoder claims (-strict -1
    // lets the muxer write a tag it does not know).
    let unknown_codec = &["-c:v", "mpeg4", "-vtag", "ZZZZ", "-strict", "-1"];
    let unknown = clip(
        dir.path(),
        "fourcc.avi",
        "64x48",
        "0.2",
        false,
        unknown_codec,
    );
    let good = clip(dir.path(), "good.mp4", "32x32", "0.2", false, H264);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/starry_night_fast.safetensors");
    let stylize = |input: &Path, output: &Path, extra: &[&str]| -> String {
        let mut args = vec!["stylize", "--input", s(input), "--output", s(output)];
        args.extend(["--model", s(&model), "--device", "cpu"]);
        args.extend(extra);
        let out = stylestream(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!output.exists(), "{} was written", output.display());
        err
    };

    let err = stylize(&unknown, &dir.path().join("out.mp4"), &[]);
    assert!(
        err.contains("fourcc.avi")
            && err.contains("codec is not supported")
            && err.contains("ZZZZ"),
        "{err}"
    );

    let out = dir.path().join("out.mp4");
    let err = stylize(&good, &out, &["--codec", "no-such-encoder"]);
    assert!(
        err.contains("--codec no-such-encoder") && err.contains("no encoder"),
        "{err}"
    );
    let err = stylize(&good, &out, &["--codec", "aac"]);
    assert!(err.contains("not a video encoder"), "{err}");
    let err = stylize(&good, &dir.path().join("out.webm"), &["--codec", "libx264"]);
    assert!(
        err.contains("webm") && err.contains("cannot hold h264"),
        "{err}"
    );
    assert!(
        hidden_files(dir.path()).is_empty(),
        "{:?}",
        hidden_files(dir.path())
    );
}

#[test]
fn an_effect_error_or_cancel_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "64x48", "2", true, H264);
    // An existing output must survive a failed conversion untouched.
    let output = dir.path().join("out.mp4");
    std::fs::write(&output, b"previous").unwrap();
    for frames in [dir.path().join("frames/"), output.clone()] {
        let mut effects: Vec<Box<dyn Effect>> = vec![Box::new(StopAt {
            at: 10,
            seen: 0,
            cancel: None,
        })];
        let err = video::convert(&input, &frames, &options(), &mut effects).unwrap_err();
        assert!(format!("{err:#}").contains("on purpose"), "{err:#}");

        let cancel = Arc::new(AtomicBool::new(false));
        let mut effects: Vec<Box<dyn Effect>> = vec![Box::new(StopAt {
            at: 10,
            seen: 0,
            cancel: Some(cancel.clone()),
        })];
        let opts = Options {
            cancel: Some(cancel),
            ..options()
        };
        let err = video::convert(&input, &frames, &opts, &mut effects).unwrap_err();
        assert!(format!("{err:#}").contains("interrupted"), "{err:#}");
    }
    assert_eq!(std::fs::read(&output).unwrap(), b"previous");
    assert!(!dir.path().join("frames").exists());
    assert!(
        hidden_files(dir.path()).is_empty(),
        "{:?}",
        hidden_files(dir.path())
    );
}

#[test]
fn max_frames_urls_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "64x48", "2", false, H264);
    let output = dir.path().join("out.mp4");
    let opts = Options {
        max_frames: Some(7),
        ..options()
    };
    let summary = video::convert(&input, &output, &opts, &mut identity()).unwrap();
    assert_eq!(summary.frames, 7);
    assert_eq!(frame_times(&output).len(), 7);
    assert!(summary.output_bytes > 0);
    assert!(summary.fps() > 0.0 && summary.effect_fps() >= summary.fps());

    // A URL instead of a path (FFmpeg's file protocol here).
    let url = PathBuf::from(format!("file:{}", input.display()));
    let output = dir.path().join("from-url.mkv");
    let summary = video::convert(&url, &output, &opts, &mut identity()).unwrap();
    assert_eq!(summary.frames, 7);
}

#[test]
fn video_paths_are_recognised() {
    assert!(video::is_video_path(Path::new("a.mp4")));
    assert!(video::is_video_path(Path::new("-")));
    assert!(!video::is_video_path(Path::new("a.png")));
}

/// The shared clips, when present: friday.mp4 has its audio as stream 0
/// and its video as stream 1; flower.webm is VP8 with Vorbis audio (which
/// MP4 cannot hold, so it is re-encoded as AAC).
#[test]
fn shared_clips_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    if let Some(friday) = common::shared_data("video/friday.mp4") {
        let output = dir.path().join("friday.mp4");
        let opts = Options {
            size: Some(160),
            ..options()
        };
        let summary = video::convert(&friday, &output, &opts, &mut identity()).unwrap();
        assert_eq!(summary.input.stream, 1);
        assert_eq!(summary.frames, 185);
        assert_eq!(frame_times(&output).len(), 185);
        assert_eq!(audio_packets(&friday), audio_packets(&output));
        assert!((duration(&output) - duration(&friday)).abs() < 0.05);
    }
    if let Some(flower) = common::shared_data("video/flower.webm") {
        let output = dir.path().join("flower.mp4");
        let opts = Options {
            size: Some(128),
            max_frames: Some(30),
            ..options()
        };
        let summary = video::convert(&flower, &output, &opts, &mut identity()).unwrap();
        assert_eq!(summary.frames, 30);
        assert_eq!(summary.audio_reencoded, 1);
        assert_eq!(codecs(&output, "a"), ["aac"]);
    }
}

/// The binary: `dream` on a tiny clip writes a video with every frame, and
/// `--output -` streams yuv4mpegpipe.
#[test]
fn dream_command_on_a_video() {
    let _ = common::vgg(); // fails clearly when the weights are missing
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "80x48", "0.4", true, H264);
    let output = dir.path().join("dream.mp4");
    let base = [
        "dream",
        "--steps",
        "1",
        "--octaves",
        "1",
        "--size",
        "64",
        "--layers",
        "relu3_1",
        "--device",
        "cpu",
        "--input",
    ];
    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(&[s(&input), "--output", s(&output)]);
    let err = assert_success(&stylestream(&args));
    assert!(err.contains("10 frames"), "{err}");
    assert_eq!(frame_times(&output).len(), 10);
    assert_eq!(video_geometry(&output), (64, 38, 0));
    assert_eq!(audio_packets(&input), audio_packets(&output));

    let mut args: Vec<&str> = base.to_vec();
    args.extend_from_slice(&[s(&input), "--output", "-", "--carry", "0"]);
    let out = stylestream(&args);
    assert_success(&out);
    let header = String::from_utf8_lossy(&out.stdout[..64]).into_owned();
    assert!(header.starts_with("YUV4MPEG2 W64 H38 F25:1"), "{header}");
    let frame = 6 + 64 * 38 * 3 / 2;
    let header_len = out.stdout.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(out.stdout.len() - header_len, 10 * frame);
    let y4m = dir.path().join("piped.y4m");
    std::fs::write(&y4m, &out.stdout).unwrap();
    assert_eq!(frame_times(&y4m).len(), 10);

    // Errors through the binary: one line, the file named, nothing written.
    let missing = dir.path().join("missing.mp4");
    let out = stylestream([
        "dream",
        "--input",
        s(&missing),
        "--output",
        s(&dir.path().join("x.mp4")),
    ]);
    assert_clean_failure(&out, "missing.mp4");
}

/// The binary: `stylize --model M --dream` on a clip paints then dreams
/// every frame (carried from frame to frame) and keeps the frame count and
/// audio.
#[test]
fn stylize_with_a_dream_pass_on_a_video() {
    let _ = common::vgg(); // fails clearly when the weights are missing
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "80x48", "0.4", true, H264);
    let output = dir.path().join("painted-dream.mp4");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/starry_night_fast.safetensors");
    let out = stylestream([
        "stylize",
        "--input",
        s(&input),
        "--output",
        s(&output),
        "--model",
        s(&model),
        "--dream",
        "--dream-steps",
        "1",
        "--dream-octaves",
        "1",
        "--dream-layers",
        "relu3_1",
        "--size",
        "64",
        "--device",
        "cpu",
    ]);
    let err = assert_success(&out);
    assert!(err.contains("10 frames"), "{err}");
    assert!(
        err.contains("starry_night_fast") && err.contains("carry"),
        "{err}"
    );
    assert_eq!(frame_times(&output).len(), 10);
    assert_eq!(video_geometry(&output), (64, 38, 0));
    assert_eq!(audio_packets(&input), audio_packets(&output));
}

#[test]
fn subtitles_and_metadata_are_copied_where_the_container_allows() {
    let dir = tempfile::tempdir().unwrap();
    let srt = dir.path().join("subs.srt");
    std::fs::write(&srt, "1\n00:00:00,100 --> 00:00:00,800\nHello\n\n").unwrap();
    let input = dir.path().join("in.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=48000",
        "-i",
        s(&srt),
        "-t",
        "1",
        "-map",
        "0",
        "-map",
        "1",
        "-map",
        "2",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "libopus",
        "-c:s",
        "srt",
        "-metadata",
        "title=Test clip",
        "-metadata:s:a:0",
        "language=fra",
        s(&input),
    ]);
    let tags = |path: &Path, select: &str, entry: &str| {
        let out = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                select,
                "-show_entries",
                entry,
                "-of",
                "default=nw=1:nk=1",
                s(path),
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    let mkv = dir.path().join("out.mkv");
    video::convert(&input, &mkv, &options(), &mut identity()).unwrap();
    assert_eq!(codecs(&mkv, "s"), ["subrip"]);
    assert_eq!(codecs(&mkv, "a"), ["opus"]);
    assert_eq!(tags(&mkv, "a:0", "stream_tags=language"), "fra");
    assert_eq!(tags(&mkv, "v:0", "format_tags=title"), "Test clip");
    assert_eq!(audio_packets(&input), audio_packets(&mkv));

    // MP4 takes Opus but not SubRip: the subtitles are left out, with a note.
    let mp4 = dir.path().join("out.mp4");
    let summary = video::convert(&input, &mp4, &options(), &mut identity()).unwrap();
    assert!(codecs(&mp4, "s").is_empty());
    assert!(
        summary.notes.iter().any(|n| n.contains("subrip")),
        "{:?}",
        summary.notes
    );
    assert_eq!(summary.audio_copied, 1);
    assert_eq!(tags(&mp4, "v:0", "format_tags=title"), "Test clip");
}

/// Ctrl-C during a conversion: the binary stops, exits non-zero and leaves
/// neither the output nor its temporary file.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_binary_and_removes_the_temporary_file() {
    let _ = common::vgg();
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "in.mp4", "96x64", "8", true, H264);
    let output = dir.path().join("out.mp4");
    let child = Command::new(env!("CARGO_BIN_EXE_stylestream"))
        .args([
            "dream",
            "--input",
            s(&input),
            "--output",
            s(&output),
            "--size",
            "64",
            "--octaves",
            "1",
            "--steps",
            "2",
            "--device",
            "cpu",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the temporary output to appear (the conversion has begun).
    let started = std::time::Instant::now();
    while hidden_files(dir.path()).is_empty() {
        assert!(
            started.elapsed().as_secs() < 60,
            "no temporary file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    run("kill", &["-INT", &child.id().to_string()]);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!output.exists());
    assert!(
        hidden_files(dir.path()).is_empty(),
        "{:?}",
        hidden_files(dir.path())
    );
}

/// A Johnson-style network with random weights: the cost of a real style
/// network, without needing a trained model file.
struct Network {
    net: stylestream::models::TransformerNet,
}

impl Effect for Network {
    fn describe(&self) -> String {
        "random network".into()
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(frame)?)
    }
    fn apply_batch(&mut self, frames: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(frames)?)
    }
}

/// Keeps a copy of every frame it sees (the effect-alone benchmark's input).
struct Collect(Arc<Mutex<Vec<Tensor>>>);

impl Effect for Collect {
    fn describe(&self) -> String {
        "collect".into()
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        self.0.lock().unwrap().push(frame.clone());
        Ok(frame.clone())
    }
}

/// Frames/s of the pipeline against the effect alone on the same frames,
/// on the shared car-detection clip at 640 px:
/// `ARCH=fast FRAMES=60 EXT=mp4 [PRESET=...] cargo test --release --test
/// video -- --ignored --nocapture throughput`. The issue asks for at least 90%.
#[test]
#[ignore]
fn throughput_on_car_detection() {
    // As the binaries do (and both measurements below share it).
    stylestream::ops::allocator::keep_freed_memory();
    let Some(car) = common::shared_data("video/car-detection.mp4") else {
        eprintln!("no shared clip; skipped");
        return;
    };
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let frames: u64 = env("FRAMES", "60").parse().unwrap();
    let arch = env("ARCH", "fast");
    let ext = env("EXT", "mp4");
    let device = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        size: Some(640),
        max_frames: Some(frames),
        device: device.clone(),
        encode: video::EncodeOptions {
            preset: std::env::var("PRESET").ok(),
            ..Default::default()
        },
        ..options()
    };

    // The pipeline alone (decode, identity, encode), and the frames.
    let kept = Arc::new(Mutex::new(Vec::new()));
    let mut effects: Vec<Box<dyn Effect>> = vec![Box::new(Collect(kept.clone()))];
    let out = dir.path().join(format!("identity.{ext}"));
    let s = video::convert(&car, &out, &opts, &mut effects).unwrap();
    eprintln!(
        "identity: {} frames at {}x{}: {:.1} fps end to end",
        s.frames,
        s.width,
        s.height,
        s.fps()
    );

    let spec = stylestream::models::preset(&arch).expect("ARCH is johnson or fast");
    // Plain (untracked) weights, as a loaded model file has: the network
    // then takes its inference path, as `stylize --model` does.
    let params: std::collections::HashMap<String, Tensor> =
        stylestream::training::init::initial_parameters(&spec, 1, &device)
            .unwrap()
            .into_iter()
            .collect();
    let vb = candle_nn::VarBuilder::from_tensors(params, candle_core::DType::F32, &device);
    let net = stylestream::models::TransformerNet::new(&spec, vb).unwrap();
    let mut effect = Network { net };

    // The effect alone on the same frames (after one warm-up frame).
    let inputs = kept.lock().unwrap().clone();
    effect.apply(&inputs[0]).unwrap();
    let t0 = std::time::Instant::now();
    for f in &inputs {
        let out = effect.apply(f).unwrap();
        let _ = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    }
    let alone = inputs.len() as f64 / t0.elapsed().as_secs_f64();

    let mut effects: Vec<Box<dyn Effect>> = vec![Box::new(effect)];
    let out = dir.path().join(format!("network.{ext}"));
    let s = video::convert(&car, &out, &opts, &mut effects).unwrap();
    eprintln!(
        "{arch} network: alone {alone:.2} fps; end to end {:.2} fps ({:.0}% of alone; \
         in-pipeline effect time {:.2} fps)",
        s.fps(),
        100.0 * s.fps() / alone,
        s.effect_fps()
    );
    assert_eq!(s.frames, frames);
}

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Records resident memory at every frame.
struct MemoryProbe(Arc<Mutex<Vec<u64>>>);

impl Effect for MemoryProbe {
    fn describe(&self) -> String {
        "memory probe".into()
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        if let Some(b) = resident_bytes() {
            self.0.lock().unwrap().push(b);
        }
        Ok(frame.clone())
    }
}

/// Memory stays flat over a whole video: resident memory after the
/// pipeline has filled (frame 50) and at the end of car-detection.mp4 (377
/// frames) differ by little. Run alone, as other tests in the same process
/// would move the numbers: `cargo test --release --test video --
/// --ignored --test-threads=1 memory`.
#[test]
#[ignore]
fn memory_is_flat_with_video_length() {
    let Some(car) = common::shared_data("video/car-detection.mp4") else {
        eprintln!("no shared clip; skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut effects: Vec<Box<dyn Effect>> = vec![Box::new(MemoryProbe(samples.clone()))];
    let opts = Options {
        size: Some(640),
        ..options()
    };
    let out = dir.path().join("out.mp4");
    let s = video::convert(&car, &out, &opts, &mut effects).unwrap();
    let samples = samples.lock().unwrap().clone();
    assert_eq!(samples.len() as u64, s.frames);
    let settled = samples[50];
    let peak = samples[50..].iter().copied().max().unwrap();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "{} frames: resident {:.1} MiB at frame 50, peak after {:.1} MiB, at the end {:.1} MiB",
        s.frames,
        mib(settled),
        mib(peak),
        mib(*samples.last().unwrap())
    );
    let trace: Vec<String> = samples
        .iter()
        .step_by(25)
        .map(|&b| format!("{:.0}", mib(b)))
        .collect();
    eprintln!("every 25 frames (MiB): {}", trace.join(" "));
    assert!(peak < settled + (64 << 20), "memory grew with the video");
}
