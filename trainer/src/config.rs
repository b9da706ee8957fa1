//! Hyperparameters, per-plant presets (TOML, like rl-baselines3-zoo) and
//! overrides.
//!
//! Resolution order, later wins: [`TrainConfig::default`] ← the plant's
//! preset (registered with the plant, e.g. `trainer/presets/<env>.toml`)
//! ← the algorithm's preset (`trainer/presets/algo-<name>.toml`) ←
//! `--config FILE` ← `--set key=value` ← dedicated flags (`--total-steps`,
//! `--seed`). Unknown keys and values of the wrong type are errors that
//! name the key and the file (or the `--set`).

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::mlp::Act;
use crate::pg::{Baseline, ReturnKind, ValueTarget};
use crate::randomize::Randomizer;
use crate::realism::{Realism, RealismConfig};
use crate::registry::RegisteredPlant;
use crate::safety::SafetyConfig;

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
    /// TRPO: a natural-gradient step on the surrogate under the mean-KL
    /// constraint (6.34), found by conjugate gradient and a line search.
    Trpo,
}

impl Algo {
    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Algo::Ppo => "ppo",
            Algo::A2c => "a2c",
            Algo::Reinforce => "reinforce",
            Algo::Trpo => "trpo",
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

/// Training hyperparameters. Names follow the papers and CleanRL; the
/// fields only one algorithm reads are grouped in [`ppo`](Self::ppo)
/// (`[ppo]` in TOML, `--set ppo.clip_coef=0.1`) and
/// [`reinforce`](Self::reinforce) (`[reinforce]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Algorithm: `ppo`, `a2c` or `reinforce`.
    pub algo: Algo,
    /// Plant name, as registered (`tinyppo train --env NAME`).
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
    /// Steps per environment per rollout (`ppo`, `a2c`; REINFORCE runs
    /// complete episodes).
    pub num_steps: usize,
    /// Discount γ.
    pub gamma: f32,
    /// GAE λ.
    pub gae_lambda: f32,
    /// Advantages of ppo and a2c: `gae` or `nstep`.
    pub advantage: AdvantageKind,
    /// n of the n-step advantages (`advantage = "nstep"`).
    pub n_step: usize,
    /// Normalize advantages per minibatch.
    pub norm_adv: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f32,
    /// Value loss coefficient.
    pub vf_coef: f32,
    /// Global gradient-norm clip.
    pub max_grad_norm: f32,
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
    /// Past applied actions the policy sees besides the observation
    /// (`k`, 0–8; 0 = none): the actor and critic take
    /// `[o_t, a_{t−1}, …, a_{t−k}]`, the blob records `k` (a required
    /// record, so a firmware that cannot build the history refuses it) and
    /// the device's control loop builds it exactly as training did.
    pub action_history: usize,
    /// PPO's clipped epochs (`[ppo]`; A2C takes one full-batch step and
    /// reads none of them; `finetune` starts from them).
    pub ppo: PpoParams,
    /// REINFORCE's estimator (`[reinforce]`).
    pub reinforce: ReinforceParams,
    /// TRPO's trust region and its critic's regression (`[trpo]`).
    pub trpo: TrpoParams,
    /// Sensor and actuator effects around the plant (`[realism]`,
    /// [`crate::realism`]); exported into the blob.
    pub realism: RealismConfig,
    /// Limits the device applies after the policy (`[safety]`,
    /// [`crate::safety`]); exported into the blob, not applied in training.
    pub safety: SafetyConfig,
    /// Plant parameters drawn per episode (`[randomize]`, name →
    /// `LO:HI[:abs][:log]`, [`crate::randomize`]).
    pub randomize: BTreeMap<String, String>,
}

/// PPO's update: `update_epochs` passes of `num_minibatches` minibatches
/// through the clipped surrogate (6.37).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoParams {
    /// Minibatches per epoch.
    pub num_minibatches: usize,
    /// Epochs over each rollout.
    pub update_epochs: usize,
    /// Clip ε of the ratio.
    pub clip_coef: f32,
    /// Clip the value loss around the old values with `clip_coef`.
    pub clip_vloss: bool,
    /// Stop the epochs of an update early when approx-KL exceeds this (0 = off).
    pub target_kl: f32,
}

impl Default for PpoParams {
    fn default() -> Self {
        // CleanRL's ppo_continuous_action defaults.
        PpoParams {
            num_minibatches: 32,
            update_epochs: 10,
            clip_coef: 0.2,
            clip_vloss: true,
            target_kl: 0.0,
        }
    }
}

/// TRPO's update (`[trpo]`, [`crate::trpo`]): one natural-gradient step
/// of the policy per rollout within the mean KL `max_kl`, then the critic's
/// regression on the GAE returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrpoParams {
    /// δ of (6.34): the largest mean KL `E[D_KL(π_old ‖ π_θ)]` of a step.
    pub max_kl: f32,
    /// Conjugate-gradient iterations for `F x = g`.
    pub cg_iters: usize,
    /// Damping `λ` added to the Fisher matrix (`F + λI`).
    pub cg_damping: f32,
    /// Line search: each try shrinks the step by this factor.
    pub backtrack_coef: f32,
    /// Line search: steps tried before the update is rejected.
    pub max_backtracks: u32,
    /// Critic: epochs of Adam on the value loss per rollout.
    pub vf_epochs: usize,
    /// Critic: minibatches per epoch.
    pub vf_minibatches: usize,
}

impl Default for TrpoParams {
    fn default() -> Self {
        // SB3-contrib's TRPO defaults (target_kl 0.01, cg_max_steps 15,
        // cg_damping 0.1, line_search_shrinking_factor 0.8,
        // line_search_max_iter 10, n_critic_updates 10).
        TrpoParams {
            max_kl: 0.01,
            cg_iters: 15,
            cg_damping: 0.1,
            backtrack_coef: 0.8,
            max_backtracks: 10,
            vf_epochs: 10,
            vf_minibatches: 16,
        }
    }
}

/// REINFORCE's gradient estimator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReinforceParams {
    /// Weigh each step by the `full` return or the `reward_to_go`.
    pub pg_return: ReturnKind,
    /// Baseline: `none`, `mean`, `value` (learned V) or `optimal` (the
    /// variance-minimizing constant per parameter; full return only).
    pub baseline: Baseline,
    /// Value-function targets: `mc` (reward-to-go) or `bootstrap`
    /// (`r + γV(s')`).
    pub value_target: ValueTarget,
}

impl Default for ReinforceParams {
    fn default() -> Self {
        ReinforceParams {
            pg_return: ReturnKind::RewardToGo,
            baseline: Baseline::Value,
            value_target: ValueTarget::Mc,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        // CleanRL's ppo_continuous_action defaults.
        TrainConfig {
            algo: Algo::Ppo,
            env: String::new(),
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
            norm_adv: true,
            ent_coef: 0.0,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
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
            action_history: 0,
            ppo: PpoParams::default(),
            reinforce: ReinforceParams::default(),
            trpo: TrpoParams::default(),
            realism: RealismConfig::default(),
            safety: SafetyConfig::default(),
            randomize: BTreeMap::new(),
        }
    }
}

/// Overlays `over` on `base`, key by key; tables merge recursively (so
/// `[ppo] clip_coef = 0.1` keeps the other `[ppo]` keys).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Parses `text` as TOML; `origin` names it in errors (file and line).
fn parse_table(text: &str, origin: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>()
        .map_err(|e| anyhow::anyhow!("{origin}: {e}"))
}

/// Builds a config for `plant`: defaults ← its preset ← the algorithm's
/// preset ← `config_file` ← `sets` (`key=value`, dotted keys for the
/// groups: `ppo.clip_coef=0.1`).
pub fn resolve(
    plant: &RegisteredPlant,
    config_file: Option<&std::path::Path>,
    sets: &[String],
) -> Result<TrainConfig> {
    let env = plant.name();
    let preset = parse_table(plant.preset(), &format!("preset of plant {env}"))?;
    check_keys(&preset, &format!("preset of plant {env}"))?;
    // The user's layers, later wins.
    let mut user = Vec::new();
    let mut file_text = None;
    if let Some(path) = config_file {
        let src =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t = parse_table(&src, &path.display().to_string())?;
        check_keys(&t, &path.display().to_string())?;
        // A value of the wrong type, with the file's line and column.
        if let Err(e) = toml::from_str::<TrainConfig>(&src) {
            bail!("{}: {e}", path.display());
        }
        user.push((t, path.display().to_string()));
        file_text = Some(src);
    }
    for s in sets {
        let t = set_table(s)?;
        check_keys(&t, &format!("--set {s}"))?;
        if t.contains_key("env") {
            bail!("--set {s}: the plant is chosen with --env, not --set");
        }
        user.push((t, format!("--set {s}")));
    }
    for (t, origin) in &user {
        if let Some(e) = t.get("env").and_then(|v| v.as_str()).filter(|e| *e != env) {
            bail!("{origin}: env = {e:?}, but this run is for plant {env:?} (--env)");
        }
    }
    // The algorithm decides which algorithm preset sits between the plant's
    // preset and the user's layers.
    let algo = user
        .iter()
        .map(|(t, _)| t)
        .rev()
        .chain(std::iter::once(&preset))
        .find_map(|t| t.get("algo").cloned());
    let mut table =
        toml::Table::try_from(TrainConfig::default()).context("serializing defaults")?;
    merge(&mut table, preset);
    let algo_name = match &algo {
        Some(a) => a
            .as_str()
            .with_context(|| format!("algo: expected ppo, a2c, reinforce or trpo, got {a}"))?
            .to_string(),
        None => "ppo".to_string(),
    };
    if let Some(t) = algo_preset(&algo_name, env)? {
        merge(&mut table, t);
    }
    // A group the run's algorithm does not read, set with --set, is a
    // mistake: say so instead of ignoring it. (A --config file may hold
    // settings for several algorithms, as a run's config.toml does.)
    for (t, origin) in user.iter().filter(|(_, o)| o.starts_with("--set")) {
        for group in ["ppo", "reinforce", "trpo"] {
            if group == algo_name {
                continue;
            }
            if let Some(toml::Value::Table(g)) = t.get(group) {
                if let Some(k) = g.keys().next() {
                    bail!("{origin}: {group}.{k} applies to algo {group} only (this run is {algo_name})");
                }
            }
        }
    }
    // Each user layer must be valid on its own, so a wrong type names the
    // file or the --set that has it.
    for (t, origin) in &user {
        merge(&mut table, t.clone());
        toml::Value::Table(table.clone())
            .try_into::<TrainConfig>()
            .map_err(|e| anyhow::anyhow!("{origin}: {}", e.message()))?;
    }
    table.insert("env".into(), toml::Value::String(env.to_string()));
    let cfg: TrainConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            anyhow::anyhow!("invalid configuration value: {}", e.message())
        })?;
    if let Err(e) = cfg
        .validate()
        .and_then(|()| cfg.validate_for(plant).map(|_| ()))
    {
        // Say where the bad value came from: the last layer that set it.
        let Some(bad) = e.downcast_ref::<crate::validate::Invalid>() else {
            return Err(e);
        };
        // `realism.obs_noise[1]` was set as `realism.obs_noise`.
        let key = bad.key.split('[').next().unwrap_or_default();
        let path: Vec<&str> = key.split('.').collect();
        let sets = |t: &toml::Table| match path[..] {
            [k] => t.contains_key(k),
            [g, k] => t
                .get(g)
                .and_then(|v| v.as_table())
                .is_some_and(|t| t.contains_key(k)),
            _ => false,
        };
        let origin = user
            .iter()
            .rev()
            .find(|(t, _)| sets(t))
            .map(|(_, o)| o.clone());
        return Err(match origin {
            Some(o) if o.starts_with("--set") => anyhow::anyhow!("{o}: {bad}"),
            Some(o) => {
                let leaf = path.last().copied().unwrap_or_default();
                let line = file_text.as_deref().and_then(|src| {
                    src.lines().position(|l| {
                        let l = l.trim_start();
                        l.strip_prefix(leaf)
                            .is_some_and(|r| r.trim_start().starts_with('='))
                    })
                });
                match line {
                    Some(n) => anyhow::anyhow!("{o}:{}: {bad}", n + 1),
                    None => anyhow::anyhow!("{o}: {bad}"),
                }
            }
            None => anyhow::anyhow!("preset of plant {env}: {bad}"),
        });
    }
    Ok(cfg)
}

/// `key=value` as a one-entry table; `a.b=v` as `{a = {b = v}}`. A value
/// that is not TOML is taken as a string (`--set activation=relu`).
fn set_table(s: &str) -> Result<toml::Table> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("--set {s:?}: expected key=value"))?;
    let v: toml::Value = format!("v = {v}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(v.to_string()));
    let mut path: Vec<&str> = k.trim().split('.').map(str::trim).collect();
    if path.iter().any(|p| p.is_empty()) {
        bail!("--set {s:?}: expected key=value with a non-empty key");
    }
    let last = path.pop().unwrap_or_default();
    let mut t = toml::Table::new();
    t.insert(last.to_string(), v);
    for p in path.into_iter().rev() {
        let mut outer = toml::Table::new();
        outer.insert(p.to_string(), toml::Value::Table(t));
        t = outer;
    }
    Ok(t)
}

/// The overrides of a non-PPO algorithm (`presets/algo-<name>.toml`): its
/// keys, then the keys of its `[plant.<env>]` table, if it has one.
fn algo_preset(algo: &str, env: &str) -> Result<Option<toml::Table>> {
    let src = match algo {
        "ppo" => return Ok(None),
        "a2c" => include_str!("../presets/algo-a2c.toml"),
        "reinforce" => include_str!("../presets/algo-reinforce.toml"),
        "trpo" => include_str!("../presets/algo-trpo.toml"),
        other => bail!("algo: expected ppo, a2c, reinforce or trpo, got {other:?}"),
    };
    let origin = format!("preset algo-{algo}.toml");
    let mut t = parse_table(src, &origin)?;
    let plant = match t.remove("plant") {
        Some(toml::Value::Table(mut per)) => per.remove(env),
        _ => None,
    };
    check_keys(&t, &origin)?;
    if let Some(toml::Value::Table(p)) = plant {
        check_keys(&p, &origin)?;
        merge(&mut t, p);
    }
    Ok(Some(t))
}

/// Refuses keys the configuration does not have, naming the origin and
/// listing the known keys (and where a key moved into a group).
fn check_keys(t: &toml::Table, origin: &str) -> Result<()> {
    let mut known = toml::Table::try_from(TrainConfig::default())?;
    // `[safety]`'s bounds default to the plant's, so they are not in the
    // serialized defaults.
    if let Some(toml::Value::Table(s)) = known.get_mut("safety") {
        for k in SafetyConfig::KEYS {
            s.entry(*k).or_insert(toml::Value::Float(0.0));
        }
    }
    check_against(t, &known, "", origin)
}

fn check_against(t: &toml::Table, known: &toml::Table, prefix: &str, origin: &str) -> Result<()> {
    for (k, v) in t {
        // `[randomize]` is keyed by the plant's parameter names: checked
        // against the plant (`TrainConfig::validate_for`).
        if prefix.is_empty() && k == "randomize" {
            if !v.is_table() {
                bail!("{origin}: randomize is a table (parameter name = \"LO:HI\"), not a value");
            }
            continue;
        }
        match known.get(k) {
            Some(toml::Value::Table(sub)) => match v {
                toml::Value::Table(vt) => check_against(vt, sub, &format!("{prefix}{k}."), origin)?,
                _ => bail!("{origin}: {prefix}{k} is a table of hyperparameters, not a value"),
            },
            Some(_) => {}
            None => {
                let group = known.iter().find_map(|(g, sub)| match sub {
                    toml::Value::Table(sub) if prefix.is_empty() && sub.contains_key(k) => {
                        Some(g.clone())
                    }
                    _ => None,
                });
                if let Some(g) = group {
                    bail!("{origin}: unknown hyperparameter {k:?}: it is {g}.{k} (in [{g}])");
                }
                // Every key of this table, by its full name.
                let names: Vec<String> = known
                    .iter()
                    .flat_map(|(g, sub)| match sub {
                        toml::Value::Table(sub) => sub
                            .keys()
                            .map(|k| format!("{prefix}{g}.{k}"))
                            .collect::<Vec<_>>(),
                        _ => vec![format!("{prefix}{g}")],
                    })
                    .collect();
                bail!(
                    "{origin}: unknown hyperparameter {:?}; known: {}",
                    format!("{prefix}{k}"),
                    names.join(", ")
                );
            }
        }
    }
    Ok(())
}

impl TrainConfig {
    /// Rollout batch size `num_envs · num_steps`.
    pub fn batch_size(&self) -> usize {
        self.num_envs * self.num_steps
    }
    /// Epochs and minibatches per update: PPO's, or one full-batch step
    /// for A2C.
    pub fn epochs_and_minibatches(&self) -> (usize, usize) {
        match self.algo {
            Algo::A2c => (1, 1),
            Algo::Trpo => (self.trpo.vf_epochs, self.trpo.vf_minibatches),
            _ => (self.ppo.update_epochs, self.ppo.num_minibatches),
        }
    }
    /// Minibatch size.
    pub fn minibatch_size(&self) -> usize {
        self.batch_size() / self.epochs_and_minibatches().1
    }
    /// Number of updates in the run.
    pub fn num_updates(&self) -> u64 {
        (self.total_timesteps / self.batch_size() as u64).max(1)
    }

    /// Checks the `[realism]` and `[randomize]` tables against `plant`
    /// (dimensions, episode length, parameter names) and returns them
    /// resolved; the error names the key.
    pub fn validate_for(&self, plant: &RegisteredPlant) -> Result<(Realism, Randomizer)> {
        let width = plant.obs_dim() + self.action_history * plant.act_dim();
        if width > tinyppo_runtime::format::MAX_WIDTH {
            bail!(
                "action_history = {}: plant {} would give the policy {width} inputs \
                 ({} observations + {}·{} actions), the device takes at most {}",
                self.action_history,
                plant.name(),
                plant.obs_dim(),
                self.action_history,
                plant.act_dim(),
                tinyppo_runtime::format::MAX_WIDTH
            );
        }
        let realism =
            self.realism
                .resolve(plant.obs_dim(), plant.act_dim(), plant.max_episode_steps())?;
        let r = Randomizer::new(plant.name(), &plant.default_params()?, &self.randomize)?;
        self.safety.resolve(plant)?;
        Ok((realism, r))
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        use crate::validate::Checks;
        use tinyppo_runtime::format::{LOG_STD_MAX, LOG_STD_MIN, MAX_ABS_VALUE};
        if self.env.is_empty() {
            bail!("env: no plant named (tinyppo train --env NAME)");
        }
        let hidden = |h: &[usize]| {
            !h.is_empty() && h.len() <= 3 && h.iter().all(|&w| (1..=256).contains(&w))
        };
        let mb = self.ppo.num_minibatches;
        Checks::new()
            .count("total_timesteps", self.total_timesteps, 1, 1 << 40)
            .positive("learning_rate", self.learning_rate)
            .count("num_envs", self.num_envs as u64, 1, MAX_ENVS as u64)
            .count("num_steps", self.num_steps as u64, 1, MAX_BATCH as u64)
            .rule(
                self.batch_size() <= MAX_BATCH,
                "num_envs·num_steps",
                self.num_envs.saturating_mul(self.num_steps),
                &format!("at most {MAX_BATCH} steps per rollout"),
            )
            .within("gamma", self.gamma, 0.0, 1.0)
            .within("gae_lambda", self.gae_lambda, 0.0, 1.0)
            .count("n_step", self.n_step as u64, 1, 1 << 20)
            .non_negative("ent_coef", self.ent_coef)
            .non_negative("vf_coef", self.vf_coef)
            .positive("max_grad_norm", self.max_grad_norm)
            .rule(hidden(&self.actor_hidden), "actor_hidden", format!("{:?}", self.actor_hidden), "1–3 layers of width 1–256 (the device limit)")
            .rule(hidden(&self.critic_hidden), "critic_hidden", format!("{:?}", self.critic_hidden), "1–3 layers of width 1–256")
            .within("init_log_std", self.init_log_std, LOG_STD_MIN, LOG_STD_MAX)
            // The blob stores the clip (≤ the format's value limit).
            .positive_at_most("obs_clip", self.obs_clip, MAX_ABS_VALUE)
            .positive("reward_clip", self.reward_clip)
            .positive("adam_eps", self.adam_eps)
            .count("eval_episodes", self.eval_episodes as u64, 1, 1 << 20)
            .count("threads", self.threads as u64, 1, 2)
            .count(
                "action_history",
                self.action_history as u64,
                0,
                tinyppo_runtime::history::MAX_HISTORY as u64,
            )
            .count("ppo.num_minibatches", mb as u64, 1, MAX_BATCH as u64)
            .rule(
                self.algo != Algo::Ppo || (mb > 0 && self.batch_size() % mb == 0),
                "ppo.num_minibatches",
                mb,
                &format!("a divisor of num_envs·num_steps ({})", self.batch_size()),
            )
            .count("ppo.update_epochs", self.ppo.update_epochs as u64, 1, 1 << 16)
            .positive("ppo.clip_coef", self.ppo.clip_coef)
            .non_negative("ppo.target_kl", self.ppo.target_kl)
            .positive("trpo.max_kl", self.trpo.max_kl)
            .count("trpo.cg_iters", self.trpo.cg_iters as u64, 1, 1 << 12)
            .non_negative("trpo.cg_damping", self.trpo.cg_damping)
            .rule(
                self.trpo.backtrack_coef > 0.0 && self.trpo.backtrack_coef < 1.0,
                "trpo.backtrack_coef",
                self.trpo.backtrack_coef,
                "a factor in (0, 1)",
            )
            .count("trpo.max_backtracks", self.trpo.max_backtracks as u64, 1, 1 << 10)
            .count("trpo.vf_epochs", self.trpo.vf_epochs as u64, 1, 1 << 16)
            .count("trpo.vf_minibatches", self.trpo.vf_minibatches as u64, 1, MAX_BATCH as u64)
            .rule(
                self.algo != Algo::Trpo
                    || (self.trpo.vf_minibatches > 0
                        && self.batch_size() % self.trpo.vf_minibatches == 0),
                "trpo.vf_minibatches",
                self.trpo.vf_minibatches,
                &format!("a divisor of num_envs·num_steps ({})", self.batch_size()),
            )
            .rule(
                !(self.algo == Algo::Reinforce
                    && self.reinforce.baseline == Baseline::Optimal
                    && self.reinforce.pg_return != ReturnKind::Full),
                "reinforce.baseline",
                "\"optimal\"",
                "reinforce.pg_return = \"full\" with it (the notes' constant is for the full return)",
            )
            .finish()
    }
}

/// Most parallel environments of a run.
pub const MAX_ENVS: usize = 1024;
/// Most steps of one rollout (`num_envs·num_steps`).
pub const MAX_BATCH: usize = 1 << 22;
