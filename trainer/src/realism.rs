//! The `[realism]` table of a run: sensor and actuator effects around the
//! plant, as the runtime's [`tinyppo_runtime::realism`] applies them (the
//! same code in training, `tinyppo eval`/`simulate` and the QEMU firmware).
//!
//! ```toml
//! [realism]
//! obs_noise = [0.01, 0.01, 0.05]   # σ per observation (or one number for all)
//! obs_resolution = 0.0             # quantization step per observation
//! obs_delay = 0                    # ticks
//! action_delay = 1                 # ticks
//! actuator_tau = 0.02              # s, first-order lag
//! rate_limit = 0.0                 # units/s per action
//! deadzone = 0.0                   # per action
//! smoothness = 0.0                 # c of −c·‖a_t − a_{t−1}‖² in the reward
//! ```
//!
//! Every effect is off at 0 (the default). Per-dimension settings take one
//! number for every dimension or a list with one per dimension. The values
//! are checked against the plant ([`RealismConfig::resolve`]); `export`
//! writes them into the blob, so `eval` and `simulate` apply what the
//! policy was trained with.

use std::fmt;

use serde::{Deserialize, Serialize};
use tinyppo_runtime::format::MAX_ABS_VALUE;
use tinyppo_runtime::realism::{RealismSpec, RealismView, MAX_DELAY};

use crate::validate::Invalid;

/// One number for every dimension, or one per dimension.
#[derive(Debug, Clone, PartialEq)]
pub enum PerDim {
    /// The same value for every dimension.
    All(f32),
    /// One value per dimension.
    Each(Vec<f32>),
}

impl Default for PerDim {
    fn default() -> Self {
        PerDim::All(0.0)
    }
}

impl fmt::Display for PerDim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PerDim::All(v) => write!(f, "{v}"),
            PerDim::Each(v) => write!(f, "{v:?}"),
        }
    }
}

impl PerDim {
    /// The values for `n` dimensions; `None` if a list has another length.
    pub(crate) fn expand(&self, n: usize) -> Option<Vec<f32>> {
        match self {
            PerDim::All(v) => Some(vec![*v; n]),
            PerDim::Each(v) if v.len() == n => Some(v.clone()),
            PerDim::Each(_) => None,
        }
    }
}

impl Serialize for PerDim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Each f32 as the shortest decimal that reads back as it (`1.1`,
        // not the f64 widening `1.100000023841858`).
        let wide = |v: f32| v.to_string().parse::<f64>().unwrap_or(v as f64);
        match self {
            PerDim::All(v) => s.serialize_f64(wide(*v)),
            PerDim::Each(v) => v
                .iter()
                .map(|&x| wide(x))
                .collect::<Vec<f64>>()
                .serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for PerDim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PerDim;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, or a list of numbers (one per dimension)")
            }
            fn visit_f64<E>(self, v: f64) -> Result<PerDim, E> {
                Ok(PerDim::All(v as f32))
            }
            fn visit_i64<E>(self, v: i64) -> Result<PerDim, E> {
                Ok(PerDim::All(v as f32))
            }
            fn visit_u64<E>(self, v: u64) -> Result<PerDim, E> {
                Ok(PerDim::All(v as f32))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<PerDim, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element::<f64>()? {
                    out.push(v as f32);
                }
                Ok(PerDim::Each(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `[realism]` table (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealismConfig {
    /// Gaussian sensor noise σ per observation, in its units.
    pub obs_noise: PerDim,
    /// Sensor quantization step per observation (0 = exact).
    pub obs_resolution: PerDim,
    /// Observation delay, ticks (0–8).
    pub obs_delay: u32,
    /// Action delay, ticks (0–8).
    pub action_delay: u32,
    /// Actuator first-order lag time constant, seconds (0 = none).
    pub actuator_tau: f32,
    /// Actuator slew rate per action, units per second (0 = none).
    pub rate_limit: PerDim,
    /// Actuator deadzone per action: `|a| <` this gives 0 (0 = none).
    pub deadzone: PerDim,
    /// Action-smoothness penalty `c·‖a_t − a_{t−1}‖²` subtracted from the
    /// reward.
    pub smoothness: f32,
}

/// Realism settings resolved for a plant's dimensions: what the runtime
/// takes ([`Realism::spec`](Self::spec)).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Realism {
    /// σ per observation.
    pub obs_noise: Vec<f32>,
    /// Quantization step per observation.
    pub obs_resolution: Vec<f32>,
    /// Observation delay, ticks.
    pub obs_delay: u8,
    /// Action delay, ticks.
    pub action_delay: u8,
    /// Actuator lag time constant, seconds.
    pub actuator_tau: f32,
    /// Slew rate per action.
    pub rate_limit: Vec<f32>,
    /// Deadzone per action.
    pub deadzone: Vec<f32>,
    /// Smoothness penalty coefficient.
    pub smoothness: f32,
}

impl RealismConfig {
    /// The settings for a plant with `obs_dim` observations, `act_dim`
    /// actions and episodes of `max_steps` steps; the error names the key
    /// (`realism.obs_noise`) and what was expected.
    pub fn resolve(
        &self,
        obs_dim: usize,
        act_dim: usize,
        max_steps: u32,
    ) -> Result<Realism, Invalid> {
        let per = |key: &str, v: &PerDim, n: usize, what: &str| -> Result<Vec<f32>, Invalid> {
            let vals = v.expand(n).ok_or_else(|| Invalid {
                key: format!("realism.{key}"),
                value: v.to_string(),
                expected: format!("one number, or a list of {n} (one per {what})"),
            })?;
            for (i, &x) in vals.iter().enumerate() {
                if !(x.is_finite() && (0.0..=MAX_ABS_VALUE).contains(&x)) {
                    let key = match v {
                        PerDim::All(_) => format!("realism.{key}"),
                        PerDim::Each(_) => format!("realism.{key}[{i}]"),
                    };
                    return Err(Invalid {
                        key,
                        value: x.to_string(),
                        expected: "a finite number in [0, 1e5] (0 = off)".into(),
                    });
                }
            }
            Ok(vals)
        };
        let scalar = |key: &str, x: f32| -> Result<f32, Invalid> {
            per(key, &PerDim::All(x), 1, "value").map(|v| v[0])
        };
        let delay = |key: &str, d: u32| -> Result<u8, Invalid> {
            let limit = (MAX_DELAY as u32).min(max_steps.saturating_sub(1));
            if d > limit {
                return Err(Invalid {
                    key: format!("realism.{key}"),
                    value: d.to_string(),
                    expected: format!(
                        "0 to {limit} ticks (at most {MAX_DELAY}, and shorter than the \
                         plant's {max_steps}-step episode)"
                    ),
                });
            }
            Ok(d as u8)
        };
        Ok(Realism {
            obs_noise: per("obs_noise", &self.obs_noise, obs_dim, "observation")?,
            obs_resolution: per(
                "obs_resolution",
                &self.obs_resolution,
                obs_dim,
                "observation",
            )?,
            obs_delay: delay("obs_delay", self.obs_delay)?,
            action_delay: delay("action_delay", self.action_delay)?,
            actuator_tau: scalar("actuator_tau", self.actuator_tau)?,
            rate_limit: per("rate_limit", &self.rate_limit, act_dim, "action")?,
            deadzone: per("deadzone", &self.deadzone, act_dim, "action")?,
            smoothness: scalar("smoothness", self.smoothness)?,
        })
    }
}

impl Realism {
    /// Everything off for the given dimensions.
    pub fn none(obs_dim: usize, act_dim: usize) -> Self {
        Realism {
            obs_noise: vec![0.0; obs_dim],
            obs_resolution: vec![0.0; obs_dim],
            rate_limit: vec![0.0; act_dim],
            deadzone: vec![0.0; act_dim],
            ..Realism::default()
        }
    }

    /// Every effect is off.
    pub fn is_none(&self) -> bool {
        let zero = |v: &[f32]| v.iter().all(|&x| x == 0.0);
        zero(&self.obs_noise)
            && zero(&self.obs_resolution)
            && zero(&self.rate_limit)
            && zero(&self.deadzone)
            && self.obs_delay == 0
            && self.action_delay == 0
            && self.actuator_tau == 0.0
            && self.smoothness == 0.0
    }

    /// The runtime's view of the settings.
    pub fn spec(&self) -> RealismSpec<'_> {
        RealismSpec {
            obs_noise: &self.obs_noise,
            obs_resolution: &self.obs_resolution,
            obs_delay: self.obs_delay,
            action_delay: self.action_delay,
            actuator_tau: self.actuator_tau,
            rate_limit: &self.rate_limit,
            deadzone: &self.deadzone,
            smoothness: self.smoothness,
        }
    }

    /// The settings of a blob's (checked) realism record.
    pub fn from_view(v: &RealismView<'_>) -> Self {
        let f = |b: &[u8]| tinyppo_runtime::format::f32s(b).collect::<Vec<f32>>();
        Realism {
            obs_noise: f(v.obs_noise),
            obs_resolution: f(v.obs_resolution),
            obs_delay: v.obs_delay,
            action_delay: v.action_delay,
            actuator_tau: v.actuator_tau,
            rate_limit: f(v.rate_limit),
            deadzone: f(v.deadzone),
            smoothness: v.smoothness,
        }
    }

    /// The realism a blob was exported with, or none for its dimensions.
    pub fn of_blob(blob: &tinyppo_runtime::Blob<'_>) -> Self {
        match blob.realism() {
            Some(v) => Self::from_view(&v),
            None => Self::none(blob.obs_dim, blob.act_dim),
        }
    }

    /// The body of the blob's realism record.
    pub fn encode(&self) -> Vec<u8> {
        let n = 16 + 8 * (self.obs_noise.len() + self.rate_limit.len()) + 20;
        let mut buf = vec![0u8; n];
        let len = tinyppo_runtime::realism::encode_body(&self.spec(), &mut buf)
            .expect("the buffer bounds the record's size");
        buf.truncate(len);
        buf
    }

    /// One line for people: the effects that are on.
    pub fn describe(&self) -> String {
        if self.is_none() {
            return "none".into();
        }
        let mut parts = Vec::new();
        let nz = |v: &[f32]| v.iter().any(|&x| x != 0.0);
        if nz(&self.obs_noise) {
            parts.push(format!("obs_noise {:?}", self.obs_noise));
        }
        if nz(&self.obs_resolution) {
            parts.push(format!("obs_resolution {:?}", self.obs_resolution));
        }
        if self.obs_delay > 0 {
            parts.push(format!("obs_delay {}", self.obs_delay));
        }
        if self.action_delay > 0 {
            parts.push(format!("action_delay {}", self.action_delay));
        }
        if self.actuator_tau > 0.0 {
            parts.push(format!("actuator_tau {} s", self.actuator_tau));
        }
        if nz(&self.rate_limit) {
            parts.push(format!("rate_limit {:?}/s", self.rate_limit));
        }
        if nz(&self.deadzone) {
            parts.push(format!("deadzone {:?}", self.deadzone));
        }
        if self.smoothness > 0.0 {
            parts.push(format!("smoothness {}", self.smoothness));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_broadcast_and_lists_must_fit() {
        let c: RealismConfig =
            toml::from_str("obs_noise = 0.1\nrate_limit = [2.0]\nobs_delay = 2").unwrap();
        let r = c.resolve(3, 1, 200).unwrap();
        assert_eq!(r.obs_noise, vec![0.1; 3]);
        assert_eq!(r.rate_limit, vec![2.0]);
        assert_eq!(r.obs_delay, 2);
        let c: RealismConfig = toml::from_str("obs_noise = [0.1, 0.2]").unwrap();
        let e = c.resolve(3, 1, 200).unwrap_err();
        assert_eq!(e.key, "realism.obs_noise");
        assert!(e.expected.contains("list of 3"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = |src: &str, key: &str| {
            let c: RealismConfig = toml::from_str(src).unwrap();
            let e = c.resolve(3, 1, 200).unwrap_err();
            assert_eq!(e.key, key, "{src}: {e}");
        };
        bad("obs_noise = -0.1", "realism.obs_noise");
        bad("obs_noise = [0.0, nan, 0.0]", "realism.obs_noise[1]");
        bad("actuator_tau = inf", "realism.actuator_tau");
        bad("obs_delay = 9", "realism.obs_delay");
        bad("smoothness = -1.0", "realism.smoothness");
        // A delay as long as the episode.
        let c: RealismConfig = toml::from_str("action_delay = 5").unwrap();
        assert_eq!(c.resolve(3, 1, 5).unwrap_err().key, "realism.action_delay");
        assert!(toml::from_str::<RealismConfig>("obs_noise = \"x\"").is_err());
        assert!(toml::from_str::<RealismConfig>("noise = 1.0").is_err());
    }

    #[test]
    fn record_round_trips() {
        let c: RealismConfig = toml::from_str(
            "obs_noise = [0.01, 0.0, 0.2]\nobs_delay = 1\nactuator_tau = 0.03\nsmoothness = 0.5",
        )
        .unwrap();
        let r = c.resolve(3, 1, 200).unwrap();
        let body = r.encode();
        let v = tinyppo_runtime::realism::parse_body(&body, 3, 1).unwrap();
        assert_eq!(Realism::from_view(&v), r);
        assert!(!r.is_none() && Realism::none(3, 1).is_none());
    }
}
