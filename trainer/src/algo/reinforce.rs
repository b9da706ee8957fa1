//! `--algo reinforce`: the notes' REINFORCE on batches of complete episodes.
//!
//! Each update runs one episode in each of the `num_envs` plants
//! ([`collect_episodes`], the same stochastic policy and observation
//! normalization as PPO's rollouts), forms the weights ψ of the configured
//! estimator ([`crate::pg`]: full return or reward-to-go; no, mean, value
//! or optimal baseline) and takes one Adam step on
//!
//! ```text
//! L = −(1/N) Σ_i Σ_t ψ_it log π_θ(a_it|s_it) / s_ψ  − c_ent H[π]  + c_V ½ mean_t (V̂_φ(s_t) − ŷ_t)²
//! ```
//!
//! where `s_ψ` is the standard deviation of the weights when `norm_adv`
//! (a step-size normalization: ψ is scaled, never centred, so "no
//! baseline" stays no baseline). The critic (only trained with
//! `reinforce.baseline = "value"`) fits normalized targets `ŷ = (y − m)/s`, with
//! `m, s` running statistics of the targets y (Monte-Carlo reward-to-go or
//! bootstrapped `r + γV(s')`), and predicts `V = m + s · V̂_φ`. Rewards are
//! used as the plant returns them (`norm_reward` does not apply).

use std::time::Instant;

use anyhow::Result;
use ndarray::{Array2, ArrayView2};

use super::{Trainer, UpdateMetrics};
use crate::loss::LossStats;
use crate::mlp::Cache;
use crate::model::{gaussian_entropy, gaussian_log_prob};
use crate::pg::{
    collect_episodes, logp_grad, policy_gradient, value_targets, weights, Baseline, BatchValues,
    Estimator, ObsNorm, PgOptions,
};
use crate::stats::{explained_variance, mean_std};

impl Trainer {
    /// One REINFORCE update (see the module docs).
    pub(super) fn reinforce_update(&mut self) -> Result<UpdateMetrics> {
        let cfg = self.state.cfg.clone();
        let update = self.state.update + 1;
        let lr = self.learning_rate(update);
        let t0 = Instant::now();
        let norm = ObsNorm {
            enabled: cfg.norm_obs,
            clip: cfg.obs_clip,
            update: true,
        };
        let batch = collect_episodes(
            &self.state.model,
            &mut self.envs,
            &mut self.state.obs_rms,
            norm,
            &mut self.state.rng,
        );
        let t1 = Instant::now();
        self.seconds.0 += (t1 - t0).as_secs_f64();
        let finished = batch.undiscounted_returns();
        self.record_returns(&finished);
        self.state.global_step += batch.steps() as u64;

        let model = &self.state.model;
        let (n_ep, steps) = (batch.episodes() as f32, batch.steps());
        let opts = PgOptions {
            gamma: cfg.gamma,
            time_discount: false,
        };
        let use_values = cfg.reinforce.baseline == Baseline::Value;
        // V = m + s · V̂ with the target statistics before this batch.
        let (m, s) = {
            let (mean, inv) = self.state.target_rms.export();
            (mean[0], 1.0 / inv[0])
        };
        let values = use_values.then(|| {
            let mut v = BatchValues::of(model, &batch, s);
            v.values.iter_mut().for_each(|x| *x += m);
            for (x, &t) in v.final_values.iter_mut().zip(&batch.terminated) {
                if !t {
                    *x += m;
                }
            }
            v
        });

        // Policy part: ascent direction ĝ, scaled by 1/s_ψ.
        let est = Estimator::Reinforce(cfg.reinforce.pg_return, cfg.reinforce.baseline);
        let p = model.critic_range().start;
        let mut grad = vec![0.0f32; model.params.len()];
        let mut cache = Cache::default();
        let (ghat, psi) = if cfg.reinforce.baseline == Baseline::Optimal {
            let g = policy_gradient(model, &batch, est, None, &opts);
            // The step's representative weights: r(τ_i) on every step.
            let rets = batch.returns(cfg.gamma);
            let psi = (0..batch.episodes())
                .flat_map(|i| std::iter::repeat_n(rets[i], batch.range(i).len()))
                .collect::<Vec<f32>>();
            (g, psi)
        } else {
            let psi = weights(&batch, est, values.as_ref(), &opts);
            let w: Vec<f32> = psi.iter().map(|x| x / n_ep).collect();
            let mut g = vec![0.0f32; p];
            logp_grad(model, &batch.obs, &batch.actions, &w, &mut cache, &mut g);
            (g, psi)
        };
        let scale = if cfg.norm_adv {
            1.0 / (mean_std(&psi).1 as f32 + 1e-8)
        } else {
            1.0
        };
        for (g, &h) in grad[..p].iter_mut().zip(&ghat) {
            *g = -h * scale;
        }
        for g in &mut grad[model.log_std_range()] {
            *g -= cfg.ent_coef;
        }
        // The surrogate's value (for the metrics and the finiteness guard).
        let (od, ad) = (batch.obs_dim, batch.act_dim);
        let x = ArrayView2::from_shape((steps, od), &batch.obs).expect("rows");
        let mu = model.actor.forward(model.actor_params(), x, &mut cache);
        let pg_loss = -(0..steps)
            .map(|t| {
                let lp = gaussian_log_prob(
                    &batch.actions[t * ad..(t + 1) * ad],
                    mu.row(t).as_slice().expect("contiguous"),
                    model.log_std(),
                );
                psi[t] * lp
            })
            .sum::<f32>()
            * scale
            / n_ep;

        // Critic part: regression on the normalized targets.
        let (mut v_loss, mut ev) = (0.0f32, f64::NAN);
        if use_values {
            let v = values.as_ref().expect("values");
            let y = value_targets(&batch, cfg.reinforce.value_target, Some(v), cfg.gamma);
            ev = explained_variance(&y, &v.values);
            self.state.target_rms.update(&y);
            let (mean, inv) = self.state.target_rms.export();
            let v_hat = model
                .critic
                .forward(model.critic_params(), x, &mut cache)
                .to_owned();
            let mut dv = Array2::<f32>::zeros((steps, 1));
            let inv_m = 1.0 / steps as f32;
            for t in 0..steps {
                let d = v_hat[[t, 0]] - (y[t] - mean[0]) * inv[0];
                v_loss += 0.5 * d * d * inv_m;
                dv[[t, 0]] = cfg.vf_coef * d * inv_m;
            }
            model.critic.backward(
                model.critic_params(),
                &mut cache,
                dv.view(),
                &mut grad[model.critic_range()],
            );
        }
        let entropy = gaussian_entropy(model.log_std());
        let st = LossStats {
            total: pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss,
            pg_loss,
            v_loss,
            entropy,
            approx_kl: f32::NAN,
            old_approx_kl: f32::NAN,
            clipfrac: f32::NAN,
        };
        let gn = self.optimizer_step(&st, &mut grad, lr, update)?;
        self.state.update = update;
        self.seconds.1 += t1.elapsed().as_secs_f64();

        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let rr: Vec<f64> = self.state.recent_returns.iter().copied().collect();
        Ok(UpdateMetrics {
            update,
            global_step: self.state.global_step,
            episodic_return: mean(&finished),
            recent_return: mean(&rr),
            episodes: finished.len() as u32,
            learning_rate: lr,
            pg_loss,
            v_loss,
            entropy,
            approx_kl: f32::NAN,
            old_approx_kl: f32::NAN,
            clipfrac: f32::NAN,
            explained_variance: ev as f32,
            grad_norm: gn,
            epochs: 1,
            std: self.mean_sigma(),
            sps: 0.0,
        })
    }
}
