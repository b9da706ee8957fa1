//! Sim-to-real realism, `no_std`: the sensor and actuator of a real rig
//! around any simulated [`Plant`].
//!
//! A policy trained on an exact model meets a sensor that is noisy,
//! quantized and late, and an actuator that is late, slow and sticky.
//! [`Realistic`] wraps a plant with those effects and is itself a
//! [`Plant`] (same name, code, bounds and parameters), so the trainer, `tinyppo
//! eval`/`simulate` and the QEMU firmware all run the same code and a
//! device log stays byte-identical to the host simulation. [`Realism`]
//! holds the settings; every effect is off at `0` ([`Realism::NONE`]), and
//! a wrapper with everything off is the bare plant, bit for bit (it draws
//! nothing from the generator).
//!
//! One step, with `a_t` the action given to the plant, `SAFE` the plant's
//! safe action and `dt` its period:
//!
//! ```text
//! c_t  = clip(a_t, low, high)                                   the command
//! r_t  = r_plant − smoothness·‖c_t − c_{t−1}‖²                  c_{−1} = SAFE
//! d_t  = c_{t − action_delay}                                   SAFE before the episode
//! z_t  = 0 where |d_t| < deadzone, else d_t                     per dimension
//! s_t  = s_{t−1} + clip(z_t − s_{t−1}, −rate_limit·dt, rate_limit·dt)   s_{−1} = SAFE
//! y_t  = y_{t−1} + α·(s_t − y_{t−1}),  α = 1 − exp(−dt/actuator_tau)    y_{−1} = SAFE
//! plant.step(y_t) → o_{t+1}
//! m    = o + obs_noise ⊙ ε,  ε ~ N(0, I)                        the measurement
//! m    = obs_resolution · round(m / obs_resolution)             per dimension
//! obs  = m_{t+1 − obs_delay}                                    m_0 before the episode
//! ```
//!
//! with `rate_limit = 0` (no slew limit: `s_t = z_t`), `actuator_tau = 0`
//! (no lag: `y_t = s_t`) and a zero noise, resolution or deadzone meaning
//! "none". Closed forms on a step input: a delay of `d` ticks shifts the
//! step by `d`; the lag's output after `k` ticks is
//! `u + (y_0 − u)·exp(−k·dt/τ)` (the exact discretization of a first-order
//! system under a zero-order hold).
//!
//! **Randomness.** The noise of an episode comes from its own stream: at
//! `reset`, after the plant's own draws, the wrapper takes one `u64` seed
//! from the caller's generator (only if some `obs_noise` is non-zero);
//! tick `k` draws from `rng::seeded(seed ^ k·φ)`. So a saved
//! [`RealisticState`] restores the episode exactly, and the plant's initial
//! states do not depend on the noise level.
//!
//! **Guarantees.** Never panics. Settings that [`Realism::check`] would
//! refuse are sanitized by [`Realistic::new`] (non-finite or negative
//! values are off, delays are cut to [`MAX_DELAY`]), so the wrapper never
//! turns finite plant observations into non-finite ones: a measurement
//! whose noise or rounding would overflow is the plant's exact value.
//!
//! **In a blob.** `tinyppo export` stores the run's settings in an optional
//! extension record (tag [`TAG`], `docs/FORMAT.md`): what the simulated
//! board under QEMU and `tinyppo simulate` apply. A firmware on real
//! hardware ignores it (the real rig has its own noise and delays).

use core::fmt;

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use crate::format::{f32s, F32Bytes, MAX_ABS_VALUE};
use crate::gaussian;
use crate::plants::{clip, Plant, Transition};
use crate::rng;

/// Longest observation or action delay, in ticks.
pub const MAX_DELAY: usize = 8;

/// Tag of the realism extension record in a policy blob (optional: a reader
/// that does not simulate skips it).
pub const TAG: u8 = 0x80;

/// Per-tick stream separation for the noise: the 64-bit golden ratio.
const PHI: u64 = 0x9E37_79B9_7F4A_7C15;

/// A setting of [`Realism`], as named in configs, errors and the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RealismField {
    /// `obs_noise`: standard deviation per observation (obs units).
    ObsNoise,
    /// `obs_resolution`: quantization step per observation (obs units).
    ObsResolution,
    /// `obs_delay`: ticks.
    ObsDelay,
    /// `action_delay`: ticks.
    ActionDelay,
    /// `actuator_tau`: first-order lag time constant (s).
    ActuatorTau,
    /// `rate_limit`: largest change per second, per action.
    RateLimit,
    /// `deadzone`: commands smaller in magnitude give 0, per action.
    Deadzone,
    /// `smoothness`: the penalty coefficient `c`.
    Smoothness,
}

impl RealismField {
    /// The name in configs (`[realism]`) and in the blob spec.
    pub const fn name(self) -> &'static str {
        match self {
            RealismField::ObsNoise => "obs_noise",
            RealismField::ObsResolution => "obs_resolution",
            RealismField::ObsDelay => "obs_delay",
            RealismField::ActionDelay => "action_delay",
            RealismField::ActuatorTau => "actuator_tau",
            RealismField::RateLimit => "rate_limit",
            RealismField::Deadzone => "deadzone",
            RealismField::Smoothness => "smoothness",
        }
    }
}

impl fmt::Display for RealismField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why realism settings (or their blob record) were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RealismError {
    /// The record is not a valid postcard encoding of its schema.
    Malformed,
    /// A per-dimension setting has the wrong number of values.
    Length {
        /// Which setting.
        field: RealismField,
        /// Values the plant's dimensions require.
        expected: usize,
        /// Values present.
        found: usize,
    },
    /// A value is NaN, infinite, negative or above `1e5`.
    Invalid {
        /// Which setting.
        field: RealismField,
        /// Element index (0 for a scalar).
        index: usize,
    },
    /// A delay longer than [`MAX_DELAY`] ticks.
    DelayTooLong {
        /// Which delay.
        field: RealismField,
        /// The delay asked for.
        found: u32,
    },
}

impl fmt::Display for RealismError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RealismError::Malformed => {
                f.write_str("the realism record is not a valid encoding of its schema")
            }
            RealismError::Length {
                field,
                expected,
                found,
            } => write!(
                f,
                "realism.{field} has {found} values, expected {expected} (or one for all)"
            ),
            RealismError::Invalid { field, index } => write!(
                f,
                "realism.{field}[{index}]: expected a finite value in [0, 1e5] (0 = off)"
            ),
            RealismError::DelayTooLong { field, found } => write!(
                f,
                "realism.{field} is {found} ticks, expected 0 to {MAX_DELAY}"
            ),
        }
    }
}

impl core::error::Error for RealismError {}

/// Sensor and actuator effects around a plant with `OBS` observations and
/// `ACT` actions. Every field at `0` is "off"; see the [module docs](self)
/// for the order in which they apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Realism<const OBS: usize, const ACT: usize> {
    /// Gaussian sensor noise: standard deviation per observation, in the
    /// observation's units.
    pub obs_noise: [f32; OBS],
    /// Sensor quantization step per observation (an encoder's radians per
    /// count, an ADC's volts per LSB); `0` = exact.
    pub obs_resolution: [f32; OBS],
    /// Ticks between a measurement and the policy seeing it.
    pub obs_delay: u8,
    /// Ticks between a command and the actuator receiving it.
    pub action_delay: u8,
    /// Time constant of the actuator's first-order lag, seconds.
    pub actuator_tau: f32,
    /// Largest change of the actuator per second, per action (slew rate).
    pub rate_limit: [f32; ACT],
    /// Commands with `|d| < deadzone` give `0`, per action.
    pub deadzone: [f32; ACT],
    /// Penalty `c` of `c·‖c_t − c_{t−1}‖²` subtracted from the reward.
    pub smoothness: f32,
}

impl<const OBS: usize, const ACT: usize> Default for Realism<OBS, ACT> {
    fn default() -> Self {
        Self::NONE
    }
}

/// `v` is a valid setting: finite, in `[0, 1e5]`.
fn valid(v: f32) -> bool {
    v.is_finite() && (0.0..=MAX_ABS_VALUE).contains(&v)
}

fn check_all(field: RealismField, values: impl Iterator<Item = f32>) -> Result<(), RealismError> {
    for (index, v) in values.enumerate() {
        if !valid(v) {
            return Err(RealismError::Invalid { field, index });
        }
    }
    Ok(())
}

fn check_delay(field: RealismField, d: u32) -> Result<(), RealismError> {
    if d as usize > MAX_DELAY {
        return Err(RealismError::DelayTooLong { field, found: d });
    }
    Ok(())
}

impl<const OBS: usize, const ACT: usize> Realism<OBS, ACT> {
    /// Everything off: the bare plant.
    pub const NONE: Self = Realism {
        obs_noise: [0.0; OBS],
        obs_resolution: [0.0; OBS],
        obs_delay: 0,
        action_delay: 0,
        actuator_tau: 0.0,
        rate_limit: [0.0; ACT],
        deadzone: [0.0; ACT],
        smoothness: 0.0,
    };

    /// Every effect is off.
    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// Checks every value (finite, in `[0, 1e5]`; delays at most
    /// [`MAX_DELAY`]); the error names the setting and the element.
    pub fn check(&self) -> Result<(), RealismError> {
        self.spec().check(OBS, ACT)
    }

    /// The settings as slices (for [`encode_body`]).
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

    /// Settings of any dimensions, checked ([`RealismSpec::check`]) and
    /// copied into arrays.
    pub fn from_spec(spec: &RealismSpec<'_>) -> Result<Self, RealismError> {
        spec.check(OBS, ACT)?;
        let mut r = Self::NONE;
        r.obs_noise.copy_from_slice(spec.obs_noise);
        r.obs_resolution.copy_from_slice(spec.obs_resolution);
        r.rate_limit.copy_from_slice(spec.rate_limit);
        r.deadzone.copy_from_slice(spec.deadzone);
        r.obs_delay = spec.obs_delay;
        r.action_delay = spec.action_delay;
        r.actuator_tau = spec.actuator_tau;
        r.smoothness = spec.smoothness;
        Ok(r)
    }

    /// The settings of a checked blob record ([`crate::Blob::realism`]);
    /// `None` if its dimensions are not `OBS` and `ACT`.
    pub fn from_view(v: &RealismView<'_>) -> Option<Self> {
        if v.obs_noise.len() != 4 * OBS || v.rate_limit.len() != 4 * ACT {
            return None;
        }
        let fill = |bytes: &[u8], out: &mut [f32]| {
            for (o, x) in out.iter_mut().zip(f32s(bytes)) {
                *o = x;
            }
        };
        let mut r = Self::NONE;
        fill(v.obs_noise, &mut r.obs_noise);
        fill(v.obs_resolution, &mut r.obs_resolution);
        fill(v.rate_limit, &mut r.rate_limit);
        fill(v.deadzone, &mut r.deadzone);
        r.obs_delay = v.obs_delay;
        r.action_delay = v.action_delay;
        r.actuator_tau = v.actuator_tau;
        r.smoothness = v.smoothness;
        Some(r)
    }

    /// The settings of `blob`'s realism record, or [`Realism::NONE`] if it
    /// has none (or its dimensions are not `OBS` and `ACT`).
    pub fn from_blob(blob: &crate::Blob<'_>) -> Self {
        blob.realism()
            .and_then(|v| Self::from_view(&v))
            .unwrap_or(Self::NONE)
    }

    /// Invalid values turned off, delays cut to [`MAX_DELAY`].
    fn sanitized(mut self) -> Self {
        let off = |v: &mut f32| {
            if !valid(*v) {
                *v = 0.0
            }
        };
        self.obs_noise.iter_mut().for_each(off);
        self.obs_resolution.iter_mut().for_each(off);
        self.rate_limit.iter_mut().for_each(off);
        self.deadzone.iter_mut().for_each(off);
        off(&mut self.actuator_tau);
        off(&mut self.smoothness);
        self.obs_delay = self.obs_delay.min(MAX_DELAY as u8);
        self.action_delay = self.action_delay.min(MAX_DELAY as u8);
        self
    }
}

/// Realism settings of any dimensions, borrowed: what [`encode_body`]
/// writes and the host builds from a config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RealismSpec<'a> {
    /// Noise standard deviation per observation.
    pub obs_noise: &'a [f32],
    /// Quantization step per observation.
    pub obs_resolution: &'a [f32],
    /// Observation delay, ticks.
    pub obs_delay: u8,
    /// Action delay, ticks.
    pub action_delay: u8,
    /// Actuator lag time constant, seconds.
    pub actuator_tau: f32,
    /// Slew rate per action, units per second.
    pub rate_limit: &'a [f32],
    /// Deadzone per action.
    pub deadzone: &'a [f32],
    /// Smoothness penalty coefficient.
    pub smoothness: f32,
}

impl RealismSpec<'_> {
    /// Checks lengths against the dimensions and every value.
    pub fn check(&self, obs_dim: usize, act_dim: usize) -> Result<(), RealismError> {
        use RealismField::*;
        for (field, v, n) in [
            (ObsNoise, self.obs_noise, obs_dim),
            (ObsResolution, self.obs_resolution, obs_dim),
            (RateLimit, self.rate_limit, act_dim),
            (Deadzone, self.deadzone, act_dim),
        ] {
            if v.len() != n {
                return Err(RealismError::Length {
                    field,
                    expected: n,
                    found: v.len(),
                });
            }
            check_all(field, v.iter().copied())?;
        }
        check_all(ActuatorTau, [self.actuator_tau].into_iter())?;
        check_all(Smoothness, [self.smoothness].into_iter())?;
        check_delay(ObsDelay, self.obs_delay.into())?;
        check_delay(ActionDelay, self.action_delay.into())
    }
}

/// A checked realism record, borrowed from a blob: the per-dimension
/// settings are little-endian f32 byte strings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RealismView<'a> {
    /// Noise per observation (LE f32).
    pub obs_noise: &'a [u8],
    /// Quantization step per observation (LE f32).
    pub obs_resolution: &'a [u8],
    /// Observation delay, ticks.
    pub obs_delay: u8,
    /// Action delay, ticks.
    pub action_delay: u8,
    /// Actuator lag time constant, seconds.
    pub actuator_tau: f32,
    /// Slew rate per action (LE f32).
    pub rate_limit: &'a [u8],
    /// Deadzone per action (LE f32).
    pub deadzone: &'a [u8],
    /// Smoothness penalty coefficient.
    pub smoothness: f32,
}

/// The record's wire schema (postcard): the fields in this order.
#[derive(Deserialize)]
struct RawRealism<'a> {
    obs_noise: &'a [u8],
    obs_resolution: &'a [u8],
    obs_delay: u8,
    action_delay: u8,
    actuator_tau: f32,
    rate_limit: &'a [u8],
    deadzone: &'a [u8],
    smoothness: f32,
}

#[derive(Serialize)]
struct RealismOut<'a> {
    obs_noise: F32Bytes<'a>,
    obs_resolution: F32Bytes<'a>,
    obs_delay: u8,
    action_delay: u8,
    actuator_tau: f32,
    rate_limit: F32Bytes<'a>,
    deadzone: F32Bytes<'a>,
    smoothness: f32,
}

/// Parses and checks the body of a realism record for a policy with
/// `obs_dim` observations and `act_dim` actions (what `Blob::parse` does
/// with tag [`TAG`]).
pub fn parse_body(
    body: &[u8],
    obs_dim: usize,
    act_dim: usize,
) -> Result<RealismView<'_>, RealismError> {
    let raw: RawRealism<'_> = match postcard::take_from_bytes(body) {
        Ok((r, [])) => r,
        _ => return Err(RealismError::Malformed),
    };
    use RealismField::*;
    for (field, bytes, n) in [
        (ObsNoise, raw.obs_noise, obs_dim),
        (ObsResolution, raw.obs_resolution, obs_dim),
        (RateLimit, raw.rate_limit, act_dim),
        (Deadzone, raw.deadzone, act_dim),
    ] {
        if bytes.len() != 4 * n {
            return Err(RealismError::Length {
                field,
                expected: n,
                found: bytes.len() / 4,
            });
        }
        check_all(field, f32s(bytes))?;
    }
    check_all(ActuatorTau, [raw.actuator_tau].into_iter())?;
    check_all(Smoothness, [raw.smoothness].into_iter())?;
    check_delay(ObsDelay, raw.obs_delay.into())?;
    check_delay(ActionDelay, raw.action_delay.into())?;
    Ok(RealismView {
        obs_noise: raw.obs_noise,
        obs_resolution: raw.obs_resolution,
        obs_delay: raw.obs_delay,
        action_delay: raw.action_delay,
        actuator_tau: raw.actuator_tau,
        rate_limit: raw.rate_limit,
        deadzone: raw.deadzone,
        smoothness: raw.smoothness,
    })
}

/// Writes the body of a realism record into `out` and returns its length
/// (`None` if `out` is too small). Does not check the values: the blob
/// encoder re-parses the whole blob, record included.
pub fn encode_body(spec: &RealismSpec<'_>, out: &mut [u8]) -> Option<usize> {
    let raw = RealismOut {
        obs_noise: F32Bytes(spec.obs_noise),
        obs_resolution: F32Bytes(spec.obs_resolution),
        obs_delay: spec.obs_delay,
        action_delay: spec.action_delay,
        actuator_tau: spec.actuator_tau,
        rate_limit: F32Bytes(spec.rate_limit),
        deadzone: F32Bytes(spec.deadzone),
        smoothness: spec.smoothness,
    };
    postcard::to_slice(&raw, out).ok().map(|b| b.len())
}

/// `N` floats, serialized as a tuple (serde has no impl for generic
/// array lengths).
#[derive(Debug, Clone, Copy, PartialEq)]
struct F32s<const N: usize>([f32; N]);

impl<const N: usize> Default for F32s<N> {
    fn default() -> Self {
        F32s([0.0; N])
    }
}

impl<const N: usize> Serialize for F32s<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(N)?;
        for v in &self.0 {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

impl<'de, const N: usize> Deserialize<'de> for F32s<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> serde::de::Visitor<'de> for V<N> {
            type Value = F32s<N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{N} floats")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<F32s<N>, A::Error> {
                let mut out = [0.0; N];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = a
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(F32s(out))
            }
        }
        d.deserialize_tuple(N, V::<N>)
    }
}

/// The full state of a [`Realistic`] plant: the plant's own and the
/// sensor's and actuator's (delay lines, slew and lag outputs, the last
/// command, the episode's noise stream).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RealisticState<S, const OBS: usize, const ACT: usize> {
    /// The wrapped plant's state.
    pub plant: S,
    rig: RigState<OBS, ACT>,
}

impl<S, const OBS: usize, const ACT: usize> RealisticState<S, OBS, ACT> {
    /// What the actuator applied to the plant at the last step.
    pub fn actuator(&self) -> [f32; ACT] {
        self.rig.lag.0
    }
}

/// The sensor's and actuator's part of a [`RealisticState`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct RigState<const OBS: usize, const ACT: usize> {
    prev: F32s<ACT>,
    actions: [F32s<ACT>; MAX_DELAY],
    measurements: [F32s<OBS>; MAX_DELAY],
    slew: F32s<ACT>,
    lag: F32s<ACT>,
    obs: F32s<OBS>,
    seed: u64,
    tick: u32,
}

/// A [`Plant`] with [`Realism`]: a noisy, quantized, late sensor and a
/// late, slew-limited, lagging actuator with a deadzone. See the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Realistic<P, const OBS: usize, const ACT: usize> {
    plant: P,
    r: Realism<OBS, ACT>,
    /// `1 − exp(−dt/τ)`, or 1 without lag.
    alpha: f32,
    noisy: bool,
    st: RigState<OBS, ACT>,
}

impl<P: Plant<OBS, ACT> + Default, const OBS: usize, const ACT: usize> Default
    for Realistic<P, OBS, ACT>
{
    /// The default plant, no realism.
    fn default() -> Self {
        Self::new(P::default(), Realism::NONE)
    }
}

impl<P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize> Realistic<P, OBS, ACT> {
    /// Wraps `plant` with `realism` (sanitized: what [`Realism::check`]
    /// refuses is turned off; check first to report it). Call
    /// [`Plant::reset`] before the first step.
    pub fn new(plant: P, realism: Realism<OBS, ACT>) -> Self {
        let r = realism.sanitized();
        let alpha = if r.actuator_tau > 0.0 {
            1.0 - libm::expf(-P::DT / r.actuator_tau)
        } else {
            1.0
        };
        let safe = F32s(P::SAFE_ACTION);
        let st = RigState {
            prev: safe,
            actions: [safe; MAX_DELAY],
            measurements: [F32s::default(); MAX_DELAY],
            slew: safe,
            lag: safe,
            obs: F32s(plant.observe()),
            seed: 0,
            tick: 0,
        };
        Realistic {
            plant,
            r,
            alpha,
            noisy: r.obs_noise.iter().any(|&s| s > 0.0),
            st,
        }
    }

    /// The settings in use (sanitized).
    pub fn realism(&self) -> &Realism<OBS, ACT> {
        &self.r
    }

    /// The wrapped plant.
    pub fn plant(&self) -> &P {
        &self.plant
    }

    /// The measurement of a true observation: noise, then quantization;
    /// the plant's value wherever either would not be finite.
    fn measure(&mut self, o: [f32; OBS]) -> [f32; OBS] {
        let mut eps = [0.0f32; OBS];
        if self.noisy {
            let mut g = rng::seeded(self.st.seed ^ u64::from(self.st.tick).wrapping_mul(PHI));
            gaussian::standard_normals(&mut g, &mut eps);
        }
        self.st.tick = self.st.tick.wrapping_add(1);
        let mut m = o;
        for (((v, &e), &s), &q) in m
            .iter_mut()
            .zip(&eps)
            .zip(&self.r.obs_noise)
            .zip(&self.r.obs_resolution)
        {
            let exact = *v;
            if s > 0.0 {
                *v += s * e;
            }
            if q > 0.0 {
                *v = libm::roundf(*v / q) * q;
            }
            if !v.is_finite() {
                *v = exact;
            }
        }
        m
    }
}

/// Pushes `x` into a delay line of `d` ticks and returns what comes out
/// (`x` itself for `d = 0`).
fn delay<T: Copy>(line: &mut [T; MAX_DELAY], d: u8, x: T) -> T {
    let d = usize::from(d).min(MAX_DELAY);
    if d == 0 {
        return x;
    }
    // Shift by swapping through the line (no `memmove`, which
    // `copy_within` would link into the firmware: 1.5 KB).
    let mut carry = x;
    for slot in line[..d].iter_mut() {
        carry = core::mem::replace(slot, carry);
    }
    carry
}

impl<P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize> Plant<OBS, ACT>
    for Realistic<P, OBS, ACT>
{
    const NAME: &'static str = P::NAME;
    const CODE: u8 = P::CODE;
    const ACTION_LOW: [f32; ACT] = P::ACTION_LOW;
    const ACTION_HIGH: [f32; ACT] = P::ACTION_HIGH;
    const SAFE_ACTION: [f32; ACT] = P::SAFE_ACTION;
    const MAX_EPISODE_STEPS: u32 = P::MAX_EPISODE_STEPS;
    const DT: f32 = P::DT;
    type Params = P::Params;
    type State = RealisticState<P::State, OBS, ACT>;

    fn params(&self) -> P::Params {
        self.plant.params()
    }
    fn set_params(&mut self, params: P::Params) {
        self.plant.set_params(params);
    }
    fn state(&self) -> Self::State {
        RealisticState {
            plant: self.plant.state(),
            rig: self.st,
        }
    }
    fn set_state(&mut self, state: Self::State) {
        self.plant.set_state(state.plant);
        self.st = state.rig;
    }
    fn observe(&self) -> [f32; OBS] {
        self.st.obs.0
    }

    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; OBS] {
        let o = self.plant.reset(rng);
        self.st.seed = if self.noisy { rng.next_u64() } else { 0 };
        self.st.tick = 0;
        let safe = F32s(P::SAFE_ACTION);
        self.st.prev = safe;
        self.st.actions = [safe; MAX_DELAY];
        self.st.slew = safe;
        self.st.lag = safe;
        let m = F32s(self.measure(o));
        self.st.measurements = [m; MAX_DELAY];
        self.st.obs = m;
        m.0
    }

    fn step(&mut self, action: &[f32; ACT]) -> Transition<OBS> {
        let mut c = [0.0f32; ACT];
        for (j, (v, &a)) in c.iter_mut().zip(action).enumerate() {
            *v = clip(a, P::ACTION_LOW[j], P::ACTION_HIGH[j]);
        }
        let mut penalty = 0.0f32;
        if self.r.smoothness > 0.0 {
            let sq: f32 = c
                .iter()
                .zip(&self.st.prev.0)
                .map(|(&a, &b)| (a - b) * (a - b))
                .sum();
            penalty = self.r.smoothness * sq;
        }
        self.st.prev = F32s(c);
        let d = delay(&mut self.st.actions, self.r.action_delay, F32s(c)).0;
        let m = P::DT;
        let alpha = self.alpha;
        for ((((&z, &dz), &rate), s), y) in d
            .iter()
            .zip(&self.r.deadzone)
            .zip(&self.r.rate_limit)
            .zip(self.st.slew.0.iter_mut())
            .zip(self.st.lag.0.iter_mut())
        {
            let z = if dz > 0.0 && libm::fabsf(z) < dz {
                0.0
            } else {
                z
            };
            if rate > 0.0 {
                let step = rate * m;
                *s += clip(z - *s, -step, step);
            } else {
                *s = z;
            }
            *y = if alpha < 1.0 {
                *y + alpha * (*s - *y)
            } else {
                *s
            };
        }
        let applied = self.st.lag.0;
        let tr = self.plant.step(&applied);
        let m = F32s(self.measure(tr.obs));
        let obs = delay(&mut self.st.measurements, self.r.obs_delay, m);
        self.st.obs = obs;
        Transition {
            obs: obs.0,
            reward: tr.reward - penalty,
            ..tr
        }
    }
}

#[cfg(all(test, feature = "plants"))]
mod tests {
    use super::*;
    use crate::plants::{DcMotor, Pendulum};
    use crate::rng::seeded;

    /// A plant that reports its last input as its observation: the
    /// actuator chain seen directly.
    #[derive(Debug, Default, Clone)]
    struct Probe {
        last: f32,
        steps: u32,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
    struct NoParams;

    impl Plant<1, 1> for Probe {
        const NAME: &'static str = "probe";
        const CODE: u8 = 0x80;
        const ACTION_LOW: [f32; 1] = [-10.0];
        const ACTION_HIGH: [f32; 1] = [10.0];
        const SAFE_ACTION: [f32; 1] = [0.0];
        const MAX_EPISODE_STEPS: u32 = 1000;
        const DT: f32 = 0.01;
        type Params = NoParams;
        type State = (f32, u32);
        fn params(&self) -> NoParams {
            NoParams
        }
        fn set_params(&mut self, _: NoParams) {}
        fn state(&self) -> (f32, u32) {
            (self.last, self.steps)
        }
        fn set_state(&mut self, s: (f32, u32)) {
            (self.last, self.steps) = s;
        }
        fn observe(&self) -> [f32; 1] {
            [self.last]
        }
        fn reset<R: RngCore + ?Sized>(&mut self, _: &mut R) -> [f32; 1] {
            *self = Probe::default();
            [0.0]
        }
        fn step(&mut self, a: &[f32; 1]) -> Transition<1> {
            self.last = a[0];
            self.steps += 1;
            Transition {
                obs: [a[0]],
                reward: 0.0,
                terminated: false,
                truncated: self.steps >= 1000,
            }
        }
    }

    fn probe(r: Realism<1, 1>) -> Realistic<Probe, 1, 1> {
        let mut p = Realistic::new(Probe::default(), r);
        p.reset(&mut seeded(1));
        p
    }

    #[test]
    fn off_is_the_bare_plant_bit_for_bit() {
        let mut bare = Pendulum::new();
        let mut wrapped = Realistic::new(Pendulum::new(), Realism::NONE);
        let (mut r1, mut r2) = (seeded(9), seeded(9));
        assert_eq!(bare.reset(&mut r1), wrapped.reset(&mut r2));
        for k in 0..300 {
            let a = [3.0 * libm::sinf(0.3 * k as f32)];
            assert_eq!(bare.step(&a), wrapped.step(&a), "step {k}");
        }
        // Nothing else was drawn from the generator.
        assert_eq!(r1.next_u64(), r2.next_u64());
    }

    #[test]
    fn action_delay_shifts_a_step_input() {
        for d in 0..=MAX_DELAY as u8 {
            let mut p = probe(Realism {
                action_delay: d,
                ..Realism::NONE
            });
            for t in 0..20u8 {
                let tr = p.step(&[1.0]);
                // The plant gets the safe action (0) until the command
                // made at t = 0 comes out, d ticks later.
                let want = if t >= d { 1.0 } else { 0.0 };
                assert_eq!(tr.obs[0], want, "delay {d} tick {t}");
            }
        }
    }

    #[test]
    fn obs_delay_shows_old_measurements() {
        // A pendulum's observation history, without and with delay d.
        let run = |d: u8| {
            let mut p = Realistic::new(
                Pendulum::new(),
                Realism {
                    obs_delay: d,
                    ..Realism::NONE
                },
            );
            let mut out = [[0.0; 3]; 30];
            out[0] = p.reset(&mut seeded(4));
            for o in out.iter_mut().skip(1) {
                *o = p.step(&[1.5]).obs;
            }
            out
        };
        let exact = run(0);
        for d in 1..=MAX_DELAY as u8 {
            let late = run(d);
            for t in 0..30 {
                assert_eq!(
                    late[t],
                    exact[t.saturating_sub(d as usize)],
                    "delay {d} tick {t}"
                );
            }
        }
    }

    #[test]
    fn lag_follows_its_closed_form() {
        let tau = 0.05f32;
        let mut p = probe(Realism {
            actuator_tau: tau,
            ..Realism::NONE
        });
        let u = 2.0f32;
        for k in 1..=60 {
            let y = p.step(&[u]).obs[0] as f64;
            let want = u as f64 * (1.0 - (-(k as f64) * 0.01 / tau as f64).exp());
            assert!((y - want).abs() < 1e-5, "tick {k}: {y} vs {want}");
        }
    }

    #[test]
    fn rate_limit_and_deadzone() {
        let mut p = probe(Realism {
            rate_limit: [50.0], // 0.5 per 10 ms tick
            ..Realism::NONE
        });
        let ys: [f32; 5] = core::array::from_fn(|_| p.step(&[2.0]).obs[0]);
        assert_eq!(ys, [0.5, 1.0, 1.5, 2.0, 2.0]);
        let mut p = probe(Realism {
            deadzone: [0.3],
            ..Realism::NONE
        });
        assert_eq!(p.step(&[0.29]).obs[0], 0.0);
        assert_eq!(p.step(&[-0.29]).obs[0], 0.0);
        assert_eq!(p.step(&[0.31]).obs[0], 0.31);
        assert_eq!(p.step(&[-0.5]).obs[0], -0.5);
    }

    #[test]
    fn smoothness_penalty_is_on_the_command() {
        let mut p = probe(Realism {
            smoothness: 0.5,
            ..Realism::NONE
        });
        // From the safe action 0 to 2, then 2 again, then to 20 (clipped to 10).
        assert_eq!(p.step(&[2.0]).reward, -2.0);
        assert_eq!(p.step(&[2.0]).reward, 0.0);
        assert_eq!(p.step(&[20.0]).reward, -0.5 * 64.0);
    }

    #[test]
    fn quantization_and_noise() {
        let mut p = probe(Realism {
            obs_resolution: [0.25],
            ..Realism::NONE
        });
        assert_eq!(p.step(&[0.3]).obs[0], 0.25);
        assert_eq!(p.step(&[0.4]).obs[0], 0.5);
        assert_eq!(p.step(&[-0.13]).obs[0], -0.25);
        // Noise: mean 0, the set standard deviation, per episode streams
        // that repeat with the seed.
        let sigma = 0.2f64;
        let sample = |seed| {
            let mut p = Realistic::new(
                Probe::default(),
                Realism {
                    obs_noise: [sigma as f32],
                    ..Realism::NONE
                },
            );
            p.reset(&mut seeded(seed));
            (0..4000)
                .map(|_| p.step(&[1.0]).obs[0] as f64 - 1.0)
                .collect::<heapless::Vec<f64, 4000>>()
        };
        let e = sample(3);
        assert_eq!(e, sample(3));
        assert_ne!(e, sample(4));
        let n = e.len() as f64;
        let mean = e.iter().sum::<f64>() / n;
        let var = e.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
        assert!(mean.abs() < 4.0 * sigma / n.sqrt(), "mean {mean}");
        assert!(
            (var.sqrt() / sigma - 1.0).abs() < 0.05,
            "std {}",
            var.sqrt()
        );
    }

    #[test]
    fn state_restores_the_whole_rig() {
        let r = Realism {
            obs_noise: [0.01, 0.02, 0.1],
            obs_resolution: [0.001, 0.001, 0.01],
            obs_delay: 2,
            action_delay: 1,
            actuator_tau: 0.02,
            rate_limit: [100.0],
            deadzone: [0.05],
            smoothness: 0.1,
        };
        let mut a = Realistic::new(DcMotor::new(), r);
        a.reset(&mut seeded(8));
        for k in 0..37 {
            a.step(&[libm::sinf(k as f32)]);
        }
        let saved = a.state();
        let mut buf = [0u8; 512];
        let bytes = postcard::to_slice(&saved, &mut buf).unwrap();
        let mut b = Realistic::new(DcMotor::new(), r);
        b.set_state(postcard::from_bytes(bytes).unwrap());
        assert_eq!(b.observe(), a.observe());
        for k in 0..100 {
            let act = [libm::cosf(k as f32)];
            assert_eq!(a.step(&act), b.step(&act), "step {k}");
        }
    }

    #[test]
    fn bad_settings_are_refused_by_check_and_off_in_new() {
        let bad = Realism::<1, 1> {
            obs_noise: [f32::NAN],
            deadzone: [-1.0],
            obs_delay: 9,
            ..Realism::NONE
        };
        assert_eq!(
            bad.check(),
            Err(RealismError::Invalid {
                field: RealismField::ObsNoise,
                index: 0
            })
        );
        let p = Realistic::new(Probe::default(), bad);
        assert_eq!(p.realism().obs_noise, [0.0]);
        assert_eq!(p.realism().deadzone, [0.0]);
        assert_eq!(p.realism().obs_delay, MAX_DELAY as u8);
    }

    #[test]
    fn record_round_trips() {
        let r = Realism::<3, 1> {
            obs_noise: [0.01, 0.0, 0.5],
            obs_resolution: [0.0, 0.001, 0.0],
            obs_delay: 1,
            action_delay: 2,
            actuator_tau: 0.03,
            rate_limit: [40.0],
            deadzone: [0.02],
            smoothness: 0.25,
        };
        let mut buf = [0u8; 128];
        let n = encode_body(&r.spec(), &mut buf).unwrap();
        let v = parse_body(&buf[..n], 3, 1).unwrap();
        assert_eq!(Realism::<3, 1>::from_view(&v), Some(r));
        assert_eq!(Realism::<3, 1>::from_spec(&r.spec()), Ok(r));
        assert!(Realism::<2, 1>::from_spec(&r.spec()).is_err());
        assert_eq!(
            parse_body(&buf[..n], 2, 1),
            Err(RealismError::Length {
                field: RealismField::ObsNoise,
                expected: 2,
                found: 3
            })
        );
        assert_eq!(
            parse_body(&buf[..n - 1], 3, 1),
            Err(RealismError::Malformed)
        );
    }
}
