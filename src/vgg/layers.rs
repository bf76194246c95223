//! The names of VGG19's layers, in forward order, as users type them.
//!
//! Names follow the papers (`conv1_1`, `relu1_1`, ..., `pool5`): block
//! number, then position inside the block. A [`Layer`] is an index into
//! [`LAYER_NAMES`], so "the deepest layer asked for" is a simple `max`.

use anyhow::{bail, Result};

/// Every addressable layer of VGG19's convolutional part, in forward order.
pub const LAYER_NAMES: [&str; 37] = [
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", //
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2", //
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4",
    "pool3", //
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4",
    "pool4", //
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4",
    "pool5",
];

/// One of VGG19's layers; ordered by depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Layer(usize);

/// What a layer does, which the forward pass dispatches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// A 3x3 convolution; the payload is its index among the 16 convolutions.
    Conv(usize),
    Relu,
    Pool,
}

impl Layer {
    /// Every layer, shallow to deep.
    pub fn all() -> impl Iterator<Item = Layer> {
        (0..LAYER_NAMES.len()).map(Layer)
    }

    pub fn index(self) -> usize {
        self.0
    }

    pub fn name(self) -> &'static str {
        LAYER_NAMES[self.0]
    }

    pub fn kind(self) -> LayerKind {
        let name = self.name();
        if name.starts_with("conv") {
            let convs_before = LAYER_NAMES[..self.0]
                .iter()
                .filter(|n| n.starts_with("conv"))
                .count();
            LayerKind::Conv(convs_before)
        } else if name.starts_with("relu") {
            LayerKind::Relu
        } else {
            LayerKind::Pool
        }
    }

    /// The number of channels this layer outputs.
    pub fn channels(self) -> usize {
        let block = self.name().as_bytes()[4] - b'0';
        [64, 128, 256, 512, 512][block as usize - 1]
    }

    /// How many times smaller than the input this layer's output is (per side).
    pub fn downsampling(self) -> usize {
        let block = (self.name().as_bytes()[4] - b'0') as u32;
        let pools_before = if self.kind() == LayerKind::Pool {
            block
        } else {
            block - 1
        };
        1 << pools_before
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Layer {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        match LAYER_NAMES.iter().position(|n| *n == wanted) {
            Some(i) => Ok(Layer(i)),
            None => bail!(
                "unknown VGG19 layer '{s}'; layers are conv1_1..conv5_4, relu1_1..relu5_4 \
                 and pool1..pool5 (blocks 1-2 have 2 convolutions, blocks 3-5 have 4)"
            ),
        }
    }
}

/// Parses a comma-separated list such as `relu1_1,relu2_1`; empty items are ignored.
pub fn parse_layer_list(list: &str) -> Result<Vec<Layer>> {
    let layers: Vec<Layer> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_>>()?;
    if layers.is_empty() {
        bail!("no layer given in '{list}'");
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_round_trip_and_describe_themselves() {
        let relu4_2: Layer = "relu4_2".parse().unwrap();
        assert_eq!(relu4_2.name(), "relu4_2");
        assert_eq!(relu4_2.channels(), 512);
        assert_eq!(relu4_2.downsampling(), 8);
        assert_eq!("pool1".parse::<Layer>().unwrap().downsampling(), 2);
        assert_eq!(
            "conv1_1".parse::<Layer>().unwrap().kind(),
            LayerKind::Conv(0)
        );
        assert_eq!(
            "conv5_4".parse::<Layer>().unwrap().kind(),
            LayerKind::Conv(15)
        );
        assert!("relu6_1".parse::<Layer>().is_err());
        assert!(parse_layer_list(" , ").is_err());
        assert_eq!(parse_layer_list("relu1_1, relu2_1").unwrap().len(), 2);
    }
}
