//! The build-script half of a tinyppo firmware.
//!
//! A firmware crate's `build.rs` is a few lines:
//!
//! ```ignore
//! fn main() {
//!     tinyppo_firmware_build::Firmware::new()
//!         .default_policy("policies/heater.bin")
//!         .plant::<heater_plant::Heater, 2, 1>()
//!         .emit();
//! }
//! ```
//!
//! [`Firmware::emit`] then
//!
//! 1. reads the blob `TINYPPO_POLICY` (a path, relative to the firmware
//!    crate; default [`Firmware::default_policy`]) and checks it with the
//!    runtime's own [`Blob::parse`] (CRC, schema, every value), so a
//!    damaged blob fails the build, not the board;
//! 2. checks the blob's plant: with [`Firmware::plant`], the blob must name
//!    that plant's code (a blob of format v1, which names none, must have
//!    the plant's dimensions) — a pendulum blob never reaches a heater;
//! 3. writes `$OUT_DIR/tinyppo_config.rs` (read by
//!    `tinyppo_boards::embed_policy!`): the blob's `OBS`, `ACT`, `HID`
//!    (widest hidden layer), `PLANT_CODE`, and the run configuration
//!    `EPISODES` (`TINYPPO_EPISODES`, default 3), `SEED` (`TINYPPO_SEED`,
//!    default 1), `DETERMINISTIC` (`TINYPPO_DETERMINISTIC`, 0 or 1, default
//!    0) and `RUN` (all three as a `RunConfig`);
//! 4. sets `TINYPPO_POLICY_FILE` for `include_bytes!` and passes `-Tlink.x`
//!    (cortex-m-rt's linker script) to the crate's binaries; with
//!    [`Firmware::memory_x`], also the crate's own memory map (for a board
//!    that `tinyppo-boards` does not know).
//!
//! Every problem ends the build with a message that names the variable or
//! file and what was expected.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use tinyppo_runtime::plants::{code, Plant};
use tinyppo_runtime::Blob;

/// The plant a firmware runs, as the build script checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantSpec {
    /// `Plant::NAME`.
    pub name: &'static str,
    /// `Plant::CODE`.
    pub code: u8,
    /// Observation dimension.
    pub obs: usize,
    /// Action dimension.
    pub act: usize,
}

/// What the build script found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The blob's absolute path.
    pub policy: PathBuf,
    /// Observation dimension.
    pub obs: usize,
    /// Action dimension.
    pub act: usize,
    /// Widest hidden layer.
    pub hid: usize,
    /// The plant code the firmware will see (the blob's, or the checked
    /// plant's for a v1 blob, or `TINYPPO_PLANT_CODE`).
    pub plant_code: u8,
    /// Episodes to run.
    pub episodes: u32,
    /// Seed of the run.
    pub seed: u64,
    /// Apply the mean action.
    pub deterministic: bool,
}

/// Configures a firmware build (see the [crate docs](crate)).
#[derive(Debug, Clone)]
pub struct Firmware {
    default_policy: Option<PathBuf>,
    plant: Option<PlantSpec>,
    memory_x: Option<PathBuf>,
}

impl Default for Firmware {
    fn default() -> Self {
        Self::new()
    }
}

impl Firmware {
    /// No default blob (`TINYPPO_POLICY` must be set), no plant check, the
    /// memory map from the board crate.
    pub fn new() -> Self {
        Firmware {
            default_policy: None,
            plant: None,
            memory_x: None,
        }
    }

    /// The blob used when `TINYPPO_POLICY` is unset, relative to the
    /// firmware crate.
    pub fn default_policy(mut self, path: impl Into<PathBuf>) -> Self {
        self.default_policy = Some(path.into());
        self
    }

    /// The firmware runs plant `P`: the blob must be for it.
    pub fn plant<P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize>(mut self) -> Self {
        self.plant = Some(PlantSpec {
            name: P::NAME,
            code: P::CODE,
            obs: OBS,
            act: ACT,
        });
        self
    }

    /// This crate's own memory map (relative to the crate), for a board the
    /// board crate does not provide: copied to `$OUT_DIR/memory.x` on the
    /// linker path.
    pub fn memory_x(mut self, path: impl Into<PathBuf>) -> Self {
        self.memory_x = Some(path.into());
        self
    }

    /// Does everything (see the [crate docs](crate)); on a problem, prints
    /// it and ends the build with status 1.
    pub fn emit(self) -> Config {
        match self.try_emit() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }

    /// [`emit`](Self::emit), returning the problem instead.
    pub fn try_emit(self) -> Result<Config, String> {
        let manifest = PathBuf::from(var_os_required("CARGO_MANIFEST_DIR")?);
        let out = PathBuf::from(var_os_required("OUT_DIR")?);
        if let Some(m) = &self.memory_x {
            let src = manifest.join(m);
            fs::copy(&src, out.join("memory.x"))
                .map_err(|e| format!("copying the memory map {}: {e}", src.display()))?;
            println!("cargo:rustc-link-search={}", out.display());
            println!("cargo:rerun-if-changed={}", src.display());
        }
        println!("cargo:rustc-link-arg-bins=-Tlink.x");

        println!("cargo:rerun-if-env-changed=TINYPPO_POLICY");
        let policy = match env::var_os("TINYPPO_POLICY").filter(|p| !p.is_empty()) {
            Some(p) => manifest.join(p),
            None => match &self.default_policy {
                Some(p) => manifest.join(p),
                None => return Err("TINYPPO_POLICY is not set: give the policy blob to embed (cargo xtask firmware --policy FILE)".into()),
            },
        };
        let policy = policy.canonicalize().map_err(|e| {
            format!(
                "TINYPPO_POLICY: cannot read policy blob {}: {e}",
                policy.display()
            )
        })?;
        let bytes =
            fs::read(&policy).map_err(|e| format!("cannot read {}: {e}", policy.display()))?;
        println!("cargo:rerun-if-changed={}", policy.display());
        println!("cargo:rustc-env=TINYPPO_POLICY_FILE={}", policy.display());
        let config = check(&policy, &bytes, self.plant.as_ref(), plant_code_override()?)?;
        let config = Config {
            episodes: parse_env("TINYPPO_EPISODES", 3)?,
            seed: parse_env("TINYPPO_SEED", 1)?,
            deterministic: match parse_env::<u8>("TINYPPO_DETERMINISTIC", 0)? {
                0 => false,
                1 => true,
                v => return Err(format!("TINYPPO_DETERMINISTIC={v}: expected 0 or 1")),
            },
            ..config
        };
        write_if_changed(
            &out.join("tinyppo_config.rs"),
            config_rs(&config).as_bytes(),
        )?;
        Ok(config)
    }
}

fn var_os_required(name: &str) -> Result<std::ffi::OsString, String> {
    env::var_os(name).ok_or_else(|| format!("{name} is not set (run from a cargo build script)"))
}

/// `TINYPPO_PLANT_CODE`: the plant of a v1 blob, which does not name one.
fn plant_code_override() -> Result<Option<u8>, String> {
    println!("cargo:rerun-if-env-changed=TINYPPO_PLANT_CODE");
    match env::var("TINYPPO_PLANT_CODE") {
        Ok(v) if !v.trim().is_empty() => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u8::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.map(Some).map_err(|e| {
                format!("TINYPPO_PLANT_CODE={v:?}: expected a code 0–255 (or 0x..): {e}")
            })
        }
        _ => Ok(None),
    }
}

/// Checks `bytes` (the blob at `path`) and its plant; returns the blob's
/// part of the configuration.
pub fn check(
    path: &Path,
    bytes: &[u8],
    plant: Option<&PlantSpec>,
    code_override: Option<u8>,
) -> Result<Config, String> {
    let blob =
        Blob::parse(bytes).map_err(|e| format!("{}: invalid policy blob: {e}", path.display()))?;
    let plant_code = match (blob.plant_code(), code_override, plant) {
        (Some(c), Some(o), _) if c != o => {
            return Err(format!(
                "{}: the blob names plant code {c:#04x}, TINYPPO_PLANT_CODE says {o:#04x}",
                path.display()
            ))
        }
        (Some(c), _, _) => c,
        (None, Some(o), _) => o,
        (None, None, Some(p)) => p.code,
        (None, None, None) => code::UNSPECIFIED,
    };
    if let Some(p) = plant {
        if plant_code != p.code {
            return Err(format!(
                "{}: the policy was exported for plant code {plant_code:#04x}, but this firmware runs {} \
                 (code {:#04x}); embed a blob trained on {}",
                path.display(),
                p.name,
                p.code,
                p.name
            ));
        }
        if (blob.obs_dim, blob.act_dim) != (p.obs, p.act) {
            return Err(format!(
                "{}: the policy has {} observations and {} actions, but plant {} has {} and {}",
                path.display(),
                blob.obs_dim,
                blob.act_dim,
                p.name,
                p.obs,
                p.act
            ));
        }
    }
    Ok(Config {
        policy: path.to_path_buf(),
        obs: blob.obs_dim,
        act: blob.act_dim,
        hid: blob.max_hidden(),
        plant_code,
        episodes: 3,
        seed: 1,
        deterministic: false,
    })
}

/// The text of `tinyppo_config.rs`.
pub fn config_rs(c: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "/// Observation dimension of the embedded policy.\npub const OBS: usize = {};\n\
         /// Action dimension of the embedded policy.\npub const ACT: usize = {};\n\
         /// Widest hidden layer of the embedded policy.\npub const HID: usize = {};\n\
         /// The embedded policy's plant code (`0xff`: none named).\npub const PLANT_CODE: u8 = {};\n\
         /// Episodes to run (`TINYPPO_EPISODES`).\npub const EPISODES: u32 = {};\n\
         /// Seed of the run (`TINYPPO_SEED`).\npub const SEED: u64 = {};\n\
         /// Apply the mean action instead of sampling (`TINYPPO_DETERMINISTIC=1`).\n\
         pub const DETERMINISTIC: bool = {};\n\
         /// The run configuration.\npub const RUN: tinyppo_runtime::driver::RunConfig = \
         tinyppo_runtime::driver::RunConfig {{ episodes: EPISODES, seed: SEED, deterministic: DETERMINISTIC }};",
        c.obs, c.act, c.hid, c.plant_code, c.episodes, c.seed, c.deterministic
    );
    s
}

fn parse_env<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    println!("cargo:rerun-if-env-changed={name}");
    match env::var(name) {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|e| {
            format!(
                "{name}={v:?} is not a valid {}: {e}",
                std::any::type_name::<T>()
            )
        }),
        _ => Ok(default),
    }
}

/// Writes `bytes` unless the file already holds them (keeps mtimes, so an
/// unchanged configuration does not recompile the crate).
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if fs::read(path).ok().as_deref() != Some(bytes) {
        fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
