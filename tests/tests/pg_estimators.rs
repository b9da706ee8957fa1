//! The policy-gradient estimators of `trainer/src/pg.rs` (issue 6), against
//! their definitions (notes: policy-gradient.md), closed forms and Monte
//! Carlo.
//!
//! - Advantage identities on time-major rollouts (several envs,
//!   terminations and truncations mid-rollout): `Â_1 = δ_t = GAE(λ = 0)`;
//!   `GAE(λ = 1)` = discounted return − V = `Â_n` for `n ≥ T`;
//!   `Â_n = Σ_{k<m} γ^k δ_{t+k}` (telescoping) = the definition
//!   `Σ_{k<m} γ^k r_{t+k} + γ^m V(s_{t+m}) − V(s_t)`.
//! - Returns, reward-to-go, value targets and every per-step weight ψ on a
//!   hand-built batch of episodes of different lengths, against plain loops.
//! - `logp_grad` against central finite differences.
//! - Baselines, by Monte Carlo within `4σ/√K` (σ the sample standard
//!   deviation over K independent batches): a constant baseline leaves the
//!   gradient unbiased (pendulum and a Gaussian bandit); an
//!   action-dependent one does not (so the check can fail); the batch-mean
//!   baseline scales the expected gradient by `1 − 1/N` (see below).
//! - The optimal baseline on a Gaussian bandit against closed forms.
//! - `collect_episodes` against what the plants recorded.
//! - `policy_gradient` against the hand formulas.
//!
//! **The batch-mean baseline is biased by a factor `1 − 1/N`.** With
//! `b = (1/N) Σ_j R_j` (the notes' "b = (1/N) Σ r(τ)") the baseline of
//! episode i contains its own return, so
//! `E[g_i b] = (1/N) E[g_i R_i] = ∇J/N` (the terms j ≠ i vanish: `g_i` and
//! `R_j` are independent and `E[g_i] = 0`), hence
//! `E[ĝ_mean] = (1 − 1/N) ∇J`. The tests check that identity (and that a
//! leave-one-out mean is unbiased) rather than "mean baseline − no
//! baseline ≈ 0", which is false.

use std::sync::{Arc, Mutex};

use ndarray::ArrayView2;
use tinyppo_runtime::rng::DefaultRng;
use tinyppo_trainer::env::Env;
use tinyppo_trainer::gae::gae;
use tinyppo_trainer::mlp::{Act, Cache};
use tinyppo_trainer::model::{gaussian_log_prob, ActorCritic};
use tinyppo_trainer::normalize::RunningMeanStd;
use tinyppo_trainer::pg::{
    collect_episodes, discounted_return, episode_score_grads, logp_grad, nstep_advantages,
    optimal_baseline, policy_gradient, reward_to_go, value_targets, weights, Baseline, BatchValues,
    EpisodeBatch, Estimator, ObsNorm, PgOptions, ReturnKind, ValueTarget,
};

use crate::trainer_util::{
    check_grad, integrate, mean_se, normal, plant, random_params, rng, uniform, Rollout,
};

/// `|got − want| ≤ rtol·(1 + |want|)` elementwise.
fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= rtol * (1.0 + w.abs()),
            "{what}: [{i}] got {g}, want {w}"
        );
    }
}

/// `|got − want| ≤ rtol·max_k |want_k|` elementwise (gradients, whose
/// small components carry the round-off of the large ones).
fn assert_close_scaled(what: &str, got: &[f32], want: &[f64], rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-6f64, |m, w| m.max(w.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= rtol * scale,
        "{what}: worst difference {worst:.3e} > {rtol:e} × {scale:.3e}\n got {got:?}\nwant {want:?}"
    );
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

// ---------------------------------------------------------------------------
// Advantage identities on time-major rollouts.

const T: usize = 24;
const ENVS: usize = 5;

impl Rollout {
    fn done(&self, i: usize) -> bool {
        self.terminated[i] || self.truncated[i]
    }

    /// Number of steps from t through the step that ends the episode or
    /// the rollout, at most `cap`.
    fn horizon(&self, t: usize, e: usize, cap: usize) -> usize {
        let mut m = 0;
        loop {
            let i = (t + m) * ENVS + e;
            m += 1;
            if self.done(i) || t + m == T || m == cap {
                return m;
            }
        }
    }

    /// `δ_i = r_i + γ (1 − term_i) V(s'_i) − V(s_i)`.
    fn delta(&self, i: usize, gamma: f64) -> f64 {
        let boot = if self.terminated[i] {
            0.0
        } else {
            self.next_values[i] as f64
        };
        self.rewards[i] as f64 + gamma * boot - self.values[i] as f64
    }
}

/// A `T × ENVS` rollout with random terminations and truncations
/// (probability 0.07 each per step). Consistent like the trainer's buffer:
/// a step that does not end its episode has `next_values[t] = values[t+1]`
/// except at `t = T − 1`, which bootstraps from a value of its own; a
/// terminated step's `next_values` is garbage (50…100) that must be
/// ignored.
fn rollout(seed: u64) -> Rollout {
    let mut r = rng(seed);
    let b = T * ENVS;
    let rewards: Vec<f32> = (0..b).map(|_| normal(&mut r)).collect();
    let values: Vec<f32> = (0..b).map(|_| 2.0 * normal(&mut r)).collect();
    let (mut terminated, mut truncated) = (vec![false; b], vec![false; b]);
    for i in 0..b {
        let u = uniform(&mut r, 0.0, 1.0);
        terminated[i] = u < 0.07;
        truncated[i] = (0.07..0.14).contains(&u);
    }
    let mut next_values = vec![0.0; b];
    for t in 0..T {
        for e in 0..ENVS {
            let i = t * ENVS + e;
            next_values[i] = if terminated[i] {
                uniform(&mut r, 50.0, 100.0)
            } else if truncated[i] || t + 1 == T {
                3.0 * normal(&mut r)
            } else {
                values[i + ENVS]
            };
        }
    }
    let ro = Rollout {
        rewards,
        values,
        next_values,
        terminated,
        truncated,
        num_envs: ENVS,
    };
    // Coverage: ends of both kinds before the last step, and windows of 5
    // steps inside an episode (the n-step bootstrap from V(s_{t+5})).
    let mid = |f: &[bool]| (0..(T - 1) * ENVS).filter(|&i| f[i]).count();
    let long = (0..T - 5)
        .flat_map(|t| (0..ENVS).map(move |e| (t, e)))
        .filter(|&(t, e)| ro.horizon(t, e, usize::MAX) > 5)
        .count();
    assert!(
        mid(&ro.terminated) >= 2 && mid(&ro.truncated) >= 2 && long >= 10,
        "seed {seed}: terminations {}, truncations {}, 5-step windows {long}",
        mid(&ro.terminated),
        mid(&ro.truncated)
    );
    ro
}

/// The discounted return from each step until its episode or the rollout
/// ends (bootstrapped from `next_values` unless terminated), minus `V`, by
/// a forward loop.
fn return_minus_v(ro: &Rollout, gamma: f64) -> Vec<f64> {
    let mut out = vec![0.0; T * ENVS];
    for e in 0..ENVS {
        for t in 0..T {
            let (mut g, mut disc, mut j) = (0.0, 1.0, t);
            loop {
                let i = j * ENVS + e;
                g += disc * ro.rewards[i] as f64;
                disc *= gamma;
                if ro.terminated[i] {
                    break;
                }
                if ro.truncated[i] || j + 1 == T {
                    g += disc * ro.next_values[i] as f64;
                    break;
                }
                j += 1;
            }
            out[t * ENVS + e] = g - ro.values[t * ENVS + e] as f64;
        }
    }
    out
}

/// `Σ_{k<m} γ^k δ_{t+k}`, `m` the steps until the episode or the rollout
/// ends, at most n.
fn telescoped(ro: &Rollout, gamma: f64, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; T * ENVS];
    for e in 0..ENVS {
        for t in 0..T {
            let m = ro.horizon(t, e, n);
            out[t * ENVS + e] = (0..m)
                .map(|k| gamma.powi(k as i32) * ro.delta((t + k) * ENVS + e, gamma))
                .sum();
        }
    }
    out
}

/// The definition, `Σ_{k<m} γ^k r_{t+k} + γ^m V_end − V(s_t)`:
/// `V_end = V(s_{t+n})` (from `values`) when the window ends inside the
/// episode and the rollout, 0 after a termination, the bootstrap value
/// `next_values` at a truncation or the rollout's end.
fn nstep_direct(ro: &Rollout, gamma: f64, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; T * ENVS];
    for e in 0..ENVS {
        for t in 0..T {
            let m = ro.horizon(t, e, n);
            let rewards: f64 = (0..m)
                .map(|k| gamma.powi(k as i32) * ro.rewards[(t + k) * ENVS + e] as f64)
                .sum();
            let last = (t + m - 1) * ENVS + e;
            let v_end = if ro.terminated[last] {
                0.0
            } else if ro.truncated[last] || t + m == T {
                ro.next_values[last] as f64
            } else {
                ro.values[(t + m) * ENVS + e] as f64
            };
            out[t * ENVS + e] =
                rewards + gamma.powi(m as i32) * v_end - ro.values[t * ENVS + e] as f64;
        }
    }
    out
}

fn nstep(ro: &Rollout, gamma: f32, n: usize) -> Vec<f32> {
    let mut adv = vec![f32::NAN; T * ENVS];
    nstep_advantages(&ro.input(), gamma, n, &mut adv);
    adv
}

fn gae_of(ro: &Rollout, gamma: f32, lambda: f32) -> Vec<f32> {
    let mut adv = vec![f32::NAN; T * ENVS];
    gae(&ro.input(), gamma, lambda, &mut adv);
    adv
}

#[test]
fn pg_one_step_advantage_and_gae_lambda_zero_are_the_td_error() {
    for (seed, gamma) in [(1, 0.9f32), (2, 1.0)] {
        let ro = rollout(seed);
        let delta: Vec<f64> = (0..T * ENVS).map(|i| ro.delta(i, gamma as f64)).collect();
        assert_close(
            &format!("Â_1, γ={gamma}"),
            &nstep(&ro, gamma, 1),
            &delta,
            1e-5,
        );
        assert_close(
            &format!("GAE λ=0, γ={gamma}"),
            &gae_of(&ro, gamma, 0.0),
            &delta,
            1e-5,
        );
    }
}

#[test]
fn pg_gae_lambda_one_and_long_nstep_are_the_return_minus_v() {
    for (seed, gamma) in [(3, 0.95f32), (4, 1.0)] {
        let ro = rollout(seed);
        let want = return_minus_v(&ro, gamma as f64);
        let gae1 = gae_of(&ro, gamma, 1.0);
        assert_close(&format!("GAE λ=1, γ={gamma}"), &gae1, &want, 1e-5);
        for n in [T, T + 7] {
            let a = nstep(&ro, gamma, n);
            assert_close(&format!("Â_{n}, γ={gamma}"), &a, &want, 1e-5);
            assert_close(&format!("Â_{n} vs GAE λ=1"), &a, &f64s(&gae1), 1e-5);
        }
    }
}

#[test]
fn pg_nstep_advantages_telescope_to_discounted_td_errors() {
    for (seed, gamma) in [(5, 0.9f32), (6, 1.0)] {
        let ro = rollout(seed);
        for n in [1, 2, 3, 5, T] {
            let a = nstep(&ro, gamma, n);
            let what = format!("Â_{n}, γ={gamma}");
            assert_close(
                &format!("{what} vs Σ γ^k δ"),
                &a,
                &telescoped(&ro, gamma as f64, n),
                1e-5,
            );
            assert_close(
                &format!("{what} vs definition"),
                &a,
                &nstep_direct(&ro, gamma as f64, n),
                1e-5,
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Returns, reward-to-go, value targets and weights on a hand-built batch.

const LENS: [usize; 5] = [4, 1, 7, 3, 6];
const TERM: [bool; 5] = [true, false, false, true, false];

/// Five episodes of lengths [`LENS`] (ended by [`TERM`]), assembled with
/// `EpisodeBatch::extend`, and values (final value 0 where terminated, as
/// `BatchValues` promises).
fn hand_batch(seed: u64) -> (EpisodeBatch, BatchValues) {
    let mut r = rng(seed);
    let mut batch = EpisodeBatch::new(2, 1);
    let mut values = BatchValues::default();
    for (&len, &term) in LENS.iter().zip(&TERM) {
        let mut ep = EpisodeBatch::new(2, 1);
        for _ in 0..len {
            ep.obs.extend([normal(&mut r), normal(&mut r)]);
            ep.actions.push(normal(&mut r));
            ep.rewards.push(normal(&mut r) + 0.5);
            values.values.push(2.0 * normal(&mut r));
        }
        ep.bounds.push(len);
        ep.terminated.push(term);
        ep.final_obs.extend([normal(&mut r), normal(&mut r)]);
        values
            .final_values
            .push(if term { 0.0 } else { 3.0 * normal(&mut r) });
        batch.extend(&ep);
    }
    assert_eq!(batch.bounds, [0, 4, 5, 12, 15, 21]);
    assert_eq!(batch.episodes(), 5);
    assert_eq!((batch.obs.len(), batch.final_obs.len()), (42, 10));
    (batch, values)
}

/// `Σ_{t'≥t} γ^{t'−t} r_t'` by a double loop.
fn rtg64(rew: &[f32], gamma: f64) -> Vec<f64> {
    (0..rew.len())
        .map(|t| {
            (t..rew.len())
                .map(|k| gamma.powi((k - t) as i32) * rew[k] as f64)
                .sum()
        })
        .collect()
}

/// Reward-to-go of every step of the batch.
fn batch_rtg64(batch: &EpisodeBatch, gamma: f64) -> Vec<f64> {
    (0..batch.episodes())
        .flat_map(|i| rtg64(&batch.rewards[batch.range(i)], gamma))
        .collect()
}

/// `V(s'_t)`: the next step's value inside the episode; at its end 0 if
/// terminated, else the final value.
fn next_value64(batch: &EpisodeBatch, v: &BatchValues, i: usize, t: usize) -> f64 {
    let end = batch.range(i).end;
    if t + 1 < end {
        v.values[t + 1] as f64
    } else if batch.terminated[i] {
        0.0
    } else {
        v.final_values[i] as f64
    }
}

#[test]
fn pg_returns_reward_to_go_and_value_targets_match_plain_loops() {
    let (batch, v) = hand_batch(11);
    for gamma in [0.9f32, 1.0] {
        let g = gamma as f64;
        let rets = batch.returns(gamma);
        for (i, &ret) in rets.iter().enumerate() {
            let rew = &batch.rewards[batch.range(i)];
            let want: f64 = rew
                .iter()
                .enumerate()
                .map(|(k, &x)| g.powi(k as i32) * x as f64)
                .sum();
            assert_close(
                "discounted_return",
                &[discounted_return(rew, gamma)],
                &[want],
                1e-6,
            );
            assert_close("EpisodeBatch::returns", &[ret], &[want], 1e-6);
            let mut out = vec![f32::NAN; rew.len()];
            reward_to_go(rew, gamma, &mut out);
            let rtg = rtg64(rew, g);
            assert_close("reward_to_go", &out, &rtg, 1e-6);
            assert!((rtg[0] - want).abs() < 1e-12, "rtg at t = 0 is the return");
        }
        let undisc = batch.undiscounted_returns();
        for (i, &u) in undisc.iter().enumerate() {
            let s: f64 = batch.rewards[batch.range(i)]
                .iter()
                .map(|&r| r as f64)
                .sum();
            assert!((u - s).abs() < 1e-12);
        }

        let mc = value_targets(&batch, ValueTarget::Mc, None, gamma);
        assert_close("Mc targets", &mc, &batch_rtg64(&batch, g), 1e-6);
        let boot = value_targets(&batch, ValueTarget::Bootstrap, Some(&v), gamma);
        let want: Vec<f64> = (0..batch.episodes())
            .flat_map(|i| batch.range(i).map(move |t| (i, t)))
            .map(|(i, t)| batch.rewards[t] as f64 + g * next_value64(&batch, &v, i, t))
            .collect();
        assert_close("Bootstrap targets", &boot, &want, 1e-6);
    }
}

#[test]
fn pg_reinforce_weights_match_their_definitions() {
    let (batch, v) = hand_batch(12);
    let (gamma, g) = (0.9f32, 0.9f64);
    let opts = PgOptions {
        gamma,
        time_discount: false,
    };
    let n = batch.episodes();
    let rets: Vec<f64> = (0..n)
        .map(|i| rtg64(&batch.rewards[batch.range(i)], g)[0])
        .collect();
    let mean_ret = rets.iter().sum::<f64>() / n as f64;
    let rtg = batch_rtg64(&batch, g);
    // b_k: the mean reward-to-go at step k over the episodes that reach it.
    let longest = *LENS.iter().max().unwrap();
    let b: Vec<f64> = (0..longest)
        .map(|k| {
            let reach: Vec<usize> = (0..n).filter(|&i| LENS[i] > k).collect();
            reach.iter().map(|&i| rtg[batch.bounds[i] + k]).sum::<f64>() / reach.len() as f64
        })
        .collect();
    // (episode, step within the episode) of every step.
    let pos: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (0..LENS[i]).map(move |k| (i, k)))
        .collect();
    let val = |t: usize| v.values[t] as f64;
    // ψ of step t (step k of episode i).
    let want_of =
        |kind: ReturnKind, base: Baseline, i: usize, k: usize, t: usize| match (kind, base) {
            (ReturnKind::Full, Baseline::None) => rets[i],
            (ReturnKind::Full, Baseline::Mean) => rets[i] - mean_ret,
            (ReturnKind::Full, Baseline::Value) => rets[i] - val(t),
            (ReturnKind::RewardToGo, Baseline::None) => rtg[t],
            (ReturnKind::RewardToGo, Baseline::Mean) => rtg[t] - b[k],
            (ReturnKind::RewardToGo, Baseline::Value) => rtg[t] - val(t),
            (_, Baseline::Optimal) => unreachable!(),
        };
    for kind in [ReturnKind::Full, ReturnKind::RewardToGo] {
        for base in [Baseline::None, Baseline::Mean, Baseline::Value] {
            let est = Estimator::Reinforce(kind, base);
            let values = est.needs_values().then_some(&v);
            let w = weights(&batch, est, values, &opts);
            let want: Vec<f64> = pos
                .iter()
                .enumerate()
                .map(|(t, &(i, k))| want_of(kind, base, i, k, t))
                .collect();
            assert_close(&est.label(), &w, &want, 1e-5);
        }
    }

    // Consequences of the per-step mean baseline, independent of b above.
    let w = weights(
        &batch,
        Estimator::Reinforce(ReturnKind::RewardToGo, Baseline::Mean),
        None,
        &opts,
    );
    let w_full = weights(
        &batch,
        Estimator::Reinforce(ReturnKind::Full, Baseline::Mean),
        None,
        &opts,
    );
    // Step 0 is reached by every episode: the full-return mean baseline.
    for i in 0..n {
        let t = batch.bounds[i];
        assert!((w[t] - w_full[t]).abs() <= 1e-5 * (1.0 + w_full[t].abs()));
    }
    // Step 6 is reached by the 7-step episode only: its own reward-to-go
    // is the baseline.
    assert_eq!(w[batch.bounds[2] + 6], 0.0);
    // At every step the weights of the episodes reaching it sum to 0.
    for k in 0..longest {
        let s: f64 = (0..n)
            .filter(|&i| LENS[i] > k)
            .map(|i| w[batch.bounds[i] + k] as f64)
            .sum();
        assert!(s.abs() < 1e-5, "step {k}: Σ ψ = {s}");
    }
}

#[test]
fn pg_nstep_and_gae_weights_follow_the_episodes() {
    let (batch, v) = hand_batch(13);
    let (gamma, g) = (0.9f32, 0.9f64);
    let opts = PgOptions {
        gamma,
        time_discount: false,
    };
    let n = batch.episodes();
    let delta: Vec<f64> = (0..n)
        .flat_map(|i| batch.range(i).map(move |t| (i, t)))
        .map(|(i, t)| {
            batch.rewards[t] as f64 + g * next_value64(&batch, &v, i, t) - v.values[t] as f64
        })
        .collect();
    for lambda in [0.0f32, 0.5, 0.95, 1.0] {
        let gl = g * lambda as f64;
        let want: Vec<f64> = (0..n)
            .flat_map(|i| {
                let end = batch.range(i).end;
                let delta = &delta;
                batch.range(i).map(move |t| {
                    (t..end)
                        .map(|k| gl.powi((k - t) as i32) * delta[k])
                        .sum::<f64>()
                })
            })
            .collect();
        let w = weights(&batch, Estimator::Gae(lambda), Some(&v), &opts);
        assert_close(&format!("GAE λ={lambda}"), &w, &want, 1e-5);
    }
    for steps in [1, 2, 3, 8] {
        let want: Vec<f64> = (0..n)
            .flat_map(|i| batch.range(i).map(move |t| (i, t)))
            .map(|(i, t)| {
                let end = batch.range(i).end;
                let m = steps.min(end - t);
                let rewards: f64 = (0..m)
                    .map(|k| g.powi(k as i32) * batch.rewards[t + k] as f64)
                    .sum();
                let v_end = if t + m < end {
                    v.values[t + m] as f64
                } else {
                    next_value64(&batch, &v, i, end - 1)
                };
                rewards + g.powi(m as i32) * v_end - v.values[t] as f64
            })
            .collect();
        let w = weights(&batch, Estimator::NStep(steps), Some(&v), &opts);
        assert_close(&format!("{steps}-step"), &w, &want, 1e-5);
    }
    // λ = 1 is reward-to-go minus V, plus the discounted bootstrap of a
    // truncated episode's final state.
    let gae1 = weights(&batch, Estimator::Gae(1.0), Some(&v), &opts);
    let rtg_v = weights(
        &batch,
        Estimator::Reinforce(ReturnKind::RewardToGo, Baseline::Value),
        Some(&v),
        &opts,
    );
    for (i, &term) in TERM.iter().enumerate() {
        let end = batch.range(i).end;
        for t in batch.range(i) {
            let boot = if term {
                0.0
            } else {
                g.powi((end - t) as i32) * v.final_values[i] as f64
            };
            let want = rtg_v[t] as f64 + boot;
            assert!(
                (gae1[t] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "episode {i}, step {t}: GAE(1) {} vs {want}",
                gae1[t]
            );
        }
    }
}

#[test]
fn pg_time_discount_scales_reward_to_go_weights_by_gamma_to_the_t() {
    let (batch, v) = hand_batch(14);
    let gamma = 0.8f32;
    let plain = PgOptions {
        gamma,
        time_discount: false,
    };
    let td = PgOptions {
        gamma,
        time_discount: true,
    };
    let mut ests = Vec::new();
    for kind in [ReturnKind::Full, ReturnKind::RewardToGo] {
        for base in [Baseline::None, Baseline::Mean, Baseline::Value] {
            ests.push(Estimator::Reinforce(kind, base));
        }
    }
    ests.extend([Estimator::NStep(2), Estimator::Gae(0.9)]);
    for est in ests {
        let w0 = weights(&batch, est, Some(&v), &plain);
        let w1 = weights(&batch, est, Some(&v), &td);
        if let Estimator::Reinforce(ReturnKind::Full, base) = est {
            // r(τ) already discounts from the episode's start.
            assert_eq!(w1, w0, "{}", est.label());
            if base == Baseline::None {
                for i in 0..batch.episodes() {
                    let ret = rtg64(&batch.rewards[batch.range(i)], gamma as f64)[0];
                    assert_close(
                        "full return",
                        &w1[batch.range(i)],
                        &vec![ret; LENS[i]],
                        1e-5,
                    );
                }
            }
            continue;
        }
        for i in 0..batch.episodes() {
            for (k, t) in batch.range(i).enumerate() {
                let want = (gamma as f64).powi(k as i32) * w0[t] as f64;
                assert!(
                    (w1[t] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{}: episode {i}, step {k}: {} vs {want}",
                    est.label(),
                    w1[t]
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "per parameter")]
fn pg_weights_refuse_the_optimal_baseline() {
    let (batch, _) = hand_batch(15);
    let opts = PgOptions {
        gamma: 1.0,
        time_discount: false,
    };
    weights(
        &batch,
        Estimator::Reinforce(ReturnKind::Full, Baseline::Optimal),
        None,
        &opts,
    );
}

// ---------------------------------------------------------------------------
// logp_grad against central differences.

/// `Σ_t w_t log π(a_t|s_t)` in f64, through a forward pass and
/// `gaussian_log_prob`.
fn weighted_logp(model: &ActorCritic, obs: &[f32], actions: &[f32], w: &[f32]) -> f64 {
    let (od, ad) = (model.obs_dim(), model.act_dim());
    let x = ArrayView2::from_shape((w.len(), od), obs).unwrap();
    let mu = model
        .actor
        .forward(model.actor_params(), x, &mut Cache::default())
        .to_owned();
    (0..w.len())
        .map(|t| {
            let mu_t = mu.row(t).to_vec();
            let lp = gaussian_log_prob(&actions[t * ad..(t + 1) * ad], &mu_t, model.log_std());
            w[t] as f64 * lp as f64
        })
        .sum()
}

#[test]
fn pg_logp_grad_matches_finite_differences() {
    let mut r = rng(31);
    let mut model = ActorCritic::new(3, 2, &[5, 4], &[6], Act::Tanh, -0.3, &mut r);
    // Re-randomise the actor (the 0.01 head gain would make every layer
    // but the last nearly irrelevant) and the log-stds.
    let actor = random_params(&model.actor, 1.0, &mut r);
    let ar = model.actor_range();
    model.params[ar].copy_from_slice(&actor);
    for l in model.log_std_range() {
        model.params[l] = uniform(&mut r, -0.6, 0.2);
    }
    let rows = 9;
    let obs: Vec<f32> = (0..rows * 3).map(|_| normal(&mut r)).collect();
    let x = ArrayView2::from_shape((rows, 3), &obs).unwrap();
    let mu = model
        .actor
        .forward(model.actor_params(), x, &mut Cache::default())
        .to_owned();
    let std: Vec<f32> = model.log_std().iter().map(|l| l.exp()).collect();
    let actions: Vec<f32> = (0..rows * 2)
        .map(|k| mu[[k / 2, k % 2]] + 1.5 * std[k % 2] * normal(&mut r))
        .collect();
    let w: Vec<f32> = (0..rows).map(|_| uniform(&mut r, -1.5, 1.5)).collect();

    // logp_grad adds into the buffer and leaves the critic's part alone.
    let mut grad = vec![0.5f32; model.params.len()];
    logp_grad(&model, &obs, &actions, &w, &mut Cache::default(), &mut grad);
    let policy = 0..model.critic_range().start;
    assert!(grad[model.critic_range()].iter().all(|&g| g == 0.5));
    grad[policy.clone()].iter_mut().for_each(|g| *g -= 0.5);

    let h = 5e-3f32;
    let idx: Vec<usize> = policy.collect();
    let numeric: Vec<f64> = idx
        .iter()
        .map(|&i| {
            let p0 = model.params[i];
            model.params[i] = p0 + h;
            let lp = weighted_logp(&model, &obs, &actions, &w);
            model.params[i] = p0 - h;
            let lm = weighted_logp(&model, &obs, &actions, &w);
            model.params[i] = p0;
            (lp - lm) / (2.0 * h as f64)
        })
        .collect();
    check_grad("logp_grad", &idx, &grad, &numeric, 1e-2, 2e-3);
}

// ---------------------------------------------------------------------------
// Baselines: Monte Carlo on pendulum.

/// Normalization on, with frozen statistics.
const FROZEN: ObsNorm = ObsNorm {
    enabled: true,
    clip: 10.0,
    update: false,
};

/// Raw observations.
const RAW: ObsNorm = ObsNorm {
    enabled: false,
    clip: 10.0,
    update: false,
};

fn plants(name: &str, n: usize) -> Vec<Box<dyn Env>> {
    (0..n).map(|_| plant(name).make_env()).collect()
}

/// Index of the actor's output bias `j` in the flat parameters.
fn out_bias(model: &ActorCritic, j: usize) -> usize {
    let (_, ob, _, _) = model.actor.layer_offsets(model.actor.n_layers() - 1);
    ob + j
}

/// `(1/N) Σ_i Σ_t w_t ∇ log π(a_it|s_it)` for per-step weights `w`.
fn weighted_score(model: &ActorCritic, batch: &EpisodeBatch, w: &[f32]) -> Vec<f32> {
    let mut g = vec![0.0f32; model.critic_range().start];
    logp_grad(
        model,
        &batch.obs,
        &batch.actions,
        w,
        &mut Cache::default(),
        &mut g,
    );
    g.iter_mut().for_each(|x| *x /= batch.episodes() as f32);
    g
}

#[test]
fn pg_constant_baseline_leaves_the_pendulum_gradient_unbiased() {
    // K batches of N pendulum episodes (200 steps each) from a fresh model.
    // Per batch and coordinate k (the actor's output bias, its log σ and a
    // first-layer weight):
    //   X = (1/N) Σ_i g_ik b, b constant: E[X] = 0 (notes: E[∇log p b] = 0);
    //   Y = ĝ_mean − ĝ_none + ĝ_none/N = −(1/N²) Σ_{i≠j} g_ik R_j: E[Y] = 0
    //     (the mean baseline's difference to none, less its self term);
    //   Z = (1/N) Σ_i Σ_t ∇_k log π(a_it|s_it) (u_it + u_it²), an
    //     action-dependent "baseline": not 0. With u = μ + σz,
    //     E[(u − μ)/σ² · (u + u²) | s] = 1 + 2μ(s) and
    //     E[((u − μ)²/σ² − 1)(u + u²) | s] = 2σ², so for the output bias
    //     Z − (1/N) Σ_it (1 + 2μ_it) has mean 0, and for log σ E[Z] = 400σ².
    let (k_batches, n, b) = (40, 4, -1000.0f32);
    let gamma = 0.99f32;
    let opts = PgOptions {
        gamma,
        time_discount: false,
    };
    let mut r = rng(41);
    let model = ActorCritic::new(3, 1, &[8, 8], &[8], Act::Tanh, -0.5, &mut r);
    let sigma2 = (2.0 * model.log_std()[0] as f64).exp();
    let coords = [out_bias(&model, 0), model.log_std_range().start, 2];
    let mut rms = RunningMeanStd::new(3);
    let mut envs = plants("pendulum", n);
    let (mut x, mut y, mut z) = (vec![vec![]; 3], vec![vec![]; 3], vec![vec![]; 3]);
    let mut z_bias_centred = Vec::new();
    for _ in 0..k_batches {
        let batch = collect_episodes(&model, &mut envs, &mut rms, FROZEN, &mut r);
        assert_eq!(batch.steps(), 200 * n);
        let score = episode_score_grads(&model, &batch);
        let none = policy_gradient(
            &model,
            &batch,
            Estimator::Reinforce(ReturnKind::Full, Baseline::None),
            None,
            &opts,
        );
        let mean = policy_gradient(
            &model,
            &batch,
            Estimator::Reinforce(ReturnKind::Full, Baseline::Mean),
            None,
            &opts,
        );
        let w: Vec<f32> = batch.actions.iter().map(|&u| u + u * u).collect();
        let act = weighted_score(&model, &batch, &w);
        for (c, &k) in coords.iter().enumerate() {
            let s: f64 = score.iter().map(|g| g[k] as f64).sum();
            x[c].push(s * b as f64 / n as f64);
            y[c].push((mean[k] - none[k]) as f64 + none[k] as f64 / n as f64);
            z[c].push(act[k] as f64);
        }
        let xv = ArrayView2::from_shape((batch.steps(), 3), &batch.obs).unwrap();
        let mu = model
            .actor
            .forward(model.actor_params(), xv, &mut Cache::default())
            .to_owned();
        let expect: f64 = mu.iter().map(|&m| 1.0 + 2.0 * m as f64).sum::<f64>() / n as f64;
        z_bias_centred.push(act[coords[0]] as f64 - expect);
    }
    for (c, name) in ["output bias", "log σ", "W1[0,2]"].iter().enumerate() {
        for (what, v) in [("constant b", &x[c]), ("mean − none + none/N", &y[c])] {
            let (m, se) = mean_se(v);
            println!("pendulum {name}, {what}: {m:.4e} ± {se:.4e}");
            assert!(
                se > 0.0 && m.abs() <= 4.0 * se,
                "{name}, {what}: {m} ± {se}"
            );
        }
    }
    // The action-dependent weight: the same statistic is far from 0, and
    // matches its conditional expectation.
    let (m, se) = mean_se(&z[0]);
    println!("pendulum output bias, b = u + u²: {m:.4e} ± {se:.4e}");
    assert!(m.abs() > 20.0 * se, "{m} ± {se}");
    let (m, se) = mean_se(&z_bias_centred);
    assert!(m.abs() <= 4.0 * se, "centred: {m} ± {se}");
    let (m, se) = mean_se(&z[1]);
    let want = 200.0 * 2.0 * sigma2;
    println!("pendulum log σ, b = u + u²: {m:.4e} ± {se:.4e} (closed form {want:.4e})");
    assert!(
        m.abs() > 20.0 * se && (m - want).abs() <= 4.0 * se,
        "{m} ± {se}"
    );
}

// ---------------------------------------------------------------------------
// The Gaussian bandit.
//
// One step from a constant observation 0; the actor is linear (no hidden
// layer), so μ is its output bias and the weight's score is 0. Action
// a = μ + σz, z ~ N(0, 1), reward r = −(a − c)², d = μ − c:
//
//   r = −(d² + 2dσz + σ²z²),  J = E[r] = −(d² + σ²).
//
// Scores: g_μ = ∂log π/∂μ = (a − μ)/σ² = z/σ, g_s = ∂log π/∂log σ = z² − 1.
// Gaussian moments E[z²] = 1, E[z⁴] = 3, E[z⁶] = 15, E[z⁸] = 105, odd 0.
//
// Gradient: E[g_μ r] = −2d = ∂J/∂μ, E[g_s r] = −σ²E[(z² − 1)z²] = −2σ²
// = ∂J/∂log σ.
//
// Optimal baseline b* = E[g² r]/E[g²]:
//   μ:     E[g_μ²] = 1/σ², E[g_μ² r] = −(d² + 3σ²)/σ²  ⇒ b*_μ = −(d² + 3σ²);
//   log σ: E[g_s²] = E[(z² − 1)²] = 2,
//          E[g_s² r] = −(2d² + σ²E[(z² − 1)²z²]) = −(2d² + 10σ²)
//                                                ⇒ b*_s = −(d² + 5σ²).
// Mean baseline: b̄ = E[r] = −(d² + σ²).
//
// Variance of the one-sample estimate g(r − b) for a constant b: with
// α = d² + b, r − b = −(α + 2dσz + σ²z²) and, dropping odd powers of z,
//   E[g_μ²(r − b)²] = (α² + 6ασ² + 12d²σ² + 15σ⁴)/σ²,
//   E[g_s²(r − b)²] = 2α² + 20ασ² + 40d²σ² + 78σ⁴
// (E[(z² − 1)²z²] = 10, E[(z² − 1)²z⁴] = 78), so
//   Var_μ(b) = (α² + 6ασ² + 12d²σ² + 15σ⁴)/σ² − 4d²,
//   Var_s(b) = 2α² + 20ασ² + 40d²σ² + 74σ⁴,
// minimised at α = −3σ² and α = −5σ², i.e. at b*, with
//   Var(b) = Var(b*) + (b − b*)² E[g²]:
//   Var_μ(b*) = 6σ² + 8d²,   Var_μ(b̄) = Var_μ(b*) + 4σ²,
//   Var_s(b*) = 24σ⁴ + 40d²σ², Var_s(b̄) = Var_s(b*) + 32σ⁴.

/// The one-step bandit `r = −(a − c)²`, observation always 0.
struct Bandit {
    c: f32,
}

impl Env for Bandit {
    fn name(&self) -> &'static str {
        "bandit"
    }
    fn obs_dim(&self) -> usize {
        1
    }
    fn act_dim(&self) -> usize {
        1
    }
    fn action_low(&self) -> Vec<f32> {
        vec![f32::NEG_INFINITY]
    }
    fn action_high(&self) -> Vec<f32> {
        vec![f32::INFINITY]
    }
    fn safe_action(&self) -> Vec<f32> {
        vec![0.0]
    }
    fn max_episode_steps(&self) -> u32 {
        1
    }
    fn reset(&mut self, _rng: &mut DefaultRng, obs: &mut [f32]) {
        obs[0] = 0.0;
    }
    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> (f32, bool, bool) {
        obs[0] = 0.0;
        (-(action[0] - self.c).powi(2), true, false)
    }
}

/// Coordinates of the bandit's policy parameters.
const W_IDX: usize = 0; // the weight (its input is always 0)
const MU_IDX: usize = 1; // the output bias = μ
const LS_IDX: usize = 2; // log σ

struct GaussBandit {
    model: ActorCritic,
    mu: f64,
    sigma: f64,
    c: f64,
}

impl GaussBandit {
    /// μ = 0.3, σ = 0.5, c = 1.
    fn new() -> Self {
        let mut model = ActorCritic::new(1, 1, &[], &[], Act::Tanh, 0.5f32.ln(), &mut rng(0));
        assert_eq!(
            (out_bias(&model, 0), model.log_std_range().start),
            (MU_IDX, LS_IDX)
        );
        model.params[MU_IDX] = 0.3;
        let sigma = (model.log_std()[0] as f64).exp();
        GaussBandit {
            mu: model.params[MU_IDX] as f64,
            model,
            sigma,
            c: 1.0,
        }
    }

    fn batch(&self, n: usize, r: &mut DefaultRng) -> EpisodeBatch {
        let mut envs: Vec<Box<dyn Env>> = (0..n)
            .map(|_| Box::new(Bandit { c: self.c as f32 }) as Box<dyn Env>)
            .collect();
        collect_episodes(&self.model, &mut envs, &mut RunningMeanStd::new(1), RAW, r)
    }

    fn d(&self) -> f64 {
        self.mu - self.c
    }

    /// `(∂J/∂μ, ∂J/∂log σ)`.
    fn grad_j(&self) -> [f64; 2] {
        [-2.0 * self.d(), -2.0 * self.sigma * self.sigma]
    }

    /// `(b*_μ, b*_s)`.
    fn b_star(&self) -> [f64; 2] {
        let (d2, s2) = (self.d() * self.d(), self.sigma * self.sigma);
        [-(d2 + 3.0 * s2), -(d2 + 5.0 * s2)]
    }

    fn b_mean(&self) -> f64 {
        -(self.d() * self.d() + self.sigma * self.sigma)
    }

    /// `(E[g_μ²], E[g_s²])`.
    fn e_g2(&self) -> [f64; 2] {
        [1.0 / (self.sigma * self.sigma), 2.0]
    }

    /// `Var[g_k (r − b)]`, closed form; `k = 0` for μ, 1 for log σ.
    fn var(&self, k: usize, b: f64) -> f64 {
        let (d2, s2) = (self.d() * self.d(), self.sigma * self.sigma);
        let a = d2 + b;
        if k == 0 {
            (a * a + 6.0 * a * s2 + 12.0 * d2 * s2 + 15.0 * s2 * s2) / s2 - 4.0 * d2
        } else {
            2.0 * a * a + 20.0 * a * s2 + 40.0 * d2 * s2 + 74.0 * s2 * s2
        }
    }

    /// `(g_k(z), r(z))` as functions of the standard normal z.
    fn score(&self, k: usize, z: f64) -> f64 {
        if k == 0 {
            z / self.sigma
        } else {
            z * z - 1.0
        }
    }
    fn reward(&self, z: f64) -> f64 {
        -(self.d() + self.sigma * z).powi(2)
    }
}

/// Sample variance and its standard error `√((m₄ − s⁴)/n)`.
fn var_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s2 = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    let m4 = v.iter().map(|x| (x - m).powi(4)).sum::<f64>() / n;
    (s2, ((m4 - s2 * s2) / n).sqrt())
}

#[test]
fn pg_bandit_closed_forms_agree_with_quadrature() {
    // Checks the derivation above by integrating over z numerically.
    let gb = GaussBandit::new();
    let phi = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let [b_mu, b_s] = gb.b_star();
    for k in 0..2 {
        let g = |z: f64| gb.score(k, z);
        let e_g2 = integrate(|z| phi(z) * g(z).powi(2));
        let e_g2r = integrate(|z| phi(z) * g(z).powi(2) * gb.reward(z));
        assert!((e_g2 - gb.e_g2()[k]).abs() < 1e-9, "E[g²], k = {k}");
        assert!((e_g2r / e_g2 - gb.b_star()[k]).abs() < 1e-9, "b*, k = {k}");
        for b in [gb.b_star()[k], gb.b_mean(), 0.0, 1.3, -4.0] {
            let m1 = integrate(|z| phi(z) * g(z) * (gb.reward(z) - b));
            let m2 = integrate(|z| phi(z) * (g(z) * (gb.reward(z) - b)).powi(2));
            assert!((m1 - gb.grad_j()[k]).abs() < 1e-9, "E[g(r − b)], k = {k}");
            let v = m2 - m1 * m1;
            assert!(
                (v - gb.var(k, b)).abs() < 1e-9 * (1.0 + v),
                "Var, k = {k}, b = {b}: quadrature {v}, closed form {}",
                gb.var(k, b)
            );
        }
    }
    // b* minimises the closed-form variance: zero derivative, and
    // Var(b) − Var(b*) = (b − b*)² E[g²] > 0 on both sides.
    for (k, b_star) in [(0, b_mu), (1, b_s)] {
        let h = 1e-4;
        let deriv = (gb.var(k, b_star + h) - gb.var(k, b_star - h)) / (2.0 * h);
        assert!(deriv.abs() < 1e-8, "k = {k}: dVar/db at b* = {deriv}");
        for h in [-1.0, -0.1, 1e-3, 0.5] {
            let excess = gb.var(k, b_star + h) - gb.var(k, b_star);
            assert!(excess > 0.0, "k = {k}, h = {h}");
            assert!((excess - h * h * gb.e_g2()[k]).abs() < 1e-12);
        }
    }
    let (d2, s2) = (gb.d() * gb.d(), gb.sigma * gb.sigma);
    assert!((gb.var(0, b_mu) - (6.0 * s2 + 8.0 * d2)).abs() < 1e-12);
    assert!((gb.var(0, gb.b_mean()) - gb.var(0, b_mu) - 4.0 * s2).abs() < 1e-12);
    assert!((gb.var(1, b_s) - (24.0 * s2 * s2 + 40.0 * d2 * s2)).abs() < 1e-12);
    assert!((gb.var(1, gb.b_mean()) - gb.var(1, b_s) - 32.0 * s2 * s2).abs() < 1e-12);
}

#[test]
fn pg_optimal_baseline_on_a_gaussian_bandit_matches_the_closed_form() {
    let gb = GaussBandit::new();
    let (m_eps, chunk) = (100_000, 10_000);
    let mut r = rng(51);
    let mut batch = EpisodeBatch::new(1, 1);
    for _ in 0..m_eps / chunk {
        batch.extend(&gb.batch(chunk, &mut r));
    }
    assert_eq!((batch.episodes(), batch.steps()), (m_eps, m_eps));
    assert!(batch.terminated.iter().all(|&t| t));
    let score = episode_score_grads(&gb.model, &batch);
    let rets = batch.returns(1.0);
    // The scores are the closed-form ones.
    let (mu, s) = (gb.mu as f32, gb.sigma as f32);
    for (g, &a) in score.iter().zip(&batch.actions).take(1000) {
        let z = (a - mu) / s;
        assert_eq!(g[W_IDX], 0.0);
        assert!((g[MU_IDX] - z / s).abs() <= 1e-5 * (1.0 + (z / s).abs()));
        assert!((g[LS_IDX] - (z * z - 1.0)).abs() <= 1e-5 * (1.0 + z * z));
    }

    let b_hat = optimal_baseline(&score, &rets);
    assert_eq!(b_hat[W_IDX], 0.0, "no signal in the weight: baseline 0");
    let b_mean = gb.b_mean();
    for (k, idx, name) in [(0, MU_IDX, "μ"), (1, LS_IDX, "log σ")] {
        let g: Vec<f64> = score.iter().map(|s| s[idx] as f64).collect();
        let rr = f64s(&rets);
        let b_star = gb.b_star()[k];
        // (a) b̂ = Σ g²R / Σ g²; to first order b̂ − b* = mean(g²(R − b*)) /
        // mean(g²) (delta method), whose standard error is the tolerance.
        let e_g2 = g.iter().map(|x| x * x).sum::<f64>() / g.len() as f64;
        let num: Vec<f64> = g
            .iter()
            .zip(&rr)
            .map(|(x, r)| x * x * (r - b_star))
            .collect();
        let (_, se_num) = mean_se(&num);
        let se_b = se_num / e_g2;
        println!(
            "{name}: b̂ = {:.5}, b* = {b_star:.5} (±{se_b:.5}), mean baseline {b_mean:.5}",
            b_hat[idx]
        );
        assert!(
            (b_hat[idx] as f64 - b_star).abs() <= 4.0 * se_b,
            "{name}: b̂"
        );
        assert!((b_hat[idx] as f64 - b_mean).abs() > 20.0 * se_b, "{name}");

        // (b) Variances of g(R − b) for b = b* and b = b̄: each matches
        // its closed form, and the difference is positive and matches too.
        let y_opt: Vec<f64> = g.iter().zip(&rr).map(|(x, r)| x * (r - b_star)).collect();
        let y_mean: Vec<f64> = g.iter().zip(&rr).map(|(x, r)| x * (r - b_mean)).collect();
        let (v_opt, se_opt) = var_se(&y_opt);
        let (v_mean, se_mean) = var_se(&y_mean);
        let (w_opt, w_mean) = (gb.var(k, b_star), gb.var(k, b_mean));
        println!(
            "{name}: Var(b*) = {v_opt:.4} ± {se_opt:.4} (closed {w_opt:.4}), \
             Var(b̄) = {v_mean:.4} ± {se_mean:.4} (closed {w_mean:.4})"
        );
        assert!(w_opt <= w_mean);
        assert!((v_opt - w_opt).abs() <= 4.0 * se_opt, "{name}: Var(b*)");
        assert!((v_mean - w_mean).abs() <= 4.0 * se_mean, "{name}: Var(b̄)");
        let (m_opt, m_mean) = (mean_se(&y_opt).0, mean_se(&y_mean).0);
        let diff: Vec<f64> = y_mean
            .iter()
            .zip(&y_opt)
            .map(|(a, b)| (a - m_mean).powi(2) - (b - m_opt).powi(2))
            .collect();
        let (md, sed) = mean_se(&diff);
        println!(
            "{name}: Var(b̄) − Var(b*) = {md:.4} ± {sed:.4} (closed {:.4})",
            w_mean - w_opt
        );
        assert!(md > 4.0 * sed, "{name}: the optimal baseline is not better");
        assert!((md - (w_mean - w_opt)).abs() <= 4.0 * sed, "{name}");
    }
}

#[test]
fn pg_baselines_on_a_gaussian_bandit_bias_or_not() {
    // K batches of N one-step episodes. Per batch and coordinate (μ, log σ):
    //   none  = ĝ without baseline:                E = ∇J
    //   const = (1/N) Σ_i g_i b, b = −2 constant:   E = 0
    //   loo   = (1/N) Σ_i g_i (R_i − mean_{j≠i} R_j): E = ∇J
    //   mean  = ĝ with the batch-mean baseline:     E = (1 − 1/N) ∇J
    //   diff  = mean − none:                        E = −∇J/N
    //   act   = (1/N) Σ_i g_i (a_i + a_i²):  E = (1 + 2μ, 2σ²) ≠ 0
    //     (E[(z/σ)(a + a²)] = 1 + 2μ, E[(z² − 1)(a + a²)] = σ²E[(z² − 1)z²]).
    let gb = GaussBandit::new();
    let (k_batches, n) = (20_000, 4);
    let nf = n as f64;
    let opts = PgOptions {
        gamma: 1.0,
        time_discount: false,
    };
    let mut r = rng(61);
    let names = ["none", "const", "loo", "mean", "diff", "act"];
    let mut stats = vec![vec![Vec::with_capacity(k_batches); names.len()]; 2];
    for _ in 0..k_batches {
        let batch = gb.batch(n, &mut r);
        let score = episode_score_grads(&gb.model, &batch);
        let rets = f64s(&batch.returns(1.0));
        let none = policy_gradient(
            &gb.model,
            &batch,
            Estimator::Reinforce(ReturnKind::Full, Baseline::None),
            None,
            &opts,
        );
        let mean = policy_gradient(
            &gb.model,
            &batch,
            Estimator::Reinforce(ReturnKind::Full, Baseline::Mean),
            None,
            &opts,
        );
        let total: f64 = rets.iter().sum();
        for (k, idx) in [MU_IDX, LS_IDX].into_iter().enumerate() {
            let g: Vec<f64> = score.iter().map(|s| s[idx] as f64).collect();
            let avg = |f: &dyn Fn(usize) -> f64| (0..n).map(f).sum::<f64>() / nf;
            let row = [
                none[idx] as f64,
                avg(&|i| g[i] * -2.0),
                avg(&|i| g[i] * (rets[i] - (total - rets[i]) / (nf - 1.0))),
                mean[idx] as f64,
                (mean[idx] - none[idx]) as f64,
                avg(&|i| {
                    let a = batch.actions[i] as f64;
                    g[i] * (a + a * a)
                }),
            ];
            for (s, v) in stats[k].iter_mut().zip(row) {
                s.push(v);
            }
        }
    }
    let grad = gb.grad_j();
    let act = [1.0 + 2.0 * gb.mu, 2.0 * gb.sigma * gb.sigma];
    for (k, coord) in ["μ", "log σ"].iter().enumerate() {
        let want = [
            grad[k],
            0.0,
            grad[k],
            (1.0 - 1.0 / nf) * grad[k],
            -grad[k] / nf,
            act[k],
        ];
        for ((name, v), w) in names.iter().zip(&stats[k]).zip(want) {
            let (m, se) = mean_se(v);
            println!("{coord} {name}: {m:.5} ± {se:.5} (expected {w:.5})");
            assert!(
                (m - w).abs() <= 4.0 * se,
                "{coord} {name}: {m} ± {se} vs {w}"
            );
        }
        // The checks can fail: the action-dependent weight is far from 0,
        // and the mean baseline's expectation is far from ∇J.
        let (m, se) = mean_se(&stats[k][5]);
        assert!(m.abs() > 20.0 * se, "{coord}: act {m} ± {se}");
        let (m, se) = mean_se(&stats[k][3]);
        assert!((m - grad[k]).abs() > 8.0 * se, "{coord}: mean {m} ± {se}");
    }
}

// ---------------------------------------------------------------------------
// collect_episodes.

/// What one plant did: reset observations and steps.
#[derive(Default)]
struct Log {
    resets: Vec<Vec<f32>>,
    steps: Vec<Step>,
}

/// One step as the plant saw it.
struct Step {
    applied: Vec<f32>,
    reward: f32,
    term: bool,
    trunc: bool,
    next_obs: Vec<f32>,
}

/// An [`Env`] that records everything passing through it.
struct Recorder {
    inner: Box<dyn Env>,
    log: Arc<Mutex<Log>>,
}

impl Env for Recorder {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn obs_dim(&self) -> usize {
        self.inner.obs_dim()
    }
    fn act_dim(&self) -> usize {
        self.inner.act_dim()
    }
    fn action_low(&self) -> Vec<f32> {
        self.inner.action_low()
    }
    fn action_high(&self) -> Vec<f32> {
        self.inner.action_high()
    }
    fn safe_action(&self) -> Vec<f32> {
        self.inner.safe_action()
    }
    fn max_episode_steps(&self) -> u32 {
        self.inner.max_episode_steps()
    }
    fn reset(&mut self, rng: &mut DefaultRng, obs: &mut [f32]) {
        self.inner.reset(rng, obs);
        self.log.lock().unwrap().resets.push(obs.to_vec());
    }
    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> (f32, bool, bool) {
        let (r, term, trunc) = self.inner.step(action, obs);
        self.log.lock().unwrap().steps.push(Step {
            applied: action.to_vec(),
            reward: r,
            term,
            trunc,
            next_obs: obs.to_vec(),
        });
        (r, term, trunc)
    }
}

type Logs = Vec<Arc<Mutex<Log>>>;

/// `n` recorded plants and their logs.
fn recorded(name: &str, n: usize) -> (Vec<Box<dyn Env>>, Logs) {
    let logs: Vec<_> = (0..n)
        .map(|_| Arc::new(Mutex::new(Log::default())))
        .collect();
    let envs = logs
        .iter()
        .map(|log| {
            Box::new(Recorder {
                inner: plant(name).make_env(),
                log: log.clone(),
            }) as Box<dyn Env>
        })
        .collect();
    (envs, logs)
}

/// Checks episode `i` of `batch` against the log of the plant that ran it:
/// one reset, the observation before each step (after `norm`), the
/// clamped action, the reward, no step after the first end and the final
/// observation. Returns the episode's length.
fn check_against_log(
    batch: &EpisodeBatch,
    i: usize,
    log: &Log,
    norm: impl Fn(&[f32]) -> Vec<f32>,
    low: &[f32],
    high: &[f32],
) -> usize {
    let (od, ad) = (batch.obs_dim, batch.act_dim);
    let range = batch.range(i);
    let len = range.len();
    assert_eq!(log.resets.len(), 1, "episode {i}: one reset");
    assert_eq!(log.steps.len(), len, "episode {i}: steps taken = length");
    for (k, t) in range.enumerate() {
        let before = if k == 0 {
            &log.resets[0]
        } else {
            &log.steps[k - 1].next_obs
        };
        assert_eq!(
            batch.obs[t * od..(t + 1) * od],
            norm(before)[..],
            "episode {i}, step {k}: observation"
        );
        let Step {
            applied,
            reward,
            term,
            trunc,
            ..
        } = &log.steps[k];
        for j in 0..ad {
            let u = batch.actions[t * ad + j];
            assert_eq!(
                u.clamp(low[j], high[j]),
                applied[j],
                "episode {i}, step {k}"
            );
        }
        assert_eq!(batch.rewards[t], *reward);
        let last = k + 1 == len;
        assert_eq!(*term || *trunc, last, "episode {i}, step {k}: end flags");
        if last {
            assert_eq!(batch.terminated[i], *term);
        }
    }
    assert_eq!(
        batch.final_obs[i * od..(i + 1) * od],
        norm(&log.steps[len - 1].next_obs)[..],
        "episode {i}: final observation"
    );
    len
}

#[test]
fn pg_collect_episodes_is_deterministic_per_seed() {
    let model = ActorCritic::new(3, 1, &[8], &[8], Act::Tanh, -0.5, &mut rng(71));
    let run = |seed: u64| {
        let mut rms = RunningMeanStd::new(3);
        collect_episodes(
            &model,
            &mut plants("pendulum", 3),
            &mut rms,
            FROZEN,
            &mut rng(seed),
        )
    };
    let (a, b, c) = (run(5), run(5), run(6));
    assert_eq!(a.obs, b.obs);
    assert_eq!(a.actions, b.actions);
    assert_eq!(a.rewards, b.rewards);
    assert_eq!(a.bounds, b.bounds);
    assert_eq!(a.terminated, b.terminated);
    assert_eq!(a.final_obs, b.final_obs);
    assert_ne!(a.actions, c.actions, "another seed, other samples");
    assert_ne!(a.obs[..3], c.obs[..3], "another seed, other resets");
}

#[test]
fn pg_collect_episodes_records_what_the_plants_did() {
    // Pendulum never terminates: every episode is cut at 200 steps.
    let model = ActorCritic::new(3, 1, &[8], &[8], Act::Tanh, 0.0, &mut rng(72));
    let (mut envs, logs) = recorded("pendulum", 3);
    let mut rms = RunningMeanStd::new(3);
    let batch = collect_episodes(&model, &mut envs, &mut rms, RAW, &mut rng(7));
    assert_eq!(batch.bounds, [0, 200, 400, 600]);
    assert_eq!(batch.terminated, [false; 3]);
    assert_eq!(batch.final_obs.len(), 3 * 3);
    assert_eq!((batch.obs.len(), batch.actions.len()), (600 * 3, 600));
    for (i, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let len = check_against_log(&batch, i, &log, |o| o.to_vec(), &[-2.0], &[2.0]);
        assert_eq!(len, 200);
    }
    // Some actions fall outside [−2, 2] (σ = 1 around μ ≈ 0): the batch
    // keeps the sampled ones, the plant got them clamped.
    assert!(batch.actions.iter().any(|u| u.abs() > 2.0));

    // Cart-pole under a random policy falls over: every episode
    // terminates, well before the 500-step limit.
    let model = ActorCritic::new(4, 1, &[8], &[8], Act::Tanh, 0.0, &mut rng(73));
    let n = 8;
    let (mut envs, logs) = recorded("cartpole", n);
    let mut rms = RunningMeanStd::new(4);
    let batch = collect_episodes(&model, &mut envs, &mut rms, RAW, &mut rng(8));
    assert_eq!(batch.episodes(), n);
    assert_eq!(batch.final_obs.len(), n * 4);
    assert!(batch.terminated.iter().all(|&t| t));
    let theta_max = 12.0 * 2.0 * std::f32::consts::PI / 360.0;
    let inside = |o: &[f32]| o[0].abs() <= 2.4 && o[2].abs() <= theta_max;
    let mut lens = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let len = check_against_log(&batch, i, &log, |o| o.to_vec(), &[-1.0], &[1.0]);
        assert!((1..500).contains(&len), "episode {i}: length {len}");
        lens.push(len);
        // Inside the bounds at every step, outside after the last.
        for t in batch.range(i) {
            assert!(inside(&batch.obs[t * 4..(t + 1) * 4]), "episode {i}");
        }
        assert!(!inside(&batch.final_obs[i * 4..(i + 1) * 4]), "episode {i}");
    }
    assert!(lens.iter().any(|&l| l != lens[0]), "lengths {lens:?}");
}

#[test]
fn pg_collect_episodes_updates_obs_statistics_only_when_asked() {
    let model = ActorCritic::new(3, 1, &[8], &[8], Act::Tanh, -0.5, &mut rng(74));
    let prior = RunningMeanStd {
        mean: vec![0.1, -0.2, 0.3],
        var: vec![0.5, 2.0, 4.0],
        count: 100.0,
    };
    let clip = 1.5;
    // Frozen: the statistics do not move, and the policy saw
    // clip((x − mean)/√(var + 1e-8)).
    let (mut envs, logs) = recorded("pendulum", 2);
    let mut rms = prior.clone();
    let norm = ObsNorm {
        enabled: true,
        clip,
        update: false,
    };
    let batch = collect_episodes(&model, &mut envs, &mut rms, norm, &mut rng(9));
    assert_eq!(
        (&rms.mean, &rms.var, rms.count),
        (&prior.mean, &prior.var, 100.0)
    );
    let normalize = |o: &[f32]| -> Vec<f32> {
        o.iter()
            .enumerate()
            .map(|(d, &x)| {
                let inv = (1.0 / (prior.var[d] + 1e-8).sqrt()) as f32;
                ((x - prior.mean[d] as f32) * inv).clamp(-clip, clip)
            })
            .collect()
    };
    for (i, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        check_against_log(&batch, i, &log, normalize, &[-2.0], &[2.0]);
    }
    assert!(
        batch.obs.iter().any(|&x| x == clip || x == -clip),
        "clip reached"
    );

    // Updating: the statistics become those of the prior merged with every
    // observation the policy acted on (not the final ones).
    let (mut envs, logs) = recorded("pendulum", 2);
    let mut rms = prior.clone();
    let norm = ObsNorm {
        enabled: true,
        clip,
        update: true,
    };
    let batch = collect_episodes(&model, &mut envs, &mut rms, norm, &mut rng(9));
    let mut raw: Vec<Vec<f32>> = Vec::new();
    for log in &logs {
        let log = log.lock().unwrap();
        raw.push(log.resets[0].clone());
        let len = log.steps.len();
        raw.extend(log.steps[..len - 1].iter().map(|s| s.next_obs.clone()));
    }
    assert_eq!(raw.len(), batch.steps());
    let total = 100.0 + raw.len() as f64;
    assert!((rms.count - total).abs() < 1e-9, "count {}", rms.count);
    for d in 0..3 {
        let sum: f64 = raw.iter().map(|o| o[d] as f64).sum();
        let mean = (100.0 * prior.mean[d] + sum) / total;
        let ss: f64 = raw.iter().map(|o| (o[d] as f64 - mean).powi(2)).sum();
        let var = (100.0 * (prior.var[d] + (prior.mean[d] - mean).powi(2)) + ss) / total;
        assert!((rms.mean[d] - mean).abs() < 1e-9, "mean[{d}]");
        assert!((rms.var[d] - var).abs() < 1e-9 * var, "var[{d}]");
    }
}

// ---------------------------------------------------------------------------
// policy_gradient against hand formulas.

/// A cart-pole model with a randomised actor and critic, and a batch of
/// episodes from it (all terminated).
fn cartpole_case(seed: u64, n: usize) -> (ActorCritic, EpisodeBatch) {
    let mut r = rng(seed);
    let mut model = ActorCritic::new(4, 1, &[8], &[8], Act::Tanh, -0.3, &mut r);
    let actor = random_params(&model.actor, 1.0, &mut r);
    let critic = random_params(&model.critic, 1.0, &mut r);
    let (ar, cr) = (model.actor_range(), model.critic_range());
    model.params[ar].copy_from_slice(&actor);
    model.params[cr].copy_from_slice(&critic);
    let mut rms = RunningMeanStd::new(4);
    let batch = collect_episodes(&model, &mut plants("cartpole", n), &mut rms, FROZEN, &mut r);
    (model, batch)
}

#[test]
fn pg_policy_gradient_with_the_optimal_baseline_is_the_hand_formula() {
    let (model, batch) = cartpole_case(81, 6);
    let n = batch.episodes();
    let opts = PgOptions {
        gamma: 0.95,
        time_discount: false,
    };
    let score = episode_score_grads(&model, &batch);
    let p = model.critic_range().start;
    assert_eq!((score.len(), score[0].len()), (n, p));
    let rets = batch.returns(opts.gamma);

    // b_k = Σ_i g_ik² R_i / Σ_i g_ik².
    let b = optimal_baseline(&score, &rets);
    let want_b: Vec<f64> = (0..p)
        .map(|k| {
            let num: f64 = (0..n)
                .map(|i| (score[i][k] as f64).powi(2) * rets[i] as f64)
                .sum();
            let den: f64 = (0..n).map(|i| (score[i][k] as f64).powi(2)).sum();
            num / den
        })
        .collect();
    assert_close("optimal_baseline", &b, &want_b, 1e-5);

    // ĝ_k = (1/N) Σ_i g_ik (R_i − b_k), and without baseline (1/N) Σ g_ik R_i
    // (per-episode backward passes against one pass over the batch).
    for (base, bk) in [
        (Baseline::Optimal, &want_b),
        (Baseline::None, &vec![0.0; p]),
    ] {
        let est = Estimator::Reinforce(ReturnKind::Full, base);
        let got = policy_gradient(&model, &batch, est, None, &opts);
        let want: Vec<f64> = (0..p)
            .map(|k| {
                (0..n)
                    .map(|i| score[i][k] as f64 * (rets[i] as f64 - bk[k]))
                    .sum::<f64>()
                    / n as f64
            })
            .collect();
        assert_close_scaled(&est.label(), &got, &want, 1e-4);
    }
}

#[test]
#[should_panic(expected = "full return")]
fn pg_policy_gradient_refuses_the_optimal_baseline_on_reward_to_go() {
    let (model, batch) = cartpole_case(82, 2);
    let opts = PgOptions {
        gamma: 1.0,
        time_discount: false,
    };
    let est = Estimator::Reinforce(ReturnKind::RewardToGo, Baseline::Optimal);
    policy_gradient(&model, &batch, est, None, &opts);
}

#[test]
fn pg_gae_one_is_reward_to_go_with_the_value_baseline() {
    let opts = PgOptions {
        gamma: 0.97,
        time_discount: false,
    };
    let g = opts.gamma as f64;
    let gae1 = Estimator::Gae(1.0);
    let rtg_v = Estimator::Reinforce(ReturnKind::RewardToGo, Baseline::Value);

    // Terminated episodes: the two estimators are the same.
    let (model, batch) = cartpole_case(83, 6);
    let v = BatchValues::of(&model, &batch, 1.0);
    assert_eq!(v.values.len(), batch.steps());
    assert!(v.final_values.iter().all(|&x| x == 0.0), "terminated");
    let a = policy_gradient(&model, &batch, gae1, Some(&v), &opts);
    let b = policy_gradient(&model, &batch, rtg_v, Some(&v), &opts);
    assert_close_scaled("GAE(1) vs reward-to-go − V", &a, &f64s(&b), 1e-4);
    assert!(a.iter().any(|&x| x != 0.0));

    // Truncated episodes (pendulum): GAE(1) also bootstraps from the final
    // state, adding (1/N) Σ_i Σ_t γ^{L_i − t} V(s_final,i) ∇log π (values
    // scaled by 20 so that the term is well above the tolerance).
    let mut r = rng(84);
    let mut model = ActorCritic::new(3, 1, &[8], &[8], Act::Tanh, -0.3, &mut r);
    let critic = random_params(&model.critic, 1.0, &mut r);
    let cr = model.critic_range();
    model.params[cr].copy_from_slice(&critic);
    let mut rms = RunningMeanStd::new(3);
    let batch = collect_episodes(&model, &mut plants("pendulum", 3), &mut rms, FROZEN, &mut r);
    let v = BatchValues::of(&model, &batch, 20.0);
    assert!(v.final_values.iter().all(|&x| x != 0.0), "truncated");
    let a = policy_gradient(&model, &batch, gae1, Some(&v), &opts);
    let b = policy_gradient(&model, &batch, rtg_v, Some(&v), &opts);
    let mut w = vec![0.0f32; batch.steps()];
    for i in 0..batch.episodes() {
        let end = batch.range(i).end;
        for t in batch.range(i) {
            w[t] = (g.powi((end - t) as i32) * v.final_values[i] as f64) as f32;
        }
    }
    let boot = weighted_score(&model, &batch, &w);
    let want: Vec<f64> = b
        .iter()
        .zip(&boot)
        .map(|(&x, &y)| x as f64 + y as f64)
        .collect();
    assert_close_scaled("GAE(1) vs reward-to-go − V + bootstrap", &a, &want, 1e-4);
    let dist = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let scale = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    println!("bootstrap term: max difference {dist:.3e}, gradient scale {scale:.3e}");
    assert!(dist > 1e-2 * scale, "the bootstrap term is negligible");
}
