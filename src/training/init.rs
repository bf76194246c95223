//! Seeded initial weights for a transform network.
//!
//! candle's CPU generator cannot be seeded, and `--seed` must make a run
//! reproducible, so the initial tensors are drawn here from a seeded
//! generator and handed to the network through its `VarMap`. The rules are
//! those of [`crate::models::transformer`]: Kaiming-uniform convolutions
//! (ReLU gain, linear gain for the last one), norm scales 1, shifts and the
//! last bias 0.

use std::collections::HashMap;

use candle_core::{Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::models::{parameter_shapes, ArchSpec};

/// The initial tensors of a network of `spec`, named as the network names
/// them, drawn from `seed`.
pub fn initial_parameters(
    spec: &ArchSpec,
    seed: u64,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let last = spec.layers().len() - 1;
    let last_prefix = format!("layers.{last}.");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = HashMap::new();
    // parameter_shapes lists names in a fixed order, so draws are stable.
    for (name, shape) in parameter_shapes(spec) {
        let numel: usize = shape.iter().product();
        let is_conv_weight = name.contains(".conv") && name.ends_with(".weight");
        let data: Vec<f32> = if is_conv_weight {
            let fan_in: usize = shape[1..].iter().product();
            let gain = if name.starts_with(&last_prefix) {
                1.0
            } else {
                2f64.sqrt()
            };
            let bound = (gain * (3.0 / fan_in as f64).sqrt()) as f32;
            (0..numel)
                .map(|_| rng.random_range(-bound..=bound))
                .collect()
        } else if name.ends_with(".weight") {
            vec![1.0; numel]
        } else {
            vec![0.0; numel]
        };
        out.insert(name, Tensor::from_vec(data, shape, device)?);
    }
    Ok(out)
}
