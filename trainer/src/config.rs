//! Hyperparameters, per-plant presets (TOML, like rl-baselines3-zoo) and
//! overrides.
//!
//! Resolution order, later wins: [`PpoConfig::default`] ← the plant's preset
//! (`trainer/presets/<env>.toml`) ← `--config FILE` ← `--set key=value`
//! ← dedicated flags (`--total-steps`, `--seed`). Unknown keys are errors
//! that name the key and the file.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::mlp::Act;
use crate::pg::{Baseline, ReturnKind, ValueTarget};

/// The training algorithm (`--algo`), from the notes' family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Algo {
    /// PPO: clipped surrogate, several epochs of minibatches per rollout.
    Ppo,
    /// Batch actor-critic (A2C): one full-batch gradient step per rollout
    /// on GAE(λ) or n-step advantages.
    A2c,
    /// REINFORCE: Monte-Carlo returns of complete episodes, with an
    /// optional baseline.
    Reinforce,
}

impl Algo {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ppo => "ppo",
            Algo::A2c => "a2c",
            Algo::Reinforce => "reinforce",
        }
    }
}

/// Advantage estimator of `ppo` and `a2c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageKind {
    /// GAE(λ) with `gae_lambda`.
    Gae,
    /// n-step advantages with `n_step`.
    Nstep,
}

/// Training hyperparameters (PPO's, plus the choices of the simpler
/// algorithms). Names follow the papers and CleanRL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Algorithm: `ppo`, `a2c` or `reinforce`.
    pub algo: Algo,
    /// Plant name (`pendulum`, `mountain-car`, `cartpole`, `dc-motor`).
    pub env: String,
    /// Seed of every random choice in the run.
    pub seed: u64,
    /// Environment steps to train for (summed over envs).
    pub total_timesteps: u64,
    /// Adam learning rate at the start.
    pub learning_rate: f32,
    /// Anneal the learning rate linearly to 0 over the run.
    pub anneal_lr: bool,
    /// Parallel environments N.
    pub num_envs: usize,
    /// Steps per environment per rollout.
    pub num_steps: usize,
    /// Discount γ.
    pub gamma: f32,
    /// GAE λ.
    pub gae_lambda: f32,
    /// Advantages of ppo and a2c: `gae` or `nstep`.
    pub advantage: AdvantageKind,
    /// n of the n-step advantages (`advantage = "nstep"`).
    pub n_step: usize,
    /// REINFORCE: weigh each step by the `full` return or the `reward_to_go`.
    pub pg_return: ReturnKind,
    /// REINFORCE baseline: `none`, `mean`, `value` (learned V) or `optimal`
    /// (the variance-minimizing constant per parameter; full return only).
    pub baseline: Baseline,
    /// REINFORCE value-function targets: `mc` (reward-to-go) or
    /// `bootstrap` (`r + γV(s')`).
    pub value_target: ValueTarget,
    /// Minibatches per epoch.
    pub num_minibatches: usize,
    /// Epochs over each rollout.
    pub update_epochs: usize,
    /// Normalize advantages per minibatch.
    pub norm_adv: bool,
    /// PPO clip ε of the ratio.
    pub clip_coef: f32,
    /// Clip the value loss around the old values with `clip_coef`.
    pub clip_vloss: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f32,
    /// Value loss coefficient.
    pub vf_coef: f32,
    /// Global gradient-norm clip.
    pub max_grad_norm: f32,
    /// Stop the epochs of an update early when approx-KL exceeds this (0 = off).
    pub target_kl: f32,
    /// Hidden widths of the actor (1–3 layers, ≤ 256, for the device).
    pub actor_hidden: Vec<usize>,
    /// Hidden widths of the critic.
    pub critic_hidden: Vec<usize>,
    /// Hidden activation.
    pub activation: Act,
    /// Initial log standard deviation of the policy.
    pub init_log_std: f32,
    /// Normalize observations with running statistics (exported with the policy).
    pub norm_obs: bool,
    /// Clip of normalized observations.
    pub obs_clip: f32,
    /// Scale rewards by the running std of the discounted return.
    pub norm_reward: bool,
    /// Clip of scaled rewards.
    pub reward_clip: f32,
    /// Adam ε.
    pub adam_eps: f32,
    /// Episodes per evaluation of the exported int8 policy at the end.
    pub eval_episodes: usize,
    /// Threads for the update: 1 = serial, 2 = actor and critic gradients
    /// in parallel. Results are bit-identical either way.
    pub threads: usize,
}

impl Default for PpoConfig {
    fn default() -> Self {
        // CleanRL's ppo_continuous_action defaults.
        PpoConfig {
            algo: Algo::Ppo,
            env: "pendulum".into(),
            seed: 1,
            total_timesteps: 1_000_000,
            learning_rate: 3e-4,
            anneal_lr: true,
            num_envs: 1,
            num_steps: 2048,
            gamma: 0.99,
            gae_lambda: 0.95,
            advantage: AdvantageKind::Gae,
            n_step: 5,
            pg_return: ReturnKind::RewardToGo,
            baseline: Baseline::Value,
            value_target: ValueTarget::Mc,
            num_minibatches: 32,
            update_epochs: 10,
            norm_adv: true,
            clip_coef: 0.2,
            clip_vloss: true,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            target_kl: 0.0,
            actor_hidden: vec![64, 64],
            critic_hidden: vec![64, 64],
            activation: Act::Tanh,
            init_log_std: 0.0,
            norm_obs: true,
            obs_clip: 10.0,
            norm_reward: true,
            reward_clip: 10.0,
            adam_eps: 1e-5,
            eval_episodes: 100,
            threads: 1,
        }
    }
}

/// The preset TOML of a plant, compiled in.
pub fn preset(env: &str) -> Option<&'static str> {
    Some(match env {
        "pendulum" => include_str!("../presets/pendulum.toml"),
        "mountain-car" => include_str!("../presets/mountain-car.toml"),
        "cartpole" => include_str!("../presets/cartpole.toml"),
        "dc-motor" => include_str!("../presets/dc-motor.toml"),
        _ => return None,
    })
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        base.insert(k, v);
    }
}

/// Builds a config: defaults ← preset of `env` ← `config_file` ← `sets`.
pub fn resolve(
    env: &str,
    config_file: Option<&std::path::Path>,
    sets: &[String],
) -> Result<PpoConfig> {
    let preset_src = preset(env).with_context(|| {
        format!("unknown env {env:?}: expected one of pendulum, mountain-car, cartpole, dc-motor")
    })?;
    let plant: toml::Table = preset_src
        .parse()
        .with_context(|| format!("preset for {env}"))?;
    // The user's layers, later wins.
    let mut user = Vec::new();
    if let Some(path) = config_file {
        let src =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t: toml::Table = src
            .parse()
            .with_context(|| format!("parsing {}", path.display()))?;
        check_keys(&t, &path.display().to_string())?;
        user.push(t);
    }
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s:?}: expected key=value"))?;
        let v: toml::Value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_string()));
        let mut t = toml::Table::new();
        t.insert(k.trim().to_string(), v);
        check_keys(&t, "--set")?;
        user.push(t);
    }
    // The algorithm decides which algorithm preset sits between the plant's
    // preset and the user's layers.
    let algo = user
        .iter()
        .rev()
        .chain(std::iter::once(&plant))
        .find_map(|t| t.get("algo").cloned());
    let mut table = toml::Table::try_from(PpoConfig::default()).context("serializing defaults")?;
    merge(&mut table, plant);
    if let Some(algo) = algo {
        let name = algo
            .as_str()
            .with_context(|| format!("algo: expected ppo, a2c or reinforce, got {algo}"))?;
        if let Some(t) = algo_preset(name, env)? {
            merge(&mut table, t);
        }
    }
    for t in user {
        merge(&mut table, t);
    }
    table.insert("env".into(), toml::Value::String(env.to_string()));
    let cfg: PpoConfig = table.try_into().context("invalid configuration value")?;
    cfg.validate()?;
    Ok(cfg)
}

/// The overrides of a non-PPO algorithm (`presets/algo-<name>.toml`): its
/// top-level keys, then the keys of its `[<env>]` table.
fn algo_preset(algo: &str, env: &str) -> Result<Option<toml::Table>> {
    let src = match algo {
        "ppo" => return Ok(None),
        "a2c" => include_str!("../presets/algo-a2c.toml"),
        "reinforce" => include_str!("../presets/algo-reinforce.toml"),
        other => bail!("algo: expected ppo, a2c or reinforce, got {other:?}"),
    };
    let mut t: toml::Table = src
        .parse()
        .with_context(|| format!("preset algo-{algo}.toml"))?;
    let plant = t.get(env).and_then(|v| v.as_table()).cloned();
    t.retain(|_, v| !v.is_table());
    if let Some(p) = plant {
        merge(&mut t, p);
    }
    Ok(Some(t))
}

fn check_keys(t: &toml::Table, origin: &str) -> Result<()> {
    let known = toml::Table::try_from(PpoConfig::default())?;
    for k in t.keys() {
        if !known.contains_key(k) {
            bail!(
                "{origin}: unknown hyperparameter {k:?}; known: {}",
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}

impl PpoConfig {
    /// Rollout batch size `num_envs · num_steps`.
    pub fn batch_size(&self) -> usize {
        self.num_envs * self.num_steps
    }
    /// Minibatch size.
    pub fn minibatch_size(&self) -> usize {
        self.batch_size() / self.num_minibatches
    }
    /// Number of updates in the run.
    pub fn num_updates(&self) -> u64 {
        (self.total_timesteps / self.batch_size() as u64).max(1)
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let pos = |name: &str, v: f32| -> Result<()> {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a positive number, got {v}");
            }
            Ok(())
        };
        pos("learning_rate", self.learning_rate)?;
        pos("clip_coef", self.clip_coef)?;
        pos("max_grad_norm", self.max_grad_norm)?;
        pos("obs_clip", self.obs_clip)?;
        pos("adam_eps", self.adam_eps)?;
        if !(0.0..=1.0).contains(&self.gamma) || !(0.0..=1.0).contains(&self.gae_lambda) {
            bail!("gamma and gae_lambda must be in [0, 1]");
        }
        if !(1..=2).contains(&self.threads) {
            bail!("threads must be 1 or 2, got {}", self.threads);
        }
        if self.algo == Algo::A2c && (self.update_epochs != 1 || self.num_minibatches != 1) {
            bail!(
                "algo a2c takes one full-batch gradient step per rollout: update_epochs and \
                 num_minibatches must be 1, got {} and {}",
                self.update_epochs,
                self.num_minibatches
            );
        }
        if self.algo == Algo::Reinforce
            && self.baseline == Baseline::Optimal
            && self.pg_return != ReturnKind::Full
        {
            bail!(
                "baseline = \"optimal\" is the notes' constant for the full return: \
                 set pg_return = \"full\" (got {:?})",
                self.pg_return
            );
        }
        if self.n_step == 0 {
            bail!("n_step must be ≥ 1");
        }
        if self.num_envs == 0 || self.num_steps == 0 || self.update_epochs == 0 {
            bail!("num_envs, num_steps and update_epochs must be ≥ 1");
        }
        if self.num_minibatches == 0 || self.batch_size() % self.num_minibatches != 0 {
            bail!(
                "num_minibatches ({}) must divide num_envs·num_steps ({})",
                self.num_minibatches,
                self.batch_size()
            );
        }
        for (name, h) in [
            ("actor_hidden", &self.actor_hidden),
            ("critic_hidden", &self.critic_hidden),
        ] {
            if h.is_empty() || h.len() > 3 || h.iter().any(|&w| w == 0 || w > 256) {
                bail!("{name} must have 1–3 layers of width 1–256 (the device limit), got {h:?}");
            }
        }
        Ok(())
    }
}
