//! `cargo xtask firmware`: builds `firmware/` for the Cortex-M4F.
//!
//! The firmware is its own workspace; cargo runs from `firmware/` so its
//! `.cargo/config.toml` (target, QEMU runner) applies, through
//! [`Toolchain::cargo`] so the Debian `-Zbuild-std` fallback works too. The
//! build-time inputs are environment variables read by `firmware/build.rs`:
//! `TINYPPO_POLICY` (blob path), `TINYPPO_ENV` (plant), `TINYPPO_EPISODES`,
//! `TINYPPO_SEED`, `TINYPPO_DETERMINISTIC`. They are always set explicitly
//! here (defaults included), so a variable left in the caller's shell
//! cannot change what CI builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd;
use crate::toolchain::Toolchain;

/// The firmware's main binary.
pub const MAIN_BIN: &str = "tinyppo-firmware";
/// The instruction-count benchmark binary (feature `bench`).
pub const BENCH_BIN: &str = "bench";
/// The STM32F411 "Black Pill" binary (feature `board-f411`).
pub const BOARD_BIN: &str = "board";
/// Its feature.
pub const BOARD_FEATURE: &str = "board-f411";

/// What to build.
#[derive(Debug, Clone)]
pub struct Build {
    /// Policy blob to embed; `None`: `firmware/policies/pendulum.bin`.
    pub policy: Option<PathBuf>,
    /// Plant name (`pendulum`, `mountain-car`, `cartpole`, `dc-motor`).
    pub env: String,
    /// Episodes the firmware simulates.
    pub episodes: u32,
    /// Seed of the simulation.
    pub seed: u64,
    /// Apply the mean action instead of sampling.
    pub deterministic: bool,
    /// `--release` (else the dev profile).
    pub release: bool,
    /// Binary to build.
    pub bin: &'static str,
    /// Cargo features of the firmware crate.
    pub features: Vec<&'static str>,
}

impl Default for Build {
    fn default() -> Self {
        Build {
            policy: None,
            env: "pendulum".into(),
            episodes: 3,
            seed: 1,
            deterministic: false,
            release: true,
            bin: MAIN_BIN,
            features: Vec::new(),
        }
    }
}

/// A built ELF and its section sizes.
#[derive(Debug, Clone)]
pub struct Built {
    pub elf: PathBuf,
    pub sizes: Option<Sizes>,
}

/// `size` (Berkeley format) of an ELF: flash = text + data, static RAM =
/// data + bss.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub text: u64,
    pub data: u64,
    pub bss: u64,
}

impl Sizes {
    pub fn flash(&self) -> u64 {
        self.text + self.data
    }
    pub fn static_ram(&self) -> u64 {
        self.data + self.bss
    }
}

/// `firmware/` under the workspace root.
pub fn dir(root: &Path) -> PathBuf {
    root.join("firmware")
}

/// The cargo command that builds `b` (not yet run).
pub fn command(root: &Path, tc: &Toolchain, b: &Build) -> Result<Command> {
    let fw = dir(root);
    let policy = match &b.policy {
        Some(p) => {
            std::path::absolute(p).with_context(|| format!("policy path {}", p.display()))?
        }
        None => fw.join("policies/pendulum.bin"),
    };
    if !policy.is_file() {
        bail!("policy blob {} does not exist", policy.display());
    }
    let mut c = tc.cargo(&fw, "build");
    if b.release {
        c.arg("--release");
    }
    c.args(["--bin", b.bin]);
    if !b.features.is_empty() {
        c.args(["--features", &b.features.join(",")]);
    }
    c.env("TINYPPO_POLICY", &policy)
        .env("TINYPPO_ENV", &b.env)
        .env("TINYPPO_EPISODES", b.episodes.to_string())
        .env("TINYPPO_SEED", b.seed.to_string())
        .env(
            "TINYPPO_DETERMINISTIC",
            if b.deterministic { "1" } else { "0" },
        );
    Ok(c)
}

/// Builds `b` and returns the ELF (with its sizes, if `size` is installed).
pub fn build(root: &Path, tc: &Toolchain, b: &Build) -> Result<Built> {
    cmd::run(&mut command(root, tc, b)?)?;
    let profile = if b.release { "release" } else { "dev" };
    let elf = tc.artifact_dir(&dir(root), profile).join(b.bin);
    if !elf.is_file() {
        bail!("the build succeeded but {} is missing", elf.display());
    }
    let sizes = match sizes(&elf) {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("note: no section sizes: {e:#}");
            None
        }
    };
    Ok(Built { elf, sizes })
}

/// Runs `arm-none-eabi-size` (else binutils' `size`, which also reads ARM
/// ELF files) on `elf`.
pub fn sizes(elf: &Path) -> Result<Sizes> {
    let mut last_err = None;
    for tool in ["arm-none-eabi-size", "size"] {
        let out = match Command::new(tool).arg(elf).output() {
            Ok(o) => o,
            Err(e) => {
                last_err = Some(format!("`{tool}`: {e}"));
                continue;
            }
        };
        if !out.status.success() {
            last_err = Some(format!(
                "`{tool} {}` failed: {}",
                elf.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            continue;
        }
        return parse_size(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("output of `{tool} {}`", elf.display()));
    }
    bail!(
        "{} (install binutils-arm-none-eabi or binutils)",
        last_err.unwrap_or_default()
    )
}

/// Parses the Berkeley output of `size`: a header line, then
/// `text data bss dec hex filename`.
fn parse_size(out: &str) -> Result<Sizes> {
    let line = out.lines().nth(1).context("no data line")?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .take(3)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("unexpected line {line:?}"))?;
    match nums[..] {
        [text, data, bss] => Ok(Sizes { text, data, bss }),
        _ => bail!("unexpected line {line:?}"),
    }
}

/// `cargo xtask firmware [--policy FILE] [--env NAME] [--board f411] [--release]`.
pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let mut b = Build {
        release: false,
        ..Build::default()
    };
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "--policy" => b.policy = Some(it.next().context("--policy needs a file")?.into()),
            "--env" => b.env = it.next().context("--env needs a plant name")?.to_string(),
            "--release" => b.release = true,
            "--board" => match it.next().copied() {
                Some("f411") => {
                    b.bin = BOARD_BIN;
                    b.features = vec![BOARD_FEATURE];
                }
                other => bail!("--board: only `f411` (STM32F411CEU6) is known, not {other:?}"),
            },
            other => bail!("firmware: unknown argument `{other}`"),
        }
    }
    let tc = Toolchain::detect(root)?;
    println!("toolchain: {} ({})", tc.name(), tc.rustc_version);
    let built = build(root, &tc, &b)?;
    println!("firmware:  {}", built.elf.display());
    if let Some(s) = built.sizes {
        print_sizes(&s);
    }
    Ok(())
}

pub fn print_sizes(s: &Sizes) {
    println!(
        "size:      text {} + data {} = {} B flash ({:.1} KiB); data {} + bss {} = {} B static RAM",
        s.text,
        s.data,
        s.flash(),
        s.flash() as f64 / 1024.0,
        s.data,
        s.bss,
        s.static_ram()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_berkeley_size_output() {
        let out = "   text\t   data\t    bss\t    dec\t    hex\tfilename\n  41324\t      0\t     16\t  41340\t   a17c\tfw\n";
        let s = parse_size(out).unwrap();
        assert_eq!((s.text, s.data, s.bss), (41324, 0, 16));
        assert_eq!(s.flash(), 41324);
        assert_eq!(s.static_ram(), 16);
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse_size("text data bss\nx y z\n").is_err());
        assert!(parse_size("").is_err());
    }
}
