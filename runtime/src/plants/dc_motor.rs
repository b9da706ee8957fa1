//! Position control of a small brushed DC motor with a gearhead.
//!
//! # Hardware
//!
//! The motor is a **FAULHABER 1331 T 012 SR** coreless (ironless-rotor)
//! DC-micromotor, 13 mm diameter, precious-metal commutation, 12 V winding.
//! Constants are from FAULHABER's data sheet "DC-Micromotors Series
//! 1331 … SR, 3,2 mNm" (column `012 SR`):
//!
//! | datasheet line                     | value          | model constant (SI)                  |
//! |------------------------------------|----------------|--------------------------------------|
//! | nominal voltage `U_N`              | 12 V           | supply `V_s` = 12 V                  |
//! | terminal resistance `R`            | 13,7 Ω         | `R` = 13.7 Ω                         |
//! | rotor inductance `L`               | 310 µH         | `L` = 310·10⁻⁶ H                     |
//! | torque constant `k_M`              | 11,4 mNm/A     | `K_t` = 0.0114 N·m/A                 |
//! | back-EMF constant `k_E`            | 1,20 mV/rpm    | `K_e` = `K_t` = 0.0114 V·s/rad (¹)   |
//! | speed constant `k_n`               | 835 rpm/V      | (consistent: 1/`K_e`)                |
//! | rotor inertia `J`                  | 0,67 g·cm²     | `J_m` = 0.67·10⁻⁷ kg·m²              |
//! | no-load speed `n_0`                | 9 900 rpm      | check: model gives 9 931 rpm         |
//! | no-load current `I_0`              | 0,0105 A       | friction (²)                         |
//! | friction torque `M_R`              | 0,12 mNm       | friction (²)                         |
//! | mechanical time constant `τ_m`     | 7 ms           | check: `R·J_m/(K_t·K_e)` = 7.06 ms   |
//! | stall torque `M_H`                 | 9,90 mNm       | check: `K_t·U_N/R − τ_c` = 9.93 mNm  |
//!
//! (¹) `1.20 mV/rpm = 0.01146 V·s/rad`, equal to `k_M` in SI within the
//! datasheet's rounding (0.5 %). The model uses one value, `K_e = K_t`, so
//! the electromechanical conversion conserves energy exactly.
//!
//! (²) The datasheet gives one friction number: `M_R = 0.12 mNm`, matching
//! the no-load torque `K_t·I_0 = 0.1197 mNm` at `n_0`. It does not split it
//! into dry and viscous parts; we assume half of each: Coulomb
//! `τ_c = 0.06 mNm` and viscous `b = 0.06 mNm / ω_0 = 5.79·10⁻⁸ N·m·s/rad`
//! with `ω_0 = 9900 rpm = 1036.7 rad/s`. The sign function of dry friction
//! is smoothed as `τ_c·tanh(ω/ω_c)`, `ω_c = 1 rad/s` (≈ 10 rpm at the motor,
//! 0.1 % of `n_0`), so the ODE stays Lipschitz.
//!
//! Not from a datasheet (modelling choices): an ideal **50:1 gearhead**
//! (lossless, no backlash, no gear friction) and a **load inertia**
//! `J_L = 1·10⁻⁴ kg·m²` on the output shaft (40 g at 5 cm). The reflected
//! inertia is `J = J_m + J_L/N² = 1.07·10⁻⁷ kg·m²` at the motor, which gives
//! a loaded mechanical time constant of 11.3 ms. With 12 V the output
//! shaft turns at up to ≈ 20.8 rad/s.
//!
//! # Model
//!
//! Motor-side state: current `i` (A), speed `ω` (rad/s); output angle `θ`
//! (rad). Input: `V = V_s·clip(a, −1, 1)` (NaN → 0, saturating at ±12 V).
//!
//! ```text
//! L·di/dt = V − R·i − K_e·ω
//! J·dω/dt = K_t·i − b·ω − τ_c·tanh(ω/ω_c)
//! dθ/dt   = ω/N
//! ```
//!
//! # Integration
//!
//! Control period `DT = 0.01` s (100 Hz), split into 10 substeps of
//! `h = 1 ms`. The electrical time constant `L/R = 22.6 µs` is far below
//! `h` (explicit Euler on `i` would need `h < 2L/R = 45 µs`), so the
//! substep does not use Euler: the system is linear except for the dry
//! friction, so with `x = [i, ω]` and the friction torque
//! `f = τ_c·tanh(ω/ω_c)` held at its value at the start of the substep,
//!
//! ```text
//! dx/dt = A·x + [V/L, −f/J],    A = [[−R/L, −K_e/L], [K_t/J, −b/J]]
//! ```
//!
//! is solved **exactly** over the substep (zero-order hold on `V` and `f`):
//!
//! ```text
//! ω_eq = (K_t·V/R − f) / (b + K_t·K_e/R),   i_eq = (V − K_e·ω_eq)/R     (equilibrium)
//! x'   = x_eq + Φ·(x − x_eq),               Φ = exp(A·h)
//! θ'   = θ + (h·ω_eq + [Ψ·(x − x_eq)]_ω)/N,  Ψ = ∫₀ʰ exp(A·t) dt = A⁻¹·(Φ − I)
//! ```
//!
//! `Φ` and `Ψ` depend only on the constants: they are computed once, in
//! f64, by [`DcMotor::with_params`] (closed form for a 2×2 matrix:
//! `exp(A·h) = c₀·I + c₁·A` from the eigenvalues of `A`; here both are real,
//! −44 105 s⁻¹ and −89.4 s⁻¹, the electrical and the loaded mechanical
//! pole). The scheme is unconditionally stable for the linear part and
//! exact at equilibrium (the steady-state speed is exactly the analytic
//! one). The only approximation is holding `f` for 1 ms; its stiffness
//! `τ_c/(ω_c·J) = 561 s⁻¹` times `h` is 0.56 < 1, so the friction does not
//! chatter around `ω = 0`. Against a 0.1 µs explicit-Euler reference of the
//! full ODE, a full-voltage start-up is within 0.2 % in `θ`, `ω` and `i`.
//!
//! # Task
//!
//! Each episode draws a target `θ* ~ U[−π, π)` rad at the output shaft and
//! starts at rest: `θ = 0`, `ω = 0`, `i = 0`. The angle is not wrapped (a
//! positioning axis, not a continuous rotation). Observation:
//!
//! ```text
//! obs = [ e = θ* − θ  (rad),
//!         ω̃ = (ω/N) / ω_s,   ω_s = V_s/(K_e·N) = 21.05 rad/s  (ideal no-load output speed),
//!         ĩ = i / i_s,        i_s = V_s/R       = 0.876 A     (stall current) ]
//! ```
//!
//! all O(1) (`|ω̃| < 1`, `|ĩ| < 2`: reversing at full speed draws about
//! twice the stall current). Reward, on the state after the step:
//!
//! ```text
//! r = −(e² + 0.1·ω̃² + 0.01·u²),   u = clip(a, −1, 1) = V/V_s
//! ```
//!
//! Episodes last 200 steps (2 s) and end by truncation only: nothing in the
//! task is a terminal state (the axis has no end stops, and the voltage
//! limit already bounds speed and current). For scale: the PD controller
//! `u = clip(4·e − ω̃)` settles to within 1 % of the step in 0.07–0.17 s
//! (`θ*` from 0.3 to π) and scores −12 on average (−0.14 for `θ* = 0.3`, −57 for `θ* = π`); doing
//! nothing scores `−200·θ*²`, −658 in expectation.
//!
//! No input makes [`Plant::step`] panic or the state non-finite (for the
//! default parameters; see [`DcMotorParams`] for the requirements on custom
//! ones).

use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::{clip, code, Plant, Transition};
use crate::rng::uniform;

/// Substeps per control period (`h = DT/SUBSTEPS = 1 ms`).
pub const SUBSTEPS: u32 = 10;
/// Weight of `ω̃²` in the cost.
pub const SPEED_COST: f32 = 0.1;
/// Weight of `u²` (normalised voltage) in the cost.
pub const VOLTAGE_COST: f32 = 0.01;

/// Physical constants of the motor, gearhead and load (SI units, motor
/// side unless stated).
///
/// All fields must be finite; `resistance`, `inductance`, `rotor_inertia`,
/// `gear_ratio`, `friction_speed`, `torque_constant`, `back_emf_constant`
/// and `supply_voltage` strictly positive; the others non-negative.
/// Dry friction should satisfy `h·τ_c/(ω_c·J) < 1` with `h = DT/SUBSTEPS`
/// and `J = J_m + J_L/N²` (see the module docs), or it chatters around
/// `ω = 0`. Other values give wrong (possibly non-finite) trajectories,
/// never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DcMotorParams {
    /// Terminal resistance `R` (Ω).
    pub resistance: f32,
    /// Terminal inductance `L` (H).
    pub inductance: f32,
    /// Torque constant `K_t` (N·m/A).
    pub torque_constant: f32,
    /// Back-EMF constant `K_e` (V·s/rad); equal to `K_t` for a real motor.
    pub back_emf_constant: f32,
    /// Rotor inertia `J_m` (kg·m²).
    pub rotor_inertia: f32,
    /// Load inertia `J_L` on the output shaft (kg·m²).
    pub load_inertia: f32,
    /// Gear ratio `N` (motor turns per output turn).
    pub gear_ratio: f32,
    /// Viscous friction `b` (N·m·s/rad).
    pub viscous_friction: f32,
    /// Coulomb (dry) friction `τ_c` (N·m).
    pub coulomb_friction: f32,
    /// Speed `ω_c` (rad/s) of the `tanh(ω/ω_c)` that smooths dry friction.
    pub friction_speed: f32,
    /// Supply voltage `V_s` (V): the voltage for action `±1`.
    pub supply_voltage: f32,
}

impl DcMotorParams {
    /// FAULHABER 1331 T 012 SR with an ideal 50:1 gearhead and a
    /// `1·10⁻⁴ kg·m²` load, on a 12 V supply (see the module docs for the
    /// datasheet values and the friction split).
    pub const FAULHABER_1331T012SR: Self = Self {
        resistance: 13.7,
        inductance: 310e-6,
        torque_constant: 11.4e-3,
        back_emf_constant: 11.4e-3,
        rotor_inertia: 0.67e-7,
        load_inertia: 1.0e-4,
        gear_ratio: 50.0,
        // Half of M_R = 0.12 mNm as viscous friction at n_0 = 9900 rpm.
        viscous_friction: 0.06e-3 / (9900.0 * 2.0 * core::f32::consts::PI / 60.0),
        // The other half as dry friction.
        coulomb_friction: 0.06e-3,
        friction_speed: 1.0,
        supply_voltage: 12.0,
    };
}

impl Default for DcMotorParams {
    fn default() -> Self {
        Self::FAULHABER_1331T012SR
    }
}

/// The full state of a [`DcMotor`] (motor side unless stated).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DcMotorState {
    /// Output angle `θ` (rad).
    pub theta: f32,
    /// Motor speed `ω` (rad/s).
    pub omega: f32,
    /// Current `i` (A).
    pub current: f32,
    /// Target angle `θ*` (output shaft, rad).
    pub target: f32,
    /// Steps since the last reset.
    pub steps: u32,
}

/// A geared DC motor positioning task. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct DcMotor {
    p: DcMotorParams,
    /// Reflected inertia `J_m + J_L/N²` (kg·m²).
    j_eq: f32,
    /// `Φ = exp(A·h)`, row-major `[Φ_ii, Φ_iω, Φ_ωi, Φ_ωω]`.
    phi: [f32; 4],
    /// The `ω` row of `Ψ = A⁻¹·(Φ − I)`: `[Ψ_ωi, Ψ_ωω]`.
    psi_omega: [f32; 2],
    /// `1/(b + K_t·K_e/R)`.
    inv_damping: f32,
    /// `1/ω_s` with `ω_s = V_s/(K_e·N)`.
    inv_speed_scale: f32,
    /// `1/i_s` with `i_s = V_s/R`.
    inv_current_scale: f32,
    /// Output angle `θ` (rad).
    theta: f32,
    /// Motor speed `ω` (rad/s).
    omega: f32,
    /// Current `i` (A).
    current: f32,
    /// Target angle `θ*` (rad).
    target: f32,
    /// Steps since the last reset.
    steps: u32,
}

impl DcMotor {
    /// The FAULHABER 1331 T 012 SR plant ([`DcMotorParams::default`]) at
    /// rest, target 0. Call [`Plant::reset`] to draw a target.
    pub fn new() -> Self {
        Self::with_params(DcMotorParams::default())
    }

    /// A plant with custom constants, at rest, target 0.
    ///
    /// Computes the substep's transition matrices (in f64, once); see the
    /// module docs.
    pub fn with_params(p: DcMotorParams) -> Self {
        let mut m = Self {
            p,
            j_eq: 0.0,
            phi: [0.0; 4],
            psi_omega: [0.0; 2],
            inv_damping: 0.0,
            inv_speed_scale: 0.0,
            inv_current_scale: 0.0,
            theta: 0.0,
            omega: 0.0,
            current: 0.0,
            target: 0.0,
            steps: 0,
        };
        m.derive_constants();
        m
    }

    /// The substep matrices and scales that follow from the parameters.
    fn derive_constants(&mut self) {
        let p = self.p;
        self.j_eq = p.rotor_inertia + p.load_inertia / (p.gear_ratio * p.gear_ratio);
        (self.phi, self.psi_omega) = substep_matrices(&p, self.j_eq);
        self.inv_damping =
            1.0 / (p.viscous_friction + p.torque_constant * p.back_emf_constant / p.resistance);
        self.inv_speed_scale = p.back_emf_constant * p.gear_ratio / p.supply_voltage;
        self.inv_current_scale = p.resistance / p.supply_voltage;
    }

    /// `[θ (output, rad), ω/N (output, rad/s), i (A)]`, unscaled.
    pub fn output_state(&self) -> [f32; 3] {
        [self.theta, self.omega / self.p.gear_ratio, self.current]
    }

    /// This episode's target angle `θ*` (output shaft, rad).
    pub fn target(&self) -> f32 {
        self.target
    }

    fn obs(&self) -> [f32; 3] {
        [
            self.target - self.theta,
            self.omega / self.p.gear_ratio * self.inv_speed_scale,
            self.current * self.inv_current_scale,
        ]
    }

    /// Integrates one control period with terminal voltage `v`.
    fn integrate(&mut self, v: f32) {
        let p = &self.p;
        let h = <Self as Plant<3, 1>>::DT / SUBSTEPS as f32;
        let [p_ii, p_iw, p_wi, p_ww] = self.phi;
        let [s_wi, s_ww] = self.psi_omega;
        let drive = p.torque_constant * v / p.resistance;
        let (mut i, mut w, mut th) = (self.current, self.omega, self.theta);
        for _ in 0..SUBSTEPS {
            // Equilibrium for this V and the (held) dry-friction torque.
            let f = p.coulomb_friction * libm::tanhf(w / p.friction_speed);
            let w_eq = (drive - f) * self.inv_damping;
            let i_eq = (v - p.back_emf_constant * w_eq) / p.resistance;
            let (di, dw) = (i - i_eq, w - w_eq);
            th += (h * w_eq + s_wi * di + s_ww * dw) / p.gear_ratio;
            i = i_eq + p_ii * di + p_iw * dw;
            w = w_eq + p_wi * di + p_ww * dw;
        }
        (self.current, self.omega, self.theta) = (i, w, th);
    }
}

/// `Φ = exp(A·h)` (row-major) and the `ω` row of `Ψ = A⁻¹·(Φ − I)` for
/// `A = [[−R/L, −K_e/L], [K_t/J, −b/J]]`, `h = DT/SUBSTEPS`, in f64.
///
/// For a 2×2 matrix, `exp(A·h) = c₀·I + c₁·A` (Cayley–Hamilton). With
/// `α = tr(A)/2` and `δ² = ((a₁₁ − a₂₂)/2)² + a₁₂·a₂₁`:
/// - `δ² > 0` (real poles `λ₁,₂ = α ± δ`, the case of every real DC motor):
///   `c₁ = (e^{λ₁h} − e^{λ₂h})/(2δ)`, `c₀ = (λ₁·e^{λ₂h} − λ₂·e^{λ₁h})/(2δ)`
///   (no exponential above 1, so no overflow for stiff motors);
/// - `δ² < 0` (complex poles `α ± iβ`): `c₁ = e^{αh}·sin(βh)/β`,
///   `c₀ = e^{αh}·(cos(βh) − α·sin(βh)/β)`;
/// - `δ² = 0`: `c₁ = h·e^{αh}`, `c₀ = e^{αh}·(1 − α·h)`.
///
/// Then `A⁻¹·(Φ − I) = (c₀ − 1)·A⁻¹ + c₁·I`.
fn substep_matrices(p: &DcMotorParams, j_eq: f32) -> ([f32; 4], [f32; 2]) {
    let h = f64::from(<DcMotor as Plant<3, 1>>::DT) / f64::from(SUBSTEPS);
    let (r, l) = (f64::from(p.resistance), f64::from(p.inductance));
    let (kt, ke) = (f64::from(p.torque_constant), f64::from(p.back_emf_constant));
    let (b, j) = (f64::from(p.viscous_friction), f64::from(j_eq));
    let (a11, a12, a21, a22) = (-r / l, -ke / l, kt / j, -b / j);

    let alpha = 0.5 * (a11 + a22);
    let half_diff = 0.5 * (a11 - a22);
    let d2 = half_diff * half_diff + a12 * a21;
    let (c0, c1) = if d2 > 0.0 {
        let d = libm::sqrt(d2);
        let (l1, l2) = (alpha + d, alpha - d);
        let (e1, e2) = (libm::exp(l1 * h), libm::exp(l2 * h));
        ((l1 * e2 - l2 * e1) / (2.0 * d), (e1 - e2) / (2.0 * d))
    } else if d2 < 0.0 {
        let beta = libm::sqrt(-d2);
        let ea = libm::exp(alpha * h);
        let (sn, cs) = (libm::sin(beta * h), libm::cos(beta * h));
        (ea * (cs - alpha * sn / beta), ea * sn / beta)
    } else {
        let ea = libm::exp(alpha * h);
        (ea * (1.0 - alpha * h), h * ea)
    };
    let phi = [c0 + c1 * a11, c1 * a12, c1 * a21, c0 + c1 * a22];
    // A⁻¹ = [[a22, −a12], [−a21, a11]]/det; we need its second row.
    let det = a11 * a22 - a12 * a21;
    let psi_omega = [(c0 - 1.0) * -a21 / det, (c0 - 1.0) * a11 / det + c1];
    (phi.map(|x| x as f32), psi_omega.map(|x| x as f32))
}

impl Default for DcMotor {
    fn default() -> Self {
        Self::new()
    }
}

impl Plant<3, 1> for DcMotor {
    const NAME: &'static str = "dc-motor";
    const CODE: u8 = code::DC_MOTOR;
    const ACTION_LOW: [f32; 1] = [-1.0];
    const ACTION_HIGH: [f32; 1] = [1.0];
    /// No voltage: the motor coasts to a stop.
    const SAFE_ACTION: [f32; 1] = [0.0];
    const MAX_EPISODE_STEPS: u32 = 200;
    const DT: f32 = 0.01;
    type Params = DcMotorParams;
    type State = DcMotorState;

    fn params(&self) -> DcMotorParams {
        self.p
    }
    /// Recomputes the substep matrices (in f64, once per call).
    fn set_params(&mut self, params: DcMotorParams) {
        self.p = params;
        self.derive_constants();
    }
    fn state(&self) -> DcMotorState {
        DcMotorState {
            theta: self.theta,
            omega: self.omega,
            current: self.current,
            target: self.target,
            steps: self.steps,
        }
    }
    fn set_state(&mut self, s: DcMotorState) {
        (
            self.theta,
            self.omega,
            self.current,
            self.target,
            self.steps,
        ) = (s.theta, s.omega, s.current, s.target, s.steps);
    }
    fn observe(&self) -> [f32; 3] {
        self.obs()
    }

    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; 3] {
        use core::f32::consts::PI;
        self.target = uniform(rng, -PI, PI);
        self.theta = 0.0;
        self.omega = 0.0;
        self.current = 0.0;
        self.steps = 0;
        self.obs()
    }

    fn step(&mut self, action: &[f32; 1]) -> Transition<3> {
        let u = clip(action[0], -1.0, 1.0);
        self.integrate(self.p.supply_voltage * u);
        self.steps = self.steps.saturating_add(1);
        let obs = self.obs();
        let [e, w, _] = obs;
        Transition {
            obs,
            reward: -(e * e + SPEED_COST * w * w + VOLTAGE_COST * u * u),
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

    fn frictionless_coulomb() -> DcMotorParams {
        DcMotorParams {
            coulomb_friction: 0.0,
            ..DcMotorParams::default()
        }
    }

    /// Runs a constant action for `n` steps; returns the last transition.
    fn hold(m: &mut DcMotor, a: f32, n: usize) -> Transition<3> {
        let mut t = m.step(&[a]);
        for _ in 1..n {
            t = m.step(&[a]);
        }
        t
    }

    #[test]
    fn steady_state_speed_matches_analytic_without_dry_friction() {
        let p = frictionless_coulomb();
        for a in [1.0f32, 0.5, -0.25] {
            let mut m = DcMotor::with_params(p);
            hold(&mut m, a, 100); // 1 s ≈ 90 mechanical time constants
            let v = (p.supply_voltage * a) as f64;
            let (kt, ke, r, b) = (
                p.torque_constant as f64,
                p.back_emf_constant as f64,
                p.resistance as f64,
                p.viscous_friction as f64,
            );
            // ω_ss = K_t·V/(R·b + K_t·K_e); i_ss = (V − K_e·ω_ss)/R
            let w_ss = kt * v / (r * b + kt * ke);
            let i_ss = (v - ke * w_ss) / r;
            let [_, w_out, i] = m.output_state();
            let w = w_out as f64 * p.gear_ratio as f64;
            assert!((w - w_ss).abs() < 1e-4 * w_ss.abs(), "a={a}: {w} vs {w_ss}");
            assert!(
                (i as f64 - i_ss).abs() < 1e-3 * i_ss.abs() + 1e-6,
                "a={a}: {i} vs {i_ss}"
            );
        }
    }

    #[test]
    fn steady_state_speed_with_dry_friction_and_datasheet_no_load_point() {
        // With tanh(ω/ω_c) ≈ 1 at speed:
        // ω_ss = (K_t·V/R − τ_c)/(b + K_t·K_e/R).
        let p = DcMotorParams::default();
        let mut m = DcMotor::new();
        hold(&mut m, 1.0, 100);
        let (kt, ke, r, b, tc, v) = (
            p.torque_constant as f64,
            p.back_emf_constant as f64,
            p.resistance as f64,
            p.viscous_friction as f64,
            p.coulomb_friction as f64,
            p.supply_voltage as f64,
        );
        let w_ss = (kt * v / r - tc) / (b + kt * ke / r);
        let w = m.output_state()[1] as f64 * p.gear_ratio as f64;
        assert!((w - w_ss).abs() < 1e-4 * w_ss, "{w} vs {w_ss}");
        // Datasheet: n_0 = 9900 rpm, I_0 = 0.0105 A (within 1 %).
        let rpm = w * 60.0 / (2.0 * core::f64::consts::PI);
        assert!((rpm - 9900.0).abs() < 99.0, "{rpm} rpm");
        let i = m.output_state()[2] as f64;
        assert!((i - 0.0105).abs() < 0.0105 * 0.02, "{i} A");
        // Observation scales: ω̃ just below 1 at no load, ĩ = i·R/V_s.
        let o = m.obs();
        assert!(o[1] > 0.95 && o[1] < 1.0, "{o:?}");
        assert!((o[2] - (i * r / v) as f32).abs() < 1e-6);
    }

    /// The full 3-state ODE `[θ (output), ω (motor), i]`, advanced by one
    /// control period at voltage `v` with explicit Euler at 0.1 µs (226
    /// steps per electrical time constant), in f64.
    fn fine_reference_step(p: &DcMotorParams, x: &mut [f64; 3], v: f64) {
        let (r, l, kt, ke) = (
            p.resistance as f64,
            p.inductance as f64,
            p.torque_constant as f64,
            p.back_emf_constant as f64,
        );
        let n = p.gear_ratio as f64;
        let j = p.rotor_inertia as f64 + p.load_inertia as f64 / (n * n);
        let (b, tc, wc) = (
            p.viscous_friction as f64,
            p.coulomb_friction as f64,
            p.friction_speed as f64,
        );
        let dt = 1e-7;
        let [mut th, mut w, mut i] = *x;
        for _ in 0..100_000 {
            let di = (v - r * i - ke * w) / l;
            let dw = (kt * i - b * w - tc * (w / wc).tanh()) / j;
            th += dt * w / n;
            w += dt * dw;
            i += dt * di;
        }
        *x = [th, w, i];
    }

    #[test]
    fn transients_match_fine_reference() {
        // Full-voltage start-up, then a reversal at full speed (the hardest
        // case: ≈ 2× stall current), then coasting with shorted terminals.
        let p = DcMotorParams::default();
        let mut m = DcMotor::new();
        let mut x = [0.0f64; 3];
        let w_full = (p.supply_voltage / (p.back_emf_constant * p.gear_ratio)) as f64;
        let i_stall = (p.supply_voltage / p.resistance) as f64;
        let actions = [
            1.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.5,
        ];
        for (k, a) in actions.into_iter().enumerate() {
            m.step(&[a]);
            fine_reference_step(&p, &mut x, (p.supply_voltage * a) as f64);
            let [th, w, i] = [x[0], x[1] / p.gear_ratio as f64, x[2]];
            let [gth, gw, gi] = m.output_state();
            assert!(
                (gw as f64 - w).abs() < 2e-3 * w_full,
                "step {k}: ω {gw} vs {w}"
            );
            assert!(
                (gi as f64 - i).abs() < 2e-3 * i_stall,
                "step {k}: i {gi} vs {i}"
            );
            assert!(
                (gth as f64 - th).abs() < 2e-3 * th.abs().max(0.1),
                "step {k}: θ {gth} vs {th}"
            );
        }
    }

    #[test]
    fn energy_never_increases_when_unpowered() {
        // Spin up, then short the terminals (V = 0): ½·J·ω² + ½·L·i² must
        // decay monotonically to rest and never change sign of ω.
        let mut m = DcMotor::new();
        hold(&mut m, 1.0, 50);
        let energy = |m: &DcMotor| {
            0.5 * m.j_eq as f64 * (m.omega as f64).powi(2)
                + 0.5 * m.p.inductance as f64 * (m.current as f64).powi(2)
        };
        let mut e = energy(&m);
        for _ in 0..200 {
            m.step(&[0.0]);
            let e2 = energy(&m);
            assert!(e2 <= e, "{e2} > {e}");
            assert!(m.omega >= 0.0);
            e = e2;
        }
        assert!(m.omega.abs() < 1e-3, "{}", m.omega);
    }

    #[test]
    fn voltage_saturates() {
        let mut a = DcMotor::new();
        let mut b = DcMotor::new();
        for x in [5.0f32, f32::INFINITY, 1e30] {
            assert_eq!(a.step(&[x]), b.step(&[1.0]));
        }
        for x in [-5.0f32, f32::NEG_INFINITY] {
            assert_eq!(a.step(&[x]), b.step(&[-1.0]));
        }
        assert_eq!(a.step(&[f32::NAN]), b.step(&[0.0]));
        // The output speed is bounded by the no-load speed at V_s.
        let t = hold(&mut a, 100.0, 200);
        assert!(t.obs[1] < 1.0 && t.obs[1] > 0.95, "{:?}", t.obs);
    }

    #[test]
    fn reward_formula() {
        let mut m = DcMotor::new();
        // At rest on target with u = 0: zero cost.
        let t = m.step(&[0.0]);
        assert_eq!(t.reward, 0.0);
        assert_eq!(t.obs, [0.0, 0.0, 0.0]);
        // Otherwise −(e² + 0.1·ω̃² + 0.01·u²) on the post-step observation.
        m.target = 1.0;
        let t = m.step(&[0.5]);
        let [e, w, _] = t.obs;
        let want = -(e * e + 0.1 * w * w + 0.01 * 0.25);
        assert_eq!(t.reward, want);
        assert!(e < 1.0 && w > 0.0);
    }

    #[test]
    fn truncated_at_200_never_terminated() {
        let mut m = DcMotor::new();
        m.reset(&mut seeded(6));
        for k in 1..=200u32 {
            let t = m.step(&[libm::sinf(k as f32)]);
            assert!(!t.terminated);
            assert_eq!(t.truncated, k == 200, "step {k}");
        }
    }

    #[test]
    fn reset_is_deterministic_at_rest_with_target_in_range() {
        let (mut a, mut b) = (DcMotor::new(), DcMotor::default());
        let (mut ra, mut rb) = (seeded(12), seeded(12));
        hold(&mut a, 1.0, 10);
        for _ in 0..100 {
            let o = a.reset(&mut ra);
            assert_eq!(o, b.reset(&mut rb));
            assert_eq!(a.output_state(), [0.0, 0.0, 0.0]);
            assert!((-core::f32::consts::PI..core::f32::consts::PI).contains(&a.target()));
            assert_eq!(o, [a.target(), 0.0, 0.0]);
        }
    }

    /// `u = clip(4·e − ω̃)`: the "decent controller" of the module docs.
    fn pd(o: [f32; 3]) -> f32 {
        4.0 * o[0] - 1.0 * o[1]
    }

    #[test]
    fn pd_controller_settles_and_beats_doing_nothing() {
        let mut m = DcMotor::new();
        let mut rng = seeded(21);
        let (mut ret_pd, mut ret_zero) = (0.0f64, 0.0f64);
        let episodes = 50;
        for _ in 0..episodes {
            let mut o = m.reset(&mut rng);
            let mut z = m.clone();
            loop {
                let t = m.step(&[pd(o)]);
                ret_pd += t.reward as f64;
                ret_zero += z.step(&[0.0]).reward as f64;
                o = t.obs;
                if t.truncated {
                    break;
                }
            }
            assert!(o[0].abs() < 0.02, "final error {}", o[0]);
            assert!(o[1].abs() < 1e-3, "final speed {}", o[1]);
        }
        let (ret_pd, ret_zero) = (ret_pd / episodes as f64, ret_zero / episodes as f64);
        std::println!("mean return: PD {ret_pd:.2}, zero {ret_zero:.2}");
        assert!(ret_pd > -30.0, "{ret_pd}");
        assert!(ret_zero < 10.0 * ret_pd, "{ret_zero} vs {ret_pd}");
    }
}
