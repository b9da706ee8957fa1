//! Checkpoints and atomic file writes.
//!
//! `checkpoint.bin` = `b"TPCK"`, u16 LE version, postcard of
//! [`TrainState`], CRC-32C of everything before it (u32 LE). Since version
//! 3 the configuration inside is TOML text, read by field name, so adding
//! a hyperparameter does not change the checkpoint format; version 2
//! checkpoints (the flat configuration of earlier releases) are still
//! read. Every file of a run directory is written to a temporary file in
//! the same directory, synced, then renamed over the target, so a crash
//! never leaves a half-written policy or checkpoint.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tinyppo_runtime::format::CRC32C;

use crate::algo::TrainState;

const MAGIC: &[u8; 4] = b"TPCK";
/// 2: the configuration gained the algorithm family's fields (issue 6).
/// 3: the configuration is TOML text, with the `[ppo]` and `[reinforce]`
/// groups (issue 10); the episodes in flight (bit-identical resume).
const VERSION: u16 = 3;

/// Prefix of the temporary files of [`write_atomic`].
pub const TEMP_PREFIX: &str = ".tinyppo-tmp-";

/// A temporary file of [`write_atomic`] (this version's, or the
/// `.<name>.tmp-<pid>` of earlier ones): left only by a killed process.
pub fn is_temp_file(name: &str) -> bool {
    if name.starts_with(TEMP_PREFIX) {
        return true;
    }
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory (a short name, `.tinyppo-tmp-<pid>-<n>`, so a long target
/// name never makes it too long), synced, then renamed over the target, so
/// a crash never leaves a half-written file. A killed process can leave
/// the temporary file; `publish::repair` removes them from run directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if path.file_name().is_none() {
        bail!("{}: not a file name", path.display());
    }
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Serializes a state into checkpoint bytes.
pub fn to_bytes(state: &TrainState) -> Result<Vec<u8>> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend(postcard::to_allocvec(state).context("serializing checkpoint")?);
    let crc = CRC32C.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Parses checkpoint bytes; `origin` names the file in errors.
pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<TrainState> {
    if bytes.len() < 10 || &bytes[..4] != MAGIC {
        bail!("{origin}: not a tinyppo checkpoint (expected magic \"TPCK\")");
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION && version != 2 {
        bail!("{origin}: checkpoint version {version}, this build reads 2 and {VERSION}");
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = CRC32C.checksum(body);
    if stored != computed {
        bail!("{origin}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x}); the file is corrupt");
    }
    let body = &body[6..];
    if version == 2 {
        let old: v2::TrainState =
            postcard::from_bytes(body).with_context(|| format!("{origin}: decoding checkpoint"))?;
        return Ok(old.into());
    }
    postcard::from_bytes(body).with_context(|| format!("{origin}: decoding checkpoint"))
}

/// Serde `with` module: a [`TrainConfig`](crate::config::TrainConfig) as
/// its TOML text (what the run directory's `config.toml` holds).
pub mod config_as_toml {
    use serde::{de::Error as _, ser::Error as _, Deserialize, Deserializer, Serializer};

    use crate::config::TrainConfig;

    /// Writes the TOML text.
    pub fn serialize<S: Serializer>(cfg: &TrainConfig, s: S) -> Result<S::Ok, S::Error> {
        let text = toml::to_string(cfg).map_err(S::Error::custom)?;
        s.serialize_str(&text)
    }

    /// Reads the TOML text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TrainConfig, D::Error> {
        let text = String::deserialize(d)?;
        toml::from_str(&text).map_err(D::Error::custom)
    }
}

/// The layout of version 2 checkpoints, read and converted.
mod v2 {
    use std::collections::VecDeque;

    use serde::Deserialize;
    use tinyppo_runtime::rng::DefaultRng;

    use crate::config::{AdvantageKind, Algo, PpoParams, ReinforceParams, TrainConfig};
    use crate::mlp::Act;
    use crate::model::ActorCritic;
    use crate::normalize::{RewardScaler, RunningMeanStd};
    use crate::optim::Adam;
    use crate::pg::{Baseline, ReturnKind, ValueTarget};

    /// The flat configuration of checkpoint version 2, field for field.
    #[derive(Deserialize)]
    pub struct Config {
        algo: Algo,
        env: String,
        seed: u64,
        total_timesteps: u64,
        learning_rate: f32,
        anneal_lr: bool,
        num_envs: usize,
        num_steps: usize,
        gamma: f32,
        gae_lambda: f32,
        advantage: AdvantageKind,
        n_step: usize,
        pg_return: ReturnKind,
        baseline: Baseline,
        value_target: ValueTarget,
        num_minibatches: usize,
        update_epochs: usize,
        norm_adv: bool,
        clip_coef: f32,
        clip_vloss: bool,
        ent_coef: f32,
        vf_coef: f32,
        max_grad_norm: f32,
        target_kl: f32,
        actor_hidden: Vec<usize>,
        critic_hidden: Vec<usize>,
        activation: Act,
        init_log_std: f32,
        norm_obs: bool,
        obs_clip: f32,
        norm_reward: bool,
        reward_clip: f32,
        adam_eps: f32,
        eval_episodes: usize,
        threads: usize,
    }

    #[derive(Deserialize)]
    pub struct TrainState {
        cfg: Config,
        model: ActorCritic,
        adam: Adam,
        obs_rms: RunningMeanStd,
        reward_scaler: RewardScaler,
        rng: DefaultRng,
        global_step: u64,
        update: u64,
        recent_returns: VecDeque<f64>,
        target_rms: RunningMeanStd,
    }

    impl From<TrainState> for crate::algo::TrainState {
        fn from(s: TrainState) -> Self {
            let c = s.cfg;
            crate::algo::TrainState {
                cfg: TrainConfig {
                    algo: c.algo,
                    env: c.env,
                    seed: c.seed,
                    total_timesteps: c.total_timesteps,
                    learning_rate: c.learning_rate,
                    anneal_lr: c.anneal_lr,
                    num_envs: c.num_envs,
                    num_steps: c.num_steps,
                    gamma: c.gamma,
                    gae_lambda: c.gae_lambda,
                    advantage: c.advantage,
                    n_step: c.n_step,
                    norm_adv: c.norm_adv,
                    ent_coef: c.ent_coef,
                    vf_coef: c.vf_coef,
                    max_grad_norm: c.max_grad_norm,
                    actor_hidden: c.actor_hidden,
                    critic_hidden: c.critic_hidden,
                    activation: c.activation,
                    init_log_std: c.init_log_std,
                    norm_obs: c.norm_obs,
                    obs_clip: c.obs_clip,
                    norm_reward: c.norm_reward,
                    reward_clip: c.reward_clip,
                    adam_eps: c.adam_eps,
                    eval_episodes: c.eval_episodes,
                    threads: c.threads,
                    action_history: 0,
                    ppo: PpoParams {
                        num_minibatches: c.num_minibatches,
                        update_epochs: c.update_epochs,
                        clip_coef: c.clip_coef,
                        clip_vloss: c.clip_vloss,
                        target_kl: c.target_kl,
                    },
                    reinforce: ReinforceParams {
                        pg_return: c.pg_return,
                        baseline: c.baseline,
                        value_target: c.value_target,
                    },
                    realism: Default::default(),
                    randomize: Default::default(),
                    safety: Default::default(),
                    trpo: Default::default(),
                },
                model: s.model,
                adam: s.adam,
                obs_rms: s.obs_rms,
                reward_scaler: s.reward_scaler,
                rng: s.rng,
                global_step: s.global_step,
                update: s.update,
                recent_returns: s.recent_returns,
                target_rms: s.target_rms,
                in_flight: None,
            }
        }
    }
}

/// Saves `state` as `dir/checkpoint.bin`.
pub fn save(dir: &Path, state: &TrainState) -> Result<()> {
    write_atomic(&dir.join("checkpoint.bin"), &to_bytes(state)?)
}

/// Loads `dir/checkpoint.bin`.
pub fn load(dir: &Path) -> Result<TrainState> {
    let path = dir.join("checkpoint.bin");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    from_bytes(&bytes, &path.display().to_string())
}
