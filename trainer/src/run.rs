//! A training run in a run directory: what `tinyppo train` does, as a
//! library call.
//!
//! [`train`] starts a run of a resolved [`TrainConfig`] in a directory,
//! [`resume`] continues the run a directory holds. Both then loop over
//! updates, writing the checkpoint and `metrics.csv` every
//! [`RunOptions::checkpoint_every`] (and after the last update), and at
//! the end export the policy:
//!
//! | file                 | what                                                         |
//! |----------------------|--------------------------------------------------------------|
//! | `config.toml`        | the resolved configuration                                   |
//! | `checkpoint.bin`     | the full training state ([`crate::checkpoint`]), resumable    |
//! | `metrics.csv`        | one row per update ([`UpdateMetrics`], CleanRL's key names)   |
//! | `policy.bin`         | the int8 policy blob for the device                          |
//! | `policy-f32.bin`     | the same policy with f32 weights                             |
//! | `policies.json`, `policy-<id>.bin` | the run's exported versions ([`crate::export::PolicyIndex`]) |
//! | `learning-curve.png` | the mean return of the last 100 episodes against steps       |
//!
//! and, with [`RunOptions::final_eval`], evaluate the int8 blob through the
//! runtime on `eval_episodes` episodes (seed `seed + 10000`).
//!
//! ```no_run
//! use tinyppo_trainer::{config, registry::Registry, run};
//! # fn main() -> anyhow::Result<()> {
//! # let name = Registry::builtin().names()[0];
//! let registry = Registry::builtin(); // plus your plants: `.with::<MyPlant, 2, 1>(preset)`
//! let plant = registry.get(name)?;
//! let cfg = config::resolve(plant, None, &["seed=3".into()])?;
//! let summary = run::train(&registry, cfg, "runs/p3".as_ref(), &run::RunOptions::default(), &mut |_| {})?;
//! println!("version {} (id {:08x})", summary.version, summary.policy_id);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::algo::{Trainer, UpdateMetrics};
use crate::checkpoint::{self, write_atomic};
use crate::config::{Algo, TrainConfig};
use crate::export::{export_blob, policy_id, register_export, Quant};
use crate::registry::Registry;
use crate::report;
use crate::stats::mean_std;

/// How a run is driven.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Time between checkpoints (one is always written after the last
    /// update).
    pub checkpoint_every: Duration,
    /// Evaluate the exported int8 policy at the end.
    pub final_eval: bool,
    /// For tests of interrupted runs: end with an error right after the
    /// checkpoint of this update, as a process killed before the next one
    /// would (nothing exported).
    pub stop_after_update: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            checkpoint_every: Duration::from_secs(10),
            final_eval: true,
            stop_after_update: None,
        }
    }
}

/// What a run reports while it runs.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// The loop starts: environment steps the run will reach, and where it
    /// is now (non-zero after a resume).
    Start {
        /// Steps at the end of the run.
        total_steps: u64,
        /// Steps already done.
        global_step: u64,
    },
    /// An update finished.
    Update(&'a UpdateMetrics),
}

/// The evaluation of the exported int8 policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalSummary {
    /// Episodes.
    pub episodes: usize,
    /// Mean return.
    pub mean_return: f64,
    /// Standard deviation of the returns.
    pub std_return: f64,
}

/// What a finished run did and wrote.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run directory.
    pub dir: PathBuf,
    /// Environment steps.
    pub global_step: u64,
    /// Updates.
    pub updates: u64,
    /// Wall-clock seconds of the loop in this process.
    pub wall_secs: f64,
    /// Of which collecting rollouts.
    pub rollout_secs: f64,
    /// Of which optimizing.
    pub update_secs: f64,
    /// The policy version this export registered in `policies.json`.
    pub version: u32,
    /// The policy id of `policy.bin`.
    pub policy_id: u32,
    /// The final evaluation, with [`RunOptions::final_eval`].
    pub eval: Option<EvalSummary>,
}

/// Starts a run of `cfg` in `dir` (created if missing) and runs it to the
/// end: see the [module docs](self) for what is written.
pub fn train(
    registry: &Registry,
    cfg: TrainConfig,
    dir: &Path,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<RunSummary> {
    let plant = registry.get(&cfg.env)?;
    cfg.validate()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let toml = toml::to_string(&cfg).context("serializing config")?;
    write_atomic(&dir.join("config.toml"), toml.as_bytes())?;
    let trainer = Trainer::new(cfg, plant)?;
    run_loop(trainer, dir, Vec::new(), opts, on_event)
}

/// Continues the run in `dir` from its last checkpoint (to `total_steps`
/// environment steps if given, else to the configured total).
pub fn resume(
    registry: &Registry,
    dir: &Path,
    total_steps: Option<u64>,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<RunSummary> {
    let mut state = checkpoint::load(dir)?;
    if let Some(n) = total_steps {
        state.cfg.total_timesteps = n;
    }
    let plant = registry
        .get(&state.cfg.env)
        .with_context(|| format!("the run in {}", dir.display()))?;
    let mut rows = report::read_metrics(&dir.join("metrics.csv"))?;
    rows.retain(|r| r.update <= state.update);
    let trainer = Trainer::from_state(state, plant)?;
    run_loop(trainer, dir, rows, opts, on_event)
}

/// Environment steps a run of `cfg` ends at.
pub fn total_steps(cfg: &TrainConfig) -> u64 {
    match cfg.algo {
        Algo::Reinforce => cfg.total_timesteps,
        Algo::Ppo | Algo::A2c => cfg.num_updates() * cfg.batch_size() as u64,
    }
}

fn run_loop(
    mut trainer: Trainer,
    dir: &Path,
    mut rows: Vec<UpdateMetrics>,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<RunSummary> {
    let cfg = trainer.state.cfg.clone();
    on_event(RunEvent::Start {
        total_steps: total_steps(&cfg),
        global_step: trainer.state.global_step,
    });
    let mut last_save = Instant::now();
    let started = Instant::now();
    while !trainer.done() {
        let t0 = Instant::now();
        let step0 = trainer.state.global_step;
        let mut m = match trainer.step_update() {
            Ok(m) => m,
            Err(e) => {
                // Checkpoints are written every `checkpoint_every`: a run
                // can diverge before the first one exists.
                let ck = dir.join("checkpoint.bin");
                let hint = if ck.exists() {
                    format!(
                        "no policy exported; the last good checkpoint is in {}",
                        ck.display()
                    )
                } else {
                    format!(
                        "no policy exported and no checkpoint written yet in {}",
                        dir.display()
                    )
                };
                return Err(e.context(hint));
            }
        };
        m.sps = (m.global_step - step0) as f64 / t0.elapsed().as_secs_f64();
        on_event(RunEvent::Update(&m));
        rows.push(m);
        if last_save.elapsed() >= opts.checkpoint_every || trainer.done() {
            // Metrics first: a crash between the two leaves a row the
            // checkpoint does not have yet (dropped on resume), never a
            // checkpoint whose last rows are missing.
            report::write_metrics(&dir.join("metrics.csv"), &rows)?;
            checkpoint::save(dir, &trainer.snapshot())?;
            last_save = Instant::now();
            if opts.stop_after_update == Some(trainer.state.update) {
                return Err(anyhow::anyhow!(
                    "stopped after the checkpoint of update {} (RunOptions::stop_after_update)",
                    trainer.state.update
                ));
            }
        }
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let plant = trainer.plant.clone();
    let int8 = export_blob(&trainer.state, &plant, Quant::Int8)?;
    let f32b = export_blob(&trainer.state, &plant, Quant::F32)?;
    write_atomic(&dir.join("policy.bin"), &int8)?;
    write_atomic(&dir.join("policy-f32.bin"), &f32b)?;
    // The run's policy history: devices name the acting policy by id only.
    let version = register_export(
        dir,
        &trainer.state,
        &[(&int8, Quant::Int8), (&f32b, Quant::F32)],
        "train",
    )?;
    report::learning_curve(
        &dir.join("learning-curve.png"),
        cfg.algo.name(),
        &cfg.env,
        &rows,
    )?;
    let eval = if opts.final_eval {
        let rets = plant.eval_blob(
            &int8,
            cfg.eval_episodes,
            cfg.seed.wrapping_add(10_000),
            false,
        )?;
        let (mean_return, std_return) = mean_std(&rets);
        Some(EvalSummary {
            episodes: rets.len(),
            mean_return,
            std_return,
        })
    } else {
        None
    };
    Ok(RunSummary {
        dir: dir.to_path_buf(),
        global_step: trainer.state.global_step,
        updates: trainer.state.update,
        wall_secs,
        rollout_secs: trainer.seconds.0,
        update_secs: trainer.seconds.1,
        version,
        policy_id: policy_id(&int8)?,
        eval,
    })
}
