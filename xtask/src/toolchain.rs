//! Which compiler builds code for the Cortex-M4F target, and how to call it.
//!
//! Two paths can build for [`THUMB_TARGET`] (see `EMBEDDED-TOOLCHAIN.md`):
//!
//! 1. **rustup**: the target's prebuilt `core` is installed in the active
//!    rustup toolchain (`rustup target list --installed` has it, or
//!    `rustup target add` succeeds). Plain `cargo build --target …`.
//! 2. **Debian**: Debian's own `rustc` (`rustc-web`, 1.96) with its library
//!    source (`rust-web-src`, in `/usr/lib/rustlib/src/rust/library`) knows
//!    the target and compiles `core` from source: `RUSTC=/usr/bin/rustc
//!    RUSTC_BOOTSTRAP=1 cargo build -Zbuild-std=core --target …`, with
//!    rustup's `rust-lld` on `PATH` for linking firmware.
//!
//! [`Toolchain::detect`] tries them in that order and installs what is
//! missing when it can (`rustup target add`; `apt-get install` when running
//! as root). `TINYPPO_TOOLCHAIN=rustup|debian` forces one path, so the
//! fallback can be tested on a machine where rustup works.
//!
//! The Debian path writes to a separate target directory
//! (`<target-dir>/thumb-debian`): its compiler differs from the host build's,
//! and sharing one directory would make the two invalidate each other's
//! build-script and proc-macro artifacts.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Result};

/// The Cortex-M4F target triple the runtime and the firmware are built for.
pub const THUMB_TARGET: &str = "thumbv7em-none-eabihf";

/// Environment variable that forces a path: `rustup`, `debian` or `auto`.
pub const FORCE_ENV: &str = "TINYPPO_TOOLCHAIN";

const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_LIBRARY_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src"];
/// Sub-directory of the target directory used by the Debian path.
const DEBIAN_TARGET_SUBDIR: &str = "thumb-debian";

/// How to install either path, appended to every "no toolchain" error.
const HOW_TO_INSTALL: &str = "\
install one of the two:
  (1) rustup:  rustup target add thumbv7em-none-eabihf
  (2) Debian:  apt-get update && apt-get install -y rustc-web cargo-web rust-web-src
               (as root; gives /usr/bin/rustc with the library source in
               /usr/lib/rustlib/src/rust/library, used with -Zbuild-std=core)
set TINYPPO_TOOLCHAIN=rustup|debian to force one of them";

/// The chosen way of building for [`THUMB_TARGET`].
#[derive(Debug, Clone)]
pub enum Kind {
    /// The rustup toolchain that runs this xtask has the target installed.
    Rustup,
    /// Debian's rustc, building `core` from source.
    Debian {
        /// The Debian compiler (`/usr/bin/rustc`).
        rustc: PathBuf,
        /// rustup's `lib/rustlib/<host>/bin` (holds `rust-lld`), if found.
        linker_dir: Option<PathBuf>,
    },
}

/// A detected toolchain for [`THUMB_TARGET`], with the reason it was chosen.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// Which path.
    pub kind: Kind,
    /// Why this path was chosen (and why the other was not, if tried).
    pub reason: String,
    /// `rustc -V` of the compiler that builds the target code.
    pub rustc_version: String,
}

impl Toolchain {
    /// Choose a path (honouring [`FORCE_ENV`]), installing what is missing
    /// when possible. `workspace` is where rustup is asked (a
    /// `rust-toolchain.toml` there would select the toolchain).
    pub fn detect(workspace: &Path) -> Result<Toolchain> {
        let forced = std::env::var(FORCE_ENV).unwrap_or_default();
        match forced.as_str() {
            "" | "auto" => {
                let rustup_why_not = match rustup_path(workspace) {
                    Ok(tc) => return Ok(tc),
                    Err(why_not) => why_not,
                };
                match debian_path() {
                    Ok(mut tc) => {
                        tc.reason = format!("rustup path unavailable ({rustup_why_not}); {}", tc.reason);
                        Ok(tc)
                    }
                    Err(debian_why_not) => bail!(
                        "no toolchain can build for {THUMB_TARGET}:\n  - rustup: {rustup_why_not}\n  - Debian: {debian_why_not}\n{HOW_TO_INSTALL}"
                    ),
                }
            }
            "rustup" => match rustup_path(workspace) {
                Ok(mut tc) => {
                    tc.reason = format!("forced by {FORCE_ENV}=rustup; {}", tc.reason);
                    Ok(tc)
                }
                Err(why_not) => bail!(
                    "{FORCE_ENV}=rustup, but rustup cannot build for {THUMB_TARGET}: {why_not}\n{HOW_TO_INSTALL}"
                ),
            },
            "debian" => match debian_path() {
                Ok(mut tc) => {
                    tc.reason = format!("forced by {FORCE_ENV}=debian; {}", tc.reason);
                    Ok(tc)
                }
                Err(why_not) => bail!(
                    "{FORCE_ENV}=debian, but the Debian toolchain is unusable: {why_not}\n{HOW_TO_INSTALL}"
                ),
            },
            other => bail!("{FORCE_ENV}={other:?} is not one of `rustup`, `debian`, `auto`"),
        }
    }

    /// Short name of the path: `rustup` or `debian`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Rustup => "rustup",
            Kind::Debian { .. } => "debian",
        }
    }

    /// A `cargo <subcommand>` for [`THUMB_TARGET`], run in `workspace` (the
    /// directory whose `.cargo/config.toml` applies: the root, or
    /// `firmware/`). The caller appends package, feature and profile flags.
    pub fn cargo(&self, workspace: &Path, subcommand: &str) -> Command {
        let mut cmd = Command::new(cargo_bin());
        cmd.current_dir(workspace)
            .arg(subcommand)
            .args(["--target", THUMB_TARGET]);
        if let Kind::Debian { rustc, linker_dir } = &self.kind {
            cmd.arg("-Zbuild-std=core")
                .arg("--target-dir")
                .arg(self.target_dir(workspace))
                .env("RUSTC", rustc)
                .env("RUSTC_BOOTSTRAP", "1");
            if let Some(dir) = linker_dir {
                cmd.env("PATH", prepend_path(dir));
            }
        }
        cmd
    }

    /// The target directory this path builds into for `workspace`.
    pub fn target_dir(&self, workspace: &Path) -> PathBuf {
        let base = default_target_dir(workspace);
        match self.kind {
            Kind::Rustup => base,
            Kind::Debian { .. } => base.join(DEBIAN_TARGET_SUBDIR),
        }
    }

    /// Where `cargo build --profile <profile>` puts the target's artifacts
    /// (ELF files of the firmware), e.g. `target/thumbv7em-none-eabihf/release`.
    pub fn artifact_dir(&self, workspace: &Path, profile: &str) -> PathBuf {
        let dir = if profile == "dev" { "debug" } else { profile };
        self.target_dir(workspace).join(THUMB_TARGET).join(dir)
    }
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "target:    {THUMB_TARGET}")?;
        writeln!(f, "path:      {}", self.name())?;
        writeln!(f, "why:       {}", self.reason)?;
        writeln!(f, "compiler:  {}", self.rustc_version)?;
        match &self.kind {
            Kind::Rustup => write!(f, "recipe:    cargo build --target {THUMB_TARGET}"),
            Kind::Debian { rustc, linker_dir } => {
                match linker_dir {
                    Some(dir) => writeln!(f, "rust-lld:  {}", dir.join("rust-lld").display())?,
                    None => writeln!(f, "rust-lld:  not found (only needed to link firmware)")?,
                }
                write!(
                    f,
                    "recipe:    RUSTC={} RUSTC_BOOTSTRAP=1 cargo build -Zbuild-std=core --target {THUMB_TARGET} --target-dir <target>/{DEBIAN_TARGET_SUBDIR}",
                    rustc.display()
                )
            }
        }
    }
}

/// The rustup path, or why it is unavailable.
fn rustup_path(workspace: &Path) -> Result<Toolchain, String> {
    let installed = |what: &str| -> Result<bool, String> {
        let out = capture(Command::new("rustup").current_dir(workspace).args([
            "target",
            "list",
            "--installed",
        ]))
        .map_err(|e| format!("{what}: {e}"))?;
        Ok(out.lines().any(|l| l.trim() == THUMB_TARGET))
    };
    let rustc_version = capture(Command::new("rustc").current_dir(workspace).arg("-V"))
        .map_err(|e| format!("rustc: {e}"))?;
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN")
        .map(|t| format!("rustup toolchain `{t}`"))
        .unwrap_or_else(|_| "the active rustup toolchain".into());
    if installed("rustup target list --installed")? {
        return Ok(Toolchain {
            kind: Kind::Rustup,
            reason: format!("{THUMB_TARGET} is installed in {toolchain}"),
            rustc_version,
        });
    }
    eprintln!("toolchain: {THUMB_TARGET} not installed in {toolchain}; trying `rustup target add {THUMB_TARGET}`");
    let add = Command::new("rustup")
        .current_dir(workspace)
        .args(["target", "add", THUMB_TARGET])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `rustup target add`: {e}"))?;
    if !add.status.success() {
        return Err(format!(
            "`rustup target add {THUMB_TARGET}` failed ({}): {}",
            add.status,
            last_line(&add.stderr)
        ));
    }
    if !installed("rustup target list --installed (after add)")? {
        return Err(format!(
            "`rustup target add {THUMB_TARGET}` succeeded but the target is still not listed"
        ));
    }
    Ok(Toolchain {
        kind: Kind::Rustup,
        reason: format!(
            "{THUMB_TARGET} was just installed in {toolchain} with `rustup target add`"
        ),
        rustc_version,
    })
}

/// The Debian path (installing its packages if root and apt-get allow), or
/// why it is unavailable.
fn debian_path() -> Result<Toolchain, String> {
    // Ask the rustup compiler on PATH for its sysroot before RUSTC is
    // overridden: rust-lld ships with rustup, not with Debian's rustc.
    let linker_dir = rustup_linker_dir();
    let mut installed_now = false;
    if let Err(missing) = debian_present() {
        if !is_root() || !has_program("apt-get") {
            return Err(format!(
                "{missing}, and cannot install it here (needs root and apt-get)"
            ));
        }
        eprintln!(
            "toolchain: {missing}; installing {}",
            DEBIAN_PACKAGES.join(" ")
        );
        apt_install(DEBIAN_PACKAGES).map_err(|e| format!("{missing}, and {e}"))?;
        debian_present()
            .map_err(|m| format!("{m} even after installing {}", DEBIAN_PACKAGES.join(" ")))?;
        installed_now = true;
    }
    let rustc_version = capture(Command::new(DEBIAN_RUSTC).arg("-V"))
        .map_err(|e| format!("{DEBIAN_RUSTC}: {e}"))?;
    let targets = capture(Command::new(DEBIAN_RUSTC).args(["--print", "target-list"]))
        .map_err(|e| format!("{DEBIAN_RUSTC}: {e}"))?;
    if !targets.lines().any(|l| l.trim() == THUMB_TARGET) {
        return Err(format!(
            "{DEBIAN_RUSTC} ({rustc_version}) does not know {THUMB_TARGET}"
        ));
    }
    let how = if installed_now {
        "installed just now with apt-get"
    } else {
        "found"
    };
    Ok(Toolchain {
        kind: Kind::Debian { rustc: PathBuf::from(DEBIAN_RUSTC), linker_dir },
        reason: format!("Debian's {DEBIAN_RUSTC} with library source in {DEBIAN_LIBRARY_SRC} {how}; core is built from source"),
        rustc_version,
    })
}

/// `Ok` if Debian's compiler and library source are installed, else what is missing.
fn debian_present() -> Result<(), String> {
    if !Path::new(DEBIAN_RUSTC).is_file() {
        return Err(format!("{DEBIAN_RUSTC} not found"));
    }
    if !Path::new(DEBIAN_LIBRARY_SRC).join("core").is_dir() {
        return Err(format!("{DEBIAN_LIBRARY_SRC} not found"));
    }
    Ok(())
}

/// `apt-get install -y PACKAGES`, running `apt-get update` first if the
/// first attempt fails (a fresh machine has empty package lists). Output is
/// shown only when a command fails.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    let install = || {
        apt_get(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(packages),
        )
    };
    if install().is_ok() {
        return Ok(());
    }
    eprintln!("toolchain: apt-get install failed; running apt-get update and retrying");
    apt_get(Command::new("apt-get").args(["update", "-q"]))?;
    install()
}

/// Runs an apt-get command quietly; on failure prints its output and
/// returns a one-line error.
fn apt_get(cmd: &mut Command) -> Result<(), String> {
    let line = crate::cmd::display(cmd);
    let out = cmd
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{line}`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(format!(
        "`{line}` failed ({}): {}",
        out.status,
        last_line(&out.stderr)
    ))
}

/// rustup's `$(rustc --print sysroot)/lib/rustlib/<host>/bin`, if it holds `rust-lld`.
fn rustup_linker_dir() -> Option<PathBuf> {
    let sysroot = capture(Command::new("rustc").args(["--print", "sysroot"])).ok()?;
    let verbose = capture(Command::new("rustc").arg("-vV")).ok()?;
    let host = verbose
        .lines()
        .find_map(|l| l.strip_prefix("host: "))?
        .trim()
        .to_owned();
    let dir = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin");
    dir.join("rust-lld").is_file().then_some(dir)
}

/// The cargo that runs this xtask (`$CARGO`), else `cargo` from PATH.
pub fn cargo_bin() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// `$CARGO_TARGET_DIR` (made absolute) or `<workspace>/target`.
pub fn default_target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                std::env::current_dir()
                    .map(|cwd| cwd.join(&dir))
                    .unwrap_or(dir)
            }
        }
        _ => workspace.join("target"),
    }
}

/// `dir` followed by the current `PATH`.
fn prepend_path(dir: &Path) -> OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(old) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

/// Runs `cmd` and returns its trimmed stdout, or a one-line error.
fn capture(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("`{}` not found", cmd.get_program().to_string_lossy())
            }
            _ => format!("cannot run `{}`: {e}", cmd.get_program().to_string_lossy()),
        })?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            cmd.get_program().to_string_lossy(),
            out.status,
            last_line(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .trim()
        .to_owned()
}

fn has_program(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    capture(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian() -> Toolchain {
        Toolchain {
            kind: Kind::Debian {
                rustc: DEBIAN_RUSTC.into(),
                linker_dir: Some("/lld".into()),
            },
            reason: String::new(),
            rustc_version: String::new(),
        }
    }

    #[test]
    fn debian_builds_core_from_source_in_its_own_target_dir() {
        let ws = Path::new("/ws");
        let cmd = debian().cargo(ws, "build");
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let target_dir = default_target_dir(ws).join(DEBIAN_TARGET_SUBDIR);
        assert_eq!(
            args,
            [
                "build",
                "--target",
                THUMB_TARGET,
                "-Zbuild-std=core",
                "--target-dir",
                &target_dir.to_string_lossy()
            ]
        );
        let env = |k: &str| {
            cmd.get_envs()
                .find(|(key, _)| *key == k)
                .and_then(|(_, v)| v.map(|v| v.to_owned()))
        };
        assert_eq!(env("RUSTC").unwrap(), DEBIAN_RUSTC);
        assert_eq!(env("RUSTC_BOOTSTRAP").unwrap(), "1");
        assert!(env("PATH").unwrap().to_string_lossy().starts_with("/lld"));
    }

    #[test]
    fn rustup_is_plain_cargo() {
        let tc = Toolchain {
            kind: Kind::Rustup,
            reason: String::new(),
            rustc_version: String::new(),
        };
        let cmd = tc.cargo(Path::new("/ws"), "build");
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, ["build", "--target", THUMB_TARGET]);
        assert_eq!(cmd.get_envs().count(), 0);
    }

    #[test]
    fn artifact_dir_maps_dev_to_debug() {
        let ws = Path::new("/ws");
        let dir = debian().artifact_dir(ws, "dev");
        assert_eq!(
            dir,
            default_target_dir(ws)
                .join(DEBIAN_TARGET_SUBDIR)
                .join(THUMB_TARGET)
                .join("debug")
        );
    }
}
