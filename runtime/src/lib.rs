//! # tinyppo-runtime
//!
//! The device half of tinyppo: load a policy exported by the trainer and run
//! it on a microcontroller. `#![no_std]`, no allocation, no panics on input.
//!
//! - [`Blob::parse`] / [`Policy::from_bytes`]: check a policy blob (format
//!   v2, or v1 from older exports; `docs/FORMAT.md`) and borrow its weights
//!   zero-copy from flash.
//! - [`Policy::mean`], [`Policy::act`], [`Policy::log_prob`],
//!   [`Policy::entropy`]: fixed-size inference of a diagonal-Gaussian policy
//!   with f32 or int8 (per-row scaled) weights; [`kernels`]: the dense
//!   layers (int8 with `SXTB16`/`SMLAD` on a Cortex-M4).
//! - [`rng`]: the default xoshiro128++ generator; [`gaussian`]: f32
//!   Box–Muller sampling and the log-density; [`math`]: the tanh shared
//!   with the trainer, Box–Muller's sine and cosine, IEEE square root.
//! - [`control`]: the control loop (read → normalize → sample → actuate →
//!   record) over sensor, actuator and reward traits; [`driver`]: whole
//!   episodes and the log stream over any rig (simulated plant or board);
//!   [`hal`]: adapters for `embedded-hal` 1.0 I2C sensors and PWM actuators.
//! - [`log`]: rollout logging into a bounded queue, streamed as
//!   postcard + CRC-32C + COBS frames (`docs/FORMAT.md`, "Log frames").
//! - [`plants`]: the [`Plant`] trait (yours implements it too) and the
//!   plant codes; with the feature `plants`, the built-in plants. [`sim`]:
//!   a simulated plant in the driver, shared by the firmware under QEMU and
//!   `tinyppo simulate`. [`realism`]: sensor noise, quantization and delay,
//!   actuator delay, slew, lag and deadzone around any plant; [`history`]:
//!   the last applied actions as extra policy inputs.
//! - [`safety`]: action limits, rate limit, observation e-stop and
//!   stuck-sensor detection after the policy; [`selftest`]: the boot
//!   self-test's vectors and check.
//!
//! All float math is plain IEEE f32 (`libm` and [`math`]) and the int8
//! sums are exact integers (the device's assembly computes the same ones
//! as the portable code), so the host computes the same bits as a
//! Cortex-M4F: a host simulation reproduces a device log exactly.
//!
//! ```
//! use tinyppo_runtime::{format, Activation, BlobSpec, LayerSpec, Policy, WeightsSpec};
//!
//! // A 1-2-1 policy, encoded and loaded again.
//! let l0 = LayerSpec { weights: WeightsSpec::F32(&[1.0, -1.0]), bias: &[0.0, 0.0] };
//! let l1 = LayerSpec { weights: WeightsSpec::F32(&[0.5, 0.5]), bias: &[0.1] };
//! let spec = BlobSpec {
//!     obs_dim: 1, act_dim: 1, hidden: &[2], activation: Activation::Relu,
//!     obs_mean: &[0.0], obs_inv_std: &[1.0], obs_clip: 10.0,
//!     action_low: &[-2.0], action_high: &[2.0], log_std: &[0.0],
//!     layers: &[l0, l1],
//!     plant: tinyppo_runtime::plants::code::UNSPECIFIED, safe_action: &[0.0], extensions: &[],
//! };
//! let mut buf = [0u8; 256];
//! let n = format::encode(&spec, &mut buf).unwrap();
//! let policy = Policy::<1, 1, 2>::from_bytes(&buf[..n]).unwrap();
//! assert_eq!(policy.mean(&[3.0]).unwrap(), [1.6]); // 0.5·relu(3) + 0.1
//! let mut rng = tinyppo_runtime::rng::seeded(7);
//! let step = policy.act(&[3.0], &mut rng).unwrap();
//! assert!(step.applied[0] >= -2.0 && step.applied[0] <= 2.0);
//! assert!(policy.act(&[f32::NAN], &mut rng).is_err());
//! ```
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod control;
pub mod driver;
pub mod error;
pub mod format;
pub mod gaussian;
pub mod hal;
pub mod history;
pub mod kernels;
pub mod log;
pub mod math;
pub mod plants;
pub mod policy;
pub mod realism;
pub mod rng;
pub mod safety;
pub mod selftest;
pub mod sim;

pub use error::{ActError, Field, FormatError};
pub use format::{
    encode, Activation, Blob, BlobSpec, EncodeError, Encoding, Extension, Layer, LayerSpec,
    WeightsSpec,
};
pub use plants::Plant;
pub use policy::{Policy, Step};
