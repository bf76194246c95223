//! `stylestream`: paint images (and, later, video and webcams) like an artist.
//!
//! This binary is a thin shell over the library: each subcommand lives in
//! its own module under `src/cli/`, parses its flags, and calls library code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stylestream: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
