//! The `tinyppo` command line, for any [`Registry`] of plants: train,
//! evaluate, export, inspect, simulate, read logs, fine-tune, study, plot.
//!
//! The `tinyppo` binary is `cli::run(Registry::builtin())`; a user's binary
//! with a plant of their own is the same call with their registry, and has
//! every subcommand:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use tinyppo_trainer::{cli, registry::Registry};
//!
//! fn main() -> ExitCode {
//!     cli::run(Registry::builtin() /* .with::<MyPlant, 3, 1>(include_str!("my-plant.toml")) */)
//! }
//! ```
//!
//! Argument parsing and printing live here; the work is in the library
//! modules ([`crate::run`] for training runs).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tinyppo_runtime::Blob;

use crate::checkpoint;
use crate::config;
use crate::export::{export_blob, PolicyIndex, Quant};
use crate::finetune::{finetune, Accept, FinetuneConfig, GateTest, ImportReport, Progress};
use crate::logs;
use crate::offpolicy::IsCorrection;
use crate::realism::Realism;
use crate::registry::{Model, RegisteredPlant, Registry};
use crate::report;
use crate::run::{self, RunEvent, RunOptions};
use crate::stats::mean_std;
use crate::study::{self, StudyConfig, StudyPolicy, ValueFitConfig};

/// Set once stdout turned out to be closed.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes to stdout. When stdout is closed (`tinyppo finetune … | head -1`)
/// the rest of the output is dropped and the command goes on: it still
/// does (and saves) what it was asked to, and exits with its own status;
/// `print!` would panic instead. Another write error is reported once on
/// stderr, and the output dropped the same way.
fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write as _;
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("warning: writing to stdout: {e}; the rest of the output is dropped");
        }
    }
}

/// `print!` through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

/// `println!` through [`write_stdout`].
macro_rules! outln {
    () => { write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

#[derive(Parser)]
#[command(
    name = "tinyppo",
    version,
    about = "Train PPO control policies and run them on microcontrollers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a policy (PPO; or A2C, REINFORCE, TRPO with --algo) and export it.
    Train(TrainArgs),
    /// Evaluate an exported policy blob through the device runtime, on
    /// the plant model it was trained with or, with --sweep, on a grid of
    /// models (robustness sweep).
    Eval(EvalArgs),
    /// Export a checkpoint's policy as a blob.
    #[command(group(clap::ArgGroup::new("source").required(true).args(["checkpoint", "blob"])))]
    Export {
        /// Run directory holding checkpoint.bin.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Re-encode this blob (any format version, e.g. a v1 blob that
        /// names no plant) as a current blob for the plant --env: same
        /// weights, same policy, with the plant's code and safe action.
        #[arg(long, requires = "env")]
        blob: Option<PathBuf>,
        /// The plant of --blob (a registered name).
        #[arg(long)]
        env: Option<String>,
        /// Weight encoding (of a checkpoint export; --blob keeps its own).
        #[arg(long, value_enum, default_value_t = Quant::Int8)]
        quant: Quant,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Describe a policy blob.
    Inspect {
        /// Policy blob.
        file: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Run a policy on a simulated plant through the device control loop
    /// and write its rollout log (the bytes the firmware would send).
    Simulate {
        /// Policy blob.
        #[arg(long)]
        policy: PathBuf,
        /// Plant (a registered name: `tinyppo plants` lists them).
        #[arg(long)]
        env: String,
        /// Run a blob exported for another plant of the same dimensions.
        #[arg(long)]
        allow_other_plant: bool,
        /// Episodes.
        #[arg(long, default_value_t = 10)]
        episodes: u32,
        /// Seed of the plant resets and of sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Log file to write.
        #[arg(long)]
        out: PathBuf,
        /// Apply the policy mean instead of sampling.
        #[arg(long)]
        deterministic: bool,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Improve a run's policy from device rollout logs (off-policy PPO
    /// with importance weights; docs/OFFPOLICY.md). Writes a checkpoint and
    /// policy.bin (int8) as the run's next policy version.
    Finetune(Box<FinetuneArgs>),
    /// Plot the learning curves of several runs: one panel per plant, one
    /// median line with a min–max band per algorithm (over the runs given).
    ///
    /// With --sweep, compare saved robustness sweeps instead (the
    /// sweep.json that `eval --sweep` writes): one panel per plant and
    /// swept quantity, one line per label (median over its sweeps, band
    /// lowest–highest), the other axes at their nominal value or --at.
    Plot {
        /// Run directories (each with config.toml and metrics.csv).
        #[arg(
            required_unless_present_any = ["sweep", "calibration"],
            conflicts_with_all = ["sweep", "calibration"]
        )]
        runs: Vec<PathBuf>,
        /// Instead, the calibration of off-policy estimates: a CSV with
        /// columns true_return, estimate, lower, true_gain, gain,
        /// gain_lower, accepted (one row per candidate, as `cargo xtask
        /// loop --publication` writes), drawn estimated against true.
        #[arg(long, value_name = "CSV", conflicts_with = "sweep")]
        calibration: Option<PathBuf>,
        /// LABEL=PATH: a sweep.json (or the --out directory holding it)
        /// drawn as line LABEL; repeat the label for several seeds.
        #[arg(long, value_name = "LABEL=PATH")]
        sweep: Vec<String>,
        /// Only these swept quantities (default: every axis with more than
        /// one value).
        #[arg(long, value_name = "NAME", requires = "sweep")]
        axis: Vec<String>,
        /// NAME=VALUE: hold axis NAME at VALUE (the grid value nearest it)
        /// in the other panels.
        #[arg(long, value_name = "NAME=VALUE", requires = "sweep")]
        at: Vec<String>,
        /// Output PNG.
        #[arg(long, default_value = "learning-curves.png")]
        out: PathBuf,
    },
    /// Work with device rollout logs.
    Logs {
        #[command(subcommand)]
        cmd: LogsCmd,
    },
    /// Studies of the notes' policy-gradient estimators.
    Study {
        #[command(subcommand)]
        cmd: StudyCmd,
    },
    /// List the registered plants: name, code, dimensions, bounds, safe
    /// action, period, episode length and parameters.
    Plants {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// The plant model of `eval` and `simulate`: the blob's realism, none, or
/// a file's.
#[derive(clap::Args)]
struct ModelArgs {
    /// Ignore the sensor and actuator realism recorded in the blob: the
    /// exact model.
    #[arg(long, conflicts_with = "realism")]
    no_realism: bool,
    /// Take the realism from the `[realism]` table of this TOML file (a
    /// run's config.toml, for instance) instead of the blob's.
    #[arg(long, value_name = "FILE")]
    realism: Option<PathBuf>,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Policy blob (policy.bin or policy-f32.bin).
    #[arg(long)]
    policy: PathBuf,
    /// Plant (a registered name: `tinyppo plants` lists them).
    #[arg(long)]
    env: String,
    /// Run a blob exported for another plant of the same dimensions.
    #[arg(long)]
    allow_other_plant: bool,
    /// Episodes (per cell of a sweep).
    #[arg(long, default_value_t = 100)]
    episodes: usize,
    /// Seed of the plant resets (and of sampling with --stochastic).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sample actions instead of applying the mean.
    #[arg(long)]
    stochastic: bool,
    /// Print one JSON object (a sweep: the grid with mean and worst
    /// return per cell).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
    /// A swept quantity: a plant parameter (multiplier of its default;
    /// `:abs` for values), `obs_noise`/`obs_resolution`/`rate_limit`/
    /// `deadzone` (multipliers of the base realism's), `obs_delay`/
    /// `action_delay` (ticks), `actuator_tau`/`smoothness` (values). N
    /// values from LO to HI; repeat for a grid.
    #[arg(long, value_name = "NAME=LO:HI:N")]
    sweep: Vec<String>,
    /// Directory for the sweep's sweep.csv, sweep.png and sweep.json (needed with
    /// --sweep).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Overwrite sweep.csv, sweep.png and sweep.json in --out.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum StudyCmd {
    /// At a fixed policy, estimate the policy gradient M times with each
    /// estimator (full return, reward-to-go, mean/value/optimal baselines,
    /// GAE λ ∈ {0, 0.5, 0.95, 1}; leave-one-out batch baselines as
    /// diagnostics) on the same episodes and compare total variance and
    /// cosine to the mean gradient. Prints a markdown table, writes
    /// gradient-variance.csv and gradient-variance.png.
    GradientVariance(GradientVarianceArgs),
}

#[derive(clap::Args)]
struct GradientVarianceArgs {
    /// Plant (a registered name).
    #[arg(long)]
    env: String,
    /// Run directory holding checkpoint.bin: study its policy (actor,
    /// log-std, frozen observation statistics). Default: the fresh policy
    /// `tinyppo train --seed S` would start from.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Independent batches M (≥ 2).
    #[arg(long, value_name = "M", default_value_t = 50)]
    batches: usize,
    /// Episodes per batch N (≥ 1).
    #[arg(long, value_name = "N", default_value_t = 10)]
    episodes_per_batch: usize,
    /// Seed of the random stream (fresh policy, critic init, episodes).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Discount γ of every estimator and of the value targets.
    #[arg(long, default_value_t = 0.99)]
    gamma: f32,
    /// Epochs of the value-function fit (on 8·N separate episodes).
    #[arg(long, default_value_t = ValueFitConfig::for_batch(1).epochs)]
    value_epochs: usize,
    /// Output directory (default study-NAME for --env NAME).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress bar or "wrote" line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum LogsCmd {
    /// Decode log streams: frames, transitions, episodes, returns, drops.
    Decode {
        /// Log files (each one stream of frames).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Capture a board's log stream from a serial port into a file,
    /// decoding it as it arrives (live status on a terminal, the summary
    /// of `logs decode` at the end). Stops after --episodes complete
    /// episodes, after --duration, at the stream's End frame, or on
    /// Ctrl-C; the file holds every byte read, synced as it arrives.
    Capture(CaptureArgs),
}

#[derive(clap::Args)]
struct CaptureArgs {
    /// Serial port (/dev/ttyUSB0, /dev/ttyACM0, /dev/pts/N, COM3).
    #[arg(long)]
    port: String,
    /// Baud rate (the STM32F411 firmware's is 921600).
    #[arg(long, default_value_t = 921_600)]
    baud: u32,
    /// Stop after this many complete episodes.
    #[arg(long)]
    episodes: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Output file (the raw bytes, as `logs decode` and `finetune`
    /// read them).
    #[arg(long)]
    out: PathBuf,
    /// Overwrite --out if it exists.
    #[arg(long)]
    force: bool,
    /// Print the summary as one JSON object (the fields of `logs
    /// decode --json`, and the capture's).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Plant (a registered name: `tinyppo plants` lists them).
    #[arg(long, required_unless_present = "resume")]
    env: Option<String>,
    /// Algorithm (its preset presets/algo-<name>.toml applies over the
    /// plant's; same as --set algo=NAME).
    #[arg(long, value_enum)]
    algo: Option<config::Algo>,
    /// Environment steps (overrides total_timesteps).
    #[arg(long)]
    total_steps: Option<u64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// TOML file of hyperparameters (over the plant's preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one hyperparameter, e.g. --set learning_rate=3e-4 or
    /// --set ppo.clip_coef=0.1 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Output directory (default runs/<env>-s<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["env", "algo", "config", "sets", "seed", "out", "force"])]
    resume: Option<PathBuf>,
    /// --out holds a run already: move it aside (to OUT.replaced-N) and
    /// start afresh, instead of refusing.
    #[arg(long)]
    force: bool,
    /// No progress bar or summary.
    #[arg(long)]
    quiet: bool,
    /// Seconds between checkpoints (one is always written at the end).
    #[arg(long, default_value_t = 10.0)]
    checkpoint_secs: f64,
}

#[derive(clap::Args)]
struct FinetuneArgs {
    /// Run directory holding checkpoint.bin (and its policies.json).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Device log files (each one stream of frames).
    #[arg(long, required = true, num_args = 1..)]
    logs: Vec<PathBuf>,
    /// Write the fine-tuned run here (a copy of the run's history plus the
    /// new version) instead of updating the run in place.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Iterations: each freezes π_prox and runs the epochs over the data.
    #[arg(long, default_value_t = FinetuneConfig::default().iterations)]
    iterations: usize,
    /// Drop records of policies more than L versions old.
    #[arg(long, value_name = "L", default_value_t = FinetuneConfig::default().max_lag)]
    max_lag: u32,
    /// Off-policy correction of the advantages and the loss weights.
    #[arg(long, value_enum, default_value_t = IsCorrection::Vtrace)]
    is_correction: IsCorrection,
    /// ρ̄: truncation of ρ on δ in the V-trace value target.
    #[arg(long, default_value_t = FinetuneConfig::default().rho_bar)]
    rho_bar: f32,
    /// c̄: truncation of the traces c = min(c̄, ρ).
    #[arg(long, default_value_t = FinetuneConfig::default().c_bar)]
    c_bar: f32,
    /// w̄: truncation of the loss weights.
    #[arg(long, default_value_t = FinetuneConfig::default().w_bar)]
    w_bar: f32,
    /// Discount γ (default: the run's).
    #[arg(long)]
    gamma: Option<f32>,
    /// λ of the traces (default: the run's gae_lambda).
    #[arg(long)]
    lambda: Option<f32>,
    /// PPO clip ε (default: the run's clip_coef).
    #[arg(long)]
    clip_coef: Option<f32>,
    /// Adam learning rate (constant).
    #[arg(long, default_value_t = FinetuneConfig::default().learning_rate)]
    learning_rate: f32,
    /// Epochs per iteration (default: the run's update_epochs).
    #[arg(long)]
    epochs: Option<usize>,
    /// Minibatches per epoch (default: the run's num_minibatches).
    #[arg(long)]
    minibatches: Option<usize>,
    /// Entropy coefficient (default: the run's ent_coef).
    #[arg(long)]
    ent_coef: Option<f32>,
    /// Early stop of an iteration's epochs on approx-KL (default: the run's target_kl).
    #[arg(long)]
    target_kl: Option<f32>,
    /// Fresh simulated on-policy episodes mixed into every iteration.
    #[arg(long, value_name = "N", default_value_t = 0)]
    mix_onpolicy: u32,
    /// Seed of shuffling and on-policy simulation (default: the run's seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep records of policy ids the run's index does not know, with
    /// their logged log μ (default: drop them).
    #[arg(long)]
    keep_unknown: bool,
    /// Publish the candidate only when the lower confidence bound of its
    /// return estimated from the logs beats the logged return
    /// (`improvement`, default), or `always`.
    #[arg(long, value_enum, default_value_t = Accept::Improvement)]
    accept: Accept,
    /// One-sided confidence of that lower bound.
    #[arg(long, default_value_t = FinetuneConfig::default().confidence)]
    confidence: f64,
    /// Bootstrap resamples of the estimate's interval.
    #[arg(long, value_name = "N", default_value_t = FinetuneConfig::default().ope_resamples)]
    ope_resamples: usize,
    /// Least effective sample size (fraction of the logged episodes) of
    /// the candidate's importance weights for the gate to judge it; the
    /// fine-tune stops when an iterate falls below it.
    #[arg(long, default_value_t = FinetuneConfig::default().min_ess)]
    min_ess: f64,
    /// What the lower bound is of: the estimated gain over the logged
    /// return, bootstrapped on the same resamples (`paired`, default), or
    /// the candidate's estimate alone, compared with the logged return as
    /// if it were known (`unpaired`).
    #[arg(long, value_enum, default_value_t = FinetuneConfig::default().gate_test)]
    gate_test: GateTest,
    /// Budget of the per-step KL(μ‖π) of the candidate from the logs'
    /// policy over the whole fine-tune (k3 estimate on the logged steps,
    /// the candidate's means at the behaviour's σ): the iteration that
    /// would exceed it is shortened by a line search onto it and the
    /// fine-tune ends there. 0: no budget. The ESS of whole-episode
    /// weights over T-step episodes is about exp(−2·T·KL).
    #[arg(long, value_name = "KL", default_value_t = FinetuneConfig::default().kl_budget)]
    kl_budget: f64,
    /// Write the int8 blob of every candidate the gate judged (the
    /// iterate's means at the behaviour's σ) and its decision
    /// (candidates.json) to DIR, e.g. to check the gate's estimates
    /// against simulated returns.
    #[arg(long, value_name = "DIR")]
    keep_candidates: Option<PathBuf>,
    /// Print the summary (the decision, its estimates, the versions) as
    /// one JSON object.
    #[arg(long)]
    json: bool,
    /// No progress lines or summary.
    #[arg(long)]
    quiet: bool,
}

/// Runs the `tinyppo` command line (arguments from the process) with the
/// plants of `registry`; returns the process's exit code (0, or 1 with the
/// error chain printed on stderr).
pub fn run(registry: Registry) -> ExitCode {
    run_from(registry, std::env::args_os())
}

/// [`run`] with explicit arguments (the first is the program name).
pub fn run_from<I, T>(registry: Registry, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let reg = &registry;
    let r = match cli.cmd {
        Cmd::Train(a) => train(reg, a),
        Cmd::Plot {
            sweep,
            axis,
            at,
            out,
            ..
        } if !sweep.is_empty() => plot_sweeps(&sweep, &axis, &at, &out),
        Cmd::Plot {
            calibration: Some(csv),
            out,
            ..
        } => plot_calibration(&csv, &out),
        Cmd::Plot { runs, out, .. } => plot_runs(&runs, &out),
        Cmd::Eval(a) => eval(reg, &a),
        Cmd::Export {
            checkpoint: Some(dir),
            quant,
            out,
            ..
        } => export(reg, &dir, quant, &out),
        Cmd::Export {
            blob: Some(blob),
            env: Some(env),
            out,
            ..
        } => reencode(reg, &blob, &env, &out),
        Cmd::Export { .. } => Err(anyhow::anyhow!(
            "export: give --checkpoint DIR, or --blob FILE with --env NAME"
        )),
        Cmd::Inspect { file, json } => inspect(reg, &file, json),
        Cmd::Simulate {
            policy,
            env,
            allow_other_plant,
            episodes,
            seed,
            out,
            deterministic,
            model,
        } => simulate(
            reg,
            &policy,
            &env,
            allow_other_plant,
            episodes,
            seed,
            &out,
            deterministic,
            &model,
        ),
        Cmd::Finetune(a) => finetune_cmd(reg, *a),
        Cmd::Logs {
            cmd: LogsCmd::Decode { files, json },
        } => logs_decode(reg, &files, json),
        Cmd::Logs {
            cmd: LogsCmd::Capture(a),
        } => logs_capture(reg, a),
        Cmd::Study {
            cmd: StudyCmd::GradientVariance(a),
        } => gradient_variance_cmd(reg, a),
        Cmd::Plants { json } => plants(reg, json),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `tinyppo plants`.
fn plants(reg: &Registry, json: bool) -> Result<()> {
    let rows: Vec<serde_json::Value> = reg
        .iter()
        .map(|p| {
            Ok(serde_json::json!({
                "name": p.name(),
                "code": p.code(),
                "obs_dim": p.obs_dim(),
                "act_dim": p.act_dim(),
                "action_low": p.action_low(),
                "action_high": p.action_high(),
                "safe_action": p.safe_action(),
                "dt": p.dt(),
                "max_episode_steps": p.max_episode_steps(),
                "params": p.default_params()?,
            }))
        })
        .collect::<Result<_>>()?;
    if json {
        outln!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    for (p, r) in reg.iter().zip(&rows) {
        outln!(
            "{:<14} code {:#04x}  obs {}  act {}  bounds {:?}..{:?}  safe {:?}  dt {} s  {} steps",
            p.name(),
            p.code(),
            p.obs_dim(),
            p.act_dim(),
            p.action_low(),
            p.action_high(),
            p.safe_action(),
            p.dt(),
            p.max_episode_steps()
        );
        outln!("{:<14} params {}", "", r["params"]);
    }
    Ok(())
}

/// `tinyppo plot`: groups runs by plant (panels) and algorithm (bands).
/// `tinyppo plot --sweep LABEL=PATH…`: saved sweeps compared in one PNG.
fn plot_sweeps(sweeps: &[String], axes: &[String], at: &[String], out: &Path) -> Result<()> {
    let sweeps = sweeps
        .iter()
        .map(|s| {
            let (label, path) = s
                .split_once('=')
                .with_context(|| format!("--sweep {s}: expected LABEL=PATH"))?;
            Ok((
                label.to_string(),
                crate::sweep::Saved::read(Path::new(path))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let at = at
        .iter()
        .map(|s| {
            let (name, v) = s
                .split_once('=')
                .with_context(|| format!("--at {s}: expected NAME=VALUE"))?;
            let v: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .with_context(|| format!("--at {s}: VALUE {v:?} is not a finite number"))?;
            Ok((name.trim().to_string(), v))
        })
        .collect::<Result<Vec<_>>>()?;
    for (name, _) in &at {
        if !sweeps
            .iter()
            .any(|(_, s)| s.axes.iter().any(|a| &a.0 == name))
        {
            bail!("--at {name}=…: no sweep has an axis {name}");
        }
    }
    crate::sweep::compare_plot(out, &sweeps, axes, &at)?;
    outln!("wrote {}", out.display());
    Ok(())
}

fn plot_calibration(csv_path: &Path, out: &Path) -> Result<()> {
    let mut r = csv::Reader::from_path(csv_path)
        .with_context(|| format!("reading {}", csv_path.display()))?;
    let header: Vec<String> = r
        .headers()
        .with_context(|| format!("reading {}", csv_path.display()))?
        .iter()
        .map(String::from)
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no column `{name}` in the header", csv_path.display()))
    };
    let cols = [
        "true_return",
        "estimate",
        "lower",
        "true_gain",
        "gain",
        "gain_lower",
        "accepted",
    ]
    .map(col);
    let mut idx = [0usize; 7];
    for (i, c) in cols.into_iter().enumerate() {
        idx[i] = c?;
    }
    let mut points = Vec::new();
    for (n, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("parsing {}", csv_path.display()))?;
        let v = |i: usize| -> Result<f64> {
            rec.get(idx[i])
                .unwrap_or("")
                .parse::<f64>()
                .with_context(|| format!("{}: row {}, column {}", csv_path.display(), n + 2, i))
        };
        points.push(report::CalibrationPoint {
            true_return: v(0)?,
            estimate: v(1)?,
            lower: v(2)?,
            true_gain: v(3)?,
            gain: v(4)?,
            gain_lower: v(5)?,
            accepted: v(6)? != 0.0,
        });
    }
    report::calibration_plot(out, &points)?;
    outln!("wrote {} ({} candidates)", out.display(), points.len());
    Ok(())
}

fn plot_runs(runs: &[PathBuf], out: &Path) -> Result<()> {
    let mut panels: Vec<report::Panel> = Vec::new();
    for dir in runs {
        let cfg_path = dir.join("config.toml");
        let src = std::fs::read_to_string(&cfg_path)
            .with_context(|| format!("reading {}", cfg_path.display()))?;
        let cfg: config::TrainConfig =
            toml::from_str(&src).with_context(|| format!("parsing {}", cfg_path.display()))?;
        let metrics = dir.join("metrics.csv");
        let rows = report::read_metrics(&metrics)?;
        if rows.is_empty() {
            bail!(
                "{}: no metrics rows (has the run finished an update?)",
                metrics.display()
            );
        }
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.global_step as f64, r.recent_return))
            .collect();
        let pi = match panels.iter().position(|p| p.title == cfg.env) {
            Some(i) => i,
            None => {
                panels.push(report::Panel {
                    title: cfg.env.clone(),
                    groups: Vec::new(),
                });
                panels.len() - 1
            }
        };
        let groups = &mut panels[pi].groups;
        match groups.iter_mut().find(|g| g.label == cfg.algo.name()) {
            Some(g) => g.runs.push(pts),
            None => groups.push(report::Group {
                label: cfg.algo.name().to_string(),
                runs: vec![pts],
            }),
        }
    }
    report::band_plot(
        out,
        "environment steps",
        "return (mean of last 100 episodes)",
        &panels,
    )?;
    outln!("wrote {} ({} runs)", out.display(), runs.len());
    Ok(())
}

fn read_blob(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Blob::parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid policy blob: {e} (error code {:#010x}, as a device prints it)",
            path.display(),
            e.code()
        )
    })?;
    Ok(bytes)
}

fn train(reg: &Registry, a: TrainArgs) -> Result<()> {
    let pb = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {elapsed_precise} ETA {eta} | {msg}",
        )
        .expect("static template"),
    );
    crate::validate::Checks::new()
        .rule(
            a.checkpoint_secs.is_finite() && (0.0..=1e9).contains(&a.checkpoint_secs),
            "--checkpoint-secs",
            a.checkpoint_secs,
            "a number of seconds in [0, 1e9]",
        )
        .finish()?;
    let opts = RunOptions {
        checkpoint_every: Duration::from_secs_f64(a.checkpoint_secs),
        final_eval: !a.quiet,
        replace_existing: a.force,
        ..RunOptions::default()
    };
    let mut on_event = |e: RunEvent| match e {
        RunEvent::Start {
            total_steps,
            global_step,
        } => {
            pb.set_length(total_steps);
            pb.set_position(global_step);
        }
        RunEvent::Update(m) => {
            pb.set_position(m.global_step);
            pb.set_message(format!(
                "{:.0} steps/s | return {:.1} | approx_kl {:.4}",
                m.sps, m.recent_return, m.approx_kl
            ));
        }
    };
    let result = if let Some(dir) = &a.resume {
        run::resume(reg, dir, a.total_steps, &opts, &mut on_event)
    } else {
        let env = a
            .env
            .as_deref()
            .context("--env NAME is needed to start a run (or --resume DIR)")?;
        let plant = reg.get(env)?;
        let mut sets = a.sets.clone();
        if let Some(n) = a.total_steps {
            sets.push(format!("total_timesteps={n}"));
        }
        if let Some(s) = a.seed {
            sets.push(format!("seed={s}"));
        }
        if let Some(algo) = a.algo {
            sets.insert(0, format!("algo=\"{}\"", algo.name()));
        }
        let cfg = config::resolve(plant, a.config.as_deref(), &sets)?;
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/{}-s{}", cfg.env, cfg.seed)));
        run::train(reg, cfg, &out, &opts, &mut on_event)
    };
    match result {
        Ok(_) => pb.finish_and_clear(),
        Err(_) => pb.abandon(),
    }
    let s = result?;
    if let Some(e) = s.eval {
        outln!(
            "trained {} steps in {:.1} s; int8 policy: mean return {:.1} ± {:.1} over {} episodes",
            s.global_step,
            s.wall_secs,
            e.mean_return,
            e.std_return,
            e.episodes
        );
        outln!(
            "time: {:.2} s rollouts, {:.2} s updates; wrote {} (policy version {}, id {:08x})",
            s.rollout_secs,
            s.update_secs,
            s.dir.display(),
            s.version,
            s.policy_id
        );
    }
    Ok(())
}

/// The realism of `eval`/`simulate` for `plant`: `None` for the blob's.
fn model_realism(m: &ModelArgs, plant: &RegisteredPlant) -> Result<Option<Realism>> {
    if m.no_realism {
        return Ok(Some(Realism::none(plant.obs_dim(), plant.act_dim())));
    }
    let Some(path) = &m.realism else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut t: toml::Table = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let table = t
        .remove("realism")
        .with_context(|| format!("{}: no [realism] table", path.display()))?;
    let cfg: crate::realism::RealismConfig = table.try_into().map_err(|e: toml::de::Error| {
        anyhow::anyhow!("{}: [realism]: {}", path.display(), e.message())
    })?;
    let r = cfg
        .resolve(plant.obs_dim(), plant.act_dim(), plant.max_episode_steps())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(Some(r))
}

fn eval(reg: &Registry, a: &EvalArgs) -> Result<()> {
    crate::validate::Checks::new()
        .count("--episodes", a.episodes as u64, 1, 1 << 24)
        .finish()?;
    let plant = reg.get(&a.env)?;
    let blob = read_blob(&a.policy)?;
    let origin = a.policy.display().to_string();
    plant.check_blob(&blob, &origin, a.allow_other_plant)?;
    let realism = model_realism(&a.model, plant)?;
    if !a.sweep.is_empty() {
        return sweep(plant, &blob, a, realism);
    }
    if a.out.is_some() {
        bail!("--out is the directory of a sweep's files: give --sweep NAME=LO:HI:N with it");
    }
    let model = Model {
        realism,
        params: None,
    };
    let rets = plant
        .eval_blob_on(&blob, a.episodes, a.seed, a.stochastic, &model)
        .with_context(|| format!("evaluating {origin}"))?;
    let (m, s) = mean_std(&rets);
    let (env, episodes, seed, stochastic) = (&a.env, a.episodes, a.seed, a.stochastic);
    if a.json {
        let v = serde_json::json!({
            "policy": origin,
            "env": env,
            "episodes": rets.len(),
            "seed": seed,
            "stochastic": stochastic,
            "mean_return": m,
            "std_return": s,
            "min_return": rets.iter().cloned().fold(f64::INFINITY, f64::min),
            "max_return": rets.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        });
        outln!("{v}");
    } else {
        outln!(
            "{env}: mean return {m:.2} ± {s:.2} over {} episodes ({})",
            episodes,
            if stochastic {
                "stochastic"
            } else {
                "mean action"
            }
        );
    }
    Ok(())
}

/// `tinyppo eval --sweep …`: the grid's table (or JSON), `sweep.csv` and
/// `sweep.png` in `--out`.
fn sweep(
    plant: &RegisteredPlant,
    blob: &[u8],
    a: &EvalArgs,
    realism: Option<Realism>,
) -> Result<()> {
    let out = a.out.as_deref().context(
        "--sweep writes sweep.csv, sweep.png and sweep.json: give their directory with --out DIR",
    )?;
    let base = match realism {
        Some(r) => r,
        None => {
            let b = tinyppo_runtime::Blob::parse(blob)
                .map_err(|e| anyhow::anyhow!("invalid policy blob: {e}"))?;
            Realism::of_blob(&b)
        }
    };
    let axes = a
        .sweep
        .iter()
        .map(|s| crate::sweep::Axis::parse(s, plant, &base))
        .collect::<Result<Vec<_>>>()?;
    let mut names: Vec<&str> = axes.iter().map(|x| x.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("--sweep {} is given twice", w[0]);
    }
    let (csv, png, json) = (
        out.join("sweep.csv"),
        out.join("sweep.png"),
        out.join("sweep.json"),
    );
    for f in [&csv, &png, &json] {
        if f.exists() && !a.force {
            bail!(
                "{} exists: pass --force to overwrite it, or choose another --out",
                f.display()
            );
        }
    }
    let sw = crate::sweep::Sweep::run(plant, blob, &base, axes, a.episodes, a.seed, a.stochastic)
        .with_context(|| format!("sweeping {}", a.policy.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    checkpoint::write_atomic(&csv, sw.csv().as_bytes())?;
    let title = format!(
        "{} on {}",
        a.policy
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        plant.name()
    );
    sw.plot(&png, &title)?;
    let mut v = sw.json();
    v["policy"] = serde_json::json!(a.policy.display().to_string());
    v["env"] = serde_json::json!(plant.name());
    v["seed"] = serde_json::json!(a.seed);
    v["base_realism"] = serde_json::json!(base);
    v["csv"] = serde_json::json!(csv.display().to_string());
    v["png"] = serde_json::json!(png.display().to_string());
    checkpoint::write_atomic(&json, format!("{v:#}\n").as_bytes())?;
    if a.json {
        outln!("{v}");
        return Ok(());
    }
    outln!("{}", sw.table().trim_end());
    if let Some(w) = sw.worst_cell() {
        let at: Vec<String> = sw
            .axes
            .iter()
            .zip(&w.values)
            .map(|(x, v)| format!("{} = {v}", x.name))
            .collect();
        outln!(
            "worst cell: mean return {:.2} at {} ({} cells, {} episodes each, base realism: {})",
            w.mean,
            at.join(", "),
            sw.cells.len(),
            sw.episodes,
            base.describe()
        );
    }
    outln!(
        "wrote {}, {} and {}",
        csv.display(),
        png.display(),
        json.display()
    );
    Ok(())
}

fn export(reg: &Registry, dir: &Path, quant: Quant, out: &Path) -> Result<()> {
    let state = checkpoint::load(dir)?;
    let plant = reg
        .get(&state.cfg.env)
        .with_context(|| format!("the run in {}", dir.display()))?;
    let blob = export_blob(&state, plant, quant)?;
    checkpoint::write_atomic(out, &blob)?;
    outln!("wrote {} ({} bytes)", out.display(), blob.len());
    Ok(())
}

/// `tinyppo export --blob OLD --env NAME --out NEW`.
fn reencode(reg: &Registry, blob: &Path, env: &str, out: &Path) -> Result<()> {
    let plant = reg.get(env)?;
    let old = read_blob(blob)?;
    let new = crate::export::reencode_blob(&old, plant)
        .with_context(|| format!("re-encoding {} for plant {env}", blob.display()))?;
    checkpoint::write_atomic(out, &new)?;
    outln!(
        "wrote {} ({} bytes, policy id {:08x}, plant {env})",
        out.display(),
        new.len(),
        crate::export::policy_id(&new)?
    );
    Ok(())
}

fn inspect(reg: &Registry, path: &Path, json: bool) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let b = Blob::parse(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid policy blob: {e} (error code {:#010x}, as a device prints it)",
            path.display(),
            e.code()
        )
    })?;
    let f = |v: &[u8]| tinyppo_runtime::format::f32s(v).collect::<Vec<f32>>();
    let safe: Vec<f32> = b.safe_action().collect();
    let plant = reg.describe_code(b.plant);
    if json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "format_version": b.version,
            "policy_id": format!("{:08x}", b.policy_id),
            "plant_code": b.plant_code(),
            "plant": reg.by_code(b.plant).map(|p| p.name()),
            "obs_dim": b.obs_dim,
            "act_dim": b.act_dim,
            "hidden": b.hidden(),
            "activation": b.activation.name(),
            "encoding": b.encoding.name(),
            "size_bytes": b.len,
            "obs_mean": f(b.obs_mean),
            "obs_inv_std": f(b.obs_inv_std),
            "obs_clip": b.obs_clip,
            "action_low": f(b.action_low),
            "action_high": f(b.action_high),
            "safe_action": safe,
            "log_std": f(b.log_std),
            "realism": b.realism().map(|v| crate::realism::Realism::from_view(&v)),
            "action_history": b.history().map_or(0, |h| h.len),
            "safety": b.safety().map(|v| serde_json::json!({
                "action_low": f(v.action_low),
                "action_high": f(v.action_high),
                "max_delta": f(v.max_delta),
                "obs_low": f(v.obs_low),
                "obs_high": f(v.obs_high),
                "stuck_ticks": v.stuck_ticks,
            })),
            "self_test": b.self_test().map(|v| serde_json::json!({
                "vectors": v.count,
                "tolerance": v.tolerance,
                "obs": f(v.obs).chunks(b.obs_dim).map(<[f32]>::to_vec).collect::<Vec<_>>(),
                "mean": f(v.mean).chunks(b.act_dim).map(<[f32]>::to_vec).collect::<Vec<_>>(),
            })),
            "extensions": b.extensions().map(|e| serde_json::json!({"tag": e.tag, "bytes": e.body.len()})).collect::<Vec<_>>(),
        });
        outln!("{v}");
        return Ok(());
    }
    outln!("file            {}", path.display());
    outln!("format version  {}", b.version);
    outln!("policy id       {:08x}", b.policy_id);
    match b.plant_code() {
        Some(c) => outln!("plant           {plant} (code {c:#04x})"),
        None => outln!("plant           unspecified (format v1 or no code)"),
    }
    outln!(
        "dims            {} -> {:?} -> {}",
        b.obs_dim,
        b.hidden(),
        b.act_dim
    );
    outln!("activation      {}", b.activation.name());
    outln!("encoding        {}", b.encoding.name());
    outln!("size            {} bytes", b.len);
    outln!("obs mean        {:?}", f(b.obs_mean));
    outln!("obs inv std     {:?}", f(b.obs_inv_std));
    outln!("obs clip        ±{}", b.obs_clip);
    outln!("action low      {:?}", f(b.action_low));
    outln!("action high     {:?}", f(b.action_high));
    outln!(
        "safe action     {safe:?}{}",
        if b.version == 1 {
            " (v1: midpoint of the bounds)"
        } else {
            ""
        }
    );
    outln!("log std         {:?}", f(b.log_std));
    match b.history() {
        Some(h) => outln!(
            "action history  {} (the last {} applied actions are inputs too: {} → {} first-layer columns)",
            h.len,
            h.len,
            b.obs_dim,
            b.obs_dim + h.width(b.act_dim)
        ),
        None => outln!("action history  none"),
    }
    outln!(
        "realism         {}",
        crate::realism::Realism::of_blob(&b).describe()
    );
    match b.safety() {
        Some(v) => {
            outln!(
                "safety          actions within {:?} .. {:?}, change per tick at most {:?} (0 = free)",
                f(v.action_low),
                f(v.action_high),
                f(v.max_delta)
            );
            outln!(
                "                e-stop outside {:?} .. {:?}; stuck sensor after {} unchanged ticks{}",
                f(v.obs_low),
                f(v.obs_high),
                v.stuck_ticks,
                if v.stuck_ticks == 0 { " (off)" } else { "" }
            );
        }
        None => outln!("safety          none (the action bounds only)"),
    }
    match b.self_test() {
        Some(v) => {
            outln!(
                "self-test       {} vectors, tolerance {:e} (mean action at an episode's first tick)",
                v.count,
                v.tolerance
            );
            let (obs, mean) = (f(v.obs), f(v.mean));
            for (o, m) in obs.chunks(b.obs_dim).zip(mean.chunks(b.act_dim)) {
                outln!("                {o:?} -> {m:?}");
            }
        }
        None => outln!("self-test       none (the device cannot check its computation at boot)"),
    }
    for e in b.extensions() {
        let what = match e.tag {
            tinyppo_runtime::realism::TAG => " (realism)",
            tinyppo_runtime::history::TAG => " (action history, required)",
            tinyppo_runtime::safety::TAG => " (safety, required)",
            tinyppo_runtime::selftest::TAG => " (self-test)",
            _ => "",
        };
        outln!(
            "extension       tag {:#04x}{what}, {} bytes",
            e.tag,
            e.body.len()
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn simulate(
    reg: &Registry,
    policy: &Path,
    env: &str,
    allow_other_plant: bool,
    episodes: u32,
    seed: u64,
    out: &Path,
    deterministic: bool,
    model: &ModelArgs,
) -> Result<()> {
    crate::validate::Checks::new()
        .count("--episodes", u64::from(episodes), 1, 1 << 20)
        .finish()?;
    let plant = reg.get(env)?;
    let blob = read_blob(policy)?;
    plant.check_blob(&blob, &policy.display().to_string(), allow_other_plant)?;
    let model = Model {
        realism: model_realism(model, plant)?,
        params: None,
    };
    let cfg = tinyppo_runtime::sim::RunConfig {
        episodes,
        seed,
        deterministic,
    };
    let (bytes, st) = plant
        .simulate_blob_on(&blob, &cfg, &model)
        .with_context(|| format!("simulating {}", policy.display()))?;
    checkpoint::write_atomic(out, &bytes)?;
    outln!(
        "wrote {} ({} bytes, {} frames): {} episodes, {} transitions, mean return {:.2}, {} dropped",
        out.display(),
        st.bytes,
        st.frames,
        st.episodes,
        st.transitions,
        st.mean_return,
        st.dropped
    );
    Ok(())
}

fn logs_decode(reg: &Registry, files: &[PathBuf], json: bool) -> Result<()> {
    let log = logs::decode_files(files)?;
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    if json {
        outln!("{}", logs::report_json(&log, &names, reg));
        return Ok(());
    }
    print_log_report(reg, &log, &names);
    Ok(())
}

/// Set by the Ctrl-C handler of `logs capture`.
static CAPTURE_STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `tinyppo logs capture`.
fn logs_capture(reg: &Registry, a: CaptureArgs) -> Result<()> {
    use crate::capture::{capture, status_line, CaptureOpts, Stop};
    let CaptureArgs {
        port,
        baud,
        episodes,
        duration,
        out,
        force,
        json,
    } = a;
    let duration = match duration {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => {
            Some(std::time::Duration::from_secs_f64(s))
        }
        Some(s) => bail!("--duration {s}: expected a positive number of seconds"),
    };
    let o = CaptureOpts {
        port,
        baud,
        episodes,
        duration,
        out,
        force,
    };
    // A second handler (cli::run called twice in one process) is refused:
    // the first one sets the same flag.
    let _ = ctrlc::set_handler(|| CAPTURE_STOP.store(true, std::sync::atomic::Ordering::Relaxed));
    CAPTURE_STOP.store(false, std::sync::atomic::Ordering::Relaxed);
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let c = capture(
        &o,
        &CAPTURE_STOP,
        &mut || {
            eprintln!(
                "capturing {} at {} Bd into {} (Ctrl-C to stop)",
                o.port,
                o.baud,
                o.out.display()
            )
        },
        &mut |st, log| {
            bar.set_message(status_line(st, log));
            bar.tick();
        },
    )?;
    bar.finish_and_clear();
    let names = vec![o.out.display().to_string()];
    if json {
        let mut v = logs::report_json(&c.log, &names, reg);
        v["capture"] = serde_json::json!({
            "port": o.port,
            "baud": o.baud,
            "bytes": c.bytes,
            "seconds": c.elapsed.as_secs_f64(),
            "stopped": c.stop.to_string(),
        });
        outln!("{v}");
    } else {
        print_log_report(reg, &c.log, &names);
        outln!(
            "captured        {} bytes in {:.1} s ({})",
            c.bytes,
            c.elapsed.as_secs_f64(),
            c.stop
        );
    }
    if let Stop::PortGone(e) = &c.stop {
        bail!(
            "serial port {} stopped working ({e}); the {} bytes captured are in {}",
            o.port,
            c.bytes,
            o.out.display()
        );
    }
    Ok(())
}

/// The text report of `logs decode` (and of `logs capture`).
fn print_log_report(reg: &Registry, log: &logs::DecodedLog, names: &[String]) {
    let b = &log.bad;
    outln!("files           {}", names.join(", "));
    outln!(
        "frames          {} ok, {} bad (cobs {}, crc {}, schema {}, truncated {})",
        log.frames_ok,
        log.frames_bad,
        b.cobs,
        b.crc,
        b.schema,
        b.truncated
    );
    for h in &log.streams {
        outln!(
            "stream          policy {:08x}, plant {}, obs {}, act {}, seed {}, {}",
            h.policy_id,
            reg.describe_code(h.plant),
            h.obs_dim,
            h.act_dim,
            h.seed,
            if h.deterministic {
                "mean action"
            } else {
                "stochastic"
            }
        );
    }
    outln!("transitions     {}", log.transitions.len());
    let returns = log.episode_returns();
    match log.mean_return() {
        Some(m) => outln!(
            "episodes        {} complete of {} seen, mean return {m:.2}",
            returns.len(),
            log.episodes_seen()
        ),
        None => outln!("episodes        0 complete of {} seen", log.episodes_seen()),
    }
    outln!("dropped         {}", log.dropped());
    if log.self_tests.is_empty() {
        outln!("self-test       none in the stream (the blob has no test vectors)");
    }
    for (_, r) in &log.self_tests {
        if r.passed() {
            outln!(
                "self-test       passed: {} vectors, worst error {:e} (tolerance {:e})",
                r.vectors,
                r.worst_error,
                r.tolerance
            );
        } else {
            outln!(
                "self-test       FAILED: {} of {} vectors, worst error {:e} at vector {} \
                 (tolerance {:e}); the device applied only the safe action",
                r.failed,
                r.vectors,
                r.worst_error,
                r.worst_index,
                r.tolerance
            );
        }
    }
    let counts = log.event_counts();
    if counts.is_empty() {
        outln!("events          none");
    } else {
        let list: Vec<String> = counts.iter().map(|(n, c)| format!("{n} {c}")).collect();
        outln!("events          {}", list.join(", "));
        for (_, e) in log.events.iter().take(10) {
            outln!(
                "  {:<13} episode {} t {}: element {}, value {}",
                logs::event_name(e.code),
                e.episode,
                e.t,
                e.index,
                e.value
            );
        }
        if log.events.len() > 10 {
            outln!("  … {} more (--json lists them all)", log.events.len() - 10);
        }
    }
    for (_, t) in &log.ends {
        if t.episodes > 0 {
            outln!(
                "device return   mean {:.2} over {} episodes (the End frame: every tick, \
                 fault and e-stop ticks included)",
                t.return_sum / t.episodes as f64,
                t.episodes
            );
        }
        let s = &t.safety;
        outln!(
            "device ticks    sensor errors {}, non-finite {}, actuator errors {}, e-stop {}, \
             stuck {}, limited {}, inhibited {}",
            t.sensor_errors,
            t.nonfinite_obs,
            t.actuator_errors,
            s.estop_ticks,
            s.stuck_ticks,
            s.limited_ticks,
            s.inhibited_ticks
        );
    }
    let ids: Vec<String> = log
        .policy_ids()
        .iter()
        .map(|id| format!("{id:08x}"))
        .collect();
    outln!("policy ids      {}", ids.join(", "));
}

fn print_import(r: &ImportReport, max_lag: u32) {
    outln!(
        "imported {} records: {} steps in {} fragments; lag histogram (versions behind: steps) {}",
        r.records,
        r.used,
        r.fragments,
        if r.lag_hist.is_empty() {
            "-".to_string()
        } else {
            r.lag_hist_string()
        }
    );
    outln!(
        "dropped: {} older than --max-lag {max_lag}, {} of unknown policies{}, {} deterministic, \
         {} of another plant, {} non-finite, {} absurd, {} duplicate, {} in {} repeated streams, \
         {} without successor",
        r.dropped_lag,
        r.unknown_records(),
        if r.unknown_kept { " (kept)" } else { "" },
        r.deterministic,
        r.wrong_stream,
        r.nonfinite,
        r.absurd,
        r.duplicates,
        r.duplicate_stream_records,
        r.duplicate_streams,
        r.no_successor
    );
    for (id, n) in &r.unknown {
        outln!("unknown policy id {id}: {n} records (not in this run's policies.json)");
    }
    if r.history_unknown > 0 {
        outln!(
            "left out {} records whose action history the log does not tell (a dropped or \
             lost entry among their last action_history ticks)",
            r.history_unknown
        );
    }
    outln!(
        "behaviour log-prob recomputed for {} records: {} mismatches (> tolerance), max |diff| {:.3e}{}",
        r.compared,
        r.mismatches,
        r.max_abs_diff,
        if r.blob_missing > 0 {
            format!("; {} records of known ids without their blob file", r.blob_missing)
        } else {
            String::new()
        }
    );
    if r.mismatches > 0 {
        outln!(
            "warning: the device and the host disagree about the behaviour policy of {} records",
            r.mismatches
        );
    }
}

fn finetune_cmd(reg: &Registry, a: FinetuneArgs) -> Result<()> {
    let fc = FinetuneConfig {
        iterations: a.iterations,
        max_lag: a.max_lag,
        correction: a.is_correction,
        rho_bar: a.rho_bar,
        c_bar: a.c_bar,
        w_bar: a.w_bar,
        gamma: a.gamma,
        gae_lambda: a.lambda,
        clip_coef: a.clip_coef,
        learning_rate: a.learning_rate,
        update_epochs: a.epochs,
        num_minibatches: a.minibatches,
        ent_coef: a.ent_coef,
        target_kl: a.target_kl,
        mix_onpolicy: a.mix_onpolicy,
        seed: a.seed,
        keep_unknown: a.keep_unknown,
        accept: a.accept,
        confidence: a.confidence,
        ope_resamples: a.ope_resamples,
        min_ess: a.min_ess,
        gate_test: a.gate_test,
        kl_budget: a.kl_budget,
        keep_candidates: a.keep_candidates,
        ..FinetuneConfig::default()
    };
    let quiet = a.quiet || a.json;
    let mut progress = |p: Progress| {
        if quiet {
            return;
        }
        match p {
            Progress::Imported(r) => print_import(r, fc.max_lag),
            Progress::Iteration(m, k) => outln!("{}", m.progress_line(k)),
        }
    };
    let o = finetune(
        reg,
        &a.checkpoint,
        a.out.as_deref(),
        &a.logs,
        &fc,
        &mut progress,
    )?;
    if a.json {
        let v = serde_json::json!({
            "out_dir": o.out_dir.display().to_string(),
            "published": o.published,
            "version": o.version,
            "parent_version": o.parent_version,
            "policy_id": format!("{:08x}", o.policy_id),
            "candidate_dir": o.candidate_dir.as_ref().map(|d| d.display().to_string()),
            "decision": o.decision,
            "reason": o.decision.reason(),
            "import": &o.report,
        });
        outln!("{v}");
        return Ok(());
    }
    if !quiet {
        outln!(
            "gate: {}: {}",
            if o.decision.accepted {
                if o.decision.beats() {
                    "published"
                } else {
                    "published (--accept always)"
                }
            } else {
                "NOT published"
            },
            o.decision.reason()
        );
    }
    if !o.published {
        if !quiet {
            outln!(
                "kept version {} of {}; the candidate (policy {:08x}) is in {}",
                o.parent_version,
                o.out_dir.display(),
                o.policy_id,
                o.candidate_dir
                    .as_ref()
                    .map_or(String::new(), |d| d.display().to_string())
            );
        }
        return Ok(());
    }
    if !quiet {
        let state = checkpoint::load(&o.out_dir)?;
        let idx =
            PolicyIndex::load(&o.out_dir)?.context("policies.json missing after fine-tune")?;
        let blob_of = |v: u32| -> Result<Option<Vec<u8>>> {
            match idx
                .policies
                .iter()
                .find(|r| r.version == v && r.quant == "int8")
            {
                Some(r) => {
                    let path = o.out_dir.join(&r.file);
                    let b = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    Ok(Some(b))
                }
                None => Ok(None),
            }
        };
        let seed = state.cfg.seed.wrapping_add(10_000);
        let n = state.cfg.eval_episodes;
        let plant = reg.get(&state.cfg.env)?;
        let mut line = String::new();
        if let Some(b) = blob_of(o.parent_version)? {
            let (m, _) = mean_std(&plant.eval_blob(&b, n, seed, false)?);
            line = format!("version {}: {m:.1} -> ", o.parent_version);
        }
        if let Some(b) = blob_of(o.version)? {
            let (m, s) = mean_std(&plant.eval_blob(&b, n, seed, false)?);
            outln!(
                "int8 policy mean return over {n} episodes: {line}version {}: {m:.1} ± {s:.1}",
                o.version
            );
        }
        outln!(
            "wrote {}: policy version {} (id {:08x}, from version {}), checkpoint, metrics.csv",
            o.out_dir.display(),
            o.version,
            o.policy_id,
            o.parent_version
        );
    }
    Ok(())
}

fn gradient_variance_cmd(reg: &Registry, a: GradientVarianceArgs) -> Result<()> {
    let cfg = StudyConfig {
        batches: a.batches,
        episodes_per_batch: a.episodes_per_batch,
        gamma: a.gamma,
        seed: a.seed,
        value_fit: ValueFitConfig {
            epochs: a.value_epochs,
            ..ValueFitConfig::for_batch(a.episodes_per_batch)
        },
    };
    // Flags and the plant first: a typo fails before any work.
    cfg.validate()?;
    let plant = reg.get(&a.env)?;
    // One stream: a fresh policy is drawn from it exactly as `train` draws
    // its initial model, then the study continues on it.
    let mut rng = tinyppo_runtime::rng::seeded(a.seed);
    let policy = match &a.checkpoint {
        Some(dir) => StudyPolicy::load(dir, plant)?,
        None => StudyPolicy::fresh(plant, a.seed, &mut rng)?,
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("study-{}", a.env)));
    let pb = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new((cfg.value_fit.epochs + cfg.batches) as u64)
    };
    pb.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} ETA {eta} | {msg}")
            .expect("static template"),
    );
    let epochs = cfg.value_fit.epochs as u64;
    let mut progress = |p: study::Progress| match p {
        study::Progress::ValueEpoch(e, n) => {
            pb.set_position(e as u64);
            pb.set_message(format!("fitting V: epoch {e}/{n}"));
        }
        study::Progress::Batch(m, n) => {
            pb.set_position(epochs + m as u64);
            pb.set_message(format!("batch {m}/{n}"));
        }
    };
    let r = study::gradient_variance(&policy, &cfg, &mut rng, &mut progress);
    pb.finish_and_clear();
    let r = r?;
    r.write(&out)?;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string(&r).context("serializing the study")?
        );
    } else {
        out!("{}", r.markdown());
        if !a.quiet {
            outln!(
                "\nwrote {} and {}",
                out.join("gradient-variance.csv").display(),
                out.join("gradient-variance.png").display()
            );
        }
    }
    Ok(())
}
