//! The feed-forward transform networks of Johnson, Alahi and Fei-Fei (2016):
//! one forward pass paints a frame in a style learned at training time
//! (`stylestream-train`), fast enough for video (`stylestream stylize`).
//!
//! * [`spec`] — architecture spec strings in the paper's notation
//!   (`c9s1-32,d64,d128,5xR128,u64,u32,c9s1-3`), their validation, the
//!   `johnson` and `fast` presets, and FLOP and parameter counts.
//! * [`transformer`] — the network itself, [`TransformerNet`], built from a
//!   spec and a `candle_nn::VarBuilder` (fresh variables to train, or a
//!   checkpoint to run); its module docs list the tensor names.
//! * [`file`] — model files: safetensors plus the metadata needed to run
//!   them (spec, style, training), and model lookup by name.
//!
//! ```no_run
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use stylestream::models::{preset, TransformerNet};
//!
//! let spec = preset("fast").unwrap();
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
//! let net = TransformerNet::new(&spec, vb)?;
//! let frame = Tensor::rand(0f32, 1., (1, 3, 480, 640), &Device::Cpu)?;
//! let painted = net.forward(&frame)?; // (1, 3, 480, 640), in 0..1
//! println!("{:.1} GFLOP per frame", spec.flops(480, 640) as f64 / 1e9);
//! # Ok::<(), candle_core::Error>(())
//! ```

pub mod file;
pub mod spec;
pub mod transformer;

pub use file::{load_model, resolve_model, save_model, ModelInfo};
pub use spec::{
    preset, ArchSpec, ConvShape, LayerSpec, SpecError, FAST_SPEC, JOHNSON_SPEC, PRESETS,
    RGB_CHANNELS,
};
pub use transformer::{parameter_shapes, TransformerNet, NORM_EPS};
