//! The live filter without a camera: the pipeline driven by a test pattern
//! and by a video file in real time (`--realtime`), frame dropping and
//! latency, every kind of output (a collecting sink, the MJPEG stream read
//! back by an HTTP client, a recording), the keys through a stand-in
//! window, the camera-format conversions against known pixel values, and
//! the error paths a headless machine without a camera can reach (no
//! camera, no display, port in use).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use candle_core::{Device, Tensor};
use stylestream::effects::Effect;
use stylestream::live::camera::{
    camera_format, choose_format, list_cameras, mjpeg_frame_to_rgb, yuyv_to_rgb, CameraRequest,
    CameraSource,
};
use stylestream::live::http::HttpSink;
use stylestream::live::record::{RecordSink, Recorder};
use stylestream::live::{
    run_live, Action, CapturedFrame, Foreground, FrameSource, LiveChain, LiveConfig, LiveSink,
    OutputFrame, RealtimeFile, SourceEnd, SyntheticSource,
};
use stylestream::video::frame::RgbFrame;
use stylestream::video::EncodeOptions;

use common::{assert_success, stylestream};

// ------------------------------------------------------------ helpers

/// Returns the frame, after sleeping to stand in for a slow network.
struct Slow(Duration);

impl Effect for Slow {
    fn describe(&self) -> String {
        format!("sleep {:?}", self.0)
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        std::thread::sleep(self.0);
        Ok(frame.clone())
    }
}

/// Paints every pixel one grey level.
struct Flat(f32);

impl Effect for Flat {
    fn describe(&self) -> String {
        format!("flat {}", self.0)
    }
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        Ok((frame.zeros_like()? + self.0 as f64)?)
    }
}

/// A frame number and its first pixel.
type Seen = (u64, [u8; 3]);

/// Remembers what it was shown.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Seen>>>);

impl LiveSink for Collect {
    fn name(&self) -> String {
        "collect".into()
    }
    fn show(&mut self, frame: &OutputFrame) -> Result<()> {
        let p = &frame.rgb.data;
        self.0.lock().unwrap().push((frame.seq, [p[0], p[1], p[2]]));
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<Option<String>> {
        Ok(None)
    }
}

fn config() -> LiveConfig {
    let mut c = LiveConfig::default();
    c.initial.overlay = false;
    c
}

fn chain(effects: Vec<Box<dyn Effect>>) -> LiveChain<'static> {
    LiveChain::new(effects, None, false)
}

/// A 640x480 (or `size`) realtime source on the shared 30 fps clip.
fn friday(size: Option<u32>) -> Option<RealtimeFile> {
    let path = common::shared_data("video/friday.mp4")?;
    Some(RealtimeFile::open(&path, size).unwrap())
}

// ------------------------------------------------------------ pipeline

/// A 30 fps source and an effect that takes 80 ms: the effect always gets
/// the newest frame, the others are dropped and counted, nothing queues
/// (latency stays near one effect time), and the sink sees every painted
/// frame in order.
#[test]
fn a_slow_effect_drops_frames_instead_of_falling_behind() {
    let source = SyntheticSource {
        width: 64,
        height: 48,
        fps: 30.0,
        frames: Some(60),
    };
    let seen = Collect::default();
    let mut chain = chain(vec![Box::new(Slow(Duration::from_millis(80)))]);
    let s = run_live(
        Box::new(source),
        &mut chain,
        vec![Box::new(seen.clone())],
        None,
        &config(),
    )
    .unwrap();
    assert_eq!(s.captured, 60);
    assert_eq!(s.painted + s.dropped_before_effect, s.captured, "{s:?}");
    assert!(
        (12..=40).contains(&s.painted),
        "2 s at 80 ms a frame: {}",
        s.painted
    );
    let (out, dropped) = &s.outputs[0];
    assert_eq!(out.shown, s.painted);
    assert_eq!(*dropped, 0);
    // Capture-to-display: at most about one frame interval of waiting plus
    // one effect time (80 ms), with slack for a loaded machine; a queue
    // would have grown to more than a second by the end.
    let median = out.latency_median_ms.unwrap();
    assert!(
        (80.0..400.0).contains(&median),
        "median latency {median} ms"
    );
    let frames = seen.0.lock().unwrap();
    assert!(frames.windows(2).all(|w| w[0].0 < w[1].0), "in order");
    // The last frame captured is always painted (nothing is lost at the end).
    assert_eq!(frames.last().unwrap().0, 59);
}

/// A fast effect keeps up: nothing is dropped and every frame reaches the
/// sink, at the source's rate.
#[test]
fn a_fast_effect_shows_every_frame() {
    let source = SyntheticSource {
        width: 32,
        height: 24,
        fps: 50.0,
        frames: Some(50),
    };
    let mut chain = chain(vec![]);
    let s = run_live(
        Box::new(source),
        &mut chain,
        vec![Box::new(Collect::default())],
        None,
        &config(),
    )
    .unwrap();
    // All 50 unless the machine stalls the effect thread for 20 ms.
    assert!(s.painted >= 45, "{s:?}");
    let out = &s.outputs[0].0;
    assert_eq!(out.shown, s.painted);
    assert!(out.fps > 30.0 && out.fps < 70.0, "{} fps", out.fps);
    assert!(out.latency_median_ms.unwrap() < 100.0);
}

/// A video file under --realtime arrives at its own rate (30 fps for 6.2
/// s), and frames reach a collecting sink, the HTTP stream and a recording.
#[test]
fn realtime_file_reaches_every_output() {
    let Some(source) = friday(Some(160)) else {
        eprintln!("no shared clip; skipped");
        return;
    };
    assert_eq!(source.size(), (160, 120));
    let dir = tempfile::tempdir().unwrap();
    let rec_path = dir.path().join("rec.mp4");
    let rec = Recorder::create(&rec_path, 160, 120, Some(30.0), &EncodeOptions::default()).unwrap();
    let http = HttpSink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = http.addr();
    let client = std::thread::spawn(move || read_mjpeg_parts(addr, 3));
    let seen = Collect::default();
    let mut chain = chain(vec![]);
    let mut cfg = config();
    cfg.duration = Some(Duration::from_secs(3));
    let t0 = Instant::now();
    let s = run_live(
        Box::new(source),
        &mut chain,
        vec![
            Box::new(seen.clone()),
            Box::new(http),
            Box::new(RecordSink::new(rec)),
        ],
        None,
        &cfg,
    )
    .unwrap();
    let took = t0.elapsed().as_secs_f64();
    // Stopped by the duration, not run through as fast as decoding allows.
    assert!((2.8..5.0).contains(&took), "took {took} s");
    assert!(
        (60..=100).contains(&s.captured),
        "3 s at 30 fps: {}",
        s.captured
    );
    for (o, _) in &s.outputs {
        assert!(o.shown > 30, "{}: {} frames", o.name, o.shown);
    }
    assert!(s.outputs[0].0.fps > 20.0, "{:?}", s.outputs[0].0);
    let parts = client.join().unwrap();
    assert_eq!(parts.len(), 3);
    for jpeg in parts {
        let img = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (160, 120));
    }
    // The recording was finished and is a playable 160x120 video.
    let v = stylestream::video::VideoSource::open(&rec_path).unwrap();
    assert_eq!((v.info().width, v.info().height), (160, 120));
    assert!(s.finished.iter().any(|l| l.contains("frames recorded")));
}

/// Reads `n` parts of the MJPEG stream at `addr` as a browser would:
/// the multipart header, then each part's headers and Content-Length bytes.
fn read_mjpeg_parts(addr: SocketAddr, n: usize) -> Vec<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(stream, "GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.0 200"), "{line}");
    let mut boundary = None;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some(b) = line.split("boundary=").nth(1) {
            assert!(line.to_lowercase().contains("multipart/x-mixed-replace"));
            boundary = Some(b.trim().to_string());
        }
    }
    let boundary = boundary.expect("a multipart boundary");
    let mut parts = Vec::new();
    while parts.len() < n {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            continue;
        }
        assert_eq!(line.trim(), format!("--{boundary}"));
        let mut len = None;
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            let lower = line.to_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse::<usize>().ok();
            }
            if lower.starts_with("content-type:") {
                assert!(lower.contains("image/jpeg"));
            }
        }
        let mut body = vec![0u8; len.expect("Content-Length")];
        r.read_exact(&mut body).unwrap();
        parts.push(body);
    }
    parts
}

/// The page and the single-frame URL, and an unknown path.
#[test]
fn http_page_and_single_frame() {
    let http = HttpSink::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = http.addr();
    let get = move |path: &str| -> Vec<u8> {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    };
    let page = String::from_utf8(get("/")).unwrap();
    assert!(page.starts_with("HTTP/1.0 200"));
    assert!(page.contains("<img src=\"/stream.mjpg\""), "{page}");
    assert!(String::from_utf8_lossy(&get("/nothing")).starts_with("HTTP/1.0 404"));

    let frame = std::thread::spawn(move || get("/frame.jpg"));
    let source = SyntheticSource {
        width: 64,
        height: 48,
        fps: 20.0,
        frames: Some(40),
    };
    let mut chain = chain(vec![]);
    run_live(
        Box::new(source),
        &mut chain,
        vec![Box::new(http)],
        None,
        &config(),
    )
    .unwrap();
    let reply = frame.join().unwrap();
    let at = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers")
        + 4;
    assert!(String::from_utf8_lossy(&reply[..at]).contains("image/jpeg"));
    let img = image::load_from_memory(&reply[at..]).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (64, 48));
    // The pattern's left edge: red and green near 0, blue near 128.
    let p = img.get_pixel(0, 24);
    assert!(p[0] < 30 && (100..160).contains(&p[2]), "{p:?}");
}

/// A stand-in window that presses keys: next model after a few frames,
/// then quit. It sees both models' pictures, and quitting ends a source
/// that would otherwise run for a minute.
struct KeyPresser {
    shown: Vec<u8>,
    script: Vec<(usize, Action)>,
}

impl Foreground for KeyPresser {
    fn name(&self) -> String {
        "keys".into()
    }
    fn show(&mut self, frame: &OutputFrame) -> Result<()> {
        self.shown.push(frame.rgb.data[3 * 40]);
        Ok(())
    }
    fn poll(&mut self) -> Result<Vec<Action>> {
        let n = self.shown.len();
        let (now, later): (Vec<_>, Vec<_>) = self.script.drain(..).partition(|(at, _)| *at <= n);
        self.script = later;
        Ok(now.into_iter().map(|(_, a)| a).collect())
    }
    fn is_open(&self) -> bool {
        true
    }
}

#[test]
fn keys_switch_models_split_the_screen_and_quit() {
    let source = SyntheticSource {
        width: 64,
        height: 8,
        fps: 30.0,
        frames: Some(1800),
    };
    let mut keys = KeyPresser {
        shown: Vec::new(),
        script: vec![
            (5, Action::NextModel),
            (12, Action::ToggleSplit),
            (20, Action::Quit),
        ],
    };
    let mut chain = chain(vec![Box::new(Flat(0.0)), Box::new(Flat(1.0))]);
    let t0 = Instant::now();
    let s = run_live(
        Box::new(source),
        &mut chain,
        vec![],
        Some(&mut keys),
        &config(),
    )
    .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "quit did not stop");
    assert!(s.captured < 1800);
    // Pixel 40 of row 0 (right half): black with model 1, white with model 2.
    assert_eq!(keys.shown[0], 0);
    assert_eq!(*keys.shown.last().unwrap(), 255);
}

/// A source that ends with a note (a camera unplugged for good): the
/// session ends normally, says why, and the recording is finished.
struct Unplugged;

impl FrameSource for Unplugged {
    fn describe(&self) -> String {
        "a camera that goes away".into()
    }
    fn size(&self) -> (u32, u32) {
        (64, 48)
    }
    fn frame_rate(&self) -> Option<f64> {
        Some(30.0)
    }
    fn run(
        self: Box<Self>,
        _stop: &AtomicBool,
        emit: &mut dyn FnMut(CapturedFrame),
    ) -> Result<SourceEnd> {
        for seq in 0..10 {
            std::thread::sleep(Duration::from_millis(33));
            emit(CapturedFrame {
                seq,
                captured: Instant::now(),
                image: SyntheticSource::pattern(64, 48, seq),
            });
        }
        Ok(SourceEnd {
            frames: 10,
            note: Some("camera 0 was lost and did not come back".into()),
        })
    }
}

#[test]
fn a_lost_camera_ends_cleanly_and_finishes_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.mkv");
    let rec = Recorder::create(&path, 64, 48, Some(30.0), &EncodeOptions::default()).unwrap();
    let mut chain = chain(vec![]);
    let s = run_live(
        Box::new(Unplugged),
        &mut chain,
        vec![Box::new(RecordSink::new(rec))],
        None,
        &config(),
    )
    .unwrap();
    assert!(s.note.unwrap().contains("lost"));
    assert!(path.is_file());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file left");
}

// ------------------------------------------------------------ camera formats

/// YUYV (BT.601 limited range, as webcams send it) against known colours,
/// with and without row padding.
#[test]
fn yuyv_frames_convert_to_known_colours() {
    // Two pixels per 4 bytes: Y0 U Y1 V.
    let black_white = [16u8, 128, 235, 128];
    let rgb = yuyv_to_rgb(&black_white, 2, 1).unwrap();
    assert_eq!(rgb.data, vec![0, 0, 0, 255, 255, 255]);
    // BT.601 red, green, blue.
    for (yuv, want) in [
        ([81u8, 90, 240], [255u8, 0, 0]),
        ([145, 54, 34], [0, 255, 0]),
        ([41, 240, 110], [0, 0, 255]),
    ] {
        let [y, u, v] = yuv;
        let got = yuyv_to_rgb(&[y, u, y, v], 2, 1).unwrap();
        for c in 0..3 {
            assert!(
                (got.data[c] as i32 - want[c] as i32).abs() <= 3,
                "{yuv:?} -> {:?}, want {want:?}",
                &got.data[..3]
            );
        }
    }
    // Rows of 2 pixels padded to 8 bytes.
    let padded = [
        16u8, 128, 16, 128, 9, 9, 9, 9, 235, 128, 235, 128, 9, 9, 9, 9,
    ];
    let rgb = yuyv_to_rgb(&padded, 2, 2).unwrap();
    assert_eq!(&rgb.data[..6], &[0; 6]);
    assert_eq!(&rgb.data[6..], &[255; 6]);
    assert!(yuyv_to_rgb(&[0u8; 6], 2, 2).is_err());
}

/// MJPEG: one JPEG per frame, decoded by nokhwa's decoder.
#[test]
fn mjpeg_frames_convert_to_known_colours() {
    let (w, h) = (32u32, 16u32);
    let mut data = Vec::new();
    for _y in 0..h {
        for x in 0..w {
            data.extend_from_slice(if x < w / 2 {
                &[200, 40, 90]
            } else {
                &[20, 180, 60]
            });
        }
    }
    let jpeg = stylestream::live::http::encode_jpeg(
        &RgbFrame {
            width: w,
            height: h,
            data,
        },
        100,
    )
    .unwrap();
    let rgb = mjpeg_frame_to_rgb(&jpeg, w, h).unwrap();
    let px = |x: u32, y: u32| &rgb.data[3 * (y * w + x) as usize..3 * (y * w + x) as usize + 3];
    for (got, want) in [(px(4, 8), [200i32, 40, 90]), (px(28, 8), [20, 180, 60])] {
        for c in 0..3 {
            assert!((got[c] as i32 - want[c]).abs() <= 6, "{got:?} vs {want:?}");
        }
    }
    // The wrong size, and damaged data, are errors, not panics.
    assert!(mjpeg_frame_to_rgb(&jpeg, 64, 16).is_err());
    assert!(mjpeg_frame_to_rgb(b"not a jpeg at all", w, h).is_err());
}

#[test]
fn the_closest_camera_format_is_chosen() {
    use nokhwa::utils::FrameFormat::{MJPEG, NV12, YUYV};
    let offered = [
        camera_format(640, 480, YUYV, 30),
        camera_format(1280, 720, YUYV, 10),
        camera_format(1280, 720, MJPEG, 30),
        camera_format(640, 480, MJPEG, 30),
        camera_format(1920, 1080, NV12, 60),
    ];
    let pick = |w, h, fps| choose_format(&offered, &CameraRequest::new(0, Some((w, h)), Some(fps)));
    // Same size and rate in both: YUYV (no decoding).
    assert_eq!(pick(640, 480, 30), Some(offered[0]));
    // 720p at 30 only comes as MJPEG.
    assert_eq!(pick(1280, 720, 30), Some(offered[2]));
    // 1080p is not offered in a format we read: the nearest, 720p.
    assert_eq!(pick(1920, 1080, 60), Some(offered[2]));
    assert_eq!(pick(320, 240, 30), Some(offered[0]));
    assert_eq!(
        choose_format(&offered[4..], &CameraRequest::new(0, None, None)),
        None
    );
}

// ------------------------------------------------------------ error paths

/// Without a camera (CI, these machines): a clear error, not a panic.
#[test]
fn no_camera_is_a_clear_error() {
    if !list_cameras().unwrap().is_empty() {
        eprintln!("this machine has a camera; skipped");
        return;
    }
    let e = CameraSource::open(CameraRequest::new(0, None, None), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no camera found"), "{e}");
    assert!(e.contains("--realtime"), "{e}");
}

/// A random `fast` model file for the command-line tests.
fn random_model(dir: &Path) -> PathBuf {
    let spec = stylestream::models::preset("fast").unwrap();
    let params: HashMap<String, Tensor> =
        stylestream::training::init::initial_parameters(&spec, 1, &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    let info = stylestream::models::ModelInfo::new(spec, "random", "style", serde_json::json!({}));
    let path = dir.join("random_fast.safetensors");
    stylestream::models::save_model(&path, &params, &info).unwrap();
    path
}

/// The command line's error paths: no display for the default window, a
/// port in use, no camera; each a one-line error and exit status 1, fast.
#[test]
fn command_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let model = model.to_str().unwrap();
    // A short clip made here, so the test needs no shared data.
    let clip = dir.path().join("clip.mp4");
    let made = common::testsrc_clip(&clip, "160x120", 30, 2)
        .expect("the ffmpeg CLI (scripts/setup.sh installs it)");
    assert!(made.success());
    let clip = clip.to_str().unwrap();

    let out = stylestream(["stylize", "--input", clip, "--realtime", "--model", model]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no display") && err.contains("--serve"),
        "{err}"
    );

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    // Fails with exit status 1 and no panic; returns stderr.
    let fails = |extra: &[&str]| -> String {
        let mut args = vec!["stylize", "--input", clip, "--realtime", "--model", model];
        args.extend_from_slice(extra);
        let out = stylestream(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let err = fails(&["--serve", &port]);
    assert!(err.contains("in use"), "{err}");

    if list_cameras().unwrap().is_empty() {
        let out = stylestream([
            "stylize",
            "--input",
            "webcam",
            "--model",
            model,
            "--serve",
            "127.0.0.1:0",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("no camera found"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }

    let out = stylestream(["stylize", "--input", "webcam:x", "--model", model]);
    assert_eq!(out.status.code(), Some(1));
    let out = stylestream([
        "stylize", "--input", "a.png", "--output", "b.png", "--model", model, "--serve", "8080",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only apply to the live filter"), "{err}");

    // A recording's encoder is chosen as a converted video's: an unknown
    // --codec is an error (it used to fall back to H.264 silently).
    let rec = dir.path().join("rec.mp4");
    let err = fails(&[
        "--output",
        rec.to_str().unwrap(),
        "--codec",
        "no-such-encoder",
    ]);
    assert!(err.contains("--codec no-such-encoder"), "{err}");
    assert!(!rec.exists());

    let out = stylestream(["devices"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("cameras:") && text.contains("GPUs:"),
        "{text}"
    );
}

/// Runs `COMMAND --input CLIP --realtime ARGS --output REC --duration 2
/// --device cpu`, expects success and a recording of `size` (the frame's
/// longer side) in `rec`; returns stderr.
fn record_realtime(clip: &Path, command: &[&str], rec: &Path, size: u32) -> String {
    let mut args = command.to_vec();
    args.extend_from_slice(&["--input", clip.to_str().unwrap(), "--realtime"]);
    let size_arg = size.to_string();
    args.extend_from_slice(&["--size", &size_arg, "--output", rec.to_str().unwrap()]);
    args.extend_from_slice(&["--duration", "2", "--device", "cpu"]);
    let out = stylestream(&args);
    let err = assert_success(&out);
    assert!(err.contains("frames recorded"), "{err}");
    assert!(rec.is_file());
    let v = stylestream::video::VideoSource::open(rec).unwrap();
    // friday.mp4 is 4:3.
    assert_eq!((v.info().width, v.info().height), (size, size * 3 / 4));
    err
}

/// `--realtime` end to end through the commands: a recording and the
/// stream, stopped by --duration, for stylize, dream, and stylize with a
/// dream pass.
#[test]
fn command_line_realtime_records() {
    let Some(clip) = common::shared_data("video/friday.mp4") else {
        eprintln!("no shared clip; skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let rec = dir.path().join("live.mp4");
    let model = model.to_str().unwrap();
    let serve = ["stylize", "--model", model, "--serve", "127.0.0.1:0"];
    let err = record_realtime(&clip, &serve, &rec, 160);
    assert!(err.contains("latency median"), "{err}");

    // `dream --realtime` goes through the same live path; so does
    // `stylize --dream --model`, the dream first.
    let _ = common::vgg(); // fails clearly when the weights are missing
    let one_step = ["--octaves", "1", "--steps", "1", "--layers", "relu3_1"];
    let mut dream = vec!["dream"];
    dream.extend_from_slice(&one_step);
    let err = record_realtime(&clip, &dream, &dir.path().join("dream.mp4"), 96);
    assert!(err.contains("dream pass"), "{err}");

    let chain = [
        "stylize",
        "--dream",
        "--model",
        model,
        "--dream-octaves",
        "1",
        "--dream-steps",
        "1",
    ];
    let err = record_realtime(&clip, &chain, &dir.path().join("chain.mkv"), 96);
    // The dream pass is listed before the model: it runs first.
    let dream_at = err.find("dream pass").unwrap_or_else(|| panic!("{err}"));
    let model_at = err.find("model 1/1").unwrap_or_else(|| panic!("{err}"));
    assert!(dream_at < model_at, "{err}");

    // A still image with the live flags is refused, as for stylize.
    let out = stylestream([
        "dream", "--input", "a.png", "--output", "b.png", "--serve", "8080",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only apply to the live filter"), "{err}");
}

/// The preview window on a virtual X server, when Xvfb is installed
/// (`apt-get install xvfb`; skipped otherwise): frames reach the window
/// and the session ends cleanly. `scripts/live_window.sh` also presses
/// keys and takes a screenshot.
#[test]
fn window_under_xvfb() {
    let Some(clip) = common::shared_data("video/friday.mp4") else {
        eprintln!("no shared clip; skipped");
        return;
    };
    // A display number of its own, so parallel runs do not collide.
    let display = format!(":{}", 100 + std::process::id() % 800);
    let display = display.as_str();
    let xvfb = Command::new("Xvfb")
        .args([display, "-screen", "0", "640x480x24", "-nolisten", "tcp"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut xvfb) = xvfb else {
        eprintln!("no Xvfb; skipped");
        return;
    };
    std::thread::sleep(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_stylestream"))
        .args(["stylize", "--input"])
        .arg(&clip)
        .args(["--realtime", "--size", "160", "--duration", "2", "--model"])
        .arg(&model)
        .env("DISPLAY", display)
        .output()
        .unwrap();
    let _ = xvfb.kill();
    let _ = xvfb.wait();
    let err = assert_success(&out);
    let shown = err
        .lines()
        .find(|l| l.contains("window '") && l.contains("frames shown"))
        .unwrap_or_else(|| panic!("no window summary in: {err}"));
    let n: u64 = shown
        .split("': ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(n > 10, "{shown}");
}
