//! `repoint`: point container images at the registries you choose.
//!
//! This binary is glue: argument parsing, reading inputs, rendering output.
//! The logic lives in the library crates (`repoint-core` for now).
//! Exit codes: 0 ok, 1 findings (`check`), 2 error.

mod args;
mod images;
mod input;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Images(a) => images::run(&a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("repoint: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
