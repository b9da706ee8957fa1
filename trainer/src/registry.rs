//! The plant registry: the one place a command learns which plants exist.
//!
//! Every command resolves a plant through a [`Registry`]: `train`, `eval`,
//! `export`, `inspect`, `simulate`, `logs decode`, `finetune`, `study` and
//! `plot`. The built-in plants are registered by [`Registry::builtin`]
//! through the same [`Registry::with`] a user's crate calls for its own
//! plant, so nothing else in the trainer knows their names:
//!
//! ```
//! use tinyppo_runtime::plants::{CartPole, Pendulum};
//! use tinyppo_trainer::registry::Registry;
//!
//! // Built-ins plus one more (here a second cartpole under another name
//! // would be refused: names and codes are unique).
//! let reg = Registry::builtin();
//! let p = reg.get("pendulum").unwrap();
//! assert_eq!((p.code(), p.obs_dim(), p.act_dim()), (0, 3, 1));
//! assert!(reg.get("heater").unwrap_err().to_string().contains("pendulum"));
//! assert!(Registry::new().try_with::<Pendulum, 3, 1>("").is_ok());
//! assert!(Registry::builtin().try_with::<CartPole, 4, 1>("").is_err());
//! ```
//!
//! A [`RegisteredPlant`] is a cheap handle (an `Arc`) to everything the
//! tools do with one plant type: make simulated environments for training,
//! evaluate and simulate an exported blob through the runtime (`Policy<OBS,
//! ACT, 256>` on the plant, the device's code), recompute logged
//! log-probabilities, and read the plant's parameters by name. It is built
//! from the type's [`Plant`] constants once, at registration.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tinyppo_runtime::plants::{code, Plant};
use tinyppo_runtime::realism::{Realism as RtRealism, Realistic};
use tinyppo_runtime::sim::{RunConfig, RunStats};
use tinyppo_runtime::Blob;

use crate::config::TrainConfig;
use crate::env::{Env, PlantEnv};
use crate::randomize::RandomizedEnv;
use crate::realism::Realism;

/// What the tools do with one plant type (implemented once, generically,
/// by [`Typed`]).
trait PlantOps: Send + Sync {
    fn make_env(&self, realism: &Realism) -> Result<Box<dyn Env>>;
    fn eval(
        &self,
        blob: &[u8],
        episodes: usize,
        seed: u64,
        stochastic: bool,
        model: &Model,
    ) -> Result<Vec<f64>>;
    fn simulate(&self, blob: &[u8], cfg: &RunConfig, model: &Model) -> Result<(Vec<u8>, RunStats)>;
    fn log_probs(&self, blob: &[u8], items: &[(&[f32], &[f32])]) -> Result<Vec<Option<f32>>>;
    fn self_test_vectors(&self, blob: &[u8]) -> Result<(Vec<f32>, Vec<f32>)>;
    fn default_params(&self) -> Result<serde_json::Value>;
}

/// Seed of the plant resets that give the self-test's observations.
const SELF_TEST_SEED: u64 = 0x5E1F_7E57;

/// The plant a blob is evaluated or simulated on: its sensor and actuator
/// effects and its parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    /// Sensor and actuator effects; `None`: the ones the blob was exported
    /// with (none if it has no realism record).
    pub realism: Option<Realism>,
    /// Plant parameters by name (a JSON object; the ones it does not name
    /// keep their defaults); `None`: the defaults.
    pub params: Option<serde_json::Value>,
}

struct Typed<P, const OBS: usize, const ACT: usize>(std::marker::PhantomData<fn() -> P>);

impl<P, const OBS: usize, const ACT: usize> Typed<P, OBS, ACT>
where
    P: Plant<OBS, ACT> + Default + Send + 'static,
{
    /// The runtime's settings of `realism`, or of the blob's record.
    fn realism(blob: &[u8], realism: Option<&Realism>) -> Result<RtRealism<OBS, ACT>> {
        let spec = match realism {
            Some(r) => r.clone(),
            None => {
                let b =
                    Blob::parse(blob).map_err(|e| anyhow::anyhow!("invalid policy blob: {e}"))?;
                Realism::of_blob(&b)
            }
        };
        RtRealism::from_spec(&spec.spec()).map_err(|e| anyhow::anyhow!("plant {}: {e}", P::NAME))
    }

    /// The parameters of `params` (over the defaults), if it names any.
    fn params(params: Option<&serde_json::Value>) -> Result<Option<P::Params>> {
        let Some(over) = params else { return Ok(None) };
        {
            let mut p = serde_json::to_value(P::Params::default())?;
            if let (Some(obj), Some(over)) = (p.as_object_mut(), over.as_object()) {
                for (k, v) in over {
                    if !obj.contains_key(k) {
                        bail!("plant {} has no parameter {k:?}", P::NAME);
                    }
                    obj.insert(k.clone(), v.clone());
                }
            }
            let p: P::Params = serde_json::from_value(p)
                .with_context(|| format!("parameters of plant {}", P::NAME))?;
            Ok(Some(p))
        }
    }

    /// A maker of fresh plants of `model`.
    fn model(blob: &[u8], model: &Model) -> Result<impl Fn() -> Realistic<P, OBS, ACT>> {
        let params = Self::params(model.params.as_ref())?;
        let realism = Self::realism(blob, model.realism.as_ref())?;
        Ok(move || {
            let mut p = P::default();
            if let Some(params) = params {
                p.set_params(params);
            }
            Realistic::new(p, realism)
        })
    }
}

impl<P, const OBS: usize, const ACT: usize> PlantOps for Typed<P, OBS, ACT>
where
    P: Plant<OBS, ACT> + Default + Send + 'static,
{
    fn make_env(&self, realism: &Realism) -> Result<Box<dyn Env>> {
        // Without effects, the bare plant: its checkpointed state stays
        // what runs of earlier versions saved.
        if realism.is_none() {
            return Ok(Box::new(PlantEnv::<P, OBS, ACT>(P::default())));
        }
        let r = Self::realism(&[], Some(realism))?;
        Ok(Box::new(PlantEnv::<Realistic<P, OBS, ACT>, OBS, ACT>(
            Realistic::new(P::default(), r),
        )))
    }
    fn eval(
        &self,
        blob: &[u8],
        episodes: usize,
        seed: u64,
        stochastic: bool,
        model: &Model,
    ) -> Result<Vec<f64>> {
        let make = Self::model(blob, model)?;
        crate::evaluate::eval_on::<_, OBS, ACT>(blob, episodes, seed, stochastic, make)
    }
    fn simulate(&self, blob: &[u8], cfg: &RunConfig, model: &Model) -> Result<(Vec<u8>, RunStats)> {
        let mut plant = Self::model(blob, model)?();
        crate::logs::simulate_on::<_, OBS, ACT>(blob, cfg, &mut plant)
    }
    fn log_probs(&self, blob: &[u8], items: &[(&[f32], &[f32])]) -> Result<Vec<Option<f32>>> {
        crate::finetune::import::runtime_log_probs::<OBS, ACT>(blob, items)
    }
    fn self_test_vectors(&self, blob: &[u8]) -> Result<(Vec<f32>, Vec<f32>)> {
        use tinyppo_runtime::format::{f32s, MAX_ABS_VALUE};
        let policy = crate::evaluate::load_for::<P, OBS, ACT>(blob)?;
        let b = Blob::parse(blob).map_err(anyhow::Error::msg)?;
        // Three initial states of the plant, the normalization's centre,
        // and a point 2σ off it in alternating directions (near the clip).
        let mut rng = tinyppo_runtime::rng::seeded(SELF_TEST_SEED);
        let mut points: Vec<[f32; OBS]> = (0..3).map(|_| P::default().reset(&mut rng)).collect();
        let mut centre = [0.0f32; OBS];
        let mut off = [0.0f32; OBS];
        for (j, (m, inv)) in f32s(b.obs_mean).zip(f32s(b.obs_inv_std)).enumerate() {
            let sign = if j % 2 == 0 { 2.0 } else { -2.0 };
            centre[j] = m;
            off[j] = (m + sign / inv).clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE);
        }
        points.extend([centre, off]);
        let history = tinyppo_runtime::history::ActionHistory::new(policy.safe_action());
        let (mut obs, mut means) = (Vec::new(), Vec::new());
        for p in &points {
            // A plant state the format cannot hold is left out.
            if !p.iter().all(|v| v.is_finite() && v.abs() <= MAX_ABS_VALUE) {
                continue;
            }
            let mu = policy
                .mean_with(p, &history)
                .map_err(|e| anyhow::anyhow!("self-test vector {p:?}: {e}"))?;
            obs.extend_from_slice(p);
            means.extend_from_slice(&mu);
        }
        Ok((obs, means))
    }
    fn default_params(&self) -> Result<serde_json::Value> {
        serde_json::to_value(P::Params::default()).context("serializing the default parameters")
    }
}

/// One registered plant: its constants, its preset and what the tools do
/// with it. Cheap to clone.
#[derive(Clone)]
pub struct RegisteredPlant(Arc<Entry>);

struct Entry {
    name: &'static str,
    code: u8,
    obs_dim: usize,
    act_dim: usize,
    action_low: Vec<f32>,
    action_high: Vec<f32>,
    safe_action: Vec<f32>,
    max_episode_steps: u32,
    dt: f32,
    preset: String,
    ops: Box<dyn PlantOps>,
}

impl std::fmt::Debug for RegisteredPlant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RegisteredPlant({}, code {:#04x}, {}→{})",
            self.0.name, self.0.code, self.0.obs_dim, self.0.act_dim
        )
    }
}

impl RegisteredPlant {
    /// Name on the command line and in configs.
    pub fn name(&self) -> &'static str {
        self.0.name
    }
    /// Code in logs and blobs.
    pub fn code(&self) -> u8 {
        self.0.code
    }
    /// Observation dimension.
    pub fn obs_dim(&self) -> usize {
        self.0.obs_dim
    }
    /// Action dimension.
    pub fn act_dim(&self) -> usize {
        self.0.act_dim
    }
    /// Lower action bounds.
    pub fn action_low(&self) -> &[f32] {
        &self.0.action_low
    }
    /// Upper action bounds.
    pub fn action_high(&self) -> &[f32] {
        &self.0.action_high
    }
    /// The plant's safe action (exported into every blob).
    pub fn safe_action(&self) -> &[f32] {
        &self.0.safe_action
    }
    /// Time limit in steps.
    pub fn max_episode_steps(&self) -> u32 {
        self.0.max_episode_steps
    }
    /// Control period in seconds.
    pub fn dt(&self) -> f32 {
        self.0.dt
    }
    /// The plant's hyperparameter preset (TOML), over the defaults.
    pub fn preset(&self) -> &str {
        &self.0.preset
    }

    /// A fresh simulated plant with default parameters and no realism.
    pub fn make_env(&self) -> Box<dyn Env> {
        let none = Realism::none(self.obs_dim(), self.act_dim());
        match self.0.ops.make_env(&none) {
            Ok(e) => e,
            // Realism::none always converts.
            Err(e) => unreachable!("no realism refused: {e:#}"),
        }
    }

    /// A fresh simulated plant with `realism` around it.
    pub fn make_env_with(&self, realism: &Realism) -> Result<Box<dyn Env>> {
        self.0.ops.make_env(realism)
    }

    /// A training environment of a run: the plant with the run's
    /// `[realism]`, its parameters drawn per episode from `[randomize]`,
    /// the last `action_history` applied actions appended to its
    /// observation.
    pub fn make_training_env(&self, cfg: &TrainConfig) -> Result<Box<dyn Env>> {
        let (realism, randomizer) = cfg.validate_for(self)?;
        let env = self.make_env_with(&realism)?;
        let env: Box<dyn Env> = if randomizer.is_empty() {
            env
        } else {
            Box::new(RandomizedEnv::new(env, randomizer))
        };
        Ok(match cfg.action_history {
            0 => env,
            k => Box::new(crate::history::HistoryEnv::new(env, k)),
        })
    }

    /// The default parameters as a JSON object, field name → value.
    pub fn default_params(&self) -> Result<serde_json::Value> {
        self.0.ops.default_params()
    }

    /// Refuses a blob that names another plant (unless `allow_other`):
    /// `origin` names the file in the error.
    pub fn check_blob(&self, blob: &[u8], origin: &str, allow_other: bool) -> Result<()> {
        let b =
            Blob::parse(blob).map_err(|e| anyhow::anyhow!("{origin}: invalid policy blob: {e}"))?;
        if (b.obs_dim, b.act_dim) != (self.obs_dim(), self.act_dim()) {
            bail!(
                "{origin}: the policy has {} observations and {} actions, but plant {} has {} and {}",
                b.obs_dim,
                b.act_dim,
                self.name(),
                self.obs_dim(),
                self.act_dim()
            );
        }
        match b.plant_code() {
            Some(c) if c != self.code() && !allow_other => bail!(
                "{origin}: the policy was exported for plant code {c:#04x}, not for {} \
                 (code {:#04x}); pass --allow-other-plant to run it anyway",
                self.name(),
                self.code()
            ),
            _ => Ok(()),
        }
    }

    /// Returns of `episodes` episodes of `blob` on this plant, through the
    /// runtime (`Policy::<OBS, ACT, 256>`, the device's code): the mean
    /// action, or samples with `stochastic`. Same seed, same returns. The
    /// plant has its default parameters and the realism the blob was
    /// exported with.
    pub fn eval_blob(
        &self,
        blob: &[u8],
        episodes: usize,
        seed: u64,
        stochastic: bool,
    ) -> Result<Vec<f64>> {
        self.eval_blob_on(blob, episodes, seed, stochastic, &Model::default())
    }

    /// [`eval_blob`](Self::eval_blob) on another [`Model`] of the plant
    /// (other parameters, other realism).
    pub fn eval_blob_on(
        &self,
        blob: &[u8],
        episodes: usize,
        seed: u64,
        stochastic: bool,
        model: &Model,
    ) -> Result<Vec<f64>> {
        self.0.ops.eval(blob, episodes, seed, stochastic, model)
    }

    /// The log stream of `blob` on this plant through the device's control
    /// loop (`sim::run_simulated`, hidden scratch 256, queue of 64): the
    /// bytes a firmware running the same plant writes. Default parameters,
    /// the blob's realism (what the QEMU firmware applies too).
    pub fn simulate_blob(&self, blob: &[u8], cfg: &RunConfig) -> Result<(Vec<u8>, RunStats)> {
        self.simulate_blob_on(blob, cfg, &Model::default())
    }

    /// [`simulate_blob`](Self::simulate_blob) on another [`Model`].
    pub fn simulate_blob_on(
        &self,
        blob: &[u8],
        cfg: &RunConfig,
        model: &Model,
    ) -> Result<(Vec<u8>, RunStats)> {
        self.0.ops.simulate(blob, cfg, model)
    }

    /// The boot self-test's vectors for `blob` (`docs/FORMAT.md`, record
    /// 0x81): observations (three initial states of the plant, the
    /// normalization's centre and a point 2σ off it) and the mean actions
    /// the runtime computes for them at an episode's first tick, each
    /// flattened vector after vector.
    pub fn self_test_vectors(&self, blob: &[u8]) -> Result<(Vec<f32>, Vec<f32>)> {
        self.0.ops.self_test_vectors(blob)
    }

    /// `log π(u|x)` of each `(x, u)` recomputed by the runtime from `blob`;
    /// `None` where the runtime refuses the input.
    pub fn log_probs(&self, blob: &[u8], items: &[(&[f32], &[f32])]) -> Result<Vec<Option<f32>>> {
        self.0.ops.log_probs(blob, items)
    }
}

/// The plants the tools know, by name and by code.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    plants: Vec<RegisteredPlant>,
}

impl Registry {
    /// No plants.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The built-in plants (`pendulum`, `mountain-car`, `cartpole`,
    /// `dc-motor`) with their presets: the one place that names them.
    pub fn builtin() -> Self {
        use tinyppo_runtime::plants::{CartPole, DcMotor, MountainCar, Pendulum};
        Registry::new()
            .with::<Pendulum, 3, 1>(include_str!("../presets/pendulum.toml"))
            .with::<MountainCar, 2, 1>(include_str!("../presets/mountain-car.toml"))
            .with::<CartPole, 4, 1>(include_str!("../presets/cartpole.toml"))
            .with::<DcMotor, 3, 1>(include_str!("../presets/dc-motor.toml"))
    }

    /// Registers plant `P` with its hyperparameter preset (a TOML table
    /// over [`TrainConfig::default`](crate::config::TrainConfig), like
    /// `trainer/presets/*.toml`; `""` for none).
    ///
    /// # Panics
    /// If [`try_with`](Self::try_with) refuses the plant (a name or code
    /// already registered, or an invalid code): a mistake in the program
    /// that builds the registry, found the first time it runs.
    pub fn with<P, const OBS: usize, const ACT: usize>(self, preset: impl Into<String>) -> Self
    where
        P: Plant<OBS, ACT> + Default + Send + 'static,
    {
        match self.try_with::<P, OBS, ACT>(preset) {
            Ok(r) => r,
            Err(e) => panic!("Registry::with: {e:#}"),
        }
    }

    /// Registers plant `P`; refuses a name or code already registered, an
    /// empty name, and the code `0xFF` (it means "no plant"). Application
    /// plants take codes from `0x80–0xFE` (`plants::code`).
    pub fn try_with<P, const OBS: usize, const ACT: usize>(
        mut self,
        preset: impl Into<String>,
    ) -> Result<Self>
    where
        P: Plant<OBS, ACT> + Default + Send + 'static,
    {
        let (name, c) = (P::NAME, P::CODE);
        if name.is_empty() || name.contains(char::is_whitespace) {
            bail!("plant name {name:?}: expected a non-empty name without spaces");
        }
        if c == code::UNSPECIFIED {
            bail!("plant {name}: code 0xff means \"no plant\"; application plants take 0x80–0xfe");
        }
        if let Some(p) = self
            .plants
            .iter()
            .find(|p| p.name() == name || p.code() == c)
        {
            bail!(
                "plant {name} (code {c:#04x}): {} (code {:#04x}) is already registered",
                p.name(),
                p.code()
            );
        }
        self.plants.push(RegisteredPlant(Arc::new(Entry {
            name,
            code: c,
            obs_dim: OBS,
            act_dim: ACT,
            action_low: P::ACTION_LOW.to_vec(),
            action_high: P::ACTION_HIGH.to_vec(),
            safe_action: P::SAFE_ACTION.to_vec(),
            max_episode_steps: P::MAX_EPISODE_STEPS,
            dt: P::DT,
            preset: preset.into(),
            ops: Box::new(Typed::<P, OBS, ACT>(std::marker::PhantomData)),
        })));
        Ok(self)
    }

    /// The plant called `name`; the error lists the registered names.
    pub fn get(&self, name: &str) -> Result<&RegisteredPlant> {
        self.plants
            .iter()
            .find(|p| p.name() == name)
            .with_context(|| {
                format!(
                    "unknown plant {name:?}: expected one of {}",
                    self.names().join(", ")
                )
            })
    }

    /// The plant with log/blob code `code`.
    pub fn by_code(&self, code: u8) -> Option<&RegisteredPlant> {
        self.plants.iter().find(|p| p.code() == code)
    }

    /// Registered names, in registration order.
    pub fn names(&self) -> Vec<&'static str> {
        self.plants.iter().map(|p| p.name()).collect()
    }

    /// All registered plants, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredPlant> {
        self.plants.iter()
    }

    /// How a log header's plant code reads: the registered name, or
    /// `"unspecified"` (`0xFF`), or `"unknown (0x..)"`.
    pub fn describe_code(&self, code: u8) -> String {
        match self.by_code(code) {
            Some(p) => p.name().to_string(),
            None if code == code::UNSPECIFIED => "unspecified".into(),
            None => format!("unknown ({code:#04x})"),
        }
    }
}
