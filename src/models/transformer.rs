//! The feed-forward style transform network of Johnson, Alahi and Fei-Fei
//! (2016), built from an [`ArchSpec`].
//!
//! # Layers
//!
//! * `cKsS-C` (not last), `dC`: reflection pad `K/2`, convolution, instance
//!   norm, ReLU.
//! * `uC`: nearest 2x upsample, reflection pad 1, 3x3 convolution, instance
//!   norm, ReLU.
//! * `RC`: `x + IN(conv(ReLU(IN(conv(x)))))`, both convolutions 3x3 with
//!   reflection padding 1.
//! * The last layer (`cKsS-3`): reflection pad `K/2` and convolution, then
//!   the output mapping below.
//!
//! Instance norm (eps [`NORM_EPS`]) has a learned per-channel scale and
//! shift. The network has no parameters that cannot affect its output
//! (their gradient would be exactly zero, and they would only waste memory
//! and optimiser state):
//!
//! * Convolutions followed by instance norm have **no bias**: the norm
//!   subtracts each channel's mean, so a bias there has no effect (the
//!   norm's shift plays its role). Only the last convolution has a bias.
//! * The second norm of a residual block (`norm2`) has a scale but **no
//!   shift**. Its shift would add a per-channel constant to the residual
//!   stream; reflection padding, upsampling and convolution keep such a
//!   constant spatially constant, so every later layer either removes it
//!   (the next instance norm: after `R`, `d`, `u` and inner `c` layers) or
//!   turns it into a per-channel constant that the last convolution's bias
//!   already provides.
//!
//! # Tensor names
//!
//! Layer `i` of the spec (counting from 0, after expanding `NxL`) owns:
//!
//! | layer              | tensor                                            | shape             |
//! |--------------------|---------------------------------------------------|-------------------|
//! | `c`, `d`, `u`      | `layers.{i}.conv.weight`                          | `(C, Cin, K, K)`  |
//! |                    | `layers.{i}.norm.weight`, `layers.{i}.norm.bias`  | `(C,)`            |
//! | `R`                | `layers.{i}.conv1.weight`, `layers.{i}.conv2.weight` | `(C, C, 3, 3)` |
//! |                    | `layers.{i}.norm1.weight`, `layers.{i}.norm1.bias`, `layers.{i}.norm2.weight` | `(C,)` |
//! | last `cKsS-3`      | `layers.{i}.conv.weight`                          | `(3, Cin, K, K)`  |
//! |                    | `layers.{i}.conv.bias`                            | `(3,)`            |
//!
//! [`parameter_shapes`] lists them for a spec. With a `VarMap`-backed
//! [`VarBuilder`] the weights are initialised Kaiming-uniform (ReLU gain; the
//! last convolution, which no ReLU follows, linear gain), the norms' scales
//! to 1 and every shift and the last bias to 0.
//!
//! # Input and output
//!
//! [`TransformerNet::forward`] takes RGB in `0..1`, `(N, 3, H, W)`, of any
//! size from [`ArchSpec::min_input_size`] up. Each stride-2 layer rounds an
//! odd size up and each upsampling doubles it, so the input is first padded
//! by reflection (split evenly between the two sides) up to a multiple of
//! [`ArchSpec::size_multiple`], and the output is cropped back: the output
//! always has the input's size.
//!
//! The output is `(tanh(x) + 1) / 2` of the last convolution. Among the
//! usual choices:
//!
//! * a clamp to `0..1` has a zero gradient wherever it clips, so pixels that
//!   overshoot early in training stop learning (and a fresh network clips
//!   much of the image);
//! * an unbounded output needs clamping at inference anyway, and then the
//!   loss saw values the user never does;
//! * the scaled tanh is smooth, always inside `0..1`, has a gradient
//!   everywhere, and is centred: a fresh network with a zero last bias
//!   outputs mid-grey plus texture. Johnson et al. used a scaled tanh too.
//!   (It equals `sigmoid(2x)`; written as tanh it keeps the symmetric
//!   `-1..1` range of the pre-activation obvious.)
//!
//! # Kernels
//!
//! All convolutions, paddings, norms and upsamplings go through the
//! project's fast CPU ops ([`crate::ops`]), called from one place
//! (`mod kernels` below), with CPU forward and backward and a fallback to
//! candle's ops on other devices.
//!
//! When no gradient is wanted (plain, loaded weights on the CPU, as in the
//! effects) the forward takes a fused inference path instead: the thin 3x3
//! layers run as direct convolutions ([`crate::ops::direct`]) with the
//! padding, upsampling and instance norms folded in (see
//! `TransformerNet::forward_inference`). Those fused layers have no
//! backward, which is why training (`Var` weights) keeps the op-by-op
//! path; both give the same output to about 1e-6.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{bail, DType, Device, Module, Result, Tensor};
use candle_nn::init::{self, FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};

use super::spec::{ArchSpec, LayerSpec, RGB_CHANNELS};
use crate::ops::direct::{self, DirectGeom, Epilogue};

/// Instance norm epsilon (PyTorch's default).
pub const NORM_EPS: f64 = 1e-5;

/// The project's kernels, in one place.
mod kernels {
    use candle_core::{Result, Tensor};

    /// `conv2d(x, weight) + bias`, no padding (the callers pad by reflection).
    pub fn conv2d(
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
    ) -> Result<Tensor> {
        crate::ops::conv2d::conv2d(x, weight, bias, stride, 0)
    }

    /// Reflection padding of `pad` on all four sides.
    pub fn reflection_pad(x: &Tensor, pad: usize) -> Result<Tensor> {
        crate::ops::reflection_pad::reflection_pad2d(x, pad)
    }

    /// Instance norm with a learned scale and optional shift, optionally
    /// then ReLU.
    pub fn instance_norm(
        x: &Tensor,
        gamma: &Tensor,
        beta: Option<&Tensor>,
        relu: bool,
    ) -> Result<Tensor> {
        crate::ops::instance_norm::instance_norm(x, Some(gamma), beta, super::NORM_EPS, relu)
    }

    /// Nearest-neighbour 2x upsampling.
    pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
        crate::ops::upsample::upsample_nearest2x(x)
    }

    /// The output mapping `(tanh(x) + 1) / 2`.
    pub fn unit_tanh(x: &Tensor) -> Result<Tensor> {
        crate::ops::activation::unit_tanh(x)
    }
}

/// A convolution with reflection padding of `kernel / 2`.
struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    pad: usize,
}

impl Conv {
    /// A bias only for the last layer (`output`); see the module docs.
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        output: bool,
    ) -> Result<Self> {
        let w_init = if output {
            Init::Kaiming {
                dist: NormalOrUniform::Uniform,
                fan: FanInOut::FanIn,
                non_linearity: NonLinearity::Linear,
            }
        } else {
            init::DEFAULT_KAIMING_UNIFORM
        };
        let weight = vb.get_with_hints((cout, cin, kernel, kernel), "weight", w_init)?;
        let bias = if output {
            Some(vb.get_with_hints(cout, "bias", init::ZERO)?)
        } else {
            None
        };
        Ok(Conv {
            weight,
            bias,
            stride,
            pad: kernel / 2,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let padded;
        let x = if self.pad > 0 {
            padded = kernels::reflection_pad(x, self.pad)?;
            &padded
        } else {
            x
        };
        kernels::conv2d(x, &self.weight, self.bias.as_ref(), self.stride)
    }
}

/// Instance norm with a learned scale (`weight`) and, unless it is a
/// residual block's second norm, shift (`bias`).
struct Norm {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Norm {
    fn new(vb: VarBuilder, channels: usize, shift: bool) -> Result<Self> {
        let bias = if shift {
            Some(vb.get_with_hints(channels, "bias", init::ZERO)?)
        } else {
            None
        };
        Ok(Norm {
            weight: vb.get_with_hints(channels, "weight", init::ONE)?,
            bias,
        })
    }

    fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        kernels::instance_norm(x, &self.weight, self.bias.as_ref(), relu)
    }
}

enum Layer {
    /// `cKsS-C` (not last) and `dC`: conv, IN, ReLU.
    Conv { conv: Conv, norm: Norm },
    /// `uC`: upsample, conv, IN, ReLU.
    Up { conv: Conv, norm: Norm },
    /// `RC`.
    Residual {
        conv1: Conv,
        norm1: Norm,
        conv2: Conv,
        norm2: Norm,
    },
    /// The last convolution, without norm.
    Output { conv: Conv },
}

impl Layer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Layer::Conv { conv, norm } => norm.forward(&conv.forward(x)?, true),
            Layer::Up { conv, norm } => {
                norm.forward(&conv.forward(&kernels::upsample2x(x)?)?, true)
            }
            Layer::Residual {
                conv1,
                norm1,
                conv2,
                norm2,
            } => {
                let y = norm1.forward(&conv1.forward(x)?, true)?;
                let y = norm2.forward(&conv2.forward(&y)?, false)?;
                x + y
            }
            Layer::Output { conv } => conv.forward(x),
        }
    }
}

/// The names and shapes of every tensor of the network built from `spec`,
/// in layer order (see the module docs): the layout of a checkpoint.
pub fn parameter_shapes(spec: &ArchSpec) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, layer) in spec.layers().iter().enumerate() {
        let cin = spec.in_channels(i);
        let c = layer.out_channels();
        let mut push =
            |name: &str, shape: Vec<usize>| out.push((format!("layers.{i}.{name}"), shape));
        let kernel = match *layer {
            LayerSpec::Conv { kernel, .. } => kernel,
            _ => 3,
        };
        if spec.is_last(i) {
            push("conv.weight", vec![c, cin, kernel, kernel]);
            push("conv.bias", vec![c]);
        } else if let LayerSpec::Residual(_) = layer {
            push("conv1.weight", vec![c, c, 3, 3]);
            push("norm1.weight", vec![c]);
            push("norm1.bias", vec![c]);
            push("conv2.weight", vec![c, c, 3, 3]);
            push("norm2.weight", vec![c]);
        } else {
            push("conv.weight", vec![c, cin, kernel, kernel]);
            push("norm.weight", vec![c]);
            push("norm.bias", vec![c]);
        }
    }
    out
}

/// An activation of [`TransformerNet::forward_inference`]: a tensor, or a
/// dense `(N, C, H, W)` buffer with a pending instance norm + ReLU
/// (applied by the next direct convolution as it reads it).
enum Act {
    Tensor(Tensor),
    Pending {
        data: Vec<f32>,
        dims: [usize; 4],
        map: Option<direct::ChannelMap>,
    },
}

impl Act {
    fn dims(&self) -> Result<[usize; 4]> {
        Ok(match self {
            Act::Tensor(t) => {
                let (n, c, h, w) = t.dims4()?;
                [n, c, h, w]
            }
            Act::Pending { dims, .. } => *dims,
        })
    }

    /// The activation as a plain tensor (applying a pending map).
    fn into_tensor(self, device: &Device) -> Result<Tensor> {
        match self {
            Act::Tensor(t) => Ok(t),
            Act::Pending {
                mut data,
                dims,
                map,
            } => {
                if let Some(m) = map {
                    m.apply(&mut data, dims[2] * dims[3]);
                }
                Tensor::from_vec(data, dims.to_vec(), device)
            }
        }
    }

    /// Runs `f` on the dense data and the pending map.
    fn with_data<R>(&self, f: impl FnOnce(&[f32], Option<&direct::ChannelMap>) -> R) -> Result<R> {
        match self {
            Act::Tensor(t) => {
                let t = t.contiguous()?;
                let (storage, layout) = t.storage_and_layout();
                let candle_core::Storage::Cpu(cpu) = &*storage else {
                    bail!("TransformerNet: the inference path runs on the CPU only")
                };
                Ok(f(
                    crate::ops::contiguous_f32(cpu, layout, "transformer")?,
                    None,
                ))
            }
            Act::Pending { data, map, .. } => Ok(f(data, map.as_ref())),
        }
    }
}

/// `a + b` of two CPU f32 tensors of the same shape, into a new buffer.
fn act_sum(a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
    use rayon::prelude::*;
    if a.dims() != b.dims() {
        bail!("TransformerNet: residual {:?} + {:?}", a.dims(), b.dims())
    }
    Act::Tensor(a.clone()).with_data(|a, _| {
        Act::Tensor(b.clone()).with_data(|b, _| {
            let mut out = vec![0f32; a.len()];
            out.par_chunks_mut(1 << 14)
                .zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14)))
                .for_each(|(o, (a, b))| {
                    for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                        *o = a + b;
                    }
                });
            out
        })
    })?
}

/// The elements of a small tensor (weights, norm parameters).
fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// A feed-forward style transform network (see the module docs).
pub struct TransformerNet {
    spec: ArchSpec,
    layers: Vec<Layer>,
    /// [`ArchSpec::min_input_size`].
    min_size: usize,
    dtype: DType,
    device: Device,
}

impl TransformerNet {
    /// Builds the network for `spec`, taking its tensors from `vb` (names in
    /// the module docs). With a `VarMap`-backed builder
    /// (`VarBuilder::from_varmap`) this creates freshly initialised,
    /// trainable variables; with a safetensors-backed one it loads trained
    /// weights.
    pub fn new(spec: &ArchSpec, vb: VarBuilder) -> Result<Self> {
        let vb_layers = vb.pp("layers");
        let mut layers = Vec::with_capacity(spec.layers().len());
        for (i, layer) in spec.layers().iter().enumerate() {
            let vb = vb_layers.pp(i);
            let cin = spec.in_channels(i);
            let c = layer.out_channels();
            let layer = match *layer {
                LayerSpec::Conv { kernel, stride, .. } if spec.is_last(i) => Layer::Output {
                    conv: Conv::new(vb.pp("conv"), cin, c, kernel, stride, true)?,
                },
                LayerSpec::Conv { kernel, stride, .. } => Layer::Conv {
                    conv: Conv::new(vb.pp("conv"), cin, c, kernel, stride, false)?,
                    norm: Norm::new(vb.pp("norm"), c, true)?,
                },
                LayerSpec::Down(_) => Layer::Conv {
                    conv: Conv::new(vb.pp("conv"), cin, c, 3, 2, false)?,
                    norm: Norm::new(vb.pp("norm"), c, true)?,
                },
                LayerSpec::Up(_) => Layer::Up {
                    conv: Conv::new(vb.pp("conv"), cin, c, 3, 1, false)?,
                    norm: Norm::new(vb.pp("norm"), c, true)?,
                },
                LayerSpec::Residual(_) => Layer::Residual {
                    conv1: Conv::new(vb.pp("conv1"), c, c, 3, 1, false)?,
                    norm1: Norm::new(vb.pp("norm1"), c, true)?,
                    conv2: Conv::new(vb.pp("conv2"), c, c, 3, 1, false)?,
                    norm2: Norm::new(vb.pp("norm2"), c, false)?,
                },
            };
            layers.push(layer);
        }
        Ok(TransformerNet {
            spec: spec.clone(),
            layers,
            min_size: spec.min_input_size(),
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// Loads trained f32 weights from a safetensors file (as written by
    /// `VarMap::save`) onto `device`. Unlike a bare safetensors
    /// `VarBuilder`, this refuses a file whose tensors are not exactly those
    /// of `spec` — the usual sign of weights trained for another
    /// architecture — and names what differs.
    pub fn load(spec: &ArchSpec, path: &Path, device: &Device) -> Result<Self> {
        let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(path, device)
            .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
        let expected: BTreeMap<String, Vec<usize>> = parameter_shapes(spec).into_iter().collect();
        let mut missing: Vec<&str> = expected
            .keys()
            .filter(|k| !tensors.contains_key(*k))
            .map(String::as_str)
            .collect();
        let mut unexpected: Vec<&str> = tensors
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .map(String::as_str)
            .collect();
        let mut wrong: Vec<String> = expected
            .iter()
            .filter_map(|(k, shape)| {
                let t = tensors.get(k)?;
                (t.dims() != shape.as_slice())
                    .then(|| format!("{k} is {:?}, expected {shape:?}", t.dims()))
            })
            .collect();
        if !(missing.is_empty() && unexpected.is_empty() && wrong.is_empty()) {
            missing.truncate(5);
            unexpected.sort_unstable();
            unexpected.truncate(5);
            wrong.truncate(5);
            bail!(
                "{}: these weights are not for architecture '{spec}' (trained with another \
                 --arch?); missing: {missing:?}; unexpected: {unexpected:?}; wrong shape: {wrong:?}",
                path.display()
            );
        }
        Self::new(spec, VarBuilder::from_tensors(tensors, DType::F32, device))
    }

    /// The architecture.
    pub fn spec(&self) -> &ArchSpec {
        &self.spec
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype; inputs are converted to it.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Stylises `rgb`, `(N, 3, H, W)` in `0..1`, returning the same shape
    /// in `0..1` (see the module docs for padding and the output mapping).
    pub fn forward(&self, rgb: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = rgb.dims4()?;
        if c != RGB_CHANNELS {
            bail!(
                "TransformerNet::forward: expected (N, 3, H, W) RGB, got {:?}",
                rgb.dims()
            );
        }
        let min = self.min_size;
        if h < min || w < min {
            bail!(
                "TransformerNet::forward: a {w}x{h} image is too small for architecture \
                 '{}': both sides must be at least {min}",
                self.spec
            );
        }
        let (ph, pw) = self.spec.padded_size(h, w);
        let (top, left) = ((ph - h) / 2, (pw - w) / 2);
        let mut x = rgb.to_dtype(self.dtype)?;
        if (ph, pw) != (h, w) {
            x = pad_reflect(&x, [top, ph - h - top, left, pw - w - left])?;
        }
        if self.inference_path(&x) {
            x = self.forward_inference(x)?;
        } else {
            for layer in &self.layers {
                x = layer.forward(&x)?;
            }
            x = kernels::unit_tanh(&x)?;
        }
        if (ph, pw) != (h, w) {
            x = x.narrow(2, top, h)?.narrow(3, left, w)?.contiguous()?;
        }
        Ok(x)
    }

    /// Whether [`Self::forward_inference`] may run: f32 on the CPU, and no
    /// gradient wanted (neither the input nor any weight tracks one, as in
    /// the effects, which load trained weights as plain tensors; training's
    /// weights are `Var`s). The fused layers of that path have no backward,
    /// so anything that may be differentiated takes the op-by-op path.
    fn inference_path(&self, x: &Tensor) -> bool {
        if !(self.device.is_cpu() && self.dtype == DType::F32) || x.track_op() {
            return false;
        }
        let convs = |c: &Conv| c.weight.track_op() || c.bias.as_ref().is_some_and(|b| b.track_op());
        let norms = |n: &Norm| n.weight.track_op() || n.bias.as_ref().is_some_and(|b| b.track_op());
        !self.layers.iter().any(|l| match l {
            Layer::Conv { conv, norm } | Layer::Up { conv, norm } => convs(conv) || norms(norm),
            Layer::Residual {
                conv1,
                norm1,
                conv2,
                norm2,
            } => convs(conv1) || norms(norm1) || convs(conv2) || norms(norm2),
            Layer::Output { conv } => convs(conv),
        })
    }

    /// The forward without autograd, for inference on the CPU: the thin 3x3
    /// layers (few channels: the `fast` network's full-resolution ones) run
    /// as fused direct convolutions ([`crate::ops::direct`]): reflection
    /// padding, upsampling and the previous layer's instance norm + ReLU
    /// are applied as the input is read, the statistics of the next norm
    /// are gathered as the output is written, and the last layer applies
    /// its bias and `(tanh + 1) / 2` in place. Everything else (Winograd
    /// residual blocks, wide or large-kernel layers) runs op by op as in
    /// training. Same numbers as the op-by-op path to about 1e-6.
    fn forward_inference(&self, x: Tensor) -> Result<Tensor> {
        let mut act = Act::Tensor(x);
        for layer in &self.layers {
            let [n, cin, h, w] = act.dims()?;
            let (conv, norm, upsample) = match layer {
                Layer::Conv { conv, norm } => (conv, Some(norm), false),
                Layer::Up { conv, norm } => (conv, Some(norm), true),
                Layer::Output { conv } => (conv, None, false),
                Layer::Residual {
                    conv1,
                    norm1,
                    conv2,
                    norm2,
                } => {
                    // Winograd convolutions as in training; only the sum is
                    // done here, on rayon, rather than by candle's
                    // elementwise add (whose worker pool spins while it
                    // waits, stealing the CPU from the other threads).
                    let t = act.into_tensor(&self.device)?;
                    let y = norm1.forward(&conv1.forward(&t)?, true)?;
                    let y = norm2.forward(&conv2.forward(&y)?, false)?;
                    let data = act_sum(&t, &y)?;
                    act = Act::Pending {
                        data,
                        dims: [n, cin, h, w],
                        map: None,
                    };
                    continue;
                }
            };
            let (cout, _, kh, kw) = conv.weight.dims4()?;
            let g = DirectGeom {
                n,
                cin,
                h,
                w,
                cout,
                stride: conv.stride,
                upsample,
            };
            if !(kh == 3 && kw == 3 && g.valid() && DirectGeom::pays(cin, cout)) {
                let t = act.into_tensor(&self.device)?;
                let y = layer.forward(&t)?;
                act = Act::Tensor(if norm.is_none() {
                    kernels::unit_tanh(&y)?
                } else {
                    y
                });
                continue;
            }
            let weight = values(&conv.weight)?;
            let (oh, ow) = g.out_hw();
            let dims = [n, cout, oh, ow];
            act = match norm {
                Some(norm) => {
                    let gamma = values(&norm.weight)?;
                    let beta = norm.bias.as_ref().map(values).transpose()?;
                    let epilogue = Epilogue::Norm {
                        gamma: &gamma,
                        beta: beta.as_deref(),
                        eps: NORM_EPS,
                    };
                    let (data, map) =
                        act.with_data(|x, m| direct::conv3x3(x, m, &weight, epilogue, &g))?;
                    Act::Pending { data, dims, map }
                }
                None => {
                    let Some(bias) = conv.bias.as_ref() else {
                        bail!("TransformerNet: the output convolution has no bias")
                    };
                    let bias = values(bias)?;
                    let (data, _) = act.with_data(|x, m| {
                        direct::conv3x3(x, m, &weight, Epilogue::BiasUnitTanh(&bias), &g)
                    })?;
                    Act::Pending {
                        data,
                        dims,
                        map: None,
                    }
                }
            };
        }
        act.into_tensor(&self.device)
    }
}

impl Module for TransformerNet {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        TransformerNet::forward(self, xs)
    }
}

/// Index `i` (which may lie outside `0..n`) of a reflected (mirrored without
/// repeating the edge) axis of length `n`; a single row or column repeats.
fn reflect(i: isize, n: usize) -> u32 {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as u32
}

/// Reflection padding by `[top, bottom, left, right]` (each may exceed the
/// size, the reflection then bounces back), as two gathers. Used once per
/// forward on the 3-channel input, so speed does not matter here; it is
/// differentiable (the gathers' backward is a scatter-add).
fn pad_reflect(x: &Tensor, [top, bottom, left, right]: [usize; 4]) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let indices = |n: usize, before: usize, after: usize| {
        let idx: Vec<u32> = (-(before as isize)..(n + after) as isize)
            .map(|i| reflect(i, n))
            .collect();
        Tensor::new(idx, x.device())
    };
    x.index_select(&indices(h, top, bottom)?, 2)?
        .index_select(&indices(w, left, right)?, 3)
}
