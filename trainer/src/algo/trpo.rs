//! `--algo trpo`: the rollout and GAE(λ) advantages of PPO, then the
//! constrained problem PPO's clip approximates (notes (6.33)–(6.34)):
//!
//! 1. `g = ∇_θ [L(θ) + c_ent·H(θ)]` at `θ_old`, with the surrogate
//!    `L(θ) = (1/B) Σ_t r_t(θ) Â_t`, `r_t = π_θ(u_t|x_t)/π_old(u_t|x_t)`
//!    (6.35) and `Â` normalized over the batch when `norm_adv`;
//! 2. `x ≈ (F + λI)⁻¹ g` by [`conjugate_gradient`] on exact Fisher–vector
//!    products ([`FisherVector`], the Gauss–Newton form `Jᵀ M J`);
//! 3. the full step `Δ = √(2δ / xᵀ(F + λI)x) · x`, then the line search:
//!    the first of `Δ, αΔ, α²Δ, …` whose exact mean KL is `≤ δ` and whose
//!    surrogate improved is taken, else none ([`line_search`]);
//! 4. the critic regresses on the returns `Â + V_old` (Adam, `vf_epochs`
//!    epochs of `vf_minibatches` minibatches; the policy's parameters
//!    have zero gradient and zero Adam moments, so Adam never moves them).
//!
//! Per update, `metrics.csv` holds the accepted step's exact mean KL in
//! `losses/approx_kl`, minus its surrogate improvement in
//! `losses/policy_loss`, the fraction of the full step taken in
//! `losses/clipfrac` (0: rejected) and the line-search tries in `epochs`.

use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView2};

use super::ppo::MinibatchBuf;
use super::{Trainer, UpdateMetrics};
use crate::loss::{value_loss, LossCoefs, LossStats};
use crate::mlp::Cache;
use crate::model::{gaussian_entropy, gaussian_log_prob};
use crate::stats::explained_variance;
use crate::trpo::{conjugate_gradient, dot, line_search, mean_kl, means, FisherVector};

/// `Â`, normalized to mean 0 and standard deviation 1 (f64 statistics)
/// when `norm`.
fn advantages(adv: &[f32], norm: bool) -> Vec<f32> {
    if !norm || adv.len() < 2 {
        return adv.to_vec();
    }
    let n = adv.len() as f64;
    let mean = adv.iter().map(|&a| a as f64).sum::<f64>() / n;
    let var = adv.iter().map(|&a| (a as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let inv = 1.0 / (var.sqrt() + 1e-8);
    adv.iter()
        .map(|&a| ((a as f64 - mean) * inv) as f32)
        .collect()
}

/// `(1/B) Σ_t exp(log π_θ(u_t|x_t) − log π_old(u_t|x_t)) Â_t + c_ent H(θ)`
/// for the means `mu` and `log_std` of θ (f64).
fn surrogate(
    mu: ArrayView2<f32>,
    log_std: &[f32],
    actions: ArrayView2<f32>,
    logp_old: &[f32],
    adv: &[f32],
    ent_coef: f32,
) -> f64 {
    let b = adv.len().max(1) as f64;
    let mut sum = 0.0f64;
    for (((m, u), &lo), &a) in mu
        .rows()
        .into_iter()
        .zip(actions.rows())
        .zip(logp_old)
        .zip(adv)
    {
        let lp = gaussian_log_prob(
            u.as_slice().expect("contiguous"),
            m.as_slice().expect("contiguous"),
            log_std,
        );
        sum += ((lp - lo) as f64).exp() * a as f64;
    }
    sum / b + ent_coef as f64 * gaussian_entropy(log_std) as f64
}

impl Trainer {
    /// One TRPO update (see the module docs).
    pub(super) fn trpo_update(&mut self) -> Result<UpdateMetrics> {
        let cfg = self.state.cfg.clone();
        let tc = cfg.trpo.clone();
        let update = self.state.update + 1;
        let (finished, t1) = self.rollout_with_advantages();

        let b = cfg.batch_size();
        let (od, ad) = (self.state.model.obs_dim(), self.state.model.act_dim());
        let adv = advantages(&self.buf.adv, cfg.norm_adv);
        let obs = ArrayView2::from_shape((b, od), &self.buf.obs[..b * od])?;
        let actions = ArrayView2::from_shape((b, ad), &self.buf.actions[..b * ad])?;

        // 1. The surrogate's gradient at θ_old.
        let model = &self.state.model;
        let na = model.actor_range().len();
        let dim = model.critic_range().start;
        let log_std_old = model.log_std().to_vec();
        let inv_var: Vec<f32> = log_std_old.iter().map(|&l| (-2.0 * l).exp()).collect();
        let mut cache = Cache::default();
        let mu_old = model
            .actor
            .forward(model.actor_params(), obs, &mut cache)
            .to_owned();
        // log π_old recomputed (the rollout's is the same policy; this one
        // is the exact f32 of the ratio's denominator).
        let logp_old: Vec<f32> = mu_old
            .rows()
            .into_iter()
            .zip(actions.rows())
            .map(|(m, u)| {
                gaussian_log_prob(
                    u.as_slice().expect("contiguous"),
                    m.as_slice().expect("contiguous"),
                    &log_std_old,
                )
            })
            .collect();
        let mut dmu = Array2::<f32>::zeros((b, ad));
        let mut g = vec![0.0f32; dim];
        let inv_b = 1.0 / b as f32;
        for i in 0..b {
            for j in 0..ad {
                let z = actions[[i, j]] - mu_old[[i, j]];
                dmu[[i, j]] = adv[i] * z * inv_var[j] * inv_b;
                g[na + j] += adv[i] * (z * z * inv_var[j] - 1.0) * inv_b;
            }
        }
        for gj in &mut g[na..] {
            *gj += cfg.ent_coef;
        }
        model
            .actor
            .backward(model.actor_params(), &mut cache, dmu.view(), &mut g[..na]);

        // 2–3. The natural-gradient direction and the full step.
        let mut fvp = FisherVector::new(model, obs, tc.cg_damping);
        let (x, _) = conjugate_gradient(|v| fvp.apply(v), &g, tc.cg_iters, 1e-10);
        let xfx = dot(&x, &fvp.apply(&x));
        let beta = if xfx > 0.0 && xfx.is_finite() {
            (2.0 * tc.max_kl as f64 / xfx).sqrt()
        } else {
            0.0
        };
        let theta_old: Vec<f32> = model.params[..dim].to_vec();
        let l_old = surrogate(
            mu_old.view(),
            &log_std_old,
            actions,
            &logp_old,
            &adv,
            cfg.ent_coef,
        );
        let candidate = |f: f32| -> Vec<f32> {
            theta_old
                .iter()
                .zip(&x)
                .map(|(&t, &xi)| t + (f as f64 * beta * xi as f64) as f32)
                .collect()
        };
        let ls = line_search(
            |f| {
                let th = candidate(f);
                let mu = means(model, &th[..na], obs);
                let (ls_new, ls_old) = (&th[na..], &log_std_old);
                let l = surrogate(mu.view(), ls_new, actions, &logp_old, &adv, cfg.ent_coef);
                (l - l_old, mean_kl(mu_old.view(), ls_old, mu.view(), ls_new))
            },
            tc.max_kl as f64,
            tc.backtrack_coef,
            tc.max_backtracks,
        );
        if ls.fraction > 0.0 {
            let th = candidate(ls.fraction);
            if let Some(k) = th.iter().position(|p| !p.is_finite()) {
                bail!(
                    "training diverged at update {update}: weight {k} became {}",
                    th[k]
                );
            }
            self.state.model.params[..dim].copy_from_slice(&th);
        }

        // 4. The critic.
        let lr = self.learning_rate(update);
        let coefs = LossCoefs {
            clip_coef: cfg.ppo.clip_coef,
            clip_vloss: false,
            ent_coef: 0.0,
            vf_coef: cfg.vf_coef,
            norm_adv: false,
        };
        let mbs = cfg.minibatch_size();
        let mut idx: Vec<usize> = (0..b).collect();
        let mut grad = vec![0.0f32; self.state.model.params.len()];
        let mut mbuf = MinibatchBuf::new(mbs, od, ad);
        let (mut v_sum, mut gnorm_sum, mut count) = (0.0f32, 0.0f32, 0u32);
        let entropy = gaussian_entropy(self.state.model.log_std());
        let critic = self.state.model.critic_range();
        for _ in 0..tc.vf_epochs {
            self.shuffle(&mut idx);
            for chunk in idx.chunks_exact(mbs) {
                mbuf.gather(&self.buf, chunk);
                grad.fill(0.0);
                let v_loss = value_loss(
                    &self.state.model,
                    &mbuf.view(),
                    &coefs,
                    &mut self.ws,
                    Some(&mut grad[critic.clone()]),
                );
                let st = LossStats {
                    total: cfg.vf_coef * v_loss,
                    pg_loss: -ls.improvement as f32,
                    v_loss,
                    entropy,
                    ..LossStats::default()
                };
                gnorm_sum += self.optimizer_step(&st, &mut grad, lr, update)?;
                v_sum += v_loss;
                count += 1;
            }
        }
        self.state.update = update;
        self.seconds.1 += t1.elapsed().as_secs_f64();

        let ev = explained_variance(&self.buf.returns, &self.buf.values);
        let rr = &self.state.recent_returns;
        let mean = |v: &mut dyn Iterator<Item = f64>, n: usize| {
            if n == 0 {
                f64::NAN
            } else {
                v.sum::<f64>() / n as f64
            }
        };
        Ok(UpdateMetrics {
            update,
            global_step: self.state.global_step,
            episodic_return: mean(&mut finished.iter().copied(), finished.len()),
            recent_return: mean(&mut rr.iter().copied(), rr.len()),
            episodes: finished.len() as u32,
            learning_rate: lr,
            pg_loss: -ls.improvement as f32,
            v_loss: v_sum / count.max(1) as f32,
            entropy,
            approx_kl: ls.kl as f32,
            old_approx_kl: f32::NAN,
            clipfrac: ls.fraction,
            explained_variance: ev as f32,
            grad_norm: gnorm_sum / count.max(1) as f32,
            epochs: ls.tries,
            std: self.mean_sigma(),
            sps: 0.0,
        })
    }
}
