//! VGG19, the pretrained network that every loss and dream looks through.
//!
//! * [`weights`] — finding, downloading (`stylestream fetch-vgg`), converting
//!   and validating the weights file.
//! * [`torch_legacy`] — a reader for the legacy (non-zip) `torch.save` pickle
//!   the original quantised weights ship in.
//! * [`layers`] — layer names (`relu4_2`, `pool3`, ...).
//! * [`preprocess`] — the Caffe input convention, in one place.
//! * [`model`] — the network itself.

pub mod layers;
pub mod model;
pub mod preprocess;
pub mod torch_legacy;
pub mod weights;

pub use layers::{parse_layer_list, Layer};
pub use model::{Activations, Pooling, Vgg19};
