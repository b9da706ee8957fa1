//! `heater-pi`: a tuned PI controller on the heater task, the baseline a
//! trained policy is measured against.
//!
//! The controller sees what the policy sees on the board: the sensor
//! reading `T_s` and the setpoint `T_sp`, once a second.
//!
//! ```text
//! e = T_sp − T_s                                        (K)
//! u = clip(Kp·e + I, 0, 100)                            (% heater)
//! I ← clip(I + Ki·e·DT, 0, 100)   unless u saturates and e pushes it further
//! ```
//!
//! Anti-windup is conditional integration (clamping): the integral does
//! not move while the output is saturated in the direction the error
//! pushes, and it stays within the actuator range. `I` starts at 0 each
//! episode.
//!
//! Kp and Ki are tuned on `--tune-episodes` episodes drawn from
//! `--tune-seed` (not the evaluation seed): a log-spaced grid, then a
//! coordinate search with shrinking multiplicative steps, minimizing the
//! mean tracking cost (−return). The tuned controller is then evaluated on
//! `--episodes` episodes from `--seed` with exactly the convention of
//! `heater eval --seed S`: one `rng::seeded(S)`, one `plant.reset(&mut
//! rng)` per episode in episode order, a fresh `Heater::default()` each
//! time. With `--policy FILE`, the blob is evaluated on the same episodes
//! through the trainer library (`RegisteredPlant::eval_blob`, mean
//! action) and the ratio of tracking costs is printed. It also prints the
//! full-power bound: the part of the tracking cost no controller can
//! avoid (heating from ambient at 100 % until the sensor reaches the
//! setpoint; see [`full_power_bound`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use heater_plant::{Heater, OBS};
use tinyppo_runtime::plants::Plant;
use tinyppo_runtime::rng::seeded;
use tinyppo_trainer::registry::Registry;

#[derive(Parser, Debug)]
#[command(
    name = "heater-pi",
    about = "Tuned PI baseline on the heater task; compares a policy blob on the same episodes"
)]
struct Args {
    /// Evaluation episodes.
    #[arg(long, default_value_t = 100)]
    episodes: usize,
    /// Evaluation seed (the eval seed of `cargo xtask bench-train`).
    #[arg(long, default_value_t = 12345)]
    seed: u64,
    /// Tuning episodes (drawn from --tune-seed).
    #[arg(long, default_value_t = 100)]
    tune_episodes: usize,
    /// Seed of the tuning episodes; keep it apart from --seed.
    #[arg(long, default_value_t = 1)]
    tune_seed: u64,
    /// Use this Kp (%/K) instead of tuning (needs --ki).
    #[arg(long, requires = "ki")]
    kp: Option<f64>,
    /// Use this Ki (%/(K·s)) instead of tuning (needs --kp).
    #[arg(long, requires = "kp")]
    ki: Option<f64>,
    /// A policy blob (`policy.bin` of a run) to evaluate on the same episodes.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Instead of the summary, print episode K (0-based) of the evaluation
    /// as CSV: time, setpoint, sensor, heater, PI power (and the policy's,
    /// with --policy), each controller on its own copy of the episode.
    #[arg(long, value_name = "K")]
    trace: Option<usize>,
}

/// PI gains: `Kp` in %/K, `Ki` in %/(K·s).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gains {
    kp: f64,
    ki: f64,
}

/// The PI controller's state for one episode.
struct Pi {
    gains: Gains,
    integral: f64,
}

impl Pi {
    const LOW: f64 = 0.0;
    const HIGH: f64 = 100.0;

    fn new(gains: Gains) -> Self {
        Pi {
            gains,
            integral: 0.0,
        }
    }

    /// The heater power (%) for sensor reading `measured` and `setpoint` (°C).
    fn act(&mut self, measured: f32, setpoint: f32, dt: f64) -> f32 {
        let e = f64::from(setpoint) - f64::from(measured);
        let raw = self.gains.kp * e + self.integral;
        let pushes_further = (raw >= Self::HIGH && e > 0.0) || (raw <= Self::LOW && e < 0.0);
        if !pushes_further {
            self.integral = (self.integral + self.gains.ki * e * dt).clamp(Self::LOW, Self::HIGH);
        }
        (self.gains.kp * e + self.integral).clamp(Self::LOW, Self::HIGH) as f32
    }
}

/// Returns of `episodes` PI episodes from `seed`, with the reset
/// convention of `tinyppo eval`.
fn pi_returns(gains: Gains, episodes: usize, seed: u64) -> Vec<f64> {
    let dt = f64::from(<Heater as Plant<OBS, 1>>::DT);
    let mut rng = seeded(seed);
    (0..episodes)
        .map(|_| {
            let mut plant = Heater::default();
            plant.reset(&mut rng);
            let mut pi = Pi::new(gains);
            let mut ret = 0.0f64;
            loop {
                let u = pi.act(plant.measured(), plant.setpoint(), dt);
                let t = plant.step(&[u]);
                ret += f64::from(t.reward);
                if t.terminated || t.truncated {
                    return ret;
                }
            }
        })
        .collect()
}

/// The full-power bound: per episode, the cost full power accrues while
/// its sensor is still below the setpoint. No controller does better:
/// the plant is monotone in its input (a scalar energy balance driven by
/// `α·Q`, read through a first-order lag), so no input history puts the
/// sensor above the full-power one at any step, and every step's cost is
/// at least that step's full-power cost while full power is short of the
/// setpoint, and at least 0 afterwards. Same episodes as [`pi_returns`].
fn full_power_bound(episodes: usize, seed: u64) -> Vec<f64> {
    let mut rng = seeded(seed);
    (0..episodes)
        .map(|_| {
            let mut plant = Heater::default();
            plant.reset(&mut rng);
            let mut cost = 0.0f64;
            loop {
                let t = plant.step(&[100.0]);
                if plant.measured() >= plant.setpoint() || t.truncated {
                    return cost;
                }
                cost -= f64::from(t.reward);
            }
        })
        .collect()
}

/// One row per step of one controller's episode: `(sensor, heater, power)`
/// after the step (°C, °C, %).
type Trace = Vec<(f32, f32, f32)>;

/// Plays `plant` (just reset) to the end with `act(plant) -> power`.
fn trace_episode(mut plant: Heater, mut act: impl FnMut(&Heater) -> f32) -> Trace {
    let mut rows = Vec::new();
    loop {
        let u = act(&plant);
        let t = plant.step(&[u]);
        rows.push((plant.measured(), plant.heater_temperature(), u));
        if t.terminated || t.truncated {
            return rows;
        }
    }
}

/// Prints episode `k` of the evaluation (`seed`) as CSV, for the PI and,
/// with `blob`, for the policy's mean action.
fn print_trace(gains: Gains, k: usize, seed: u64, blob: Option<&[u8]>) -> Result<()> {
    let mut rng = seeded(seed);
    let mut plant = Heater::default();
    for _ in 0..=k {
        plant = Heater::default();
        plant.reset(&mut rng);
    }
    let dt = f64::from(<Heater as Plant<OBS, 1>>::DT);
    let mut pi = Pi::new(gains);
    let pi_rows = trace_episode(plant.clone(), |p| pi.act(p.measured(), p.setpoint(), dt));
    let policy_rows = match blob {
        None => None,
        Some(blob) => {
            let policy = tinyppo_runtime::Policy::<OBS, 1, 256>::from_bytes(blob)
                .map_err(|e| anyhow::anyhow!("loading the policy: {e}"))?;
            let safe = <Heater as Plant<OBS, 1>>::SAFE_ACTION;
            Some(trace_episode(plant.clone(), |p| {
                policy.mean_applied(&p.observe()).unwrap_or(safe)[0]
            }))
        }
    };
    let sp = plant.setpoint();
    use std::fmt::Write as _;
    let mut csv = String::from("t_s,setpoint_c,pi_sensor_c,pi_heater_c,pi_power_pct");
    if policy_rows.is_some() {
        csv.push_str(",policy_sensor_c,policy_heater_c,policy_power_pct");
    }
    csv.push('\n');
    for (i, (s, h, u)) in pi_rows.iter().enumerate() {
        let _ = write!(csv, "{},{sp},{s},{h},{u}", (i + 1) as f64 * dt);
        if let Some((s, h, u)) = policy_rows.as_ref().and_then(|r| r.get(i)) {
            let _ = write!(csv, ",{s},{h},{u}");
        }
        csv.push('\n');
    }
    emit(&csv)
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Mean tracking cost (−return) of `gains` on the tuning episodes.
fn tuning_cost(gains: Gains, episodes: usize, seed: u64) -> f64 {
    -mean(&pi_returns(gains, episodes, seed))
}

/// Grid over log-spaced Kp × Ki, then coordinate search from the best
/// point: try ×f and ÷f on each gain, keep any improvement, shrink f
/// when neither helps. Returns the gains and their tuning cost.
fn tune(episodes: usize, seed: u64) -> (Gains, f64) {
    let cost = |g: Gains| tuning_cost(g, episodes, seed);
    let logspace = |lo: f64, hi: f64, n: usize| -> Vec<f64> {
        (0..n)
            .map(|i| lo * (hi / lo).powf(i as f64 / (n - 1) as f64))
            .collect()
    };
    let mut best = (Gains { kp: 1.0, ki: 0.01 }, f64::INFINITY);
    for &kp in &logspace(0.5, 500.0, 16) {
        for &ki in &logspace(1e-3, 10.0, 16) {
            let g = Gains { kp, ki };
            let c = cost(g);
            if c < best.1 {
                best = (g, c);
            }
        }
    }
    let mut factor = 1.5f64;
    while factor > 1.001 {
        let mut improved = false;
        for (dkp, dki) in [
            (factor, 1.0),
            (1.0 / factor, 1.0),
            (1.0, factor),
            (1.0, 1.0 / factor),
        ] {
            let g = Gains {
                kp: best.0.kp * dkp,
                ki: best.0.ki * dki,
            };
            let c = cost(g);
            if c < best.1 {
                best = (g, c);
                improved = true;
            }
        }
        if !improved {
            factor = factor.sqrt();
        }
    }
    best
}

fn run(args: Args) -> Result<()> {
    if args.episodes == 0 || args.tune_episodes == 0 {
        bail!("--episodes and --tune-episodes: expected at least 1 episode");
    }
    let (gains, tune_cost, tuned) = match (args.kp, args.ki) {
        (Some(kp), Some(ki)) => {
            if !(kp.is_finite() && ki.is_finite() && kp >= 0.0 && ki >= 0.0) {
                bail!("--kp {kp} --ki {ki}: expected finite, non-negative gains");
            }
            let g = Gains { kp, ki };
            (g, tuning_cost(g, args.tune_episodes, args.tune_seed), false)
        }
        _ => {
            let (g, c) = tune(args.tune_episodes, args.tune_seed);
            (g, c, true)
        }
    };
    let blob = match &args.policy {
        None => None,
        Some(path) => Some((
            path.display().to_string(),
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )),
    };
    let registry = Registry::builtin().with::<Heater, OBS, 1>(include_str!("../../heater.toml"));
    let plant = registry.get(<Heater as Plant<OBS, 1>>::NAME)?;
    if let Some((origin, blob)) = &blob {
        plant.check_blob(blob, origin, false)?;
    }
    if let Some(k) = args.trace {
        if k >= args.episodes {
            bail!(
                "--trace {k}: expected an episode below --episodes {}",
                args.episodes
            );
        }
        return print_trace(gains, k, args.seed, blob.as_ref().map(|(_, b)| &b[..]));
    }
    let pi_return = mean(&pi_returns(gains, args.episodes, args.seed));
    let bound = mean(&full_power_bound(args.episodes, args.seed));

    let policy = match blob {
        None => None,
        Some((origin, blob)) => {
            let returns = plant
                .eval_blob(&blob, args.episodes, args.seed, false)
                .with_context(|| format!("evaluating {origin}"))?;
            Some((origin, mean(&returns)))
        }
    };
    // cost = −return; the ratio is the policy's cost over the PI's.
    let ratio = policy.as_ref().map(|(_, r)| -r / -pi_return);

    use std::fmt::Write as _;
    let mut text = String::new();
    if args.json {
        let mut out = serde_json::json!({
            "pi": {
                "kp": gains.kp,
                "ki": gains.ki,
                "tuned": tuned,
                "tune_episodes": args.tune_episodes,
                "tune_seed": args.tune_seed,
                "tune_mean_return": -tune_cost,
                "mean_return": pi_return,
            },
            "full_power_bound_cost": bound,
            "episodes": args.episodes,
            "seed": args.seed,
        });
        if let (Some((path, r)), Some(ratio)) = (&policy, ratio) {
            out["policy"] = serde_json::json!({ "path": path, "mean_return": r });
            out["cost_ratio"] = serde_json::json!(ratio);
            out["excess_cost_ratio"] = serde_json::json!((-r - bound) / (-pi_return - bound));
        }
        text = format!("{out}\n");
    } else {
        let how = if tuned {
            format!(
                "tuned on {} episodes from seed {}",
                args.tune_episodes, args.tune_seed
            )
        } else {
            "given".to_string()
        };
        let _ = writeln!(
            text,
            "PI: Kp = {:.3} %/K, Ki = {:.4} %/(K·s) ({how}; tuning mean return {:.3})",
            gains.kp, gains.ki, -tune_cost
        );
        let _ = writeln!(
            text,
            "PI mean return over {} episodes (seed {}): {:.3}",
            args.episodes, args.seed, pi_return
        );
        let _ = writeln!(
            text,
            "full-power bound on the tracking cost (same episodes): {bound:.3}"
        );
        if let (Some((path, r)), Some(ratio)) = (&policy, ratio) {
            let _ = writeln!(
                text,
                "policy {path} mean return (same episodes, mean action): {r:.3}"
            );
            let _ = writeln!(text, "tracking cost ratio policy/PI: {ratio:.4}");
            let _ = writeln!(
                text,
                "cost above the full-power bound: PI {:.3}, policy {:.3} (ratio {:.2})",
                -pi_return - bound,
                -r - bound,
                (-r - bound) / (-pi_return - bound)
            );
        }
    }
    emit(&text)
}

/// Writes `text` to stdout; a closed pipe (`heater-pi … | head`) is not
/// an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heater-pi: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_holds_while_saturated_in_the_direction_of_the_error() {
        let mut pi = Pi::new(Gains { kp: 50.0, ki: 1.0 });
        // 20 K below the setpoint: Kp·e = 1000 % saturates; no windup.
        for _ in 0..100 {
            assert_eq!(pi.act(30.0, 50.0, 1.0), 100.0);
        }
        assert_eq!(pi.integral, 0.0);
        // Unsaturated: the integral moves by Ki·e·DT.
        let u = pi.act(49.9, 50.0, 1.0);
        assert!((pi.integral - 0.1).abs() < 1e-4, "{}", pi.integral);
        assert!((f64::from(u) - (50.0 * 0.1 + 0.1)).abs() < 1e-3, "{u}");
        // Above the setpoint with the output at 0 %: the integral does not
        // go below the actuator range either.
        for _ in 0..100 {
            assert_eq!(pi.act(60.0, 50.0, 1.0), 0.0);
        }
        assert!(pi.integral >= 0.0 && pi.integral <= 0.1 + 1e-9);
    }

    #[test]
    fn bound_is_below_every_controller_tried() {
        let (episodes, seed) = (20, 7);
        let bound = full_power_bound(episodes, seed);
        let full = pi_returns(Gains { kp: 1e9, ki: 0.0 }, episodes, seed);
        for g in [
            Gains { kp: 60.0, ki: 5.0 },
            Gains { kp: 5.0, ki: 0.1 },
            Gains { kp: 1e9, ki: 0.0 }, // bang-bang
        ] {
            for (b, r) in bound.iter().zip(pi_returns(g, episodes, seed)) {
                assert!(*b <= -r + 1e-9, "{g:?}: bound {b} above cost {}", -r);
            }
        }
        assert!(bound.iter().zip(&full).all(|(b, r)| *b <= -r));
    }

    #[test]
    fn episodes_follow_the_eval_seed_convention() {
        // One stream, one reset per episode in order: episode k of a run
        // of n is episode k of a run of n + 1.
        let g = Gains { kp: 20.0, ki: 0.5 };
        let (a, b) = (pi_returns(g, 5, 3), pi_returns(g, 6, 3));
        assert_eq!(a[..], b[..5]);
        assert_ne!(pi_returns(g, 5, 4), a);
    }
}
