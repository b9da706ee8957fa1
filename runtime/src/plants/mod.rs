//! Control plants, `no_std`: the [`Plant`] trait every plant implements
//! (yours too, in your own crate: `docs/CUSTOM-PLANT.md`), the plant
//! [`code`]s of logs and blobs, and, with the feature `plants`, the
//! built-in plants shared by the trainer and the firmware.
//!
//! Write a plant in f32 with `libm` and it produces the same trajectory bit
//! for bit on the host and on a Cortex-M4F, so a host simulation replays a
//! device log exactly.
//!
//! | code | name           | type                         | OBS | ACT | `DT` (s) | steps | ends by             |
//! |------|----------------|------------------------------|-----|-----|----------|-------|---------------------|
//! | 0    | `pendulum`     | `Pendulum` (Pendulum-v1)   | 3   | 1   | 0.05     | 200   | truncation only     |
//! | 1    | `mountain-car` | `MountainCar` (MountainCarContinuous-v0) | 2 | 1 | 1/30 | 999 | goal, or truncation |
//! | 2    | `cartpole`     | `CartPole` (CartPole-v1, continuous force) | 4 | 1 | 0.02 | 500 | pole/cart limits, or truncation |
//! | 3    | `dc-motor`     | `DcMotor` (FAULHABER 1331T012SR + 50:1 gear) | 3 | 1 | 0.01 | 200 | truncation only |
//!
//! The equations, constants, parameters and rewards are in each module and
//! in `docs/PLANTS.md`. Every built-in plant's safe action is 0 (no torque,
//! force or voltage).
//!
//! **Termination vs truncation.** `terminated` means the episode reached a
//! terminal state of the MDP (the pole fell, the car reached the goal):
//! the value of the next state is 0. `truncated` means the episode was cut
//! by the time limit: the learner bootstraps from `V(s')`. Both can be true
//! on the same step (a terminal state reached on the last allowed step);
//! then `terminated` wins: do not bootstrap.
//!
//! **No panics.** [`Plant::step`] never panics, whatever the action: a NaN
//! action component is treated as `0.0`, `±inf` is clipped to the bound like
//! any other out-of-range value, and the state stays finite. (The one
//! Gymnasium quirk that leaks through is `mountain-car`'s control penalty,
//! which uses the *unclipped* action: an infinite action (or one above
//! 1.8·10¹⁹ in magnitude, where `a²` overflows) gives a reward of
//! `-inf`, never NaN.) Stepping past the end of an episode is allowed and
//! keeps integrating; call [`Plant::reset`] to start the next one.

use rand_core::RngCore;
use serde::{de::DeserializeOwned, Serialize};

#[cfg(feature = "plants")]
pub mod cartpole;
#[cfg(feature = "plants")]
pub mod dc_motor;
#[cfg(feature = "plants")]
pub mod mountain_car;
#[cfg(feature = "plants")]
pub mod pendulum;

#[cfg(feature = "plants")]
pub use cartpole::{CartPole, CartPoleParams, CartPoleState};
#[cfg(feature = "plants")]
pub use dc_motor::{DcMotor, DcMotorParams, DcMotorState};
#[cfg(feature = "plants")]
pub use mountain_car::{MountainCar, MountainCarParams, MountainCarState};
#[cfg(feature = "plants")]
pub use pendulum::{Pendulum, PendulumParams, PendulumState};

/// Plant codes: what logs and policy blobs call a plant.
///
/// A code is part of the wire formats (`docs/FORMAT.md`): it is assigned
/// once and never reused or renumbered, whatever plants are added later.
///
/// | codes         | who                                              |
/// |---------------|--------------------------------------------------|
/// | `0x00–0x03`   | the built-in plants: [`PENDULUM`], [`MOUNTAIN_CAR`], [`CARTPOLE`], [`DC_MOTOR`] |
/// | `0x04–0x7F`   | reserved for plants tinyppo may ship later        |
/// | `0x80–0xFE`   | application plants ([`USER_FIRST`]`..=`[`USER_LAST`]): yours |
/// | `0xFF`        | [`UNSPECIFIED`]: hardware or a plant without a code |
pub mod code {
    /// `pendulum` ([`Pendulum`](super::Pendulum)).
    pub const PENDULUM: u8 = 0;
    /// `mountain-car` ([`MountainCar`](super::MountainCar)).
    pub const MOUNTAIN_CAR: u8 = 1;
    /// `cartpole` ([`CartPole`](super::CartPole)).
    pub const CARTPOLE: u8 = 2;
    /// `dc-motor` ([`DcMotor`](super::DcMotor)).
    pub const DC_MOTOR: u8 = 3;
    /// First code of the application range.
    pub const USER_FIRST: u8 = 0x80;
    /// Last code of the application range.
    pub const USER_LAST: u8 = 0xFE;
    /// No plant named: a log from hardware that does not say, a blob
    /// exported without a plant (format v1 blobs read as this).
    pub const UNSPECIFIED: u8 = 0xFF;

    /// `code` is in the application range `0x80–0xFE`.
    pub const fn is_user(code: u8) -> bool {
        code >= USER_FIRST && code <= USER_LAST
    }
}

/// The result of one plant step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition<const OBS: usize> {
    /// Observation after the step.
    pub obs: [f32; OBS],
    /// Reward for the step.
    pub reward: f32,
    /// A terminal state was reached (no bootstrapping).
    pub terminated: bool,
    /// The time limit was reached (bootstrap from the next state).
    pub truncated: bool,
}

/// A simulated plant with `OBS` observations and `ACT` actions.
///
/// This is the one door for every plant, built-in or yours: the trainer
/// trains on it, `tinyppo eval`/`simulate` and the firmware run the
/// exported policy on it, and logs and blobs name it by [`CODE`](Self::CODE).
///
/// - **Constants** describe the plant to the tools: its name, its code, its
///   action bounds and the action that is safe to hold when nothing better
///   is known ([`SAFE_ACTION`](Self::SAFE_ACTION), recorded in every exported
///   blob; the control loop falls back to it).
/// - **Parameters** ([`Params`](Self::Params)): the physical constants the
///   step reads (masses, lengths, resistances, time constants), a `Copy`
///   value with defaults that can be changed between episodes (domain
///   randomization, system identification). `set_params` takes effect at the
///   next `step`; `reset` does not restore the defaults.
/// - **State** ([`State`](Self::State)): everything the next step depends on
///   (the physical state, the episode's target, the step counter), so a test
///   or an identification routine can read it and put the plant back into it
///   exactly; [`observe`](Self::observe) is then the observation the policy
///   would see.
///
/// `Params` and `State` are serde types: on the host they are read and
/// written by field name (`config.toml`, checkpoints).
pub trait Plant<const OBS: usize, const ACT: usize> {
    /// Name used on the command line (`pendulum`, `mountain-car`, …).
    const NAME: &'static str;
    /// Code in logs and blobs (see [`code`]): stable, never reused.
    const CODE: u8;
    /// Lower action bounds (the plant clips to these).
    const ACTION_LOW: [f32; ACT];
    /// Upper action bounds.
    const ACTION_HIGH: [f32; ACT];
    /// The action to apply when the policy cannot act (a failed or
    /// non-finite sensor reading): zero torque for a motor, heater off.
    /// Must lie within the bounds (checked by [`check_constants`]).
    const SAFE_ACTION: [f32; ACT];
    /// Steps after which an episode is truncated.
    const MAX_EPISODE_STEPS: u32;
    /// Control period in seconds (what a firmware's timer paces).
    const DT: f32;

    /// The physical constants the step reads.
    type Params: Copy + Default + PartialEq + core::fmt::Debug + Serialize + DeserializeOwned;
    /// The full state: what [`set_state`](Self::set_state) needs to put the
    /// plant back exactly where it was.
    type State: Copy + PartialEq + core::fmt::Debug + Serialize + DeserializeOwned;

    /// The parameters in use.
    fn params(&self) -> Self::Params;
    /// Replaces the parameters; the next step uses them. Parameters outside
    /// a plant's documented ranges give wrong (possibly non-finite)
    /// trajectories, never a panic.
    fn set_params(&mut self, params: Self::Params);
    /// The current state.
    fn state(&self) -> Self::State;
    /// Puts the plant into `state`.
    fn set_state(&mut self, state: Self::State);
    /// The observation of the current state (what `reset` and `step` return).
    fn observe(&self) -> [f32; OBS];

    /// Starts a new episode and returns the first observation.
    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; OBS];

    /// Applies `action` (clipped to the bounds by the plant) for one period.
    /// After `terminated` or `truncated`, call [`Plant::reset`].
    fn step(&mut self, action: &[f32; ACT]) -> Transition<OBS>;
}

/// Checks a plant's constants at compile time: every `ACTION_LOW < ACTION_HIGH`,
/// the safe action within the bounds, `DT > 0`, at least one step per
/// episode. Use it in a `const` item next to your `impl Plant`:
///
/// ```
/// use tinyppo_runtime::plants::{check_constants, Pendulum};
/// const _: () = check_constants::<Pendulum, 3, 1>();
/// ```
pub const fn check_constants<P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize>() {
    let mut j = 0;
    while j < ACT {
        let (lo, hi, safe) = (P::ACTION_LOW[j], P::ACTION_HIGH[j], P::SAFE_ACTION[j]);
        assert!(lo < hi, "Plant: ACTION_LOW must be below ACTION_HIGH");
        assert!(
            lo <= safe && safe <= hi,
            "Plant: SAFE_ACTION must lie within the action bounds"
        );
        j += 1;
    }
    assert!(P::DT > 0.0, "Plant: DT must be positive");
    assert!(
        P::MAX_EPISODE_STEPS > 0,
        "Plant: MAX_EPISODE_STEPS must be at least 1"
    );
}

/// A built-in plant chosen by its code at compile time:
/// `<Builtin<{ code::CARTPOLE }> as BuiltinPlant>::Plant` is [`CartPole`].
///
/// Lets a firmware that runs whichever built-in plant its embedded blob
/// names pick the plant type from the blob's code (a build-time constant),
/// without a table of names or a `cfg` per plant. Your own firmware names
/// its plant type directly.
pub struct Builtin<const CODE: u8>;

/// Implemented by [`Builtin`] for the codes of the built-in plants.
#[diagnostic::on_unimplemented(
    message = "the embedded policy names a plant that is not built in (its code is the number in `{Self}`)",
    label = "the embedded policy blob names a plant this firmware does not have",
    note = "built-in codes: 0 pendulum, 1 mountain-car, 2 cartpole, 3 dc-motor; a firmware \
            for your own plant names its plant type instead of `Builtin`"
)]
pub trait BuiltinPlant {
    /// The plant type.
    type Plant: Default;
}

#[cfg(feature = "plants")]
impl BuiltinPlant for Builtin<{ code::PENDULUM }> {
    type Plant = Pendulum;
}
#[cfg(feature = "plants")]
impl BuiltinPlant for Builtin<{ code::MOUNTAIN_CAR }> {
    type Plant = MountainCar;
}
#[cfg(feature = "plants")]
impl BuiltinPlant for Builtin<{ code::CARTPOLE }> {
    type Plant = CartPole;
}
#[cfg(feature = "plants")]
impl BuiltinPlant for Builtin<{ code::DC_MOTOR }> {
    type Plant = DcMotor;
}

#[cfg(feature = "plants")]
const _: () = {
    check_constants::<Pendulum, 3, 1>();
    check_constants::<MountainCar, 2, 1>();
    check_constants::<CartPole, 4, 1>();
    check_constants::<DcMotor, 3, 1>();
};

/// `x` clipped to `[lo, hi]`, with NaN treated as `0.0` (then clipped):
/// the clip a plant's `step` applies to its action.
///
/// Unlike `f32::clamp` this never propagates NaN and never panics, so a NaN
/// action cannot poison a plant's state. `±inf` clips to the bounds. With
/// `lo > hi` the result is `lo` or `hi`, never a panic.
#[inline]
pub fn clip(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x.is_nan() { 0.0 } else { x };
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

#[cfg(all(test, feature = "plants"))]
mod tests {
    use super::*;
    use crate::rng::{seeded, uniform};

    /// Random actions, mostly in a wide range around the bounds, sometimes
    /// NaN, ±inf, huge or subnormal.
    fn wild_action<R: RngCore>(rng: &mut R) -> f32 {
        match rng.next_u32() % 16 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => f32::MAX,
            4 => -f32::MAX,
            5 => f32::MIN_POSITIVE / 2.0,
            6 => f32::from_bits(rng.next_u32()), // any bit pattern
            _ => uniform(rng, -10.0, 10.0),
        }
    }

    /// Runs 10 000 wild actions (resetting at episode ends) and checks that
    /// observations stay finite and rewards are never NaN.
    fn fuzz<P: Plant<OBS, 1>, const OBS: usize>(mut plant: P, finite_reward: bool) {
        let mut rng = seeded(0xF022);
        let mut obs = plant.reset(&mut rng);
        for k in 0..10_000 {
            assert!(
                obs.iter().all(|o| o.is_finite()),
                "{} step {k}: {obs:?}",
                P::NAME
            );
            let t = plant.step(&[wild_action(&mut rng)]);
            assert!(!t.reward.is_nan(), "{} step {k}", P::NAME);
            if finite_reward {
                assert!(t.reward.is_finite(), "{} step {k}: {}", P::NAME, t.reward);
            }
            obs = t.obs;
            if t.terminated || t.truncated {
                obs = plant.reset(&mut rng);
            }
        }
        assert!(obs.iter().all(|o| o.is_finite()));
    }

    #[test]
    fn no_nan_under_wild_actions() {
        fuzz(Pendulum::new(), true);
        // Its penalty uses the raw action: ±inf and f32::MAX give −inf.
        fuzz(MountainCar::new(), false);
        fuzz(CartPole::new(), true);
        fuzz(DcMotor::new(), true);
    }

    #[test]
    fn codes_are_the_stable_ones() {
        // Logs written before plants declared codes used these numbers.
        assert_eq!(<Pendulum as Plant<3, 1>>::CODE, 0);
        assert_eq!(<MountainCar as Plant<2, 1>>::CODE, 1);
        assert_eq!(<CartPole as Plant<4, 1>>::CODE, 2);
        assert_eq!(<DcMotor as Plant<3, 1>>::CODE, 3);
        assert!(!code::is_user(code::DC_MOTOR) && !code::is_user(code::UNSPECIFIED));
        assert!(code::is_user(0x80) && code::is_user(0xFE));
    }

    /// `set_state(state())` then `observe()` is the observation the plant
    /// returned; stepping a restored copy gives the same transitions.
    fn state_round_trip<P: Plant<OBS, 1> + Default, const OBS: usize>() {
        let mut rng = seeded(31);
        let mut p = P::default();
        let mut obs = p.reset(&mut rng);
        for k in 0..50 {
            assert_eq!(p.observe(), obs, "{} step {k}", P::NAME);
            let saved = p.state();
            let mut q = P::default();
            q.set_state(saved);
            assert_eq!(q.state(), saved);
            let a = [uniform(&mut rng, -1.0, 1.0)];
            let (tp, tq) = (p.step(&a), q.step(&a));
            assert_eq!(tp, tq, "{} step {k}", P::NAME);
            obs = tp.obs;
        }
    }

    #[test]
    fn state_restores_exactly() {
        state_round_trip::<Pendulum, 3>();
        state_round_trip::<MountainCar, 2>();
        state_round_trip::<CartPole, 4>();
        state_round_trip::<DcMotor, 3>();
    }

    /// Default parameters set explicitly change nothing; other parameters
    /// change the trajectory.
    fn params_take_effect<P: Plant<OBS, 1> + Default, const OBS: usize>(other: P::Params) {
        let run = |params: Option<P::Params>| {
            let mut p = P::default();
            if let Some(q) = params {
                p.set_params(q);
            }
            let mut rng = seeded(5);
            p.reset(&mut rng);
            (0..20).map(|_| p.step(&[0.7]).obs).last()
        };
        assert_eq!(run(Some(P::Params::default())), run(None), "{}", P::NAME);
        assert_ne!(run(Some(other)), run(None), "{}", P::NAME);
        let mut p = P::default();
        p.set_params(other);
        assert_eq!(p.params(), other);
    }

    #[test]
    fn params_are_read_on_every_step() {
        params_take_effect::<Pendulum, 3>(PendulumParams {
            mass: 1.3,
            ..Default::default()
        });
        params_take_effect::<MountainCar, 2>(MountainCarParams {
            power: 0.002,
            ..Default::default()
        });
        params_take_effect::<CartPole, 4>(CartPoleParams {
            pole_mass: 0.13,
            ..Default::default()
        });
        params_take_effect::<DcMotor, 3>(DcMotorParams {
            load_inertia: 1.3e-4,
            ..Default::default()
        });
    }

    #[test]
    fn clip_handles_nan_and_inf() {
        assert_eq!(clip(f32::NAN, -2.0, 2.0), 0.0);
        assert_eq!(clip(f32::NAN, 1.0, 2.0), 1.0);
        assert_eq!(clip(f32::INFINITY, -2.0, 2.0), 2.0);
        assert_eq!(clip(f32::NEG_INFINITY, -2.0, 2.0), -2.0);
        assert_eq!(clip(0.5, -2.0, 2.0), 0.5);
        assert_eq!(clip(-3.0, -2.0, 2.0), -2.0);
    }
}
