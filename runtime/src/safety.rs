//! The safety layer, `no_std`: limits applied after the policy, the same on
//! the host (`tinyppo eval` and `simulate`) and on the device.
//!
//! A policy is a function learned from a simulator; the safety layer is
//! what the engineer knows must never happen to the hardware. It sits
//! between the policy and the actuator of every [`ControlLoop`] tick:
//!
//! ```text
//! o_t outside [obs_low, obs_high]        → e-stop: the safe action until the episode ends
//! o_t unchanged for stuck_ticks ticks
//!     while the actuator was driven      → stuck sensor: the safe action until it changes
//! a    = clip(u_t, policy bounds)          (the policy's action)
//! a'   = clip(a, action_low, action_high)
//! a''  = clip(a', prev − max_delta, prev + max_delta)   per dimension, if max_delta > 0
//! actuator.apply(a'')                      prev = what was applied (SAFE at an episode's start)
//! ```
//!
//! An e-stop is **latched**: once an observation leaves its bounds the
//! loop applies the safe action on every tick until the next episode (or
//! `ControlLoop::release_estop`, an operator's reset), whatever the later
//! observations. Each e-stop and stuck sensor is logged once as an [`Event`](crate::log::Event) with its tick, and
//! the ticks are counted ([`SafetyTotals`](crate::log::SafetyTotals)). The
//! safe action itself is never rate limited: safety first. The action
//! history a policy sees ([`history`](crate::history)) holds the policy's
//! own clipped action `a`, as in training, not `a''`.
//!
//! **In a blob.** `tinyppo export` stores the run's `[safety]` settings
//! in the **required** extension record [`TAG`] (`0x01`): a runtime that
//! does not know it refuses the blob rather than drive the hardware
//! without its limits. Body (postcard, `docs/FORMAT.md`):
//!
//! ```text
//! action_low   bytes  ACT f32 LE, within the policy's bounds
//! action_high  bytes  ACT f32 LE, ≥ action_low; the safe action lies in between
//! max_delta    bytes  ACT f32 LE, ≥ 0: largest change per tick (0 = no rate limit)
//! obs_low      bytes  OBS f32 LE: e-stop below
//! obs_high     bytes  OBS f32 LE, > obs_low: e-stop above
//! stuck_ticks  u16    varint: repeats that make a stuck sensor (0 = off)
//! ```
//!
//! A blob without the record gets the policy's bounds and nothing else
//! ([`Limits::none`]): the loop behaves exactly as before the safety
//! layer existed.
//!
//! [`ControlLoop`]: crate::control::ControlLoop

use serde::{Deserialize, Serialize};

use crate::error::{Field, FormatError};
use crate::format::{check_f32s, f32_array, f32s, F32Bytes, MAX_ABS_VALUE};

/// The tag of the safety record (required: `0x00–0x7F`).
pub const TAG: u8 = 0x01;

/// A checked safety record, borrowed from the blob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SafetyView<'a> {
    /// Lower action limits, `ACT` f32 LE.
    pub action_low: &'a [u8],
    /// Upper action limits, `ACT` f32 LE.
    pub action_high: &'a [u8],
    /// Largest change of the applied action per tick, `ACT` f32 LE (0: none).
    pub max_delta: &'a [u8],
    /// E-stop below, `OBS` f32 LE.
    pub obs_low: &'a [u8],
    /// E-stop above, `OBS` f32 LE.
    pub obs_high: &'a [u8],
    /// Unchanged readings in a row (while driven) that make a stuck sensor;
    /// 0: off.
    pub stuck_ticks: u16,
}

#[derive(Deserialize)]
struct RawSafety<'a> {
    action_low: &'a [u8],
    action_high: &'a [u8],
    max_delta: &'a [u8],
    obs_low: &'a [u8],
    obs_high: &'a [u8],
    stuck_ticks: u16,
}

/// Checks a safety record's body against the blob's dimensions, action
/// bounds and safe action (all f32 LE byte strings, as in the blob).
pub fn parse_body<'a>(
    body: &'a [u8],
    obs_dim: usize,
    act_dim: usize,
    policy_low: &[u8],
    policy_high: &[u8],
    safe: &[u8],
) -> Result<SafetyView<'a>, FormatError> {
    let raw: RawSafety<'a> = match postcard::take_from_bytes(body) {
        Ok((r, [])) => r,
        _ => return Err(FormatError::Malformed),
    };
    check_f32s(Field::SafetyActionLow, raw.action_low, act_dim, |_| true)?;
    check_f32s(Field::SafetyActionHigh, raw.action_high, act_dim, |_| true)?;
    check_f32s(Field::SafetyMaxDelta, raw.max_delta, act_dim, |v| v >= 0.0)?;
    check_f32s(Field::SafetyObsLow, raw.obs_low, obs_dim, |_| true)?;
    check_f32s(Field::SafetyObsHigh, raw.obs_high, obs_dim, |_| true)?;
    let limits = f32s(raw.action_low).zip(f32s(raw.action_high));
    let policy = f32s(policy_low).zip(f32s(policy_high));
    // The v1 midpoint is not a stored safe action: a v1 blob has no records.
    let safe = f32s(safe);
    for (index, (((lo, hi), (plo, phi)), s)) in limits.zip(policy).zip(safe).enumerate() {
        if lo < plo || lo > s {
            return Err(FormatError::OutOfRange {
                field: Field::SafetyActionLow,
                index,
            });
        }
        if hi > phi || hi < s {
            return Err(FormatError::OutOfRange {
                field: Field::SafetyActionHigh,
                index,
            });
        }
    }
    for (index, (lo, hi)) in f32s(raw.obs_low).zip(f32s(raw.obs_high)).enumerate() {
        if lo >= hi {
            return Err(FormatError::OutOfRange {
                field: Field::SafetyObsHigh,
                index,
            });
        }
    }
    Ok(SafetyView {
        action_low: raw.action_low,
        action_high: raw.action_high,
        max_delta: raw.max_delta,
        obs_low: raw.obs_low,
        obs_high: raw.obs_high,
        stuck_ticks: raw.stuck_ticks,
    })
}

/// A safety record to encode (the trainer's `[safety]`).
#[derive(Debug, Clone, Copy)]
pub struct SafetySpec<'a> {
    /// Lower action limits.
    pub action_low: &'a [f32],
    /// Upper action limits.
    pub action_high: &'a [f32],
    /// Largest change per tick (0: none).
    pub max_delta: &'a [f32],
    /// E-stop below.
    pub obs_low: &'a [f32],
    /// E-stop above.
    pub obs_high: &'a [f32],
    /// Unchanged readings that make a stuck sensor (0: off).
    pub stuck_ticks: u16,
}

#[derive(Serialize)]
struct SafetyOut<'a> {
    action_low: F32Bytes<'a>,
    action_high: F32Bytes<'a>,
    max_delta: F32Bytes<'a>,
    obs_low: F32Bytes<'a>,
    obs_high: F32Bytes<'a>,
    stuck_ticks: u16,
}

/// Writes the body of a safety record into `out`; its length, or `None`
/// if `out` is too small ([`max_body_len`] is enough).
pub fn encode_body(spec: &SafetySpec<'_>, out: &mut [u8]) -> Option<usize> {
    let raw = SafetyOut {
        action_low: F32Bytes(spec.action_low),
        action_high: F32Bytes(spec.action_high),
        max_delta: F32Bytes(spec.max_delta),
        obs_low: F32Bytes(spec.obs_low),
        obs_high: F32Bytes(spec.obs_high),
        stuck_ticks: spec.stuck_ticks,
    };
    postcard::to_slice(&raw, out).ok().map(|b| b.len())
}

/// The body length [`encode_body`] needs at most for `spec`.
pub fn max_body_len(spec: &SafetySpec<'_>) -> usize {
    let n = spec.action_low.len()
        + spec.action_high.len()
        + spec.max_delta.len()
        + spec.obs_low.len()
        + spec.obs_high.len();
    5 * 5 + 4 * n + 3
}

/// The limits of one policy as fixed-size arrays (from its record, or
/// [`Limits::none`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits<const OBS: usize, const ACT: usize> {
    /// Lower action limits.
    pub action_low: [f32; ACT],
    /// Upper action limits.
    pub action_high: [f32; ACT],
    /// Largest change per tick (0: none).
    pub max_delta: [f32; ACT],
    /// E-stop below.
    pub obs_low: [f32; OBS],
    /// E-stop above.
    pub obs_high: [f32; OBS],
    /// Unchanged readings that make a stuck sensor (0: off).
    pub stuck_ticks: u16,
}

impl<const OBS: usize, const ACT: usize> Limits<OBS, ACT> {
    /// No limits beyond the policy's action bounds.
    pub fn none(low: [f32; ACT], high: [f32; ACT]) -> Self {
        Limits {
            action_low: low,
            action_high: high,
            max_delta: [0.0; ACT],
            obs_low: [f32::NEG_INFINITY; OBS],
            obs_high: [f32::INFINITY; OBS],
            stuck_ticks: 0,
        }
    }

    /// The limits of a checked record.
    pub fn from_view(v: &SafetyView<'_>) -> Self {
        Limits {
            action_low: f32_array(v.action_low),
            action_high: f32_array(v.action_high),
            max_delta: f32_array(v.max_delta),
            obs_low: f32_array(v.obs_low),
            obs_high: f32_array(v.obs_high),
            stuck_ticks: v.stuck_ticks,
        }
    }

    /// Whether any limit beyond the policy's bounds is set (bounds equal to
    /// `low`/`high` count as none).
    pub fn is_none(&self, low: &[f32; ACT], high: &[f32; ACT]) -> bool {
        self.action_low == *low
            && self.action_high == *high
            && self.max_delta.iter().all(|&d| d == 0.0)
            && self.obs_low.iter().all(|&v| v <= -MAX_ABS_VALUE)
            && self.obs_high.iter().all(|&v| v >= MAX_ABS_VALUE)
            && self.stuck_ticks == 0
    }
}

/// What [`Guard::check`] decided about an observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Within the limits: the policy may act.
    Clear,
    /// An e-stop is in force: apply the safe action.
    EStop {
        /// The observation element that tripped it.
        index: usize,
        /// Its value.
        value: f32,
        /// It tripped on this tick (log the event now).
        onset: bool,
    },
    /// The sensor is stuck: apply the safe action.
    Stuck {
        /// Ticks the reading has not changed.
        repeats: u16,
        /// It was detected on this tick (log the event now).
        onset: bool,
    },
}

/// The safety layer's state over a run: the limits, the latched e-stop,
/// the last applied action (for the rate limit) and the stuck-sensor
/// detector. The control loop owns one; `tinyppo eval` runs the same.
#[derive(Debug, Clone, Copy)]
pub struct Guard<const OBS: usize, const ACT: usize> {
    limits: Limits<OBS, ACT>,
    safe: [f32; ACT],
    prev: [f32; ACT],
    estop: Option<(usize, f32)>,
    last_obs: Option<[f32; OBS]>,
    repeats: u16,
    stuck: bool,
}

/// Bitwise equality: a reading that did not change at all (NaN never
/// reaches the guard; `-0.0` and `0.0` differ on purpose).
fn same_bits<const N: usize>(a: &[f32; N], b: &[f32; N]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl<const OBS: usize, const ACT: usize> Guard<OBS, ACT> {
    /// A guard with `limits` whose safe action is `safe`, at the start of
    /// an episode.
    pub fn new(limits: Limits<OBS, ACT>, safe: [f32; ACT]) -> Self {
        Guard {
            limits,
            safe,
            prev: safe,
            estop: None,
            last_obs: None,
            repeats: 0,
            stuck: false,
        }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits<OBS, ACT> {
        &self.limits
    }

    /// A new episode: the e-stop is released, the rate limit starts from
    /// the safe action, the stuck detector forgets.
    pub fn begin_episode(&mut self) {
        *self = Guard::new(self.limits, self.safe);
    }

    /// An e-stop is latched.
    pub fn estopped(&self) -> bool {
        self.estop.is_some()
    }

    /// Releases a latched e-stop (an operator's reset); the rate limit
    /// goes on from the safe action that was applied.
    pub fn release(&mut self) {
        self.estop = None;
    }

    /// Checks a finite observation, before the policy acts. Latches an
    /// e-stop when an element leaves its bounds; detects a stuck sensor.
    pub fn check(&mut self, obs: &[f32; OBS]) -> Verdict {
        let same = self.last_obs.is_some_and(|l| same_bits(&l, obs));
        self.last_obs = Some(*obs);
        if let Some((index, value)) = self.estop {
            return Verdict::EStop {
                index,
                value,
                onset: false,
            };
        }
        let (lo, hi) = (&self.limits.obs_low, &self.limits.obs_high);
        for (index, ((&v, &l), &h)) in obs.iter().zip(lo).zip(hi).enumerate() {
            if v < l || v > h {
                self.estop = Some((index, v));
                return Verdict::EStop {
                    index,
                    value: v,
                    onset: true,
                };
            }
        }
        if self.limits.stuck_ticks == 0 {
            return Verdict::Clear;
        }
        if !same {
            self.repeats = 0;
            self.stuck = false;
            return Verdict::Clear;
        }
        if self.stuck {
            self.repeats = self.repeats.saturating_add(1);
            return Verdict::Stuck {
                repeats: self.repeats,
                onset: false,
            };
        }
        // Only a driven plant must move: at rest (the safe action) an
        // unchanged reading is no evidence.
        if same_bits(&self.prev, &self.safe) {
            self.repeats = 0;
            return Verdict::Clear;
        }
        self.repeats = self.repeats.saturating_add(1);
        if self.repeats >= self.limits.stuck_ticks {
            self.stuck = true;
            return Verdict::Stuck {
                repeats: self.repeats,
                onset: true,
            };
        }
        Verdict::Clear
    }

    /// The action the actuator gets for the policy's (already clipped)
    /// action `a`: within the limits and the rate limit from the last
    /// applied action. Does not remember it: call [`applied`](Self::applied).
    pub fn limit(&self, a: &[f32; ACT]) -> [f32; ACT] {
        let mut out = *a;
        let l = &self.limits;
        for (j, o) in out.iter_mut().enumerate() {
            let (mut lo, mut hi) = (l.action_low[j], l.action_high[j]);
            let d = l.max_delta[j];
            if d > 0.0 {
                // `prev` is within [lo, hi], so the interval stays non-empty.
                lo = lo.max(self.prev[j] - d);
                hi = hi.min(self.prev[j] + d);
            }
            *o = if *o < lo {
                lo
            } else if *o > hi {
                hi
            } else {
                *o
            };
        }
        out
    }

    /// Remembers what the actuator was given this tick (the limited action
    /// or the safe one).
    pub fn applied(&mut self, a: &[f32; ACT]) {
        self.prev = *a;
    }
}
