//! `cargo xtask fuzz [--seconds N] [--target NAME]...`: runs every fuzz
//! target of `fuzz/` (cargo-fuzz, libFuzzer) for N seconds each from its
//! committed inputs and prints executions and crashes per target. Installs
//! what it needs: the nightly toolchain (rustup) and `cargo-fuzz`.
//!
//! Each target reads two directories: `fuzz/seeds/NAME`, hand-made valid
//! inputs (the tests pin some of them to the spec's golden bytes; never
//! rewritten), and `fuzz/corpus/NAME`, what the fuzzer found, where new
//! inputs go. `--minimize` then rewrites each corpus minimized (`cargo
//! fuzz cmin`, which keeps the inputs that add coverage).
//!
//! A benchmark-like run, not part of `cargo xtask ci` (it takes minutes);
//! it fails if any target crashed, with the crashing input's path.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Every target, in `fuzz/Cargo.toml`'s order.
pub const TARGETS: [&str; 5] = ["blob", "payload", "frame", "frame_body", "stream"];

/// Usage of `cargo xtask fuzz`.
pub const USAGE: &str = "\
  fuzz [--seconds N | --runs N] [--target NAME]... [--sanitizer S] [--minimize]
                run every fuzz target (blob, payload, frame, frame_body,
                stream) N seconds each (default 60), or N executions each,
                from fuzz/corpus/NAME (--sanitizer address (default) or
                none; --minimize: cmin each corpus after); installs nightly
                and cargo-fuzz if missing; prints executions and crashes
                per target";

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Seconds per target.
    pub seconds: u64,
    /// Executions per target instead (`-runs`), without a time limit.
    pub runs: Option<u64>,
    /// cargo-fuzz's `--sanitizer` (`address`, or `none`: the runtime and
    /// the trainer forbid `unsafe` where they parse, and run 2–3× faster
    /// without it).
    pub sanitizer: String,
    /// Targets (default all).
    pub targets: Vec<String>,
    /// Minimize each corpus afterwards.
    pub minimize: bool,
}

impl Opts {
    /// Parses the arguments after `fuzz`.
    pub fn parse(args: &[&str]) -> Result<Opts> {
        let mut o = Opts {
            seconds: 60,
            runs: None,
            sanitizer: "address".into(),
            targets: Vec::new(),
            minimize: false,
        };
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            match a {
                "--seconds" => {
                    o.seconds = it
                        .next()
                        .context("--seconds needs a number")?
                        .parse()
                        .ok()
                        .filter(|&s| s > 0)
                        .context("--seconds: expected a positive whole number")?
                }
                "--target" => {
                    let t = it.next().context("--target needs a name")?;
                    if !TARGETS.contains(t) {
                        bail!("--target {t}: expected one of {}", TARGETS.join(", "));
                    }
                    o.targets.push(t.to_string());
                }
                "--minimize" => o.minimize = true,
                "--runs" => {
                    o.runs = Some(
                        it.next()
                            .context("--runs needs a number")?
                            .parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .context("--runs: expected a positive whole number")?,
                    )
                }
                "--sanitizer" => {
                    let v = it.next().context("--sanitizer needs a name")?;
                    if !["address", "none"].contains(v) {
                        bail!("--sanitizer {v}: expected address or none");
                    }
                    o.sanitizer = v.to_string();
                }
                other => bail!("fuzz: unknown argument `{other}`\n\nusage:\n{USAGE}"),
            }
        }
        if o.targets.is_empty() {
            o.targets = TARGETS.iter().map(|t| t.to_string()).collect();
        }
        Ok(o)
    }
}

/// Installs the nightly toolchain and cargo-fuzz if missing.
fn ensure_tools() -> Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(nightly, Ok(s) if s.success()) {
        println!("$ rustup toolchain install nightly --profile minimal");
        let st = Command::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .status()
            .context("running rustup (the fuzzers need a nightly toolchain: https://rustup.rs)")?;
        if !st.success() {
            bail!("rustup toolchain install nightly failed ({st})");
        }
    }
    let fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(fuzz, Ok(s) if s.success()) {
        println!("$ cargo install cargo-fuzz --locked");
        let st = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .context("running cargo install cargo-fuzz")?;
        if !st.success() {
            bail!("cargo install cargo-fuzz failed ({st})");
        }
    }
    Ok(())
}

/// What one target's run printed.
#[derive(Debug, Default)]
struct Stats {
    execs: u64,
    per_sec: u64,
    corpus: u64,
    crashed: Option<String>,
}

/// libFuzzer's `-print_final_stats=1` lines, and a crash's artifact.
fn parse(stderr: &str) -> Stats {
    let mut s = Stats::default();
    for line in stderr.lines() {
        let num = |l: &str| l.rsplit(':').next().and_then(|v| v.trim().parse().ok());
        if line.starts_with("stat::number_of_executed_units:") {
            s.execs = num(line).unwrap_or(0);
        } else if line.starts_with("stat::average_exec_per_sec:") {
            s.per_sec = num(line).unwrap_or(0);
        } else if line.starts_with("stat::new_units_added:") {
            s.corpus = num(line).unwrap_or(0);
        } else if let Some(rest) = line.split("Test unit written to ").nth(1) {
            s.crashed = Some(rest.trim().to_string());
        }
    }
    s
}

/// Runs the fuzz targets from the workspace `root`.
pub fn run(root: &Path, o: &Opts) -> Result<()> {
    ensure_tools()?;
    let dir = root.join("fuzz");
    let mut rows = Vec::new();
    for t in &o.targets {
        let corpus = dir.join("corpus").join(t);
        let seeds = dir.join("seeds").join(t);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let mut c = Command::new("cargo");
        c.current_dir(&dir)
            .args(["+nightly", "fuzz", "run", "--sanitizer", &o.sanitizer, t])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(match o.runs {
                Some(n) => format!("-runs={n}"),
                None => format!("-max_total_time={}", o.seconds),
            })
            .arg("-print_final_stats=1")
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        println!("$ {}", crate::cmd::display(&c));
        let out = c
            .output()
            .with_context(|| format!("running the fuzz target {t}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut s = parse(&stderr);
        if !out.status.success() && s.crashed.is_none() {
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "fuzz target {t} failed to run ({}):\n{}",
                out.status,
                tail.join("\n")
            );
        }
        if !out.status.success() && s.crashed.is_none() {
            s.crashed = Some("(no artifact path printed)".into());
        }
        eprintln!(
            "{t}: {} executions ({}/s), {} new corpus units, {}",
            s.execs,
            s.per_sec,
            s.corpus,
            s.crashed.as_deref().unwrap_or("no crash")
        );
        if o.minimize && s.crashed.is_none() {
            let mut m = Command::new("cargo");
            m.current_dir(&dir)
                .args(["+nightly", "fuzz", "cmin", "--sanitizer", &o.sanitizer, t])
                .arg(&corpus);
            println!("$ {}", crate::cmd::display(&m));
            crate::cmd::run(&mut m)?;
        }
        rows.push((t.clone(), s));
    }
    println!("\n| target | executions | executions/s | new corpus units | crashes |");
    println!("|---|---:|---:|---:|---|");
    for (t, s) in &rows {
        println!(
            "| {t} | {} | {} | {} | {} |",
            s.execs,
            s.per_sec,
            s.corpus,
            s.crashed
                .as_deref()
                .map_or("0".into(), |p| format!("1: {p}"))
        );
    }
    let crashed: Vec<&String> = rows
        .iter()
        .filter(|(_, s)| s.crashed.is_some())
        .map(|(t, _)| t)
        .collect();
    if !crashed.is_empty() {
        bail!(
            "fuzz targets crashed: {} (inputs in fuzz/artifacts/)",
            crashed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
