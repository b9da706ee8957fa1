//! Cart-pole balancing: Gymnasium's `CartPole-v1` physics with a
//! continuous force.
//!
//! A pole (half-length `l = 0.5` m, mass `m_p = 0.1` kg) hinged on a cart
//! (`m_c = 1.0` kg) that a force `F` pushes along a track; `g = 9.8`,
//! `τ = 0.02` s. Gymnasium's discrete `{−10, +10}` N push becomes
//! `F = 10·clip(a, −1, 1)` (NaN → 0). With `M = m_c + m_p` and
//! `m_p·l = 0.05`:
//!
//! ```text
//! temp = (F + m_p·l·θ̇²·sin θ) / M
//! θ̈    = (g·sin θ − cos θ·temp) / (l·(4/3 − m_p·cos²θ / M))
//! ẍ    = temp − m_p·l·θ̈·cos θ / M
//! x' = x + τ·ẋ;  ẋ' = ẋ + τ·ẍ;  θ' = θ + τ·θ̇;  θ̇' = θ̇ + τ·θ̈
//! ```
//!
//! (explicit Euler, Gymnasium's `kinematics_integrator = "euler"`: every
//! update uses the old values.) `θ = 0` is upright.
//!
//! Observation `[x, ẋ, θ, θ̇]`. Reward `+1` per step, including the
//! terminating step; further steps after termination (which the caller
//! should not make) give `0`, as in Gymnasium. Terminated when
//! `|θ| > 12° = 12·2π/360 rad` or `|x| > 2.4` m; truncated after 500 steps.
//! Reset: all four state variables `~ U[−0.05, 0.05)`.
//!
//! Parameters ([`CartPoleParams`], defaults Gymnasium's): `gravity`,
//! `cart_mass`, `pole_mass`, `pole_half_length` and `force_mag`. The safe
//! action is no force (`0`).

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::{clip, code, Plant, Transition};
use crate::rng::uniform;

/// Gravity `g` (m/s²).
pub const GRAVITY: f32 = 9.8;
/// Cart mass `m_c` (kg).
pub const MASSCART: f32 = 1.0;
/// Pole mass `m_p` (kg).
pub const MASSPOLE: f32 = 0.1;
/// `m_c + m_p` (kg).
pub const TOTAL_MASS: f32 = MASSPOLE + MASSCART;
/// Half the pole's length `l` (m).
pub const LENGTH: f32 = 0.5;
/// `m_p·l` (kg·m).
pub const POLEMASS_LENGTH: f32 = MASSPOLE * LENGTH;
/// Force for `a = ±1` (N).
pub const FORCE_MAG: f32 = 10.0;
/// Integration step `τ` (s).
pub const TAU: f32 = 0.02;
/// `|θ|` beyond which the episode terminates: 12° in radians.
pub const THETA_THRESHOLD_RADIANS: f32 = 12.0 * 2.0 * core::f32::consts::PI / 360.0;
/// `|x|` beyond which the episode terminates (m).
pub const X_THRESHOLD: f32 = 2.4;

/// Physical constants of the cart-pole. All must be finite; the masses
/// and the length positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartPoleParams {
    /// Gravity `g` (m/s²).
    pub gravity: f32,
    /// Cart mass `m_c` (kg).
    pub cart_mass: f32,
    /// Pole mass `m_p` (kg).
    pub pole_mass: f32,
    /// Half the pole's length `l` (m).
    pub pole_half_length: f32,
    /// Force for `a = ±1` (N).
    pub force_mag: f32,
}

impl Default for CartPoleParams {
    /// Gymnasium's `CartPole-v1`.
    fn default() -> Self {
        CartPoleParams {
            gravity: GRAVITY,
            cart_mass: MASSCART,
            pole_mass: MASSPOLE,
            pole_half_length: LENGTH,
            force_mag: FORCE_MAG,
        }
    }
}

/// The full state of a [`CartPole`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CartPoleState {
    /// `[x, ẋ, θ, θ̇]` (m, m/s, rad, rad/s).
    pub x: [f32; 4],
    /// Steps since the last reset.
    pub steps: u32,
    /// A terminating step was already rewarded (later steps give 0).
    pub terminated_before: bool,
}

/// `CartPole-v1` with a continuous force. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct CartPole {
    p: CartPoleParams,
    /// `[x, ẋ, θ, θ̇]`.
    state: [f32; 4],
    /// Steps since the last reset.
    steps: u32,
    /// A terminating step was already rewarded (Gymnasium's
    /// `steps_beyond_terminated is not None`).
    terminated_before: bool,
}

impl CartPole {
    /// A cart-pole at rest, pole upright, cart centred. Call
    /// [`Plant::reset`] to draw a random initial state.
    pub const fn new() -> Self {
        Self {
            p: CartPoleParams {
                gravity: GRAVITY,
                cart_mass: MASSCART,
                pole_mass: MASSPOLE,
                pole_half_length: LENGTH,
                force_mag: FORCE_MAG,
            },
            state: [0.0; 4],
            steps: 0,
            terminated_before: false,
        }
    }
}

impl Default for CartPole {
    fn default() -> Self {
        Self::new()
    }
}

impl Plant<4, 1> for CartPole {
    const NAME: &'static str = "cartpole";
    const CODE: u8 = code::CARTPOLE;
    const ACTION_LOW: [f32; 1] = [-1.0];
    const ACTION_HIGH: [f32; 1] = [1.0];
    const SAFE_ACTION: [f32; 1] = [0.0];
    const MAX_EPISODE_STEPS: u32 = 500;
    const DT: f32 = TAU;
    type Params = CartPoleParams;
    type State = CartPoleState;

    fn params(&self) -> CartPoleParams {
        self.p
    }
    fn set_params(&mut self, params: CartPoleParams) {
        self.p = params;
    }
    fn state(&self) -> CartPoleState {
        CartPoleState {
            x: self.state,
            steps: self.steps,
            terminated_before: self.terminated_before,
        }
    }
    fn set_state(&mut self, s: CartPoleState) {
        (self.state, self.steps, self.terminated_before) = (s.x, s.steps, s.terminated_before);
    }
    fn observe(&self) -> [f32; 4] {
        self.state
    }

    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; 4] {
        for s in &mut self.state {
            *s = uniform(rng, -0.05, 0.05);
        }
        self.steps = 0;
        self.terminated_before = false;
        self.state
    }

    fn step(&mut self, action: &[f32; 1]) -> Transition<4> {
        let CartPoleParams {
            gravity,
            cart_mass,
            pole_mass,
            pole_half_length: length,
            force_mag,
        } = self.p;
        // The derived constants in Gymnasium's order of operations.
        let total_mass = pole_mass + cart_mass;
        let polemass_length = pole_mass * length;
        let force = force_mag * clip(action[0], -1.0, 1.0);
        let [x, x_dot, theta, theta_dot] = self.state;
        let costheta = libm::cosf(theta);
        let sintheta = libm::sinf(theta);

        let temp = (force + polemass_length * theta_dot * theta_dot * sintheta) / total_mass;
        let thetaacc = (gravity * sintheta - costheta * temp)
            / (length * (4.0 / 3.0 - pole_mass * costheta * costheta / total_mass));
        let xacc = temp - polemass_length * thetaacc * costheta / total_mass;

        let x = x + TAU * x_dot;
        let x_dot = x_dot + TAU * xacc;
        let theta = theta + TAU * theta_dot;
        let theta_dot = theta_dot + TAU * thetaacc;
        self.state = [x, x_dot, theta, theta_dot];
        self.steps = self.steps.saturating_add(1);

        // Written as "not inside" so that a (never expected) NaN state
        // counts as terminal.
        let inside = (-X_THRESHOLD..=X_THRESHOLD).contains(&x)
            && (-THETA_THRESHOLD_RADIANS..=THETA_THRESHOLD_RADIANS).contains(&theta);
        let terminated = !inside;
        let reward = if !terminated {
            1.0
        } else if !self.terminated_before {
            self.terminated_before = true;
            1.0
        } else {
            0.0
        };

        Transition {
            obs: self.state,
            reward,
            terminated,
            truncated: self.steps >= <Self as Plant<4, 1>>::MAX_EPISODE_STEPS,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::rng::{seeded, uniform};

    /// Gymnasium `CartPole-v1.step` physics (euler), transcribed in f64,
    /// with `force = 10·clip(a, −1, 1)`. Returns `(state', terminated)`.
    #[allow(clippy::manual_range_contains)] // kept as written in Gymnasium
    fn ref_step(s: [f64; 4], a: f64) -> ([f64; 4], bool) {
        let (gravity, masscart, masspole, length, tau) = (9.8, 1.0, 0.1, 0.5, 0.02);
        let total_mass = masspole + masscart;
        let polemass_length = masspole * length;
        let force = 10.0 * a.clamp(-1.0, 1.0);
        let [x, x_dot, theta, theta_dot] = s;
        let (costheta, sintheta) = (theta.cos(), theta.sin());
        let temp = (force + polemass_length * theta_dot.powi(2) * sintheta) / total_mass;
        let thetaacc = (gravity * sintheta - costheta * temp)
            / (length * (4.0 / 3.0 - masspole * costheta.powi(2) / total_mass));
        let xacc = temp - polemass_length * thetaacc * costheta / total_mass;
        let x2 = x + tau * x_dot;
        let x_dot2 = x_dot + tau * xacc;
        let theta2 = theta + tau * theta_dot;
        let theta_dot2 = theta_dot + tau * thetaacc;
        let th = 12.0 * 2.0 * std::f64::consts::PI / 360.0;
        let terminated = x2 < -2.4 || x2 > 2.4 || theta2 < -th || theta2 > th;
        ([x2, x_dot2, theta2, theta_dot2], terminated)
    }

    #[test]
    fn trajectory_matches_f64_reference() {
        for seed in 0..8 {
            let mut c = CartPole::new();
            c.reset(&mut seeded(seed));
            let mut s = c.observe().map(f64::from);
            // A weak PD on the pole plus a slow sinusoid: long, varied
            // episodes. 100 steps (2 s): the upright pole is unstable
            // (pole ≈ 5.5 s⁻¹), so f32 rounding grows past 1e-4 later;
            // the one-step test below covers whole episodes.
            let mut max_err = 0.0f64;
            for k in 0..100 {
                let a = 0.6 * s[2] as f32 * 10.0
                    + 0.3 * s[3] as f32
                    + 0.4 * libm::sinf(0.05 * k as f32);
                let t = c.step(&[a]);
                let (ns, term) = ref_step(s, a as f64);
                s = ns;
                for (got, want) in t.obs.iter().zip(s) {
                    max_err = max_err.max((*got as f64 - want).abs());
                    assert!(
                        (*got as f64 - want).abs() < 1e-4,
                        "seed {seed} step {k}: {:?} vs {s:?}",
                        t.obs
                    );
                }
                assert_eq!(t.reward, 1.0);
                if term {
                    assert!(t.terminated, "seed {seed} step {k}");
                    break;
                }
                assert!(!t.terminated, "seed {seed} step {k}");
            }
            std::println!("seed {seed}: max |f32 − f64| = {max_err:.2e}");
        }
    }

    #[test]
    fn one_step_map_matches_reference_over_long_runs() {
        // Each step compared from the same (f32) state, over 20 000 steps
        // of random actions with resets: no chaos amplification.
        let mut c = CartPole::new();
        let mut rng = seeded(77);
        c.reset(&mut rng);
        for k in 0..20_000 {
            let s = c.observe().map(f64::from);
            let a = uniform(&mut rng, -1.5, 1.5);
            let (want, term) = ref_step(s, a as f64);
            let t = c.step(&[a]);
            for (got, want) in t.obs.iter().zip(want) {
                assert!(
                    (*got as f64 - want).abs() < 1e-5,
                    "step {k}: {:?} vs {want:?}",
                    t.obs
                );
            }
            // The f32 threshold can differ from the f64 one by one ulp.
            let on_edge = (want[2].abs() - 0.209_439_510_239_319_5).abs() < 1e-6
                || (want[0].abs() - 2.4).abs() < 1e-6;
            if !on_edge {
                assert_eq!(t.terminated, term, "step {k}");
            }
            if t.terminated || t.truncated {
                c.reset(&mut rng);
            }
        }
    }

    #[test]
    fn terminates_past_12_degrees() {
        let th = THETA_THRESHOLD_RADIANS;
        assert!((th as f64 - 0.209_439_510_239_319_5).abs() < 1e-7);
        for sign in [1.0f32, -1.0] {
            // θ̇ carries θ just past the threshold in one step.
            let mut c = CartPole::new();
            c.state = [0.0, 0.0, sign * (th - 0.001), sign * 0.1];
            let t = c.step(&[0.0]);
            assert!(t.obs[2].abs() > th);
            assert!(t.terminated);
            assert_eq!(t.reward, 1.0, "terminating step is rewarded");
            // ...and one that stays just inside.
            let mut c = CartPole::new();
            c.state = [0.0, 0.0, sign * (th - 0.003), sign * 0.1];
            let t = c.step(&[0.0]);
            assert!(t.obs[2].abs() <= th);
            assert!(!t.terminated);
        }
    }

    #[test]
    fn terminates_past_2_4_metres() {
        for sign in [1.0f32, -1.0] {
            let mut c = CartPole::new();
            c.state = [sign * 2.39, sign * 1.0, 0.0, 0.0];
            let t = c.step(&[0.0]);
            assert!(t.obs[0].abs() > X_THRESHOLD);
            assert!(t.terminated);
            let mut c = CartPole::new();
            c.state = [sign * 2.37, sign * 1.0, 0.0, 0.0];
            assert!(!c.step(&[0.0]).terminated);
        }
    }

    #[test]
    fn reward_after_termination_is_zero() {
        let mut c = CartPole::new();
        c.state = [0.0, 0.0, 0.3, 0.0];
        let t1 = c.step(&[0.0]);
        let t2 = c.step(&[0.0]);
        assert!(t1.terminated && t2.terminated);
        assert_eq!((t1.reward, t2.reward), (1.0, 0.0));
        // reset clears it
        c.reset(&mut seeded(0));
        assert_eq!(c.step(&[0.0]).reward, 1.0);
    }

    #[test]
    fn truncated_at_500() {
        // A stiff PD keeps the pole up and the cart near the centre.
        let mut c = CartPole::new();
        c.reset(&mut seeded(2));
        for k in 1..=500u32 {
            let [x, xd, th, thd] = c.observe();
            let a = 20.0 * th + 3.0 * thd + 0.5 * x + 1.0 * xd;
            let t = c.step(&[a]);
            assert!(!t.terminated, "step {k}: {:?}", t.obs);
            assert_eq!(t.truncated, k == 500, "step {k}");
        }
    }

    #[test]
    fn force_is_ten_times_clipped_action() {
        let mut a = CartPole::new();
        let mut b = CartPole::new();
        assert_eq!(a.step(&[5.0]), b.step(&[1.0]));
        assert_eq!(a.step(&[f32::NEG_INFINITY]), b.step(&[-1.0]));
        assert_eq!(a.step(&[f32::NAN]), b.step(&[0.0]));
        // From rest upright, F = 10 N: ẍ = F/M·(...) > 0 after one step.
        let mut c = CartPole::new();
        let t = c.step(&[1.0]);
        let thetaacc = -(10.0 / 1.1) / (0.5 * (4.0 / 3.0 - 0.1 / 1.1));
        let xacc = 10.0 / 1.1 - 0.05 * thetaacc / 1.1;
        assert!((t.obs[1] - 0.02 * xacc).abs() < 1e-6, "{:?}", t.obs);
        assert!((t.obs[3] - 0.02 * thetaacc).abs() < 1e-6);
        assert_eq!(t.obs[0], 0.0, "x uses the old ẋ");
    }

    #[test]
    fn reset_is_deterministic_and_in_range() {
        let (mut a, mut b) = (CartPole::new(), CartPole::default());
        let (mut ra, mut rb) = (seeded(8), seeded(8));
        for _ in 0..100 {
            let o = a.reset(&mut ra);
            assert_eq!(o, b.reset(&mut rb));
            assert!(o.iter().all(|v| (-0.05..0.05).contains(v)));
        }
    }
}
