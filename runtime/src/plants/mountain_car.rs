//! Mountain car with a continuous throttle, exactly Gymnasium's
//! `MountainCarContinuous-v0`.
//!
//! A car on the curve `y = sin(3x)` must rock back and forth to build the
//! momentum to climb the right hill (`x ≥ 0.45`); its engine alone is too
//! weak. One step (no physical time unit: the constants are per step):
//!
//! ```text
//! a_c = clip(a, −1, 1)                       (NaN → 0)
//! v'  = clip(v + 0.0015·a_c − 0.0025·cos(3x), −0.07, 0.07)
//! x'  = clip(x + v', −1.2, 0.6)
//! if x' = −1.2 and v' < 0:  v' = 0           (inelastic left wall)
//! terminated = x' ≥ 0.45 and v' ≥ 0
//! r   = 100·[terminated] − 0.1·a²            (a = the action BEFORE clipping)
//! obs = [x', v']
//! ```
//!
//! The control penalty uses the raw, unclipped action, as Gymnasium does
//! (`reward -= math.pow(action[0], 2) * 0.1`): a policy that outputs
//! `a = 3` moves the car like `a = 1` but pays `0.9`. A NaN action is treated
//! as `0` in both the dynamics and the penalty; `±inf` gives a reward of
//! `−inf` (never NaN). The state stays finite for every input.
//!
//! Reset: `x ~ U[−0.6, −0.4)`, `v = 0`. Episodes end when the goal is
//! reached (`terminated`) or after 999 steps (`truncated`; both can be set
//! on step 999).
//!
//! `DT` is `1/30` s, Gymnasium's `render_fps`: the environment has no
//! physical time, so this only says how fast a firmware should pace it to
//! look like the reference rendering.
//!
//! Parameters ([`MountainCarParams`], defaults Gymnasium's): the engine
//! `power` (0.0015), the `gravity` coefficient of the slope term (0.0025)
//! and `max_speed` (0.07). The safe action is engine off (`0`).

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::{clip, code, Plant, Transition};
use crate::rng::uniform;

/// Leftmost position (the wall).
pub const MIN_POSITION: f32 = -1.2;
/// Rightmost position.
pub const MAX_POSITION: f32 = 0.6;
/// Largest speed magnitude (per step).
pub const MAX_SPEED: f32 = 0.07;
/// Position at (or beyond) which the goal is reached.
pub const GOAL_POSITION: f32 = 0.45;
/// Smallest speed at the goal.
pub const GOAL_VELOCITY: f32 = 0.0;
/// Engine power: speed gained per step per unit action.
pub const POWER: f32 = 0.0015;
/// Reward for reaching the goal.
pub const GOAL_REWARD: f32 = 100.0;
/// Coefficient of the slope term `−gravity·cos(3x)`.
pub const GRAVITY: f32 = 0.0025;

/// Constants of the car and the hill. All must be finite, `max_speed`
/// non-negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MountainCarParams {
    /// Speed gained per step per unit action.
    pub power: f32,
    /// Coefficient of the slope term `−gravity·cos(3x)` per step.
    pub gravity: f32,
    /// The speed is clipped to `±max_speed` per step.
    pub max_speed: f32,
}

impl Default for MountainCarParams {
    /// Gymnasium's `MountainCarContinuous-v0`.
    fn default() -> Self {
        MountainCarParams {
            power: POWER,
            gravity: GRAVITY,
            max_speed: MAX_SPEED,
        }
    }
}

/// The full state of a [`MountainCar`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MountainCarState {
    /// Position `x`.
    pub position: f32,
    /// Velocity `v` (position units per step).
    pub velocity: f32,
    /// Steps since the last reset.
    pub steps: u32,
}

/// Gymnasium's `MountainCarContinuous-v0`. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct MountainCar {
    p: MountainCarParams,
    /// Position `x`.
    position: f32,
    /// Velocity `v` (position units per step).
    velocity: f32,
    /// Steps since the last reset.
    steps: u32,
}

impl MountainCar {
    /// A car at rest at the valley floor's reset centre (`x = −0.5`,
    /// `v = 0`). Call [`Plant::reset`] to draw a random initial state.
    pub const fn new() -> Self {
        Self {
            p: MountainCarParams {
                power: POWER,
                gravity: GRAVITY,
                max_speed: MAX_SPEED,
            },
            position: -0.5,
            velocity: 0.0,
            steps: 0,
        }
    }
}

impl Default for MountainCar {
    fn default() -> Self {
        Self::new()
    }
}

impl Plant<2, 1> for MountainCar {
    const NAME: &'static str = "mountain-car";
    const CODE: u8 = code::MOUNTAIN_CAR;
    const ACTION_LOW: [f32; 1] = [-1.0];
    const ACTION_HIGH: [f32; 1] = [1.0];
    const SAFE_ACTION: [f32; 1] = [0.0];
    const MAX_EPISODE_STEPS: u32 = 999;
    const DT: f32 = 1.0 / 30.0;
    type Params = MountainCarParams;
    type State = MountainCarState;

    fn params(&self) -> MountainCarParams {
        self.p
    }
    fn set_params(&mut self, params: MountainCarParams) {
        self.p = params;
    }
    fn state(&self) -> MountainCarState {
        MountainCarState {
            position: self.position,
            velocity: self.velocity,
            steps: self.steps,
        }
    }
    fn set_state(&mut self, s: MountainCarState) {
        (self.position, self.velocity, self.steps) = (s.position, s.velocity, s.steps);
    }
    fn observe(&self) -> [f32; 2] {
        [self.position, self.velocity]
    }

    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; 2] {
        self.position = uniform(rng, -0.6, -0.4);
        self.velocity = 0.0;
        self.steps = 0;
        self.observe()
    }

    fn step(&mut self, action: &[f32; 1]) -> Transition<2> {
        let raw = if action[0].is_nan() { 0.0 } else { action[0] };
        let force = clip(raw, -1.0, 1.0);

        let MountainCarParams {
            power,
            gravity,
            max_speed,
        } = self.p;
        let mut v = self.velocity + force * power - gravity * libm::cosf(3.0 * self.position);
        v = clip(v, -max_speed, max_speed);
        let x = clip(self.position + v, MIN_POSITION, MAX_POSITION);
        if x == MIN_POSITION && v < 0.0 {
            v = 0.0;
        }
        self.position = x;
        self.velocity = v;
        self.steps = self.steps.saturating_add(1);

        let terminated = x >= GOAL_POSITION && v >= GOAL_VELOCITY;
        let mut reward = if terminated { GOAL_REWARD } else { 0.0 };
        reward -= raw * raw * 0.1;

        Transition {
            obs: self.observe(),
            reward,
            terminated,
            truncated: self.steps >= <Self as Plant<2, 1>>::MAX_EPISODE_STEPS,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::rng::seeded;

    /// Gymnasium `MountainCarContinuous-v0.step`, transcribed in f64:
    /// returns `(x', v', reward, terminated)`.
    fn ref_step(x: f64, v: f64, a: f64) -> (f64, f64, f64, bool) {
        let force = a.clamp(-1.0, 1.0);
        let mut velocity = v + force * 0.0015 - 0.0025 * (3.0 * x).cos();
        velocity = velocity.clamp(-0.07, 0.07);
        let mut position = (x + velocity).clamp(-1.2, 0.6);
        if position == -1.2 && velocity < 0.0 {
            velocity = 0.0;
        }
        position = position.clamp(-1.2, 0.6);
        let terminated = position >= 0.45 && velocity >= 0.0;
        let mut reward = if terminated { 100.0 } else { 0.0 };
        reward -= a.powi(2) * 0.1;
        (position, velocity, reward, terminated)
    }

    #[test]
    fn trajectory_matches_f64_reference() {
        // Bang-bang on the sign of v: swings up and reaches the goal.
        let mut c = MountainCar::new();
        c.reset(&mut seeded(11));
        let [x0, v0] = c.observe();
        let (mut x, mut v) = (x0 as f64, v0 as f64);
        let mut reached = false;
        for k in 0..999 {
            let a: f32 = if v >= 0.0 { 1.3 } else { -0.8 };
            let t = c.step(&[a]);
            let (nx, nv, r, term) = ref_step(x, v, a as f64);
            (x, v) = (nx, nv);
            assert!(
                (t.obs[0] as f64 - x).abs() < 1e-4,
                "step {k}: {:?} vs {x}",
                t.obs
            );
            assert!(
                (t.obs[1] as f64 - v).abs() < 1e-5,
                "step {k}: {:?} vs {v}",
                t.obs
            );
            assert!((t.reward as f64 - r).abs() < 1e-4, "step {k}");
            assert_eq!(t.terminated, term, "step {k}");
            if term {
                reached = true;
                break;
            }
        }
        assert!(
            reached,
            "the energy-pumping controller should reach the goal"
        );
    }

    #[test]
    fn goal_gives_100_minus_penalty_and_terminates() {
        let mut c = MountainCar::new();
        c.position = 0.44;
        c.velocity = 0.03;
        let t = c.step(&[0.5]);
        assert!(t.terminated);
        assert!(!t.truncated);
        assert!(t.obs[0] >= GOAL_POSITION && t.obs[1] >= 0.0);
        assert!(
            (t.reward - (100.0 - 0.1 * 0.25)).abs() < 1e-5,
            "{}",
            t.reward
        );
    }

    #[test]
    fn termination_needs_position_and_nonnegative_velocity() {
        // Past the goal but moving left: not terminal.
        let mut c = MountainCar::new();
        c.position = 0.55;
        c.velocity = -0.03;
        let t = c.step(&[-1.0]);
        assert!(t.obs[0] >= GOAL_POSITION && t.obs[1] < 0.0);
        assert!(!t.terminated);
        assert!((t.reward - -0.1).abs() < 1e-6);
        // Just short of the goal: not terminal.
        let mut c = MountainCar::new();
        c.position = 0.40;
        c.velocity = 0.0;
        let t = c.step(&[1.0]);
        assert!(t.obs[0] < GOAL_POSITION);
        assert!(!t.terminated);
        // The right bound clips position at 0.6 (still terminal).
        let mut c = MountainCar::new();
        c.position = 0.59;
        c.velocity = 0.07;
        let t = c.step(&[1.0]);
        assert_eq!(t.obs[0], MAX_POSITION);
        assert!(t.terminated);
    }

    #[test]
    fn left_wall_stops_the_car() {
        let mut c = MountainCar::new();
        c.position = -1.19;
        c.velocity = -0.05;
        let t = c.step(&[-1.0]);
        assert_eq!(t.obs, [MIN_POSITION, 0.0]);
        // At the wall the slope term (−0.0025·cos(−3.6) ≈ +0.0022) beats
        // full reverse throttle (−0.0015): the car rolls back out.
        let t = c.step(&[-1.0]);
        assert!(t.obs[1] >= 0.0);
    }

    #[test]
    fn penalty_uses_unclipped_action() {
        let mut c = MountainCar::new();
        let mut d = MountainCar::new();
        let t3 = c.step(&[3.0]);
        let t1 = d.step(&[1.0]);
        assert_eq!(t3.obs, t1.obs, "dynamics see the clipped action");
        assert!((t3.reward - -0.9).abs() < 1e-6, "{}", t3.reward);
        assert!((t1.reward - -0.1).abs() < 1e-7);
        let t = MountainCar::new().step(&[-2.0]);
        assert!((t.reward - -0.4).abs() < 1e-6);
    }

    #[test]
    fn nan_and_inf_actions() {
        let mut c = MountainCar::new();
        let mut d = MountainCar::new();
        assert_eq!(c.step(&[f32::NAN]), d.step(&[0.0]));
        let t = c.step(&[f32::INFINITY]);
        let u = d.step(&[1.0]);
        assert_eq!(t.obs, u.obs);
        assert_eq!(t.reward, f32::NEG_INFINITY);
    }

    #[test]
    fn truncated_at_999() {
        let mut c = MountainCar::new();
        c.reset(&mut seeded(1));
        for k in 1..=999u32 {
            let t = c.step(&[0.0]); // never reaches the goal
            assert!(!t.terminated);
            assert_eq!(t.truncated, k == 999, "step {k}");
        }
    }

    #[test]
    fn reset_is_deterministic_and_in_range() {
        let (mut a, mut b) = (MountainCar::new(), MountainCar::default());
        let (mut ra, mut rb) = (seeded(5), seeded(5));
        for _ in 0..100 {
            let o = a.reset(&mut ra);
            assert_eq!(o, b.reset(&mut rb));
            assert!((-0.6..-0.4).contains(&o[0]));
            assert_eq!(o[1], 0.0);
        }
    }
}
