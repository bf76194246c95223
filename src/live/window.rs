//! The preview window (`--output window`): minifb on X11.
//!
//! minifb loads libX11 with dlopen when a window opens, so the binary
//! builds and runs without X11 development packages and a headless machine
//! only fails when it is asked for a window. Before trying, [`check_display`]
//! looks at `$DISPLAY`/`$WAYLAND_DISPLAY`, so a session over SSH or a
//! server gets a clear message pointing at `--serve` or a file instead of
//! an X11 error.
//!
//! The window is a [`Foreground`]: it runs on the caller's thread, shows
//! the newest painted frame and turns key presses into [`Action`]s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use minifb::{InputCallback, Key, Scale, ScaleMode, Window, WindowOptions};

use super::chain::Action;
use super::pipeline::{Foreground, OutputFrame};
use crate::video::frame::RgbFrame;

/// What to do instead of a window, for error messages.
const ALTERNATIVES: &str = "use --serve 127.0.0.1:8080 to watch in a browser, --output \
v4l2:/dev/videoN for a virtual camera, or --output FILE.mp4 to record";

/// Whether a window can be opened here; the error says why not and what
/// to use instead. `display` and `wayland` are `$DISPLAY` and
/// `$WAYLAND_DISPLAY` (passed in so tests need not change the environment).
pub fn check_display_vars(display: Option<&str>, wayland: Option<&str>) -> Result<()> {
    let set = |v: Option<&str>| v.is_some_and(|s| !s.trim().is_empty());
    if set(display) {
        return Ok(());
    }
    if set(wayland) {
        bail!(
            "no X11 display for the preview window: $WAYLAND_DISPLAY is set but $DISPLAY is \
             not, and the window needs X11 (XWayland); {ALTERNATIVES}"
        );
    }
    bail!(
        "no display for the preview window ($DISPLAY is not set: a server, an SSH session or \
         CI); {ALTERNATIVES}"
    )
}

/// [`check_display_vars`] with this process's environment.
pub fn check_display() -> Result<()> {
    let display = std::env::var("DISPLAY").ok();
    let wayland = std::env::var("WAYLAND_DISPLAY").ok();
    check_display_vars(display.as_deref(), wayland.as_deref())
}

/// The key bindings (see [`super::chain::KEY_HELP`]).
pub fn action_for(key: Key) -> Option<Action> {
    Some(match key {
        Key::Right | Key::N | Key::PageDown => Action::NextModel,
        Key::Left | Key::B | Key::PageUp => Action::PreviousModel,
        Key::D => Action::ToggleDream,
        Key::V => Action::ToggleSplit,
        Key::Up | Key::Equal | Key::NumPadPlus => Action::Stronger,
        Key::Down | Key::Minus | Key::NumPadMinus => Action::Weaker,
        Key::O | Key::F1 => Action::ToggleOverlay,
        Key::S | Key::F12 => Action::Screenshot,
        Key::Q | Key::Escape => Action::Quit,
        _ => return None,
    })
}

/// Packs RGB bytes into minifb's 0RGB words.
pub fn to_0rgb(frame: &RgbFrame, out: &mut Vec<u32>) {
    out.clear();
    out.extend(
        frame
            .data
            .chunks_exact(3)
            .map(|p| (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2])),
    );
}

/// Collects key presses as the window system reports them. Polling the
/// key state once a frame would miss a press and release that both fall
/// between two updates (quick taps, automation such as xdotool).
struct KeyPresses(Arc<Mutex<Vec<Action>>>);

impl InputCallback for KeyPresses {
    fn add_char(&mut self, _uni_char: u32) {}

    fn set_key_state(&mut self, key: Key, down: bool) {
        if let (true, Some(a)) = (down, action_for(key)) {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(a);
        }
    }
}

/// An open preview window.
pub struct PreviewWindow {
    window: Window,
    buffer: Vec<u32>,
    pending: Arc<Mutex<Vec<Action>>>,
    last_update: Instant,
    title: String,
}

impl PreviewWindow {
    /// Opens a window for `width` x `height` frames (resizable, aspect
    /// kept). Checks the display first.
    pub fn open(title: &str, width: u32, height: u32) -> Result<Self> {
        check_display()?;
        let scale = if width < 480 { Scale::X2 } else { Scale::X1 };
        let mut window = Window::new(
            title,
            width as usize,
            height as usize,
            WindowOptions {
                resize: true,
                scale,
                scale_mode: ScaleMode::AspectRatioStretch,
                ..WindowOptions::default()
            },
        )
        .map_err(|e| {
            let display = std::env::var("DISPLAY").unwrap_or_default();
            let e = e.to_string();
            if e.contains("load Xlib") || e.contains("XCursor") {
                anyhow!(
                    "cannot open the preview window: libX11 is not installed ({e}); install \
                     libx11-6 and libxcursor1, or {ALTERNATIVES}"
                )
            } else {
                anyhow!(
                    "cannot open the preview window on display '{display}' ({e}); {ALTERNATIVES}"
                )
            }
        })?;
        // The pipeline paces the window; minifb must not sleep on its own.
        window.set_target_fps(0);
        let pending = Arc::new(Mutex::new(Vec::new()));
        window.set_input_callback(Box::new(KeyPresses(pending.clone())));
        Ok(Self {
            window,
            buffer: Vec::new(),
            pending,
            last_update: Instant::now(),
            title: title.to_string(),
        })
    }
}

impl Foreground for PreviewWindow {
    fn name(&self) -> String {
        format!("window '{}'", self.title)
    }

    fn show(&mut self, frame: &OutputFrame) -> Result<()> {
        to_0rgb(&frame.rgb, &mut self.buffer);
        self.window
            .update_with_buffer(
                &self.buffer,
                frame.rgb.width as usize,
                frame.rgb.height as usize,
            )
            .map_err(|e| anyhow!("cannot draw in the preview window: {e}"))?;
        self.last_update = Instant::now();
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<Action>> {
        // Keep the window responsive (events, resizing) while no new frame
        // comes, e.g. during a slow dream frame.
        if self.last_update.elapsed() > Duration::from_millis(15) {
            self.window.update();
            self.last_update = Instant::now();
        }
        let mut keys = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        Ok(std::mem::take(&mut *keys))
    }

    fn is_open(&self) -> bool {
        self.window.is_open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_display_says_what_to_use_instead() {
        let e = check_display_vars(None, None).unwrap_err().to_string();
        assert!(e.contains("$DISPLAY") && e.contains("--serve"), "{e}");
        let e = check_display_vars(Some(""), Some("wayland-0"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("XWayland"), "{e}");
        assert!(check_display_vars(Some(":0"), None).is_ok());
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(action_for(Key::Escape), Some(Action::Quit));
        assert_eq!(action_for(Key::Right), Some(Action::NextModel));
        assert_eq!(action_for(Key::Z), None);
    }
}
