//! What the effect thread paints, and the controls a viewer changes while
//! it runs.
//!
//! Live, several `--model`s are alternatives to switch between with a key
//! (chaining them would divide the frame rate), optionally preceded and/or
//! followed by DeepDream passes (in command-line order) that one key turns
//! on and off together. The controls live in one small
//! shared state ([`Controls`]) that the window's thread writes and the
//! effect thread reads once per frame, so a key press takes effect on the
//! next frame without stopping anything.

use std::sync::{Mutex, MutexGuard};

use anyhow::Result;
use candle_core::Tensor;

use crate::effects::color::transfer_luminance;
use crate::effects::Effect;

/// Something a viewer can ask for (keys in the window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    NextModel,
    PreviousModel,
    ToggleDream,
    ToggleSplit,
    Stronger,
    Weaker,
    ToggleOverlay,
    Screenshot,
    Quit,
}

/// The keys, for `--help` and the start-up log.
pub const KEY_HELP: &str = "keys: Right/N next model, Left/B previous, D dream on/off, \
V split original|stylized, Up/Down strength, O overlay, S screenshot, Q/Esc quit";

/// The viewer's settings, read by the effect thread every frame.
#[derive(Clone, Debug, PartialEq)]
pub struct ControlState {
    /// Index of the model in use.
    pub model: usize,
    /// Whether the dream passes run (when any were loaded).
    pub dream: bool,
    /// Left half original, right half stylized.
    pub split: bool,
    /// 0 (the original) ..= 1 (the full effect).
    pub strength: f64,
    /// Show frames/s and latency on the picture.
    pub overlay: bool,
}

impl Default for ControlState {
    fn default() -> Self {
        Self {
            model: 0,
            dream: false,
            split: false,
            strength: 1.0,
            overlay: true,
        }
    }
}

/// [`ControlState`] shared between threads.
#[derive(Debug, Default)]
pub struct Controls {
    state: Mutex<ControlState>,
}

impl Controls {
    pub fn new(initial: ControlState) -> Self {
        Self {
            state: Mutex::new(initial),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ControlState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current settings.
    pub fn get(&self) -> ControlState {
        self.lock().clone()
    }

    /// Applies `action` for a chain of `models` models (with a dream pass
    /// if `has_dream`); returns a line for the log describing the change,
    /// or `None` for actions that are not settings (screenshot, quit).
    pub fn apply(&self, action: Action, models: usize, has_dream: bool) -> Option<String> {
        let mut s = self.lock();
        let n = models.max(1);
        Some(match action {
            Action::NextModel => {
                s.model = (s.model + 1) % n;
                format!("model {}/{n}", s.model + 1)
            }
            Action::PreviousModel => {
                s.model = (s.model + n - 1) % n;
                format!("model {}/{n}", s.model + 1)
            }
            Action::ToggleDream if has_dream => {
                s.dream = !s.dream;
                format!("dream {}", if s.dream { "on" } else { "off" })
            }
            Action::ToggleDream => "no dream pass loaded: start with --dream".into(),
            Action::ToggleSplit => {
                s.split = !s.split;
                format!("split screen {}", if s.split { "on" } else { "off" })
            }
            Action::Stronger | Action::Weaker => {
                let step = if action == Action::Stronger {
                    0.1
                } else {
                    -0.1
                };
                s.strength = ((s.strength + step) * 10.0).round().clamp(0.0, 10.0) / 10.0;
                format!("strength {:.1}", s.strength)
            }
            Action::ToggleOverlay => {
                s.overlay = !s.overlay;
                format!("overlay {}", if s.overlay { "on" } else { "off" })
            }
            Action::Screenshot | Action::Quit => return None,
        })
    }
}

/// The effects of a live session: alternative models, dream passes before
/// and after the model, and the colour option.
pub struct LiveChain<'a> {
    models: Vec<Box<dyn Effect + 'a>>,
    dreams_before: Vec<Box<dyn Effect + 'a>>,
    dreams_after: Vec<Box<dyn Effect + 'a>>,
    preserve_color: bool,
}

impl<'a> LiveChain<'a> {
    /// `models` are switched between (none: only the dream pass, or the
    /// original picture); `dream` runs after the model.
    pub fn new(
        models: Vec<Box<dyn Effect + 'a>>,
        dream: Option<Box<dyn Effect + 'a>>,
        preserve_color: bool,
    ) -> Self {
        Self::ordered(
            Vec::new(),
            models,
            dream.into_iter().collect(),
            preserve_color,
        )
    }

    /// `dreams_before`, then the model in use (one of `models`), then
    /// `dreams_after`: the order `stylize --dream --model A --dream` gives.
    pub fn ordered(
        dreams_before: Vec<Box<dyn Effect + 'a>>,
        models: Vec<Box<dyn Effect + 'a>>,
        dreams_after: Vec<Box<dyn Effect + 'a>>,
        preserve_color: bool,
    ) -> Self {
        Self {
            models,
            dreams_before,
            dreams_after,
            preserve_color,
        }
    }

    pub fn model_count(&self) -> usize {
        self.models.len()
    }

    pub fn has_dream(&self) -> bool {
        !self.dreams_before.is_empty() || !self.dreams_after.is_empty()
    }

    /// The name of model `i` (modulo the count), for the overlay.
    pub fn model_name(&self, i: usize) -> Option<String> {
        (!self.models.is_empty()).then(|| self.models[i % self.models.len()].describe())
    }

    /// One line per effect, for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        let dream = |d: &(dyn Effect + 'a)| format!("dream pass: {}", d.describe());
        let mut lines: Vec<String> = self
            .dreams_before
            .iter()
            .map(|d| dream(d.as_ref()))
            .collect();
        lines.extend(
            self.models
                .iter()
                .enumerate()
                .map(|(i, m)| format!("model {}/{}: {}", i + 1, self.models.len(), m.describe())),
        );
        lines.extend(self.dreams_after.iter().map(|d| dream(d.as_ref())));
        if self.preserve_color {
            lines.push("photo colours kept".into());
        }
        lines
    }

    /// Paints `frame` (1,3,H,W) with the current settings, strength
    /// included (split screen is composed later, on bytes).
    pub fn paint(&mut self, frame: &Tensor, state: &ControlState) -> Result<Tensor> {
        let mut out = frame.clone();
        if state.dream {
            for d in self.dreams_before.iter_mut() {
                out = d.apply(&out)?;
            }
        }
        if !self.models.is_empty() {
            let n = self.models.len();
            out = self.models[state.model % n].apply(&out)?;
        }
        if state.dream {
            for d in self.dreams_after.iter_mut() {
                out = d.apply(&out)?;
            }
        }
        if self.preserve_color && !self.models.is_empty() {
            out = transfer_luminance(&out, frame)?;
        }
        let s = state.strength.clamp(0.0, 1.0);
        if s < 1.0 {
            out = ((out * s)? + (frame * (1.0 - s))?)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_change_the_settings() {
        let c = Controls::new(ControlState::default());
        c.apply(Action::PreviousModel, 3, false);
        assert_eq!(c.get().model, 2);
        c.apply(Action::NextModel, 3, false);
        assert_eq!(c.get().model, 0);
        for _ in 0..3 {
            c.apply(Action::Weaker, 1, false);
        }
        assert!((c.get().strength - 0.7).abs() < 1e-9);
        for _ in 0..9 {
            c.apply(Action::Stronger, 1, false);
        }
        assert_eq!(c.get().strength, 1.0);
        c.apply(Action::ToggleDream, 1, false);
        assert!(!c.get().dream);
        c.apply(Action::ToggleDream, 1, true);
        assert!(c.get().dream);
        c.apply(Action::ToggleSplit, 1, true);
        c.apply(Action::ToggleOverlay, 1, true);
        let s = c.get();
        assert!(s.split && !s.overlay);
        assert_eq!(c.apply(Action::Quit, 1, true), None);
    }

    /// Adds `self.0` to every pixel, then doubles: the order shows.
    struct AddDouble(f64);

    impl Effect for AddDouble {
        fn describe(&self) -> String {
            format!("add {} and double", self.0)
        }
        fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
            Ok(((frame + self.0)? * 2.0)?)
        }
    }

    #[test]
    fn dream_passes_run_in_order_and_toggle_together() {
        let frame = Tensor::zeros(
            (1, 3, 2, 2),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let first = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        let mut chain = LiveChain::ordered(
            vec![Box::new(AddDouble(1.0))],
            vec![Box::new(AddDouble(10.0))],
            vec![Box::new(AddDouble(100.0))],
            false,
        );
        assert!(chain.has_dream());
        assert_eq!(chain.describe().len(), 3);
        let on = ControlState {
            dream: true,
            ..ControlState::default()
        };
        // ((0 + 1) * 2 + 10) * 2 = 24, then (24 + 100) * 2.
        assert_eq!(first(chain.paint(&frame, &on).unwrap()), 248.0);
        let off = ControlState::default();
        assert_eq!(first(chain.paint(&frame, &off).unwrap()), 20.0);
    }
}
