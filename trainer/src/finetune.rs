//! `tinyppo finetune`: improve a run's policy from device rollout logs.
//!
//! 1. **Import** ([`import_log`], in [`import`]): decoded transitions are
//!    checked, mapped to policy versions through the run's [`PolicyIndex`],
//!    filtered by `--max-lag` and grouped into time-ordered fragments with
//!    bootstrap observations; `log μ` is recomputed where the blob is known.
//! 2. **Updates** ([`finetune`]): each iteration freezes `π_prox` = the
//!    current policy, computes `log ρ = log π_prox − log μ`, the weights,
//!    advantages and value targets of the chosen [`IsCorrection`]
//!    ([`crate::offpolicy`]), then runs epochs of shuffled minibatches of
//!    [`decoupled_ppo_loss`] with Adam, as the trainer does.
//! 3. **Output**: a checkpoint, `policy.bin` (int8) and `policy-f32.bin`,
//!    registered as the next version in the index, and one `metrics.csv`
//!    row per iteration.
//!
//! Observations are normalized with the checkpoint's statistics, frozen
//! for the fine-tune ([`import`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ndarray::ArrayView2;
use rand::{Rng, RngCore};
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::sim::RunConfig;

use crate::algo::TrainState;
use crate::checkpoint::{self, write_atomic};
use crate::export::{export_blob, policy_id, PolicyIndex, Quant};
use crate::gae::{gae, GaeInput};
use crate::logs::{decode_files, decode_stream};
use crate::loss::{LossCoefs, LossStats, Minibatch, Workspace};
use crate::offpolicy::{
    decoupled_ppo_loss, ess_fraction, ess_fraction_log, kl_behaviour_prox, log_probs_and_values,
    per_decision_weights, single_ratio_weights, values_of, vtrace, IsCorrection, TraceInput,
};
use crate::optim::guarded_step;
use crate::registry::{RegisteredPlant, Registry};

pub mod gate;
pub mod import;
pub use gate::{Accept, Decision, Gate, GateOpts, GateTest};
pub use import::{import_log, runtime_log_probs, Dataset, ImportCtx, ImportReport};

/// Options of a fine-tune. `None` means "the checkpoint's configuration".
#[derive(Debug, Clone, serde::Serialize)]
pub struct FinetuneConfig {
    /// Iterations (updates): each freezes `π_prox` and runs the epochs.
    pub iterations: usize,
    /// Drop records of policies more than this many versions old.
    pub max_lag: u32,
    /// Off-policy correction.
    pub correction: IsCorrection,
    /// ρ̄: truncation of `ρ` on `δ` in the V-trace value target.
    pub rho_bar: f32,
    /// c̄: truncation of the traces `c = min(c̄, ρ)`.
    pub c_bar: f32,
    /// w̄: truncation of the loss weights `w = min(w̄, ·)`.
    pub w_bar: f32,
    /// Discount γ.
    pub gamma: Option<f32>,
    /// λ of the traces (GAE and V-trace).
    pub gae_lambda: Option<f32>,
    /// PPO clip ε (of `π_θ/π_prox`).
    pub clip_coef: Option<f32>,
    /// Adam learning rate (constant over the fine-tune).
    pub learning_rate: f32,
    /// Epochs per iteration.
    pub update_epochs: Option<usize>,
    /// Minibatches per epoch.
    pub num_minibatches: Option<usize>,
    /// Entropy coefficient.
    pub ent_coef: Option<f32>,
    /// Stop an iteration's epochs when approx-KL(π_prox‖π_θ) exceeds this (0 = off).
    pub target_kl: Option<f32>,
    /// Fresh simulated on-policy episodes (the current policy's int8
    /// export, through the device control loop) mixed into every iteration.
    pub mix_onpolicy: u32,
    /// Seed of minibatch shuffling and of the on-policy simulations
    /// (default: the run's seed).
    pub seed: Option<u64>,
    /// Keep records of policy ids the index does not know (with the logged
    /// `log μ`, lag "unknown") instead of dropping them.
    pub keep_unknown: bool,
    /// `|logged − recomputed log μ|` above which a record counts as a mismatch.
    pub mu_tolerance: f32,
    /// When the candidate is published ([`gate`]).
    pub accept: Accept,
    /// One-sided confidence of the gate's lower bound.
    pub confidence: f64,
    /// Bootstrap resamples of the gate's interval.
    pub ope_resamples: usize,
    /// The gate's least effective sample size (over the episodes) of the
    /// whole-episode weights: below it the logs cannot judge a candidate,
    /// and the fine-tune stops (later iterates only move farther).
    pub min_ess: f64,
    /// What the gate's lower bound is of: the gain over the logged return
    /// (`paired`) or the candidate's estimate alone (`unpaired`).
    pub gate_test: GateTest,
    /// Budget of the per-step `KL(μ‖π)` of the candidate from the logs'
    /// policy over the **whole** fine-tune (0 = none): an iteration that
    /// takes the candidate past it is shortened by a line search onto the
    /// budget, and the fine-tune ends there.
    pub kl_budget: f64,
    /// Write every candidate the gate judged (its int8 blob, as judged)
    /// and its decision to this directory (`candidates.json`).
    pub keep_candidates: Option<PathBuf>,
}

impl FinetuneConfig {
    /// Checks every value (named by its `tinyppo finetune` flag) before
    /// anything is read or written; the overrides of the run's
    /// hyperparameters by the same rules as `train`'s.
    pub fn validate(&self) -> Result<()> {
        let mut c = crate::validate::Checks::new();
        c.count("--iterations", self.iterations as u64, 1, 1 << 20)
            .positive("--rho-bar", self.rho_bar)
            .positive("--c-bar", self.c_bar)
            .positive("--w-bar", self.w_bar)
            .positive("--learning-rate", self.learning_rate)
            .count("--mix-onpolicy", u64::from(self.mix_onpolicy), 0, 1 << 16)
            .non_negative("mu_tolerance", self.mu_tolerance)
            .rule(
                self.confidence > 0.5 && self.confidence < 1.0,
                "--confidence",
                self.confidence,
                "a confidence in (0.5, 1)",
            )
            .count("--ope-resamples", self.ope_resamples as u64, 10, 1 << 20)
            .within("--min-ess", self.min_ess as f32, 0.0, 1.0)
            .rule(
                self.kl_budget >= 0.0 && self.kl_budget.is_finite(),
                "--kl-budget",
                self.kl_budget,
                "a finite KL ≥ 0 (0: no budget)",
            );
        if let Some(g) = self.gamma {
            c.within("--gamma", g, 0.0, 1.0);
        }
        if let Some(l) = self.gae_lambda {
            c.within("--lambda", l, 0.0, 1.0);
        }
        if let Some(v) = self.clip_coef {
            c.positive("--clip-coef", v);
        }
        if let Some(v) = self.update_epochs {
            c.count("--epochs", v as u64, 1, 1 << 16);
        }
        if let Some(v) = self.num_minibatches {
            c.count("--minibatches", v as u64, 1, 1 << 22);
        }
        if let Some(v) = self.ent_coef {
            c.non_negative("--ent-coef", v);
        }
        if let Some(v) = self.target_kl {
            c.non_negative("--target-kl", v);
        }
        c.finish()
    }
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            iterations: 10,
            max_lag: 8,
            correction: IsCorrection::Vtrace,
            rho_bar: 1.0,
            c_bar: 1.0,
            w_bar: 1.0,
            gamma: None,
            gae_lambda: None,
            clip_coef: None,
            learning_rate: 3e-4,
            update_epochs: None,
            num_minibatches: None,
            ent_coef: None,
            target_kl: None,
            mix_onpolicy: 0,
            seed: None,
            keep_unknown: false,
            mu_tolerance: 1e-4,
            accept: Accept::Improvement,
            confidence: 0.95,
            ope_resamples: 1000,
            min_ess: 0.1,
            gate_test: GateTest::Paired,
            kl_budget: 0.0,
            keep_candidates: None,
        }
    }
}

/// Metrics of one fine-tune iteration (one `metrics.csv` row). The first
/// columns are the trainer's ([`crate::algo::UpdateMetrics`]), so the file
/// stays readable by `train --resume`.
#[derive(Debug, Clone, Default)]
pub struct FinetuneMetrics {
    /// Update index of the run (fine-tune iterations count as updates).
    pub update: u64,
    /// Environment steps of the run (on-policy mixing adds its steps).
    pub global_step: u64,
    /// Mean return of the complete episodes in the imported logs.
    pub episodic_return: f64,
    /// Mean return of this iteration's on-policy episodes (NaN without mixing).
    pub onpolicy_return: f64,
    /// Complete episodes in the data.
    pub episodes: u32,
    /// Learning rate.
    pub learning_rate: f32,
    /// Minibatch means of the loss terms and diagnostics.
    pub losses: LossStats,
    /// `1 − Var(v − V)/Var(v)` of the value targets.
    pub explained_variance: f32,
    /// Mean gradient norm before clipping.
    pub grad_norm: f32,
    /// Epochs run.
    pub epochs: u32,
    /// Mean σ of the policy.
    pub std: f32,
    /// Samples per second of the iteration's optimization.
    pub sps: f64,
    /// Iteration of this fine-tune (1-based).
    pub iteration: u32,
    /// Correction used.
    pub correction: &'static str,
    /// Steps learned from (logs + on-policy).
    pub samples: usize,
    /// On-policy steps among them.
    pub onpolicy_samples: usize,
    /// Fragments.
    pub fragments: usize,
    /// ESS/N of the raw ratios `ρ = π_prox/μ`.
    pub ess: f64,
    /// ESS/N of the loss weights `w`.
    pub ess_weights: f64,
    /// Fraction of samples whose weight was truncated at w̄.
    pub truncated_frac: f64,
    /// Fraction of traces cut (`ρ > c̄`).
    pub trace_cut_frac: f64,
    /// Largest loss weight.
    pub weight_max: f32,
    /// k3 estimate of KL(μ ‖ π_prox).
    pub kl_mu_prox: f64,
    /// Mean lag of the logged steps (known ids).
    pub lag_mean: f64,
    /// Histogram `lag:count` of the logged steps.
    pub lag_hist: String,
    /// Records dropped as older than `max_lag`.
    pub dropped_lag: usize,
    /// Records of unknown policy ids.
    pub unknown: usize,
    /// Fraction of the iteration's update kept by the `--kl-budget` line
    /// search (1: the whole update).
    pub step_scale: f64,
    /// `log μ` mismatches (logged vs recomputed).
    pub mu_mismatches: usize,
    /// Largest `|logged − recomputed log μ|`.
    pub mu_max_abs_diff: f32,
    /// The publication gate's decision (the last iteration's row only).
    pub decision: Option<Decision>,
}

impl FinetuneMetrics {
    /// `(column, value)` pairs of the `metrics.csv` row: the trainer's
    /// columns, then `offpolicy/*`.
    pub fn columns(&self) -> Vec<(&'static str, String)> {
        let l = &self.losses;
        vec![
            ("update", self.update.to_string()),
            ("global_step", self.global_step.to_string()),
            ("charts/episodic_return", self.episodic_return.to_string()),
            ("charts/recent_return", self.onpolicy_return.to_string()),
            ("charts/episodes", self.episodes.to_string()),
            ("charts/learning_rate", self.learning_rate.to_string()),
            ("losses/policy_loss", l.pg_loss.to_string()),
            ("losses/value_loss", l.v_loss.to_string()),
            ("losses/entropy", l.entropy.to_string()),
            ("losses/approx_kl", l.approx_kl.to_string()),
            ("losses/old_approx_kl", l.old_approx_kl.to_string()),
            ("losses/clipfrac", l.clipfrac.to_string()),
            (
                "losses/explained_variance",
                self.explained_variance.to_string(),
            ),
            ("losses/grad_norm", self.grad_norm.to_string()),
            ("charts/epochs", self.epochs.to_string()),
            ("charts/action_std", self.std.to_string()),
            ("charts/sps", self.sps.to_string()),
            ("offpolicy/iteration", self.iteration.to_string()),
            ("offpolicy/correction", self.correction.to_string()),
            ("offpolicy/samples", self.samples.to_string()),
            (
                "offpolicy/onpolicy_samples",
                self.onpolicy_samples.to_string(),
            ),
            ("offpolicy/fragments", self.fragments.to_string()),
            ("offpolicy/ess", self.ess.to_string()),
            ("offpolicy/ess_weights", self.ess_weights.to_string()),
            ("offpolicy/truncated_frac", self.truncated_frac.to_string()),
            ("offpolicy/trace_cut_frac", self.trace_cut_frac.to_string()),
            ("offpolicy/weight_max", self.weight_max.to_string()),
            ("offpolicy/kl_mu_prox", self.kl_mu_prox.to_string()),
            ("offpolicy/lag_mean", self.lag_mean.to_string()),
            ("offpolicy/lag_hist", self.lag_hist.clone()),
            ("offpolicy/dropped_lag", self.dropped_lag.to_string()),
            ("offpolicy/unknown", self.unknown.to_string()),
            ("offpolicy/mu_mismatches", self.mu_mismatches.to_string()),
            (
                "offpolicy/mu_max_abs_diff",
                self.mu_max_abs_diff.to_string(),
            ),
            (
                "gate/accepted",
                self.decision
                    .map_or(String::new(), |d| (d.accepted as u8).to_string()),
            ),
            (
                "gate/behaviour_return",
                self.decision
                    .map_or(String::new(), |d| d.behaviour_return.to_string()),
            ),
            (
                "gate/estimate",
                self.decision
                    .map_or(String::new(), |d| d.estimate.to_string()),
            ),
            (
                "gate/lower",
                self.decision.map_or(String::new(), |d| d.lower.to_string()),
            ),
            (
                "gate/wpdis",
                self.decision.map_or(String::new(), |d| d.wpdis.to_string()),
            ),
            (
                "gate/episodes",
                self.decision
                    .map_or(String::new(), |d| d.episodes.to_string()),
            ),
            (
                "gate/gain",
                self.decision.map_or(String::new(), |d| d.gain.to_string()),
            ),
            (
                "gate/gain_lower",
                self.decision
                    .map_or(String::new(), |d| d.gain_lower.to_string()),
            ),
            (
                "gate/ess",
                self.decision.map_or(String::new(), |d| d.ess.to_string()),
            ),
            (
                "gate/kl_mu",
                self.decision.map_or(String::new(), |d| d.kl_mu.to_string()),
            ),
            ("offpolicy/step_scale", self.step_scale.to_string()),
        ]
    }

    /// The progress line.
    pub fn progress_line(&self, iterations: usize) -> String {
        format!(
            "iter {}/{iterations} [{}] N {} | ess {:.3} trunc {:.3} | kl(μ‖prox) {:.4} | clipfrac {:.3} approx_kl {:.4} | v_loss {:.4} | lag {}{}",
            self.iteration,
            self.correction,
            self.samples,
            self.ess,
            self.truncated_frac,
            self.kl_mu_prox,
            self.losses.clipfrac,
            self.losses.approx_kl,
            self.losses.v_loss,
            if self.lag_hist.is_empty() { "-" } else { &self.lag_hist },
            if self.onpolicy_return.is_finite() {
                format!(" | on-policy return {:.1}", self.onpolicy_return)
            } else {
                String::new()
            }
        ) + &match self.decision {
            Some(d) => format!(
                " | OPE {:.1} (lower {:.1}) vs logged {:.1}, gain {:+.1} (lower {:+.1}), ess {:.3} kl(μ‖π) {:.5}{}",
                d.estimate,
                d.lower,
                d.behaviour_return,
                d.gain,
                d.gain_lower,
                d.ess,
                d.kl_mu,
                if self.step_scale < 1.0 {
                    format!(" | step ×{:.3} (KL budget)", self.step_scale)
                } else {
                    String::new()
                }
            ),
            None => String::new(),
        }
    }
}

/// The bytes of `src` (a `metrics.csv`, or none) with `rows` appended,
/// adding the columns it lacks (older rows get empty cells in them).
pub fn metrics_with(src: &Path, rows: &[FinetuneMetrics]) -> Result<Vec<u8>> {
    let (mut header, mut old): (Vec<String>, Vec<Vec<String>>) = (Vec::new(), Vec::new());
    if src.exists() {
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(src)
            .with_context(|| format!("reading {}", src.display()))?;
        header = r
            .headers()
            .with_context(|| format!("reading {}", src.display()))?
            .iter()
            .map(String::from)
            .collect();
        for rec in r.records() {
            let rec = rec.with_context(|| format!("parsing {}", src.display()))?;
            old.push(rec.iter().map(String::from).collect());
        }
    }
    for (k, _) in rows.first().map(|r| r.columns()).unwrap_or_default() {
        if !header.iter().any(|h| h == k) {
            header.push(k.to_string());
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for mut rec in old {
        rec.resize(header.len(), String::new());
        w.write_record(&rec)?;
    }
    for row in rows {
        let cols = row.columns();
        let rec: Vec<String> = header
            .iter()
            .map(|h| {
                cols.iter()
                    .find(|(k, _)| k == h)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect();
        w.write_record(&rec)?;
    }
    w.into_inner().context("flushing metrics")
}

/// What a fine-tune produced.
#[derive(Debug, Clone)]
pub struct FinetuneOutcome {
    /// The run directory written.
    pub out_dir: PathBuf,
    /// Version of the new export; the parent's when the gate kept it.
    pub version: u32,
    /// The candidate was published (else it is in `candidate_dir`).
    pub published: bool,
    /// Where a candidate the gate did not publish was written.
    pub candidate_dir: Option<PathBuf>,
    /// The publication gate's decision.
    pub decision: Decision,
    /// Its int8 policy id.
    pub policy_id: u32,
    /// Version fine-tuned from.
    pub parent_version: u32,
    /// The import of the logs.
    pub report: ImportReport,
    /// One row per iteration.
    pub rows: Vec<FinetuneMetrics>,
}

/// Loads a run's index, or makes one (version 1, origin `bootstrap`) from
/// its `policy.bin`/`policy-f32.bin` or, without them, from an export of
/// the checkpoint. Returns the index and the blob bytes by id.
///
/// The newest version's blobs (the parent of the fine-tune: the policy
/// the logs are checked against) must be there and intact; a missing or
/// damaged one is an error naming the file, before anything is written.
/// Older versions' blobs may be missing: their records are then imported
/// without the log-prob check, and the report counts them.
fn load_index(
    dir: &Path,
    state: &TrainState,
    plant: &RegisteredPlant,
) -> Result<(PolicyIndex, BTreeMap<u32, Vec<u8>>)> {
    let mut blobs = BTreeMap::new();
    if let Some(idx) = PolicyIndex::load(dir)? {
        let newest = idx.latest_version();
        for r in &idx.policies {
            let id = u32::from_str_radix(&r.id, 16)
                .with_context(|| format!("policies.json: bad policy id {:?}", r.id))?;
            let path = dir.join(&r.file);
            let blob =
                std::fs::read(&path)
                    .map_err(|e| format!("{e}"))
                    .and_then(|b| match policy_id(&b) {
                        Ok(got) if got == id => Ok(b),
                        Ok(got) => Err(format!("it holds policy {got:08x}, not {id:08x}")),
                        Err(e) => Err(format!("{e:#}")),
                    });
            match blob {
                Ok(b) => {
                    blobs.insert(id, b);
                }
                Err(why) if r.version == newest => bail!(
                    "{}: the blob of the run's newest policy (version {newest}, id {id:08x}, \
                     listed in {}) is unusable: {why}; restore it (`tinyppo export --checkpoint {}` \
                     writes the checkpoint's policy) before fine-tuning",
                    path.display(),
                    dir.join(crate::export::INDEX_FILE).display(),
                    dir.display()
                ),
                Err(_) => {}
            }
        }
        return Ok((idx, blobs));
    }
    let mut found = Vec::new();
    for (f, q) in [("policy.bin", Quant::Int8), ("policy-f32.bin", Quant::F32)] {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            if policy_id(&b).is_ok() {
                found.push((b, q));
            }
        }
    }
    if found.is_empty() {
        found.push((export_blob(state, plant, Quant::Int8)?, Quant::Int8));
        found.push((export_blob(state, plant, Quant::F32)?, Quant::F32));
    }
    // In memory first; written (with the blob files) to the output directory.
    let mut idx = PolicyIndex {
        format: 1,
        policies: Vec::new(),
    };
    for (b, q) in &found {
        let id = policy_id(b)?;
        idx.policies.push(crate::export::PolicyRecord {
            version: 1,
            id: format!("{id:08x}"),
            quant: if *q == Quant::Int8 { "int8" } else { "f32" }.into(),
            file: crate::export::blob_file_name(id),
            origin: "bootstrap".into(),
            update: state.update,
            global_step: state.global_step,
            parent: None,
        });
        blobs.insert(id, b.to_vec());
    }
    Ok((idx, blobs))
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Runs a fine-tune of the run in `ckpt_dir` (its plant found in
/// `registry`) from the log files `logs`, writing to `out_dir` (default:
/// `ckpt_dir` itself). `progress` sees every iteration's metrics and the
/// import report once.
pub fn finetune(
    registry: &Registry,
    ckpt_dir: &Path,
    out_dir: Option<&Path>,
    logs: &[PathBuf],
    fc: &FinetuneConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<FinetuneOutcome> {
    fc.validate()?;
    let out_lock = out_dir.unwrap_or(ckpt_dir);
    let _lock = crate::run::RunLock::acquire(out_lock)?;
    crate::run::report_repair(ckpt_dir, &crate::publish::repair(ckpt_dir)?);
    let mut state = checkpoint::load(ckpt_dir)?;
    let plant = registry
        .get(&state.cfg.env)
        .with_context(|| format!("the run in {}", ckpt_dir.display()))?
        .clone();
    let (mut idx, blobs) = load_index(ckpt_dir, &state, &plant)?;
    let out = out_dir.unwrap_or(ckpt_dir).to_path_buf();
    let in_place = out_dir.is_none() || same_dir(ckpt_dir, &out);
    if !in_place && out.join("checkpoint.bin").exists() {
        bail!(
            "{} already holds a run; pass an empty directory to --out, or omit --out to fine-tune in place",
            out.display()
        );
    }
    let cfg = state.cfg.clone();
    let versions: BTreeMap<u32, u32> = idx
        .policies
        .iter()
        .filter_map(|r| Some((u32::from_str_radix(&r.id, 16).ok()?, r.version)))
        .collect();
    let current = idx.latest_version();
    let (log, history_unknown) = with_history(decode_files(logs)?, &cfg, &plant);
    let ctx = ImportCtx::of_state(&plant, &state, &versions, &blobs, current, fc);
    let (logs_ds, mut report) = import_log(&log, &ctx)?;
    report.history_unknown = history_unknown;
    // The complete episodes, for the publication gate.
    let gate = Gate::from_log(&log, &ctx);
    let reward_std = ctx.reward_std();
    // The decoded records are in the dataset now: free them before the
    // updates (memory grows with the steps kept, not with the logs).
    drop(log);
    progress(Progress::Imported(&report));
    if logs_ds.len() < 2 && fc.mix_onpolicy == 0 {
        bail!(
            "no usable steps in the logs ({} records: {} older than --max-lag {}, {} of unknown policies, {} deterministic, {} of another plant, {} without successor)",
            report.records,
            report.dropped_lag,
            fc.max_lag,
            report.unknown_records(),
            report.deterministic,
            report.wrong_stream,
            report.no_successor
        );
    }

    let gamma = fc.gamma.unwrap_or(cfg.gamma);
    let lambda = fc.gae_lambda.unwrap_or(cfg.gae_lambda);
    let coefs = LossCoefs {
        clip_coef: fc.clip_coef.unwrap_or(cfg.ppo.clip_coef),
        clip_vloss: cfg.ppo.clip_vloss,
        ent_coef: fc.ent_coef.unwrap_or(cfg.ent_coef),
        vf_coef: cfg.vf_coef,
        norm_adv: cfg.norm_adv,
    };
    let epochs = fc.update_epochs.unwrap_or(cfg.ppo.update_epochs).max(1);
    let minibatches = fc.num_minibatches.unwrap_or(cfg.ppo.num_minibatches).max(1);
    let target_kl = fc.target_kl.unwrap_or(cfg.ppo.target_kl);
    let lr = fc.learning_rate;
    let mut rng = seeded(fc.seed.unwrap_or(cfg.seed));
    let parent_version = current;
    let log_std_behaviour = state.model.log_std().to_vec();
    let mut ws = Workspace::new(cfg.threads > 1);
    let mut rows = Vec::new();

    // The gate, on the candidate's means at the behaviour's σ: the policy
    // as it would be logged next, and the only change IS can estimate well
    // from these logs (a narrower σ alone would look like an improvement
    // of the noisy logged return, not of the policy).
    let judged_blob = |st: &TrainState| -> Result<Vec<u8>> {
        let mut s = st.clone();
        let r = s.model.log_std_range();
        s.model.params[r].copy_from_slice(&log_std_behaviour);
        export_blob(&s, &plant, Quant::Int8)
    };
    let gate_opts = GateOpts {
        accept: fc.accept,
        test: fc.gate_test,
        confidence: fc.confidence,
        resamples: fc.ope_resamples,
        seed: fc.seed.unwrap_or(cfg.seed) ^ 0x6A7E,
    };
    let judge = |st: &TrainState| -> Result<(Decision, Vec<u8>)> {
        let blob = judged_blob(st)?;
        let mut d = gate.decide(&plant, &blob, &st.model, reward_std, &gate_opts)?;
        d.min_ess = fc.min_ess;
        if fc.accept == Accept::Improvement && d.ess < fc.min_ess {
            d.accepted = false;
        }
        Ok((d, blob))
    };
    // The KL budget's line search: the largest `α` (on a grid of 1/256)
    // with the candidate `θ_prev + α (θ − θ_prev)` within the budget,
    // bisecting on the assumption that the divergence grows with `α`
    // (0: not even 1/256 of the update fits, the previous iterate stays).
    let line_search = |prev: &TrainState, st: &mut TrainState| -> Result<f64> {
        let new = st.model.params.clone();
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..8 {
            let a = 0.5 * (lo + hi);
            for ((p, &n), &o) in st.model.params.iter_mut().zip(&new).zip(&prev.model.params) {
                *p = o + a as f32 * (n - o);
            }
            let (kl, _) = gate.divergence(&plant, &judged_blob(st)?)?;
            if kl <= fc.kl_budget {
                lo = a;
            } else {
                hi = a;
            }
        }
        for ((p, &n), &o) in st.model.params.iter_mut().zip(&new).zip(&prev.model.params) {
            *p = o + lo as f32 * (n - o);
        }
        Ok(lo)
    };
    if let Some(dir) = &fc.keep_candidates {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut kept_candidates = Vec::new();
    // The latest iterate the gate accepted: (state, rows, decision).
    let mut best: Option<(TrainState, usize, Decision)> = None;
    for it in 1..=fc.iterations {
        let t0 = std::time::Instant::now();
        // The logged steps, plus fresh on-policy ones when mixing (only
        // then is the dataset copied).
        let mut mixed = None;
        let mut onpolicy_return = f64::NAN;
        let mut onpolicy_samples = 0;
        if fc.mix_onpolicy > 0 {
            let blob = export_blob(&state, &plant, Quant::Int8)?;
            let id = policy_id(&blob)?;
            let sim_cfg = RunConfig {
                episodes: fc.mix_onpolicy,
                seed: rng.next_u64(),
                deterministic: false,
            };
            let (bytes, st) = plant.simulate_blob(&blob, &sim_cfg)?;
            let (fresh_log, _) = with_history(decode_stream(&bytes), &cfg, &plant);
            let v = BTreeMap::from([(id, current)]);
            let b = BTreeMap::from([(id, blob)]);
            let fctx = ImportCtx::of_state(&plant, &state, &v, &b, current, fc);
            let (mut fresh, _) = import_log(&fresh_log, &fctx)?;
            // charts/episodic_return stays the logs' (behaviour) return.
            fresh.episode_returns.clear();
            onpolicy_return = st.mean_return as f64;
            onpolicy_samples = fresh.len();
            state.global_step += st.transitions as u64;
            let mut data = logs_ds.clone();
            data.extend(&fresh);
            mixed = Some(data);
        }
        let data = mixed.as_ref().unwrap_or(&logs_ds);
        let n = data.len();
        if n < 2 {
            bail!("fine-tune iteration {it}: fewer than 2 usable steps");
        }
        let prev = (fc.kl_budget > 0.0).then(|| state.clone());
        let row = update(
            &mut state,
            data,
            fc,
            &coefs,
            (gamma, lambda, lr, epochs, minibatches, target_kl),
            &mut rng,
            &mut ws,
        )
        .with_context(|| format!("fine-tune diverged at iteration {it}"))?;
        let lags: Vec<u32> = logs_ds.lag.iter().flatten().copied().collect();
        let ep = &data.episode_returns;
        let m = FinetuneMetrics {
            update: state.update,
            global_step: state.global_step,
            episodic_return: if ep.is_empty() {
                f64::NAN
            } else {
                ep.iter().sum::<f64>() / ep.len() as f64
            },
            onpolicy_return,
            episodes: ep.len() as u32,
            learning_rate: lr,
            sps: n as f64 * row.epochs as f64 / t0.elapsed().as_secs_f64(),
            iteration: it as u32,
            correction: fc.correction.name(),
            samples: n,
            onpolicy_samples,
            fragments: data.fragments(),
            lag_mean: if lags.is_empty() {
                f64::NAN
            } else {
                lags.iter().map(|&l| l as f64).sum::<f64>() / lags.len() as f64
            },
            lag_hist: report.lag_hist_string(),
            dropped_lag: report.dropped_lag,
            unknown: report.unknown_records(),
            mu_mismatches: report.mismatches,
            mu_max_abs_diff: report.max_abs_diff,
            ..row
        };
        let mut m = m;
        // The whole fine-tune's KL budget from μ: past it, the update is
        // shortened onto the budget and the fine-tune ends.
        let mut spent = false;
        if let Some(prev) = &prev {
            let (kl, _) = gate.divergence(&plant, &judged_blob(&state)?)?;
            if kl > fc.kl_budget {
                spent = true;
                m.step_scale = line_search(prev, &mut state)?;
            }
        }
        let (d, blob) = judge(&state)?;
        m.decision = Some(d);
        progress(Progress::Iteration(&m, fc.iterations));
        if let Some(dir) = &fc.keep_candidates {
            let file = format!("iter-{it:03}.bin");
            write_atomic(&dir.join(&file), &blob)?;
            kept_candidates.push(serde_json::json!({
                "iteration": it,
                "file": file,
                "policy_id": format!("{:08x}", policy_id(&blob)?),
                "step_scale": m.step_scale,
                "decision": d,
            }));
            let record = serde_json::json!({
                "parent": parent_version,
                "note": "int8 blobs of every candidate the gate judged: the iterate's means at the behaviour's σ",
                "candidates": kept_candidates,
            });
            write_atomic(
                &dir.join("candidates.json"),
                serde_json::to_string_pretty(&record)?.as_bytes(),
            )?;
        }
        rows.push(m);
        if d.accepted && d.ess >= fc.min_ess {
            best = Some((state.clone(), rows.len(), d));
        }
        // Later iterates only move farther from the logs' policy.
        if spent || (fc.accept == Accept::Improvement && d.ess < fc.min_ess) {
            break;
        }
    }

    // Nothing is written before the updates succeeded. The index and its
    // blobs live in the output directory from here on.
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if !in_place {
        if let Ok(b) = std::fs::read(ckpt_dir.join("config.toml")) {
            write_atomic(&out.join("config.toml"), &b)?;
        }
    }
    for r in &idx.policies {
        let id = u32::from_str_radix(&r.id, 16).unwrap_or_default();
        if let Some(b) = blobs.get(&id) {
            if !out.join(&r.file).exists() {
                write_atomic(&out.join(&r.file), b)?;
            }
        }
    }
    // What is published: with `--accept always` the last iterate; with the
    // gate, the latest iterate it accepted, or nothing.
    let decision = match (fc.accept, &best) {
        (Accept::Improvement, Some((st, n, d))) => {
            state = st.clone();
            rows.truncate(*n);
            *d
        }
        _ => rows
            .last()
            .and_then(|r| r.decision)
            .unwrap_or_else(judge_none),
    };
    let int8 = export_blob(&state, &plant, Quant::Int8)?;
    let f32b = export_blob(&state, &plant, Quant::F32)?;
    if !decision.accepted {
        // Keep the current version; the candidate goes aside, with its
        // metrics and the decision.
        let id = policy_id(&int8)?;
        let dir = out
            .join("rejected")
            .join(format!("from-v{parent_version}-{id:08x}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&dir.join("policy.bin"), &int8)?;
        write_atomic(&dir.join("policy-f32.bin"), &f32b)?;
        write_atomic(
            &dir.join("metrics.csv"),
            &metrics_with(Path::new(""), &rows)?,
        )?;
        let record = serde_json::json!({
            "parent": parent_version,
            "policy_id": format!("{id:08x}"),
            "decision": decision,
            "reason": decision.reason(),
            "logs": logs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "config": fc,
        });
        write_atomic(
            &dir.join("decision.json"),
            serde_json::to_string_pretty(&record)?.as_bytes(),
        )?;
        return Ok(FinetuneOutcome {
            out_dir: out,
            version: parent_version,
            published: false,
            candidate_dir: Some(dir),
            decision,
            policy_id: id,
            parent_version,
            report,
            rows,
        });
    }
    let ckpt = checkpoint::to_bytes(&state)?;
    let metrics = metrics_with(&ckpt_dir.join("metrics.csv"), &rows)?;
    // The version this publishes (a fine-tune always changes the weights).
    let next = idx.latest_version() + 1;
    let record = serde_json::json!({
        "version": next,
        "parent": parent_version,
        "logs": logs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "config": fc,
        "import": &report,
        "decision": decision,
        "reason": decision.reason(),
    });
    let record = serde_json::to_string_pretty(&record)?;
    let record_file = format!("finetune-v{next}.json");
    let version = crate::publish::publish(
        &out,
        &mut idx,
        &[(&int8, Quant::Int8), (&f32b, Quant::F32)],
        &[
            ("checkpoint.bin", &ckpt),
            ("metrics.csv", &metrics),
            (&record_file, record.as_bytes()),
        ],
        "finetune",
        (state.update, state.global_step),
    )?;
    Ok(FinetuneOutcome {
        out_dir: out,
        version,
        published: true,
        candidate_dir: None,
        decision,
        policy_id: policy_id(&int8)?,
        parent_version,
        report,
        rows,
    })
}

/// The decision when no iteration ran (never: `--iterations ≥ 1`).
fn judge_none() -> Decision {
    Decision {
        accepted: false,
        episodes: 0,
        behaviour_return: f64::NAN,
        estimate: f64::NAN,
        lower: f64::NAN,
        upper: f64::NAN,
        wpdis: f64::NAN,
        confidence: 0.0,
        ess: 0.0,
        min_ess: 0.0,
        test: GateTest::Paired,
        gain: f64::NAN,
        gain_lower: f64::NAN,
        gain_upper: f64::NAN,
        kl_mu: f64::NAN,
    }
}

/// What [`finetune`] reports while it runs.
pub enum Progress<'a> {
    /// The logs were imported.
    Imported(&'a ImportReport),
    /// An iteration finished (its metrics, the number of iterations).
    Iteration(&'a FinetuneMetrics, usize),
}

/// One iteration on `data`: freeze `π_prox` and `V`, weights and
/// advantages, then the epochs. Returns the loss/diagnostic part of the row.
fn update(
    state: &mut TrainState,
    data: &Dataset,
    fc: &FinetuneConfig,
    coefs: &LossCoefs,
    (gamma, lambda, lr, epochs, minibatches, target_kl): (f32, f32, f32, usize, usize, f32),
    rng: &mut impl Rng,
    ws: &mut Workspace,
) -> Result<FinetuneMetrics> {
    let (n, od, ad) = (data.len(), data.obs_dim, data.act_dim);
    let model = &state.model;
    let obs = ArrayView2::from_shape((n, od), &data.obs).expect("rows");
    let next_obs = ArrayView2::from_shape((n, od), &data.next_obs).expect("rows");
    let actions = ArrayView2::from_shape((n, ad), &data.actions).expect("rows");
    let (mut logp_prox, mut values, mut next_values) =
        (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    log_probs_and_values(model, obs, actions, &mut logp_prox, Some(&mut values));
    values_of(model, next_obs, &mut next_values);
    let log_rhos: Vec<f32> = logp_prox
        .iter()
        .zip(&data.logp_mu)
        .map(|(p, m)| p - m)
        .collect();

    let (mut adv, mut targets, mut weights) = (vec![0.0f32; n], vec![0.0f32; n], vec![1.0f32; n]);
    let mut truncated = 0usize;
    let gae_targets = |adv: &mut [f32], targets: &mut [f32]| {
        let inp = GaeInput {
            rewards: &data.rewards,
            values: &values,
            next_values: &next_values,
            terminated: &data.terminated,
            truncated: &data.ends,
            num_envs: 1,
        };
        gae(&inp, gamma, lambda, adv);
        for ((t, a), v) in targets.iter_mut().zip(adv.iter()).zip(&values) {
            *t = a + v;
        }
    };
    let ln_wbar = fc.w_bar.ln();
    let anchor: &[f32] = match fc.correction {
        IsCorrection::None => {
            gae_targets(&mut adv, &mut targets);
            truncated = log_rhos.iter().filter(|&&l| l > ln_wbar).count();
            &data.logp_mu
        }
        IsCorrection::SingleRatio => {
            gae_targets(&mut adv, &mut targets);
            single_ratio_weights(&log_rhos, fc.w_bar, &mut weights);
            truncated = log_rhos.iter().filter(|&&l| l > ln_wbar).count();
            &logp_prox
        }
        IsCorrection::PerDecision => {
            gae_targets(&mut adv, &mut targets);
            per_decision_weights(&log_rhos, &data.ends, fc.w_bar, &mut weights);
            let mut sum = 0.0f64;
            for (&lr, &end) in log_rhos.iter().zip(&data.ends) {
                sum += lr as f64;
                if sum > ln_wbar as f64 {
                    truncated += 1;
                }
                if end {
                    sum = 0.0;
                }
            }
            &logp_prox
        }
        IsCorrection::Vtrace => {
            let inp = TraceInput {
                rewards: &data.rewards,
                values: &values,
                next_values: &next_values,
                terminated: &data.terminated,
                ends: &data.ends,
                log_rhos: &log_rhos,
            };
            vtrace(
                &inp,
                gamma,
                lambda,
                fc.rho_bar,
                fc.c_bar,
                &mut adv,
                &mut targets,
            );
            single_ratio_weights(&log_rhos, fc.w_bar, &mut weights);
            truncated = log_rhos.iter().filter(|&&l| l > ln_wbar).count();
            &logp_prox
        }
    };
    for (name, v) in [
        ("an advantage", &adv),
        ("a value target", &targets),
        ("a weight", &weights),
    ] {
        if let Some(k) = v.iter().position(|x| !x.is_finite()) {
            bail!("{name} is {} (sample {k})", v[k]);
        }
    }
    let anchor = anchor.to_vec();
    let ln_cbar = fc.c_bar.ln();
    let trace_cut = log_rhos.iter().filter(|&&l| l > ln_cbar).count();

    // Explained variance of the targets by V.
    let ev = {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let t: Vec<f64> = targets.iter().map(|&x| x as f64).collect();
        let d: Vec<f64> = targets
            .iter()
            .zip(&values)
            .map(|(&t, &v)| (t - v) as f64)
            .collect();
        let (mt, md) = (mean(&t), mean(&d));
        let vt = t.iter().map(|x| (x - mt).powi(2)).sum::<f64>();
        let vd = d.iter().map(|x| (x - md).powi(2)).sum::<f64>();
        if vt == 0.0 {
            f64::NAN
        } else {
            1.0 - vd / vt
        }
    };

    let mb_count = minibatches.min(n / 2).max(1);
    let mut idx: Vec<usize> = (0..n).collect();
    let mut grad = vec![0.0f32; state.model.params.len()];
    let cap = n.div_ceil(mb_count);
    let (mut mb_obs, mut mb_act) = (vec![0.0f32; cap * od], vec![0.0f32; cap * ad]);
    let mut mb = [
        vec![0.0f32; cap],
        vec![0.0f32; cap],
        vec![0.0f32; cap],
        vec![0.0f32; cap],
        vec![0.0f32; cap],
    ];
    let mut sum = LossStats::default();
    let (mut count, mut gnorm_sum, mut epochs_run) = (0u32, 0.0f32, 0u32);
    'epochs: for _ in 0..epochs {
        epochs_run += 1;
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            idx.swap(i, j);
        }
        let mut epoch_kl = 0.0;
        for k in 0..mb_count {
            let chunk = &idx[k * n / mb_count..(k + 1) * n / mb_count];
            let m = chunk.len();
            for (r, &i) in chunk.iter().enumerate() {
                mb_obs[r * od..(r + 1) * od].copy_from_slice(&data.obs[i * od..(i + 1) * od]);
                mb_act[r * ad..(r + 1) * ad].copy_from_slice(&data.actions[i * ad..(i + 1) * ad]);
                mb[0][r] = anchor[i];
                mb[1][r] = adv[i];
                mb[2][r] = targets[i];
                mb[3][r] = values[i];
                mb[4][r] = weights[i];
            }
            let batch = Minibatch {
                obs: ArrayView2::from_shape((m, od), &mb_obs[..m * od]).expect("rows"),
                actions: ArrayView2::from_shape((m, ad), &mb_act[..m * ad]).expect("rows"),
                logp_old: &mb[0][..m],
                adv: &mb[1][..m],
                returns: &mb[2][..m],
                values_old: &mb[3][..m],
            };
            grad.fill(0.0);
            let st = decoupled_ppo_loss(
                &state.model,
                &batch,
                &mb[4][..m],
                coefs,
                ws,
                Some(&mut grad),
            );
            let gn = guarded_step(
                &st,
                &mut grad,
                &mut state.model.params,
                &mut state.adam,
                state.cfg.max_grad_norm,
                lr,
            )
            .map_err(anyhow::Error::msg)?;
            sum.add(&st);
            gnorm_sum += gn;
            count += 1;
            epoch_kl = st.approx_kl;
        }
        if target_kl > 0.0 && epoch_kl > target_kl {
            break 'epochs;
        }
    }
    state.update += 1;
    let c = count.max(1) as f32;
    Ok(FinetuneMetrics {
        losses: LossStats {
            total: 0.0,
            ..sum.mean(count)
        },
        explained_variance: ev as f32,
        grad_norm: gnorm_sum / c,
        epochs: epochs_run,
        std: state.model.log_std().iter().map(|l| l.exp()).sum::<f32>() / ad as f32,
        ess: ess_fraction_log(&log_rhos),
        ess_weights: ess_fraction(&weights),
        truncated_frac: truncated as f64 / n as f64,
        trace_cut_frac: trace_cut as f64 / n as f64,
        weight_max: weights.iter().copied().fold(0.0, f32::max),
        kl_mu_prox: kl_behaviour_prox(&log_rhos),
        step_scale: 1.0,
        ..FinetuneMetrics::default()
    })
}

/// The log as the run's policy saw it: with `action_history = k > 0`,
/// every observation followed by its last `k` applied actions, rebuilt
/// from the log ([`crate::history::augment`]); and how many records could
/// not be rebuilt (left out).
fn with_history(
    log: crate::logs::DecodedLog,
    cfg: &crate::config::TrainConfig,
    plant: &RegisteredPlant,
) -> (crate::logs::DecodedLog, usize) {
    match cfg.action_history {
        0 => (log, 0),
        k => crate::history::augment(
            log,
            k,
            plant.action_low(),
            plant.action_high(),
            plant.safe_action(),
        ),
    }
}
