//! # heater-plant
//!
//! The TCLab temperature-control kit as a tinyppo plant: one heater, one
//! temperature sensor, a setpoint to reach and hold. `#![no_std]`, f32 and
//! `libm` only, so the trainer (host) and a Cortex-M4F firmware compute
//! the same trajectory bit for bit.
//!
//! - [`Heater`]: the plant (`Plant<3, 1>`, name `heater`, code `0x80`);
//!   the model, its sources, the task and the reward are in the
//!   [module docs](heater).
//! - [`HeaterParams`]: the physical constants (defaults from APMonitor's
//!   TCLab model); [`HeaterState`]: everything a step depends on.
//!
//! ```
//! use heater_plant::{Heater, OBS};
//! use tinyppo_runtime::plants::Plant;
//!
//! let mut plant = Heater::new();
//! let obs = plant.reset(&mut tinyppo_runtime::rng::seeded(1));
//! assert_eq!(obs.len(), OBS);
//! let t = plant.step(&[f32::NAN]); // NaN is "heater off", never a panic
//! assert!(t.obs.iter().all(|o| o.is_finite()) && t.reward <= 0.0);
//! ```
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod heater;

pub use heater::{Heater, HeaterParams, HeaterState, OBS};
