//! DeepDream on a stream of frames, coherent from one frame to the next.
//!
//! Dreaming every frame from scratch makes the patterns boil: each frame's
//! ascent finds different eyes and swirls in nearly the same picture.
//! Instead, each frame's ascent starts from the new frame plus `carry`
//! times what the dream added to the previous frame (its dreamed result
//! minus its input). On a still scene that is exactly the previous dreamed
//! frame blended into the new one; on a moving scene it carries the
//! patterns without ghosting the old picture into the new one. The patterns
//! persist and the ascent only refines them, so a carried frame gets
//! `steps x (1 - carry)` steps (at least one): without that, every frame
//! would add a full dream on top of the last and the patterns would keep
//! intensifying (to about `1 / (1 - carry)` times a single dream).
//!
//! On a scene cut (a large mean change between consecutive input frames)
//! the carried patterns belong to the old scene, so the stream resets and
//! dreams the new frame from scratch, with all its steps.

use anyhow::Result;
use candle_core::Tensor;

use super::dream::Dream;
use super::Effect;

/// Carry and cut settings.
#[derive(Clone, Copy, Debug)]
pub struct StreamConfig {
    /// How much of the previous dreamed frame goes into the next one's start
    /// (0: dream every frame afresh; 0.9: strong persistence).
    pub carry: f64,
    /// Mean absolute difference (0..1 pixel values) between consecutive
    /// input frames above which a frame counts as a scene cut.
    pub cut_threshold: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            carry: 0.5,
            cut_threshold: 0.12,
        }
    }
}

/// A [`Dream`] that remembers the previous frame (see the module docs).
pub struct DreamStream<'a> {
    dream: Dream<'a>,
    config: StreamConfig,
    previous: Option<(Tensor, Tensor)>,
    cuts: usize,
}

impl<'a> DreamStream<'a> {
    pub fn new(dream: Dream<'a>, config: StreamConfig) -> Self {
        Self {
            dream,
            config,
            previous: None,
            cuts: 0,
        }
    }

    /// Scene cuts detected so far.
    pub fn cuts(&self) -> usize {
        self.cuts
    }

    /// Forgets the previous frame (the next one is dreamed afresh).
    pub fn reset(&mut self) {
        self.previous = None;
    }

    /// Whether `frame` starts a new scene after `previous_input`.
    pub fn is_cut(&self, previous_input: &Tensor, frame: &Tensor) -> Result<bool> {
        if previous_input.dims() != frame.dims() {
            return Ok(true);
        }
        let diff = (frame - previous_input)?
            .abs()?
            .mean_all()?
            .to_scalar::<f32>()? as f64;
        Ok(diff > self.config.cut_threshold)
    }

    /// Dreams the next frame of the stream.
    pub fn next_frame(&mut self, frame: &Tensor) -> Result<Tensor> {
        let c = self.config.carry;
        let full = self.dream.config().steps;
        let (start, steps) = match self.previous.take() {
            Some((input, output)) if c > 0.0 => {
                if self.is_cut(&input, frame)? {
                    self.cuts += 1;
                    (frame.clone(), full)
                } else {
                    let detail = (output - input)?;
                    let refine = ((full as f64 * (1.0 - c)).round() as usize).max(1);
                    ((frame + (detail * c)?)?.clamp(0f32, 1f32)?, refine)
                }
            }
            _ => (frame.clone(), full),
        };
        let out = self.dream.dream_steps(&start, steps)?;
        self.previous = Some((frame.clone(), out.clone()));
        Ok(out)
    }
}

impl Effect for DreamStream<'_> {
    fn describe(&self) -> String {
        format!("{}, carry {}", self.dream.describe(), self.config.carry)
    }

    fn apply(&mut self, frame: &Tensor) -> Result<Tensor> {
        self.next_frame(frame)
    }
}
