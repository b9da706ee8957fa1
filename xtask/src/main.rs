//! `cargo xtask`: the project's entry point for everything beyond
//! `cargo test` (matklad's xtask pattern).
//!
//! - `cargo xtask ci`: formatting, clippy, tests, and the no_std builds of
//!   the runtime for `thumbv7em-none-eabihf`: the project's test command.
//! - `cargo xtask check-thumb`: only the no_std builds.
//! - `cargo xtask toolchain`: which toolchain builds for the device, and why.
//! - `cargo xtask firmware|qemu|bench-mcu`: build the firmware, run it under
//!   QEMU, count its instructions.

mod bench_mcu;
mod bench_robust;
mod bench_train;
mod ci;
mod cmd;
mod curves;
mod elf;
mod example;
mod firmware;
mod fuzz;
mod loop_cmd;
mod publication;
mod qemu;
mod sizes;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [--keep-going]

commands:
  ci            the project's checks: fmt, clippy, tests, and the no_std
                builds of tinyppo-runtime for thumbv7em-none-eabihf
  check-thumb   only the no_std builds for thumbv7em-none-eabihf
  bench-train [--seeds N] [--env NAME]...
                train every plant over N seeds (default 5) and print the
                benchmark table (steps, seconds, steps/s, int8 eval return)
  gate …        alias of `loop --publication …` (see below)
  curves [--seeds N] [--out FILE]
                learning curves of reinforce, a2c, ppo and trpo on pendulum and
                cartpole over N seeds (default 5): final int8 eval table and
                one PNG (default docs/learning-curves.png)
  toolchain     show which toolchain builds for thumbv7em-none-eabihf, and why
  firmware [--policy FILE] [--env NAME] [--board f411] [--release]
                build firmware/ with the policy blob embedded (default
                firmware/policies/pendulum.bin) and print its size;
                --board f411: the STM32F411 \"Black Pill\" binary
  qemu [--policy FILE] [--env NAME] [--episodes N] [--seed S]
       [--deterministic] [--timeout SECS] --out FILE
                build the firmware (release) and run it under QEMU
                (mps2-an386); UART0's log stream goes to FILE
  check-firmware
                only the firmware steps of ci: device builds, the QEMU run
                and its comparison with `tinyppo simulate`
  sizes [--bless]
                the device binaries' size files (firmware/sizes/) and symbol
                check (no f64 soft-float, float formatting or 64-bit division);
                --bless rewrites the files
  bench-mcu [--json]
                instruction counts of act(), the device math table, firmware
                size and RAM high-water, under QEMU -icount
  loop …        the off-policy loop benchmarks (see below)
  bench-robust …
                the sim-to-real benchmark (see below)
  fuzz …        the fuzz targets (see below)
  help          this text

options:
  --keep-going  (ci, check-thumb, check-firmware) run every step even after one fails

environment:
  TINYPPO_TOOLCHAIN=rustup|debian|auto   force how the thumb target is built
                                         (default auto: rustup, else Debian's rustc)";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let keep_going = args.contains(&"--keep-going");
    args.retain(|a| *a != "--keep-going");
    let root = workspace_root()?;
    match args.as_slice() {
        ["ci"] => ci::run_steps(&mut ci::Ctx::new(root), "ci", ci::ci_steps(), keep_going),
        ["check-thumb"] => {
            let steps = ci::thumb_steps();
            ci::run_steps(&mut ci::Ctx::new(root), "check-thumb", steps, keep_going)
        }
        ["toolchain"] => {
            let tc = toolchain::Toolchain::detect(&root)?;
            println!("{tc}");
            println!("output:    {}", tc.artifact_dir(&root, "release").display());
            Ok(())
        }
        ["bench-train", rest @ ..] => {
            let mut opts = bench_train::Opts::default();
            let mut envs = Vec::new();
            let mut it = rest.iter();
            while let Some(&a) = it.next() {
                match a {
                    "--seeds" => {
                        opts.seeds = it
                            .next()
                            .context("--seeds needs a number")?
                            .parse()
                            .context("--seeds")?
                    }
                    "--env" => envs.push(it.next().context("--env needs a name")?.to_string()),
                    "--speed-reps" => {
                        opts.speed_reps = it
                            .next()
                            .context("--speed-reps needs a number")?
                            .parse()
                            .context("--speed-reps")?
                    }
                    other => bail!("bench-train: unknown argument `{other}`\n\n{USAGE}"),
                }
            }
            if !envs.is_empty() {
                opts.envs = envs;
            }
            bench_train::run(&root, &opts)
        }
        ["curves", rest @ ..] => {
            let (mut seeds, mut out) = (5u64, root.join("docs").join("learning-curves.png"));
            let mut it = rest.iter();
            while let Some(&a) = it.next() {
                match a {
                    "--seeds" => {
                        seeds = it
                            .next()
                            .context("--seeds needs a number")?
                            .parse()
                            .context("--seeds")?
                    }
                    "--out" => out = PathBuf::from(it.next().context("--out needs a file")?),
                    other => bail!("curves: unknown argument `{other}`\n\n{USAGE}"),
                }
            }
            curves::run(&root, seeds, &out)
        }
        ["gate", rest @ ..] | ["loop", "--publication", rest @ ..] => {
            publication::run(&root, &publication::Opts::parse(rest)?)
        }
        ["check-firmware"] => {
            let steps = ci::firmware_steps();
            ci::run_steps(&mut ci::Ctx::new(root), "check-firmware", steps, keep_going)
        }
        ["firmware", rest @ ..] => firmware::run(&root, rest),
        ["qemu", rest @ ..] => qemu::cli(&root, rest),
        ["bench-mcu", rest @ ..] => bench_mcu::run(&root, rest),
        ["sizes", rest @ ..] => sizes::run(&root, rest),
        ["fuzz", rest @ ..] => fuzz::run(&root, &fuzz::Opts::parse(rest)?),
        ["bench-robust", rest @ ..] => bench_robust::run(&root, &bench_robust::Opts::parse(rest)?),
        ["loop", rest @ ..] => loop_cmd::run(&root, &loop_cmd::LoopOpts::parse(rest)?),
        [] | ["help" | "-h" | "--help"] => {
            println!(
                "{USAGE}\n\nthe off-policy loop benchmarks:\n{}\n{}\n\nthe sim-to-real benchmark:\n{}\n\nfuzzing:\n{}",
                loop_cmd::USAGE,
                publication::USAGE,
                bench_robust::USAGE,
                fuzz::USAGE
            );
            Ok(())
        }
        other => bail!("unknown arguments `{}`\n\n{USAGE}", other.join(" ")),
    }
}

/// Workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().map(Path::to_path_buf).ok_or_else(|| {
        anyhow!(
            "xtask manifest dir {} has no parent",
            manifest_dir.display()
        )
    })
}
