//! `cargo xtask bench-robust`: does domain randomization buy robustness,
//! and what does it cost on the nominal model? (Issue 11.) A benchmark
//! that prints tables; it asserts nothing.
//!
//! Per plant (dc-motor, pendulum) and seed (1–5, default), two policies
//! with the plant's preset and step budget:
//!
//! - **nominal**: trained on the default model;
//! - **randomized**: parameters drawn per episode (`[randomize]`, ±30 %
//!   multipliers: inertia, viscous and Coulomb friction, resistance for the
//!   motor; mass and length for the pendulum), Gaussian observation noise
//!   and a one-tick action delay (`[realism]`);
//! - **randomized+history**: the same, with the last two applied actions as
//!   inputs (`action_history = 2`).
//!
//! The exported int8 blobs are swept with `tinyppo eval --sweep` (through
//! the runtime, as on the device) on one grid: each parameter × {0.6, 1,
//! 1.4}, action delay 0–2 ticks, observation noise 0, 1 and 2× the
//! training level (the base realism of every cell: the training noise, no
//! delay). A cell's figure is the mean return over the seeds' cells (each
//! `--episodes` episodes, same eval seed). Headline: the worst cell and the
//! nominal cell (parameters × 1, no delay, no noise) of each policy, and
//! the targets: the randomized policy's worst cell beats the nominal
//! policy's, and its nominal cell is within 10 % of the nominal policy's.
//!
//! Also a finer sweep of inertia (motor) and mass (pendulum), 0.5–1.5 × in
//! 11 steps, drawn by `tinyppo plot --sweep` for an ideal sensor (no delay,
//! no noise) and for the board (one tick, training noise):
//! `docs/robustness-ideal.png`, `docs/robustness-board.png`. Every cell goes
//! to `docs/ROBUSTNESS.md`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::bench_train::{build_tinyppo, run_quiet, train};

/// A plant of the benchmark.
struct PlantSpec {
    env: &'static str,
    /// Randomized parameters (±30 % in training, ±40 % in the grid).
    params: &'static [&'static str],
    /// Training observation noise (standard deviation per dimension, in
    /// the observation's units).
    noise: &'static str,
    /// The parameter of the README plot.
    plotted: &'static str,
    /// Training steps of every policy (`None`: the preset's).
    steps: Option<u64>,
}

const PLANTS: [PlantSpec; 2] = [
    PlantSpec {
        env: "dc-motor",
        params: &[
            "load_inertia",
            "viscous_friction",
            "coulomb_friction",
            "resistance",
        ],
        // Angle error 0.01 rad (an encoder of a few hundred counts per
        // output turn), normalised speed and current 2 % of full scale.
        noise: "[0.01, 0.02, 0.02]",
        plotted: "load_inertia",
        steps: None,
    },
    PlantSpec {
        env: "pendulum",
        params: &["mass", "length"],
        // cos θ and sin θ ±0.01, θ̇ ±0.05 rad/s.
        noise: "[0.01, 0.01, 0.05]",
        plotted: "mass",
        // Twice the preset's 100k: the nominal policy is saturated at
        // 100k, the randomized ones are not (README, "Robustness").
        steps: Some(200_000),
    },
];

/// Options of `cargo xtask bench-robust`.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Seeds 1..=seeds.
    pub seeds: u64,
    /// Episodes per cell.
    pub episodes: u32,
    /// Plants (default both).
    pub envs: Vec<String>,
    /// `--steps NAME=N`: training steps of a plant's policies.
    pub steps: Vec<(String, u64)>,
    /// `--spread F`: parameters randomized by ±F in training (default 0.3).
    pub spread: f64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            seeds: 5,
            episodes: 50,
            envs: PLANTS.iter().map(|p| p.env.to_string()).collect(),
            steps: Vec::new(),
            spread: 0.3,
        }
    }
}

/// Usage of `cargo xtask bench-robust`.
pub const USAGE: &str = "\
  bench-robust [--seeds N] [--episodes N] [--env NAME]... [--steps NAME=N]...
               [--spread F]
                nominal vs randomized training (parameters ±30 %, noise,
                1-tick delay) on dc-motor and pendulum, both swept on one
                grid (parameters ±40 %, delay 0–2, noise 0–2×): headline
                table, docs/ROBUSTNESS.md, docs/robustness-*.png";

impl Opts {
    /// Parses the arguments after `bench-robust`.
    pub fn parse(args: &[&str]) -> Result<Opts> {
        let mut o = Opts::default();
        let mut envs = Vec::new();
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            let mut val = || it.next().with_context(|| format!("{a} needs a value"));
            match a {
                "--seeds" => o.seeds = val()?.parse().context("--seeds")?,
                "--episodes" => o.episodes = val()?.parse().context("--episodes")?,
                "--spread" => {
                    o.spread = val()?.parse().context("--spread")?;
                    if !(0.0..1.0).contains(&o.spread) {
                        bail!(
                            "bench-robust: --spread {}: expected a fraction in [0, 1)",
                            o.spread
                        );
                    }
                }
                "--env" => envs.push(val()?.to_string()),
                "--steps" => {
                    let v = val()?;
                    let (name, n) = v
                        .split_once('=')
                        .with_context(|| format!("--steps {v}: expected NAME=N"))?;
                    let n: u64 = n
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .with_context(|| format!("--steps {v}: N is not a positive count"))?;
                    o.steps.push((name.to_string(), n));
                }
                other => bail!("bench-robust: unknown argument `{other}`\n\nusage:\n{USAGE}"),
            }
        }
        if !envs.is_empty() {
            for e in &envs {
                if !PLANTS.iter().any(|p| p.env == e) {
                    bail!("bench-robust: --env {e}: expected dc-motor or pendulum");
                }
            }
            o.envs = envs;
        }
        if let Some((n, _)) = o
            .steps
            .iter()
            .find(|(n, _)| !PLANTS.iter().any(|p| p.env == n))
        {
            bail!("bench-robust: --steps {n}=…: expected dc-motor or pendulum");
        }
        if o.seeds == 0 || o.episodes == 0 {
            bail!("bench-robust: --seeds and --episodes must be at least 1");
        }
        Ok(o)
    }
}

/// The trainings compared: the targets are about the first two; the
/// third adds the last two applied actions to the policy's inputs
/// (`action_history = 2`), which a delayed actuator makes informative.
const KINDS: [&str; 3] = ["nominal", "randomized", "randomized+history"];

/// The training flags of `kind` on `p`, parameters randomized by
/// ±`spread` (multipliers `1 − spread … 1 + spread`).
fn training_sets(p: &PlantSpec, kind: &str, spread: f64) -> Vec<String> {
    if kind == "nominal" {
        return Vec::new();
    }
    let mut sets: Vec<String> = p
        .params
        .iter()
        .map(|n| format!("randomize.{n}={}:{}", 1.0 - spread, 1.0 + spread))
        .collect();
    sets.push(format!("realism.obs_noise={}", p.noise));
    sets.push("realism.action_delay=1".into());
    if kind == "randomized+history" {
        sets.push("action_history=2".into());
    }
    sets.into_iter()
        .flat_map(|s| ["--set".to_string(), s])
        .collect()
}

/// A sweep's cells: `(values, mean return)`, in grid order.
fn sweep(
    bin: &Path,
    policy: &Path,
    env: &str,
    base: &Path,
    axes: &[String],
    episodes: u32,
    out: &Path,
) -> Result<Vec<(Vec<f64>, f64)>> {
    let mut cmd = Command::new(bin);
    cmd.args(["eval", "--env", env, "--policy"])
        .arg(policy)
        .arg("--realism")
        .arg(base)
        .args(["--episodes", &episodes.to_string(), "--seed", "12345"])
        .args(axes.iter().flat_map(|a| ["--sweep", a.as_str()]))
        .arg("--out")
        .arg(out)
        .args(["--force", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(run_quiet(&mut cmd)?.trim()).context("parsing the sweep's JSON")?;
    v["cells"]
        .as_array()
        .context("sweep JSON has no cells")?
        .iter()
        .map(|c| {
            let vals = c["values"]
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_f64()).collect::<Option<Vec<_>>>())
                .context("a sweep cell has no values")?;
            let m = c["mean_return"]
                .as_f64()
                .context("a sweep cell has no mean_return")?;
            Ok((vals, m))
        })
        .collect()
}

/// Axis `name` at `x` is the nominal model: no delay, no noise,
/// parameters × 1.
fn is_nominal(name: &str, x: f64) -> bool {
    match name {
        "action_delay" | "obs_noise" => x == 0.0,
        _ => x == 1.0,
    }
}

/// One policy kind's grid: per cell, the mean over seeds, and the lowest
/// seed's.
struct Grid {
    /// Axis names, in order.
    names: Vec<String>,
    /// `(values, mean over seeds, lowest seed)`.
    cells: Vec<(Vec<f64>, f64, f64)>,
}

impl Grid {
    fn from_seeds(names: Vec<String>, seeds: &[Vec<(Vec<f64>, f64)>]) -> Result<Grid> {
        let first = seeds.first().context("no seeds")?;
        let cells = first
            .iter()
            .enumerate()
            .map(|(i, (vals, _))| {
                let ms: Vec<f64> = seeds.iter().map(|s| s[i].1).collect();
                if seeds.iter().any(|s| s[i].0 != *vals) {
                    bail!("the seeds' grids differ at cell {i}");
                }
                let mean = ms.iter().sum::<f64>() / ms.len() as f64;
                let low = ms.iter().copied().fold(f64::INFINITY, f64::min);
                Ok((vals.clone(), mean, low))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Grid { names, cells })
    }

    fn worst(&self) -> &(Vec<f64>, f64, f64) {
        self.cells
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("a grid has cells")
    }

    /// Parameters × 1, no delay, no noise.
    fn nominal(&self) -> Result<&(Vec<f64>, f64, f64)> {
        self.cells
            .iter()
            .find(|(v, ..)| self.names.iter().zip(v).all(|(n, &x)| is_nominal(n, x)))
            .context("the grid has no nominal cell")
    }

    fn at(&self, vals: &[f64]) -> String {
        self.names
            .iter()
            .zip(vals)
            .filter(|(n, &x)| !is_nominal(n, x))
            .map(|(n, x)| format!("{n} {x}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs the benchmark from the workspace `root`.
pub fn run(root: &Path, o: &Opts) -> Result<()> {
    let bin = build_tinyppo(root)?;
    let work = root.join("target").join("bench-robust");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let docs = root.join("docs");
    let mut headline = String::new();
    let _ = writeln!(
        headline,
        "| plant | policy | nominal cell | worst cell | worst cell at | lowest seed there |"
    );
    let _ = writeln!(headline, "|---|---|---:|---:|---|---:|");
    let mut targets = String::new();
    let _ = writeln!(
        targets,
        "| plant | worst cell: randomized vs nominal | nominal cell: randomized / nominal policy | met |"
    );
    let _ = writeln!(targets, "|---|---|---|---|");
    let mut cells_md = String::new();
    let mut plot_sweeps: Vec<String> = Vec::new();
    for p in PLANTS.iter().filter(|p| o.envs.iter().any(|e| e == p.env)) {
        let base = work.join(format!("{}-base.toml", p.env));
        std::fs::write(&base, format!("[realism]\nobs_noise = {}\n", p.noise))
            .with_context(|| format!("writing {}", base.display()))?;
        let mut axes: Vec<String> = p.params.iter().map(|n| format!("{n}=0.6:1.4:3")).collect();
        axes.push("action_delay=0:2:3".into());
        axes.push("obs_noise=0:2:3".into());
        let names: Vec<String> = axes
            .iter()
            .map(|a| a.split('=').next().unwrap_or(a).to_string())
            .collect();
        let fine = [
            format!("{}=0.5:1.5:11", p.plotted),
            "action_delay=0:1:2".into(),
            "obs_noise=0:1:2".into(),
        ];
        let mut grids = Vec::new();
        let mut trained_steps = 0;
        for kind in KINDS {
            let mut seeds = Vec::new();
            for seed in 1..=o.seeds {
                let dir = work.join(format!("{}-{kind}-s{seed}", p.env));
                let mut sets = training_sets(p, kind, o.spread);
                let steps = o
                    .steps
                    .iter()
                    .rev()
                    .find(|(n, _)| n == p.env)
                    .map(|(_, n)| *n)
                    .or(p.steps);
                if let Some(n) = steps {
                    sets.extend(["--total-steps".to_string(), n.to_string()]);
                }
                let extra: Vec<&str> = sets.iter().map(String::as_str).collect();
                let (steps, secs) = train(&bin, &dir, p.env, seed, &extra)?;
                trained_steps = steps;
                let policy = dir.join("policy.bin");
                let cells = sweep(
                    &bin,
                    &policy,
                    p.env,
                    &base,
                    &axes,
                    o.episodes,
                    &dir.join("sweep"),
                )?;
                let fine_dir = dir.join("sweep-fine");
                sweep(&bin, &policy, p.env, &base, &fine, o.episodes, &fine_dir)?;
                plot_sweeps.push(format!("{kind}={}", fine_dir.display()));
                eprintln!(
                    "{} {kind} seed {seed}: {steps} steps in {secs:.1} s, {} cells",
                    p.env,
                    cells.len()
                );
                seeds.push(cells);
            }
            grids.push(Grid::from_seeds(names.clone(), &seeds)?);
        }
        for (kind, g) in KINDS.iter().zip(&grids) {
            let (wv, wm, wl) = g.worst();
            let (_, nm, _) = g.nominal()?;
            let _ = writeln!(
                headline,
                "| {} | {kind} | {nm:.1} | {wm:.1} | {} | {wl:.1} |",
                p.env,
                g.at(wv)
            );
        }
        let (nom, rnd) = (&grids[0], &grids[1]);
        let (nw, rw) = (nom.worst().1, rnd.worst().1);
        let (nn, rn) = (nom.nominal()?.1, rnd.nominal()?.1);
        let worst_ok = rw > nw;
        let nominal_ok = rn >= nn - 0.1 * nn.abs();
        let _ = writeln!(
            targets,
            "| {} | {rw:.1} vs {nw:.1}: {} | {rn:.1} / {nn:.1} ({:+.1} %): {} | {} |",
            p.env,
            if worst_ok { "better" } else { "NOT better" },
            100.0 * (rn - nn) / nn.abs(),
            if nominal_ok {
                "within 10 %"
            } else {
                "NOT within 10 %"
            },
            if worst_ok && nominal_ok { "yes" } else { "NO" }
        );
        let _ = writeln!(
            cells_md,
            "\n## {}\n\nEvery policy trained {} steps. Mean return per cell over {} seeds \
             ({} episodes per seed and cell); parameters are multipliers of the default, \
             noise a multiple of the training level `{}`.\n",
            p.env, trained_steps, o.seeds, o.episodes, p.noise
        );
        let _ = writeln!(
            cells_md,
            "| {} | {} |",
            names.join(" | "),
            KINDS.join(" | ")
        );
        let _ = writeln!(
            cells_md,
            "|{}{}",
            "---:|".repeat(names.len()),
            "---:|".repeat(KINDS.len())
        );
        for (i, (v, ..)) in nom.cells.iter().enumerate() {
            let vals: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
            let rets: Vec<String> = grids
                .iter()
                .map(|g| format!("{:.1}", g.cells[i].1))
                .collect();
            let _ = writeln!(cells_md, "| {} | {} |", vals.join(" | "), rets.join(" | "));
        }
    }

    println!("\n{headline}\n{targets}");
    let md = docs.join("ROBUSTNESS.md");
    let doc = format!(
        "# Robustness: nominal vs randomized training\n\n\
         Generated by `cargo xtask bench-robust --seeds {} --episodes {}{}` (see \
         `xtask/src/bench_robust.rs` for the set-up); do not edit by hand.\n\n\
         Policies: **nominal** trained on the default model; **randomized** with \
         parameters ±30 % per episode, observation noise and a one-tick action \
         delay; **randomized+history** the same with the last two applied actions \
         as inputs (`action_history = 2`). The int8 blobs evaluated through the runtime on every cell, \
         eval seed 12345. Nominal cell: parameters × 1, no delay, no noise.\n\n\
         {headline}\n{targets}\n\
         Return against inertia (motor) and mass (pendulum), median over seeds with \
         the lowest–highest band, for an ideal sensor and for the board (one tick of \
         delay, training noise):\n\n\
         ![ideal](robustness-ideal.png)\n![board](robustness-board.png)\n{cells_md}",
        o.seeds,
        o.episodes,
        {
            let mut extra: String = o
                .steps
                .iter()
                .map(|(n, k)| format!(" --steps {n}={k}"))
                .collect();
            if o.spread != 0.3 {
                extra += &format!(" --spread {}", o.spread);
            }
            if o.envs.len() < PLANTS.len() {
                extra += &o.envs.iter().map(|e| format!(" --env {e}")).collect::<String>();
            }
            extra
        }
    );
    std::fs::write(&md, doc).with_context(|| format!("writing {}", md.display()))?;
    for (name, at) in [
        ("ideal", ["action_delay=0", "obs_noise=0"]),
        ("board", ["action_delay=1", "obs_noise=1"]),
    ] {
        let png: PathBuf = docs.join(format!("robustness-{name}.png"));
        let mut cmd = Command::new(&bin);
        cmd.arg("plot")
            .args(plot_sweeps.iter().flat_map(|s| ["--sweep", s.as_str()]))
            .args(at.iter().flat_map(|a| ["--at", *a]))
            .arg("--out")
            .arg(&png);
        for p in PLANTS.iter().filter(|p| o.envs.iter().any(|e| e == p.env)) {
            cmd.args(["--axis", p.plotted]);
        }
        print!("{}", run_quiet(&mut cmd)?);
    }
    println!("wrote {}", md.display());
    Ok(())
}
