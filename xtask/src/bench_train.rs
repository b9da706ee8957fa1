//! `cargo xtask bench-train`: trains every plant over several seeds with the
//! release `tinyppo` binary and prints a table of env steps, wall-clock
//! seconds, env-steps/s and the final return of the exported **int8**
//! policy (`tinyppo eval`, 100 episodes, through the runtime), plus a speed
//! row in the configuration of the RLtools comparison (pendulum, 4 envs ×
//! 1024 steps, minibatch 256, 2 epochs, 307,200 steps).
//!
//! A benchmark, not a test: it prints and checks the targets of the issue
//! (pendulum median ≥ −200 with no seed below −300, mountain-car ≥ 90,
//! cartpole ≥ 475, dc-motor ≥ −20) and exits non-zero if one is missed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::toolchain::cargo_bin;

/// Options of the benchmark.
pub struct Opts {
    /// Seeds 1..=seeds per plant.
    pub seeds: u64,
    /// Plants to train.
    pub envs: Vec<String>,
    /// Repetitions of the speed row.
    pub speed_reps: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            seeds: 5,
            envs: ["pendulum", "mountain-car", "cartpole", "dc-motor"]
                .map(String::from)
                .to_vec(),
            speed_reps: 3,
        }
    }
}

struct Row {
    env: String,
    seed: u64,
    steps: u64,
    seconds: f64,
    eval: f64,
}

fn tinyppo(root: &Path) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    dir.join("release").join("tinyppo")
}

pub(crate) fn run_quiet(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn train(
    bin: &Path,
    out: &Path,
    env: &str,
    seed: u64,
    extra: &[&str],
) -> Result<(u64, f64)> {
    let _ = std::fs::remove_dir_all(out);
    let t0 = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args([
        "train",
        "--env",
        env,
        "--seed",
        &seed.to_string(),
        "--quiet",
        "--out",
    ])
    .arg(out)
    .args(extra);
    run_quiet(&mut cmd)?;
    let seconds = t0.elapsed().as_secs_f64();
    let csv = std::fs::read_to_string(out.join("metrics.csv")).context("reading metrics.csv")?;
    let steps = csv
        .lines()
        .last()
        .and_then(|l| l.split(',').nth(1))
        .and_then(|s| s.parse().ok())
        .context("metrics.csv has no global_step")?;
    Ok((steps, seconds))
}

pub(crate) fn eval(bin: &Path, policy: &Path, env: &str) -> Result<f64> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "eval",
        "--env",
        env,
        "--episodes",
        "100",
        "--seed",
        "12345",
        "--json",
        "--policy",
    ])
    .arg(policy);
    let v: serde_json::Value =
        serde_json::from_str(run_quiet(&mut cmd)?.trim()).context("parsing eval JSON")?;
    v["mean_return"]
        .as_f64()
        .context("eval JSON has no mean_return")
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Builds the release `tinyppo` binary and returns its path.
pub(crate) fn build_tinyppo(root: &Path) -> Result<PathBuf> {
    let status = Command::new(cargo_bin())
        .current_dir(root)
        .args(["build", "--release", "-p", "tinyppo-trainer"])
        .status()
        .context("building tinyppo")?;
    if !status.success() {
        bail!("cargo build --release -p tinyppo-trainer failed");
    }
    Ok(tinyppo(root))
}

/// Runs the benchmark from the workspace `root`.
pub fn run(root: &Path, opts: &Opts) -> Result<()> {
    let bin = build_tinyppo(root)?;
    let base = root.join("target").join("bench-train");
    let mut rows = Vec::new();
    for env in &opts.envs {
        for seed in 1..=opts.seeds {
            let out = base.join(format!("{env}-s{seed}"));
            let (steps, seconds) = train(&bin, &out, env, seed, &[])?;
            let eval = eval(&bin, &out.join("policy.bin"), env)?;
            eprintln!("{env} seed {seed}: {steps} steps, {seconds:.1} s, int8 eval {eval:.1}");
            rows.push(Row {
                env: env.clone(),
                seed,
                steps,
                seconds,
                eval,
            });
        }
    }

    // The RLtools comparison configuration.
    let speed_args = [
        "--total-steps",
        "307200",
        "--set",
        "num_envs=4",
        "--set",
        "num_steps=1024",
        "--set",
        "ppo.num_minibatches=16",
        "--set",
        "ppo.update_epochs=2",
        // Every update runs both epochs (no KL early stop), as RLtools does.
        "--set",
        "ppo.target_kl=0",
    ];
    let mut speed = Vec::new();
    for threads in ["1", "2"] {
        for rep in 0..opts.speed_reps {
            let out = base.join(format!("speed-t{threads}-{rep}"));
            let mut args = speed_args.to_vec();
            let set = format!("threads={threads}");
            args.extend(["--set", set.as_str()]);
            let (steps, seconds) = train(&bin, &out, "pendulum", 1, &args)?;
            let eval = eval(&bin, &out.join("policy.bin"), "pendulum")?;
            let plural = if threads == "1" { "" } else { "s" };
            let env = format!("pendulum (RLtools config, {threads} thread{plural})");
            speed.push(Row {
                env,
                seed: 1,
                steps,
                seconds,
                eval,
            });
        }
    }

    println!("\n| plant | seed | env steps | wall s | env-steps/s | int8 eval return (100 ep) |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows.iter().chain(&speed) {
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.1} |",
            r.env,
            r.seed,
            r.steps,
            r.seconds,
            r.steps as f64 / r.seconds,
            r.eval
        );
    }
    let mut failures = Vec::new();
    println!("\n| plant | median return | worst seed | target | met |");
    println!("|---|---:|---:|---|---|");
    for env in &opts.envs {
        let mut evals: Vec<f64> = rows
            .iter()
            .filter(|r| &r.env == env)
            .map(|r| r.eval)
            .collect();
        let worst = evals.iter().cloned().fold(f64::INFINITY, f64::min);
        let med = median(&mut evals);
        let (target, ok) = match env.as_str() {
            "pendulum" => (
                "median ≥ −200, no seed < −300",
                med >= -200.0 && worst >= -300.0,
            ),
            "mountain-car" => ("median ≥ 90", med >= 90.0),
            "cartpole" => ("median ≥ 475", med >= 475.0),
            "dc-motor" => ("median ≥ −20", med >= -20.0),
            _ => ("—", true),
        };
        println!(
            "| {env} | {med:.1} | {worst:.1} | {target} | {} |",
            if ok { "yes" } else { "NO" }
        );
        if !ok {
            failures.push(env.clone());
        }
    }
    for threads in ["1 thread)", "2 threads)"] {
        let mut secs: Vec<f64> = speed
            .iter()
            .filter(|r| r.env.ends_with(threads))
            .map(|r| r.seconds)
            .collect();
        if secs.is_empty() {
            continue;
        }
        let n = secs.len();
        let med = median(&mut secs);
        println!(
            "RLtools configuration (307,200 steps), {}: median {med:.2} s over {n} runs; \
             RLtools: ~0.6 s (OpenBLAS), ~3.5 s without; target ≤ 1.2 s: {}",
            threads.trim_end_matches(')'),
            if med <= 1.2 { "met" } else { "NOT met" }
        );
    }
    if !failures.is_empty() {
        bail!("return targets missed for: {}", failures.join(", "));
    }
    Ok(())
}
