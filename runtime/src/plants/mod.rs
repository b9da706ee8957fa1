//! Built-in control plants, `no_std`, shared by the trainer and the firmware.
//!
//! Every plant is f32 and uses `libm`, so a plant simulated on the host and
//! on a Cortex-M4F produces the same trajectory bit for bit.
//!
//! | name           | type                         | OBS | ACT | `DT` (s) | steps | ends by             |
//! |----------------|------------------------------|-----|-----|----------|-------|---------------------|
//! | `pendulum`     | [`Pendulum`] (Pendulum-v1)   | 3   | 1   | 0.05     | 200   | truncation only     |
//! | `mountain-car` | [`MountainCar`] (MountainCarContinuous-v0) | 2 | 1 | 1/30 | 999 | goal, or truncation |
//! | `cartpole`     | [`CartPole`] (CartPole-v1, continuous force) | 4 | 1 | 0.02 | 500 | pole/cart limits, or truncation |
//! | `dc-motor`     | [`DcMotor`] (FAULHABER 1331T012SR + 50:1 gear) | 3 | 1 | 0.01 | 200 | truncation only |
//!
//! The equations, constants and rewards are in each module and in
//! `docs/PLANTS.md`.
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

pub mod cartpole;
pub mod dc_motor;
pub mod mountain_car;
pub mod pendulum;

pub use cartpole::CartPole;
pub use dc_motor::{DcMotor, DcMotorParams};
pub use mountain_car::MountainCar;
pub use pendulum::Pendulum;

/// The command-line names of the built-in plants, in a fixed order:
/// `pendulum`, `mountain-car`, `cartpole`, `dc-motor`.
pub const NAMES: [&str; 4] = [
    <Pendulum as Plant<3, 1>>::NAME,
    <MountainCar as Plant<2, 1>>::NAME,
    <CartPole as Plant<4, 1>>::NAME,
    <DcMotor as Plant<3, 1>>::NAME,
];

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
pub trait Plant<const OBS: usize, const ACT: usize> {
    /// Name used on the command line (`pendulum`, `mountain-car`, …).
    const NAME: &'static str;
    /// Lower action bounds (the plant clips to these).
    const ACTION_LOW: [f32; ACT];
    /// Upper action bounds.
    const ACTION_HIGH: [f32; ACT];
    /// Steps after which an episode is truncated.
    const MAX_EPISODE_STEPS: u32;
    /// Control period in seconds (what a firmware's timer paces).
    const DT: f32;

    /// Starts a new episode and returns the first observation.
    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; OBS];

    /// Applies `action` (clipped to the bounds by the plant) for one period.
    /// After `terminated` or `truncated`, call [`Plant::reset`].
    fn step(&mut self, action: &[f32; ACT]) -> Transition<OBS>;
}

// `clip` needs `lo <= hi`: checked for every plant at compile time.
const _: () = {
    assert!(<Pendulum as Plant<3, 1>>::ACTION_LOW[0] < <Pendulum as Plant<3, 1>>::ACTION_HIGH[0]);
    assert!(
        <MountainCar as Plant<2, 1>>::ACTION_LOW[0] < <MountainCar as Plant<2, 1>>::ACTION_HIGH[0]
    );
    assert!(<CartPole as Plant<4, 1>>::ACTION_LOW[0] < <CartPole as Plant<4, 1>>::ACTION_HIGH[0]);
    assert!(<DcMotor as Plant<3, 1>>::ACTION_LOW[0] < <DcMotor as Plant<3, 1>>::ACTION_HIGH[0]);
};

/// `x` clipped to `[lo, hi]`, with NaN treated as `0.0` (then clipped).
///
/// Unlike `f32::clamp` this never propagates NaN, so a NaN action cannot
/// poison a plant's state. `±inf` clips to the bounds. Requires `lo <= hi`
/// (all callers pass constants).
#[inline]
pub(crate) fn clip(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x.is_nan() { 0.0 } else { x };
    if x < lo {
        lo
    } else if x > hi {
        hi
    } else {
        x
    }
}

#[cfg(test)]
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
    fn names_are_distinct_and_in_order() {
        assert_eq!(NAMES, ["pendulum", "mountain-car", "cartpole", "dc-motor"]);
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
