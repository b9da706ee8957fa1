//! `cargo xtask loop`: the device-log loop end to end, as a benchmark (it
//! prints tables; it is not a test). Uses the release `tinyppo` binary.
//!
//! For each seed:
//!
//! 1. `tinyppo train` the plant part way (`--train-steps`, default 16k) →
//!    version 1, int8 `policy.bin`; `tinyppo eval` it (100 episodes).
//! 2. Collect device logs of version 1 (`tinyppo simulate`, stochastic,
//!    `--log-episodes` episodes; the same bytes the firmware writes under
//!    QEMU). With `--device qemu` every log is the firmware's own: built
//!    with that version's blob, run under QEMU, its UART captured, and the
//!    capture checked byte for byte against `tinyppo simulate`'s.
//! 3. `tinyppo finetune` a copy of the run from the logs only, once per
//!    correction (`none`, `single-ratio`, `per-decision`, `vtrace`), and
//!    evaluate each export: the before/after table.
//! 4. Three rounds of the full loop on another copy: finetune (all logs so
//!    far, `--max-lag 3`, `--round-iterations` iterations, default 1) →
//!    export → device (simulate) → logs → finetune.
//!    Then, from the newest version (4), fine-tune from the logs of
//!    version 1 **only** (lag 3), once per correction: the stale-logs
//!    table. Every fine-tune must succeed (it fails on a non-finite
//!    loss, gradient or weight) and every `metrics.csv` value it wrote must
//!    be finite.
//!
//! Evaluation: `tinyppo eval --episodes 100 --seed 12345` (mean action),
//! the same for every policy, so differences are the policies'.
//!
//! `cargo xtask loop --publication` is the other loop benchmark, of the
//! publication gate ([`crate::publication`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Options of `cargo xtask loop`.
#[derive(Debug, Clone)]
pub struct LoopOpts {
    /// Plant.
    pub env: String,
    /// Seeds 1..=seeds.
    pub seeds: u64,
    /// Environment steps of the initial training.
    pub train_steps: u64,
    /// Episodes of device logs per collection.
    pub log_episodes: u32,
    /// Episodes per evaluation.
    pub eval_episodes: u32,
    /// Rounds of the full loop.
    pub rounds: usize,
    /// `--iterations` of each fine-tune of the loop's rounds (default 1:
    /// small steps, so the newest version is not yet saturated and the
    /// effect of stale logs on it is measurable; `None`: the fine-tune's
    /// default).
    pub round_iterations: Option<usize>,
    /// Corrections compared in the before/after table.
    pub corrections: Vec<String>,
    /// Extra arguments passed to every `tinyppo finetune`.
    pub finetune_args: Vec<String>,
    /// Output directory (default `<target>/loop`).
    pub out: Option<PathBuf>,
    /// Where the logs come from: `tinyppo simulate`, or the firmware
    /// under QEMU (`--device qemu`).
    pub device: Device,
}

/// The "device" of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// `tinyppo simulate`: the bytes the firmware would send.
    Simulate,
    /// The QEMU firmware (`mps2-an386`) built with each version's blob,
    /// its UART captured to the log file; each capture is also checked
    /// byte for byte against `tinyppo simulate` of the same run.
    Qemu,
}

impl Default for LoopOpts {
    fn default() -> Self {
        LoopOpts {
            env: "pendulum".into(),
            seeds: 5,
            // Part way: with the pendulum preset, 16k steps leave the
            // deterministic policy around −760 (30k already reach ≈ −170,
            // leaving the fine-tune little to show).
            train_steps: 16_000,
            log_episodes: 100,
            eval_episodes: 100,
            rounds: 3,
            round_iterations: Some(1),
            corrections: ["none", "single-ratio", "per-decision", "vtrace"]
                .map(String::from)
                .to_vec(),
            finetune_args: Vec::new(),
            out: None,
            device: Device::Simulate,
        }
    }
}

/// Usage of `cargo xtask loop`.
pub const USAGE: &str = "\
  loop [--seeds N] [--env NAME] [--train-steps N] [--log-episodes N]
       [--eval-episodes N] [--rounds N] [--round-iterations K]
       [--correction C]... [--out DIR] [--device simulate|qemu]
       [-- FINETUNE-ARGS...]
                train part way, collect device logs, fine-tune from them
                with each correction (before/after table), then rounds of
                finetune → device → logs and a fine-tune from 3-version-old
                logs (defaults: pendulum, 5 seeds, 16k steps, 100 episodes,
                3 rounds of 1 iteration); --device qemu takes every log
                from the firmware under QEMU (UART capture) instead of
                `tinyppo simulate`, and checks each equals simulate's";

impl LoopOpts {
    /// Parses the arguments after `loop`; everything after `--` goes to
    /// every `tinyppo finetune` (e.g. `-- --iterations 10 --learning-rate 1e-4`).
    pub fn parse(args: &[&str]) -> Result<Self> {
        let mut o = LoopOpts::default();
        let mut corrections = Vec::new();
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            let mut val = |name: &str| -> Result<String> {
                it.next()
                    .map(|s| s.to_string())
                    .with_context(|| format!("{name} needs a value"))
            };
            match a {
                "--seeds" => o.seeds = val(a)?.parse().context("--seeds")?,
                "--env" => o.env = val(a)?,
                "--train-steps" => o.train_steps = val(a)?.parse().context("--train-steps")?,
                "--log-episodes" => o.log_episodes = val(a)?.parse().context("--log-episodes")?,
                "--eval-episodes" => {
                    o.eval_episodes = val(a)?.parse().context("--eval-episodes")?
                }
                "--rounds" => o.rounds = val(a)?.parse().context("--rounds")?,
                "--round-iterations" => {
                    o.round_iterations = Some(val(a)?.parse().context("--round-iterations")?)
                }
                "--correction" => corrections.push(val(a)?),
                "--out" => o.out = Some(PathBuf::from(val(a)?)),
                "--device" => {
                    o.device = match val(a)?.as_str() {
                        "simulate" => Device::Simulate,
                        "qemu" => Device::Qemu,
                        other => bail!("--device: `simulate` or `qemu`, not `{other}`"),
                    }
                }
                "--" => {
                    o.finetune_args = it.by_ref().map(|s| s.to_string()).collect();
                }
                other => bail!("loop: unknown argument `{other}`\n\nusage:\n{USAGE}"),
            }
        }
        if !corrections.is_empty() {
            o.corrections = corrections;
        }
        Ok(o)
    }
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root.join(d)
            }
        }
        _ => root.join("target"),
    }
}

/// The `tinyppo` binary and a log of every command run.
struct Tool {
    bin: PathBuf,
    log: Vec<String>,
    /// With `--device qemu`: the workspace root and the thumb toolchain,
    /// and the bytes captured so far.
    qemu: Option<(PathBuf, crate::toolchain::Toolchain)>,
    captures: (usize, u64),
}

impl Tool {
    fn run(&mut self, args: &[String]) -> Result<String> {
        self.log.push(format!("tinyppo {}", args.join(" ")));
        let out = Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "tinyppo {} failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn eval(&mut self, policy: &Path, o: &LoopOpts) -> Result<f64> {
        let out = self.run(&args(&[
            "eval",
            "--env",
            &o.env,
            "--episodes",
            &o.eval_episodes.to_string(),
            "--seed",
            "12345",
            "--json",
            "--policy",
            &p(policy),
        ]))?;
        let v: serde_json::Value = serde_json::from_str(out.trim()).context("parsing eval JSON")?;
        v["mean_return"]
            .as_f64()
            .context("eval JSON has no mean_return")
    }

    /// The device logs of `policy`: `tinyppo simulate`, or with `--device
    /// qemu` the firmware's UART under QEMU, checked against simulate's.
    fn simulate(&mut self, policy: &Path, o: &LoopOpts, seed: u64, out: &Path) -> Result<()> {
        let Some((root, tc)) = &self.qemu else {
            return self.simulate_host(policy, o, seed, out);
        };
        let b = crate::firmware::Build {
            policy: Some(policy.to_path_buf()),
            episodes: o.log_episodes,
            seed,
            ..crate::firmware::Build::default()
        };
        let built = crate::firmware::build(root, tc, &b)?;
        self.log.push(format!(
            "cargo xtask qemu --policy {} --episodes {} --seed {seed} --out {}",
            p(policy),
            o.log_episodes,
            p(out)
        ));
        crate::qemu::run(&crate::qemu::Run {
            elf: built.elf,
            serial: Some(out.to_path_buf()),
            icount: false,
            timeout: std::time::Duration::from_secs(600),
        })?;
        let host = out.with_extension("simulate.bin");
        self.simulate_host(policy, o, seed, &host)?;
        let (dev, sim) = (std::fs::read(out)?, std::fs::read(&host)?);
        if let Some(at) = crate::qemu::first_difference(&dev, &sim) {
            bail!(
                "the QEMU capture {} ({} bytes) differs from tinyppo simulate's ({} bytes) at byte {at}",
                out.display(),
                dev.len(),
                sim.len()
            );
        }
        self.captures.0 += 1;
        self.captures.1 += dev.len() as u64;
        Ok(())
    }

    fn simulate_host(&mut self, policy: &Path, o: &LoopOpts, seed: u64, out: &Path) -> Result<()> {
        self.run(&args(&[
            "simulate",
            "--policy",
            &p(policy),
            "--env",
            &o.env,
            "--episodes",
            &o.log_episodes.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
            &p(out),
        ]))
        .map(drop)
    }

    /// Fine-tunes `dir` in place; returns the version written.
    fn finetune(
        &mut self,
        dir: &Path,
        logs: &[PathBuf],
        correction: &str,
        extra: &[&str],
        o: &LoopOpts,
    ) -> Result<u32> {
        // This benchmark compares the corrections, so every fine-tune
        // publishes (`--accept always`); the publication gate is judged
        // on its own.
        let mut a = args(&[
            "finetune",
            "--accept",
            "always",
            "--checkpoint",
            &p(dir),
            "--logs",
        ]);
        a.extend(logs.iter().map(|l| p(l)));
        a.extend(args(&["--is-correction", correction]));
        a.extend(args(extra));
        a.extend(o.finetune_args.iter().cloned());
        self.run(&a)?;
        check_metrics(&dir.join("metrics.csv"))?;
        latest_version(dir)
    }
}

/// The newest version in a run's `policies.json`.
fn latest_version(dir: &Path) -> Result<u32> {
    let path = dir.join("policies.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).context("parsing policies.json")?;
    v["policies"]
        .as_array()
        .and_then(|a| a.iter().filter_map(|r| r["version"].as_u64()).max())
        .map(|v| v as u32)
        .context("policies.json lists no version")
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Every numeric cell of the fine-tune rows (those with an
/// `offpolicy/iteration`) must be finite.
fn check_metrics(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty metrics.csv")?
        .split(',')
        .collect();
    let it_col = header
        .iter()
        .position(|h| *h == "offpolicy/iteration")
        .context("metrics.csv has no offpolicy columns")?;
    for (n, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.get(it_col).is_none_or(|c| c.is_empty()) {
            continue;
        }
        for (h, c) in header.iter().zip(&cells) {
            // recent_return is NaN by design without on-policy mixing.
            if *h == "charts/recent_return" {
                continue;
            }
            if let Ok(x) = c.parse::<f64>() {
                if !x.is_finite() {
                    bail!("{}: row {} has {h} = {c}", path.display(), n + 2);
                }
            }
        }
    }
    Ok(())
}

/// Copies the files of a run directory (flat) into a fresh `dst`.
fn copy_run(src: &Path, dst: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(dst);
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    for e in std::fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name()))
                .with_context(|| format!("copying {}", e.path().display()))?;
        }
    }
    Ok(())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Runs the benchmark from the workspace `root`.
pub fn run(root: &Path, o: &LoopOpts) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "tinyppo-trainer"])
        .status()
        .context("building tinyppo")?;
    if !status.success() {
        bail!("cargo build --release -p tinyppo-trainer failed");
    }
    let qemu = match o.device {
        Device::Simulate => None,
        Device::Qemu => {
            crate::qemu::check_installed()?;
            Some((
                root.to_path_buf(),
                crate::toolchain::Toolchain::detect(root)?,
            ))
        }
    };
    let mut tool = Tool {
        bin: target_dir(root).join("release").join("tinyppo"),
        log: Vec::new(),
        qemu,
        captures: (0, 0),
    };
    let base = o
        .out
        .clone()
        .unwrap_or_else(|| target_dir(root).join("loop"));
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let t0 = Instant::now();

    // (seed, before, after per correction)
    let mut table1: Vec<(u64, f64, Vec<f64>)> = Vec::new();
    // (seed, returns of v1..v_{rounds+1}, stale-log fine-tune per correction)
    let mut table2: Vec<(u64, Vec<f64>, Vec<f64>)> = Vec::new();
    for seed in 1..=o.seeds {
        let dir = base.join(format!("s{seed}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let run0 = dir.join("v1");
        tool.run(&args(&[
            "train",
            "--env",
            &o.env,
            "--total-steps",
            &o.train_steps.to_string(),
            "--seed",
            &seed.to_string(),
            "--quiet",
            "--out",
            &p(&run0),
        ]))?;
        let before = tool.eval(&run0.join("policy.bin"), o)?;
        let mut logs = vec![dir.join("logs-v1.bin")];
        tool.simulate(&run0.join("policy.bin"), o, 1000 + seed, &logs[0])?;

        let mut after = Vec::new();
        for c in &o.corrections {
            let d = dir.join(format!("ft-{c}"));
            copy_run(&run0, &d)?;
            tool.finetune(&d, &logs[..1], c, &["--quiet"], o)?;
            after.push(tool.eval(&d.join("policy.bin"), o)?);
        }
        eprintln!(
            "seed {seed}: before {before:.1}, after {}",
            o.corrections
                .iter()
                .zip(&after)
                .map(|(c, a)| format!("{c} {a:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        table1.push((seed, before, after));

        // The full loop.
        let lp = dir.join("loop");
        copy_run(&run0, &lp)?;
        let mut rets = vec![before];
        for round in 1..=o.rounds {
            let iters = o.round_iterations.map(|k| k.to_string());
            let mut extra = vec!["--quiet", "--max-lag", "3"];
            if let Some(k) = &iters {
                extra.extend(["--iterations", k.as_str()]);
            }
            let v = tool.finetune(&lp, &logs, "vtrace", &extra, o)?;
            rets.push(tool.eval(&lp.join("policy.bin"), o)?);
            let next = dir.join(format!("logs-v{v}.bin"));
            tool.simulate(
                &lp.join("policy.bin"),
                o,
                1000 + 100 * round as u64 + seed,
                &next,
            )?;
            logs.push(next);
        }
        // Logs of version 1 only, from the newest version (lag = rounds).
        let mut stale = Vec::new();
        for c in &o.corrections {
            let d = dir.join(format!("stale-{c}"));
            copy_run(&lp, &d)?;
            tool.finetune(&d, &logs[..1], c, &["--quiet"], o)?;
            stale.push(tool.eval(&d.join("policy.bin"), o)?);
        }
        eprintln!(
            "seed {seed}: loop versions {}, fine-tune from v1 logs: {}",
            rets.iter()
                .map(|r| format!("{r:.1}"))
                .collect::<Vec<_>>()
                .join(" → "),
            o.corrections
                .iter()
                .zip(&stale)
                .map(|(c, a)| format!("{c} {a:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        table2.push((seed, rets, stale));
    }

    let commands = base.join("commands.txt");
    std::fs::write(&commands, tool.log.join("\n") + "\n")?;
    println!(
        "\n{} · {} steps of training · {} episodes of logs per collection · eval {} episodes (seed 12345, mean action) · {:.0} s",
        o.env,
        o.train_steps,
        o.log_episodes,
        o.eval_episodes,
        t0.elapsed().as_secs_f64()
    );
    if !o.finetune_args.is_empty() {
        println!("finetune options: {}", o.finetune_args.join(" "));
    }
    println!("\nFine-tune from the logs of version 1 only (return of the int8 export):\n");
    print!("| seed | before |");
    for c in &o.corrections {
        print!(" {c} |");
    }
    println!();
    print!("|---:|---:|");
    for _ in &o.corrections {
        print!("---:|");
    }
    println!();
    for (seed, before, after) in &table1 {
        print!("| {seed} | {before:.1} |");
        for a in after {
            print!(" {a:.1} ({:+.1}) |", a - before);
        }
        println!();
    }
    let befores: Vec<f64> = table1.iter().map(|r| r.1).collect();
    print!("| mean | {:.1} |", mean(&befores));
    for k in 0..o.corrections.len() {
        let v: Vec<f64> = table1.iter().map(|r| r.2[k]).collect();
        let better = table1.iter().filter(|r| r.2[k] > r.1).count();
        print!(
            " {:.1} ({:+.1}; better in {better}/{}) |",
            mean(&v),
            mean(&v) - mean(&befores),
            table1.len()
        );
    }
    println!();

    println!(
        "\nThe loop, {} rounds of finetune (vtrace, all logs so far, --max-lag 3) → device → logs; \
         then from the newest version, a fine-tune from the logs of version 1 only (lag {}):\n",
        o.rounds, o.rounds
    );
    print!("| seed |");
    for v in 1..=o.rounds + 1 {
        print!(" v{v} |");
    }
    for c in &o.corrections {
        print!(" v{} from v1 logs, {c} |", o.rounds + 2);
    }
    println!();
    print!("|---:|");
    for _ in 0..=o.rounds + o.corrections.len() {
        print!("---:|");
    }
    println!();
    for (seed, rets, stale) in &table2 {
        print!("| {seed} |");
        for r in rets {
            print!(" {r:.1} |");
        }
        let last = rets.last().copied().unwrap_or(f64::NAN);
        for a in stale {
            print!(" {a:.1} ({:+.1}) |", a - last);
        }
        println!();
    }
    for (k, c) in o.corrections.iter().enumerate() {
        let gain: Vec<f64> = table2
            .iter()
            .map(|r| r.2[k] - r.1.last().copied().unwrap_or(f64::NAN))
            .collect();
        println!(
            "lag-{} logs with {c}: mean change {:+.1}, better in {}/{} seeds",
            o.rounds,
            mean(&gain),
            gain.iter().filter(|&&g| g > 0.0).count(),
            gain.len()
        );
    }
    println!("no fine-tune produced a non-finite loss, gradient, weight or metric");
    if o.device == Device::Qemu {
        println!(
            "device: the QEMU firmware (mps2-an386), {} UART captures, {} bytes, each equal to \
             tinyppo simulate's byte for byte",
            tool.captures.0, tool.captures.1
        );
    }
    println!("commands: {}", commands.display());
    Ok(())
}
