//! The `[safety]` table of a run: limits the device applies after the
//! policy, exported into the blob's required safety record and applied by
//! the runtime's [`tinyppo_runtime::safety`] on the device, in `tinyppo
//! eval` and in `tinyppo simulate` alike.
//!
//! ```toml
//! [safety]
//! action_low = -1.5        # per action, within the plant's bounds (default: the plant's)
//! action_high = 1.5
//! max_delta = 0.5          # largest change of the applied action per tick (0 = none)
//! obs_low = [-1.1, -1.1, -7.5]   # e-stop below, per observation (default: none)
//! obs_high = [1.1, 1.1, 7.5]     # e-stop above
//! stuck_ticks = 20         # unchanged readings while driven = a stuck sensor (0 = off)
//! ```
//!
//! Training does not apply the table: it is a guard around a trained
//! policy, not part of the model (train with `[realism] rate_limit` for a
//! slow actuator). The plant's safe action must lie within the action
//! limits, so that falling back to it never breaks them.

use serde::{Deserialize, Serialize};
use tinyppo_runtime::format::MAX_ABS_VALUE;
use tinyppo_runtime::safety::SafetySpec;

use crate::realism::PerDim;
use crate::registry::RegisteredPlant;
use crate::validate::Invalid;

/// The `[safety]` table (see the [module docs](self)). Every key is
/// optional; an empty table means no limits beyond the plant's bounds and
/// no record in the blob.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetyConfig {
    /// Lower action limit per action (default: the plant's bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_low: Option<PerDim>,
    /// Upper action limit per action (default: the plant's bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_high: Option<PerDim>,
    /// Largest change of the applied action per tick, per action (0: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delta: Option<PerDim>,
    /// E-stop below, per observation (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obs_low: Option<PerDim>,
    /// E-stop above, per observation (default: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obs_high: Option<PerDim>,
    /// Unchanged readings in a row, while the actuator is driven, that
    /// make a stuck sensor (0: off).
    pub stuck_ticks: u32,
}

/// `[safety]` resolved for a plant: what the blob's record holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Safety {
    /// Lower action limits.
    pub action_low: Vec<f32>,
    /// Upper action limits.
    pub action_high: Vec<f32>,
    /// Largest change per tick.
    pub max_delta: Vec<f32>,
    /// E-stop below (`−1e5`: none).
    pub obs_low: Vec<f32>,
    /// E-stop above (`1e5`: none).
    pub obs_high: Vec<f32>,
    /// Stuck-sensor repeats (0: off).
    pub stuck_ticks: u16,
}

impl Safety {
    /// No limit beyond the plant's bounds: export writes no record.
    pub fn is_none(&self, plant: &RegisteredPlant) -> bool {
        self.action_low == plant.action_low()
            && self.action_high == plant.action_high()
            && self.max_delta.iter().all(|&d| d == 0.0)
            && self.obs_low.iter().all(|&v| v <= -MAX_ABS_VALUE)
            && self.obs_high.iter().all(|&v| v >= MAX_ABS_VALUE)
            && self.stuck_ticks == 0
    }

    /// The runtime's view, for encoding the record.
    pub fn spec(&self) -> SafetySpec<'_> {
        SafetySpec {
            action_low: &self.action_low,
            action_high: &self.action_high,
            max_delta: &self.max_delta,
            obs_low: &self.obs_low,
            obs_high: &self.obs_high,
            stuck_ticks: self.stuck_ticks,
        }
    }
}

impl SafetyConfig {
    /// The table's keys.
    pub const KEYS: &'static [&'static str] = &[
        "action_low",
        "action_high",
        "max_delta",
        "obs_low",
        "obs_high",
        "stuck_ticks",
    ];

    /// The limits for `plant`; the error names the key (`safety.obs_low[2]`)
    /// and what was expected.
    pub fn resolve(&self, plant: &RegisteredPlant) -> Result<Safety, Invalid> {
        let (n_obs, n_act) = (plant.obs_dim(), plant.act_dim());
        // The values of `key` (or `default`), each checked by `ok`.
        let per = |key: &str,
                   v: &Option<PerDim>,
                   n: usize,
                   what: &str,
                   default: Vec<f32>,
                   ok: &dyn Fn(usize, f32) -> Result<(), String>|
         -> Result<Vec<f32>, Invalid> {
            let Some(v) = v else { return Ok(default) };
            let vals = v.expand(n).ok_or_else(|| Invalid {
                key: format!("safety.{key}"),
                value: v.to_string(),
                expected: format!("one number, or a list of {n} (one per {what})"),
            })?;
            for (i, &x) in vals.iter().enumerate() {
                let bad = if !(x.is_finite() && x.abs() <= MAX_ABS_VALUE) {
                    Some("a finite number within ±1e5".to_string())
                } else {
                    ok(i, x).err()
                };
                if let Some(expected) = bad {
                    let key = match v {
                        PerDim::All(_) => format!("safety.{key}"),
                        PerDim::Each(_) => format!("safety.{key}[{i}]"),
                    };
                    return Err(Invalid {
                        key,
                        value: x.to_string(),
                        expected,
                    });
                }
            }
            Ok(vals)
        };
        let (low, high, safe) = (plant.action_low(), plant.action_high(), plant.safe_action());
        let name = plant.name();
        let action_low = per(
            "action_low",
            &self.action_low,
            n_act,
            "action",
            low.to_vec(),
            &|i, x| {
                if x < low[i] || x > safe[i] {
                    Err(format!(
                        "a limit from {name}'s bound {} up to its safe action {}",
                        low[i], safe[i]
                    ))
                } else {
                    Ok(())
                }
            },
        )?;
        let action_high = per(
            "action_high",
            &self.action_high,
            n_act,
            "action",
            high.to_vec(),
            &|i, x| {
                if x > high[i] || x < safe[i] {
                    Err(format!(
                        "a limit from {name}'s safe action {} up to its bound {}",
                        safe[i], high[i]
                    ))
                } else {
                    Ok(())
                }
            },
        )?;
        let max_delta = per(
            "max_delta",
            &self.max_delta,
            n_act,
            "action",
            vec![0.0; n_act],
            &|_, x| {
                if x < 0.0 {
                    Err("a change per tick ≥ 0 (0 = no rate limit)".into())
                } else {
                    Ok(())
                }
            },
        )?;
        let any = |_: usize, _: f32| Ok(());
        let obs_low = per(
            "obs_low",
            &self.obs_low,
            n_obs,
            "observation",
            vec![-MAX_ABS_VALUE; n_obs],
            &any,
        )?;
        let obs_high = per(
            "obs_high",
            &self.obs_high,
            n_obs,
            "observation",
            vec![MAX_ABS_VALUE; n_obs],
            &|i, x| {
                if x <= obs_low[i] {
                    Err(format!("a bound above safety.obs_low's {}", obs_low[i]))
                } else {
                    Ok(())
                }
            },
        )?;
        let stuck_ticks = u16::try_from(self.stuck_ticks).map_err(|_| Invalid {
            key: "safety.stuck_ticks".into(),
            value: self.stuck_ticks.to_string(),
            expected: format!("0 to {} ticks (0 = off)", u16::MAX),
        })?;
        Ok(Safety {
            action_low,
            action_high,
            max_delta,
            obs_low,
            obs_high,
            stuck_ticks,
        })
    }
}
