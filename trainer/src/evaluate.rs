//! Evaluation of an exported policy blob **through the runtime crate** (the
//! code the device runs): `Policy::<OBS, ACT, 256>` on a `no_std` plant.
//! Commands reach it through
//! [`RegisteredPlant::eval_blob`](crate::registry::RegisteredPlant::eval_blob).

use anyhow::{Context, Result};
use tinyppo_runtime::history::ActionHistory;
use tinyppo_runtime::plants::Plant;
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::safety::{Guard, Verdict};
use tinyppo_runtime::Policy;

/// Returns of `episodes` episodes of `blob` on plants made by `make` (one
/// per episode, reset in episode order); `stochastic` samples actions,
/// otherwise the mean action is applied. Same seed, same returns.
pub fn eval_on<P: Plant<O, A> + Send, const O: usize, const A: usize>(
    blob: &[u8],
    episodes: usize,
    seed: u64,
    stochastic: bool,
    make: impl Fn() -> P,
) -> Result<Vec<f64>> {
    let policy = load_for::<P, O, A>(blob)?;
    let mut rng = seeded(seed);
    let reset = |rng: &mut _| {
        let mut plant = make();
        let obs = plant.reset(rng);
        (plant, obs)
    };
    if stochastic {
        return Ok((0..episodes)
            .map(|_| {
                let (plant, obs) = reset(&mut rng);
                episode(&policy, plant, obs, |o, h| {
                    policy.act_with(o, h, &mut rng).map(|s| s.applied)
                })
            })
            .collect());
    }
    // With the mean action the random stream only draws the initial
    // states: reset the plants in episode order, then play the episodes
    // on two threads (the same returns as one after the other; a 100-
    // episode evaluation ends every `tinyppo train`).
    let starts: Vec<(P, [f32; O])> = (0..episodes).map(|_| reset(&mut rng)).collect();
    let play = |(plant, obs)| episode(&policy, plant, obs, |o, h| policy.mean_applied_with(o, h));
    let mut starts = starts.into_iter();
    let first: Vec<_> = starts.by_ref().take(episodes / 2).collect();
    Ok(std::thread::scope(|s| {
        let rest = s.spawn(|| starts.map(play).collect::<Vec<f64>>());
        let mut returns: Vec<f64> = first.into_iter().map(play).collect();
        returns.extend(rest.join().expect("evaluation thread panicked"));
        returns
    }))
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

/// The return of one episode from a reset plant; `act` chooses the
/// actions from the observation and the actions applied so far (the
/// policy's safe action where it fails, and before the first tick), as
/// the device's control loop does.
fn episode<P: Plant<O, A>, E, const O: usize, const A: usize>(
    policy: &Policy<'_, O, A, 256>,
    mut plant: P,
    mut obs: [f32; O],
    mut act: impl FnMut(&[f32; O], &ActionHistory<A>) -> Result<[f32; A], E>,
) -> f64 {
    let mut ret = 0.0f64;
    let safe = policy.safe_action();
    let mut hist = ActionHistory::new(safe);
    // The blob's safety layer, as the device's control loop runs it.
    let mut guard = Guard::new(policy.limits(), safe);
    loop {
        let finite = obs.iter().all(|v| v.is_finite());
        let clear = finite && guard.check(&obs) == Verdict::Clear;
        let a = match clear.then(|| act(&obs, &hist)) {
            Some(Ok(a)) => {
                hist.push(a);
                guard.limit(&a)
            }
            _ => {
                hist.push(safe);
                safe
            }
        };
        guard.applied(&a);
        let tr = plant.step(&a);
        ret += tr.reward as f64;
        obs = tr.obs;
        if tr.terminated || tr.truncated {
            return ret;
        }
    }
}
