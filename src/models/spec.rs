//! Architecture spec strings for the feed-forward transform networks, in the
//! notation of Johnson, Alahi and Fei-Fei (2016), supplementary material:
//!
//! ```text
//! c9s1-32,d64,d128,R128,R128,R128,R128,R128,u64,u32,c9s1-3
//! ```
//!
//! | token    | layer                                                                  |
//! |----------|------------------------------------------------------------------------|
//! | `cKsS-C` | reflection pad `K/2`, `KxK` conv stride `S` to `C` channels, IN, ReLU   |
//! | `dC`     | reflection pad 1, `3x3` conv stride 2 to `C` channels, IN, ReLU         |
//! | `RC`     | residual block: `x + IN(conv3x3(ReLU(IN(conv3x3(x)))))`, `C` channels   |
//! | `uC`     | nearest 2x upsample, reflection pad 1, `3x3` conv to `C` channels, IN, ReLU |
//! | `NxL`    | `N` copies of layer `L`, e.g. `5xR128`                                  |
//!
//! The *last* layer must be a `cKsS-3` and is a plain convolution (with a
//! bias, no norm, no ReLU); the network maps its output to RGB in `0..1`
//! (see [`super::transformer`]). IN is instance normalisation with a learned
//! scale and shift.
//!
//! The upsampling layers are nearest-neighbour resizes followed by a
//! convolution rather than transposed convolutions, which avoids the
//! checkerboard artifacts of the latter (Odena et al., 2016).
//!
//! A spec is validated when built: the network starts from 3 (RGB) channels,
//! every residual block keeps the channel count it receives, the last layer
//! is a convolution to 3 channels, and the net upsamples exactly as often as
//! it downsamples, so that the output has the input's size.
//!
//! [`ArchSpec`]'s `Display` writes the canonical form (repetitions expanded),
//! which parses back to the same spec.

use std::fmt;
use std::str::FromStr;

/// Channels of the network's input and output (RGB).
pub const RGB_CHANNELS: usize = 3;

/// Johnson et al.'s network for 256x256 training images: 1.68 M parameters
/// as published (1,676,995 here, without the 2,240 biases and shifts that
/// instance norm makes redundant; see [`super::transformer`]) and
/// 94.5 GFLOP per 640x480 frame (153,792 multiply-adds per pixel).
pub const JOHNSON_SPEC: &str = "c9s1-32,d64,d128,R128,R128,R128,R128,R128,u64,u32,c9s1-3";

/// A network designed for live 640x480 video at 24 frames/s on a 2-core
/// AVX2 CPU: 2.74 GFLOP per 640x480 frame (4,464 multiply-adds per
/// pixel), 34x less than [`JOHNSON_SPEC`], 46,275 parameters.
///
/// Why this size. At 24 frames/s a frame has 41.7 ms. Such a CPU runs large
/// GEMMs at ~100-150 GFLOP/s, but these are thin convolutions (8-32
/// channels), so count on ~60-80 % of that while convolving, and leave
/// ~10-15 ms of every frame for the memory-bound passes (reflection
/// padding, instance norm, upsampling: several full-resolution tensor
/// sweeps per layer) plus decoding and encoding the frame. That leaves
/// ~25-30 ms of convolution, i.e. a budget of ~2-3 GFLOP per frame.
/// Johnson's network (94.5 GFLOP) would need ~2.3 TFLOP/s; even the
/// halved-width `c9s1-16,d32,d64,R64x3,u32,u16,c9s1-3` (20.3 GFLOP) would
/// run at 6 frames/s at best.
///
/// Where the FLOPs go, and what was cut (multiply-adds per input pixel):
///
/// * Two residual blocks of 32 channels at 1/4 of the width and height
///   (2,304; 52 %): the style capacity. There a block costs 1/16 of the
///   same block at full resolution, so this is where width is cheapest.
/// * The decoder (`u8,u8`: 1,152): an upsample-then-convolve layer runs at
///   the *higher* resolution, so a wide decoder is the most expensive part
///   of Johnson's design (36,864 of 153,792); here it is 8 channels wide.
/// * Full-resolution ends with 3x3 kernels and 8 channels (`c3s1-8`,
///   `c3s1-3`: 432) instead of 9x9 and 32 (15,552 in Johnson's net); the
///   receptive field comes from the downsampled layers instead.
/// * The two stride-2 encoder layers (576).
pub const FAST_SPEC: &str = "c3s1-8,d16,d32,R32,R32,u8,u8,c3s1-3";

/// The named presets, for `--arch` style options and their help text.
pub const PRESETS: &[(&str, &str)] = &[("johnson", JOHNSON_SPEC), ("fast", FAST_SPEC)];

/// The spec of a named preset (`johnson` or `fast`, see [`PRESETS`]).
pub fn preset(name: &str) -> Option<ArchSpec> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.parse().expect("preset specs are valid"))
}

/// One layer of a spec (one comma-separated token, after expanding `NxL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerSpec {
    /// `cKsS-C`: `kernel`x`kernel` convolution, stride `stride`, to
    /// `channels` channels.
    Conv {
        kernel: usize,
        stride: usize,
        channels: usize,
    },
    /// `dC`: 3x3 convolution with stride 2 to `C` channels.
    Down(usize),
    /// `RC`: residual block of two 3x3 convolutions with `C` channels.
    Residual(usize),
    /// `uC`: nearest 2x upsample, then 3x3 convolution to `C` channels.
    Up(usize),
}

impl LayerSpec {
    /// Channels the layer outputs.
    pub fn out_channels(&self) -> usize {
        match *self {
            LayerSpec::Conv { channels, .. } => channels,
            LayerSpec::Down(c) | LayerSpec::Residual(c) | LayerSpec::Up(c) => c,
        }
    }

    /// How the layer changes the spatial size: +1 for a halving (stride 2),
    /// -1 for a doubling, 0 otherwise.
    fn depth_change(&self) -> i32 {
        match *self {
            LayerSpec::Conv { stride: 2, .. } | LayerSpec::Down(_) => 1,
            LayerSpec::Up(_) => -1,
            _ => 0,
        }
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerSpec::Conv {
                kernel,
                stride,
                channels,
            } => write!(f, "c{kernel}s{stride}-{channels}"),
            LayerSpec::Down(c) => write!(f, "d{c}"),
            LayerSpec::Residual(c) => write!(f, "R{c}"),
            LayerSpec::Up(c) => write!(f, "u{c}"),
        }
    }
}

/// Why a spec string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("empty architecture spec: expected comma-separated layers such as '{JOHNSON_SPEC}'")]
    Empty,
    /// A token that is not a layer; `position` counts tokens from 1.
    #[error(
        "bad layer '{token}' at position {position} in spec '{spec}': \
         expected cKsS-C, dC, RC or uC (optionally repeated as NxL, e.g. 5xR128)"
    )]
    BadLayer {
        token: String,
        position: usize,
        spec: String,
    },
    /// A well-formed token with values the network cannot use.
    #[error("bad layer '{token}' at position {position} in spec '{spec}': {reason}")]
    BadValue {
        token: String,
        position: usize,
        spec: String,
        reason: String,
    },
    /// A sequence of layers that does not make a network; `layer` is the
    /// index of the offending layer after expansion (its tensors are
    /// `layers.{layer}.*`).
    #[error("invalid architecture '{spec}': layer {layer} ('{token}') {reason}")]
    Invalid {
        spec: String,
        layer: usize,
        token: String,
        reason: String,
    },
    #[error(
        "invalid architecture '{spec}': it halves the image size {downs} time(s) but \
         doubles it {ups} time(s); the output must have the input's size"
    )]
    Unbalanced {
        spec: String,
        downs: usize,
        ups: usize,
    },
}

/// A validated transform-network architecture: a list of layers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ArchSpec {
    layers: Vec<LayerSpec>,
}

/// Largest accepted kernel, repetition count and channel count: far beyond
/// any useful network, small enough that nothing overflows.
const MAX_KERNEL: usize = 31;
const MAX_REPEAT: usize = 1000;
const MAX_CHANNELS: usize = 1 << 16;

impl ArchSpec {
    /// Validates a list of layers (see the module docs for the rules).
    pub fn new(layers: Vec<LayerSpec>) -> Result<Self, SpecError> {
        let spec = ArchSpec { layers };
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), SpecError> {
        let spec_str = || self.to_string();
        let invalid = |layer: usize, reason: String| SpecError::Invalid {
            spec: spec_str(),
            layer,
            token: self.layers[layer].to_string(),
            reason,
        };
        let Some(last) = self.layers.last() else {
            return Err(SpecError::Empty);
        };
        let mut channels = RGB_CHANNELS;
        for (i, layer) in self.layers.iter().enumerate() {
            if let Err(reason) = check_values(layer) {
                return Err(invalid(i, reason));
            }
            if let LayerSpec::Residual(c) = *layer {
                if c != channels {
                    let reason = format!(
                        "is a residual block of {c} channels but receives {channels} \
                         (a residual block keeps its input's channel count)"
                    );
                    return Err(invalid(i, reason));
                }
            }
            channels = layer.out_channels();
        }
        let n = self.layers.len() - 1;
        match *last {
            LayerSpec::Conv { channels, .. } if channels == RGB_CHANNELS => {}
            LayerSpec::Conv { .. } => {
                let reason = format!("is the last layer, so it must output {RGB_CHANNELS} (RGB) channels, e.g. c9s1-3");
                return Err(invalid(n, reason));
            }
            _ => {
                let reason =
                    "is the last layer, which must be a convolution to RGB, e.g. c9s1-3".into();
                return Err(invalid(n, reason));
            }
        }
        let downs = self.layers.iter().filter(|l| l.depth_change() > 0).count();
        let ups = self.layers.iter().filter(|l| l.depth_change() < 0).count();
        if downs != ups {
            return Err(SpecError::Unbalanced {
                spec: spec_str(),
                downs,
                ups,
            });
        }
        Ok(())
    }

    /// The layers, in order; layer `i`'s tensors are named `layers.{i}.*`.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers
    }

    /// Whether layer `i` is the final (plain, un-normalised) convolution.
    pub fn is_last(&self, i: usize) -> bool {
        i + 1 == self.layers.len()
    }

    /// Channels layer `i` receives.
    pub fn in_channels(&self, i: usize) -> usize {
        if i == 0 {
            RGB_CHANNELS
        } else {
            self.layers[i - 1].out_channels()
        }
    }

    /// Height and width must be multiples of this for the output to have
    /// the input's size: `2^d` for the deepest point `d` (halvings not yet
    /// undone) the network reaches. The transform network pads its input
    /// up to a multiple by reflection and crops the output back.
    pub fn size_multiple(&self) -> usize {
        let mut depth = 0i32;
        let mut deepest = 0i32;
        for l in &self.layers {
            depth += l.depth_change();
            deepest = deepest.max(depth);
        }
        1 << deepest
    }

    /// `(h, w)` rounded up to [`Self::size_multiple`]: the size the network
    /// actually runs at.
    pub fn padded_size(&self, h: usize, w: usize) -> (usize, usize) {
        let m = self.size_multiple();
        (h.div_ceil(m) * m, w.div_ceil(m) * m)
    }

    /// Every convolution of the network on a `h`x`w` input, in order,
    /// with its output size; the input is first padded to
    /// [`Self::padded_size`] as the network does.
    pub fn convs(&self, h: usize, w: usize) -> Vec<ConvShape> {
        let (mut h, mut w) = self.padded_size(h, w);
        let mut out = Vec::new();
        for (layer, spec) in self.layers.iter().enumerate() {
            let cin = self.in_channels(layer);
            let cout = spec.out_channels();
            // `upsample` first doubles the map. Odd kernels with reflection
            // padding kernel/2 on each side: the output is ceil(size / stride).
            let mut conv = |in_channels: usize, kernel: usize, stride: usize, upsample: bool| {
                if upsample {
                    h *= 2;
                    w *= 2;
                }
                let (in_h, in_w) = (h, w);
                h = (h - 1) / stride + 1;
                w = (w - 1) / stride + 1;
                out.push(ConvShape {
                    layer,
                    in_channels,
                    out_channels: cout,
                    kernel,
                    stride,
                    in_h,
                    in_w,
                    out_h: h,
                    out_w: w,
                });
            };
            match *spec {
                LayerSpec::Conv { kernel, stride, .. } => conv(cin, kernel, stride, false),
                LayerSpec::Down(_) => conv(cin, 3, 2, false),
                LayerSpec::Residual(c) => {
                    conv(c, 3, 1, false);
                    conv(c, 3, 1, false);
                }
                LayerSpec::Up(_) => conv(cin, 3, 1, true),
            }
        }
        out
    }

    /// The smallest height (and width) the network accepts: every
    /// reflection padding needs the map it pads to be larger than the
    /// padding (inputs are first padded up to [`Self::size_multiple`]).
    pub fn min_input_size(&self) -> usize {
        (1..)
            .find(|&s| self.convs(s, s).iter().all(ConvShape::pad_fits))
            .expect("a large enough input always fits")
    }

    /// Floating-point operations of one forward pass over a `h`x`w` image
    /// (batch of 1): `2 x` the multiply-adds of the convolutions, at the
    /// padded size the network runs at. Normalisation, padding, upsampling
    /// and the output mapping are memory-bound and not counted, so
    /// `flops / seconds` compared with the machine's GEMM rate is the share
    /// of peak the convolutions reach.
    pub fn flops(&self, h: usize, w: usize) -> u64 {
        self.convs(h, w).iter().map(ConvShape::flops).sum()
    }

    /// Number of learned scalars of the network built from this spec (see
    /// [`super::transformer`] for which tensors exist).
    pub fn num_params(&self) -> usize {
        let conv = |cin: usize, cout: usize, k: usize| cout * cin * k * k;
        let norm = |c: usize| 2 * c;
        self.layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let cin = self.in_channels(i);
                match *l {
                    // The last layer: conv weight and bias, no norm.
                    LayerSpec::Conv {
                        kernel, channels, ..
                    } if self.is_last(i) => conv(cin, channels, kernel) + channels,
                    LayerSpec::Conv {
                        kernel, channels, ..
                    } => conv(cin, channels, kernel) + norm(channels),
                    LayerSpec::Down(c) | LayerSpec::Up(c) => conv(cin, c, 3) + norm(c),
                    // Two convs, two norms, the second without a shift.
                    LayerSpec::Residual(c) => 2 * conv(c, c, 3) + norm(c) + c,
                }
            })
            .sum()
    }
}

/// One convolution of a network at a given input size; see [`ArchSpec::convs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Index of the layer it belongs to.
    pub layer: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Size of the map it convolves, before its reflection padding of
    /// `kernel / 2` (and after any 2x upsampling).
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvShape {
    /// Whether the reflection padding of `kernel / 2` fits the map (it must
    /// be smaller than both sides).
    pub fn pad_fits(&self) -> bool {
        self.kernel / 2 < self.in_h && self.kernel / 2 < self.in_w
    }

    /// `2 x` multiply-adds.
    pub fn flops(&self) -> u64 {
        2 * (self.out_channels * self.in_channels * self.kernel * self.kernel) as u64
            * (self.out_h * self.out_w) as u64
    }
}

/// Range checks on one layer's numbers.
fn check_values(layer: &LayerSpec) -> Result<(), String> {
    if layer.out_channels() == 0 || layer.out_channels() > MAX_CHANNELS {
        return Err(format!("channels must be 1..={MAX_CHANNELS}"));
    }
    if let LayerSpec::Conv { kernel, stride, .. } = *layer {
        if kernel % 2 == 0 || kernel > MAX_KERNEL {
            return Err(format!(
                "kernel must be odd and at most {MAX_KERNEL} (reflection padding of kernel/2 keeps the size)"
            ));
        }
        if !(1..=2).contains(&stride) {
            return Err("stride must be 1 or 2".into());
        }
    }
    Ok(())
}

/// A non-empty run of ASCII digits (no sign, unlike `usize::from_str`).
fn number(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One layer token without repetition, or `None` if malformed.
fn parse_layer(tok: &str) -> Option<LayerSpec> {
    let (kind, rest) = tok.split_at(tok.char_indices().nth(1).map_or(tok.len(), |(i, _)| i));
    match kind {
        "c" => {
            let (k, rest) = rest.split_once('s')?;
            let (s, c) = rest.split_once('-')?;
            Some(LayerSpec::Conv {
                kernel: number(k)?,
                stride: number(s)?,
                channels: number(c)?,
            })
        }
        "d" => number(rest).map(LayerSpec::Down),
        "R" => number(rest).map(LayerSpec::Residual),
        "u" => number(rest).map(LayerSpec::Up),
        _ => None,
    }
}

impl FromStr for ArchSpec {
    type Err = SpecError;

    /// Parses a comma-separated spec; whitespace around tokens is ignored
    /// and `NxL` repeats layer `L` `N` times.
    fn from_str(spec: &str) -> Result<Self, SpecError> {
        if spec.trim().is_empty() {
            return Err(SpecError::Empty);
        }
        let mut layers = Vec::new();
        for (i, raw) in spec.split(',').enumerate() {
            let token = raw.trim();
            let bad = || SpecError::BadLayer {
                token: token.to_string(),
                position: i + 1,
                spec: spec.to_string(),
            };
            let (count, layer_tok) = match token.split_once('x') {
                Some((n, l)) => (number(n).ok_or_else(bad)?, l),
                None => (1, token),
            };
            let layer = parse_layer(layer_tok).ok_or_else(bad)?;
            let bad_value = |reason: String| SpecError::BadValue {
                token: token.to_string(),
                position: i + 1,
                spec: spec.to_string(),
                reason,
            };
            if count == 0 || count > MAX_REPEAT {
                return Err(bad_value(format!("repeat count must be 1..={MAX_REPEAT}")));
            }
            check_values(&layer).map_err(bad_value)?;
            layers.extend(std::iter::repeat_n(layer, count));
        }
        ArchSpec::new(layers)
    }
}

impl fmt::Display for ArchSpec {
    /// The canonical form: layers expanded, comma-separated, no spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}
