//! `cargo xtask curves`: learning curves of the algorithm family
//! (`reinforce`, `a2c`, `ppo`, `trpo`) on pendulum and cartpole over several seeds,
//! each with its preset (`trainer/presets/<plant>.toml`, then
//! `algo-<name>.toml`) and the same step budget per plant. Prints the final
//! int8 evaluation (100 episodes through the runtime) per algorithm and
//! draws one PNG with `tinyppo plot` (median and min–max band).
//!
//! A benchmark, not a test: nothing is asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::bench_train::{build_tinyppo, eval, median, run_quiet, train};

/// Plants and their step budgets.
const PLANTS: [(&str, u64); 2] = [("pendulum", 100_000), ("cartpole", 200_000)];
/// Algorithms, in legend order.
const ALGOS: [&str; 4] = ["reinforce", "a2c", "ppo", "trpo"];

/// Runs the benchmark; `seeds` per (plant, algorithm), the PNG to `out`.
pub fn run(root: &Path, seeds: u64, out: &Path) -> Result<()> {
    let bin = build_tinyppo(root)?;
    let base = root.join("target").join("curves");
    let mut dirs: Vec<PathBuf> = Vec::new();
    println!("| plant | algo | steps | median int8 eval (100 ep) | worst seed | best seed | wall s (median) |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (env, steps) in PLANTS {
        for algo in ALGOS {
            let (mut evals, mut secs) = (Vec::new(), Vec::new());
            for seed in 1..=seeds {
                let dir = base.join(format!("{env}-{algo}-s{seed}"));
                let budget = steps.to_string();
                let args = ["--algo", algo, "--total-steps", budget.as_str()];
                let (_, s) = train(&bin, &dir, env, seed, &args)?;
                evals.push(eval(&bin, &dir.join("policy.bin"), env)?);
                secs.push(s);
                dirs.push(dir);
            }
            let (lo, hi) = evals
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            println!(
                "| {env} | {algo} | {steps} | {:.1} | {lo:.1} | {hi:.1} | {:.2} |",
                median(&mut evals),
                median(&mut secs)
            );
        }
    }
    let mut cmd = Command::new(&bin);
    cmd.arg("plot").args(&dirs).arg("--out").arg(out);
    print!("{}", run_quiet(&mut cmd)?);
    Ok(())
}
