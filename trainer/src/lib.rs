//! # tinyppo-trainer
//!
//! PPO (and A2C, REINFORCE) on `ndarray`, with hand-written forward and
//! backward passes, for any plant that implements the runtime's
//! [`Plant`](tinyppo_runtime::Plant) trait; export to the runtime's policy
//! blob; evaluation, simulation, device-log decoding and off-policy
//! fine-tuning through the device's own code.
//!
//! As a library:
//!
//! - [`registry::Registry`]: the plants a program knows. `Registry::builtin()`
//!   registers tinyppo's four; `.with::<MyPlant, OBS, ACT>(preset)` adds
//!   yours. Every command resolves plants only through it.
//! - [`config::resolve`]: a [`config::TrainConfig`] from the plant's preset,
//!   an optional TOML file and `key=value` overrides.
//! - [`run::train`] / [`run::resume`]: a whole training run in a run
//!   directory (checkpoints, metrics, export, policy index, plot, final
//!   evaluation), returning a [`run::RunSummary`].
//! - [`cli::run`]: the whole `tinyppo` command line for a registry, so a
//!   binary with your plant has every subcommand.
//!
//! A plant of your own, trained and evaluated through the runtime:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use tinyppo_runtime::plants::{clip, Plant, Transition};
//! use tinyppo_trainer::{config, registry::Registry, run};
//!
//! /// `y' = y + 0.1·(u − y)`, tracking a target drawn per episode.
//! #[derive(Default)]
//! struct Lag { s: State, p: Params }
//! #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
//! struct Params { rate: f32 }
//! impl Default for Params { fn default() -> Self { Params { rate: 0.1 } } }
//! #[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
//! struct State { y: f32, target: f32, steps: u32 }
//!
//! impl Plant<2, 1> for Lag {
//!     const NAME: &'static str = "lag";
//!     const CODE: u8 = 0x80; // application plants: 0x80–0xFE
//!     const ACTION_LOW: [f32; 1] = [0.0];
//!     const ACTION_HIGH: [f32; 1] = [2.0];
//!     const SAFE_ACTION: [f32; 1] = [0.0];
//!     const MAX_EPISODE_STEPS: u32 = 40;
//!     const DT: f32 = 0.1;
//!     type Params = Params;
//!     type State = State;
//!     fn params(&self) -> Params { self.p }
//!     fn set_params(&mut self, p: Params) { self.p = p }
//!     fn state(&self) -> State { self.s }
//!     fn set_state(&mut self, s: State) { self.s = s }
//!     fn observe(&self) -> [f32; 2] { [self.s.target - self.s.y, self.s.target] }
//!     fn reset<R: tinyppo_runtime::rng::RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; 2] {
//!         self.s = State { y: 0.0, target: tinyppo_runtime::rng::uniform(rng, 0.5, 1.5), steps: 0 };
//!         self.observe()
//!     }
//!     fn step(&mut self, a: &[f32; 1]) -> Transition<2> {
//!         self.s.y += self.p.rate * (clip(a[0], 0.0, 2.0) - self.s.y);
//!         self.s.steps += 1;
//!         let e = self.s.target - self.s.y;
//!         Transition { obs: self.observe(), reward: -e * e, terminated: false,
//!                      truncated: self.s.steps >= 40 }
//!     }
//! }
//!
//! # fn main() -> anyhow::Result<()> {
//! let registry = Registry::builtin().with::<Lag, 2, 1>("num_envs = 2\nnum_steps = 64\n");
//! let plant = registry.get("lag")?;
//! let sets = ["total_timesteps=256", "eval_episodes=3", "actor_hidden=[8]",
//!             "critic_hidden=[8]", "ppo.num_minibatches=2", "ppo.update_epochs=1"];
//! let cfg = config::resolve(plant, None, &sets.map(String::from))?;
//! let dir = std::env::temp_dir().join(format!("tinyppo-doc-{}", std::process::id()));
//! let summary = run::train(&registry, cfg, &dir, &run::RunOptions::default(), &mut |_| {})?;
//! assert_eq!((summary.global_step, summary.version), (256, 1));
//! let blob = std::fs::read(dir.join("policy.bin"))?;
//! assert_eq!(tinyppo_runtime::Blob::parse(&blob).unwrap().plant_code(), Some(0x80));
//! let returns = plant.eval_blob(&blob, 3, 10_001, false)?; // the final evaluation's
//! assert_eq!(returns.iter().sum::<f64>() / 3.0, summary.eval.unwrap().mean_return);
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod algo;
pub mod capture;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod env;
pub mod evaluate;
pub mod export;
pub mod finetune;
pub mod gae;
pub mod history;
pub mod logs;
pub mod loss;
pub mod mlp;
pub mod model;
pub mod normalize;
pub mod offpolicy;
pub mod ope;
pub mod optim;
pub mod pg;
pub mod publish;
pub mod randomize;
pub mod realism;
pub mod registry;
pub mod report;
pub mod run;
pub mod safety;
pub mod stats;
pub mod study;
pub mod sweep;
pub mod trpo;
pub mod validate;
