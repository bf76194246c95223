//! The DeepDream settings, shared by `stylestream dream` (bare names:
//! `--layers`, `--steps`, ...) and `stylestream stylize --dream` (the same
//! flags as `--dream-layers`, `--dream-steps`, ..., since `stylize` has its
//! own `--preset`): one struct, one function from flags to [`DreamConfig`]
//! and one that builds the dream pass.

use anyhow::{bail, Result};
use clap::{ArgMatches, Command};
use stylestream::effects::dream::{Dream, DreamConfig, PRESETS};
use stylestream::effects::dream_stream::{DreamStream, StreamConfig};
use stylestream::effects::Effect;
use stylestream::vgg::{parse_layer_list, Vgg19};

/// DeepDream settings (`--dream-*` names; see [`Bare`] for `dream`'s).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "DeepDream settings")]
pub struct DreamArgs {
    /// A named set of the settings below: light, medium, deep, or video
    /// (light per frame, for carried video). Flags given explicitly
    /// override the preset's values [default: medium; live, and `stylize`
    /// on a video: video].
    #[arg(long, value_name = "NAME", value_parser = parse_preset)]
    pub dream_preset: Option<String>,

    /// Layers to amplify, comma separated (conv/relu/pool names) [preset
    /// medium: relu4_2].
    #[arg(long, value_name = "LAYERS")]
    pub dream_layers: Option<String>,

    /// Amplify only these channels of the layers (comma separated numbers)
    /// instead of the whole layer: each channel is one "thing" the network sees.
    #[arg(long, value_name = "N,...", value_delimiter = ',')]
    pub dream_channels: Vec<usize>,

    /// Number of scales to dream at [medium: 4].
    #[arg(long, value_name = "N")]
    pub dream_octaves: Option<usize>,

    /// Size ratio between consecutive octaves [medium: 1.4].
    #[arg(long, value_name = "RATIO")]
    pub dream_octave_scale: Option<f64>,

    /// Gradient-ascent steps per octave [medium: 10].
    #[arg(long, value_name = "N")]
    pub dream_steps: Option<usize>,

    /// Step length in pixel levels (0..255) after gradient normalisation
    /// [medium: 1.5].
    #[arg(long, value_name = "LEVELS")]
    pub dream_step_size: Option<f64>,

    /// Largest random shift in pixels before each step (0 disables jitter)
    /// [medium: 32].
    #[arg(long, value_name = "PIXELS")]
    pub dream_jitter: Option<usize>,

    /// Seed for the jitter.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub dream_seed: u64,

    /// Compute each step's gradient in tiles of at most this many pixels a
    /// side, so that large images fit in memory (0: never tile).
    #[arg(long, default_value_t = DreamConfig::default().tile_size, value_name = "PIXELS")]
    pub dream_tile_size: usize,

    /// Video and live only: how much of the previous frame's dream carries
    /// into the next (0: dream every frame afresh, which flickers; 0.9:
    /// patterns persist strongly). Carried frames take fewer steps; scene
    /// cuts reset.
    #[arg(long, default_value_t = StreamConfig::default().carry, value_name = "0..1")]
    pub dream_carry: f64,

    /// Video and live only: mean change between consecutive frames (0..1
    /// pixel values) above which a frame is a scene cut that resets the carry.
    #[arg(long, default_value_t = StreamConfig::default().cut_threshold, value_name = "0..1")]
    pub cut_threshold: f64,
}

/// Checks a preset name against the known ones.
fn parse_preset(s: &str) -> Result<String> {
    match DreamConfig::preset(s) {
        Some(_) => Ok(s.to_string()),
        None => bail!(
            "unknown preset '{s}'; choose one of: {}",
            PRESETS
                .iter()
                .map(|(n, d)| format!("{n} ({d})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl DreamArgs {
    /// The preset's settings (`default_preset` when none was given) with
    /// the explicitly given flags on top.
    pub fn config(&self, default_preset: &str) -> Result<DreamConfig> {
        let name = self.dream_preset.as_deref().unwrap_or(default_preset);
        let mut c = DreamConfig::preset(name)
            .ok_or_else(|| anyhow::anyhow!("internal: no dream preset '{name}'"))?;
        if let Some(l) = &self.dream_layers {
            c.layers = parse_layer_list(l)?;
        }
        c.channels = self.dream_channels.clone();
        c.octaves = self.dream_octaves.unwrap_or(c.octaves);
        c.octave_scale = self.dream_octave_scale.unwrap_or(c.octave_scale);
        c.steps = self.dream_steps.unwrap_or(c.steps);
        c.step_size = self.dream_step_size.unwrap_or(c.step_size);
        c.jitter = self.dream_jitter.unwrap_or(c.jitter);
        c.seed = self.dream_seed;
        c.tile_size = self.dream_tile_size;
        Ok(c)
    }

    /// The frame-to-frame carry, checked: `None` when it is 0 (every frame
    /// dreamed afresh).
    pub fn stream(&self) -> Result<Option<StreamConfig>> {
        let carry = self.dream_carry;
        if !(0.0..1.0).contains(&carry) {
            bail!(
                "the dream carry (--carry, --dream-carry) {carry} is out of range: use 0 (no \
                 carry) up to, not including, 1"
            );
        }
        Ok((carry > 0.0).then_some(StreamConfig {
            carry,
            cut_threshold: self.cut_threshold,
        }))
    }

    /// One dream pass on `vgg`: a plain [`Dream`] for still images
    /// (`frames` false), a [`DreamStream`] carried from frame to frame for
    /// video and live (unless the carry is 0).
    pub fn pass<'a>(
        &self,
        vgg: &'a Vgg19,
        default_preset: &str,
        frames: bool,
    ) -> Result<Box<dyn Effect + 'a>> {
        let stream = self.stream()?;
        let dream = Dream::new(vgg, self.config(default_preset)?)?;
        Ok(match stream {
            Some(s) if frames => Box::new(DreamStream::new(dream, s)),
            _ => Box::new(dream),
        })
    }
}

/// `--dream-X` flags and the bare `--X` names `stylestream dream` uses.
/// `--dream-preset` keeps its name: `--preset` is the video encoder's
/// speed in both commands.
const BARE_NAMES: &[(&str, &str)] = &[
    ("dream-layers", "layers"),
    ("dream-channels", "channels"),
    ("dream-octaves", "octaves"),
    ("dream-octave-scale", "octave-scale"),
    ("dream-steps", "steps"),
    ("dream-step-size", "step-size"),
    ("dream-jitter", "jitter"),
    ("dream-seed", "seed"),
    ("dream-tile-size", "tile-size"),
    ("dream-carry", "carry"),
];

/// [`DreamArgs`] under bare names (`--layers`, `--steps`, `--carry`, ...;
/// `--dream-preset` stays),
/// with the `--dream-*` names kept as aliases: for `stylestream dream`,
/// where nothing clashes.
#[derive(Debug, Clone)]
pub struct Bare(pub DreamArgs);

fn bare_names(cmd: Command) -> Command {
    cmd.mut_args(|a| {
        let found = BARE_NAMES
            .iter()
            .find(|(prefixed, _)| a.get_long() == Some(*prefixed));
        match found {
            Some((prefixed, bare)) => a.long(*bare).alias(*prefixed),
            None => a,
        }
    })
}

impl clap::FromArgMatches for Bare {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        DreamArgs::from_arg_matches(m).map(Self)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
}

impl clap::Args for Bare {
    fn augment_args(cmd: Command) -> Command {
        bare_names(DreamArgs::augment_args(cmd))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        bare_names(DreamArgs::augment_args_for_update(cmd))
    }

    fn group_id() -> Option<clap::Id> {
        DreamArgs::group_id()
    }
}
