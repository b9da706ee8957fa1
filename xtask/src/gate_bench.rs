//! `cargo xtask gate [--seeds N]`: what `finetune`'s publication gate
//! publishes. For pendulum, seeds `1..=N` trained 30k and 100k steps:
//! 100 logged episodes of version 1 (`tinyppo simulate --seed 77`), a
//! default fine-tune (`--accept improvement`), and the true return of the
//! run's version before and after, and of a rejected candidate, by
//! `tinyppo eval --episodes 100 --seed 11` (mean action). Prints the
//! table of `docs/OFFPOLICY.md` ("The publication gate") and the counts:
//! published policies worse than their behaviour by more than 5 %, and
//! improvements kept on the part-trained runs.
//!
//! A benchmark, not a test: nothing is asserted.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::bench_train::{build_tinyppo, run_quiet, train};

/// Step budgets: part-trained and trained.
const STEPS: [u64; 2] = [30_000, 100_000];

fn eval11(bin: &Path, policy: &Path) -> Result<f64> {
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
        "--policy",
    ])
    .arg(policy);
    let v: serde_json::Value = serde_json::from_str(&run_quiet(&mut cmd)?)?;
    v["mean_return"]
        .as_f64()
        .context("eval --json: mean_return")
}

/// Runs the benchmark for seeds `1..=seeds`.
pub fn run(root: &Path, seeds: u64) -> Result<()> {
    let bin = build_tinyppo(root)?;
    let base = root.join("target").join("gate");
    println!("| steps | seed | before | published? (ESS) | after | the rejected candidate |");
    println!("|---:|---:|---:|---|---:|---:|");
    let (mut worse, mut kept, mut improvable) = (0, 0, 0);
    for steps in STEPS {
        for seed in 1..=seeds {
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
            let before = eval11(&bin, &dir.join("policy.bin"))?;
            let mut ft = Command::new(&bin);
            ft.args(["finetune", "--json", "--checkpoint"])
                .arg(&dir)
                .arg("--logs")
                .arg(&log);
            let j: serde_json::Value = serde_json::from_str(&run_quiet(&mut ft)?)?;
            let published = j["published"] == true;
            let ess = j["decision"]["ess"].as_f64().unwrap_or(f64::NAN);
            let after = eval11(&bin, &dir.join("policy.bin"))?;
            let cand = match j["candidate_dir"].as_str() {
                Some(d) => format!("{:.1}", eval11(&bin, &Path::new(d).join("policy.bin"))?),
                None => String::new(),
            };
            if published && after < before - 0.05 * before.abs() {
                worse += 1;
            }
            if steps == STEPS[0] {
                improvable += 1;
                if published && after > before {
                    kept += 1;
                }
            }
            println!(
                "| {}k | {seed} | {before:.1} | {} ({ess:.3}) | {after:.1} | {cand} |",
                steps / 1000,
                if published { "yes" } else { "no" }
            );
        }
    }
    println!(
        "\npublished and worse than the behaviour by more than 5 %: {worse} of {}; \
         improvement kept on {kept} of {improvable} part-trained ({}k) runs",
        seeds * STEPS.len() as u64,
        STEPS[0] / 1000
    );
    Ok(())
}
