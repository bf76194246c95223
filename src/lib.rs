//! # stylestream
//!
//! Paint images and video like an artist: neural style transfer (Gatys et al.
//! optimisation and Johnson et al. feed-forward networks) and DeepDream, on
//! CPU and GPU, built on [candle](https://github.com/huggingface/candle).
//!
//! The library is laid out the way frames flow through the tool:
//!
//! * [`image_io`] — frame sources and sinks for still images (decode, convert
//!   to tensors, write atomically).
//! * [`video`] — video files through FFmpeg: decode, run the effects,
//!   encode, keeping every frame's timing and the audio.
//! * [`live`] — the live filter: a webcam (or a video in real time)
//!   painted as it happens, to a window, a browser, a virtual camera or a
//!   file.
//! * [`effects`] — what turns a frame into a painted frame: [`effects::gatys`]
//!   (slow optimisation, the quality reference) and [`effects::dream`]
//!   (multi-octave DeepDream).
//! * [`vgg`] — the pretrained VGG19 loss/dream network: weights download and
//!   conversion, Caffe preprocessing, and a forward pass that returns named
//!   activations.
//! * [`losses`] — content, Gram-matrix style and total-variation losses shared
//!   by Gatys, DeepDream and training.
//! * [`optim`] — L-BFGS and Adam over image pixels.
//! * [`models`] — the feed-forward transform networks (Johnson et al.).
//! * [`training`] — the training loop of `stylestream-train` (data, losses,
//!   checkpoints, reports).
//! * [`ops`] — fast CPU kernels (as candle custom ops) for the layers the
//!   networks use.
//! * [`device`] — `--device cpu|cuda:N` parsing.

pub mod device;
pub mod effects;
pub mod image_io;
pub mod live;
pub mod losses;
pub mod models;
pub mod ops;
pub mod optim;
pub mod training;
pub mod vgg;
pub mod video;
