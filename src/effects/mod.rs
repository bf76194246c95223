//! Effects: what turns a frame into a painted frame.
//!
//! A frame is an RGB image tensor of shape (1, 3, H, W) with values in 0..1,
//! on any device. Every effect takes one and returns one of the same size, so
//! the still-image commands, video conversion and the webcam filter share
//! the same code.
//!
//! * [`gatys`] — optimisation-based style transfer (slow; the quality reference).
//! * [`dream`] — multi-octave DeepDream.
//! * [`dream_stream`] — DeepDream on video, carried from frame to frame.
//! * [`style_net`] — a trained feed-forward network (one pass per frame; live).
//! * [`color`] — colour helpers, e.g. keeping the content's colours.

pub mod color;
pub mod dream;
pub mod dream_stream;
pub mod gatys;
pub mod style_net;

use anyhow::Result;
use candle_core::Tensor;

/// A progress callback an effect calls after each optimisation step.
pub type StepCallback<'a, T> = Box<dyn FnMut(&T) + Send + 'a>;

/// Something that paints frames.
pub trait Effect: Send {
    /// A short description for logs and progress lines.
    fn describe(&self) -> String;

    /// Paints one RGB 0..1 frame (1,3,H,W); returns a frame of the same shape.
    fn apply(&mut self, frame: &Tensor) -> Result<Tensor>;

    /// Paints a batch of frames (N,3,H,W), in order. The default paints
    /// them one at a time; an effect that runs a network overrides it to
    /// run the batch in one pass (video conversion batches frames for
    /// effects whose [`Effect::preferred_batch`] is above 1).
    fn apply_batch(&mut self, frames: &Tensor) -> Result<Tensor> {
        let n = frames.dim(0)?;
        if n == 1 {
            return self.apply(frames);
        }
        let painted = (0..n)
            .map(|i| self.apply(&frames.narrow(0, i, 1)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&painted, 0)?)
    }

    /// How many frames the effect would like per [`Effect::apply_batch`]
    /// call: 1 (the default) when batching gains nothing, e.g. for effects
    /// that carry state from one frame to the next or optimise per frame.
    fn preferred_batch(&self) -> usize {
        1
    }
}
