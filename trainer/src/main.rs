//! `tinyppo`: train, evaluate, export and inspect policies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tinyppo_runtime::Blob;
use tinyppo_trainer::checkpoint::{self, write_atomic};
use tinyppo_trainer::config;
use tinyppo_trainer::evaluate::{eval_blob, mean_std};
use tinyppo_trainer::export::{export_blob, Quant};
use tinyppo_trainer::logs;
use tinyppo_trainer::ppo::{Trainer, UpdateMetrics};
use tinyppo_trainer::report;

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
    /// Train a policy with PPO and export it.
    Train(TrainArgs),
    /// Evaluate an exported policy blob through the device runtime.
    Eval {
        /// Policy blob (policy.bin or policy-f32.bin).
        #[arg(long)]
        policy: PathBuf,
        /// Plant.
        #[arg(long)]
        env: String,
        /// Episodes.
        #[arg(long, default_value_t = 100)]
        episodes: usize,
        /// Seed of the plant resets (and of sampling with --stochastic).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sample actions instead of applying the mean.
        #[arg(long)]
        stochastic: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Export a checkpoint's policy as a blob.
    Export {
        /// Run directory holding checkpoint.bin.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Weight encoding.
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
        /// Plant: pendulum, mountain-car, cartpole, dc-motor.
        #[arg(long)]
        env: String,
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
    },
    /// Work with device rollout logs.
    Logs {
        #[command(subcommand)]
        cmd: LogsCmd,
    },
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
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Plant: pendulum, mountain-car, cartpole, dc-motor.
    #[arg(long, required_unless_present = "resume")]
    env: Option<String>,
    /// Environment steps (overrides total_timesteps).
    #[arg(long)]
    total_steps: Option<u64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// TOML file of hyperparameters (over the plant's preset).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one hyperparameter, e.g. --set learning_rate=3e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Output directory (default runs/<env>-s<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint.
    #[arg(long, conflicts_with_all = ["env", "config", "sets", "seed", "out"])]
    resume: Option<PathBuf>,
    /// No progress bar or summary.
    #[arg(long)]
    quiet: bool,
    /// Seconds between checkpoints (one is always written at the end).
    #[arg(long, default_value_t = 10.0)]
    checkpoint_secs: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Train(a) => train(a),
        Cmd::Eval {
            policy,
            env,
            episodes,
            seed,
            stochastic,
            json,
        } => eval(&policy, &env, episodes, seed, stochastic, json),
        Cmd::Export {
            checkpoint,
            quant,
            out,
        } => export(&checkpoint, quant, &out),
        Cmd::Inspect { file, json } => inspect(&file, json),
        Cmd::Simulate {
            policy,
            env,
            episodes,
            seed,
            out,
            deterministic,
        } => simulate(&policy, &env, episodes, seed, &out, deterministic),
        Cmd::Logs {
            cmd: LogsCmd::Decode { files, json },
        } => logs_decode(&files, json),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_blob(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Blob::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: invalid policy blob: {e}", path.display()))?;
    Ok(bytes)
}

fn train(a: TrainArgs) -> Result<()> {
    let (mut trainer, out, mut rows) = if let Some(dir) = &a.resume {
        let mut state = checkpoint::load(dir)?;
        if let Some(n) = a.total_steps {
            state.cfg.total_timesteps = n;
        }
        let mut rows = report::read_metrics(&dir.join("metrics.csv"))?;
        rows.retain(|r| r.update <= state.update);
        (Trainer::from_state(state)?, dir.clone(), rows)
    } else {
        let env = a
            .env
            .as_deref()
            .expect("clap requires --env without --resume");
        let mut sets = a.sets.clone();
        if let Some(n) = a.total_steps {
            sets.push(format!("total_timesteps={n}"));
        }
        if let Some(s) = a.seed {
            sets.push(format!("seed={s}"));
        }
        let cfg = config::resolve(env, a.config.as_deref(), &sets)?;
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("runs/{}-s{}", cfg.env, cfg.seed)));
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let toml = toml::to_string(&cfg).context("serializing config")?;
        write_atomic(&out.join("config.toml"), toml.as_bytes())?;
        (Trainer::new(cfg)?, out, Vec::new())
    };
    let cfg = trainer.state.cfg.clone();
    let total = cfg.num_updates() * cfg.batch_size() as u64;
    let pb = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {elapsed_precise} ETA {eta} | {msg}",
        )
        .expect("static template"),
    );
    pb.set_position(trainer.state.global_step);
    let mut last_save = Instant::now();
    let save_every = Duration::from_secs_f64(a.checkpoint_secs.max(0.0));
    let started = Instant::now();
    while !trainer.done() {
        let t0 = Instant::now();
        let mut m: UpdateMetrics = match trainer.step_update() {
            Ok(m) => m,
            Err(e) => {
                pb.abandon();
                // Checkpoints are written every `checkpoint_secs`: a run can
                // diverge before the first one exists.
                let ck = out.join("checkpoint.bin");
                let hint = if ck.exists() {
                    format!(
                        "no policy exported; the last good checkpoint is in {}",
                        ck.display()
                    )
                } else {
                    format!(
                        "no policy exported and no checkpoint written yet in {}",
                        out.display()
                    )
                };
                return Err(e.context(hint));
            }
        };
        m.sps = cfg.batch_size() as f64 / t0.elapsed().as_secs_f64();
        pb.set_position(m.global_step);
        pb.set_message(format!(
            "{:.0} steps/s | return {:.1} | approx_kl {:.4}",
            m.sps, m.recent_return, m.approx_kl
        ));
        rows.push(m);
        if last_save.elapsed() >= save_every || trainer.done() {
            checkpoint::save(&out, &trainer.state)?;
            report::write_metrics(&out.join("metrics.csv"), &rows)?;
            last_save = Instant::now();
        }
    }
    pb.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    let int8 = export_blob(&trainer.state, Quant::Int8)?;
    let f32b = export_blob(&trainer.state, Quant::F32)?;
    write_atomic(&out.join("policy.bin"), &int8)?;
    write_atomic(&out.join("policy-f32.bin"), &f32b)?;
    report::learning_curve(&out.join("learning-curve.png"), &cfg.env, &rows)?;
    if !a.quiet {
        let rets = eval_blob(
            &int8,
            &cfg.env,
            cfg.eval_episodes,
            cfg.seed.wrapping_add(10_000),
            false,
        )?;
        let (m, s) = mean_std(&rets);
        println!(
            "trained {} steps in {wall:.1} s; int8 policy: mean return {m:.1} ± {s:.1} over {} episodes",
            trainer.state.global_step,
            rets.len()
        );
        println!(
            "time: {:.2} s rollouts, {:.2} s updates; wrote {}",
            trainer.seconds.0,
            trainer.seconds.1,
            out.display()
        );
    }
    Ok(())
}

fn eval(
    policy: &Path,
    env: &str,
    episodes: usize,
    seed: u64,
    stochastic: bool,
    json: bool,
) -> Result<()> {
    let blob = read_blob(policy)?;
    let rets = eval_blob(&blob, env, episodes, seed, stochastic)
        .with_context(|| format!("evaluating {}", policy.display()))?;
    let (m, s) = mean_std(&rets);
    if json {
        let v = serde_json::json!({
            "policy": policy.display().to_string(),
            "env": env,
            "episodes": rets.len(),
            "seed": seed,
            "stochastic": stochastic,
            "mean_return": m,
            "std_return": s,
            "min_return": rets.iter().cloned().fold(f64::INFINITY, f64::min),
            "max_return": rets.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        });
        println!("{v}");
    } else {
        println!(
            "{env}: mean return {m:.2} ± {s:.2} over {} episodes ({})",
            rets.len(),
            if stochastic {
                "stochastic"
            } else {
                "mean action"
            }
        );
    }
    Ok(())
}

fn export(dir: &Path, quant: Quant, out: &Path) -> Result<()> {
    let state = checkpoint::load(dir)?;
    let blob = export_blob(&state, quant)?;
    write_atomic(out, &blob)?;
    println!("wrote {} ({} bytes)", out.display(), blob.len());
    Ok(())
}

fn inspect(path: &Path, json: bool) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let b = Blob::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: invalid policy blob: {e}", path.display()))?;
    let f = |v: &[u8]| tinyppo_runtime::format::f32s(v).collect::<Vec<f32>>();
    if json {
        let v = serde_json::json!({
            "file": path.display().to_string(),
            "format_version": b.version,
            "policy_id": format!("{:08x}", b.policy_id),
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
            "log_std": f(b.log_std),
        });
        println!("{v}");
        return Ok(());
    }
    println!("file            {}", path.display());
    println!("format version  {}", b.version);
    println!("policy id       {:08x}", b.policy_id);
    println!(
        "dims            {} -> {:?} -> {}",
        b.obs_dim,
        b.hidden(),
        b.act_dim
    );
    println!("activation      {}", b.activation.name());
    println!("encoding        {}", b.encoding.name());
    println!("size            {} bytes", b.len);
    println!("obs mean        {:?}", f(b.obs_mean));
    println!("obs inv std     {:?}", f(b.obs_inv_std));
    println!("obs clip        ±{}", b.obs_clip);
    println!("action low      {:?}", f(b.action_low));
    println!("action high     {:?}", f(b.action_high));
    println!("log std         {:?}", f(b.log_std));
    Ok(())
}

fn simulate(
    policy: &Path,
    env: &str,
    episodes: u32,
    seed: u64,
    out: &Path,
    deterministic: bool,
) -> Result<()> {
    let blob = read_blob(policy)?;
    let cfg = tinyppo_runtime::sim::SimConfig {
        episodes,
        seed,
        deterministic,
    };
    let (bytes, st) = logs::simulate_blob(&blob, env, &cfg)
        .with_context(|| format!("simulating {}", policy.display()))?;
    write_atomic(out, &bytes)?;
    println!(
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

fn logs_decode(files: &[PathBuf], json: bool) -> Result<()> {
    let log = logs::decode_files(files)?;
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    if json {
        println!("{}", logs::report_json(&log, &names));
        return Ok(());
    }
    let b = &log.bad;
    println!("files           {}", names.join(", "));
    println!(
        "frames          {} ok, {} bad (cobs {}, crc {}, schema {}, truncated {})",
        log.frames_ok, log.frames_bad, b.cobs, b.crc, b.schema, b.truncated
    );
    for h in &log.streams {
        println!(
            "stream          policy {:08x}, plant {}, obs {}, act {}, seed {}, {}",
            h.policy_id,
            tinyppo_runtime::sim::plant_name(h.plant).unwrap_or("(hardware/other)"),
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
    println!("transitions     {}", log.transitions.len());
    let returns = log.episode_returns();
    match log.mean_return() {
        Some(m) => println!(
            "episodes        {} complete of {} seen, mean return {m:.2}",
            returns.len(),
            log.episodes_seen()
        ),
        None => println!("episodes        0 complete of {} seen", log.episodes_seen()),
    }
    println!("dropped         {}", log.dropped());
    let ids: Vec<String> = log
        .policy_ids()
        .iter()
        .map(|id| format!("{id:08x}"))
        .collect();
    println!("policy ids      {}", ids.join(", "));
    Ok(())
}
