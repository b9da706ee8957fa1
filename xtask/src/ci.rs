//! The project's checks as a list of named steps, run in order with a
//! header and a timing for each, stopping at the first failure, and a
//! summary table at the end.
//!
//! A step is a name and a closure over [`Ctx`]; to add one (firmware build,
//! QEMU run, log comparison), push it in [`ci_steps`]. Steps that build for
//! the device get the toolchain from [`Ctx::toolchain`], which detects it
//! once, on first use.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use crate::cmd;
use crate::toolchain::{cargo_bin, Toolchain};

/// The device crate checked for the thumb target.
const RUNTIME: &str = "tinyppo-runtime";

/// Feature sets of the runtime that must build for the device, each with
/// `-D warnings` (a warning only one set triggers would otherwise slip by).
const RUNTIME_FEATURE_SETS: &[&[&str]] = &[&[], &["plants"]];

/// State shared by the steps of one run.
pub struct Ctx {
    /// Workspace root (holds the root `Cargo.toml`).
    pub root: PathBuf,
    toolchain: Option<Toolchain>,
}

impl Ctx {
    pub fn new(root: PathBuf) -> Ctx {
        Ctx {
            root,
            toolchain: None,
        }
    }

    /// The thumb toolchain, detected (and installed if needed) on first call.
    pub fn toolchain(&mut self) -> Result<&Toolchain> {
        if self.toolchain.is_none() {
            self.toolchain = Some(Toolchain::detect(&self.root)?);
        }
        Ok(self.toolchain.as_ref().expect("set just above"))
    }

    /// `cargo <args>` for the host, run from the workspace root.
    pub fn cargo(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cargo_bin());
        cmd.current_dir(&self.root).args(args);
        cmd
    }
}

type Action = Box<dyn FnOnce(&mut Ctx) -> Result<()>>;

/// One named check.
pub struct Step {
    pub name: String,
    action: Action,
}

impl Step {
    pub fn new(
        name: impl Into<String>,
        action: impl FnOnce(&mut Ctx) -> Result<()> + 'static,
    ) -> Step {
        Step {
            name: name.into(),
            action: Box::new(action),
        }
    }

    /// A step that runs `cargo <args>` on the host.
    pub fn cargo(name: &str, args: &'static [&'static str]) -> Step {
        Step::new(name, move |ctx| cmd::run(&mut ctx.cargo(args)))
    }
}

/// Everything `cargo xtask ci` runs, in order.
pub fn ci_steps() -> Vec<Step> {
    let mut steps = vec![
        Step::cargo("fmt", &["fmt", "--all", "--", "--check"]),
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step::cargo("test", &["test", "--workspace"]),
    ];
    steps.extend(thumb_steps());
    // Later: firmware build, QEMU run, comparison of the device log with
    // the expected one.
    steps
}

/// The no_std builds of the runtime for the device: toolchain detection,
/// then one `cargo build --lib` per feature set with `-D warnings`.
pub fn thumb_steps() -> Vec<Step> {
    let mut steps = vec![Step::new("thumb toolchain", |ctx| {
        let tc = ctx.toolchain()?;
        println!("{tc}");
        Ok(())
    })];
    for &features in RUNTIME_FEATURE_SETS {
        let name = match features {
            [] => "thumb: runtime (no features)".to_owned(),
            _ => format!("thumb: runtime +{}", features.join(",")),
        };
        steps.push(Step::new(name, move |ctx| {
            let root = ctx.root.clone();
            let tc = ctx.toolchain()?;
            let mut cmd = tc.cargo(&root, "build");
            cmd.args(["-p", RUNTIME, "--lib"]);
            if !features.is_empty() {
                cmd.args(["--features", &features.join(",")]);
            }
            cmd.env("RUSTFLAGS", deny_warnings_rustflags());
            cmd::run(&mut cmd)
        }));
    }
    steps
}

/// The caller's `RUSTFLAGS` plus `-D warnings`. With `--target`, RUSTFLAGS
/// reaches only target code, so the host build cache is left alone.
fn deny_warnings_rustflags() -> String {
    let old = std::env::var("RUSTFLAGS").unwrap_or_default();
    format!("{old} -D warnings").trim_start().to_owned()
}

enum Outcome {
    Ok(f64),
    Failed(f64),
    Skipped,
}

/// Runs `steps` in order, stopping at the first failure unless
/// `keep_going`, then prints a summary table. The error names the failed
/// step(s).
pub fn run_steps(ctx: &mut Ctx, title: &str, steps: Vec<Step>, keep_going: bool) -> Result<()> {
    let total = steps.len();
    let started = Instant::now();
    let mut results: Vec<(String, Outcome)> = Vec::with_capacity(total);
    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        if !failures.is_empty() && !keep_going {
            results.push((step.name, Outcome::Skipped));
            continue;
        }
        println!("\n==> [{}/{total}] {}", i + 1, step.name);
        let t = Instant::now();
        let result = (step.action)(ctx);
        let secs = t.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                println!("<== {} ok ({secs:.1} s)", step.name);
                results.push((step.name, Outcome::Ok(secs)));
            }
            Err(err) => {
                println!("<== {} FAILED ({secs:.1} s): {err:#}", step.name);
                results.push((step.name.clone(), Outcome::Failed(secs)));
                failures.push((step.name, err));
            }
        }
    }
    print_summary(title, &results, started.elapsed().as_secs_f64());
    let mut failures = failures.into_iter();
    match (failures.next(), failures.len()) {
        (None, _) => Ok(()),
        (Some((name, err)), 0) => Err(err.context(format!("{title} failed at step `{name}`"))),
        (Some((name, err)), _) => {
            let others: Vec<String> = failures.map(|(n, _)| format!("`{n}`")).collect();
            Err(err.context(format!(
                "{title} failed at step `{name}` (and at {})",
                others.join(", ")
            )))
        }
    }
}

fn print_summary(title: &str, results: &[(String, Outcome)], total_secs: f64) {
    let width = results
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0)
        .max("step".len());
    println!("\n{title} summary");
    println!("{:<width$}  {:<7}  {:>8}", "step", "status", "seconds");
    println!("{}", "-".repeat(width + 2 + 7 + 2 + 8));
    for (name, outcome) in results {
        let (status, secs) = match outcome {
            Outcome::Ok(s) => ("ok", format!("{s:.1}")),
            Outcome::Failed(s) => ("FAILED", format!("{s:.1}")),
            Outcome::Skipped => ("skipped", "-".to_owned()),
        };
        println!("{name:<width$}  {status:<7}  {secs:>8}");
    }
    println!("{:<width$}  {:<7}  {:>8.1}", "total", "", total_secs);
}
