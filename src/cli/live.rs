//! The live path of `stylestream stylize` and `stylestream dream`:
//! `--input webcam[:N]`, or any video with `--realtime`, painted as it
//! comes, to a window, a browser (`--serve`), a virtual camera (`--output
//! v4l2:/dev/videoN`) and/or a recording (`--output FILE.mp4`).
//!
//! This module turns the flags into the library's pieces
//! ([`stylestream::live`]): it checks everything that can fail before the
//! camera starts (display, port, output paths), opens the source and the
//! outputs ([`Session::open`]), then runs the pipeline with the chain the
//! command built ([`Session::run`]), printing its log and summary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use candle_core::Device;
use stylestream::live::camera::{parse_webcam, CameraRequest, CameraSource};
use stylestream::live::http::{parse_serve_addr, HttpSink};
use stylestream::live::record::{RecordSink, Recorder};
use stylestream::live::window::{check_display, PreviewWindow};
use stylestream::live::{
    run_live, ControlState, Foreground, FrameSource, LiveChain, LiveConfig, LiveSink, RealtimeFile,
    KEY_HELP,
};
use stylestream::video::{self, EncodeOptions};

use super::video_args::VideoArgs;

/// Flags of the live filter (webcam or `--realtime`).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Live filter (--input webcam[:N], or --realtime)")]
pub struct LiveArgs {
    /// Play the input (a video file or URL) in real time, as if it were a
    /// camera: frames arrive at their own timestamps and are dropped when
    /// the effect cannot keep up. Outputs as for a webcam.
    #[arg(long)]
    pub realtime: bool,

    /// With --realtime: start the file again at its end, until stopped.
    #[arg(long = "loop")]
    pub loop_input: bool,

    /// Camera frame size to ask for; the closest size the camera offers
    /// (MJPEG or YUYV) is used, and the log says which [default: 640x480].
    #[arg(long, value_name = "WxH", value_parser = parse_camera_size)]
    pub camera_size: Option<(u32, u32)>,

    /// Camera frame rate to ask for [default: 30].
    #[arg(long, value_name = "FPS", value_parser = clap::value_parser!(u32).range(1..=240))]
    pub camera_fps: Option<u32>,

    /// Stream the painted video as MJPEG over HTTP at ADDR (HOST:PORT, or
    /// a port for 127.0.0.1:PORT); open http://ADDR/ in a browser or an OBS
    /// browser source. Binds to localhost unless another host is given.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,

    /// Start with the split screen: original | stylized (key V).
    #[arg(long)]
    pub split: bool,

    /// Start without the frames/s and latency overlay (key O).
    #[arg(long)]
    pub no_overlay: bool,

    /// Where the S key saves screenshots.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub screenshot_dir: PathBuf,

    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<f64>,
}

/// Parses `--camera-size WxH`.
fn parse_camera_size(s: &str) -> Result<(u32, u32)> {
    let parsed = s
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    match parsed {
        Some((w, h)) if (16..=8192).contains(&w) && (16..=8192).contains(&h) => Ok((w, h)),
        _ => bail!("--camera-size must be WIDTHxHEIGHT in pixels, e.g. 640x480; got '{s}'"),
    }
}

/// Parses `--duration`.
fn parse_seconds(s: &str) -> Result<f64> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => bail!("--duration must be a positive number of seconds, got '{s}'"),
    }
}

impl LiveArgs {
    /// Whether `input` makes this a live session.
    pub fn is_live(&self, input: &Path) -> bool {
        self.realtime || input.to_str().and_then(parse_webcam).is_some()
    }

    /// Refuses live-only flags on a still image or an offline video.
    pub fn check_not_given(&self) -> Result<()> {
        let given: Vec<&str> = [
            (self.loop_input, "--loop"),
            (self.camera_size.is_some(), "--camera-size"),
            (self.camera_fps.is_some(), "--camera-fps"),
            (self.serve.is_some(), "--serve"),
            (self.split, "--split"),
            (self.duration.is_some(), "--duration"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if !given.is_empty() {
            bail!(
                "{} only apply to the live filter: use --input webcam, or add --realtime",
                given.join(", ")
            );
        }
        Ok(())
    }
}

/// Where a live session's frames go (from `--output` and `--serve`).
#[derive(Debug, Default)]
struct Outputs {
    window: bool,
    v4l2: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

fn parse_outputs(outputs: &[PathBuf], serve: bool) -> Result<Outputs> {
    let mut o = Outputs::default();
    for p in outputs {
        let s = p.to_string_lossy();
        if s == "window" {
            o.window = true;
        } else if let Some(dev) = s.strip_prefix("v4l2:") {
            o.v4l2.push(PathBuf::from(dev));
        } else if s == "-" {
            bail!("--output - (y4m on stdout) is for video files; live, use --serve, v4l2:/dev/videoN or a file");
        } else if stylestream::image_io::is_image_path(p) {
            bail!(
                "--output {s}: live output is a window, v4l2:/dev/videoN or a video file (.mp4, \
                 .mkv, .webm); the S key saves screenshots"
            );
        } else {
            o.files.push(p.clone());
        }
    }
    if outputs.is_empty() && !serve {
        o.window = true;
    }
    Ok(o)
}

/// A live session whose source and outputs are open, waiting for its
/// effects: [`Session::open`] checks everything that can fail before the
/// effects load (display, port, output paths, the camera), then
/// [`Session::run`] paints. `stylize` and `dream` both come through here.
pub struct Session {
    outs: Outputs,
    sinks: Vec<Box<dyn LiveSink>>,
    serve_url: Option<String>,
    source: Box<dyn FrameSource>,
}

impl Session {
    /// Opens the source (`webcam[:N]`, or a file played in real time) at
    /// `size` and the outputs.
    pub fn open(
        input: &Path,
        outputs: &[PathBuf],
        size: Option<u32>,
        video_args: &VideoArgs,
        args: &LiveArgs,
    ) -> Result<Self> {
        let outs = parse_outputs(outputs, args.serve.is_some())?;
        // Everything that can fail without the camera, first.
        if outs.window {
            check_display()?;
        }
        let mut sinks: Vec<Box<dyn LiveSink>> = Vec::new();
        let mut serve_url = None;
        if let Some(addr) = &args.serve {
            let http = HttpSink::bind(parse_serve_addr(addr)?)?;
            serve_url = Some(http.url());
            sinks.push(Box::new(http));
        }
        for f in &outs.files {
            stylestream::image_io::check_output_file(f, &[input])?;
        }

        let name = input.to_string_lossy();
        let source: Box<dyn FrameSource> = match parse_webcam(&name) {
            Some(index) => {
                if args.realtime || args.loop_input {
                    eprintln!("live: note: --realtime and --loop are for video files; a webcam is live already");
                }
                let request = CameraRequest::new(index?, args.camera_size, args.camera_fps);
                Box::new(CameraSource::open(request, size)?)
            }
            None => {
                if args.camera_size.is_some() || args.camera_fps.is_some() {
                    eprintln!("live: note: --camera-size and --camera-fps only apply to a webcam");
                }
                Box::new(RealtimeFile::open(input, size)?.looping(args.loop_input))
            }
        };
        let (width, height) = source.size();
        let fps = source.frame_rate();

        #[cfg(target_os = "linux")]
        for dev in &outs.v4l2 {
            sinks.push(Box::new(stylestream::live::v4l2out::V4l2Sink::open(
                dev, width, height, fps,
            )?));
        }
        #[cfg(not(target_os = "linux"))]
        if let Some(dev) = outs.v4l2.first() {
            bail!(
                "--output v4l2:{}: virtual cameras need Linux (v4l2loopback)",
                dev.display()
            );
        }
        let encode = EncodeOptions {
            codec: video_args.codec.clone(),
            crf: video_args.crf,
            preset: video_args.preset.clone(),
        };
        for f in &outs.files {
            let rec = Recorder::create(f, width, height, fps, &encode)?;
            sinks.push(Box::new(RecordSink::new(rec)));
        }
        Ok(Self {
            outs,
            sinks,
            serve_url,
            source,
        })
    }

    /// Paints with `chain` until the source ends, the window closes,
    /// --duration passes or Ctrl-C; `dream` starts with the chain's dream
    /// passes on (the D key toggles them).
    pub fn run(
        self,
        chain: &mut LiveChain<'_>,
        title: &str,
        device: Device,
        dream: bool,
        video_args: &VideoArgs,
        args: &LiveArgs,
    ) -> Result<()> {
        let Session {
            outs,
            sinks,
            serve_url,
            source,
        } = self;
        let (width, height) = source.size();
        let mut window = if outs.window {
            Some(PreviewWindow::open(title, width, height)?)
        } else {
            None
        };
        if let Some(url) = &serve_url {
            eprintln!("live: streaming at {url} (MJPEG: {url}stream.mjpg)");
        }
        if window.is_some() {
            eprintln!("live: {KEY_HELP}");
        } else {
            eprintln!("live: Ctrl-C stops");
        }
        let config = LiveConfig {
            device,
            initial: ControlState {
                model: 0,
                dream,
                split: args.split,
                strength: video_args.strength,
                overlay: !args.no_overlay,
            },
            stop: video::interrupt::flag(),
            log_every: Some(Duration::from_secs(5)),
            screenshot_dir: args.screenshot_dir.clone(),
            duration: args.duration.map(Duration::from_secs_f64),
        };
        let foreground = window.as_mut().map(|w| w as &mut dyn Foreground);
        let summary = run_live(source, chain, sinks, foreground, &config)?;
        for line in summary.lines() {
            eprintln!("live: {line}");
        }
        for f in &outs.files {
            if f.exists() {
                println!("{}", f.display());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camera_sizes() {
        assert_eq!(parse_camera_size("640x480").unwrap(), (640, 480));
        assert_eq!(parse_camera_size("1280X720").unwrap(), (1280, 720));
        assert!(parse_camera_size("640").is_err());
        assert!(parse_camera_size("0x0").is_err());
    }

    #[test]
    fn outputs_default_to_a_window() {
        let o = parse_outputs(&[], false).unwrap();
        assert!(o.window);
        let o = parse_outputs(&[], true).unwrap();
        assert!(!o.window);
        let o = parse_outputs(
            &[
                "v4l2:/dev/video10".into(),
                "rec.mp4".into(),
                "window".into(),
            ],
            false,
        )
        .unwrap();
        assert!(o.window && o.v4l2.len() == 1 && o.files.len() == 1);
        assert!(parse_outputs(&["shot.png".into()], false).is_err());
    }
}
