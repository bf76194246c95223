//! `stylestream models`: the trained models `--model NAME` can use.

use anyhow::Result;
use stylestream::models::file::{list_models, model_dirs};

/// List the trained models that `--model NAME` finds, with their style,
/// objective and architecture.
///
/// Models are looked up as NAME.safetensors in $STYLESTREAM_MODELS
/// (colon-separated folders), ./weights, and the weights/ folder of the
/// source tree stylestream was built from; the first match wins.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also print each model's training configuration and validation losses.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(args: Args) -> Result<()> {
    let models = list_models();
    if models.is_empty() {
        eprintln!(
            "no models found in {}; train one with stylestream-train",
            model_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    println!(
        "{:<28} {:<7} {:<24} {:<8} path",
        "name", "kind", "style", "arch"
    );
    for m in &models {
        match &m.info {
            Ok(info) => {
                println!(
                    "{:<28} {:<7} {:<24} {:<8} {}",
                    m.name,
                    info.objective,
                    info.style,
                    info.preset,
                    m.path.display()
                );
                if args.verbose {
                    println!("    arch: {}", info.arch);
                    println!("    training: {}", info.training);
                }
            }
            Err(e) => println!("{:<28} unreadable: {e}", m.name),
        }
    }
    Ok(())
}
