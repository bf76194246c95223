//! The live filter: a webcam (or any video played in real time) painted
//! as it happens, shown in a window, streamed to a browser, written to a
//! virtual camera or recorded.
//!
//! Live differs from converting a file in one way that shapes everything:
//! the source does not wait. A camera delivers 30 frames a second whether
//! or not the effect is done with the last one, so the stages hand frames
//! over through one-frame slots that keep only the newest ([`slot`]), and
//! what counts is frames shown per second and their age on screen
//! ([`stats`]), not frames processed.
//!
//! * [`source`] — the [`FrameSource`] trait the capture thread runs, a
//!   video file or URL in real time ([`RealtimeFile`], on the video
//!   module's decoder) and a test pattern; [`camera`] — webcams through
//!   nokhwa (format choice, YUYV/MJPEG conversion, unplugging).
//! * [`chain`] — what is painted (alternative models, a dream pass,
//!   strength) and the [`Controls`] the keys change.
//! * [`pipeline`] — the threads and [`run_live`].
//! * Outputs: [`window`] (minifb preview, the keys), [`http`] (MJPEG over
//!   HTTP), [`v4l2out`] (v4l2loopback virtual camera), [`record`] (a video
//!   file of what was shown); [`overlay`] draws the statistics and the
//!   split screen.

pub mod camera;
pub mod chain;
pub mod http;
pub mod overlay;
pub mod pipeline;
pub mod record;
pub mod slot;
pub mod source;
pub mod stats;
#[cfg(target_os = "linux")]
pub mod v4l2out;
pub mod window;

pub use chain::{Action, ControlState, Controls, LiveChain, KEY_HELP};
pub use pipeline::{run_live, Foreground, LiveConfig, LiveSink, LiveSummary, OutputFrame};
pub use source::{CapturedFrame, FrameSource, RealtimeFile, SourceEnd, SyntheticSource};
