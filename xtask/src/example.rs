//! The user project in the repository, run as CI runs it: `examples/heater/`
//! is its own workspace (a plant crate, a host binary with every `tinyppo`
//! subcommand, a QEMU firmware) with path dependencies on tinyppo's crates,
//! so these steps are what a user's own project goes through:
//!
//! 1. check its formatting, build its host binary (release, its own
//!    `target/`) and run its tests;
//! 2. a short training run and an export (`heater train`, `heater export`);
//! 3. the example's firmware under QEMU (`cargo xtask qemu --firmware
//!    examples/heater/firmware --policy RUN/policy.bin --episodes 2 --seed 1
//!    --out uart.bin`, through the same code as the command);
//! 4. its UART log byte for byte equal to the example binary's `simulate`;
//! 5. `heater finetune` from that QEMU log, which must publish version 2.
//!
//! Every step prints its command and its time (the CI summary table).

use std::cell::RefCell;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Context, Result};

use crate::ci::{compare_with_simulate, run_tool, Step};
use crate::cmd;
use crate::firmware::Build;

/// One example project: its directory, host binary and firmware.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// Under the repository root.
    pub dir: &'static str,
    /// The host binary (the tinyppo CLI with the example's plant).
    pub bin: &'static str,
    /// The plant's registered name.
    pub env: &'static str,
    /// Environment steps of the CI training run.
    pub steps: u64,
}

/// The heater example.
pub const HEATER: Example = Example {
    dir: "examples/heater",
    bin: "heater",
    env: "heater",
    steps: 8192,
};

impl Example {
    fn root(&self, repo: &Path) -> PathBuf {
        repo.join(self.dir)
    }
    fn target(&self, repo: &Path) -> PathBuf {
        self.root(repo).join("target")
    }
    fn bin_path(&self, repo: &Path) -> PathBuf {
        self.target(repo).join("release").join(format!(
            "{}{}",
            self.bin,
            std::env::consts::EXE_SUFFIX
        ))
    }
    /// Where CI's files of the example go.
    fn work(&self, repo: &Path) -> PathBuf {
        self.target(repo).join("ci")
    }
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

fn tool(bin: &Path, args: &[OsString]) -> Result<()> {
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    print!("{}", run_tool(bin, &refs)?);
    Ok(())
}

/// The CI steps of `ex` (module docs).
pub fn steps(ex: Example) -> Vec<Step> {
    let bin = ex.bin;
    let name = move |s: &str| format!("example {bin}: {s}");
    let elf: Rc<RefCell<Option<PathBuf>>> = Rc::default();
    let elf_out = Rc::clone(&elf);
    let fw_build = move |repo: &Path, policy: PathBuf| Build {
        firmware: Some(ex.root(repo).join("firmware")),
        policy: Some(policy),
        episodes: 2,
        seed: 1,
        bin: None,
        ..Build::default()
    };
    vec![
        Step::new(name("fmt (host and firmware workspaces)"), move |ctx| {
            for m in ["Cargo.toml", "firmware/Cargo.toml"] {
                let manifest = ex.root(&ctx.root).join(m);
                let mut c = ctx.cargo(&["fmt", "--all", "--manifest-path"]);
                c.arg(&manifest).args(["--", "--check"]);
                cmd::run(&mut c)?;
            }
            Ok(())
        }),
        Step::new(name("build the host binary"), move |ctx| {
            let manifest = ex.root(&ctx.root).join("Cargo.toml");
            let mut c = ctx.cargo(&["build", "--release", "--locked", "--manifest-path"]);
            c.arg(&manifest);
            // The example's own target directory, as in a user's checkout.
            c.env("CARGO_TARGET_DIR", ex.target(&ctx.root));
            cmd::run(&mut c)
        }),
        Step::new(name("tests (release, the build's profile)"), move |ctx| {
            let manifest = ex.root(&ctx.root).join("Cargo.toml");
            let mut c = ctx.cargo(&[
                "test",
                "--release",
                "--locked",
                "--workspace",
                "--manifest-path",
            ]);
            c.arg(&manifest);
            c.env("CARGO_TARGET_DIR", ex.target(&ctx.root));
            cmd::run(&mut c)
        }),
        Step::new(name("train (short) and export"), move |ctx| {
            let (bin, work) = (ex.bin_path(&ctx.root), ex.work(&ctx.root));
            let run = work.join("run");
            if run.exists() {
                std::fs::remove_dir_all(&run)
                    .with_context(|| format!("removing the last CI run {}", run.display()))?;
            }
            std::fs::create_dir_all(&work)?;
            tool(
                &bin,
                &[
                    os("train"),
                    os("--env"),
                    os(ex.env),
                    os("--total-steps"),
                    os(&ex.steps.to_string()),
                    os("--seed"),
                    os("1"),
                    os("--out"),
                    run.clone().into(),
                    os("--quiet"),
                ],
            )?;
            tool(
                &bin,
                &[
                    os("export"),
                    os("--checkpoint"),
                    run.clone().into(),
                    os("--quant"),
                    os("f32"),
                    os("--out"),
                    work.join("policy-f32.bin").into(),
                ],
            )?;
            tool(&bin, &[os("inspect"), run.join("policy.bin").into()])
        }),
        Step::new(name("firmware build"), move |ctx| {
            let repo = ctx.root.clone();
            let b = fw_build(&repo, ex.work(&repo).join("run/policy.bin"));
            let tc = ctx.toolchain()?;
            let built = crate::firmware::build(&repo, tc, &b)?;
            if let Some(s) = &built.sizes {
                crate::firmware::print_sizes(s);
            }
            *elf_out.borrow_mut() = Some(built.elf);
            Ok(())
        }),
        Step::new(
            name("QEMU run (2 episodes, seed 1) = simulate"),
            move |ctx| {
                let repo = ctx.root.clone();
                let elf = elf
                    .borrow()
                    .clone()
                    .context("the example's firmware was not built")?;
                let work = ex.work(&repo);
                let device = work.join("uart.bin");
                let result = crate::qemu::run(&crate::qemu::Run {
                    elf,
                    serial: Some(device.clone()),
                    icount: false,
                    timeout: std::time::Duration::from_secs(120),
                })?;
                print!("{}", result.console);
                let policy = work.join("run/policy.bin");
                compare_with_simulate(
                    &ex.bin_path(&repo),
                    &policy,
                    &fw_build(&repo, policy.clone()),
                    &device,
                    &work.join("simulate.bin"),
                )
            },
        ),
        Step::new(name("finetune from the QEMU log"), move |ctx| {
            let (bin, work) = (ex.bin_path(&ctx.root), ex.work(&ctx.root));
            let run = work.join("run");
            tool(
                &bin,
                &[
                    os("finetune"),
                    // The example checks the loop's mechanics; the gate is
                    // measured elsewhere (docs/OFFPOLICY.md).
                    os("--accept"),
                    os("always"),
                    os("--checkpoint"),
                    run.clone().into(),
                    os("--logs"),
                    work.join("uart.bin").into(),
                    os("--iterations"),
                    os("2"),
                ],
            )?;
            let idx = std::fs::read_to_string(run.join("policies.json"))
                .with_context(|| format!("reading {}", run.join("policies.json").display()))?;
            let v: serde_json::Value = serde_json::from_str(&idx).context("policies.json")?;
            let newest = v["policies"]
                .as_array()
                .and_then(|p| p.iter().filter_map(|r| r["version"].as_u64()).max());
            if newest != Some(2) {
                bail!("finetune did not publish version 2 (newest: {newest:?})");
            }
            println!("policies.json: version 2 published from the QEMU log");
            Ok(())
        }),
    ]
}
