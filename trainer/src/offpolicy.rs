//! Off-policy estimators for learning from logged (device) data: importance
//! weights, their per-decision products, V-trace, and the decoupled PPO loss.
//!
//! Notation (notes (6.2)–(6.9), (6.35)–(6.46); `docs/OFFPOLICY.md`): the
//! data was sampled by a behaviour policy `μ` (the device's int8 policy,
//! possibly several versions old), the learner is `π_θ`, and `π_prox` is
//! `π_θ` frozen at the start of an update. Per logged step t,
//!
//! ```text
//! log ρ_t = log π_prox(u_t|x_t) − log μ(u_t|x_t)         (importance ratio, (6.2))
//! c_t     = min(c̄, ρ_t),   ρ̃_t = min(ρ̄, ρ_t)             (truncated traces)
//! δ_t     = r_t + γ (1 − d_t) V(x_{t+1}) − V(x_t)         ((6.44); d_t = terminated)
//! Â_t     = δ_t + γ λ c_{t+1} Â_{t+1}                     (V-trace advantage)
//! v_t     = V(x_t) + c_t Â_t                    if ρ̄ = c̄  (value target)
//! v_t     = V(x_t) + ρ̃_t δ_t + γ λ c_t (v_{t+1} − V(x_{t+1}))   in general
//! ```
//!
//! The recursions stop after the last step of a fragment (`ends`): at a
//! termination (`V(x_{t+1})` is not used), a truncation (bootstrap from the
//! final observation) or a cut (bootstrap from the next logged
//! observation). Unrolled, `Â_t = Σ_{k≥t} (γλ)^{k−t} (Π_{i=t+1}^{k} c_i) δ_k`;
//! with `π_prox = μ` (all `ρ = 1`) this is GAE(λ), `Σ_k (γλ)^{k−t} δ_k`
//! ((6.46), [`crate::gae`]).
//!
//! Loss of one minibatch of M samples (minimized), with
//! `r_t = π_θ(u_t|x_t)/π_prox(u_t|x_t)` ((6.35)) and weights `w_t`:
//!
//! ```text
//! L^dec = (1/M) Σ_t w_t · max(−Â_t r_t, −Â_t clip(r_t, 1−ε, 1+ε))
//! L     = L^dec − c_ent H[π_θ] + c_V L^V                 (L^V as in crate::loss)
//! ∂L^dec/∂log π_θ(u_t|x_t) = −w_t Â_t r_t / M  where the unclipped term is the max, else 0
//! ```
//!
//! so with `w ≡ 1` and `π_prox = μ` it is [`crate::loss::ppo_loss`]. The
//! weights of the estimators of [`IsCorrection`] are all computed in log
//! space, `w = exp(min(log w̄, log ρ))`, so no ratio overflows.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::loss::{weighted_loss, LossCoefs, LossStats, Minibatch, Workspace};
use crate::mlp::Cache;
use crate::model::ActorCritic;

/// How the learner corrects for the data being sampled by `μ`, not `π_θ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IsCorrection {
    /// Treat the logs as on-policy: standard PPO with `π_old = μ` (the
    /// logged log-probabilities), `w ≡ 1`, GAE(λ) advantages.
    None,
    /// One ratio per step ((6.8)–(6.9)): `w_t = min(w̄, ρ_t)`, GAE(λ)
    /// advantages, ratios `r = π_θ/π_prox`.
    SingleRatio,
    /// The per-decision product over the fragment so far ((6.5)–(6.6)),
    /// truncated: `w_t = min(w̄, Π_{k=s}^{t} ρ_k)` (log space), GAE(λ)
    /// advantages, ratios `r = π_θ/π_prox`.
    PerDecision,
    /// V-trace advantages and value targets, `w_t = min(w̄, ρ_t)`, ratios
    /// `r = π_θ/π_prox` (decoupled PPO).
    Vtrace,
}

impl IsCorrection {
    /// The CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            IsCorrection::None => "none",
            IsCorrection::SingleRatio => "single-ratio",
            IsCorrection::PerDecision => "per-decision",
            IsCorrection::Vtrace => "vtrace",
        }
    }

    /// All four, in the order of the comparison tables.
    pub const ALL: [IsCorrection; 4] = [
        IsCorrection::None,
        IsCorrection::SingleRatio,
        IsCorrection::PerDecision,
        IsCorrection::Vtrace,
    ];
}

/// `min(w̄, ρ)` from `log ρ`, computed as `exp(min(log w̄, log ρ))`: finite
/// for every finite `log ρ` (and `w̄ = ∞` means no truncation).
#[inline]
pub fn truncated_weight(log_ratio: f32, w_bar: f32) -> f32 {
    log_ratio.min(w_bar.ln()).exp()
}

/// `out_t = min(w̄, ρ_t)` for every step.
pub fn single_ratio_weights(log_rhos: &[f32], w_bar: f32, out: &mut [f32]) {
    for (o, &lr) in out.iter_mut().zip(log_rhos) {
        *o = truncated_weight(lr, w_bar);
    }
}

/// Per-decision weights `out_t = min(w̄, Π_{k=s}^{t} ρ_k)` where `s` is the
/// first step of t's fragment (the step after the previous `ends`).
///
/// The product is a sum of logs accumulated in f64 (no overflow or
/// underflow at any length) and truncated only at the output, so
/// `out_t = exp(min(log w̄, Σ_{k=s}^{t} log ρ_k))` is the exact product
/// wherever it is below `w̄`.
pub fn per_decision_weights(log_rhos: &[f32], ends: &[bool], w_bar: f32, out: &mut [f32]) {
    let cap = (w_bar as f64).ln();
    let mut sum = 0.0f64;
    for ((o, &lr), &end) in out.iter_mut().zip(log_rhos).zip(ends) {
        sum += lr as f64;
        *o = sum.min(cap).exp() as f32;
        if end {
            sum = 0.0;
        }
    }
}

/// Inputs of [`vtrace`] for a sequence of fragments laid end to end.
pub struct TraceInput<'a> {
    /// Rewards `r_t`.
    pub rewards: &'a [f32],
    /// `V(x_t)`.
    pub values: &'a [f32],
    /// `V(x_{t+1})`, the successor's value (ignored where terminated).
    pub next_values: &'a [f32],
    /// `d_t`: a terminal state was reached (no bootstrap).
    pub terminated: &'a [bool],
    /// The recursion stops after this step (last step of a fragment:
    /// termination, truncation or a cut).
    pub ends: &'a [bool],
    /// `log ρ_t = log π_prox(u_t|x_t) − log μ(u_t|x_t)`.
    pub log_rhos: &'a [f32],
}

/// V-trace advantages `Â_t` and value targets `v_t` (module docs), written
/// into `adv` and `targets`; computed backward in one pass.
///
/// With `ρ̄ = c̄` the target is the issue's `v_t = V(x_t) + c_t Â_t`;
/// otherwise IMPALA's recursion `v_t − V(x_t) = ρ̃_t δ_t + γλ c_t (v_{t+1} −
/// V(x_{t+1}))`, of which it is the special case.
pub fn vtrace(
    inp: &TraceInput,
    gamma: f32,
    lambda: f32,
    rho_bar: f32,
    c_bar: f32,
    adv: &mut [f32],
    targets: &mut [f32],
) {
    let n = inp.rewards.len();
    let same_bar = rho_bar == c_bar;
    // Â_{t+1}, c_{t+1} and v_{t+1} − V(x_{t+1}) of the step after t.
    let (mut next_adv, mut next_c, mut next_vs) = (0.0f32, 0.0f32, 0.0f32);
    for t in (0..n).rev() {
        let lr = inp.log_rhos[t];
        let c = truncated_weight(lr, c_bar);
        let not_term = if inp.terminated[t] { 0.0 } else { 1.0 };
        let cont = if inp.ends[t] { 0.0 } else { 1.0 };
        let delta = inp.rewards[t] + gamma * not_term * inp.next_values[t] - inp.values[t];
        // Same operation order as crate::gae, so ρ = 1 gives GAE bit for bit.
        let a = delta + gamma * lambda * cont * next_c * next_adv;
        let vs = if same_bar {
            c * a
        } else {
            truncated_weight(lr, rho_bar) * delta + gamma * lambda * cont * c * next_vs
        };
        adv[t] = a;
        targets[t] = inp.values[t] + vs;
        (next_adv, next_c, next_vs) = (a, c, vs);
    }
}

/// Normalized effective sample size `(Σw)² / (N Σw²)` in `(0, 1]` (1 for
/// equal weights, `1/N` for a single non-zero one; 0 if all are zero).
pub fn ess_fraction(weights: &[f32]) -> f64 {
    let (s, s2) = weights.iter().fold((0.0f64, 0.0f64), |(s, s2), &w| {
        (s + w as f64, s2 + (w as f64) * (w as f64))
    });
    if s2 == 0.0 || weights.is_empty() {
        return 0.0;
    }
    s * s / (s2 * weights.len() as f64)
}

/// [`ess_fraction`] of the weights `exp(log_w)`, computed as that of
/// `exp(log_w − max log_w)` (the ESS does not depend on the scale), so no
/// weight overflows.
pub fn ess_fraction_log(log_w: &[f32]) -> f64 {
    let max = log_w.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if !max.is_finite() {
        return 0.0;
    }
    let (s, s2) = log_w.iter().fold((0.0f64, 0.0f64), |(s, s2), &l| {
        let w = (l as f64 - max).exp();
        (s + w, s2 + w * w)
    });
    s * s / (s2 * log_w.len() as f64)
}

/// Approximate `KL(μ ‖ π_prox)` from samples of `μ` with Schulman's k3
/// estimator, `mean((ρ − 1) − log ρ)` with `ρ = π_prox/μ` (non-negative,
/// unbiased). `log ρ` is capped at 80 so `ρ` stays finite.
pub fn kl_behaviour_prox(log_rhos: &[f32]) -> f64 {
    if log_rhos.is_empty() {
        return 0.0;
    }
    let sum: f64 = log_rhos
        .iter()
        .map(|&lr| {
            let lr = (lr as f64).min(80.0);
            lr.exp() - 1.0 - lr
        })
        .sum();
    sum / log_rhos.len() as f64
}

/// The decoupled PPO loss of one minibatch (module docs): `mb.logp_old` is
/// `log π_prox` (the anchor of the clip) and `weights` are the `w_t`.
/// If `grad` is given, **adds** `∂L/∂θ` into it (layout of
/// [`ActorCritic::params`]). Advantages are normalized per minibatch when
/// `c.norm_adv`, exactly as in [`crate::loss::ppo_loss`]; the value loss
/// and entropy are those of `ppo_loss` (unweighted).
pub fn decoupled_ppo_loss(
    model: &ActorCritic,
    mb: &Minibatch,
    weights: &[f32],
    c: &LossCoefs,
    ws: &mut Workspace,
    grad: Option<&mut [f32]>,
) -> LossStats {
    assert_eq!(weights.len(), mb.obs.nrows(), "one weight per sample");
    weighted_loss(model, mb, Some(weights), c, ws, grad)
}

/// `log π(u_i|x_i)` of every row of a batch, and `V(x_i)` if `values` is
/// given (one batched forward pass of each network).
pub fn log_probs_and_values(
    model: &ActorCritic,
    obs: ArrayView2<f32>,
    actions: ArrayView2<f32>,
    logp: &mut [f32],
    values: Option<&mut [f32]>,
) {
    let mut cache = Cache::default();
    let log_std = model.log_std();
    let n = obs.nrows();
    // In chunks: the forward caches hold every layer's activations of the
    // batch, so a whole imported log at once would take gigabytes.
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let mu = model.actor.forward(
            model.actor_params(),
            obs.slice(ndarray::s![start..end, ..]),
            &mut cache,
        );
        for (k, lp) in logp[start..end].iter_mut().enumerate() {
            let u = actions.row(start + k);
            let m = mu.row(k);
            *lp = crate::model::gaussian_log_prob(
                u.as_slice().expect("contiguous row"),
                m.as_slice().expect("contiguous row"),
                log_std,
            );
        }
    }
    if let Some(values) = values {
        values_of(model, obs, values);
    }
}

/// Rows per forward pass of [`log_probs_and_values`] and [`values_of`]
/// (their results do not depend on it: each row's pass is its own).
const CHUNK: usize = 4096;

/// `V(x_i)` of every row of a batch.
pub fn values_of(model: &ActorCritic, obs: ArrayView2<f32>, out: &mut [f32]) {
    let mut cache = Cache::default();
    let n = obs.nrows();
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let v = model.critic.forward(
            model.critic_params(),
            obs.slice(ndarray::s![start..end, ..]),
            &mut cache,
        );
        out[start..end]
            .iter_mut()
            .zip(v.column(0))
            .for_each(|(o, &v)| *o = v);
    }
}
