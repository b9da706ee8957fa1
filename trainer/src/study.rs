//! The gradient-variance study (`tinyppo study gradient-variance`): at one
//! fixed policy, estimate the policy gradient M times independently with
//! each of the notes' estimators ([`crate::pg`]) and compare their spread.
//!
//! # What is estimated
//!
//! Every row uses [`PgOptions`]`{ gamma, time_discount: true }`, so every
//! *unbiased* row estimates the same vector, the gradient of the expected
//! discounted episode return over the policy parameters `θ = [actor |
//! log σ]`,
//!
//! ```text
//! ∇_θ J = ∇_θ E[Σ_{t<T} γ^t r_t] = E[Σ_t γ^t ∇ log π(a_t|s_t) (Q_t − b_t)]
//! ```
//!
//! (the full return already weighs `r_t` by `γ^t`; the reward-to-go-based
//! weights are multiplied by `γ^t` to match). Without that factor the
//! reward-to-go rows would estimate the usual "discounted" direction
//! `E[Σ_t ∇ log π Σ_{t'≥t} γ^{t'−t} r_t']`, which is not the gradient of any
//! objective the full return estimates, and variances of estimators of
//! different vectors are not comparable.
//!
//! The episode ends at its time limit or termination and the objective is
//! the return of that finite episode: nothing follows the last step, so the
//! value of each episode's final observation is taken as 0 for the n-step
//! and GAE rows too (training bootstraps there instead; doing so here would
//! change the estimated vector by `Σ_t γ^T ∇ log π(a_t|s_t) V(s_T)`). With
//! this, GAE(λ = 1) telescopes to the reward-to-go minus `V(s_t)`: the two
//! rows agree up to float rounding, which the table shows as a check.
//!
//! # Rows
//!
//! [`rows`]: full return; + mean baseline; + optimal baseline (per
//! parameter, `b_k = Σ_i g_ik² R_i / Σ_i g_ik²` on the batch itself);
//! reward-to-go; + mean baseline (per time step); + value baseline; GAE with
//! λ ∈ {0, 0.5, 0.95, 1}.
//!
//! Baselines computed from the batch they are applied to include each
//! episode's own return, so they are not independent of its score:
//! `E[g_i (R_i − R̄)] = (1 − 1/N) ∇J` for the mean baseline, and a
//! parameter-dependent shrinkage for the optimal one, whose `b_k` weighs
//! episode i by `g_ik²`. A shrunk estimator has a smaller variance for that
//! reason alone, so the table adds, as diagnostics, the same baselines
//! computed leaving each episode out ([`Row::LeaveOneOut`], unbiased); the
//! `diff_to_ref` column measures the shrinkage. The notes' optimal baseline
//! is defined by expectations; estimated from the N − 1 other episodes it
//! is noisy, so the full-return baselines are also computed once on the
//! 8·N value-fit episodes ([`Row::Separate`]; fixed during the M batches,
//! hence unbiased).
//!
//! # The value function
//!
//! The checkpoint's critic is not used: PPO trains it on rewards divided by
//! a running return std (`norm_reward`) and with the run's γ (a preset's,
//! e.g. 0.95), so it is neither in reward units nor the value of this
//! study's γ, and a fresh policy has no trained critic at all. Instead a
//! fresh critic (the model's critic architecture, orthogonal init, output
//! bias set to the mean target) is fitted by minibatch Adam on the squared
//! error to Monte-Carlo targets `y_t = Σ_{t'≥t} γ^{t'−t} r_t'`
//! ([`ValueTarget::Mc`]) divided by their standard deviation, from
//! [`ValueFitConfig::fit_episodes`] episodes that none of the M batches
//! reuse; its explained variance `1 − Var(y − V)/Var(y)` is reported on
//! those and on separate held-out episodes. Being fitted on independent
//! data, `V` is a fixed function of the state for the M batches, so the
//! value baseline is unbiased; the GAE rows with λ < 1 are biased wherever
//! `V` is not the true value.
//!
//! # Statistics
//!
//! For each row, with `ĝ_m` its estimate on batch m (the same N episodes
//! for every row: common random numbers, so differences between rows are
//! not sampling noise of the episodes):
//!
//! - total variance `Σ_k (1/(M−1)) Σ_m (ĝ_mk − ḡ_k)²`, the trace of the
//!   sample covariance, with `ḡ = (1/M) Σ_m ĝ_m`;
//! - `‖ḡ‖`; `cos_ref = cos(ḡ, g_ref)`; `cos_batch = (1/M) Σ_m cos(ĝ_m, g_ref)`,
//!   where the reference `g_ref` is `ḡ` of [`REFERENCE`]
//!   (reward-to-go + value baseline: unbiased, and the lowest-variance
//!   unbiased row when `V` fits well);
//! - `diff_to_ref = ‖d̄‖/‖g_ref‖` with `d_m = ĝ_m − ĝ_ref,m`, and its noise
//!   level `diff_to_ref_se = √(tr Cov(d)/M)/‖g_ref‖`. An unbiased row has
//!   `E[d] = 0`, and then `‖d̄‖` is about one noise level (`E‖d̄‖² =
//!   ‖E d‖² + tr Cov(d)/M`), so `diff_to_ref` well above it measures bias.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use rand::Rng;
use serde::Serialize;
use tinyppo_runtime::rng::DefaultRng;

use crate::algo::TrainState;
use crate::checkpoint::{self, write_atomic};
use crate::config;
use crate::env::Env;
use crate::mlp::Cache;
use crate::model::ActorCritic;
use crate::normalize::RunningMeanStd;
use crate::optim::Adam;
use crate::pg::{
    collect_episodes, episode_score_grads, logp_grad, optimal_baseline, policy_gradient,
    value_targets, weights, Baseline, BatchValues, EpisodeBatch, Estimator, ObsNorm, PgOptions,
    ReturnKind, ValueTarget,
};
use crate::registry::RegisteredPlant;
use crate::report;
use crate::stats::{explained_variance, mean_std};

/// The reference row: its mean gradient is `g_ref`.
pub const REFERENCE: Estimator = Estimator::Reinforce(ReturnKind::RewardToGo, Baseline::Value);

/// A row of the table: one of [`crate::pg`]'s estimators, or, as a
/// diagnostic, a batch baseline computed leaving each episode out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Row {
    /// [`policy_gradient`] with this estimator.
    Pg(Estimator),
    /// The return and baseline of [`Estimator::Reinforce`], but episode
    /// i's baseline comes from the other N − 1 episodes of the batch, so it
    /// is independent of episode i and the estimate is unbiased (the
    /// same-batch baselines shrink it; see the module docs). For the
    /// full-return mean this is exactly `N/(N−1)` times the same-batch row.
    /// Full return with the mean or optimal baseline, reward-to-go with the
    /// mean baseline.
    LeaveOneOut(ReturnKind, Baseline),
    /// The full return with the mean or optimal baseline estimated once,
    /// on the value-fit episodes ([`FixedBaselines`]): unbiased, and with
    /// 8·N instead of N − 1 episodes behind each baseline.
    Separate(Baseline),
}

impl Row {
    /// Short name for tables and plots.
    pub fn label(&self) -> String {
        match self {
            Row::Pg(e) => e.label(),
            Row::LeaveOneOut(r, b) => {
                format!("{}, leave-one-out", Estimator::Reinforce(*r, *b).label())
            }
            Row::Separate(b) => format!(
                "{}, from separate episodes",
                Estimator::Reinforce(ReturnKind::Full, *b).label()
            ),
        }
    }

    /// The estimate on `batch` (see [`policy_gradient`]).
    ///
    /// # Panics
    /// For a [`Row::Separate`] baseline other than the mean or optimal one.
    pub fn gradient(
        &self,
        model: &ActorCritic,
        batch: &EpisodeBatch,
        values: &BatchValues,
        fixed: &FixedBaselines,
        opts: &PgOptions,
    ) -> Vec<f32> {
        match *self {
            Row::Pg(e) => policy_gradient(model, batch, e, Some(values), opts),
            Row::LeaveOneOut(r, b) => leave_one_out_gradient(model, batch, r, b, opts),
            Row::Separate(b) => {
                let p = model.critic_range().start;
                let per_param = match b {
                    Baseline::Mean => vec![fixed.mean; p],
                    Baseline::Optimal => fixed.optimal.clone(),
                    other => panic!("no separate-episodes variant of {other:?}"),
                };
                fixed_baseline_gradient(model, batch, &per_param, opts)
            }
        }
    }
}

/// The full-return baselines of [`Row::Separate`], estimated on episodes
/// of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedBaselines {
    /// Mean discounted return.
    pub mean: f32,
    /// The per-parameter optimal baseline ([`optimal_baseline`]).
    pub optimal: Vec<f32>,
}

impl FixedBaselines {
    /// The baselines of `batch`'s episodes.
    pub fn of(model: &ActorCritic, batch: &EpisodeBatch, gamma: f32) -> Self {
        let score = episode_score_grads(model, batch);
        let rets = batch.returns(gamma);
        let mean = rets.iter().map(|&r| r as f64).sum::<f64>() / rets.len().max(1) as f64;
        FixedBaselines {
            mean: mean as f32,
            optimal: optimal_baseline(&score, &rets),
        }
    }
}

/// `ĝ_k = (1/N) Σ_i g_ik (R_i − b_k)` with a given per-parameter baseline.
pub fn fixed_baseline_gradient(
    model: &ActorCritic,
    batch: &EpisodeBatch,
    b: &[f32],
    opts: &PgOptions,
) -> Vec<f32> {
    let score = episode_score_grads(model, batch);
    let rets = batch.returns(opts.gamma);
    let mut acc = vec![0.0f64; b.len()];
    for (s, &r) in score.iter().zip(&rets) {
        for ((a, &g), &b) in acc.iter_mut().zip(s).zip(b) {
            *a += g as f64 * (r - b) as f64;
        }
    }
    let n = batch.episodes().max(1) as f64;
    acc.iter().map(|a| (a / n) as f32).collect()
}

/// The rows of the study, in table order: the issue's nine estimators
/// with GAE(1) as a check, and next to the same-batch baselines the
/// diagnostics: leave-one-out, and (full return) baselines estimated on
/// separate episodes.
pub fn rows() -> Vec<Row> {
    use Baseline::*;
    use ReturnKind::*;
    vec![
        Row::Pg(Estimator::Reinforce(Full, None)),
        Row::Pg(Estimator::Reinforce(Full, Mean)),
        Row::LeaveOneOut(Full, Mean),
        Row::Separate(Mean),
        Row::Pg(Estimator::Reinforce(Full, Optimal)),
        Row::LeaveOneOut(Full, Optimal),
        Row::Separate(Optimal),
        Row::Pg(Estimator::Reinforce(RewardToGo, None)),
        Row::Pg(Estimator::Reinforce(RewardToGo, Mean)),
        Row::LeaveOneOut(RewardToGo, Mean),
        Row::Pg(REFERENCE),
        Row::Pg(Estimator::Gae(0.0)),
        Row::Pg(Estimator::Gae(0.5)),
        Row::Pg(Estimator::Gae(0.95)),
        Row::Pg(Estimator::Gae(1.0)),
    ]
}

/// [`Row::LeaveOneOut`]: `ĝ = (1/N) Σ_i Σ_t ∇ log π(a_it|s_it) (ψ_it − b_it)`
/// with `b` from the other episodes: for the full return
/// `b_i = (Σ_j R_j − R_i)/(N − 1)`, or per parameter
/// `b_ik = (Σ_j g_jk² R_j − g_ik² R_i)/(Σ_j g_jk² − g_ik²)`; for the
/// reward-to-go the mean over the other episodes that reach step t. A
/// baseline with no other episode to average is 0.
///
/// # Panics
/// For other combinations than those of [`rows`].
pub fn leave_one_out_gradient(
    model: &ActorCritic,
    batch: &EpisodeBatch,
    kind: ReturnKind,
    baseline: Baseline,
    opts: &PgOptions,
) -> Vec<f32> {
    let n = batch.episodes();
    let p = model.critic_range().start;
    let mut g = vec![0.0f32; p];
    match (kind, baseline) {
        (ReturnKind::Full, Baseline::Mean | Baseline::Optimal) => {
            let score = episode_score_grads(model, batch);
            let rets: Vec<f64> = batch
                .returns(opts.gamma)
                .iter()
                .map(|&r| r as f64)
                .collect();
            let (mut num, mut den) = (vec![0.0f64; p], vec![0.0f64; p]);
            for (s, &r) in score.iter().zip(&rets) {
                for k in 0..p {
                    let g2 = (s[k] as f64).powi(2);
                    num[k] += g2 * r;
                    den[k] += g2;
                }
            }
            let total: f64 = rets.iter().sum();
            let mut acc = vec![0.0f64; p];
            for (s, &r) in score.iter().zip(&rets) {
                for k in 0..p {
                    let b = if baseline == Baseline::Mean {
                        if n > 1 {
                            (total - r) / (n - 1) as f64
                        } else {
                            0.0
                        }
                    } else {
                        let g2 = (s[k] as f64).powi(2);
                        let d = den[k] - g2;
                        // Relative guard: d is a difference of sums.
                        if d > 1e-12 * den[k] {
                            (num[k] - g2 * r) / d
                        } else {
                            0.0
                        }
                    };
                    acc[k] += s[k] as f64 * (r - b);
                }
            }
            for (g, a) in g.iter_mut().zip(&acc) {
                *g = (a / n.max(1) as f64) as f32;
            }
        }
        (ReturnKind::RewardToGo, Baseline::Mean) => {
            let est = Estimator::Reinforce(ReturnKind::RewardToGo, Baseline::None);
            let mut psi = weights(batch, est, None, opts);
            let longest = (0..n).map(|i| batch.range(i).len()).max().unwrap_or(0);
            let (mut sum, mut cnt) = (vec![0.0f64; longest], vec![0u32; longest]);
            for i in 0..n {
                for (k, t) in batch.range(i).enumerate() {
                    sum[k] += psi[t] as f64;
                    cnt[k] += 1;
                }
            }
            for i in 0..n {
                for (k, t) in batch.range(i).enumerate() {
                    if cnt[k] > 1 {
                        let b = (sum[k] - psi[t] as f64) / (cnt[k] - 1) as f64;
                        psi[t] -= b as f32;
                    }
                }
            }
            let mut cache = Cache::default();
            logp_grad(model, &batch.obs, &batch.actions, &psi, &mut cache, &mut g);
            let nf = n.max(1) as f32;
            g.iter_mut().for_each(|x| *x /= nf);
        }
        other => panic!("no leave-one-out variant of {other:?}"),
    }
    g
}

/// The policy under study and how it sees observations.
#[derive(Debug, Clone)]
pub struct StudyPolicy {
    /// The plant.
    pub plant: RegisteredPlant,
    /// Actor, log-std and (unused, see the module docs) critic.
    pub model: ActorCritic,
    /// Observation statistics, frozen during the study.
    pub obs_rms: RunningMeanStd,
    /// Normalization as the policy was trained with, never updated here.
    pub norm: ObsNorm,
    /// Where the policy comes from, for the report.
    pub source: String,
}

impl StudyPolicy {
    /// The initial policy of `tinyppo train --env ENV --seed S`: the
    /// plant's preset architecture drawn from `rng` (pass
    /// `seeded(S)`, as the trainer does), identity observation statistics.
    pub fn fresh(plant: &RegisteredPlant, seed: u64, rng: &mut DefaultRng) -> Result<Self> {
        let cfg = config::resolve(plant, None, &[format!("seed={seed}")])?;
        let model = ActorCritic::new(
            plant.obs_dim(),
            plant.act_dim(),
            &cfg.actor_hidden,
            &cfg.critic_hidden,
            cfg.activation,
            cfg.init_log_std,
            rng,
        );
        Ok(StudyPolicy {
            plant: plant.clone(),
            obs_rms: RunningMeanStd::new(plant.obs_dim()),
            norm: ObsNorm {
                enabled: cfg.norm_obs,
                clip: cfg.obs_clip,
                update: false,
            },
            model,
            source: format!("fresh policy (preset architecture, seed {seed})"),
        })
    }

    /// The policy of a checkpointed run on `plant` (its actor, log-std and
    /// frozen observation statistics); `origin` names it in the report.
    pub fn from_state(state: &TrainState, plant: &RegisteredPlant, origin: &str) -> Self {
        StudyPolicy {
            plant: plant.clone(),
            model: state.model.clone(),
            obs_rms: state.obs_rms.clone(),
            norm: ObsNorm {
                enabled: state.cfg.norm_obs,
                clip: state.cfg.obs_clip,
                update: false,
            },
            source: format!(
                "{origin} (update {}, {} env steps)",
                state.update, state.global_step
            ),
        }
    }

    /// Loads `dir/checkpoint.bin` and checks that it is a policy for `plant`.
    pub fn load(dir: &Path, plant: &RegisteredPlant) -> Result<Self> {
        let state = checkpoint::load(dir)?;
        let path = dir.join("checkpoint.bin");
        let env = plant.name();
        if state.cfg.env != env {
            bail!(
                "--env {env} does not match {}, a checkpoint of env {}",
                path.display(),
                state.cfg.env
            );
        }
        if state.model.obs_dim() != plant.obs_dim() || state.model.act_dim() != plant.act_dim() {
            bail!(
                "{}: model dims {}→{} do not match plant {env} ({}→{})",
                path.display(),
                state.model.obs_dim(),
                state.model.act_dim(),
                plant.obs_dim(),
                plant.act_dim()
            );
        }
        Ok(Self::from_state(&state, plant, &path.display().to_string()))
    }
}

/// How the value function is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ValueFitConfig {
    /// Episodes the critic is fitted on (none is reused by the batches).
    pub fit_episodes: usize,
    /// Further episodes for the held-out explained variance.
    pub held_out_episodes: usize,
    /// Passes over the fitting data.
    pub epochs: usize,
    /// Steps per Adam minibatch.
    pub minibatch_size: usize,
    /// Adam learning rate (constant).
    pub learning_rate: f32,
}

impl ValueFitConfig {
    /// The defaults for batches of `n` episodes: 8·n fitting and 2·n
    /// held-out episodes, 100 epochs of minibatches of 256 at 1e-3.
    pub fn for_batch(n: usize) -> Self {
        ValueFitConfig {
            fit_episodes: 8 * n,
            held_out_episodes: 2 * n,
            epochs: 100,
            minibatch_size: 256,
            learning_rate: 1e-3,
        }
    }
}

/// Settings of one study.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyConfig {
    /// Independent batches M.
    pub batches: usize,
    /// Episodes per batch N.
    pub episodes_per_batch: usize,
    /// Discount γ of every estimator and of the value targets.
    pub gamma: f32,
    /// The seed the random stream was created from (for the report).
    pub seed: u64,
    /// Value-function fit.
    pub value_fit: ValueFitConfig,
}

impl StudyConfig {
    /// Checks ranges; errors name the command-line flag.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.batches >= 2,
            "--batches must be at least 2 (the sample variance divides by M − 1), got {}",
            self.batches
        );
        ensure!(
            self.episodes_per_batch >= 1,
            "--episodes-per-batch must be at least 1, got {}",
            self.episodes_per_batch
        );
        ensure!(
            (0.0..=1.0).contains(&self.gamma),
            "--gamma must be in [0, 1], got {}",
            self.gamma
        );
        let v = &self.value_fit;
        ensure!(
            v.fit_episodes >= 1 && v.held_out_episodes >= 1,
            "the value fit needs at least one fitting and one held-out episode"
        );
        ensure!(
            v.epochs >= 1,
            "--value-epochs must be at least 1, got {}",
            v.epochs
        );
        ensure!(
            v.minibatch_size >= 1,
            "value-fit minibatch size must be ≥ 1"
        );
        ensure!(
            v.learning_rate.is_finite() && v.learning_rate > 0.0,
            "value-fit learning rate must be a positive number, got {}",
            v.learning_rate
        );
        Ok(())
    }
}

/// What the value fit achieved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ValueFitReport {
    /// Episodes fitted on.
    pub fit_episodes: usize,
    /// Steps fitted on.
    pub fit_steps: usize,
    /// Held-out episodes.
    pub held_out_episodes: usize,
    /// Held-out steps.
    pub held_out_steps: usize,
    /// Epochs run.
    pub epochs: usize,
    /// The targets were divided by this (their std); `V = scale · critic(x)`.
    pub target_scale: f32,
    /// `1 − Var(y − V)/Var(y)` on the fitting episodes.
    pub explained_variance_fit: f64,
    /// The same on the held-out episodes.
    pub explained_variance_held_out: f64,
    /// For comparison, the explained variance on the held-out episodes of
    /// a baseline that sees only the time step: the mean target at step t
    /// of the fitting episodes. Where it beats `V(s)`, the targets depend
    /// on the time left before the time limit, which `V(s)` cannot see.
    pub explained_variance_time_only_held_out: f64,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimatorRow {
    /// [`Row::label`].
    pub estimator: String,
    /// `tr Cov[ĝ]` over the M batches (divided by M − 1).
    pub total_variance: f64,
    /// `total_variance` over that of the full-return row.
    pub variance_vs_full_return: f64,
    /// `‖ḡ‖`.
    pub mean_grad_norm: f64,
    /// `cos(ḡ, g_ref)`.
    pub cos_ref: f64,
    /// Mean over batches of `cos(ĝ_m, g_ref)`.
    pub cos_batch: f64,
    /// `‖mean_m(ĝ_m − ĝ_ref,m)‖ / ‖g_ref‖`.
    pub diff_to_ref: f64,
    /// `√(tr Cov(ĝ − ĝ_ref)/M) / ‖g_ref‖`: the noise level of `diff_to_ref`.
    pub diff_to_ref_se: f64,
    /// `ḡ` itself (not written to the CSV or JSON).
    #[serde(skip)]
    pub mean_gradient: Vec<f64>,
}

/// The outcome of [`gradient_variance`].
#[derive(Debug, Clone, Serialize)]
pub struct StudyResult {
    /// Plant.
    pub env: String,
    /// Where the policy comes from.
    pub policy: String,
    /// Batches M.
    pub batches: usize,
    /// Episodes per batch N.
    pub episodes_per_batch: usize,
    /// γ.
    pub gamma: f32,
    /// Seed of the random stream.
    pub seed: u64,
    /// Policy parameters (gradient dimension).
    pub parameters: usize,
    /// Mean undiscounted return of the M·N episodes.
    pub mean_return: f64,
    /// Mean episode length of the M·N episodes.
    pub mean_length: f64,
    /// The value fit.
    pub value_fit: ValueFitReport,
    /// Label of the reference row.
    pub reference: String,
    /// The rows, in [`rows`] order.
    pub rows: Vec<EstimatorRow>,
}

/// Progress of a study, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// A value-fit epoch finished: `(done, total)`.
    ValueEpoch(usize, usize),
    /// A batch finished: `(done, total)`.
    Batch(usize, usize),
}

/// Runs the study on `policy`; every random choice (critic init, episodes,
/// minibatch order) comes from `rng`, in a fixed order, so the same stream
/// gives the same result.
pub fn gradient_variance(
    policy: &StudyPolicy,
    cfg: &StudyConfig,
    rng: &mut DefaultRng,
    progress: &mut dyn FnMut(Progress),
) -> Result<StudyResult> {
    cfg.validate()?;
    let plant = &policy.plant;
    let n = cfg.episodes_per_batch;
    let mut obs_rms = policy.obs_rms.clone();
    let mut collect = |count: usize, rng: &mut DefaultRng| -> Result<EpisodeBatch> {
        let mut envs: Vec<Box<dyn Env>> = (0..count).map(|_| plant.make_env()).collect();
        Ok(collect_episodes(
            &policy.model,
            &mut envs,
            &mut obs_rms,
            policy.norm,
            rng,
        ))
    };

    // The value function, on episodes of its own.
    let mut vmodel = policy.model.clone();
    let vc = &cfg.value_fit;
    let fit = collect(vc.fit_episodes, rng)?;
    let held = collect(vc.held_out_episodes, rng)?;
    let value_fit = fit_value(&mut vmodel, &fit, &held, vc, cfg.gamma, rng, progress)?;
    let scale = value_fit.target_scale;
    let fixed = FixedBaselines::of(&policy.model, &fit, cfg.gamma);

    // M batches; every row on the same episodes.
    let rows = rows();
    let opts = PgOptions {
        gamma: cfg.gamma,
        time_discount: true,
    };
    let ref_idx = rows
        .iter()
        .position(|e| *e == Row::Pg(REFERENCE))
        .expect("the reference is a row");
    let p = policy.model.critic_range().start;
    // Per row: the estimates, and their differences to the reference row's
    // estimate on the same batch. Streaming, so M costs no memory.
    let mut acc: Vec<GradAccumulator> = rows.iter().map(|_| GradAccumulator::new(p)).collect();
    let mut diff_acc = acc.clone();
    let (mut ret_sum, mut len_sum) = (0.0f64, 0usize);
    let mut diff = vec![0.0f32; p];
    for m in 0..cfg.batches {
        let batch = collect(n, rng)?;
        ret_sum += batch.undiscounted_returns().iter().sum::<f64>();
        len_sum += batch.steps();
        let mut values = BatchValues::of(&vmodel, &batch, scale);
        // Finite-horizon objective: nothing after the last step.
        values.final_values.fill(0.0);
        let mut gs = Vec::with_capacity(rows.len());
        for est in &rows {
            let g = est.gradient(&policy.model, &batch, &values, &fixed, &opts);
            if let Some(k) = g.iter().position(|x| !x.is_finite()) {
                bail!(
                    "{}: gradient component {k} is {} in batch {}",
                    est.label(),
                    g[k],
                    m + 1
                );
            }
            gs.push(g);
        }
        for ((g, a), d) in gs.iter().zip(&mut acc).zip(&mut diff_acc) {
            a.push(g);
            diff.iter_mut()
                .zip(g.iter().zip(&gs[ref_idx]))
                .for_each(|(d, (x, r))| *d = x - r);
            d.push(&diff);
        }
        progress(Progress::Batch(m + 1, cfg.batches));
    }

    let g_ref = acc[ref_idx].mean().to_vec();
    let full_var = acc[0].total_variance();
    let ref_norm = norm(&g_ref);
    let table = rows
        .iter()
        .zip(&acc)
        .zip(&diff_acc)
        .map(|((est, a), d)| {
            let s = a.stats(&g_ref);
            EstimatorRow {
                estimator: est.label(),
                total_variance: s.total_variance,
                variance_vs_full_return: s.total_variance / full_var,
                mean_grad_norm: norm(&s.mean),
                cos_ref: s.cos_ref,
                cos_batch: s.cos_batch,
                diff_to_ref: norm(d.mean()) / ref_norm,
                diff_to_ref_se: (d.total_variance() / cfg.batches as f64).sqrt() / ref_norm,
                mean_gradient: s.mean,
            }
        })
        .collect();
    let episodes = (cfg.batches * n) as f64;
    Ok(StudyResult {
        env: plant.name().to_string(),
        policy: policy.source.clone(),
        batches: cfg.batches,
        episodes_per_batch: n,
        gamma: cfg.gamma,
        seed: cfg.seed,
        parameters: policy.model.critic_range().start,
        mean_return: ret_sum / episodes,
        mean_length: len_sum as f64 / episodes,
        value_fit,
        reference: REFERENCE.label(),
        rows: table,
    })
}

/// Fits `model`'s critic (re-initialized from `rng`) to the scaled
/// Monte-Carlo targets of `fit`; see the module docs.
fn fit_value(
    model: &mut ActorCritic,
    fit: &EpisodeBatch,
    held: &EpisodeBatch,
    vc: &ValueFitConfig,
    gamma: f32,
    rng: &mut DefaultRng,
    progress: &mut dyn FnMut(Progress),
) -> Result<ValueFitReport> {
    let y = value_targets(fit, ValueTarget::Mc, None, gamma);
    let (mean, std) = mean_std(&y);
    let scale = if std.is_finite() && std > 1e-6 {
        std as f32
    } else {
        1.0
    };
    let ys: Vec<f32> = y.iter().map(|&v| v / scale).collect();
    let critic = model.critic.clone();
    let cr = model.critic_range();
    critic.init_orthogonal(
        &mut model.params[cr.clone()],
        std::f32::consts::SQRT_2,
        1.0,
        rng,
    );
    // Start from the mean target: the fit then only learns the variation.
    let (_, ob, _, _) = critic.layer_offsets(critic.n_layers() - 1);
    model.params[cr.start + ob] = (mean / scale as f64) as f32;

    let od = fit.obs_dim;
    let steps = fit.steps();
    let mbs = vc.minibatch_size.min(steps).max(1);
    let mut adam = Adam::new(cr.len(), 1e-5);
    let mut grad = vec![0.0f32; cr.len()];
    let mut idx: Vec<usize> = (0..steps).collect();
    let (mut x, mut t, mut dv) = (Vec::new(), Vec::new(), Vec::new());
    let mut cache = Cache::default();
    for epoch in 0..vc.epochs {
        for i in (1..steps).rev() {
            let j = rng.random_range(0..=i);
            idx.swap(i, j);
        }
        for chunk in idx.chunks(mbs) {
            x.clear();
            t.clear();
            for &i in chunk {
                x.extend_from_slice(&fit.obs[i * od..(i + 1) * od]);
                t.push(ys[i]);
            }
            let b = chunk.len();
            let xv = ndarray::ArrayView2::from_shape((b, od), &x).expect("rows");
            let v = critic.forward(&model.params[cr.clone()], xv, &mut cache);
            // L = ½ mean (V − y)², ∂L/∂V = (V − y)/B.
            dv.clear();
            dv.extend(
                v.column(0)
                    .iter()
                    .zip(&t)
                    .map(|(&v, &y)| (v - y) / b as f32),
            );
            let dvv = ndarray::ArrayView2::from_shape((b, 1), &dv).expect("rows");
            grad.fill(0.0);
            critic.backward(&model.params[cr.clone()], &mut cache, dvv, &mut grad);
            adam.step(&mut model.params[cr.clone()], &grad, vc.learning_rate);
        }
        if let Some(k) = model.params[cr.clone()].iter().position(|p| !p.is_finite()) {
            bail!(
                "value fit diverged in epoch {}: critic weight {k} is not finite",
                epoch + 1
            );
        }
        progress(Progress::ValueEpoch(epoch + 1, vc.epochs));
    }
    let ev = |batch: &EpisodeBatch| {
        let y = value_targets(batch, ValueTarget::Mc, None, gamma);
        let v = BatchValues::of(model, batch, scale).values;
        explained_variance(&y, &v)
    };
    // b_t: mean target at step t over the fitting episodes that reach it.
    let (mut sum, mut cnt) = (Vec::<f64>::new(), Vec::<u32>::new());
    for i in 0..fit.episodes() {
        for (k, t) in fit.range(i).enumerate() {
            if k == sum.len() {
                sum.push(0.0);
                cnt.push(0);
            }
            sum[k] += y[t] as f64;
            cnt[k] += 1;
        }
    }
    let b: Vec<f32> = sum
        .iter()
        .zip(&cnt)
        .map(|(s, &c)| (s / c as f64) as f32)
        .collect();
    let y_held = value_targets(held, ValueTarget::Mc, None, gamma);
    let mut b_held = vec![0.0f32; held.steps()];
    for i in 0..held.episodes() {
        for (k, t) in held.range(i).enumerate() {
            // Past the longest fitting episode: its last step's mean.
            b_held[t] = b[k.min(b.len() - 1)];
        }
    }
    Ok(ValueFitReport {
        fit_episodes: fit.episodes(),
        fit_steps: steps,
        held_out_episodes: held.episodes(),
        held_out_steps: held.steps(),
        epochs: vc.epochs,
        target_scale: scale,
        explained_variance_fit: ev(fit),
        explained_variance_held_out: ev(held),
        explained_variance_time_only_held_out: explained_variance(&y_held, &b_held),
    })
}

/// `v` with three significant digits: `0.0506`, `1.00`, `1.74e-4`.
pub fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let mag = v.abs().log10().floor() as i32;
    if mag >= -3 {
        format!("{:.*}", (2 - mag).max(0) as usize, v)
    } else {
        format!("{v:.2e}")
    }
}

/// Running statistics of M vectors of one length P in O(P) memory:
/// Welford's update per component (f64), and the sum of the unit vectors
/// for the mean cosine.
#[derive(Debug, Clone)]
pub struct GradAccumulator {
    count: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
    unit_sum: Vec<f64>,
}

impl GradAccumulator {
    /// Empty, for vectors of length `p`.
    pub fn new(p: usize) -> Self {
        GradAccumulator {
            count: 0,
            mean: vec![0.0; p],
            m2: vec![0.0; p],
            unit_sum: vec![0.0; p],
        }
    }

    /// Adds one vector (of length P).
    pub fn push(&mut self, x: &[f32]) {
        assert_eq!(x.len(), self.mean.len(), "vector length");
        self.count += 1;
        let n = self.count as f64;
        let len = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        for (k, &v) in x.iter().enumerate() {
            let v = v as f64;
            let d = v - self.mean[k];
            self.mean[k] += d / n;
            self.m2[k] += d * (v - self.mean[k]);
            if len > 0.0 {
                self.unit_sum[k] += v / len;
            }
        }
    }

    /// Vectors added, M.
    pub fn count(&self) -> usize {
        self.count
    }

    /// `x̄`, component-wise.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Trace of the sample covariance, `Σ_k (1/(M−1)) Σ_m (x_mk − x̄_k)²`
    /// (NaN for M < 2).
    pub fn total_variance(&self) -> f64 {
        if self.count < 2 {
            return f64::NAN;
        }
        self.m2.iter().sum::<f64>() / (self.count - 1) as f64
    }

    /// The statistics against `reference`: since the cosine is linear in
    /// the unit vector, `(1/M) Σ_m cos(x_m, r) = ((1/M) Σ_m x_m/‖x_m‖)·r/‖r‖`
    /// (a zero vector counts as cosine 0).
    pub fn stats(&self, reference: &[f64]) -> GradStats {
        let unit_dot: f64 = self
            .unit_sum
            .iter()
            .zip(reference)
            .map(|(u, r)| u * r)
            .sum();
        GradStats {
            mean: self.mean.clone(),
            total_variance: self.total_variance(),
            cos_ref: cosine(&self.mean, reference),
            cos_batch: unit_dot / (self.count as f64 * norm(reference)),
        }
    }
}

/// Component-wise mean of equally long vectors.
pub fn mean_vector(samples: &[Vec<f32>]) -> Vec<f64> {
    GradStats::of(samples, &[]).mean
}

/// Trace of the sample covariance of `samples` (see
/// [`GradAccumulator::total_variance`]).
pub fn total_variance(samples: &[Vec<f32>]) -> f64 {
    GradStats::of(samples, &[]).total_variance
}

/// Euclidean norm.
pub fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `a·b / (‖a‖‖b‖)` (NaN if either is 0).
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (norm(a) * norm(b))
}

/// Statistics of M gradient estimates against a reference direction.
#[derive(Debug, Clone, PartialEq)]
pub struct GradStats {
    /// `ḡ`.
    pub mean: Vec<f64>,
    /// [`GradAccumulator::total_variance`].
    pub total_variance: f64,
    /// `cos(ḡ, reference)`.
    pub cos_ref: f64,
    /// Mean over samples of `cos(ĝ_m, reference)`.
    pub cos_batch: f64,
}

impl GradStats {
    /// The statistics of `samples` (M vectors of one length) against
    /// `reference` (cosines are NaN for an empty or zero reference), by
    /// the [`GradAccumulator`] the study uses.
    pub fn of(samples: &[Vec<f32>], reference: &[f64]) -> Self {
        let mut acc = GradAccumulator::new(samples.first().map_or(0, Vec::len));
        for s in samples {
            acc.push(s);
        }
        acc.stats(reference)
    }
}

impl StudyResult {
    /// The header lines and the markdown table.
    pub fn markdown(&self) -> String {
        let v = &self.value_fit;
        let mut s = format!(
            "gradient variance on {}: {}\n\
             M = {} batches × N = {} episodes, γ = {}, seed {}, {} policy parameters; \
             policy mean return {:.1} (undiscounted), mean episode length {:.1}\n\
             value baseline: fresh critic fitted to Monte-Carlo targets on {} episodes \
             ({} steps, {} epochs); explained variance {:.3} on them, {:.3} on {} held-out episodes \
             (a baseline of the time step only: {:.3})\n\
             reference g_ref: mean over the M batches of \"{}\"\n\n",
            self.env,
            self.policy,
            self.batches,
            self.episodes_per_batch,
            self.gamma,
            self.seed,
            self.parameters,
            self.mean_return,
            self.mean_length,
            v.fit_episodes,
            v.fit_steps,
            v.epochs,
            v.explained_variance_fit,
            v.explained_variance_held_out,
            v.held_out_episodes,
            v.explained_variance_time_only_held_out,
            self.reference,
        );
        s.push_str(
            "| estimator | total variance | vs full return | ‖mean ĝ‖ | cos_ref | cos_batch | ‖mean(ĝ − ĝ_ref)‖/‖g_ref‖ |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {:.3e} | {} | {:.3e} | {:.3} | {:.3} | {:.3} ± {:.3} |\n",
                r.estimator,
                r.total_variance,
                sig3(r.variance_vs_full_return),
                r.mean_grad_norm,
                r.cos_ref,
                r.cos_batch,
                r.diff_to_ref,
                r.diff_to_ref_se
            ));
        }
        s
    }

    /// Writes `gradient-variance.csv` and `gradient-variance.png` into
    /// `dir` (created if missing), atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut w = csv::Writer::from_writer(Vec::new());
        for r in &self.rows {
            w.serialize(r)
                .context("serializing a gradient-variance row")?;
        }
        let bytes = w.into_inner().context("flushing gradient-variance.csv")?;
        write_atomic(&dir.join("gradient-variance.csv"), &bytes)?;
        // Colour by family: full return, reward-to-go, GAE.
        let bars: Vec<report::Bar> = self
            .rows
            .iter()
            .map(|r| report::Bar {
                label: r.estimator.clone(),
                value: r.total_variance,
                group: if r.estimator.starts_with("full") {
                    0
                } else if r.estimator.starts_with("reward") {
                    1
                } else {
                    2
                },
            })
            .collect();
        report::log_bar_chart(
            &dir.join("gradient-variance.png"),
            &format!(
                "policy-gradient variance on {}, {}: M = {}, N = {}, γ = {}",
                self.env, self.policy, self.batches, self.episodes_per_batch, self.gamma
            ),
            "total variance tr Cov[ĝ] (log scale)",
            &bars,
        )
    }
}
