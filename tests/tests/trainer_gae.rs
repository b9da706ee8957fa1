//! `gae::gae` (backward recursion) against a naive forward sum.
//!
//! Reference, in f64, for each t: `Â_t = Σ_k (γλ)^k δ_{t+k}` with
//! `δ_j = r_j + γ·(1 − term_j)·V(s'_j) − V(s_j)`, summing k = 0, 1, … and
//! stopping *after* the first step j that ends its episode (terminated or
//! truncated) or at the end of the rollout. A terminated step contributes
//! no bootstrap; a truncated one bootstraps from `next_values[j]`; the last
//! step of the rollout bootstraps from `next_values[T−1]`.

use tinyppo_trainer::gae::gae;

use crate::trainer_util::{normal, rng, uniform, Rollout};

const T: usize = 13;
const N: usize = 4;

/// A 13 × 4 time-major rollout. Env 0 terminates at t = 3 and 9, env 1 is
/// truncated at t = 5 and terminates at t = 11, env 2 is truncated at
/// t = 12 (the last step), env 3 never ends. Consistent like the trainer's
/// buffer: a step that does not end its episode has
/// `next_values[t] = values[t+1]` (except at t = T−1, which bootstraps from
/// a value of its own); a terminated step's `next_values` is garbage that
/// must be ignored.
fn rollout(seed: u64) -> Rollout {
    let mut r = rng(seed);
    let b = T * N;
    let rewards: Vec<f32> = (0..b).map(|_| normal(&mut r)).collect();
    let values: Vec<f32> = (0..b).map(|_| 2.0 * normal(&mut r)).collect();
    let mut terminated = vec![false; b];
    let mut truncated = vec![false; b];
    for (t, n) in [(3, 0), (9, 0), (11, 1)] {
        terminated[t * N + n] = true;
    }
    for (t, n) in [(5, 1), (12, 2)] {
        truncated[t * N + n] = true;
    }
    let mut next_values = vec![0.0; b];
    for t in 0..T {
        for n in 0..N {
            let i = t * N + n;
            next_values[i] = if terminated[i] {
                uniform(&mut r, 50.0, 100.0) // must be ignored
            } else if truncated[i] || t + 1 == T {
                3.0 * normal(&mut r) // bootstrap value
            } else {
                values[i + N]
            };
        }
    }
    Rollout {
        rewards,
        values,
        next_values,
        terminated,
        truncated,
        num_envs: N,
    }
}

fn naive(ro: &Rollout, gamma: f64, lambda: f64) -> Vec<f64> {
    let mut adv = vec![0.0; T * N];
    for n in 0..N {
        for t in 0..T {
            let mut sum = 0.0;
            let mut w = 1.0;
            for j in t..T {
                let i = j * N + n;
                let boot = if ro.terminated[i] {
                    0.0
                } else {
                    ro.next_values[i] as f64
                };
                let delta = ro.rewards[i] as f64 + gamma * boot - ro.values[i] as f64;
                sum += w * delta;
                w *= gamma * lambda;
                if ro.terminated[i] || ro.truncated[i] {
                    break;
                }
            }
            adv[t * N + n] = sum;
        }
    }
    adv
}

fn fast(ro: &Rollout, gamma: f32, lambda: f32) -> Vec<f32> {
    let mut adv = vec![f32::NAN; T * N];
    gae(&ro.input(), gamma, lambda, &mut adv);
    adv
}

fn assert_close(what: &str, fast: &[f32], reference: &[f64], tol: f64) {
    for (i, (&a, &b)) in fast.iter().zip(reference).enumerate() {
        assert!(
            (a as f64 - b).abs() <= tol * (1.0 + b.abs()),
            "{what}: t = {}, env = {}: gae {a}, reference {b}",
            i / N,
            i % N
        );
    }
}

#[test]
fn trainer_gae_matches_naive_sum() {
    for (seed, gamma, lambda) in [(1, 0.99f32, 0.95f32), (2, 0.9, 0.8), (3, 0.97, 1.0)] {
        let ro = rollout(seed);
        let reference = naive(&ro, gamma as f64, lambda as f64);
        assert_close(
            &format!("γ={gamma} λ={lambda}"),
            &fast(&ro, gamma, lambda),
            &reference,
            1e-5,
        );
    }
}

#[test]
fn trainer_gae_lambda_zero_is_td_error() {
    // λ = 0: Â_t = δ_t = r_t + γ(1 − term_t)V(s'_t) − V(s_t).
    let ro = rollout(4);
    let gamma = 0.9f32;
    let adv = fast(&ro, gamma, 0.0);
    let delta: Vec<f64> = (0..T * N)
        .map(|i| {
            let boot = if ro.terminated[i] {
                0.0
            } else {
                ro.next_values[i] as f64
            };
            ro.rewards[i] as f64 + gamma as f64 * boot - ro.values[i] as f64
        })
        .collect();
    assert_close("λ = 0", &adv, &delta, 1e-6);
}

#[test]
fn trainer_gae_lambda_one_gamma_one_is_monte_carlo() {
    // γ = λ = 1: the sum telescopes to (rewards until the episode or the
    // rollout ends) + (bootstrap value unless terminated) − V(s_t).
    let ro = rollout(5);
    let adv = fast(&ro, 1.0, 1.0);
    for n in 0..N {
        for t in 0..T {
            let mut g = 0.0f64;
            let mut j = t;
            loop {
                let i = j * N + n;
                g += ro.rewards[i] as f64;
                if ro.terminated[i] {
                    break;
                }
                if ro.truncated[i] || j + 1 == T {
                    g += ro.next_values[i] as f64;
                    break;
                }
                j += 1;
            }
            let want = g - ro.values[t * N + n] as f64;
            let got = adv[t * N + n] as f64;
            assert!(
                (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                "t = {t}, env = {n}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn trainer_gae_termination_ignores_next_value() {
    // Changing next_values at terminated steps changes nothing; at a
    // truncated step it changes exactly that step and the earlier steps of
    // the same episode, by (γλ)^k·γ·Δ.
    let mut ro = rollout(6);
    let base = fast(&ro, 0.9, 0.95);
    for i in 0..T * N {
        if ro.terminated[i] {
            ro.next_values[i] = -1e3;
        }
    }
    assert_eq!(fast(&ro, 0.9, 0.95), base);
    let (tt, n) = (5, 1); // the truncation of env 1
    ro.next_values[tt * N + n] += 1.0;
    let moved = fast(&ro, 0.9, 0.95);
    for t in 0..T {
        for e in 0..N {
            let i = t * N + e;
            let want = if e == n && t <= tt {
                0.9 * (0.9f32 * 0.95).powi((tt - t) as i32)
            } else {
                0.0
            };
            assert!(
                (moved[i] - base[i] - want).abs() < 1e-5,
                "t = {t}, env = {e}"
            );
        }
    }
}
