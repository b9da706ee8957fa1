//! `heater`: the `tinyppo` command line (train, eval, export, inspect,
//! simulate, logs, finetune, study, plot, plants) with the TCLab heater
//! registered next to the built-in plants, under its preset `heater.toml`.

use std::process::ExitCode;

use heater_plant::{Heater, OBS};
use tinyppo_trainer::{cli, registry::Registry};

fn main() -> ExitCode {
    cli::run(Registry::builtin().with::<Heater, OBS, 1>(include_str!("../heater.toml")))
}
