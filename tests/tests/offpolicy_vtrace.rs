//! V-trace (`trainer/src/offpolicy.rs`, `vtrace`) against references:
//!
//! - with `π_prox = μ` (all `log ρ = 0`) it is GAE(λ): advantages equal to
//!   `gae::gae` bit for bit and targets `Â + V`, on sequences with
//!   terminations, truncations and cuts;
//! - the backward recursion equals the explicit double sums, in f64,
//!   ```text
//!   Â_t = Σ_{k=t}^{e(t)} (γλ)^{k−t} (Π_{i=t+1}^{k} c_i) δ_k
//!   v_t = V_t + Σ_{k=t}^{e(t)} (γλ)^{k−t} (Π_{i=t}^{k−1} c_i) ρ̃_k δ_k
//!   ```
//!   (`e(t)` the end of t's fragment, `c = min(c̄, ρ)`, `ρ̃ = min(ρ̄, ρ)`),
//!   with `ρ` on both sides of 1, and `v_t = V_t + c_t Â_t` when `ρ̄ = c̄`.

use tinyppo_trainer::gae::{gae, GaeInput};
use tinyppo_trainer::offpolicy::{vtrace, TraceInput};

use crate::trainer_util::{normal, rng, uniform};

/// A random sequence of `n` steps: fragments of 1–12 steps that end in a
/// termination, a truncation or a cut.
struct Seq {
    rewards: Vec<f32>,
    values: Vec<f32>,
    next_values: Vec<f32>,
    terminated: Vec<bool>,
    ends: Vec<bool>,
    log_rhos: Vec<f32>,
}

fn sequence(seed: u64, n: usize, log_rho_range: f32) -> Seq {
    let mut r = rng(seed);
    let mut s = Seq {
        rewards: Vec::new(),
        values: Vec::new(),
        next_values: Vec::new(),
        terminated: Vec::new(),
        ends: Vec::new(),
        log_rhos: Vec::new(),
    };
    let mut left = 1 + (uniform(&mut r, 0.0, 12.0) as usize);
    for t in 0..n {
        s.rewards.push(normal(&mut r));
        s.values.push(normal(&mut r));
        left -= 1;
        let end = left == 0 || t + 1 == n;
        let term = end && uniform(&mut r, 0.0, 1.0) < 0.4;
        s.terminated.push(term);
        s.ends.push(end);
        s.log_rhos.push(log_rho_range * uniform(&mut r, -1.0, 1.0));
        if end {
            left = 1 + (uniform(&mut r, 0.0, 12.0) as usize);
        }
    }
    // The successor's value is the next step's inside a fragment, and a
    // bootstrap value (ignored where terminated) at its end.
    for t in 0..n {
        s.next_values.push(if s.ends[t] {
            normal(&mut r)
        } else {
            s.values[t + 1]
        });
    }
    s
}

fn run(s: &Seq, gamma: f32, lambda: f32, rho_bar: f32, c_bar: f32) -> (Vec<f32>, Vec<f32>) {
    let inp = TraceInput {
        rewards: &s.rewards,
        values: &s.values,
        next_values: &s.next_values,
        terminated: &s.terminated,
        ends: &s.ends,
        log_rhos: &s.log_rhos,
    };
    let n = s.rewards.len();
    let (mut adv, mut tgt) = (vec![0.0; n], vec![0.0; n]);
    vtrace(&inp, gamma, lambda, rho_bar, c_bar, &mut adv, &mut tgt);
    (adv, tgt)
}

#[test]
fn offpolicy_vtrace_on_policy_is_gae() {
    for seed in 0..4 {
        let mut s = sequence(seed, 300, 0.0);
        s.log_rhos.iter_mut().for_each(|l| *l = 0.0);
        let (gamma, lambda) = (0.97, 0.9);
        // ρ = 1 is below both bars: no truncation anywhere.
        let (adv, tgt) = run(&s, gamma, lambda, 1.0, 1.0);
        let cut: Vec<bool> = s
            .ends
            .iter()
            .zip(&s.terminated)
            .map(|(&e, &t)| e && !t)
            .collect();
        let mut want = vec![0.0f32; s.rewards.len()];
        gae(
            &GaeInput {
                rewards: &s.rewards,
                values: &s.values,
                next_values: &s.next_values,
                terminated: &s.terminated,
                truncated: &cut,
                num_envs: 1,
            },
            gamma,
            lambda,
            &mut want,
        );
        for t in 0..adv.len() {
            assert_eq!(adv[t].to_bits(), want[t].to_bits(), "seed {seed}, step {t}");
            assert_eq!(tgt[t], s.values[t] + want[t], "seed {seed}, step {t}");
        }
        // The same with ρ̄ ≠ c̄ (IMPALA's recursion): still GAE, up to round-off.
        let (adv2, tgt2) = run(&s, gamma, lambda, 1.5, 2.0);
        for t in 0..adv.len() {
            assert_eq!(adv2[t], adv[t]);
            assert!((tgt2[t] - tgt[t]).abs() <= 1e-5 * (1.0 + tgt[t].abs()));
        }
    }
}

/// The explicit double sums in f64.
fn double_sum(s: &Seq, gamma: f64, lambda: f64, rho_bar: f64, c_bar: f64) -> (Vec<f64>, Vec<f64>) {
    let n = s.rewards.len();
    let rho: Vec<f64> = s.log_rhos.iter().map(|&l| (l as f64).exp()).collect();
    let c: Vec<f64> = rho.iter().map(|&r| r.min(c_bar)).collect();
    let rt: Vec<f64> = rho.iter().map(|&r| r.min(rho_bar)).collect();
    let delta: Vec<f64> = (0..n)
        .map(|t| {
            let nt = if s.terminated[t] { 0.0 } else { 1.0 };
            s.rewards[t] as f64 + gamma * nt * s.next_values[t] as f64 - s.values[t] as f64
        })
        .collect();
    let (mut adv, mut tgt) = (vec![0.0; n], vec![0.0; n]);
    for t in 0..n {
        let mut e = t;
        while !s.ends[e] {
            e += 1;
        }
        let (mut a, mut v) = (0.0, 0.0);
        for k in t..=e {
            let disc = (gamma * lambda).powi((k - t) as i32);
            let after: f64 = (t + 1..=k).map(|i| c[i]).product();
            let before: f64 = (t..k).map(|i| c[i]).product();
            a += disc * after * delta[k];
            v += disc * before * rt[k] * delta[k];
        }
        adv[t] = a;
        tgt[t] = s.values[t] as f64 + v;
    }
    (adv, tgt)
}

#[test]
fn offpolicy_vtrace_recursion_equals_the_double_sum() {
    for (seed, rho_bar, c_bar) in [
        (10u64, 1.0f32, 1.0f32),
        (11, 2.0, 2.0),
        (12, 1.5, 0.8),
        (13, 0.7, 1.3),
        (14, f32::INFINITY, f32::INFINITY),
    ] {
        // log ρ ∈ [−1.5, 1.5]: ρ from 0.22 to 4.5, both sides of 1 and of the bars.
        let s = sequence(seed, 200, 1.5);
        let rho_sides = s.log_rhos.iter().filter(|&&l| l > 0.0).count();
        assert!(rho_sides > 50 && rho_sides < 150);
        assert!(s.terminated.iter().filter(|&&t| t).count() >= 5);
        assert!(
            s.ends
                .iter()
                .zip(&s.terminated)
                .filter(|(&e, &t)| e && !t)
                .count()
                >= 5
        );
        let (gamma, lambda) = (0.95f32, 0.9f32);
        let (adv, tgt) = run(&s, gamma, lambda, rho_bar, c_bar);
        let (want_a, want_v) = double_sum(
            &s,
            gamma as f64,
            lambda as f64,
            rho_bar as f64,
            c_bar as f64,
        );
        for t in 0..adv.len() {
            let tol = |w: f64| 1e-4 * (1.0 + w.abs());
            assert!(
                (adv[t] as f64 - want_a[t]).abs() <= tol(want_a[t]),
                "ρ̄ {rho_bar} c̄ {c_bar} step {t}: Â {} vs {}",
                adv[t],
                want_a[t]
            );
            assert!(
                (tgt[t] as f64 - want_v[t]).abs() <= tol(want_v[t]),
                "ρ̄ {rho_bar} c̄ {c_bar} step {t}: v {} vs {}",
                tgt[t],
                want_v[t]
            );
            if rho_bar == c_bar {
                // The issue's form of the target.
                let c = (s.log_rhos[t] as f64).exp().min(c_bar as f64);
                let issue = s.values[t] as f64 + c * adv[t] as f64;
                assert!((tgt[t] as f64 - issue).abs() <= tol(issue), "step {t}");
            }
        }
    }
}

#[test]
fn offpolicy_vtrace_truncated_traces_cut_the_future() {
    // A single fragment whose second step has ρ → 0: c₁ = 0, so Â₀ = δ₀.
    let s = Seq {
        rewards: vec![1.0, 2.0, 3.0],
        values: vec![0.5, 0.25, 0.125],
        next_values: vec![0.25, 0.125, 4.0],
        terminated: vec![false, false, false],
        ends: vec![false, false, true],
        log_rhos: vec![0.0, -200.0, 0.0],
    };
    let (adv, tgt) = run(&s, 0.9, 0.95, 1.0, 1.0);
    let d0 = 1.0 + 0.9 * 0.25 - 0.5;
    assert!((adv[0] - d0).abs() < 1e-6, "{adv:?}");
    assert!((tgt[0] - (0.5 + d0)).abs() < 1e-6);
    // Step 1 itself is weighted by c₁ ≈ 0 in its target: v₁ ≈ V₁.
    assert!((tgt[1] - 0.25).abs() < 1e-6, "{tgt:?}");
    // Truncation bootstrap at the end: δ₂ = r + γ V(x₃) − V(x₂).
    assert!((adv[2] - (3.0 + 0.9 * 4.0 - 0.125)).abs() < 1e-5);
}
