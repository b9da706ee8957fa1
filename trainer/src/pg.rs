//! The notes' policy-gradient estimators, from REINFORCE to GAE.
//!
//! Every estimator here has the form (notes, "Evaluating the policy gradient")
//!
//! ```text
//! ĝ = (1/N) Σ_i Σ_t ψ_it ∇_θ log π_θ(a_it | s_it)
//! ```
//!
//! over a batch of N episodes and differs only in the per-step weight ψ:
//!
//! | estimator | ψ_it |
//! |---|---|
//! | full return | `r(τ_i) = Σ_t γ^t r_it` |
//! | reward-to-go (causality) | `Σ_{t'≥t} γ^{t'−t} r_it'` |
//! | + mean baseline | minus `b = (1/N) Σ_i r(τ_i)` (full return) or `b_t = (1/N) Σ_i rtg_it` ("average reward-to-go") |
//! | + value baseline | reward-to-go minus `V_φ(s_it)` |
//! | n-step | `Σ_{t'=t}^{t+n−1} γ^{t'−t} r_t' + γ^n V(s_{t+n}) − V(s_t)` |
//! | GAE(λ) | `Σ_k (γλ)^k δ_{t+k}` |
//!
//! and the variance-minimizing constant baseline of the notes,
//! `b_k = E[g_k(τ)² r(τ)] / E[g_k(τ)²]` with `g(τ) = ∇ log p_θ(τ) =
//! Σ_t ∇ log π_θ(a_t|s_t)`, one per parameter k, which is not a per-step
//! weight: `ĝ_k = (1/N) Σ_i g_ik (r(τ_i) − b_k)` ([`optimal_baseline`]).
//!
//! The building block is [`logp_grad`], `∇_θ Σ_t w_t log π_θ(a_t|s_t)` by
//! one backward pass through the actor, and [`EpisodeBatch`], N complete
//! episodes collected by [`collect_episodes`].
//!
//! Conventions: `γ = 1` gives the notes' undiscounted finite-horizon
//! estimators exactly. With `γ < 1` the weights above are the usual
//! discounted ones (the GAE paper's `g^γ`); [`PgOptions::time_discount`]
//! multiplies the reward-to-go-based ψ_it by `γ^t` so that every unbiased
//! row estimates the same quantity as the full return, `∇ E[Σ_t γ^t r_t]`
//! (used by the gradient-variance study; training uses the usual weights).

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use tinyppo_runtime::gaussian::standard_normals;
use tinyppo_runtime::rng::DefaultRng;

use crate::env::Env;
use crate::gae::{gae, GaeInput};
use crate::mlp::Cache;
use crate::model::ActorCritic;
use crate::normalize::{normalize_obs, RunningMeanStd};

/// N complete episodes, concatenated (episode i is `bounds[i]..bounds[i+1]`).
#[derive(Debug, Clone, Default)]
pub struct EpisodeBatch {
    /// Observation dimension.
    pub obs_dim: usize,
    /// Action dimension.
    pub act_dim: usize,
    /// Observations as the policy saw them (normalized), `steps × obs_dim`.
    pub obs: Vec<f32>,
    /// Sampled (unclipped) actions, `steps × act_dim`.
    pub actions: Vec<f32>,
    /// Rewards as the plant returned them.
    pub rewards: Vec<f32>,
    /// Episode boundaries, `N + 1` entries starting at 0.
    pub bounds: Vec<usize>,
    /// Whether episode i ended by termination (else by the time limit).
    pub terminated: Vec<bool>,
    /// The successor observation of each episode's last step (normalized
    /// with the statistics of that step), `N × obs_dim`: bootstraps a
    /// time-limit cut.
    pub final_obs: Vec<f32>,
}

impl EpisodeBatch {
    /// An empty batch for the given dimensions.
    pub fn new(obs_dim: usize, act_dim: usize) -> Self {
        EpisodeBatch {
            obs_dim,
            act_dim,
            bounds: vec![0],
            ..Default::default()
        }
    }
    /// Number of episodes N.
    pub fn episodes(&self) -> usize {
        self.bounds.len() - 1
    }
    /// Total steps.
    pub fn steps(&self) -> usize {
        self.rewards.len()
    }
    /// Step range of episode `i`.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.bounds[i]..self.bounds[i + 1]
    }
    /// Discounted return `Σ_t γ^t r_t` of each episode.
    pub fn returns(&self, gamma: f32) -> Vec<f32> {
        (0..self.episodes())
            .map(|i| discounted_return(&self.rewards[self.range(i)], gamma))
            .collect()
    }
    /// Undiscounted returns (f64), as `eval` reports them.
    pub fn undiscounted_returns(&self) -> Vec<f64> {
        (0..self.episodes())
            .map(|i| self.rewards[self.range(i)].iter().map(|&r| r as f64).sum())
            .collect()
    }
    /// Appends the episodes of `other` (same dimensions).
    pub fn extend(&mut self, other: &EpisodeBatch) {
        let off = self.steps();
        self.obs.extend_from_slice(&other.obs);
        self.actions.extend_from_slice(&other.actions);
        self.rewards.extend_from_slice(&other.rewards);
        self.bounds
            .extend(other.bounds[1..].iter().map(|b| b + off));
        self.terminated.extend_from_slice(&other.terminated);
        self.final_obs.extend_from_slice(&other.final_obs);
    }
}

/// How observations are normalized while collecting.
#[derive(Debug, Clone, Copy)]
pub struct ObsNorm {
    /// Normalize at all (else the policy sees raw observations).
    pub enabled: bool,
    /// Clip of normalized values.
    pub clip: f32,
    /// Merge each step's observations into the running statistics first
    /// (training); `false` freezes them (studies, evaluation).
    pub update: bool,
}

/// Runs one episode in each of `envs` (in lockstep, batched through the
/// actor) with the stochastic policy, and returns them in env order.
/// Plants are reset first; `rng` drives resets and sampling.
pub fn collect_episodes(
    model: &ActorCritic,
    envs: &mut [Box<dyn Env>],
    obs_rms: &mut RunningMeanStd,
    norm: ObsNorm,
    rng: &mut DefaultRng,
) -> EpisodeBatch {
    let (od, ad) = (model.obs_dim(), model.act_dim());
    let n = envs.len();
    let mut raw = vec![0.0f32; n * od];
    for (e, o) in envs.iter_mut().zip(raw.chunks_mut(od)) {
        e.reset(rng, o);
    }
    let log_std = model.log_std().to_vec();
    let std: Vec<f32> = log_std.iter().map(|l| l.exp()).collect();
    let (low, high) = (envs[0].action_low(), envs[0].action_high());
    // Per-env episode buffers, concatenated at the end.
    let mut per: Vec<EpisodeBatch> = (0..n).map(|_| EpisodeBatch::new(od, ad)).collect();
    let mut active: Vec<usize> = (0..n).collect();
    let mut x = Vec::new();
    let mut cache = Cache::default();
    let (mut z, mut u, mut applied) = (vec![0.0f32; ad], vec![0.0f32; ad], vec![0.0f32; ad]);
    let mut next = vec![0.0f32; od];
    let mut stats = obs_rms.export();
    while !active.is_empty() {
        let rows: Vec<f32> = active
            .iter()
            .flat_map(|&e| raw[e * od..(e + 1) * od].iter().copied())
            .collect();
        if norm.enabled && norm.update {
            obs_rms.update(&rows);
            stats = obs_rms.export();
        }
        x.clear();
        x.extend_from_slice(&rows);
        if norm.enabled {
            for row in x.chunks_mut(od) {
                normalize_obs(row, &stats.0, &stats.1, norm.clip);
            }
        }
        let xv = ArrayView2::from_shape((active.len(), od), &x).expect("rows");
        let mu = model
            .actor
            .forward(model.actor_params(), xv, &mut cache)
            .to_owned();
        let mut still = Vec::with_capacity(active.len());
        for (k, &e) in active.iter().enumerate() {
            standard_normals(rng, &mut z);
            for j in 0..ad {
                u[j] = mu[[k, j]] + std[j] * z[j];
                applied[j] = u[j].clamp(low[j], high[j]);
            }
            let (r, term, trunc) = envs[e].step(&applied, &mut next);
            let ep = &mut per[e];
            ep.obs.extend_from_slice(&x[k * od..(k + 1) * od]);
            ep.actions.extend_from_slice(&u);
            ep.rewards.push(r);
            if term || trunc {
                let mut f = next.clone();
                if norm.enabled {
                    normalize_obs(&mut f, &stats.0, &stats.1, norm.clip);
                }
                ep.final_obs.extend_from_slice(&f);
                ep.terminated.push(term);
                ep.bounds.push(ep.rewards.len());
            } else {
                raw[e * od..(e + 1) * od].copy_from_slice(&next);
                still.push(e);
            }
        }
        active = still;
    }
    let mut out = EpisodeBatch::new(od, ad);
    for ep in &per {
        out.extend(ep);
    }
    out
}

/// `Σ_t γ^t r_t`.
pub fn discounted_return(rewards: &[f32], gamma: f32) -> f32 {
    rewards.iter().rev().fold(0.0, |acc, &r| r + gamma * acc)
}

/// Reward-to-go `out_t = Σ_{t'≥t} γ^{t'−t} r_t'` of one episode.
pub fn reward_to_go(rewards: &[f32], gamma: f32, out: &mut [f32]) {
    let mut acc = 0.0f32;
    for (o, &r) in out.iter_mut().zip(rewards).rev() {
        acc = r + gamma * acc;
        *o = acc;
    }
}

/// n-step advantages on a time-major rollout (the layout of [`gae`]):
///
/// ```text
/// Â_n(t) = Σ_{k=t}^{t+m−1} γ^{k−t} r_k + γ^m (1 − term) V(s'_{t+m−1}) − V(s_t)
/// ```
///
/// with `m = n`, or fewer steps where the episode ends (terminated: no
/// bootstrap; truncated: bootstrap from its final observation) or the
/// rollout ends (bootstrap from the current observation). `n = 1` gives
/// `δ_t`; `n ≥ T` gives the discounted return minus `V` — GAE with λ = 1.
pub fn nstep_advantages(inp: &GaeInput, gamma: f32, n: usize, adv: &mut [f32]) {
    let envs = inp.num_envs;
    let t_len = inp.rewards.len() / envs;
    let n = n.max(1);
    for e in 0..envs {
        for t in 0..t_len {
            let (mut sum, mut disc) = (0.0f32, 1.0f32);
            let mut k = t;
            loop {
                let i = k * envs + e;
                sum += disc * inp.rewards[i];
                disc *= gamma;
                let done = inp.terminated[i] || inp.truncated[i];
                if done || k + 1 == t + n || k + 1 == t_len {
                    let boot = if inp.terminated[i] {
                        0.0
                    } else {
                        inp.next_values[i]
                    };
                    sum += disc * boot;
                    break;
                }
                k += 1;
            }
            let i = t * envs + e;
            adv[i] = sum - inp.values[i];
        }
    }
}

/// Which return the REINFORCE weight is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnKind {
    /// The whole episode's return `r(τ)` on every step.
    Full,
    /// The reward-to-go from each step (causality).
    RewardToGo,
}

/// A baseline subtracted from the return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// No baseline.
    None,
    /// The batch mean: of `r(τ)` (full return) or of the reward-to-go at
    /// each time step (reward-to-go), as in the notes. Each episode's own
    /// return is part of its baseline, so the estimate is `(1 − 1/N)` times
    /// the gradient in expectation (a leave-one-out mean would be unbiased;
    /// `tests/tests/pg_estimators.rs` checks both).
    Mean,
    /// A learned `V_φ(s_t)`.
    Value,
    /// The variance-minimizing constant, per parameter (full return only).
    Optimal,
}

/// A policy-gradient estimator: how ψ is formed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimator {
    /// REINFORCE on a return with a baseline.
    Reinforce(ReturnKind, Baseline),
    /// n-step advantages (needs values).
    NStep(usize),
    /// GAE(λ) (needs values).
    Gae(f32),
}

impl Estimator {
    /// Short name for tables and plots.
    pub fn label(&self) -> String {
        match self {
            Estimator::Reinforce(r, b) => {
                let r = match r {
                    ReturnKind::Full => "full return",
                    ReturnKind::RewardToGo => "reward-to-go",
                };
                match b {
                    Baseline::None => r.to_string(),
                    Baseline::Mean => format!("{r} + mean baseline"),
                    Baseline::Value => format!("{r} + value baseline"),
                    Baseline::Optimal => format!("{r} + optimal baseline"),
                }
            }
            Estimator::NStep(n) => format!("{n}-step"),
            Estimator::Gae(l) => format!("GAE λ={l}"),
        }
    }
    /// Whether ψ needs `V(s)`.
    pub fn needs_values(&self) -> bool {
        matches!(
            self,
            Estimator::NStep(_) | Estimator::Gae(_) | Estimator::Reinforce(_, Baseline::Value)
        )
    }
}

/// Options of [`policy_gradient`].
#[derive(Debug, Clone, Copy)]
pub struct PgOptions {
    /// Discount γ.
    pub gamma: f32,
    /// Multiply ψ_it by `γ^t` (see the module docs).
    pub time_discount: bool,
}

/// `V(s_t)` of every step of a batch and `V` of each episode's final
/// observation (0 where the episode terminated).
#[derive(Debug, Clone, Default)]
pub struct BatchValues {
    /// Per step.
    pub values: Vec<f32>,
    /// Per episode: the bootstrap value of its successor state.
    pub final_values: Vec<f32>,
}

impl BatchValues {
    /// Evaluates `model.critic` on the batch. `scale` multiplies the
    /// network output (critics may be fitted to scaled targets).
    pub fn of(model: &ActorCritic, batch: &EpisodeBatch, scale: f32) -> Self {
        let od = batch.obs_dim;
        let mut cache = Cache::default();
        let mut run = |x: &[f32]| -> Vec<f32> {
            if x.is_empty() {
                return Vec::new();
            }
            let xv = ArrayView2::from_shape((x.len() / od, od), x).expect("rows");
            let v = model.critic.forward(model.critic_params(), xv, &mut cache);
            v.column(0).iter().map(|&v| v * scale).collect()
        };
        let values = run(&batch.obs);
        let mut final_values = run(&batch.final_obs);
        for (v, &t) in final_values.iter_mut().zip(&batch.terminated) {
            if t {
                *v = 0.0;
            }
        }
        BatchValues {
            values,
            final_values,
        }
    }
}

/// The per-step weights ψ of `est` for a batch (not for
/// [`Baseline::Optimal`], which is per parameter: use [`policy_gradient`]).
/// `values` must be given when [`Estimator::needs_values`].
///
/// # Panics
/// If values are needed and missing, or `est` uses the optimal baseline.
pub fn weights(
    batch: &EpisodeBatch,
    est: Estimator,
    values: Option<&BatchValues>,
    opts: &PgOptions,
) -> Vec<f32> {
    let g = opts.gamma;
    let n = batch.episodes();
    let mut psi = vec![0.0f32; batch.steps()];
    match est {
        Estimator::Reinforce(_, Baseline::Optimal) => {
            panic!("the optimal baseline is per parameter: use policy_gradient")
        }
        Estimator::Reinforce(ReturnKind::Full, b) => {
            let rets = batch.returns(g);
            let mean = rets.iter().sum::<f32>() / n.max(1) as f32;
            for (i, &r) in rets.iter().enumerate() {
                for t in batch.range(i) {
                    psi[t] = match b {
                        Baseline::None => r,
                        Baseline::Mean => r - mean,
                        Baseline::Value => r - values.expect("values").values[t],
                        Baseline::Optimal => unreachable!(),
                    };
                }
            }
        }
        Estimator::Reinforce(ReturnKind::RewardToGo, b) => {
            for i in 0..n {
                let r = batch.range(i);
                reward_to_go(&batch.rewards[r.clone()], g, &mut psi[r]);
            }
            match b {
                Baseline::None => {}
                Baseline::Mean => {
                    // b_t = mean over the episodes that reach step t.
                    let longest = (0..n).map(|i| batch.range(i).len()).max().unwrap_or(0);
                    let (mut sum, mut cnt) = (vec![0.0f32; longest], vec![0u32; longest]);
                    for i in 0..n {
                        for (k, t) in batch.range(i).enumerate() {
                            sum[k] += psi[t];
                            cnt[k] += 1;
                        }
                    }
                    for i in 0..n {
                        for (k, t) in batch.range(i).enumerate() {
                            psi[t] -= sum[k] / cnt[k] as f32;
                        }
                    }
                }
                Baseline::Value => {
                    let v = values.expect("values");
                    psi.iter_mut().zip(&v.values).for_each(|(p, v)| *p -= v);
                }
                Baseline::Optimal => unreachable!(),
            }
        }
        Estimator::NStep(_) | Estimator::Gae(_) => {
            let v = values.expect("values");
            for i in 0..n {
                let r = batch.range(i);
                let inp = episode_gae_input(batch, v, i);
                let inp = GaeInput {
                    next_values: &inp.0,
                    terminated: &inp.1,
                    truncated: &inp.2,
                    rewards: &batch.rewards[r.clone()],
                    values: &v.values[r.clone()],
                    num_envs: 1,
                };
                match est {
                    Estimator::NStep(k) => nstep_advantages(&inp, g, k, &mut psi[r]),
                    Estimator::Gae(l) => gae(&inp, g, l, &mut psi[r]),
                    Estimator::Reinforce(..) => unreachable!(),
                }
            }
        }
    }
    // The full return already weighs r_t by γ^t from the episode start.
    let full = matches!(est, Estimator::Reinforce(ReturnKind::Full, _));
    if opts.time_discount && !full {
        for i in 0..n {
            let mut d = 1.0f32;
            for t in batch.range(i) {
                psi[t] *= d;
                d *= g;
            }
        }
    }
    psi
}

/// `(next_values, terminated, truncated)` of one episode for [`gae`]:
/// `V(s_{t+1})`, and at the last step the final value with the episode's
/// end flag.
fn episode_gae_input(
    batch: &EpisodeBatch,
    v: &BatchValues,
    i: usize,
) -> (Vec<f32>, Vec<bool>, Vec<bool>) {
    let r = batch.range(i);
    let len = r.len();
    let mut next = v.values[r.start + 1..r.end].to_vec();
    next.push(v.final_values[i]);
    let mut term = vec![false; len];
    let mut trunc = vec![false; len];
    if len > 0 {
        term[len - 1] = batch.terminated[i];
        trunc[len - 1] = !batch.terminated[i];
    }
    (next, term, trunc)
}

/// Value-function targets of the notes: Monte-Carlo (the reward-to-go) or
/// bootstrapped (`r_t + γ V(s_{t+1})`, with `V` of the final state at the
/// last step, 0 after a termination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueTarget {
    /// `y_t = Σ_{t'≥t} γ^{t'−t} r_t'`.
    Mc,
    /// `y_t = r_t + γ V(s_{t+1})`.
    Bootstrap,
}

/// Targets `y_t` for fitting `V_φ` on a batch.
pub fn value_targets(
    batch: &EpisodeBatch,
    kind: ValueTarget,
    values: Option<&BatchValues>,
    gamma: f32,
) -> Vec<f32> {
    let mut y = vec![0.0f32; batch.steps()];
    for i in 0..batch.episodes() {
        let r = batch.range(i);
        match kind {
            ValueTarget::Mc => reward_to_go(&batch.rewards[r.clone()], gamma, &mut y[r]),
            ValueTarget::Bootstrap => {
                let v = values.expect("bootstrapped targets need values");
                for t in r.clone() {
                    let next = if t + 1 < r.end {
                        v.values[t + 1]
                    } else {
                        v.final_values[i]
                    };
                    y[t] = batch.rewards[t] + gamma * next;
                }
            }
        }
    }
    y
}

/// Adds `∇_θ Σ_t w_t log π_θ(a_t|s_t)` into `grad`, laid out as
/// `[actor MLP | log_std]` (the first `model.critic_range().start` entries
/// of [`ActorCritic::params`]). One forward and one backward pass.
///
/// With `log π = −Σ_j [(u_j − μ_j)²/(2σ_j²) + log σ_j + ½ log 2π]`:
/// `∂/∂μ_j = (u_j − μ_j)/σ_j²`, `∂/∂log σ_j = (u_j − μ_j)²/σ_j² − 1`.
pub fn logp_grad(
    model: &ActorCritic,
    obs: &[f32],
    actions: &[f32],
    w: &[f32],
    cache: &mut Cache,
    grad: &mut [f32],
) {
    let (od, ad) = (model.obs_dim(), model.act_dim());
    let m = w.len();
    if m == 0 {
        return;
    }
    let xv = ArrayView2::from_shape((m, od), &obs[..m * od]).expect("rows");
    let log_std = model.log_std();
    let inv_var: Vec<f32> = log_std.iter().map(|&l| (-2.0 * l).exp()).collect();
    let mu = model
        .actor
        .forward(model.actor_params(), xv, cache)
        .to_owned();
    let mut dmu = Array2::<f32>::zeros((m, ad));
    let mut dlog = vec![0.0f32; ad];
    for t in 0..m {
        for j in 0..ad {
            let d = actions[t * ad + j] - mu[[t, j]];
            dmu[[t, j]] = w[t] * d * inv_var[j];
            dlog[j] += w[t] * (d * d * inv_var[j] - 1.0);
        }
    }
    let (ga, gl) = grad[..model.critic_range().start].split_at_mut(model.actor.n_params());
    model
        .actor
        .backward(model.actor_params(), cache, dmu.view(), ga);
    for (g, d) in gl.iter_mut().zip(&dlog) {
        *g += d;
    }
}

/// `g(τ_i) = Σ_t ∇ log π_θ(a_it|s_it)` for every episode, `N × P` with P
/// the number of policy parameters (actor and log-std).
pub fn episode_score_grads(model: &ActorCritic, batch: &EpisodeBatch) -> Vec<Vec<f32>> {
    let p = model.critic_range().start;
    let mut cache = Cache::default();
    (0..batch.episodes())
        .map(|i| {
            let r = batch.range(i);
            let (od, ad) = (batch.obs_dim, batch.act_dim);
            let mut g = vec![0.0f32; p];
            let ones = vec![1.0f32; r.len()];
            logp_grad(
                model,
                &batch.obs[r.start * od..r.end * od],
                &batch.actions[r.start * ad..r.end * ad],
                &ones,
                &mut cache,
                &mut g,
            );
            g
        })
        .collect()
}

/// The variance-minimizing constant baseline, per parameter k:
/// `b_k = Σ_i g_ik² R_i / Σ_i g_ik²` (0 where every `g_ik` is 0).
pub fn optimal_baseline(score: &[Vec<f32>], returns: &[f32]) -> Vec<f32> {
    let p = score.first().map_or(0, Vec::len);
    let (mut num, mut den) = (vec![0.0f64; p], vec![0.0f64; p]);
    for (g, &r) in score.iter().zip(returns) {
        for k in 0..p {
            let g2 = (g[k] as f64) * (g[k] as f64);
            num[k] += g2 * r as f64;
            den[k] += g2;
        }
    }
    num.iter()
        .zip(&den)
        .map(|(&n, &d)| if d > 0.0 { (n / d) as f32 } else { 0.0 })
        .collect()
}

/// The estimate ĝ (an ascent direction of J, over the policy parameters
/// `[actor | log_std]`) of `est` on `batch`, divided by the number of
/// episodes N.
pub fn policy_gradient(
    model: &ActorCritic,
    batch: &EpisodeBatch,
    est: Estimator,
    values: Option<&BatchValues>,
    opts: &PgOptions,
) -> Vec<f32> {
    let p = model.critic_range().start;
    let n = batch.episodes().max(1) as f32;
    let mut g = vec![0.0f32; p];
    if let Estimator::Reinforce(kind, Baseline::Optimal) = est {
        assert_eq!(
            kind,
            ReturnKind::Full,
            "the optimal baseline is defined on the full return"
        );
        let score = episode_score_grads(model, batch);
        let rets = batch.returns(opts.gamma);
        let b = optimal_baseline(&score, &rets);
        for (s, &r) in score.iter().zip(&rets) {
            for k in 0..p {
                g[k] += s[k] * (r - b[k]);
            }
        }
    } else {
        let psi = weights(batch, est, values, opts);
        let mut cache = Cache::default();
        logp_grad(model, &batch.obs, &batch.actions, &psi, &mut cache, &mut g);
    }
    g.iter_mut().for_each(|x| *x /= n);
    g
}
