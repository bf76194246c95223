//! The `stylestream` command line: one module per subcommand.

mod common;
mod devices;
mod dream;
mod dream_args;
mod evaluate;
mod features;
mod fetch_vgg;
mod gatys;
mod live;
mod models;
mod stylize;
mod video_args;

use anyhow::Result;
use clap::{ArgMatches, Parser, Subcommand};

const ABOUT: &str = "Paint images like an artist: neural style transfer and DeepDream.";

const LONG_ABOUT: &str = "\
Paint images like an artist: neural style transfer and DeepDream, on CPU or GPU.

Every effect looks through VGG19, a network trained to recognise objects.
Download its weights once with `stylestream fetch-vgg`, then:

  stylestream gatys --content photo.jpg --style starry_night.jpg --output painted.png
  stylestream stylize --input photo.jpg --output painted.png --model starry_night
  stylestream dream --input photo.jpg --output dream.png
  stylestream stylize --input clip.mp4 --output out.mp4 --model starry_night_fast --dream
  stylestream features --input photo.jpg --layers relu1_1,relu4_2 --output feats.safetensors

Run `stylestream <COMMAND> --help` for what each command does and its options.";

#[derive(Parser, Debug)]
#[command(name = "stylestream", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    FetchVgg(fetch_vgg::Args),
    Gatys(gatys::Args),
    Dream(dream::Args),
    Stylize(stylize::Args),
    Models(models::Args),
    Features(features::Args),
    Evaluate(evaluate::Args),
    Devices(devices::Args),
}

/// Runs the command; `matches` are the parsed command line `cli` came
/// from (stylize reads the order of its flags there).
pub fn run(cli: Cli, matches: &ArgMatches) -> Result<()> {
    match cli.command {
        Command::FetchVgg(args) => fetch_vgg::run(args),
        Command::Gatys(args) => gatys::run(args),
        Command::Dream(args) => dream::run(args),
        Command::Stylize(args) => stylize::run(args, matches.subcommand_matches("stylize")),
        Command::Models(args) => models::run(args),
        Command::Features(args) => features::run(args),
        Command::Evaluate(args) => evaluate::run(args),
        Command::Devices(args) => devices::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// No two flags of a command share a name or alias (clap only checks
    /// that in debug builds; the first of two would silently win).
    #[test]
    fn flag_names_are_unique() {
        let cli = Cli::command();
        for cmd in cli.get_subcommands() {
            let mut seen = std::collections::HashSet::new();
            for arg in cmd.get_arguments() {
                let longs = arg
                    .get_long()
                    .into_iter()
                    .chain(arg.get_all_aliases().unwrap_or_default());
                for long in longs {
                    assert!(
                        seen.insert(long.to_string()),
                        "{}: --{long} is defined twice",
                        cmd.get_name()
                    );
                }
            }
        }
    }
}
