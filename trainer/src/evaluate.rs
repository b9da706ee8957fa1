//! Evaluation of an exported policy blob **through the runtime crate** (the
//! code the device runs): `Policy::<OBS, ACT, 256>` on a `no_std` plant.

use anyhow::{bail, Context, Result};
use tinyppo_runtime::plants::{self, Plant};
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::Policy;

/// Returns of `episodes` episodes; `stochastic` samples actions, otherwise
/// the mean action is applied. Same seed, same returns.
pub fn eval_blob(
    blob: &[u8],
    env: &str,
    episodes: usize,
    seed: u64,
    stochastic: bool,
) -> Result<Vec<f64>> {
    match env {
        "pendulum" => run::<plants::pendulum::Pendulum, 3, 1>(blob, episodes, seed, stochastic),
        "mountain-car" => {
            run::<plants::mountain_car::MountainCar, 2, 1>(blob, episodes, seed, stochastic)
        }
        "cartpole" => run::<plants::cartpole::CartPole, 4, 1>(blob, episodes, seed, stochastic),
        "dc-motor" => run::<plants::dc_motor::DcMotor, 3, 1>(blob, episodes, seed, stochastic),
        other => bail!(
            "unknown env {other:?}: expected one of {}",
            crate::env::ENV_NAMES.join(", ")
        ),
    }
}

/// Loads a blob as a policy for plant `P`, with an error naming the plant
/// and its dimensions when they do not match.
pub fn load_for<P: Plant<O, A>, const O: usize, const A: usize>(
    blob: &[u8],
) -> Result<Policy<'_, O, A, 256>> {
    Policy::<O, A, 256>::from_bytes(blob)
        .map_err(anyhow::Error::msg)
        .with_context(|| {
            format!(
                "the policy does not fit plant {} ({O} observations, {A} actions)",
                P::NAME
            )
        })
}

fn run<P: Plant<O, A> + Default, const O: usize, const A: usize>(
    blob: &[u8],
    episodes: usize,
    seed: u64,
    stochastic: bool,
) -> Result<Vec<f64>> {
    let policy = load_for::<P, O, A>(blob)?;
    let mut rng = seeded(seed);
    let mut returns = Vec::with_capacity(episodes);
    for _ in 0..episodes {
        let mut plant = P::default();
        let mut obs = plant.reset(&mut rng);
        let mut ret = 0.0f64;
        loop {
            let a = if stochastic {
                policy.act(&obs, &mut rng).map(|s| s.applied)
            } else {
                policy.mean_applied(&obs)
            }
            .unwrap_or_else(|_| policy.safe_action());
            let tr = plant.step(&a);
            ret += tr.reward as f64;
            obs = tr.obs;
            if tr.terminated || tr.truncated {
                break;
            }
        }
        returns.push(ret);
    }
    Ok(returns)
}

/// Mean and (population) standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt();
    (m, s)
}
