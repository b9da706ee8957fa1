//! `--algo ppo` and `--algo a2c`: a rollout of `num_steps` steps in each of
//! `num_envs` plants, GAE(λ) (or n-step) advantages, then
//!
//! - PPO: `ppo.update_epochs` passes of `ppo.num_minibatches` shuffled
//!   minibatches through the clipped surrogate
//!   `L = −E[min(r·Â, clip(r, 1−ε, 1+ε)·Â)]` (6.37), `r = π_θ/π_old`, plus
//!   `c_V` times the value loss and minus `c_ent` times the entropy
//!   ([`crate::loss::ppo_loss`]), stopping the epochs early when approx-KL
//!   passes `ppo.target_kl`;
//! - A2C: one full-batch step on the same loss at `θ = θ_old`, where the
//!   ratio is 1 and the clip inactive: the vanilla policy gradient of the
//!   notes' batch actor-critic.
//!
//! Each step is Adam with global gradient-norm clipping and the run's
//! (optionally annealed) learning rate.

use anyhow::Result;
use ndarray::ArrayView2;
use rand::Rng;

use super::{Trainer, UpdateMetrics};
use crate::config::{AdvantageKind, Algo};
use crate::gae::{gae, GaeInput};
use crate::loss::{ppo_loss, LossCoefs, LossStats, Minibatch};
use crate::pg::nstep_advantages;
use crate::stats::explained_variance;

impl Trainer {
    /// GAE(λ) or n-step advantages of the rollout, and the value targets
    /// `R = Â + V` (PPO, A2C and TRPO).
    pub(super) fn advantages(&mut self) {
        let cfg = &self.state.cfg;
        let inp = GaeInput {
            rewards: &self.buf.rewards,
            values: &self.buf.values,
            next_values: &self.buf.next_values,
            terminated: &self.buf.terminated,
            truncated: &self.buf.truncated,
            num_envs: cfg.num_envs,
        };
        match cfg.advantage {
            AdvantageKind::Gae => gae(&inp, cfg.gamma, cfg.gae_lambda, &mut self.buf.adv),
            AdvantageKind::Nstep => {
                nstep_advantages(&inp, cfg.gamma, cfg.n_step, &mut self.buf.adv)
            }
        }
        for ((r, a), v) in self
            .buf
            .returns
            .iter_mut()
            .zip(&self.buf.adv)
            .zip(&self.buf.values)
        {
            *r = a + v;
        }
    }

    /// Collects a rollout, records its finished episodes and computes the
    /// advantages; returns the finished returns and when the collection
    /// ended (the optimization's clock starts there).
    pub(super) fn rollout_with_advantages(&mut self) -> (Vec<f64>, std::time::Instant) {
        let t0 = std::time::Instant::now();
        let finished = self.collect();
        let t1 = std::time::Instant::now();
        self.seconds.0 += (t1 - t0).as_secs_f64();
        self.record_returns(&finished);
        self.advantages();
        (finished, t1)
    }

    /// Fisher–Yates shuffle of `idx` with the run's RNG.
    pub(super) fn shuffle(&mut self, idx: &mut [usize]) {
        for i in (1..idx.len()).rev() {
            let j = self.state.rng.random_range(0..=i);
            idx.swap(i, j);
        }
    }

    /// One PPO or A2C update (see the module docs).
    pub(super) fn ppo_update(&mut self) -> Result<UpdateMetrics> {
        let cfg = self.state.cfg.clone();
        let update = self.state.update + 1;
        let (finished, t1) = self.rollout_with_advantages();

        let lr = self.learning_rate(update);
        let coefs = LossCoefs {
            clip_coef: cfg.ppo.clip_coef,
            clip_vloss: cfg.ppo.clip_vloss,
            ent_coef: cfg.ent_coef,
            vf_coef: cfg.vf_coef,
            norm_adv: cfg.norm_adv,
        };
        let (b, mbs) = (cfg.batch_size(), cfg.minibatch_size());
        let (od, ad) = (self.state.model.obs_dim(), self.state.model.act_dim());
        let mut idx: Vec<usize> = (0..b).collect();
        let mut grad = vec![0.0f32; self.state.model.params.len()];
        let mut mbuf = MinibatchBuf::new(mbs, od, ad);
        let mut sum = LossStats::default();
        let (mut count, mut gnorm_sum, mut epochs) = (0u32, 0.0f32, 0u32);
        let (update_epochs, _) = cfg.epochs_and_minibatches();
        'epochs: for _ in 0..update_epochs {
            epochs += 1;
            self.shuffle(&mut idx);
            let mut epoch_kl = 0.0;
            for chunk in idx.chunks_exact(mbs) {
                mbuf.gather(&self.buf, chunk);
                let mb = mbuf.view();
                grad.fill(0.0);
                let st = ppo_loss(
                    &self.state.model,
                    &mb,
                    &coefs,
                    &mut self.ws,
                    Some(&mut grad),
                );
                let gn = self.optimizer_step(&st, &mut grad, lr, update)?;
                sum.add(&st);
                gnorm_sum += gn;
                count += 1;
                epoch_kl = st.approx_kl;
            }
            // One step at θ_old (A2C) has nothing to stop.
            let target_kl = if cfg.algo == Algo::Ppo {
                cfg.ppo.target_kl
            } else {
                0.0
            };
            if target_kl > 0.0 && epoch_kl > target_kl {
                break 'epochs;
            }
        }
        self.state.update = update;
        self.seconds.1 += t1.elapsed().as_secs_f64();

        let c = count.max(1) as f32;
        let avg = sum.mean(count);
        let ev = explained_variance(&self.buf.returns, &self.buf.values);
        let ep_mean = if finished.is_empty() {
            f64::NAN
        } else {
            finished.iter().sum::<f64>() / finished.len() as f64
        };
        let rr = &self.state.recent_returns;
        Ok(UpdateMetrics {
            update,
            global_step: self.state.global_step,
            episodic_return: ep_mean,
            recent_return: if rr.is_empty() {
                f64::NAN
            } else {
                rr.iter().sum::<f64>() / rr.len() as f64
            },
            episodes: finished.len() as u32,
            learning_rate: lr,
            pg_loss: avg.pg_loss,
            v_loss: avg.v_loss,
            entropy: avg.entropy,
            approx_kl: avg.approx_kl,
            old_approx_kl: avg.old_approx_kl,
            clipfrac: avg.clipfrac,
            explained_variance: ev as f32,
            grad_norm: gnorm_sum / c,
            epochs,
            std: self.mean_sigma(),
            sps: 0.0,
        })
    }
}

/// The rows of one minibatch, gathered from the rollout.
pub(super) struct MinibatchBuf {
    rows: usize,
    od: usize,
    ad: usize,
    obs: Vec<f32>,
    act: Vec<f32>,
    logp: Vec<f32>,
    adv: Vec<f32>,
    ret: Vec<f32>,
    val: Vec<f32>,
}

impl MinibatchBuf {
    /// Room for `rows` rows of `od` observations and `ad` actions.
    pub(super) fn new(rows: usize, od: usize, ad: usize) -> Self {
        MinibatchBuf {
            rows,
            od,
            ad,
            obs: vec![0.0; rows * od],
            act: vec![0.0; rows * ad],
            logp: vec![0.0; rows],
            adv: vec![0.0; rows],
            ret: vec![0.0; rows],
            val: vec![0.0; rows],
        }
    }

    /// Copies rollout rows `chunk` (`rows` of them) in.
    pub(super) fn gather(&mut self, buf: &super::Rollout, chunk: &[usize]) {
        let (od, ad) = (self.od, self.ad);
        for (k, &i) in chunk.iter().enumerate() {
            self.obs[k * od..(k + 1) * od].copy_from_slice(&buf.obs[i * od..(i + 1) * od]);
            self.act[k * ad..(k + 1) * ad].copy_from_slice(&buf.actions[i * ad..(i + 1) * ad]);
            self.logp[k] = buf.logp[i];
            self.adv[k] = buf.adv[i];
            self.ret[k] = buf.returns[i];
            self.val[k] = buf.values[i];
        }
    }

    /// The gathered minibatch.
    pub(super) fn view(&self) -> Minibatch<'_> {
        Minibatch {
            obs: ArrayView2::from_shape((self.rows, self.od), &self.obs).expect("rows"),
            actions: ArrayView2::from_shape((self.rows, self.ad), &self.act).expect("rows"),
            logp_old: &self.logp,
            adv: &self.adv,
            returns: &self.ret,
            values_old: &self.val,
        }
    }
}
