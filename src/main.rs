//! `stylestream`: paint images (and, later, video and webcams) like an artist.
//!
//! This binary is a thin shell over the library: each subcommand lives in
//! its own module under `src/cli/`, parses its flags, and calls library code.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    stylestream::ops::allocator::keep_freed_memory();
    let matches = cli::Cli::command().get_matches();
    let args = cli::Cli::from_arg_matches(&matches)
        .unwrap_or_else(|e| e.format(&mut cli::Cli::command()).exit());
    match cli::run(args, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stylestream: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
