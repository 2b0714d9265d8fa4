//! `cadence`: generate clips, fetch and check weights. This file only parses the command line,
//! sets up output and turns the outcome into an exit code; each subcommand lives in its module.

mod args;
mod bench;
mod check;
mod device;
mod errors;
mod fetch;
mod generate;
mod interrupt;
mod logging;
mod plan;
mod progress;
mod select;
#[cfg(feature = "selftest")]
mod selftest;
mod summary;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::logging::Output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output::init(&cli.log);
    let result = match &cli.command {
        Command::Generate(a) => generate::run(a, &out),
        Command::Fetch(a) => fetch::run(a, &out),
        Command::Check(a) => check::run(a),
        #[cfg(feature = "selftest")]
        Command::Selftest(a) => selftest::run(a),
        Command::Bench(a) => bench::run(a, &out),
        Command::Plan(a) => plan::run(a),
        Command::Serve(a) => cadence_serve::run(a)
            .map_err(|e| errors::CliError::new(errors::ExitKind::Other, e.to_string())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.multi.suspend(|| eprintln!("error: {e}"));
            e.kind.into()
        }
    }
}
