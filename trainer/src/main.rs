//! `tinyppo`: the command line with the built-in plants
//! ([`tinyppo_trainer::cli`]).

use std::process::ExitCode;

use tinyppo_trainer::{cli, registry::Registry};

fn main() -> ExitCode {
    cli::run(Registry::builtin())
}
