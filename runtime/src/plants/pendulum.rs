//! Pendulum swing-up, exactly Gymnasium's `Pendulum-v1`.
//!
//! A rigid rod (mass `m`, length `l`) hinged at one end, driven by a torque
//! `u` at the hinge. `θ = 0` is upright, `θ` grows counter-clockwise and is
//! *not* wrapped in the state (only in the reward), as in Gymnasium.
//!
//! One step, with the parameters ([`PendulumParams`], defaults Gymnasium's)
//! `g = 10`, `m = 1`, `l = 1`, `max_speed = 8`, and the constants
//! `dt = 0.05`, `max_torque = 2`:
//!
//! ```text
//! u  = clip(a, −2, 2)                       (NaN → 0)
//! r  = −(angle_normalize(θ)² + 0.1·θ̇² + 0.001·u²)      on θ, θ̇ BEFORE the step
//! θ̇' = clip(θ̇ + (3g/(2l)·sin θ + 3/(m·l²)·u)·dt, −max_speed, max_speed)
//! θ' = θ + θ̇'·dt                            (semi-implicit Euler)
//! obs = [cos θ', sin θ', θ̇']
//!
//! angle_normalize(x) = ((x + π) mod 2π) − π   (floored mod, result in [−π, π))
//! ```
//!
//! Reset: `θ ~ U[−π, π)`, `θ̇ ~ U[−1, 1)`. Episodes last 200 steps and end
//! by truncation only (`terminated` is always `false`). The reward lies in
//! `[−16.2736, 0]` (with the default parameters).
//!
//! The safe action is zero torque (the pendulum swings freely).

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::{clip, code, Plant, Transition};
use crate::rng::uniform;

/// Gravity `g` (m/s²), the default of [`PendulumParams::gravity`].
pub const G: f32 = 10.0;
/// Rod mass `m` (kg), the default of [`PendulumParams::mass`].
pub const M: f32 = 1.0;
/// Rod length `l` (m), the default of [`PendulumParams::length`].
pub const L: f32 = 1.0;
/// Largest torque magnitude (N·m); actions are clipped to `±MAX_TORQUE`.
pub const MAX_TORQUE: f32 = 2.0;
/// Largest angular speed magnitude (rad/s), the default of
/// [`PendulumParams::max_speed`].
pub const MAX_SPEED: f32 = 8.0;

/// Physical constants of the pendulum. All must be finite; `mass` and
/// `length` positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PendulumParams {
    /// Gravity `g` (m/s²).
    pub gravity: f32,
    /// Rod mass `m` (kg).
    pub mass: f32,
    /// Rod length `l` (m).
    pub length: f32,
    /// `θ̇` is clipped to `±max_speed` (rad/s).
    pub max_speed: f32,
}

impl Default for PendulumParams {
    /// Gymnasium's `Pendulum-v1`.
    fn default() -> Self {
        PendulumParams {
            gravity: G,
            mass: M,
            length: L,
            max_speed: MAX_SPEED,
        }
    }
}

/// The full state of a [`Pendulum`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PendulumState {
    /// Angle from upright (rad), unwrapped.
    pub theta: f32,
    /// Angular speed (rad/s).
    pub theta_dot: f32,
    /// Steps since the last reset.
    pub steps: u32,
}

/// `((x + π) mod 2π) − π` with a floored (Python) modulo: `x` wrapped
/// to `[−π, π)`.
///
/// ```
/// use tinyppo_runtime::plants::pendulum::angle_normalize;
/// assert!((angle_normalize(3.0 * core::f32::consts::PI) + core::f32::consts::PI).abs() < 1e-5);
/// assert!((angle_normalize(-0.5) + 0.5).abs() < 1e-7);
/// ```
pub fn angle_normalize(x: f32) -> f32 {
    use core::f32::consts::PI;
    const TWO_PI: f32 = 2.0 * PI;
    // fmod truncates (result has the sign of the dividend); Python's `%`
    // floors (result has the sign of the divisor). Shift negatives up.
    // `math::fmod` is `libm::fmodf` bit for bit, without 64-bit division.
    let mut r = crate::math::fmod(x + PI, TWO_PI);
    if r < 0.0 {
        r += TWO_PI;
    }
    r - PI
}

/// Gymnasium's `Pendulum-v1`. See the [module docs](self) for the equations.
#[derive(Debug, Clone, PartialEq)]
pub struct Pendulum {
    p: PendulumParams,
    /// Angle from upright (rad), unwrapped.
    theta: f32,
    /// Angular speed (rad/s).
    theta_dot: f32,
    /// Steps since the last reset.
    steps: u32,
}

impl Pendulum {
    /// A pendulum at rest, upright (`θ = 0`, `θ̇ = 0`). Call
    /// [`Plant::reset`] to draw a random initial state.
    pub const fn new() -> Self {
        Self {
            p: PendulumParams {
                gravity: G,
                mass: M,
                length: L,
                max_speed: MAX_SPEED,
            },
            theta: 0.0,
            theta_dot: 0.0,
            steps: 0,
        }
    }

    fn obs(&self) -> [f32; 3] {
        [
            libm::cosf(self.theta),
            libm::sinf(self.theta),
            self.theta_dot,
        ]
    }
}

impl Default for Pendulum {
    fn default() -> Self {
        Self::new()
    }
}

impl Plant<3, 1> for Pendulum {
    const NAME: &'static str = "pendulum";
    const CODE: u8 = code::PENDULUM;
    const ACTION_LOW: [f32; 1] = [-MAX_TORQUE];
    const ACTION_HIGH: [f32; 1] = [MAX_TORQUE];
    const SAFE_ACTION: [f32; 1] = [0.0];
    const MAX_EPISODE_STEPS: u32 = 200;
    const DT: f32 = 0.05;
    type Params = PendulumParams;
    type State = PendulumState;

    fn params(&self) -> PendulumParams {
        self.p
    }
    fn set_params(&mut self, params: PendulumParams) {
        self.p = params;
    }
    fn state(&self) -> PendulumState {
        PendulumState {
            theta: self.theta,
            theta_dot: self.theta_dot,
            steps: self.steps,
        }
    }
    fn set_state(&mut self, s: PendulumState) {
        (self.theta, self.theta_dot, self.steps) = (s.theta, s.theta_dot, s.steps);
    }
    fn observe(&self) -> [f32; 3] {
        self.obs()
    }

    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; 3] {
        use core::f32::consts::PI;
        self.theta = uniform(rng, -PI, PI);
        self.theta_dot = uniform(rng, -1.0, 1.0);
        self.steps = 0;
        self.obs()
    }

    fn step(&mut self, action: &[f32; 1]) -> Transition<3> {
        let dt = <Self as Plant<3, 1>>::DT;
        let u = clip(action[0], -MAX_TORQUE, MAX_TORQUE);
        let (th, thdot) = (self.theta, self.theta_dot);

        let an = angle_normalize(th);
        let cost = an * an + 0.1 * thdot * thdot + 0.001 * u * u;

        let PendulumParams {
            gravity: g,
            mass: m,
            length: l,
            max_speed,
        } = self.p;
        let thdot_new = clip(
            thdot + (3.0 * g / (2.0 * l) * libm::sinf(th) + 3.0 / (m * l * l) * u) * dt,
            -max_speed,
            max_speed,
        );
        self.theta = th + thdot_new * dt;
        self.theta_dot = thdot_new;
        self.steps = self.steps.saturating_add(1);

        Transition {
            obs: self.obs(),
            reward: -cost,
            terminated: false,
            truncated: self.steps >= <Self as Plant<3, 1>>::MAX_EPISODE_STEPS,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::rng::seeded;
    use std::f64::consts::PI as PI64;

    /// Gymnasium's `angle_normalize` in f64: `((x + π) % (2π)) − π` with
    /// Python's floored `%` (= `rem_euclid` for a positive divisor).
    fn ref_angle_normalize(x: f64) -> f64 {
        (x + PI64).rem_euclid(2.0 * PI64) - PI64
    }

    /// Gymnasium `Pendulum-v1.step`, transcribed in f64:
    /// returns `(θ', θ̇', reward)`.
    fn ref_step(th: f64, thdot: f64, a: f64) -> (f64, f64, f64) {
        let (g, m, l, dt) = (10.0, 1.0, 1.0, 0.05);
        let u = a.clamp(-2.0, 2.0);
        let costs = ref_angle_normalize(th).powi(2) + 0.1 * thdot.powi(2) + 0.001 * u.powi(2);
        let newthdot = thdot + (3.0 * g / (2.0 * l) * th.sin() + 3.0 / (m * l * l) * u) * dt;
        let newthdot = newthdot.clamp(-8.0, 8.0);
        let newth = th + newthdot * dt;
        (newth, newthdot, -costs)
    }

    /// A fixed, non-trivial action sequence that also leaves the bounds.
    fn action(k: usize) -> f32 {
        3.0 * libm::sinf(0.37 * k as f32) + 0.5 * libm::cosf(1.3 * k as f32)
    }

    #[test]
    fn trajectory_matches_f64_reference() {
        for seed in 0..8 {
            let mut p = Pendulum::new();
            let mut rng = seeded(seed);
            p.reset(&mut rng);
            let PendulumState {
                theta: th0,
                theta_dot: thd0,
                ..
            } = p.state();
            let (mut th, mut thd) = (th0 as f64, thd0 as f64);
            let mut max_err = 0.0f64;
            // 60 steps (3 s): long enough to swing through, short enough
            // that f32 rounding is not amplified past 1e-4 near upright.
            for k in 0..60 {
                let a = action(k);
                let t = p.step(&[a]);
                let (nth, nthd, r) = ref_step(th, thd, a as f64);
                (th, thd) = (nth, nthd);
                let want = [th.cos(), th.sin(), thd];
                for (got, want) in t.obs.iter().zip(want) {
                    max_err = max_err.max((*got as f64 - want).abs());
                    assert!(
                        (*got as f64 - want).abs() < 1e-4,
                        "seed {seed} step {k}: obs {:?} vs {want}",
                        t.obs
                    );
                }
                assert!(
                    (t.reward as f64 - r).abs() < 1e-4 * (1.0 + r.abs()),
                    "seed {seed} step {k}: reward {} vs {r}",
                    t.reward
                );
            }
            std::println!("seed {seed}: max |f32 − f64| = {max_err:.2e}");
        }
    }

    #[test]
    fn one_step_map_matches_reference_along_a_long_run() {
        // Every step compared from the same (f32) state: no chaos
        // amplification, so this covers whole episodes.
        let mut p = Pendulum::new();
        p.reset(&mut seeded(42));
        for k in 0..1000 {
            let PendulumState {
                theta: th,
                theta_dot: thd,
                ..
            } = p.state();
            let a = 2.5 * action(k);
            let (nth, nthd, r) = ref_step(th as f64, thd as f64, a as f64);
            let t = p.step(&[a]);
            let PendulumState {
                theta: gth,
                theta_dot: gthd,
                ..
            } = p.state();
            assert!((gth as f64 - nth).abs() < 1e-4 * (1.0 + nth.abs()));
            assert!((gthd as f64 - nthd).abs() < 1e-4);
            assert!((t.reward as f64 - r).abs() < 1e-4 * (1.0 + r.abs()));
        }
    }

    #[test]
    fn angle_normalize_matches_python_semantics() {
        let xs = [
            0.0f32, 1.0, -1.0, 3.0, -3.0, 3.2, -3.2, 6.0, -6.0, 7.0, -7.0, 10.0, -10.0, 100.0,
            -100.0, 1234.5,
        ];
        for x in xs {
            let got = angle_normalize(x) as f64;
            let want = ref_angle_normalize(x as f64);
            assert!((got - want).abs() < 1e-4, "{x}: {got} vs {want}");
            assert!((-PI64 - 1e-6..PI64 + 1e-6).contains(&got));
        }
        // Negative inputs are the case truncated fmod gets wrong.
        assert!((angle_normalize(-4.0) - (2.0 * core::f32::consts::PI - 4.0)).abs() < 1e-6);
    }

    #[test]
    fn reward_uses_state_before_step_and_clipped_torque() {
        let mut p = Pendulum::new();
        p.theta = 1.0;
        p.theta_dot = 2.0;
        // u = 5 clips to 2: cost = 1 + 0.1·4 + 0.001·4.
        let t = p.step(&[5.0]);
        assert!(
            (t.reward - -(1.0 + 0.4 + 0.004)).abs() < 1e-6,
            "{}",
            t.reward
        );
    }

    #[test]
    fn max_speed_clips() {
        let mut p = Pendulum::new();
        p.theta = core::f32::consts::FRAC_PI_2; // sin θ = 1: strongest gravity push
        p.theta_dot = 7.9;
        let t = p.step(&[2.0]);
        // unclipped would be 7.9 + (15 + 6)·0.05 = 8.95
        assert_eq!(t.obs[2], MAX_SPEED);
        assert_eq!(p.state().theta, core::f32::consts::FRAC_PI_2 + 8.0 * 0.05);
        p.theta = -core::f32::consts::FRAC_PI_2;
        p.theta_dot = -7.9;
        assert_eq!(p.step(&[-2.0]).obs[2], -MAX_SPEED);
        // Sustained drive never exceeds the limit.
        for _ in 0..500 {
            assert!(p.step(&[2.0]).obs[2].abs() <= MAX_SPEED);
        }
    }

    #[test]
    fn truncated_exactly_at_step_200_never_terminated() {
        let mut p = Pendulum::new();
        p.reset(&mut seeded(3));
        for k in 1..=200u32 {
            let t = p.step(&[action(k as usize)]);
            assert!(!t.terminated);
            assert_eq!(t.truncated, k == 200, "step {k}");
        }
        // A new episode restarts the count.
        p.reset(&mut seeded(4));
        assert!(!p.step(&[0.0]).truncated);
    }

    #[test]
    fn reset_is_deterministic_and_in_range() {
        let mut a = Pendulum::new();
        let mut b = Pendulum::default();
        let (mut ra, mut rb) = (seeded(9), seeded(9));
        for _ in 0..100 {
            let oa = a.reset(&mut ra);
            assert_eq!(oa, b.reset(&mut rb));
            let PendulumState {
                theta: th,
                theta_dot: thd,
                ..
            } = a.state();
            assert!((-core::f32::consts::PI..core::f32::consts::PI).contains(&th));
            assert!((-1.0..1.0).contains(&thd));
            assert_eq!(oa, [libm::cosf(th), libm::sinf(th), thd]);
        }
        assert_ne!(a.reset(&mut seeded(1)), a.reset(&mut seeded(2)));
    }

    #[test]
    fn nan_action_is_zero_torque() {
        let mut p = Pendulum::new();
        p.reset(&mut seeded(5));
        let mut q = p.clone();
        assert_eq!(p.step(&[f32::NAN]), q.step(&[0.0]));
        assert_eq!(p.step(&[f32::INFINITY]), q.step(&[2.0]));
    }
}
