//! Temperature control of one heater of the TCLab kit.
//!
//! # Hardware
//!
//! The **TCLab** (Temperature Control Lab) is the Arduino shield used in
//! BYU's and other process-control courses: two transistor heaters, each
//! glued to a temperature sensor, on a small board powered over a barrel
//! jack; the heater power is set in percent (0–100 %) over USB and the
//! temperatures are read back once a second. APMonitor documents the kit
//! and its models:
//!
//! - the kit and its labs:
//!   <https://apmonitor.com/pdc/index.php/Main/ArduinoTemperatureControl>;
//! - the energy balance with convection and radiation ("TCLab Radiative
//!   Heat Transfer"): <https://apmonitor.com/pdc/index.php/Main/TCLabRadiative>,
//!   the convection-only version ("TCLab Convective Heat Transfer"):
//!   <https://apmonitor.com/pdc/index.php/Main/TCLabConvection>;
//! - the parameter table ("Arduino Dynamic Temperature Modeling"):
//!   <https://apmonitor.com/pdc/index.php/Main/ArduinoModeling>;
//! - the sensor lag of the two-state (heater, sensor) model ("TCLab E –
//!   Hybrid Model Estimation"): <https://apmonitor.com/do/index.php/Main/TCLabE>,
//!   and its form `τ·dT_C/dt = T_H − T_C` ("TCLab Higher Order Models"):
//!   <https://apmonitor.com/pdc/index.php/Main/TCLabHigherOrder>.
//!
//! This plant models heater 1 and its sensor only (heater 2 off; the
//! coupling between the two heaters is left out).
//!
//! # Model
//!
//! Heater temperature `T` (°C; in K inside the radiation term), sensor
//! temperature `T_s` (°C), heater power `Q` (%):
//!
//! ```text
//! m·c_p·dT/dt = U·A·(T_a − T) + ε·σ·A·(T_a⁴ − T⁴) + α·Q        (energy balance)
//! τ_s·dT_s/dt = T − T_s                                          (sensor lag)
//! Q = clip(a, 0, 100)                                            (NaN → 0: heater off)
//! ```
//!
//! | constant | symbol | default | source |
//! |---|---|---|---|
//! | mass of heater + sensor + fins | `m` | 0.004 kg (4 g) | ArduinoModeling table; TCLabConvection |
//! | heat capacity | `c_p` | 500 J/(kg·K) | ArduinoModeling ("steel has a heat capacity of 500"); TCLabConvection |
//! | surface area | `A` | 1.2·10⁻³ m² (12 cm²) | ArduinoModeling ("about 12 cm²"); TCLabConvection (`A = 0.0012`) |
//! | heat transfer coefficient | `U` | 10 W/(m²·K) | ArduinoModeling, TCLabConvection ("quiescent air"); APMonitor's linearization exercise of the same balance uses 5 |
//! | emissivity | `ε` | 0.9 | ArduinoModeling table |
//! | Stefan–Boltzmann constant | `σ` | 5.67·10⁻⁸ W/(m²·K⁴) | ArduinoModeling table (not a parameter) |
//! | heater factor | `α` | 0.01 W/% (1 W at 100 %) | ArduinoModeling, TCLabConvection |
//! | ambient (and surroundings) | `T_a` | 23 °C | ArduinoModeling (`T_0 = T_∞ = 296.15 K`), TCLabConvection |
//! | sensor time constant | `τ_s` | 5 s | TCLab E: the estimator's `tau` starts at 5 s, bounded to 4–8 s (¹) |
//!
//! (¹) The sensor's lag behind the heater is the one value APMonitor does
//! not state as a fixed number: TCLab E fits it to step data, starting
//! from 5 s within [4, 8] s (the page's revision of 2021-01-04 moved the
//! guess from 20 s in [15, 25] s to these). TCLabHigherOrder derives it
//! as `τ = m_s·c_p,s·Δx/(k·A_c)` (conduction through the epoxy). The
//! emulator in the `tclab` Python package splits the dynamics differently
//! (a fast heater node and a 140 s sensor lag); this plant follows
//! APMonitor's physical model.
//!
//! With the defaults, `m·c_p = 2 J/K` and, linearized at 23 °C, the
//! heater's time constant is `m·c_p/(U·A + 4·ε·σ·A·T_a³) = 109 s` (90 s at
//! 73 °C); the static gain falls from 0.54 K/% at ambient as radiation
//! grows. Full power holds 72.6 °C; 50 % holds 49.0 °C.
//!
//! # Integration
//!
//! Control period `DT = 1 s` (the kit's sample time), heater power held
//! for the period (the kit's PWM), split into [`SUBSTEPS`] = 4 substeps of
//! `h = 0.25 s`:
//!
//! - the heater by **explicit RK4**. Its linearized eigenvalue is
//!   `λ = −(U·A + 4·ε·σ·A·T³)/(m·c_p)`, −0.0092 s⁻¹ at 23 °C and −0.011 s⁻¹
//!   at 73 °C, so `h·|λ| < 0.003`, far inside RK4's real-axis stability
//!   limit of 2.78 and with a local error of order `(h·λ)⁵/120`;
//! - the sensor **exactly** for a heater temperature that moves linearly
//!   over the substep (first-order hold from `T₀` to `T₁`):
//!   `T_s' = T₁ − c·(T₁ − T₀) + d·(T_s − T₀)` with `d = e^{−h/τ_s}`,
//!   `c = (τ_s/h)·(1 − d)`. `0 < d < 1` for every `τ_s > 0`, so the lag is
//!   unconditionally stable, and a held heater temperature gives exactly
//!   the step response `1 − e^{−t/τ_s}` (`τ_s = 0` gives `T_s = T`).
//!
//! `T_a⁴ − T⁴` is evaluated as `(T_a − T)·(T_a + T)·(T_a² + T²)` (in K), so
//! it does not lose digits to cancellation near ambient. Against an f64
//! reference at `10⁻³ s` steps, a full-power heat-up and cool-down stays
//! within 10⁻³ K (test `matches_fine_f64_reference`).
//!
//! # Task
//!
//! Each episode draws a setpoint `T_sp ~ U[30, 60)` °C and starts at rest
//! at ambient (`T = T_s = T_a`). The policy sees only what the board
//! measures (the sensor, once a second) and the setpoint it was given:
//!
//! ```text
//! obs = [ e  = (T_sp − T_s)/10 K,                       tracking error
//!         s  = (T_sp − 45 °C)/15 K,                     setpoint, in [−1, 1)
//!         ṡ  = (T_s[k] − T_s[k−1])/(DT·0.25 K/s) ]      sensor rate over the last period
//! ```
//!
//! The rate is the difference of the last two sensor readings, which the
//! firmware computes the same way; it is what lets a memoryless policy
//! see the heater temperature hidden behind the sensor lag
//! (`T ≈ T_s + τ_s·dT_s/dt`). It is 0 after a reset. Full power from
//! ambient heats the sensor at up to ≈ 0.5 K/s (`ṡ ≈ 2`). (On the real
//! kit the sensor reading is quantized to 0.32 K and noisy, so a firmware
//! for hardware would filter this difference; the simulation has no
//! noise.)
//!
//! Reward, on the sensor after the step:
//!
//! ```text
//! r = −((T_s − T_sp)/10 K)² = −e²
//! ```
//!
//! No input penalty: heating costs nothing, only the tracking error does,
//! so the tracking cost of an episode is `−return`. Episodes last 300
//! steps (5 min, APMonitor's step-test length) and end by truncation only.
//! Full power from ambient brings the sensor to 60 °C in about 135 s, so
//! every setpoint can be reached and held for minutes. The largest
//! per-step cost is `3.7² = 13.7` (60 °C setpoint at ambient).
//!
//! The safe action is 0 % (heater off): the board cools to ambient. It is
//! the lower bound, not the middle of the action range.
//!
//! **No panics.** [`Plant::step`] never panics on any action: NaN is
//! treated as 0 %, ±inf and values beyond the bounds are clipped to
//! [0, 100] %, and with the default parameters every temperature stays in
//! [`T_a`, 73 °C], so observations and rewards are finite.

use rand_core::RngCore;
use serde::{Deserialize, Serialize};
use tinyppo_runtime::plants::{check_constants, clip, code, Plant, Transition};
use tinyppo_runtime::rng::uniform;

/// Observations per step: tracking error, setpoint, sensor rate.
pub const OBS: usize = 3;
/// Substeps per control period (`h = DT/SUBSTEPS = 0.25 s`).
pub const SUBSTEPS: u32 = 4;
/// 0 °C in K.
pub const KELVIN: f32 = 273.15;
/// Stefan–Boltzmann constant σ (W/(m²·K⁴)), as in APMonitor's model.
pub const STEFAN_BOLTZMANN: f32 = 5.67e-8;
/// Lowest setpoint an episode draws (°C).
pub const SETPOINT_LOW: f32 = 30.0;
/// Setpoints are drawn below this (°C).
pub const SETPOINT_HIGH: f32 = 60.0;
/// Temperature error that counts as 1 in the observation and the cost (K).
pub const ERROR_SCALE: f32 = 10.0;
/// Middle of the setpoint range (°C), 0 in the observation.
pub const SETPOINT_CENTER: f32 = 0.5 * (SETPOINT_LOW + SETPOINT_HIGH);
/// Half the setpoint range (K), 1 in the observation.
pub const SETPOINT_SCALE: f32 = 0.5 * (SETPOINT_HIGH - SETPOINT_LOW);
/// Sensor rate that counts as 1 in the observation (K/s).
pub const RATE_SCALE: f32 = 0.25;

/// Physical constants of one TCLab heater and its sensor (SI units,
/// temperatures in °C). Defaults: APMonitor's values (see the
/// [module docs](self) for the source of each).
///
/// All fields must be finite; `mass`, `heat_capacity` and `area` strictly
/// positive, the others non-negative. RK4 needs
/// `h·(U·A + 4·ε·σ·A·T³)/(m·c_p) < 2.78` (`h = 0.25 s`, `T` in K), true by
/// a factor of 900 for the defaults. Other values give wrong (possibly
/// non-finite) trajectories, never a panic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaterParams {
    /// Mass `m` of heater, sensor and fins (kg).
    pub mass: f32,
    /// Heat capacity `c_p` (J/(kg·K)).
    pub heat_capacity: f32,
    /// Surface area `A` (m²).
    pub area: f32,
    /// Convective heat transfer coefficient `U` (W/(m²·K)).
    pub heat_transfer: f32,
    /// Emissivity `ε` of the radiation term.
    pub emissivity: f32,
    /// Heater factor `α`: heater power per percent of input (W/%).
    pub heater_factor: f32,
    /// Ambient and surroundings temperature `T_a` (°C); episodes start here.
    pub ambient: f32,
    /// Sensor time constant `τ_s` (s).
    pub sensor_time_constant: f32,
}

impl HeaterParams {
    /// APMonitor's TCLab model (`m = 4 g`, `c_p = 500`, `A = 12 cm²`,
    /// `U = 10`, `ε = 0.9`, `α = 0.01 W/%`, `T_a = 23 °C`) with a 5 s
    /// sensor lag.
    pub const TCLAB: Self = Self {
        mass: 0.004,
        heat_capacity: 500.0,
        area: 1.2e-3,
        heat_transfer: 10.0,
        emissivity: 0.9,
        heater_factor: 0.01,
        ambient: 23.0,
        sensor_time_constant: 5.0,
    };
}

impl Default for HeaterParams {
    fn default() -> Self {
        Self::TCLAB
    }
}

/// The full state of a [`Heater`] (temperatures in °C).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeaterState {
    /// Heater temperature `T`.
    pub heater: f32,
    /// Sensor temperature `T_s` (what the board reads).
    pub sensor: f32,
    /// The sensor one period earlier (for the rate observation).
    pub previous_sensor: f32,
    /// This episode's setpoint `T_sp`.
    pub setpoint: f32,
    /// Steps since the last reset.
    pub steps: u32,
}

/// One TCLab heater with its sensor, tracking a setpoint. See the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Heater {
    p: HeaterParams,
    /// `1/(m·c_p)` (K/J).
    inv_capacity: f32,
    /// `U·A` (W/K).
    convection: f32,
    /// `ε·σ·A` (W/K⁴).
    radiation: f32,
    /// `T_a` in K.
    ambient_k: f32,
    /// `d = e^{−h/τ_s}` of the sensor update.
    sensor_decay: f32,
    /// `c = (τ_s/h)·(1 − d)` of the sensor update.
    sensor_ramp: f32,
    heater: f32,
    sensor: f32,
    previous_sensor: f32,
    setpoint: f32,
    steps: u32,
}

const _: () = check_constants::<Heater, OBS, 1>();

impl Heater {
    /// APMonitor's TCLab ([`HeaterParams::default`]) at ambient, setpoint
    /// at ambient. Call [`Plant::reset`] to draw a setpoint.
    pub fn new() -> Self {
        Self::with_params(HeaterParams::default())
    }

    /// A plant with custom constants, at its ambient temperature.
    pub fn with_params(p: HeaterParams) -> Self {
        let mut h = Self {
            p,
            inv_capacity: 0.0,
            convection: 0.0,
            radiation: 0.0,
            ambient_k: 0.0,
            sensor_decay: 0.0,
            sensor_ramp: 0.0,
            heater: p.ambient,
            sensor: p.ambient,
            previous_sensor: p.ambient,
            setpoint: p.ambient,
            steps: 0,
        };
        h.derive_constants();
        h
    }

    fn derive_constants(&mut self) {
        let p = self.p;
        let h = <Self as Plant<OBS, 1>>::DT / SUBSTEPS as f32;
        self.inv_capacity = 1.0 / (p.mass * p.heat_capacity);
        self.convection = p.heat_transfer * p.area;
        self.radiation = p.emissivity * STEFAN_BOLTZMANN * p.area;
        self.ambient_k = p.ambient + KELVIN;
        // τ_s = 0 gives d = e^{−∞} = 0 and c = 0: the sensor is the heater.
        let ratio = p.sensor_time_constant / h;
        self.sensor_decay = libm::expf(-h / p.sensor_time_constant);
        self.sensor_ramp = ratio * (1.0 - self.sensor_decay);
    }

    /// The sensor temperature `T_s` (°C): what the board measures.
    pub fn measured(&self) -> f32 {
        self.sensor
    }

    /// The heater temperature `T` (°C), hidden behind the sensor lag.
    pub fn heater_temperature(&self) -> f32 {
        self.heater
    }

    /// This episode's setpoint `T_sp` (°C).
    pub fn setpoint(&self) -> f32 {
        self.setpoint
    }

    /// `dT/dt` (K/s) at heater temperature `t` (°C) and power `q` (%).
    fn heating_rate(&self, t: f32, q: f32) -> f32 {
        let d = self.p.ambient - t; // T_a − T, the same in K and °C
        let tk = t + KELVIN;
        let ta = self.ambient_k;
        // T_a⁴ − T⁴ = (T_a − T)(T_a + T)(T_a² + T²): no cancellation.
        let rad = d * (ta + tk) * (ta * ta + tk * tk);
        self.inv_capacity * (self.convection * d + self.radiation * rad + self.p.heater_factor * q)
    }

    /// Integrates one control period at heater power `q` (%).
    fn integrate(&mut self, q: f32) {
        let h = <Self as Plant<OBS, 1>>::DT / SUBSTEPS as f32;
        let (d, c) = (self.sensor_decay, self.sensor_ramp);
        let (mut t, mut s) = (self.heater, self.sensor);
        for _ in 0..SUBSTEPS {
            let k1 = self.heating_rate(t, q);
            let k2 = self.heating_rate(t + 0.5 * h * k1, q);
            let k3 = self.heating_rate(t + 0.5 * h * k2, q);
            let k4 = self.heating_rate(t + h * k3, q);
            let t1 = t + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
            s = t1 - c * (t1 - t) + d * (s - t);
            t = t1;
        }
        (self.heater, self.sensor) = (t, s);
    }

    fn obs(&self) -> [f32; OBS] {
        let dt = <Self as Plant<OBS, 1>>::DT;
        [
            (self.setpoint - self.sensor) / ERROR_SCALE,
            (self.setpoint - SETPOINT_CENTER) / SETPOINT_SCALE,
            (self.sensor - self.previous_sensor) / (dt * RATE_SCALE),
        ]
    }
}

impl Default for Heater {
    fn default() -> Self {
        Self::new()
    }
}

impl Plant<OBS, 1> for Heater {
    const NAME: &'static str = "heater";
    /// The first code of the application range.
    const CODE: u8 = code::USER_FIRST;
    const ACTION_LOW: [f32; 1] = [0.0];
    const ACTION_HIGH: [f32; 1] = [100.0];
    /// Heater off: the board cools to ambient.
    const SAFE_ACTION: [f32; 1] = [0.0];
    const MAX_EPISODE_STEPS: u32 = 300;
    const DT: f32 = 1.0;
    type Params = HeaterParams;
    type State = HeaterState;

    fn params(&self) -> HeaterParams {
        self.p
    }
    /// Recomputes the derived constants (one `expf`).
    fn set_params(&mut self, params: HeaterParams) {
        self.p = params;
        self.derive_constants();
    }
    fn state(&self) -> HeaterState {
        HeaterState {
            heater: self.heater,
            sensor: self.sensor,
            previous_sensor: self.previous_sensor,
            setpoint: self.setpoint,
            steps: self.steps,
        }
    }
    fn set_state(&mut self, s: HeaterState) {
        (
            self.heater,
            self.sensor,
            self.previous_sensor,
            self.setpoint,
            self.steps,
        ) = (s.heater, s.sensor, s.previous_sensor, s.setpoint, s.steps);
    }
    fn observe(&self) -> [f32; OBS] {
        self.obs()
    }

    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; OBS] {
        self.setpoint = uniform(rng, SETPOINT_LOW, SETPOINT_HIGH);
        self.heater = self.p.ambient;
        self.sensor = self.p.ambient;
        self.previous_sensor = self.p.ambient;
        self.steps = 0;
        self.obs()
    }

    fn step(&mut self, action: &[f32; 1]) -> Transition<OBS> {
        let q = clip(action[0], 0.0, 100.0);
        self.previous_sensor = self.sensor;
        self.integrate(q);
        self.steps = self.steps.saturating_add(1);
        let obs = self.obs();
        let e = obs[0];
        Transition {
            obs,
            reward: -(e * e),
            terminated: false,
            truncated: self.steps >= <Self as Plant<OBS, 1>>::MAX_EPISODE_STEPS,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;
    use tinyppo_runtime::rng::seeded;

    /// Holds heater power `q` for `n` steps; returns the last transition.
    fn hold(h: &mut Heater, q: f32, n: usize) -> Transition<OBS> {
        let mut t = h.step(&[q]);
        for _ in 1..n {
            t = h.step(&[q]);
        }
        t
    }

    /// The right-hand side of the energy balance in f64 (K/s), `t` in °C.
    fn rate64(p: &HeaterParams, t: f64, q: f64) -> f64 {
        let (m, cp, a) = (p.mass as f64, p.heat_capacity as f64, p.area as f64);
        let (u, eps, alpha) = (
            p.heat_transfer as f64,
            p.emissivity as f64,
            p.heater_factor as f64,
        );
        let ta = p.ambient as f64;
        let (tk, tak) = (t + 273.15, ta + 273.15);
        (u * a * (ta - t) + eps * 5.67e-8 * a * (tak.powi(4) - tk.powi(4)) + alpha * q) / (m * cp)
    }

    /// The steady state of the energy balance: the root of the quartic
    /// `U·A·(T_a − T) + ε·σ·A·(T_a⁴ − T⁴) + α·Q = 0` in f64 (Newton from
    /// the convection-only solution; the function is strictly decreasing
    /// in `T`, so the root is unique).
    fn steady_state64(p: &HeaterParams, q: f64) -> f64 {
        let ta = p.ambient as f64;
        let ua = p.heat_transfer as f64 * p.area as f64;
        let mut t = ta + p.heater_factor as f64 * q / ua;
        for _ in 0..50 {
            let f = rate64(p, t, q);
            let dt = 1e-6;
            let df = (rate64(p, t + dt, q) - rate64(p, t - dt, q)) / (2.0 * dt);
            t -= f / df;
        }
        assert!(rate64(p, t, q).abs() < 1e-12, "Newton did not converge");
        t
    }

    #[test]
    fn steady_state_matches_energy_balance() {
        let p = HeaterParams::default();
        for q in [0.0f32, 20.0, 50.0, 100.0] {
            let mut h = Heater::new();
            hold(&mut h, q, 3000); // 3000 s ≈ 30 heater time constants
            let want = steady_state64(&p, q as f64);
            let (t, s) = (h.heater_temperature() as f64, h.measured() as f64);
            // f32 stalls short of the root: near it the RK4 increment
            // h·dT/dt falls below half an ulp of T (3.8e-6 K at 73 °C),
            // i.e. dT/dt < 1.5e-5 K/s, which is |T − T_ss| < 1.4e-3 K
            // for λ = −0.011 s⁻¹. Hence 2 mK, not f32's 1e-5.
            assert!((t - want).abs() < 2e-3, "Q={q}: heater {t} vs {want}");
            assert!((s - want).abs() < 2e-3, "Q={q}: sensor {s} vs {want}");
        }
        // The figures quoted in the module docs.
        assert!((steady_state64(&p, 100.0) - 72.6).abs() < 0.05);
        assert!((steady_state64(&p, 50.0) - 49.0).abs() < 0.05);
    }

    #[test]
    fn linearized_time_constant_is_the_documented_one() {
        // m·c_p/(U·A + 4·ε·σ·A·T³) at 23 °C and at full power's 72.6 °C.
        let p = HeaterParams::default();
        let tau = |t_c: f64| {
            let tk: f64 = t_c + 273.15;
            let g = 10.0 * 1.2e-3 + 4.0 * 0.9 * 5.67e-8 * 1.2e-3 * tk.powi(3);
            (p.mass * p.heat_capacity) as f64 / g
        };
        assert!((tau(23.0) - 109.0).abs() < 0.5, "{}", tau(23.0));
        assert!((tau(72.6) - 90.4).abs() < 0.5, "{}", tau(72.6));
    }

    #[test]
    fn sensor_step_response_is_first_order() {
        // No heat flows in or out of the heater (U = ε = α = 0), so it
        // holds its temperature: a 10 K step for the sensor, whose reading
        // must follow T_s(t) = T_a + 10·(1 − e^{−t/τ_s}).
        for tau in [5.0f32, 2.0, 13.0] {
            let p = HeaterParams {
                heat_transfer: 0.0,
                emissivity: 0.0,
                heater_factor: 0.0,
                sensor_time_constant: tau,
                ..HeaterParams::default()
            };
            let mut h = Heater::with_params(p);
            h.set_state(HeaterState {
                heater: p.ambient + 10.0,
                ..h.state()
            });
            for k in 1..=60u32 {
                h.step(&[100.0]);
                let want = p.ambient as f64 + 10.0 * (1.0 - (-(k as f64) / tau as f64).exp());
                let got = h.measured() as f64;
                assert!((got - want).abs() < 1e-4, "τ={tau} t={k}: {got} vs {want}");
                assert_eq!(h.heater_temperature(), p.ambient + 10.0);
            }
        }
    }

    #[test]
    fn zero_sensor_time_constant_reads_the_heater() {
        let p = HeaterParams {
            sensor_time_constant: 0.0,
            ..HeaterParams::default()
        };
        let mut h = Heater::with_params(p);
        for _ in 0..20 {
            h.step(&[80.0]);
            assert_eq!(h.measured(), h.heater_temperature());
        }
    }

    /// Heater and sensor advanced by one control period at power `q` with
    /// explicit Euler at 1 ms, in f64.
    fn fine_reference_step(p: &HeaterParams, x: &mut [f64; 2], q: f64) {
        let dt = 1e-3;
        let tau = p.sensor_time_constant as f64;
        let [mut t, mut s] = *x;
        for _ in 0..1000 {
            let dtdt = rate64(p, t, q);
            s += dt * (t - s) / tau;
            t += dt * dtdt;
        }
        *x = [t, s];
    }

    #[test]
    fn matches_fine_f64_reference() {
        // Full power for 2 min, off for 1 min, then a staircase.
        let p = HeaterParams::default();
        let mut h = Heater::new();
        let mut x = [p.ambient as f64; 2];
        let actions: Vec<f32> = (0..300)
            .map(|k| match k {
                0..120 => 100.0,
                120..180 => 0.0,
                _ => 20.0 * ((k / 30) % 4) as f32,
            })
            .collect();
        for (k, &q) in actions.iter().enumerate() {
            h.step(&[q]);
            fine_reference_step(&p, &mut x, q as f64);
            let (t, s) = (h.heater_temperature() as f64, h.measured() as f64);
            // Euler at 1 ms has an error of order 1e-4 K itself.
            assert!((t - x[0]).abs() < 1e-3, "step {k}: heater {t} vs {}", x[0]);
            assert!((s - x[1]).abs() < 1e-3, "step {k}: sensor {s} vs {}", x[1]);
        }
    }

    #[test]
    fn full_power_reaches_every_setpoint_in_the_first_half_of_an_episode() {
        let mut h = Heater::new();
        let mut reached = None;
        for k in 1..=150u32 {
            h.step(&[100.0]);
            if reached.is_none() && h.measured() >= SETPOINT_HIGH {
                reached = Some(k);
            }
        }
        let k = reached.expect("60 °C not reached in 150 s at full power");
        assert!((130..=140).contains(&k), "60 °C after {k} s");
    }

    #[test]
    fn observation_and_reward_formulas() {
        let mut h = Heater::new();
        h.set_state(HeaterState {
            heater: 40.0,
            sensor: 35.0,
            previous_sensor: 34.5,
            setpoint: 50.0,
            steps: 0,
        });
        // e = 15/10, s = 5/15, ṡ = 0.5/0.25.
        let o = h.observe();
        assert_eq!(o, [1.5, (50.0 - 45.0) / 15.0, 2.0]);
        let t = h.step(&[30.0]);
        let s = h.measured();
        assert_eq!(t.obs[0], (50.0 - s) / 10.0);
        assert_eq!(t.obs[2], (s - 35.0) / 0.25);
        assert_eq!(t.reward, -(t.obs[0] * t.obs[0]));
        assert!(s > 35.0, "the hotter heater warms the sensor: {s}");
        // On the setpoint, zero cost.
        let mut h = Heater::new();
        h.set_state(HeaterState {
            setpoint: 23.0,
            ..h.state()
        });
        let t = h.step(&[0.0]);
        assert_eq!((t.reward, t.obs), (0.0, [0.0, (23.0 - 45.0) / 15.0, 0.0]));
    }

    #[test]
    fn action_saturates_and_nan_is_off() {
        let (mut a, mut b) = (Heater::new(), Heater::new());
        for (x, y) in [
            (f32::NAN, 0.0),
            (-5.0, 0.0),
            (f32::NEG_INFINITY, 0.0),
            (f32::INFINITY, 100.0),
            (1e30, 100.0),
            (f32::MAX, 100.0),
            (250.0, 100.0),
            (-f32::MAX, 0.0),
            (42.5, 42.5),
        ] {
            assert_eq!(a.step(&[x]), b.step(&[y]), "{x} vs {y}");
        }
    }

    #[test]
    fn wild_actions_never_give_non_finite_values() {
        let mut rng = seeded(0xF022);
        let mut h = Heater::new();
        let mut obs = h.reset(&mut rng);
        for k in 0..20_000 {
            assert!(obs.iter().all(|o| o.is_finite()), "step {k}: {obs:?}");
            let a = match rng.next_u32() % 10 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => f32::MAX,
                4 => -f32::MAX,
                5 => f32::from_bits(rng.next_u32()), // any bit pattern
                _ => uniform(&mut rng, -50.0, 150.0),
            };
            let t = h.step(&[a]);
            assert!(
                t.reward.is_finite() && t.reward <= 0.0,
                "step {k}: {}",
                t.reward
            );
            let (th, ts) = (h.heater_temperature(), h.measured());
            assert!(
                (22.9..72.7).contains(&th) && (22.9..72.7).contains(&ts),
                "{th} {ts}"
            );
            obs = t.obs;
            if t.truncated {
                obs = h.reset(&mut rng);
            }
        }
    }

    #[test]
    fn state_round_trip_gives_identical_steps() {
        let mut rng = seeded(31);
        let mut p = Heater::new();
        let mut obs = p.reset(&mut rng);
        for k in 0..100 {
            assert_eq!(p.observe(), obs, "step {k}");
            let saved = p.state();
            let mut q = Heater::new();
            q.set_state(saved);
            assert_eq!(q.state(), saved);
            assert_eq!(q.observe(), obs);
            let a = [uniform(&mut rng, -10.0, 110.0)];
            let (tp, tq) = (p.step(&a), q.step(&a));
            assert_eq!(tp, tq, "step {k}");
            assert_eq!(p.state(), q.state());
            obs = tp.obs;
        }
    }

    #[test]
    fn params_take_effect() {
        let run = |params: Option<HeaterParams>| {
            let mut h = Heater::new();
            if let Some(p) = params {
                h.set_params(p);
            }
            h.reset(&mut seeded(5));
            hold(&mut h, 70.0, 50).obs
        };
        let default = run(None);
        assert_eq!(run(Some(HeaterParams::default())), default);
        for other in [
            HeaterParams {
                mass: 0.005,
                ..Default::default()
            },
            HeaterParams {
                heat_transfer: 5.0,
                ..Default::default()
            },
            HeaterParams {
                emissivity: 0.5,
                ..Default::default()
            },
            HeaterParams {
                heater_factor: 0.0075,
                ..Default::default()
            },
            HeaterParams {
                sensor_time_constant: 20.0,
                ..Default::default()
            },
            HeaterParams {
                ambient: 20.0,
                ..Default::default()
            },
        ] {
            assert_ne!(run(Some(other)), default, "{other:?}");
            let mut h = Heater::new();
            h.set_params(other);
            assert_eq!(h.params(), other);
        }
        // The ambient is where an episode starts.
        let mut h = Heater::with_params(HeaterParams {
            ambient: 18.0,
            ..Default::default()
        });
        h.reset(&mut seeded(1));
        assert_eq!((h.measured(), h.heater_temperature()), (18.0, 18.0));
    }

    #[test]
    fn reset_is_deterministic_at_ambient_with_setpoint_in_range() {
        let (mut a, mut b) = (Heater::new(), Heater::default());
        let (mut ra, mut rb) = (seeded(12), seeded(12));
        hold(&mut a, 100.0, 10);
        let mut lo = f32::INFINITY;
        let mut hi = f32::NEG_INFINITY;
        for _ in 0..1000 {
            let o = a.reset(&mut ra);
            assert_eq!(o, b.reset(&mut rb));
            let sp = a.setpoint();
            assert!((SETPOINT_LOW..SETPOINT_HIGH).contains(&sp), "{sp}");
            (lo, hi) = (lo.min(sp), hi.max(sp));
            assert_eq!((a.measured(), a.heater_temperature()), (23.0, 23.0));
            assert_eq!(o, [(sp - 23.0) / 10.0, (sp - 45.0) / 15.0, 0.0]);
            assert_eq!(a.state().steps, 0);
        }
        assert!(lo < 30.1 && hi > 59.9, "{lo} {hi}");
    }

    #[test]
    fn truncated_after_300_steps_never_terminated() {
        let mut h = Heater::new();
        h.reset(&mut seeded(6));
        for k in 1..=300u32 {
            let t = h.step(&[libm::fabsf(libm::sinf(k as f32)) * 100.0]);
            assert!(!t.terminated);
            assert_eq!(t.truncated, k == 300, "step {k}");
        }
    }

    #[test]
    fn params_read_by_name_with_defaults_and_refuse_unknown_fields() {
        // Field names are what `config.toml` and checkpoints use: a
        // missing field takes its default, an unknown one is an error.
        use serde::de::value::{Error, MapDeserializer};
        let read = |entries: &[(&'static str, f32)]| {
            HeaterParams::deserialize(MapDeserializer::<_, Error>::new(entries.iter().copied()))
        };
        let p = read(&[("ambient", 20.0), ("sensor_time_constant", 8.0)]).unwrap();
        let want = HeaterParams {
            ambient: 20.0,
            sensor_time_constant: 8.0,
            ..Default::default()
        };
        assert_eq!(p, want);
        assert!(read(&[("ambient_temperature", 20.0)]).is_err());
    }
}
