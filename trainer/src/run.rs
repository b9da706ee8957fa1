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

use anyhow::{bail, Context, Result};

use crate::algo::{Trainer, UpdateMetrics};
use crate::checkpoint::{self, write_atomic};
use crate::config::{Algo, TrainConfig};
use crate::export::{export_blob, policy_id, PolicyIndex, Quant};
use crate::publish;
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
    /// [`train`] into a directory that already holds a run: move that run
    /// aside (to `DIR.replaced-N`, never deleted) instead of refusing.
    pub replace_existing: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            checkpoint_every: Duration::from_secs(10),
            final_eval: true,
            stop_after_update: None,
            replace_existing: false,
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

/// The files that make a directory a run directory.
pub const RUN_FILES: [&str; 5] = [
    "checkpoint.bin",
    "policies.json",
    "metrics.csv",
    "config.toml",
    "policy.bin",
];

/// The lock file of a run directory.
pub const LOCK_FILE: &str = ".tinyppo.lock";

/// The one writer of a run directory: an exclusive advisory lock on
/// `DIR/.tinyppo.lock` (`flock`), held while the value lives and released
/// by the OS if the process dies, so a second `train`, `resume` or
/// `finetune` of the same directory is refused instead of interleaving its
/// writes. The file itself stays (removing it would race with a waiter).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock of `dir` (created if missing), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        use std::io::Write as _;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "{}: another tinyppo process is writing this run ({}); wait for it to end",
                    dir.display(),
                    holder.trim()
                )
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        // Who holds it, for the message above (best effort).
        let _ = file.set_len(0);
        let _ = write!(file, "pid {}", std::process::id());
        Ok(RunLock { _file: file })
    }
}

/// Says on stderr what [`publish::repair`] did, if anything.
pub fn report_repair(dir: &Path, r: &publish::Repair) {
    if !r.is_empty() {
        eprintln!(
            "repaired {} after an interrupted run: completed {:?}, removed {:?}{}",
            dir.display(),
            r.completed,
            r.removed,
            if r.redeployed {
                ", policy.bin redeployed"
            } else {
                ""
            }
        );
    }
}

/// The run files `dir` holds.
pub fn run_files(dir: &Path) -> Vec<&'static str> {
    RUN_FILES
        .iter()
        .copied()
        .filter(|f| dir.join(f).exists())
        .collect()
}

/// Starts a run of `cfg` in `dir` (created if missing) and runs it to the
/// end: see the [module docs](self) for what is written. A directory that
/// already holds a run is refused (`--resume` continues it), or, with
/// [`RunOptions::replace_existing`], moved aside first; the directory is
/// locked ([`RunLock`]) for the whole run.
pub fn train(
    registry: &Registry,
    cfg: TrainConfig,
    dir: &Path,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<RunSummary> {
    let plant = registry.get(&cfg.env)?;
    cfg.validate()?;
    let mut lock = RunLock::acquire(dir)?;
    let existing = run_files(dir);
    if !existing.is_empty() {
        if !opts.replace_existing {
            bail!(
                "{} already holds a run ({}): continue it with `tinyppo train --resume {}`, \
                 give another --out, or pass --force to move it aside",
                dir.display(),
                existing.join(", "),
                dir.display()
            );
        }
        let aside = (1u32..)
            .map(|n| PathBuf::from(format!("{}.replaced-{n}", dir.display())))
            .find(|p| !p.exists())
            .context("no free name to move the old run to")?;
        std::fs::rename(dir, &aside).with_context(|| {
            format!(
                "moving the run in {} aside to {}",
                dir.display(),
                aside.display()
            )
        })?;
        eprintln!(
            "moved the run that was in {} to {}",
            dir.display(),
            aside.display()
        );
        // The lock moved with the old directory; take the new one's.
        lock = RunLock::acquire(dir)?;
    }
    let toml = toml::to_string(&cfg).context("serializing config")?;
    write_atomic(&dir.join("config.toml"), toml.as_bytes())?;
    let trainer = Trainer::new(cfg, plant)?;
    let r = run_loop(trainer, dir, Vec::new(), opts, on_event);
    drop(lock);
    r
}

/// Continues the run in `dir` from its last checkpoint (to `total_steps`
/// environment steps if given, else to the configured total; the new
/// total is written to its `config.toml`).
pub fn resume(
    registry: &Registry,
    dir: &Path,
    total_steps: Option<u64>,
    opts: &RunOptions,
    on_event: &mut dyn FnMut(RunEvent),
) -> Result<RunSummary> {
    if !dir.join("checkpoint.bin").exists() {
        bail!(
            "{}: no checkpoint.bin to resume from (is this a run directory?)",
            dir.display()
        );
    }
    let _lock = RunLock::acquire(dir)?;
    report_repair(dir, &publish::repair(dir)?);
    let mut state = checkpoint::load(dir)?;
    check_config_matches(dir, &state.cfg)?;
    if let Some(n) = total_steps {
        if n == 0 {
            bail!("--total-steps 0: expected at least one environment step");
        }
        state.cfg.total_timesteps = n;
        let toml = toml::to_string(&state.cfg).context("serializing config")?;
        write_atomic(&dir.join("config.toml"), toml.as_bytes())?;
    }
    let plant = registry
        .get(&state.cfg.env)
        .with_context(|| format!("the run in {}", dir.display()))?;
    let mut rows = report::read_metrics(&dir.join("metrics.csv"))?;
    rows.retain(|r| r.update <= state.update);
    let trainer = Trainer::from_state(state, plant)?;
    run_loop(trainer, dir, rows, opts, on_event)
}

/// Refuses a checkpoint that is not the run's: its plant (or algorithm)
/// differs from what the directory's `config.toml` says (a checkpoint
/// copied in from another run).
fn check_config_matches(dir: &Path, cfg: &TrainConfig) -> Result<()> {
    let path = dir.join("config.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    // Read as a table: an older run's config.toml has other keys.
    let t: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let field = |k: &str| {
        t.get(k)
            .map(|v| v.to_string().trim_matches('"').to_string())
    };
    let on_disk = (
        field("env").unwrap_or_default(),
        field("algo").unwrap_or_else(|| "ppo".into()),
        field("seed").unwrap_or_default(),
    );
    if on_disk
        != (
            cfg.env.clone(),
            cfg.algo.name().to_string(),
            cfg.seed.to_string(),
        )
    {
        bail!(
            "{}: checkpoint.bin is a {} run of plant {} (seed {}), but config.toml says {} on {} \
             (seed {}): the checkpoint is not this run's",
            dir.display(),
            cfg.algo.name(),
            cfg.env,
            cfg.seed,
            on_disk.1,
            on_disk.0,
            on_disk.2
        );
    }
    Ok(())
}

/// Environment steps a run of `cfg` ends at.
pub fn total_steps(cfg: &TrainConfig) -> u64 {
    match cfg.algo {
        Algo::Reinforce => cfg.total_timesteps,
        Algo::Ppo | Algo::A2c | Algo::Trpo => cfg.num_updates() * cfg.batch_size() as u64,
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
    // The run's policy history (devices name the acting policy by id
    // only), then the deployed copies: one transaction (crate::publish).
    let mut idx = PolicyIndex::load(dir)?.unwrap_or_default();
    let version = publish::publish(
        dir,
        &mut idx,
        &[(&int8, Quant::Int8), (&f32b, Quant::F32)],
        &[],
        "train",
        (trainer.state.update, trainer.state.global_step),
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
