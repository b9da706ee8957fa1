//! `cargo xtask firmware`: builds `firmware/` for the Cortex-M4F.
//!
//! A firmware is its own workspace (`firmware/`, or a user's, given with
//! `--firmware DIR`); cargo runs from its directory so its
//! `.cargo/config.toml` (target, QEMU runner) applies, through
//! [`Toolchain::cargo`] so the Debian `-Zbuild-std` fallback works too. The
//! build-time inputs are environment variables read by the firmware's
//! build script (`tinyppo-firmware-build`): `TINYPPO_POLICY` (blob path;
//! its plant code says which plant it is for), `TINYPPO_EPISODES`,
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
    /// The firmware's directory (its own workspace); `None`: `firmware/`.
    pub firmware: Option<PathBuf>,
    /// Policy blob to embed; `None`: the firmware's default (for
    /// `firmware/`, `policies/pendulum.bin`).
    pub policy: Option<PathBuf>,
    /// Episodes the firmware simulates.
    pub episodes: u32,
    /// Seed of the simulation.
    pub seed: u64,
    /// Apply the mean action instead of sampling.
    pub deterministic: bool,
    /// `--release` (else the dev profile).
    pub release: bool,
    /// Binary to build; `None`: the package's only (or default-run) one.
    pub bin: Option<String>,
    /// Cargo features of the firmware crate.
    pub features: Vec<&'static str>,
    /// Build without the default features (another board than the
    /// default one).
    pub no_default_features: bool,
    /// The release profile's `opt-level` instead of the firmware's own
    /// (`CARGO_PROFILE_RELEASE_OPT_LEVEL`; `cargo xtask bench-mcu
    /// --opt-level`).
    pub opt_level: Option<String>,
}

impl Default for Build {
    fn default() -> Self {
        Build {
            firmware: None,
            policy: None,
            episodes: 3,
            seed: 1,
            deterministic: false,
            release: true,
            bin: Some(MAIN_BIN.into()),
            features: Vec::new(),
            no_default_features: false,
            opt_level: None,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// `firmware/` under the workspace root: tinyppo's own firmware.
pub fn dir(root: &Path) -> PathBuf {
    root.join("firmware")
}

impl Build {
    /// The firmware directory of this build.
    pub fn dir(&self, root: &Path) -> Result<PathBuf> {
        let d = match &self.firmware {
            Some(d) => std::path::absolute(d)
                .with_context(|| format!("firmware directory {}", d.display()))?,
            None => dir(root),
        };
        if !d.join("Cargo.toml").is_file() {
            bail!(
                "{} is not a firmware directory (no Cargo.toml); --firmware takes the directory of                  a firmware crate with its own .cargo/config.toml",
                d.display()
            );
        }
        Ok(d)
    }

    /// The binary's name: `bin`, else the package's default-run binary,
    /// else its package name (cargo's name for a `src/main.rs` binary).
    pub fn bin_name(&self, root: &Path) -> Result<String> {
        if let Some(b) = &self.bin {
            return Ok(b.clone());
        }
        let manifest = self.dir(root)?.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let value = |key: &str| {
            text.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        };
        value("default-run")
            .or_else(|| value("name"))
            .with_context(|| format!("{}: no package name", manifest.display()))
    }
}

/// The cargo command that builds `b` (not yet run).
pub fn command(root: &Path, tc: &Toolchain, b: &Build) -> Result<Command> {
    let fw = b.dir(root)?;
    let mut c = tc.cargo(&fw, "build");
    if let Some(p) = &b.policy {
        let policy =
            std::path::absolute(p).with_context(|| format!("policy path {}", p.display()))?;
        if !policy.is_file() {
            bail!("policy blob {} does not exist", policy.display());
        }
        c.env("TINYPPO_POLICY", &policy);
    } else {
        // The firmware's own default.
        c.env_remove("TINYPPO_POLICY");
    }
    if b.release {
        c.arg("--release");
    }
    c.args(["--bin", &b.bin_name(root)?]);
    if b.no_default_features {
        c.arg("--no-default-features");
    }
    if !b.features.is_empty() {
        c.args(["--features", &b.features.join(",")]);
    }
    match &b.opt_level {
        Some(o) => c.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", o),
        None => c.env_remove("CARGO_PROFILE_RELEASE_OPT_LEVEL"),
    };
    c.env_remove("TINYPPO_PLANT_CODE")
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
    let elf = tc
        .artifact_dir(&b.dir(root)?, profile)
        .join(b.bin_name(root)?);
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

/// The Berkeley section sizes of `elf` (what `size` prints), read from
/// its section headers.
pub fn sizes(elf: &Path) -> Result<Sizes> {
    Ok(crate::elf::Elf::load(elf)?.sizes)
}

/// `--firmware DIR`: the build of a user's firmware directory (its
/// default binary), or of `firmware/` without it.
pub fn with_firmware(b: Build, dir: Option<PathBuf>) -> Build {
    match dir {
        Some(d) => Build {
            firmware: Some(d),
            bin: None,
            ..b
        },
        None => b,
    }
}

/// `cargo xtask firmware [--firmware DIR] [--policy FILE] [--board f411] [--release]`.
pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let mut b = Build {
        release: false,
        ..Build::default()
    };
    let mut fw = None;
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "--firmware" => fw = Some(it.next().context("--firmware needs a directory")?.into()),
            "--policy" => b.policy = Some(it.next().context("--policy needs a file")?.into()),
            "--release" => b.release = true,
            "--board" => match it.next().copied() {
                Some("f411") => {
                    b.bin = Some(BOARD_BIN.into());
                    b.features = vec![BOARD_FEATURE];
                    b.no_default_features = true;
                }
                other => bail!("--board: only `f411` (STM32F411CEU6) is known, not {other:?}"),
            },
            "--env" => bail!(
                "firmware: --env is gone: the blob names its plant (export it with this \
                 tinyppo; `tinyppo export --blob OLD --env NAME --out NEW` upgrades an old one)"
            ),
            other => bail!("firmware: unknown argument `{other}`"),
        }
    }
    let b = with_firmware(b, fw);
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
