//! The PPO loss on one minibatch and its exact gradient.
//!
//! With `r_t(θ) = π_θ(u_t|x_t)/π_old(u_t|x_t)` (notes (6.29)) and advantages
//! `Â_t` (normalized per minibatch when `norm_adv`):
//!
//! ```text
//! L^clip  = (1/M) Σ max(−Â r, −Â clip(r, 1−ε, 1+ε))     (minimized; −(6.37))
//! L^V     = ½ (1/M) Σ (V(x) − R)²            or, clipped,
//!           ½ (1/M) Σ max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²)
//! L       = L^clip − c_ent · H[π] + c_V · L^V
//! ```
//!
//! `∂L^clip/∂ log π_t = −Â r / M` where the unclipped term is the max and 0
//! where the clip is active (so the clipped objective passes no gradient
//! there). Then `∂/∂μ = ∂/∂log π · (u − μ)/σ²` and
//! `∂/∂log σ = ∂/∂log π · ((u − μ)²/σ² − 1)` (see [`crate::model`]).
//! Diagnostics: `approx_kl = mean((r − 1) − log r)` (Schulman's k3
//! estimator), `clipfrac = mean(|r − 1| > ε)`.

use ndarray::{Array2, ArrayView2};

use crate::mlp::Cache;
use crate::model::{gaussian_entropy, ActorCritic};

/// One minibatch (all slices have M rows).
pub struct Minibatch<'a> {
    /// Normalized observations `(M, obs_dim)`.
    pub obs: ArrayView2<'a, f32>,
    /// Unclipped actions `(M, act_dim)`.
    pub actions: ArrayView2<'a, f32>,
    /// `log π_old(u|x)`.
    pub logp_old: &'a [f32],
    /// Advantages.
    pub adv: &'a [f32],
    /// Value targets.
    pub returns: &'a [f32],
    /// `V_old(x)`.
    pub values_old: &'a [f32],
}

/// Loss coefficients.
#[derive(Debug, Clone, Copy)]
pub struct LossCoefs {
    /// ε.
    pub clip_coef: f32,
    /// Clip the value loss.
    pub clip_vloss: bool,
    /// Entropy coefficient.
    pub ent_coef: f32,
    /// Value-loss coefficient.
    pub vf_coef: f32,
    /// Normalize advantages in the minibatch.
    pub norm_adv: bool,
}

/// Loss values and diagnostics of one minibatch.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossStats {
    /// Total loss L.
    pub total: f32,
    /// L^clip.
    pub pg_loss: f32,
    /// L^V.
    pub v_loss: f32,
    /// Entropy H.
    pub entropy: f32,
    /// `mean((r − 1) − log r)`.
    pub approx_kl: f32,
    /// `mean(−log r)`.
    pub old_approx_kl: f32,
    /// Fraction of samples with `|r − 1| > ε`.
    pub clipfrac: f32,
}

impl LossStats {
    /// Adds the diagnostics of another minibatch (for averages).
    pub fn add(&mut self, o: &LossStats) {
        self.total += o.total;
        self.pg_loss += o.pg_loss;
        self.v_loss += o.v_loss;
        self.entropy += o.entropy;
        self.approx_kl += o.approx_kl;
        self.old_approx_kl += o.old_approx_kl;
        self.clipfrac += o.clipfrac;
    }

    /// The sums of [`LossStats::add`] divided by the number of minibatches
    /// (at least 1).
    pub fn mean(&self, count: u32) -> LossStats {
        let c = count.max(1) as f32;
        LossStats {
            total: self.total / c,
            pg_loss: self.pg_loss / c,
            v_loss: self.v_loss / c,
            entropy: self.entropy / c,
            approx_kl: self.approx_kl / c,
            old_approx_kl: self.old_approx_kl / c,
            clipfrac: self.clipfrac / c,
        }
    }
}

/// Reusable buffers of the loss computation.
#[derive(Default)]
pub struct Workspace {
    /// Compute the actor and critic halves on two threads (same results).
    pub parallel: bool,
    actor: Cache,
    critic: Cache,
    dmu: Array2<f32>,
    dv: Array2<f32>,
}

impl Workspace {
    /// Empty buffers; `parallel` runs the actor and critic halves on two threads.
    pub fn new(parallel: bool) -> Self {
        Workspace {
            parallel,
            ..Workspace::default()
        }
    }
}

/// Computes the loss; if `grad` is given, **adds** `∂L/∂θ` into it (the
/// layout of [`ActorCritic::params`]).
///
/// The actor terms (policy loss, entropy) and the critic term share no
/// parameters, so with a gradient they run on two threads.
pub fn ppo_loss(
    model: &ActorCritic,
    mb: &Minibatch,
    c: &LossCoefs,
    ws: &mut Workspace,
    grad: Option<&mut [f32]>,
) -> LossStats {
    weighted_loss(model, mb, None, c, ws, grad)
}

/// [`ppo_loss`] with a per-sample weight `w_i` on the clipped surrogate
/// (`None`: all 1, exactly `ppo_loss`): the decoupled loss of
/// [`crate::offpolicy`]. Multiplying by 1.0 is exact, so both share one
/// implementation without changing a bit of the on-policy results.
pub(crate) fn weighted_loss(
    model: &ActorCritic,
    mb: &Minibatch,
    weights: Option<&[f32]>,
    c: &LossCoefs,
    ws: &mut Workspace,
    grad: Option<&mut [f32]>,
) -> LossStats {
    let Workspace {
        parallel,
        actor,
        critic,
        dmu,
        dv,
    } = ws;
    let split = model.critic_range().start;
    let (mut st, v_loss) = match grad {
        Some(grad) if !*parallel => {
            let (g_actor, g_critic) = grad.split_at_mut(split);
            (
                actor_part(model, mb, weights, c, actor, dmu, Some(g_actor)),
                critic_part(model, mb, c, critic, dv, Some(g_critic)),
            )
        }
        Some(grad) => {
            let (g_actor, g_critic) = grad.split_at_mut(split);
            std::thread::scope(|s| {
                let h = s.spawn(|| critic_part(model, mb, c, critic, dv, Some(g_critic)));
                let st = actor_part(model, mb, weights, c, actor, dmu, Some(g_actor));
                (st, h.join().expect("critic thread panicked"))
            })
        }
        None => (
            actor_part(model, mb, weights, c, actor, dmu, None),
            critic_part(model, mb, c, critic, dv, None),
        ),
    };
    st.v_loss = v_loss;
    st.total = st.pg_loss - c.ent_coef * st.entropy + c.vf_coef * st.v_loss;
    st
}

/// The value loss `L^V` alone (see the module docs; `clip_vloss`,
/// `clip_coef` and `vf_coef` of `c` apply); if `grad` is given, **adds**
/// its gradient into it — the critic's slice of the parameters
/// ([`ActorCritic::critic_range`]). TRPO's critic regression.
pub(crate) fn value_loss(
    model: &ActorCritic,
    mb: &Minibatch,
    c: &LossCoefs,
    ws: &mut Workspace,
    grad: Option<&mut [f32]>,
) -> f32 {
    critic_part(model, mb, c, &mut ws.critic, &mut ws.dv, grad)
}

/// Policy loss (weighted per sample when `weights` is given) and entropy;
/// adds their gradient into `grad` (actor params then log-std).
/// `approx_kl`, `old_approx_kl` and `clipfrac` are unweighted.
fn actor_part(
    model: &ActorCritic,
    mb: &Minibatch,
    weights: Option<&[f32]>,
    c: &LossCoefs,
    cache: &mut Cache,
    dmu: &mut Array2<f32>,
    grad: Option<&mut [f32]>,
) -> LossStats {
    let m = mb.obs.nrows();
    let inv_m = 1.0 / m as f32;
    let act_dim = model.act_dim();
    let log_std = model.log_std();
    let inv_var: Vec<f32> = log_std.iter().map(|&l| (-2.0 * l).exp()).collect();

    // Advantage normalization (unbiased std, as torch.std).
    let (adv_mean, adv_std) = if c.norm_adv && m > 1 {
        let mean = mb.adv.iter().sum::<f32>() * inv_m;
        let var = mb.adv.iter().map(|a| (a - mean) * (a - mean)).sum::<f32>() / (m - 1) as f32;
        (mean, var.sqrt() + 1e-8)
    } else {
        (0.0, 1.0)
    };

    let mu = model.actor.forward(model.actor_params(), mb.obs, cache);
    if dmu.dim() != (m, act_dim) {
        *dmu = Array2::zeros((m, act_dim));
    }
    let mut dlogstd = vec![0.0f32; act_dim];
    let mut st = LossStats::default();
    for i in 0..m {
        let u = mb.actions.row(i);
        let mu_i = mu.row(i);
        let mut logp = 0.0;
        for j in 0..act_dim {
            let d = u[j] - mu_i[j];
            logp -= 0.5 * d * d * inv_var[j] + log_std[j] + crate::model::HALF_LOG_2PI;
        }
        let logratio = logp - mb.logp_old[i];
        let ratio = logratio.exp();
        let a = (mb.adv[i] - adv_mean) / adv_std;
        let w = weights.map_or(1.0, |w| w[i]);
        let clipped = ratio.clamp(1.0 - c.clip_coef, 1.0 + c.clip_coef);
        let (l1, l2) = (-a * ratio, -a * clipped);
        st.pg_loss += w * l1.max(l2) * inv_m;
        st.old_approx_kl += -logratio * inv_m;
        st.approx_kl += ((ratio - 1.0) - logratio) * inv_m;
        if (ratio - 1.0).abs() > c.clip_coef {
            st.clipfrac += inv_m;
        }
        // ∂L/∂log π_i: only where the unclipped term is the max.
        let g = if l1 >= l2 {
            -w * a * ratio * inv_m
        } else {
            0.0
        };
        for j in 0..act_dim {
            let d = u[j] - mu_i[j];
            dmu[[i, j]] = g * d * inv_var[j];
            dlogstd[j] += g * (d * d * inv_var[j] - 1.0);
        }
    }
    st.entropy = gaussian_entropy(log_std);
    if let Some(grad) = grad {
        let (ga, gl) = grad.split_at_mut(model.actor.n_params());
        model
            .actor
            .backward(model.actor_params(), cache, dmu.view(), ga);
        for (g, d) in gl.iter_mut().zip(&dlogstd) {
            *g += d - c.ent_coef;
        }
    }
    st
}

/// Value loss; adds its gradient (times `vf_coef`) into `grad` (critic params).
fn critic_part(
    model: &ActorCritic,
    mb: &Minibatch,
    c: &LossCoefs,
    cache: &mut Cache,
    dv: &mut Array2<f32>,
    grad: Option<&mut [f32]>,
) -> f32 {
    let m = mb.obs.nrows();
    let inv_m = 1.0 / m as f32;
    if dv.dim() != (m, 1) {
        *dv = Array2::zeros((m, 1));
    }
    let v = model.critic.forward(model.critic_params(), mb.obs, cache);
    let mut v_loss = 0.0;
    for i in 0..m {
        let (vi, ret, vold) = (v[[i, 0]], mb.returns[i], mb.values_old[i]);
        let unclipped = (vi - ret) * (vi - ret);
        let (loss, d) = if c.clip_vloss {
            let delta = (vi - vold).clamp(-c.clip_coef, c.clip_coef);
            let vc = vold + delta;
            let clipped = (vc - ret) * (vc - ret);
            if unclipped >= clipped {
                (unclipped, vi - ret)
            } else {
                // The clipped term wins only when V left the clip range
                // (inside it, V_clip = V and the terms tie), where V_clip
                // is constant in θ: no gradient.
                (clipped, 0.0)
            }
        } else {
            (unclipped, vi - ret)
        };
        v_loss += 0.5 * loss * inv_m;
        dv[[i, 0]] = c.vf_coef * d * inv_m;
    }
    if let Some(grad) = grad {
        model
            .critic
            .backward(model.critic_params(), cache, dv.view(), grad);
    }
    v_loss
}
