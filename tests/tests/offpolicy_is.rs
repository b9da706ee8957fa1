//! Importance sampling identities behind the off-policy estimators
//! (`trainer/src/offpolicy.rs`, notes (6.2)), with Gaussian target `π` and
//! behaviour `μ`, and the weight helpers (truncation in log space, the
//! per-decision product, the effective sample size).
//!
//! - `E_μ[(π/μ) f] = E_π[f]` for `f ∈ {a, a², cos a}`: Monte Carlo with
//!   `N = 200 000` samples of `μ` against the closed forms
//!   `E_π[a] = m`, `E_π[a²] = m² + s²`, `E_π[cos a] = e^{−s²/2} cos m`,
//!   within `4σ/√N` (σ the sample standard deviation of `(π/μ) f`).
//! - Truncation: `E_μ[min(ρ̄, w) f] = E_π[f] − E_π[(1 − ρ̄/w)₊ f]`, with
//!   `w = π/μ`. Proof: `E_μ[min(ρ̄, w) f] = E_μ[w f] − E_μ[(w − ρ̄)₊ f]` and
//!   `E_μ[(w − ρ̄)₊ f] = E_π[(1 − ρ̄/w)₊ f]` by (6.2). Checked exactly by
//!   quadrature, and by two independent Monte Carlo estimates (samples of
//!   `μ` on the left, of `π` on the right) within 4 combined σ/√N.
//!
//! `π = N(0.5, 0.8²)` and `μ = N(0, 1)`: `μ` is wider than `π/√2`, so
//! `E_μ[w²] < ∞` and the estimators have finite variance.

use tinyppo_trainer::model::gaussian_log_prob;
use tinyppo_trainer::offpolicy::{
    ess_fraction, ess_fraction_log, kl_behaviour_prox, per_decision_weights, single_ratio_weights,
    truncated_weight,
};

use crate::trainer_util::{integrate, mean_se, normal, rng};

const PI: (f64, f64) = (0.5, 0.8);
const MU: (f64, f64) = (0.0, 1.0);
const N: usize = 200_000;

fn log_density(a: f64, (m, s): (f64, f64)) -> f64 {
    let z = (a - m) / s;
    -0.5 * z * z - s.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
}

/// `log w(a) = log π(a) − log μ(a)` through the trainer's f32 Gaussian
/// log-density (the function the fine-tune uses).
fn log_w(a: f32) -> f32 {
    let lp = gaussian_log_prob(&[a], &[PI.0 as f32], &[(PI.1 as f32).ln()]);
    let lm = gaussian_log_prob(&[a], &[MU.0 as f32], &[(MU.1 as f32).ln()]);
    lp - lm
}

type F = (&'static str, fn(f64) -> f64, f64);

fn functions() -> [F; 3] {
    let (m, s) = PI;
    [
        ("a", |a| a, m),
        ("a²", |a| a * a, m * m + s * s),
        ("cos a", f64::cos, (-0.5 * s * s).exp() * m.cos()),
    ]
}

fn samples(seed: u64, (m, s): (f64, f64)) -> Vec<f32> {
    let mut r = rng(seed);
    (0..N)
        .map(|_| (m + s * normal(&mut r) as f64) as f32)
        .collect()
}

#[test]
fn offpolicy_importance_weights_reweight_mu_samples_to_pi_expectations() {
    let a_mu = samples(1, MU);
    for (name, f, truth) in functions() {
        let wf: Vec<f64> = a_mu
            .iter()
            .map(|&a| truncated_weight(log_w(a), f32::INFINITY) as f64 * f(a as f64))
            .collect();
        let (est, se) = mean_se(&wf);
        println!("E_μ[w·{name}] = {est:.5} ± {se:.5}, E_π[{name}] = {truth:.5}");
        assert!(
            (est - truth).abs() <= 4.0 * se,
            "f = {name}: IS estimate {est} vs {truth} (4σ/√N = {})",
            4.0 * se
        );
        // The unweighted mean is not E_π[f]: the test can tell them apart.
        let plain = a_mu.iter().map(|&a| f(a as f64)).sum::<f64>() / N as f64;
        assert!((plain - truth).abs() > 10.0 * se, "f = {name}");
    }
}

#[test]
fn offpolicy_truncation_identity_holds_exactly_and_in_monte_carlo() {
    let p = |a: f64| log_density(a, PI).exp();
    let q = |a: f64| log_density(a, MU).exp();
    let a_mu = samples(2, MU);
    let a_pi = samples(3, PI);
    for rho_bar in [0.5f64, 1.0, 1.5] {
        for (name, f, truth) in functions() {
            // Quadrature: both sides of the identity, and E_π[f] itself.
            let lhs = integrate(|a| (p(a) / q(a)).min(rho_bar) * f(a) * q(a));
            let excess = integrate(|a| (1.0 - rho_bar * q(a) / p(a)).max(0.0) * f(a) * p(a));
            let e_pi = integrate(|a| f(a) * p(a));
            assert!((e_pi - truth).abs() < 1e-9, "{name}: quadrature {e_pi}");
            assert!(
                (lhs - (e_pi - excess)).abs() < 1e-9,
                "ρ̄ = {rho_bar}, f = {name}: {lhs} vs {}",
                e_pi - excess
            );

            // Monte Carlo: min(ρ̄, w) from log w with the trainer's helper.
            let l: Vec<f64> = a_mu
                .iter()
                .map(|&a| truncated_weight(log_w(a), rho_bar as f32) as f64 * f(a as f64))
                .collect();
            let r: Vec<f64> = a_pi
                .iter()
                .map(|&a| {
                    let w = (log_w(a) as f64).exp();
                    f(a as f64) * (1.0 - (1.0 - rho_bar / w).max(0.0))
                })
                .collect();
            let ((ml, sl), (mr, sr)) = (mean_se(&l), mean_se(&r));
            let tol = 4.0 * (sl * sl + sr * sr).sqrt();
            println!(
                "ρ̄ = {rho_bar}, f = {name}: E_μ[min(ρ̄,w) f] = {ml:.5}, \
                 E_π[f] − E_π[(1−ρ̄/w)₊ f] = {mr:.5}, quadrature {lhs:.5}"
            );
            assert!((ml - mr).abs() <= tol, "ρ̄ = {rho_bar}, f = {name}");
            assert!((ml - lhs).abs() <= 4.0 * sl, "ρ̄ = {rho_bar}, f = {name}");
        }
    }
}

#[test]
fn offpolicy_truncated_weight_is_finite_for_any_finite_log_ratio() {
    for lr in [-1e30f32, -200.0, -80.0, 0.0, 1e-3, 80.0, 89.0, 200.0, 1e30] {
        for w_bar in [0.5f32, 1.0, 2.0, 1e6] {
            let w = truncated_weight(lr, w_bar);
            assert!(w.is_finite() && (0.0..=w_bar * (1.0 + 1e-6)).contains(&w));
            if lr < w_bar.ln() - 1e-3 && lr > -80.0 {
                assert!((w - lr.exp()).abs() <= 1e-6 * lr.exp(), "{lr} {w_bar}");
            }
        }
    }
    let mut out = [0.0f32; 3];
    single_ratio_weights(&[-1.0, 0.0, 3.0], 2.0, &mut out);
    assert_eq!(out, [(-1.0f32).exp(), 1.0, 2.0f32.ln().exp()]);
}

#[test]
fn offpolicy_per_decision_product_is_the_truncated_running_product_per_fragment() {
    // Two fragments, ratios on both sides of 1.
    let lr = [0.3f32, -0.2, 0.5, 0.4, -1.0, 0.7, 0.7, 0.7];
    let ends = [false, false, false, true, false, false, false, true];
    let w_bar = 1.6f32;
    let mut out = [0.0f32; 8];
    per_decision_weights(&lr, &ends, w_bar, &mut out);
    let mut prod = 1.0f64;
    for k in 0..lr.len() {
        prod *= (lr[k] as f64).exp();
        let want = prod.min(w_bar as f64);
        assert!(
            (out[k] as f64 - want).abs() < 1e-6 * want.max(1e-3),
            "step {k}: {} vs {want}",
            out[k]
        );
        if ends[k] {
            prod = 1.0;
        }
    }
    // The product drops below the cap again after a truncated stretch:
    // truncation is of the output, not of the running product.
    assert!(out[2] == w_bar.ln().exp() && out[3] == w_bar.ln().exp());
    assert!(out[4] < 1.0);

    // Long fragments of extreme ratios: no overflow, underflow to 0, no NaN.
    let n = 10_000;
    for (l, cap) in [(50.0f32, 2.0f32), (-50.0, 2.0), (88.0, f32::INFINITY)] {
        let lr = vec![l; n];
        let mut ends = vec![false; n];
        ends[n - 1] = true;
        let mut out = vec![0.0f32; n];
        per_decision_weights(&lr, &ends, cap, &mut out);
        assert!(out.iter().all(|w| !w.is_nan() && *w >= 0.0), "log ρ = {l}");
        if cap.is_finite() {
            assert!(out.iter().all(|w| w.is_finite()), "log ρ = {l}");
        }
    }
}

#[test]
fn offpolicy_effective_sample_size_and_kl_diagnostics() {
    assert!((ess_fraction(&[0.7; 10]) - 1.0).abs() < 1e-12);
    let mut one = [0.0f32; 10];
    one[3] = 5.0;
    assert!((ess_fraction(&one) - 0.1).abs() < 1e-12);
    assert_eq!(ess_fraction(&[0.0; 4]), 0.0);
    // (Σw)²/(NΣw²) for w = 1, 2, 3, 4: 100/(4·30).
    assert!((ess_fraction(&[1.0, 2.0, 3.0, 4.0]) - 100.0 / 120.0).abs() < 1e-12);
    // Scale-free, and the log form does not overflow.
    // (exp(100) overflows f32; the f32 logs carry ~1e-5 relative error.)
    let logs = [
        100.0f32,
        100.0 + 2f32.ln(),
        100.0 + 3f32.ln(),
        100.0 + 4f32.ln(),
    ];
    assert!((ess_fraction_log(&logs) - 100.0 / 120.0).abs() < 1e-4);

    // KL(μ‖π) by k3 from μ's samples: for π = N(0.5, 0.8²), μ = N(0, 1),
    // KL(μ‖π) = log(s_π/s_μ) + (s_μ² + (m_μ − m_π)²)/(2 s_π²) − ½.
    let a_mu = samples(4, MU);
    let lr: Vec<f32> = a_mu.iter().map(|&a| log_w(a)).collect();
    let kl = kl_behaviour_prox(&lr);
    let (m, s) = PI;
    let truth = (s / MU.1).ln() + (MU.1 * MU.1 + (MU.0 - m).powi(2)) / (2.0 * s * s) - 0.5;
    println!("k3 KL(μ‖π) = {kl:.5}, exact {truth:.5}");
    assert!((kl - truth).abs() < 0.02 * truth, "{kl} vs {truth}");
    assert_eq!(kl_behaviour_prox(&[0.0; 5]), 0.0);
}
