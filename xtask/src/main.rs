//! `cargo xtask`: the project's entry point for everything beyond
//! `cargo test` (matklad's xtask pattern).
//!
//! - `cargo xtask ci`: formatting, clippy, tests, and the no_std builds of
//!   the runtime for `thumbv7em-none-eabihf`: the project's test command.
//! - `cargo xtask check-thumb`: only the no_std builds.
//! - `cargo xtask toolchain`: which toolchain builds for the device, and why.

mod ci;
mod cmd;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [--keep-going]

commands:
  ci            the project's checks: fmt, clippy, tests, and the no_std
                builds of tinyppo-runtime for thumbv7em-none-eabihf
  check-thumb   only the no_std builds for thumbv7em-none-eabihf
  toolchain     show which toolchain builds for thumbv7em-none-eabihf, and why
  help          this text

options:
  --keep-going  (ci, check-thumb) run every step even after one fails

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
        [] | ["help" | "-h" | "--help"] => {
            println!("{USAGE}");
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
