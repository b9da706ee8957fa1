//! `cargo xtask loop --publication`: does `finetune`'s publication gate
//! ever publish a worse policy, how often does it keep an improvement, and
//! how well do its estimates match the truth (issue 14's benchmark).
//!
//! For pendulum, seeds `1..=N` (default 10) trained 30k and 100k steps
//! (`tinyppo train --total-steps`):
//!
//! 1. 100 logged episodes of version 1 (`tinyppo simulate --seed 77`,
//!    stochastic: the bytes a device would log);
//! 2. a fine-tune from them (`--accept improvement`, the defaults, plus any
//!    `-- FINETUNE-ARGS`) with `--keep-candidates`, so every iterate the gate
//!    judged is kept with its decision;
//! 3. the true return, on 100 fresh episodes (`tinyppo eval --episodes 100
//!    --seed 11`), of version 1 and of what the run holds after the
//!    fine-tune (the mean action, as `eval` does by default), and of every
//!    candidate.
//!
//! Two true returns per candidate: the **mean action**'s (what the
//! publication table compares: the policy a user would evaluate), and the
//! **stochastic** one (`eval --stochastic`, the judged blob: the
//! candidate's means at the behaviour's σ), which is what the gate
//! estimates — the return of the policy as it would be logged. The
//! calibration compares the gate's WDR estimate and its lower bounds with
//! the stochastic one, and the estimated gain with the true gain
//! (candidate − version 1, both stochastic, on the same 100 episodes).
//!
//! Prints the publication table, the counts (published policies worse than
//! their behaviour by more than 5 %; improvements kept on the part-trained
//! runs) and the calibration summary; writes `calibration.csv` in the output
//! directory and the plot (`tinyppo plot --calibration`, default
//! `docs/offpolicy-calibration.png`).
//!
//! A benchmark, not a test: nothing is asserted.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::bench_train::{build_tinyppo, run_quiet, train};

/// Usage of `cargo xtask loop --publication`.
pub const USAGE: &str = "\
  loop --publication [--seeds N] [--steps N,N...] [--out DIR] [--png FILE]
       [-- FINETUNE-ARGS...]
                the publication gate: pendulum seeds 1..N (default 10)
                trained 30k and 100k steps, 100 logged episodes each, a
                default fine-tune (--keep-candidates), true returns of the
                published policy and of every candidate on 100 fresh
                episodes; the counts and the calibration plot (default
                docs/offpolicy-calibration.png); `cargo xtask gate` is an alias";

/// Options of the benchmark.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Seeds `1..=seeds`.
    pub seeds: u64,
    /// Training budgets; the first is the part-trained one.
    pub steps: Vec<u64>,
    /// Output directory (default `target/loop-publication`).
    pub out: Option<PathBuf>,
    /// The calibration plot (default `docs/offpolicy-calibration.png`).
    pub png: Option<PathBuf>,
    /// Extra arguments of every `tinyppo finetune`.
    pub finetune_args: Vec<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            seeds: 10,
            steps: vec![30_000, 100_000],
            out: None,
            png: None,
            finetune_args: Vec::new(),
        }
    }
}

impl Opts {
    /// Parses the arguments after `loop --publication` (or `gate`).
    pub fn parse(args: &[&str]) -> Result<Self> {
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            let mut val = |name: &str| -> Result<String> {
                it.next()
                    .map(|s| s.to_string())
                    .with_context(|| format!("{name} needs a value"))
            };
            match a {
                "--seeds" => o.seeds = val(a)?.parse().context("--seeds")?,
                "--steps" => {
                    o.steps = val(a)?
                        .split(',')
                        .map(|s| s.trim().parse().context("--steps"))
                        .collect::<Result<_>>()?
                }
                "--out" => o.out = Some(PathBuf::from(val(a)?)),
                "--png" => o.png = Some(PathBuf::from(val(a)?)),
                "--" => o.finetune_args = it.by_ref().map(|s| s.to_string()).collect(),
                other => bail!("loop --publication: unknown argument `{other}`\n\nusage:\n{USAGE}"),
            }
        }
        if o.steps.is_empty() || o.seeds == 0 {
            bail!("loop --publication: needs at least one seed and one --steps budget");
        }
        Ok(o)
    }
}

/// `tinyppo eval --env pendulum --episodes 100 --seed 11`, mean action or
/// stochastic.
fn eval11(bin: &Path, policy: &Path, stochastic: bool) -> Result<f64> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "eval",
        "--env",
        "pendulum",
        "--episodes",
        "100",
        "--seed",
        "11",
        "--json",
    ]);
    if stochastic {
        cmd.arg("--stochastic");
    }
    cmd.arg("--policy").arg(policy);
    let v: serde_json::Value = serde_json::from_str(&run_quiet(&mut cmd)?)?;
    v["mean_return"]
        .as_f64()
        .context("eval --json: mean_return")
}

fn num(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// One candidate the gate judged, with its true returns.
struct Candidate {
    steps: u64,
    seed: u64,
    iteration: u64,
    accepted: bool,
    ess: f64,
    kl_mu: f64,
    behaviour_logged: f64,
    estimate: f64,
    lower: f64,
    gain: f64,
    gain_lower: f64,
    /// Stochastic return of the judged blob, and of version 1.
    true_return: f64,
    behaviour_true: f64,
    /// Mean-action return of the judged blob.
    true_mean_action: f64,
}

/// Runs the benchmark.
pub fn run(root: &Path, o: &Opts) -> Result<()> {
    let bin = build_tinyppo(root)?;
    let base = o
        .out
        .clone()
        .unwrap_or_else(|| root.join("target").join("loop-publication"));
    let png = o
        .png
        .clone()
        .unwrap_or_else(|| root.join("docs").join("offpolicy-calibration.png"));
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let t0 = Instant::now();
    let mut table = String::new();
    table.push_str(
        "| steps | seed | before | published? (iterations judged; ESS, gain lower bound) | after | change | the rejected candidate |\n",
    );
    table.push_str("|---:|---:|---:|---|---:|---:|---:|\n");
    let (mut worse, mut kept, mut improvable, mut published_n) = (0, 0, 0, 0);
    let mut cands: Vec<Candidate> = Vec::new();
    for &steps in &o.steps {
        for seed in 1..=o.seeds {
            let dir = base.join(format!("pendulum-{steps}-s{seed}"));
            let budget = steps.to_string();
            train(
                &bin,
                &dir,
                "pendulum",
                seed,
                &["--total-steps", budget.as_str()],
            )?;
            let log = dir.with_extension("log");
            let mut sim = Command::new(&bin);
            sim.args([
                "simulate",
                "--env",
                "pendulum",
                "--episodes",
                "100",
                "--seed",
                "77",
            ])
            .arg("--policy")
            .arg(dir.join("policy.bin"))
            .arg("--out")
            .arg(&log);
            run_quiet(&mut sim)?;
            let behaviour = dir.join("policy.bin");
            let before = eval11(&bin, &behaviour, false)?;
            let behaviour_true = eval11(&bin, &behaviour, true)?;
            let kept_dir = dir.with_extension("candidates");
            let _ = std::fs::remove_dir_all(&kept_dir);
            let mut ft = Command::new(&bin);
            ft.args(["finetune", "--json", "--checkpoint"])
                .arg(&dir)
                .arg("--logs")
                .arg(&log)
                .arg("--keep-candidates")
                .arg(&kept_dir)
                .args(&o.finetune_args);
            let j: serde_json::Value = serde_json::from_str(&run_quiet(&mut ft)?)?;
            let published = j["published"] == true;
            let after = eval11(&bin, &dir.join("policy.bin"), false)?;
            let cand = match j["candidate_dir"].as_str() {
                Some(d) => format!(
                    "{:.1}",
                    eval11(&bin, &Path::new(d).join("policy.bin"), false)?
                ),
                None => String::new(),
            };
            let record = kept_dir.join("candidates.json");
            let text = std::fs::read_to_string(&record)
                .with_context(|| format!("reading {}", record.display()))?;
            let k: serde_json::Value = serde_json::from_str(&text)?;
            let list = k["candidates"].as_array().context("candidates.json")?;
            for c in list {
                let d = &c["decision"];
                let file = kept_dir.join(c["file"].as_str().context("candidate file")?);
                cands.push(Candidate {
                    steps,
                    seed,
                    iteration: c["iteration"].as_u64().unwrap_or(0),
                    accepted: d["accepted"] == true,
                    ess: num(&d["ess"]),
                    kl_mu: num(&d["kl_mu"]),
                    behaviour_logged: num(&d["behaviour_return"]),
                    estimate: num(&d["estimate"]),
                    lower: num(&d["lower"]),
                    gain: num(&d["gain"]),
                    gain_lower: num(&d["gain_lower"]),
                    true_return: eval11(&bin, &file, true)?,
                    behaviour_true,
                    true_mean_action: eval11(&bin, &file, false)?,
                });
            }
            if published {
                published_n += 1;
                if after < before - 0.05 * before.abs() {
                    worse += 1;
                }
            }
            if steps == o.steps[0] {
                improvable += 1;
                if published && after > before {
                    kept += 1;
                }
            }
            let dj = &j["decision"];
            let line = format!(
                "| {}k | {seed} | {before:.1} | {} ({}; {:.3}, {:+.1}) | {after:.1} | {:+.1} | {cand} |",
                steps / 1000,
                if published { "yes" } else { "no" },
                list.len(),
                num(&dj["ess"]),
                num(&dj["gain_lower"]),
                after - before,
            );
            eprintln!("{line}");
            writeln!(table, "{line}")?;
        }
    }
    let runs = o.seeds * o.steps.len() as u64;
    println!(
        "\npendulum · seeds 1–{} × {} steps · 100 logged episodes (simulate --seed 77) · \
         true returns: eval --episodes 100 --seed 11 · {:.0} s",
        o.seeds,
        o.steps
            .iter()
            .map(|s| format!("{}k", s / 1000))
            .collect::<Vec<_>>()
            .join("/"),
        t0.elapsed().as_secs_f64()
    );
    if !o.finetune_args.is_empty() {
        println!("finetune options: {}", o.finetune_args.join(" "));
    }
    println!("\n{table}");
    println!(
        "published: {published_n} of {runs}; published and worse than the behaviour by more than 5 %: \
         {worse} of {runs}; improvement kept on {kept} of {improvable} part-trained ({}k) runs",
        o.steps[0] / 1000
    );

    // Calibration.
    let csv = base.join("calibration.csv");
    let mut s = String::from(
        "steps,seed,iteration,accepted,ess,kl_mu,behaviour_logged,behaviour_true,estimate,lower,gain,gain_lower,true_return,true_gain,true_mean_action\n",
    );
    for c in &cands {
        writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            c.steps,
            c.seed,
            c.iteration,
            c.accepted as u8,
            c.ess,
            c.kl_mu,
            c.behaviour_logged,
            c.behaviour_true,
            c.estimate,
            c.lower,
            c.gain,
            c.gain_lower,
            c.true_return,
            c.true_return - c.behaviour_true,
            c.true_mean_action
        )?;
    }
    std::fs::write(&csv, s).with_context(|| format!("writing {}", csv.display()))?;
    let summary = |name: &str, sel: &dyn Fn(&Candidate) -> bool| {
        let v: Vec<&Candidate> = cands.iter().filter(|c| sel(c)).collect();
        if v.is_empty() {
            println!("| {name} | 0 | | | | | | | |");
            return;
        }
        let n = v.len().max(1) as f64;
        let mean = |f: &dyn Fn(&Candidate) -> f64| v.iter().map(|c| f(c)).sum::<f64>() / n;
        let frac = |f: &dyn Fn(&Candidate) -> bool| v.iter().filter(|c| f(c)).count();
        println!(
            "| {name} | {} | {:+.1} | {:.1} | {}/{} | {:+.1} | {:.1} | {}/{} | {}/{} |",
            v.len(),
            mean(&|c| c.estimate - c.true_return),
            mean(&|c| (c.estimate - c.true_return).abs()),
            frac(&|c| c.lower <= c.true_return),
            v.len(),
            mean(&|c| c.gain - (c.true_return - c.behaviour_true)),
            mean(&|c| (c.gain - (c.true_return - c.behaviour_true)).abs()),
            frac(&|c| c.gain_lower <= c.true_return - c.behaviour_true),
            v.len(),
            frac(&|c| c.true_return > c.behaviour_true),
            v.len(),
        );
    };
    println!(
        "\ncalibration of every candidate judged (true: stochastic return of the judged blob, eval --stochastic --episodes 100 --seed 11):\n"
    );
    println!("| candidates | n | mean error of the estimate | mean abs error | lower bound ≤ true | mean error of the gain | mean abs error | paired gain lower bound ≤ true gain | truly better than version 1 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    summary("all", &|_| true);
    summary("accepted", &|c| c.accepted);
    summary("rejected", &|c| !c.accepted);
    summary("ESS ≥ 0.1", &|c| c.ess >= 0.1);
    summary("ESS < 0.1", &|c| c.ess < 0.1);
    let accepted_worse = cands
        .iter()
        .filter(|c| c.accepted && c.true_return < c.behaviour_true)
        .count();
    println!(
        "\naccepted candidates truly worse (stochastic) than version 1: {accepted_worse} of {}",
        cands.iter().filter(|c| c.accepted).count()
    );
    let mut plot = Command::new(&bin);
    plot.arg("plot")
        .arg("--calibration")
        .arg(&csv)
        .arg("--out")
        .arg(&png);
    print!("{}", run_quiet(&mut plot)?);
    println!(
        "calibration rows: {}; plot: {}",
        csv.display(),
        png.display()
    );
    Ok(())
}
