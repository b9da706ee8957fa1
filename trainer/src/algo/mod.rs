//! The training algorithms of the notes' family, over one [`Trainer`]:
//! its state ([`TrainState`], the checkpoint), its plants and its
//! vectorized rollouts.
//!
//! - `ppo` and `a2c` (module `ppo`): a rollout of `num_steps` steps in each
//!   of `num_envs` plants, GAE advantages ([`crate::gae`]), then PPO's
//!   clipped epochs, or A2C's single full-batch step;
//! - `reinforce` (module `reinforce`): batches of complete episodes and the
//!   notes' estimators with baselines ([`crate::pg`]);
//! - `trpo` (module `trpo`): PPO's rollout and advantages, then one
//!   natural-gradient step under the mean-KL constraint (6.34)
//!   ([`crate::trpo`]) and the critic's regression.
//!
//! The sampled (unclipped) action is stored and used in the loss; only the
//! action sent to the plant is clipped to the bounds.

use std::collections::VecDeque;

use anyhow::{anyhow, bail, Result};
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};
use tinyppo_runtime::gaussian::standard_normals;
use tinyppo_runtime::rng::{seeded, DefaultRng};

use crate::config::{Algo, TrainConfig};
use crate::env::Env;
use crate::loss::{LossStats, Workspace};
use crate::mlp::Cache;
use crate::model::{gaussian_log_prob, ActorCritic};
use crate::normalize::{normalize_obs, RewardScaler, RunningMeanStd};
use crate::optim::{guarded_step, Adam};
use crate::registry::RegisteredPlant;

mod ppo;
mod reinforce;
mod trpo;

/// Everything that defines a run's state between updates (the checkpoint).
#[derive(Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Resolved configuration (kept as TOML text in the checkpoint, so it
    /// reads by field name, not by position).
    #[serde(with = "crate::checkpoint::config_as_toml")]
    pub cfg: TrainConfig,
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
    /// REINFORCE: statistics of the value targets; the critic fits
    /// `(y − mean)/std` and `V = mean + std · net`.
    pub target_rms: RunningMeanStd,
    /// The episodes in flight at the checkpoint (see [`Trainer::snapshot`]);
    /// `None` in a fresh state, or if a plant could not save its state.
    pub in_flight: Option<InFlight>,
}

/// The plants' episodes in flight between two updates: what a resumed run
/// needs to continue exactly where the interrupted one was, so that it
/// ends with the same bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// Each plant's state and parameters ([`Env::save_state`]).
    pub plants: Vec<Vec<u8>>,
    /// The current raw observations, `num_envs × obs_dim`.
    pub obs: Vec<f32>,
    /// The returns so far of the episodes in flight.
    pub returns: Vec<f64>,
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
    /// The plant it trains on.
    pub plant: RegisteredPlant,
    envs: Vec<Box<dyn Env>>,
    obs_raw: Vec<f32>,
    ep_return: Vec<f64>,
    low: Vec<f32>,
    high: Vec<f32>,
    buf: Rollout,
    actor_cache: Cache,
    values_cache: Cache,
    boot_cache: Cache,
    ws: Workspace,
    /// Wall-clock seconds spent collecting rollouts and optimizing, so far
    /// in this process (for benchmarks).
    pub seconds: (f64, f64),
}

impl Trainer {
    /// A fresh run of `cfg` on `plant` (the registered plant `cfg.env`
    /// names).
    pub fn new(cfg: TrainConfig, plant: &RegisteredPlant) -> Result<Self> {
        cfg.validate()?;
        if cfg.env != plant.name() {
            bail!(
                "the configuration is for plant {:?}, not {}",
                cfg.env,
                plant.name()
            );
        }
        let mut rng = seeded(cfg.seed);
        // The policy's inputs: the observation and the action history.
        let inputs = plant.obs_dim() + cfg.action_history * plant.act_dim();
        let model = ActorCritic::new(
            inputs,
            plant.act_dim(),
            &cfg.actor_hidden,
            &cfg.critic_hidden,
            cfg.activation,
            cfg.init_log_std,
            &mut rng,
        );
        let state = TrainState {
            adam: Adam::new(model.params.len(), cfg.adam_eps),
            obs_rms: RunningMeanStd::new(inputs),
            reward_scaler: RewardScaler::new(cfg.num_envs, cfg.gamma, cfg.reward_clip),
            model,
            rng,
            global_step: 0,
            update: 0,
            recent_returns: VecDeque::new(),
            target_rms: RunningMeanStd::new(1),
            in_flight: None,
            cfg,
        };
        Self::from_state(state, plant)
    }

    /// Continues a run from a checkpointed state on `plant`: the episodes
    /// in flight are restored (`state.in_flight`, so the run continues bit
    /// for bit as if never interrupted), or, for a fresh state, every plant
    /// starts an episode.
    pub fn from_state(mut state: TrainState, plant: &RegisteredPlant) -> Result<Self> {
        let cfg = &state.cfg;
        if cfg.env != plant.name() {
            bail!("the run is on plant {:?}, not {}", cfg.env, plant.name());
        }
        let envs: Vec<Box<dyn Env>> = (0..cfg.num_envs)
            .map(|_| plant.make_training_env(cfg))
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
        let threads = cfg.threads;
        let mut obs_raw = vec![0.0; n * od];
        let mut ep_return = vec![0.0; n];
        let mut envs = envs;
        match state.in_flight.take() {
            Some(f) => {
                if f.plants.len() != n || f.obs.len() != n * od || f.returns.len() != n {
                    bail!(
                        "the checkpoint's episodes in flight are for {} plants ({} observations), \
                         the run has num_envs = {n}",
                        f.plants.len(),
                        f.obs.len()
                    );
                }
                for (i, (e, bytes)) in envs.iter_mut().zip(&f.plants).enumerate() {
                    e.load_state(bytes)
                        .map_err(|why| anyhow!("restoring plant {i} of the checkpoint: {why}"))?;
                }
                obs_raw = f.obs;
                ep_return = f.returns;
            }
            None => {
                for (e, o) in envs.iter_mut().zip(obs_raw.chunks_mut(od)) {
                    e.reset(&mut state.rng, o);
                }
            }
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
            plant: plant.clone(),
            envs,
            obs_raw,
            ep_return,
            low,
            high,
            buf,
            actor_cache: Cache::default(),
            values_cache: Cache::default(),
            boot_cache: Cache::default(),
            ws: Workspace::new(threads > 1),
            seconds: (0.0, 0.0),
        })
    }

    /// The checkpointable state with the episodes in flight: resuming from
    /// it continues exactly where this run is.
    pub fn snapshot(&self) -> TrainState {
        let plants: Option<Vec<Vec<u8>>> = self.envs.iter().map(|e| e.save_state()).collect();
        TrainState {
            in_flight: plants.map(|plants| InFlight {
                plants,
                obs: self.obs_raw.clone(),
                returns: self.ep_return.clone(),
            }),
            ..self.state.clone()
        }
    }

    /// True once `total_timesteps` is reached (REINFORCE: once at least
    /// that many steps were taken; its batches vary in length).
    pub fn done(&self) -> bool {
        match self.state.cfg.algo {
            Algo::Reinforce => self.state.global_step >= self.state.cfg.total_timesteps,
            Algo::Ppo | Algo::A2c | Algo::Trpo => self.state.update >= self.state.cfg.num_updates(),
        }
    }

    /// The learning rate of update `update` (1-based): linearly annealed
    /// over the run when `anneal_lr`.
    fn learning_rate(&self, update: u64) -> f32 {
        let cfg = &self.state.cfg;
        let frac = match cfg.algo {
            Algo::Reinforce => {
                1.0 - (self.state.global_step as f64 / cfg.total_timesteps.max(1) as f64) as f32
            }
            Algo::Ppo | Algo::A2c | Algo::Trpo => {
                1.0 - (update - 1) as f32 / cfg.num_updates() as f32
            }
        };
        if cfg.anneal_lr {
            frac.max(0.0) * cfg.learning_rate
        } else {
            cfg.learning_rate
        }
    }

    /// Normalizes rows of raw observations into `out` with the current
    /// statistics (identity when `norm_obs` is off).
    fn normalize_into(&self, stats: &(Vec<f32>, Vec<f32>), raw: &[f32], out: &mut [f32]) {
        out.copy_from_slice(raw);
        if self.state.cfg.norm_obs {
            let (mean, inv) = stats;
            for row in out.chunks_mut(mean.len()) {
                normalize_obs(row, mean, inv, self.state.cfg.obs_clip);
            }
        }
    }

    /// `V` of a batch of normalized observations: the whole rollout
    /// (`whole`) or a few bootstrap rows, each with a cache of its own so
    /// that every cache keeps its batch size (a cache reallocates, and
    /// zeroes, its buffers when the batch size changes).
    fn values_of(&mut self, whole: bool, obs_norm: &[f32], out: &mut [f32]) {
        let m = &self.state.model;
        let x = ArrayView2::from_shape((obs_norm.len() / m.obs_dim(), m.obs_dim()), obs_norm)
            .expect("rows");
        let cache = if whole {
            &mut self.values_cache
        } else {
            &mut self.boot_cache
        };
        let v = m.critic.forward(m.critic_params(), x, cache);
        out.iter_mut().zip(v.column(0)).for_each(|(o, &v)| *o = v);
    }

    /// Collects one rollout; returns finished-episode returns.
    fn collect(&mut self) -> Vec<f64> {
        let (n, t_len) = (self.state.cfg.num_envs, self.state.cfg.num_steps);
        let (norm_obs, norm_reward) = (self.state.cfg.norm_obs, self.state.cfg.norm_reward);
        let (od, ad) = (self.state.model.obs_dim(), self.state.model.act_dim());
        let mut finished = Vec::new();
        let mut z = vec![0.0f32; ad];
        let mut applied = vec![0.0f32; ad];
        let mut next_obs = vec![0.0f32; od];
        let mut x_final = vec![0.0f32; od];
        let (mut final_obs, mut final_idx) = (Vec::new(), Vec::new());
        let mut rewards = vec![0.0f32; n];
        let mut dones = vec![false; n];
        let mut mu = vec![0.0f32; n * ad];
        let log_std = self.state.model.log_std().to_vec();
        let std: Vec<f32> = log_std.iter().map(|l| l.exp()).collect();
        let mut stats = self.state.obs_rms.export();
        // The actor's weights are fixed during the rollout.
        let actor = self
            .state
            .model
            .actor
            .prepare(self.state.model.actor_params());
        for t in 0..t_len {
            let base = t * n;
            if norm_obs {
                self.state.obs_rms.update(&self.obs_raw);
                stats = self.state.obs_rms.export();
            }
            let mut x = std::mem::take(&mut self.buf.obs);
            self.normalize_into(&stats, &self.obs_raw, &mut x[base * od..(base + n) * od]);
            let xv = ArrayView2::from_shape((n, od), &x[base * od..(base + n) * od]).expect("rows");
            let out = actor.forward(xv, &mut self.actor_cache);
            mu.iter_mut().zip(out.iter()).for_each(|(d, &s)| *d = s);
            // V(s_t) is computed after the rollout, in one batched pass.
            self.buf.obs = x;
            for e in 0..n {
                let i = base + e;
                standard_normals(&mut self.state.rng, &mut z);
                let mu_e = &mu[e * ad..(e + 1) * ad];
                let u = &mut self.buf.actions[i * ad..(i + 1) * ad];
                for j in 0..ad {
                    u[j] = mu_e[j] + std[j] * z[j];
                    applied[j] = u[j].clamp(self.low[j], self.high[j]);
                }
                self.buf.logp[i] = gaussian_log_prob(u, mu_e, &log_std);
                let (r, term, trunc) = self.envs[e].step(&applied, &mut next_obs);
                self.ep_return[e] += r as f64;
                rewards[e] = r;
                self.buf.terminated[i] = term;
                self.buf.truncated[i] = trunc && !term;
                dones[e] = term || trunc;
                self.buf.next_values[i] = 0.0;
                if trunc && !term {
                    // Bootstrap from the final observation of the cut episode.
                    // (normalized with this step's statistics, batched below).
                    self.normalize_into(&stats, &next_obs, &mut x_final);
                    final_obs.extend_from_slice(&x_final);
                    final_idx.push(i);
                }
                if term || trunc {
                    finished.push(self.ep_return[e]);
                    self.ep_return[e] = 0.0;
                    self.envs[e].reset(&mut self.state.rng, &mut next_obs);
                }
                self.obs_raw[e * od..(e + 1) * od].copy_from_slice(&next_obs);
            }
            if norm_reward {
                self.state.reward_scaler.scale(&mut rewards, &dones);
            }
            self.buf.rewards[base..base + n].copy_from_slice(&rewards);
        }
        // V(s_t) for the whole rollout in one batched pass.
        let obs = std::mem::take(&mut self.buf.obs);
        let mut values = std::mem::take(&mut self.buf.values);
        self.values_of(true, &obs, &mut values);
        self.buf.obs = obs;
        self.buf.values = values;
        if !final_idx.is_empty() {
            let mut v = vec![0.0f32; final_idx.len()];
            self.values_of(false, &final_obs, &mut v);
            for (&i, &v) in final_idx.iter().zip(&v) {
                self.buf.next_values[i] = v;
            }
        }
        // Successor values of non-final steps are the next step's values; the
        // last step bootstraps from the current observations.
        let mut x = vec![0.0f32; n * od];
        self.normalize_into(&stats, &self.obs_raw, &mut x);
        let mut last = vec![0.0f32; n];
        self.values_of(false, &x, &mut last);
        for t in 0..t_len {
            for (e, &v_last) in last.iter().enumerate() {
                let i = t * n + e;
                if !(self.buf.terminated[i] || self.buf.truncated[i]) {
                    self.buf.next_values[i] = if t + 1 < t_len {
                        self.buf.values[i + n]
                    } else {
                        v_last
                    };
                }
            }
        }
        self.state.global_step += (n * t_len) as u64;
        finished
    }

    /// One guarded Adam step of the run (see [`guarded_step`]); the error
    /// names the update.
    fn optimizer_step(
        &mut self,
        st: &LossStats,
        grad: &mut [f32],
        lr: f32,
        update: u64,
    ) -> Result<f32> {
        guarded_step(
            st,
            grad,
            &mut self.state.model.params,
            &mut self.state.adam,
            self.state.cfg.max_grad_norm,
            lr,
        )
        .map_err(|q| anyhow!("training diverged at update {update}: {q}"))
    }

    /// Mean σ of the policy.
    fn mean_sigma(&self) -> f32 {
        let ls = self.state.model.log_std();
        ls.iter().map(|l| l.exp()).sum::<f32>() / ls.len() as f32
    }

    /// Runs one update (rollout + optimization) and returns its metrics, or
    /// an error naming the quantity that became non-finite.
    pub fn step_update(&mut self) -> Result<UpdateMetrics> {
        match self.state.cfg.algo {
            Algo::Reinforce => self.reinforce_update(),
            Algo::Ppo | Algo::A2c => self.ppo_update(),
            Algo::Trpo => self.trpo_update(),
        }
    }

    /// Records the returns of finished episodes (the last 100 are kept).
    fn record_returns(&mut self, finished: &[f64]) {
        for &r in finished {
            if self.state.recent_returns.len() == 100 {
                self.state.recent_returns.pop_front();
            }
            self.state.recent_returns.push_back(r);
        }
    }
}
