//! Off-policy evaluation (OPE): the value of a candidate policy `π`
//! estimated from episodes logged under a behaviour policy `μ`, the
//! notes' importance-sampled returns made usable for long episodes.
//!
//! With `ρ_{i,t} = π(u_{i,t}|x_{i,t}) / μ(u_{i,t}|x_{i,t})` the ratio of
//! step `t` of episode `i` (`n` episodes), the per-decision weight
//! `w_{i,t} = Π_{k≤t} ρ_{i,k}` and its self-normalized form
//! `ŵ_{i,t} = w_{i,t} / Σ_j w_{j,t}` (`ŵ_{i,−1} = 1/n`):
//!
//! - **Weighted per-decision importance sampling** (Precup et al. 2000):
//!   `V̂_WPDIS = Σ_t γ^t Σ_i ŵ_{i,t} r_{i,t}`. A reward is weighted only by
//!   the ratios of the decisions before it (causality, like the
//!   reward-to-go), and the self-normalization trades a small bias for a
//!   variance that stays bounded when products of 200 ratios do not.
//! - **Weighted doubly robust** (Jiang & Li 2016; Thomas & Brunskill 2016)
//!   with a state-value model `V̂` as the control variate (`Q̂(x, u) = V̂(x)`:
//!   the critic has no action input):
//!   `V̂_WDR = Σ_t γ^t Σ_i [ŵ_{i,t} (r_{i,t} − V̂(x_{i,t})) + ŵ_{i,t−1} V̂(x_{i,t})]`.
//!   When `π = μ` both are the mean discounted return exactly; the better
//!   `V̂`, the smaller WDR's variance.
//!
//! An episode that ends before the longest one is absorbing: its weight
//! stays what it was at its end, with reward and value 0 (so the
//! normalizers sum over the same episodes at every `t`). Weights are kept
//! as logarithms and normalized per `t` by their maximum, so a product of
//! many ratios never overflows.
//!
//! [`bootstrap`] gives a percentile confidence interval over episodes:
//! the estimator on `n` episodes drawn with replacement, `resamples`
//! times, with a seeded generator.

use rand::Rng;
use tinyppo_runtime::rng::seeded;

/// One logged episode, as the estimators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// `r_t`, the rewards as logged (not scaled).
    pub rewards: Vec<f64>,
    /// `log π(u_t|x_t) − log μ(u_t|x_t)` per step.
    pub log_ratio: Vec<f64>,
    /// `V̂(x_t)` per step (for [`wdr`]; empty for [`wpdis`]).
    pub values: Vec<f64>,
}

/// Which estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    /// [`wpdis`].
    Wpdis,
    /// [`wdr`].
    Wdr,
}

impl Estimator {
    /// The estimate on `eps` (see the module docs).
    pub fn estimate(self, eps: &[&Episode], gamma: f64) -> f64 {
        match self {
            Estimator::Wpdis => weighted(eps, gamma, false),
            Estimator::Wdr => weighted(eps, gamma, true),
        }
    }
}

/// Weighted per-decision importance sampling.
pub fn wpdis(eps: &[Episode], gamma: f64) -> f64 {
    weighted(&eps.iter().collect::<Vec<_>>(), gamma, false)
}

/// Weighted doubly robust with `V̂` as the control variate.
pub fn wdr(eps: &[Episode], gamma: f64) -> f64 {
    weighted(&eps.iter().collect::<Vec<_>>(), gamma, true)
}

/// Both estimators: `Σ_t γ^t Σ_i [ŵ_{i,t}(r − c·V̂) + c·ŵ_{i,t−1} V̂]`
/// with `c = 1` for WDR and `0` for WPDIS.
fn weighted(eps: &[&Episode], gamma: f64, dr: bool) -> f64 {
    let n = eps.len();
    if n == 0 {
        return f64::NAN;
    }
    let horizon = eps.iter().map(|e| e.rewards.len()).max().unwrap_or(0);
    // log w_{i,t−1}, starting at log 1 = 0.
    let mut logw = vec![0.0f64; n];
    let mut prev_hat = vec![1.0 / n as f64; n];
    let mut hat = vec![0.0f64; n];
    let mut total = 0.0f64;
    let mut discount = 1.0f64;
    for t in 0..horizon {
        for (lw, e) in logw.iter_mut().zip(eps) {
            if let Some(&l) = e.log_ratio.get(t) {
                *lw += l;
            }
        }
        // ŵ_{·,t} = softmax of log w_{·,t}.
        let max = logw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for (h, &lw) in hat.iter_mut().zip(&logw) {
            *h = (lw - max).exp();
            sum += *h;
        }
        if !(sum > 0.0 && sum.is_finite()) {
            return f64::NAN;
        }
        let mut step = 0.0f64;
        for ((h, &ph), e) in hat.iter_mut().zip(&prev_hat).zip(eps) {
            *h /= sum;
            let r = e.rewards.get(t).copied().unwrap_or(0.0);
            let v = if dr && t < e.rewards.len() {
                e.values.get(t).copied().unwrap_or(0.0)
            } else {
                0.0
            };
            step += *h * (r - v) + ph * v;
        }
        total += discount * step;
        discount *= gamma;
        std::mem::swap(&mut prev_hat, &mut hat);
    }
    total
}

/// A bootstrap percentile interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The estimate on all episodes.
    pub estimate: f64,
    /// The `alpha` quantile of the resampled estimates.
    pub lower: f64,
    /// The `1 − alpha` quantile.
    pub upper: f64,
}

/// The estimator on `eps` and its bootstrap percentile interval: the
/// `alpha` and `1 − alpha` quantiles of the estimates on `resamples`
/// resamples of `n` episodes drawn with replacement (generator
/// `rng::seeded(seed)`, so the interval is a function of its inputs).
pub fn bootstrap(
    eps: &[Episode],
    gamma: f64,
    estimator: Estimator,
    resamples: usize,
    alpha: f64,
    seed: u64,
) -> Interval {
    bootstrap_by(eps, resamples, alpha, seed, |p| {
        estimator.estimate(p, gamma)
    })
}

/// [`bootstrap`] of any statistic `f` of a set of episodes: `f` on all of
/// `eps`, and the `alpha` and `1 − alpha` quantiles of `f` on the
/// resamples. Every statistic bootstrapped with the same `seed` sees the
/// same resamples.
///
/// The gate's paired test bootstraps `f = WDR(π) − mean return` ([`gain`]):
/// the candidate's estimate and the behaviour's logged return move together
/// from one resample to the next (an episode that starts hanging down
/// lowers both), so the interval of their difference is much narrower
/// than that of the estimate alone.
pub fn bootstrap_by(
    eps: &[Episode],
    resamples: usize,
    alpha: f64,
    seed: u64,
    f: impl Fn(&[&Episode]) -> f64,
) -> Interval {
    let all: Vec<&Episode> = eps.iter().collect();
    let estimate = f(&all);
    let n = eps.len();
    if n == 0 || resamples == 0 {
        return Interval {
            estimate,
            lower: f64::NAN,
            upper: f64::NAN,
        };
    }
    let mut rng = seeded(seed);
    let mut draws: Vec<f64> = (0..resamples)
        .map(|_| {
            let pick: Vec<&Episode> = (0..n).map(|_| &eps[rng.random_range(0..n)]).collect();
            f(&pick)
        })
        .filter(|v| v.is_finite())
        .collect();
    if draws.is_empty() {
        return Interval {
            estimate,
            lower: f64::NAN,
            upper: f64::NAN,
        };
    }
    draws.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let i = ((p * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1);
        draws[i]
    };
    Interval {
        estimate,
        lower: q(alpha),
        upper: q(1.0 - alpha),
    }
}

/// The effective sample size `(Σ w_i)² / Σ w_i²` of the whole-episode
/// weights `w_i = Π_t ρ_{i,t}`, divided by `n`: 1 when every episode
/// counts as much, `1/n` when one episode carries all the weight (then no
/// interval over episodes means anything).
pub fn ess_fraction(eps: &[Episode]) -> f64 {
    let logw: Vec<f64> = eps.iter().map(|e| e.log_ratio.iter().sum()).collect();
    let max = logw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return 0.0;
    }
    let w: Vec<f64> = logw.iter().map(|l| (l - max).exp()).collect();
    let (s, s2) = w.iter().fold((0.0, 0.0), |(a, b), x| (a + x, b + x * x));
    s * s / s2 / eps.len() as f64
}

/// The mean discounted logged return `(1/n) Σ_i Σ_t γ^t r_{i,t}`: the
/// behaviour's value estimated on its own episodes.
pub fn mean_return(eps: &[&Episode], gamma: f64) -> f64 {
    if eps.is_empty() {
        return f64::NAN;
    }
    eps.iter()
        .map(|e| {
            e.rewards
                .iter()
                .scan(1.0f64, |d, &r| {
                    let v = *d * r;
                    *d *= gamma;
                    Some(v)
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / eps.len() as f64
}

/// The estimated improvement of the candidate over the behaviour on the
/// same episodes, `V̂_WDR(π) − (1/n) Σ_i G_i`: the statistic of the gate's
/// paired test (0 when `π = μ`).
pub fn gain(eps: &[&Episode], gamma: f64) -> f64 {
    Estimator::Wdr.estimate(eps, gamma) - mean_return(eps, gamma)
}

/// The k3 estimate of the per-step `KL(μ‖π)` from steps logged under `μ`,
/// `mean_t ((ρ_t − 1) − log ρ_t)` with `ρ_t = π/μ` (≥ 0 term by term, 0
/// when `π = μ`). For a Gaussian mean shift of `d` standard deviations per
/// step it is `d²/2`, and the log whole-episode weight over `T` steps has
/// variance `2·T·KL` under `μ`: the ESS of whole-episode weights is then
/// about `exp(−2·T·KL)`. A step with `log ρ = −∞` (the runtime refused the
/// step) makes the divergence infinite.
pub fn kl_behaviour(eps: &[Episode]) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for &l in eps.iter().flat_map(|e| &e.log_ratio) {
        sum += l.exp_m1() - l;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}
