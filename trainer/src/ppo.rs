//! The PPO training loop: vectorized rollouts, GAE, clipped updates.
//!
//! One *update* = a rollout of `num_steps` steps in each of `num_envs`
//! plants, GAE advantages (see [`crate::gae`]), then `update_epochs` passes
//! of shuffled minibatches through [`crate::loss::ppo_loss`], Adam with
//! global gradient-norm clipping, a linearly annealed learning rate, and an
//! optional early stop when approx-KL exceeds `target_kl`.
//!
//! The sampled (unclipped) action is stored and used in the loss; only the
//! action sent to the plant is clipped to the bounds.

use std::collections::VecDeque;

use anyhow::{bail, Result};
use ndarray::{Array2, ArrayView2};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tinyppo_runtime::gaussian::standard_normals;
use tinyppo_runtime::rng::{seeded, DefaultRng};

use crate::config::PpoConfig;
use crate::env::{make_env, Env};
use crate::gae::{gae, GaeInput};
use crate::loss::{ppo_loss, LossCoefs, LossStats, Minibatch, Workspace};
use crate::mlp::Cache;
use crate::model::{gaussian_log_prob, ActorCritic};
use crate::normalize::{normalize_obs, RewardScaler, RunningMeanStd};
use crate::optim::{clip_grad_norm, Adam};

/// Everything that defines a run's state between updates (the checkpoint).
#[derive(Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Resolved configuration.
    pub cfg: PpoConfig,
    /// Networks and log-std.
    pub model: ActorCritic,
    /// Optimizer state.
    pub adam: Adam,
    /// Observation statistics (exported with the policy).
    pub obs_rms: RunningMeanStd,
    /// Reward scaling state.
    pub reward_scaler: RewardScaler,
    /// The run's random stream (sampling, shuffling, plant resets).
    pub rng: DefaultRng,
    /// Environment steps so far.
    pub global_step: u64,
    /// Updates completed.
    pub update: u64,
    /// Returns of the last finished episodes (up to 100).
    pub recent_returns: VecDeque<f64>,
}

/// Metrics of one update (one `metrics.csv` row; CleanRL's key names).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct UpdateMetrics {
    /// Update index (1-based).
    pub update: u64,
    /// Environment steps so far.
    pub global_step: u64,
    /// Mean return of the episodes finished in this rollout (NaN if none).
    #[serde(rename = "charts/episodic_return")]
    pub episodic_return: f64,
    /// Mean of the last ≤ 100 episode returns.
    #[serde(rename = "charts/recent_return")]
    pub recent_return: f64,
    /// Episodes finished in this rollout.
    #[serde(rename = "charts/episodes")]
    pub episodes: u32,
    /// Learning rate used.
    #[serde(rename = "charts/learning_rate")]
    pub learning_rate: f32,
    /// Minibatch means of the loss terms.
    #[serde(rename = "losses/policy_loss")]
    pub pg_loss: f32,
    /// Value loss.
    #[serde(rename = "losses/value_loss")]
    pub v_loss: f32,
    /// Entropy.
    #[serde(rename = "losses/entropy")]
    pub entropy: f32,
    /// Approx KL (k3).
    #[serde(rename = "losses/approx_kl")]
    pub approx_kl: f32,
    /// `mean(−log r)`.
    #[serde(rename = "losses/old_approx_kl")]
    pub old_approx_kl: f32,
    /// Clip fraction.
    #[serde(rename = "losses/clipfrac")]
    pub clipfrac: f32,
    /// `1 − Var(R − V)/Var(R)`.
    #[serde(rename = "losses/explained_variance")]
    pub explained_variance: f32,
    /// Mean gradient norm before clipping.
    #[serde(rename = "losses/grad_norm")]
    pub grad_norm: f32,
    /// Epochs run (fewer than `update_epochs` after a KL early stop).
    #[serde(rename = "charts/epochs")]
    pub epochs: u32,
    /// Mean σ of the policy.
    #[serde(rename = "charts/action_std")]
    pub std: f32,
    /// Environment steps per second of this update (wall clock).
    #[serde(rename = "charts/sps")]
    pub sps: f64,
}

/// Rollout storage, time-major `T × N`.
struct Rollout {
    obs: Vec<f32>,
    actions: Vec<f32>,
    logp: Vec<f32>,
    values: Vec<f32>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    next_values: Vec<f32>,
    adv: Vec<f32>,
    returns: Vec<f32>,
}

/// A training run: state plus the live plants.
pub struct Trainer {
    /// The checkpointable state.
    pub state: TrainState,
    envs: Vec<Box<dyn Env>>,
    obs_raw: Vec<f32>,
    ep_return: Vec<f64>,
    low: Vec<f32>,
    high: Vec<f32>,
    buf: Rollout,
    actor_cache: Cache,
    critic_cache: Cache,
    ws: Workspace,
}

impl Trainer {
    /// A fresh run from a resolved configuration.
    pub fn new(cfg: PpoConfig) -> Result<Self> {
        cfg.validate()?;
        let probe = make_env(&cfg.env)?;
        let mut rng = seeded(cfg.seed);
        let model = ActorCritic::new(
            probe.obs_dim(),
            probe.act_dim(),
            &cfg.actor_hidden,
            &cfg.critic_hidden,
            cfg.activation,
            cfg.init_log_std,
            &mut rng,
        );
        let state = TrainState {
            adam: Adam::new(model.params.len(), cfg.adam_eps),
            obs_rms: RunningMeanStd::new(probe.obs_dim()),
            reward_scaler: RewardScaler::new(cfg.num_envs, cfg.gamma, cfg.reward_clip),
            model,
            rng,
            global_step: 0,
            update: 0,
            recent_returns: VecDeque::new(),
            cfg,
        };
        Self::from_state(state)
    }

    /// Continues a run from a checkpointed state. Plants start new
    /// episodes (episodes in flight at the checkpoint are not restored).
    pub fn from_state(mut state: TrainState) -> Result<Self> {
        let cfg = &state.cfg;
        let envs: Vec<Box<dyn Env>> = (0..cfg.num_envs)
            .map(|_| make_env(&cfg.env))
            .collect::<Result<_>>()?;
        let (od, ad) = (envs[0].obs_dim(), envs[0].act_dim());
        if state.model.obs_dim() != od || state.model.act_dim() != ad {
            bail!(
                "model dims {}→{} do not match plant {} ({}→{})",
                state.model.obs_dim(),
                state.model.act_dim(),
                cfg.env,
                od,
                ad
            );
        }
        let n = cfg.num_envs;
        let b = cfg.batch_size();
        let mut obs_raw = vec![0.0; n * od];
        let mut envs = envs;
        for (e, o) in envs.iter_mut().zip(obs_raw.chunks_mut(od)) {
            e.reset(&mut state.rng, o);
        }
        let (low, high) = (envs[0].action_low(), envs[0].action_high());
        let buf = Rollout {
            obs: vec![0.0; b * od],
            actions: vec![0.0; b * ad],
            logp: vec![0.0; b],
            values: vec![0.0; b],
            rewards: vec![0.0; b],
            terminated: vec![false; b],
            truncated: vec![false; b],
            next_values: vec![0.0; b],
            adv: vec![0.0; b],
            returns: vec![0.0; b],
        };
        Ok(Trainer {
            state,
            envs,
            obs_raw,
            ep_return: vec![0.0; n],
            low,
            high,
            buf,
            actor_cache: Cache::default(),
            critic_cache: Cache::default(),
            ws: Workspace::default(),
        })
    }

    /// True once `total_timesteps` is reached.
    pub fn done(&self) -> bool {
        self.state.update >= self.state.cfg.num_updates()
    }

    fn normalized(&self, raw: &[f32]) -> Vec<f32> {
        let mut x = raw.to_vec();
        if self.state.cfg.norm_obs {
            let (mean, inv) = self.state.obs_rms.export();
            for row in x.chunks_mut(mean.len()) {
                normalize_obs(row, &mean, &inv, self.state.cfg.obs_clip);
            }
        }
        x
    }

    fn values_of(&mut self, obs_norm: &[f32]) -> Vec<f32> {
        let m = &self.state.model;
        let x = Array2::from_shape_vec(
            (obs_norm.len() / m.obs_dim(), m.obs_dim()),
            obs_norm.to_vec(),
        )
        .expect("whole rows");
        m.critic
            .forward(m.critic_params(), x.view(), &mut self.critic_cache)
            .column(0)
            .to_vec()
    }

    /// Collects one rollout; returns finished-episode returns.
    fn collect(&mut self) -> Vec<f64> {
        let cfg = self.state.cfg.clone();
        let (n, t_len) = (cfg.num_envs, cfg.num_steps);
        let (od, ad) = (self.state.model.obs_dim(), self.state.model.act_dim());
        let mut finished = Vec::new();
        let mut z = vec![0.0f32; ad];
        let mut applied = vec![0.0f32; ad];
        let mut next_obs = vec![0.0f32; od];
        for t in 0..t_len {
            if cfg.norm_obs {
                self.state.obs_rms.update(&self.obs_raw);
            }
            let x = self.normalized(&self.obs_raw);
            let base = t * n;
            self.buf.obs[base * od..(base + n) * od].copy_from_slice(&x);
            let xv = ArrayView2::from_shape((n, od), &x).expect("rows");
            let m = &self.state.model;
            let mu = m
                .actor
                .forward(m.actor_params(), xv, &mut self.actor_cache)
                .to_owned();
            let v = m
                .critic
                .forward(m.critic_params(), xv, &mut self.critic_cache);
            for e in 0..n {
                self.buf.values[base + e] = v[[e, 0]];
            }
            let log_std = self.state.model.log_std().to_vec();
            let mut rewards = vec![0.0f32; n];
            let mut dones = vec![false; n];
            for e in 0..n {
                let i = base + e;
                standard_normals(&mut self.state.rng, &mut z);
                let u = &mut self.buf.actions[i * ad..(i + 1) * ad];
                for j in 0..ad {
                    u[j] = mu[[e, j]] + log_std[j].exp() * z[j];
                    applied[j] = u[j].clamp(self.low[j], self.high[j]);
                }
                self.buf.logp[i] =
                    gaussian_log_prob(u, mu.row(e).as_slice().expect("contiguous"), &log_std);
                let (r, term, trunc) = self.envs[e].step(&applied, &mut next_obs);
                self.ep_return[e] += r as f64;
                rewards[e] = r;
                self.buf.terminated[i] = term;
                self.buf.truncated[i] = trunc && !term;
                dones[e] = term || trunc;
                self.buf.next_values[i] = 0.0;
                if trunc && !term {
                    // Bootstrap from the final observation of the cut episode.
                    let xf = self.normalized(&next_obs);
                    self.buf.next_values[i] = self.values_of(&xf)[0];
                }
                if term || trunc {
                    finished.push(self.ep_return[e]);
                    self.ep_return[e] = 0.0;
                    self.envs[e].reset(&mut self.state.rng, &mut next_obs);
                }
                self.obs_raw[e * od..(e + 1) * od].copy_from_slice(&next_obs);
            }
            if cfg.norm_reward {
                self.state.reward_scaler.scale(&mut rewards, &dones);
            }
            self.buf.rewards[base..base + n].copy_from_slice(&rewards);
        }
        // Successor values of non-final steps are the next step's values; the
        // last step bootstraps from the current observations.
        let x = self.normalized(&self.obs_raw);
        let last = self.values_of(&x);
        for t in 0..t_len {
            for e in 0..n {
                let i = t * n + e;
                if !(self.buf.terminated[i] || self.buf.truncated[i]) {
                    self.buf.next_values[i] = if t + 1 < t_len {
                        self.buf.values[i + n]
                    } else {
                        last[e]
                    };
                }
            }
        }
        self.state.global_step += (n * t_len) as u64;
        finished
    }

    /// Runs one update (rollout + optimization) and returns its metrics, or
    /// an error naming the quantity that became non-finite.
    pub fn step_update(&mut self) -> Result<UpdateMetrics> {
        let cfg = self.state.cfg.clone();
        let update = self.state.update + 1;
        let finished = self.collect();
        for &r in &finished {
            if self.state.recent_returns.len() == 100 {
                self.state.recent_returns.pop_front();
            }
            self.state.recent_returns.push_back(r);
        }

        let inp = GaeInput {
            rewards: &self.buf.rewards,
            values: &self.buf.values,
            next_values: &self.buf.next_values,
            terminated: &self.buf.terminated,
            truncated: &self.buf.truncated,
            num_envs: cfg.num_envs,
        };
        gae(&inp, cfg.gamma, cfg.gae_lambda, &mut self.buf.adv);
        for ((r, a), v) in self
            .buf
            .returns
            .iter_mut()
            .zip(&self.buf.adv)
            .zip(&self.buf.values)
        {
            *r = a + v;
        }

        let frac = 1.0 - (update - 1) as f32 / cfg.num_updates() as f32;
        let lr = if cfg.anneal_lr {
            frac * cfg.learning_rate
        } else {
            cfg.learning_rate
        };
        let coefs = LossCoefs {
            clip_coef: cfg.clip_coef,
            clip_vloss: cfg.clip_vloss,
            ent_coef: cfg.ent_coef,
            vf_coef: cfg.vf_coef,
            norm_adv: cfg.norm_adv,
        };
        let (b, mbs) = (cfg.batch_size(), cfg.minibatch_size());
        let (od, ad) = (self.state.model.obs_dim(), self.state.model.act_dim());
        let mut idx: Vec<usize> = (0..b).collect();
        let mut grad = vec![0.0f32; self.state.model.params.len()];
        let (mut mb_obs, mut mb_act) = (vec![0.0f32; mbs * od], vec![0.0f32; mbs * ad]);
        let (mut mb_logp, mut mb_adv, mut mb_ret, mut mb_val) = (
            vec![0.0f32; mbs],
            vec![0.0f32; mbs],
            vec![0.0f32; mbs],
            vec![0.0f32; mbs],
        );
        let mut sum = LossStats::default();
        let (mut count, mut gnorm_sum, mut epochs) = (0u32, 0.0f32, 0u32);
        'epochs: for _ in 0..cfg.update_epochs {
            epochs += 1;
            // Fisher–Yates with the run's RNG.
            for i in (1..b).rev() {
                let j = self.state.rng.random_range(0..=i);
                idx.swap(i, j);
            }
            let mut epoch_kl = 0.0;
            for chunk in idx.chunks_exact(mbs) {
                for (k, &i) in chunk.iter().enumerate() {
                    mb_obs[k * od..(k + 1) * od]
                        .copy_from_slice(&self.buf.obs[i * od..(i + 1) * od]);
                    mb_act[k * ad..(k + 1) * ad]
                        .copy_from_slice(&self.buf.actions[i * ad..(i + 1) * ad]);
                    mb_logp[k] = self.buf.logp[i];
                    mb_adv[k] = self.buf.adv[i];
                    mb_ret[k] = self.buf.returns[i];
                    mb_val[k] = self.buf.values[i];
                }
                let mb = Minibatch {
                    obs: ArrayView2::from_shape((mbs, od), &mb_obs).expect("rows"),
                    actions: ArrayView2::from_shape((mbs, ad), &mb_act).expect("rows"),
                    logp_old: &mb_logp,
                    adv: &mb_adv,
                    returns: &mb_ret,
                    values_old: &mb_val,
                };
                grad.fill(0.0);
                let st = ppo_loss(
                    &self.state.model,
                    &mb,
                    &coefs,
                    &mut self.ws,
                    Some(&mut grad),
                );
                for (name, v) in [
                    ("policy loss", st.pg_loss),
                    ("value loss", st.v_loss),
                    ("entropy", st.entropy),
                ] {
                    if !v.is_finite() {
                        bail!("training diverged at update {update}: {name} is {v}");
                    }
                }
                let gn = clip_grad_norm(&mut grad, cfg.max_grad_norm);
                if !gn.is_finite() {
                    bail!("training diverged at update {update}: gradient norm is {gn}");
                }
                self.state
                    .adam
                    .step(&mut self.state.model.params, &grad, lr);
                if let Some(k) = self.state.model.params.iter().position(|p| !p.is_finite()) {
                    bail!(
                        "training diverged at update {update}: weight {k} became {}",
                        self.state.model.params[k]
                    );
                }
                sum.pg_loss += st.pg_loss;
                sum.v_loss += st.v_loss;
                sum.entropy += st.entropy;
                sum.approx_kl += st.approx_kl;
                sum.old_approx_kl += st.old_approx_kl;
                sum.clipfrac += st.clipfrac;
                gnorm_sum += gn;
                count += 1;
                epoch_kl = st.approx_kl;
            }
            if cfg.target_kl > 0.0 && epoch_kl > cfg.target_kl {
                break 'epochs;
            }
        }
        self.state.update = update;

        let c = count.max(1) as f32;
        let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let (ret_mean, val_mean) = (mean(&self.buf.returns), mean(&self.buf.values));
        let _ = val_mean;
        let var_r = self
            .buf
            .returns
            .iter()
            .map(|&r| (r as f64 - ret_mean).powi(2))
            .sum::<f64>();
        let diff: Vec<f32> = self
            .buf
            .returns
            .iter()
            .zip(&self.buf.values)
            .map(|(r, v)| r - v)
            .collect();
        let dm = mean(&diff);
        let var_d = diff.iter().map(|&d| (d as f64 - dm).powi(2)).sum::<f64>();
        let ev = if var_r == 0.0 {
            f64::NAN
        } else {
            1.0 - var_d / var_r
        };
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
            pg_loss: sum.pg_loss / c,
            v_loss: sum.v_loss / c,
            entropy: sum.entropy / c,
            approx_kl: sum.approx_kl / c,
            old_approx_kl: sum.old_approx_kl / c,
            clipfrac: sum.clipfrac / c,
            explained_variance: ev as f32,
            grad_norm: gnorm_sum / c,
            epochs,
            std: self
                .state
                .model
                .log_std()
                .iter()
                .map(|l| l.exp())
                .sum::<f32>()
                / ad as f32,
            sps: 0.0,
        })
    }
}
