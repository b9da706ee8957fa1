//! TRPO's pieces (`trainer/src/trpo.rs`) against direct computations:
//! the Fisher–vector product against an explicit Fisher matrix built from
//! per-sample Jacobians (and against the mean KL's curvature by finite
//! differences), conjugate gradient against a direct solve, the line
//! search's acceptance rule, the step direction at δ → 0 against the
//! natural gradient, and a short `--algo trpo` run whose every accepted
//! step keeps the exact mean KL within δ.

use ndarray::Array2;
use proptest::prelude::*;
use tinyppo_trainer::mlp::Cache;
use tinyppo_trainer::model::ActorCritic;
use tinyppo_trainer::trpo::{conjugate_gradient, line_search, mean_kl, means, FisherVector};

use crate::trainer_grad::random_model;
use crate::trainer_util::{rng, uniform};

const B: usize = 6;

fn batch(r: &mut tinyppo_runtime::rng::DefaultRng, b: usize) -> Array2<f32> {
    Array2::from_shape_fn((b, 3), |_| uniform(r, -1.5, 1.5))
}

/// `F + λI` as a dense matrix: `(1/B) Σ_i J_iᵀ diag(1/σ²) J_i` for the
/// network's parameters (each `J_i` row by one backward pass with a
/// one-hot output gradient), `2` on the log-std diagonal.
fn explicit_fisher(model: &ActorCritic, obs: &Array2<f32>, damping: f64) -> Vec<Vec<f64>> {
    let na = model.actor_range().len();
    let ad = model.act_dim();
    let n = na + ad;
    let mut f = vec![vec![0.0f64; n]; n];
    let inv_var: Vec<f64> = model
        .log_std()
        .iter()
        .map(|&l| (-2.0 * l as f64).exp())
        .collect();
    let b_rows = obs.nrows();
    for i in 0..b_rows {
        let x = obs.slice(ndarray::s![i..i + 1, ..]).to_owned();
        for j in 0..ad {
            let mut cache = Cache::default();
            model
                .actor
                .forward(model.actor_params(), x.view(), &mut cache);
            let mut dout = Array2::<f32>::zeros((1, ad));
            dout[[0, j]] = 1.0;
            let mut row = vec![0.0f32; na];
            model
                .actor
                .backward(model.actor_params(), &mut cache, dout.view(), &mut row);
            for a in 0..na {
                for b in 0..na {
                    f[a][b] += row[a] as f64 * row[b] as f64 * inv_var[j] / b_rows as f64;
                }
            }
        }
    }
    for j in 0..ad {
        f[na + j][na + j] += 2.0;
    }
    for (k, r) in f.iter_mut().enumerate() {
        r[k] += damping;
    }
    f
}

fn matvec(m: &[Vec<f64>], v: &[f32]) -> Vec<f64> {
    m.iter()
        .map(|r| r.iter().zip(v).map(|(a, &b)| a * b as f64).sum())
        .collect()
}

/// Gaussian elimination with partial pivoting (f64).
fn solve(m: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let n = b.len();
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .zip(b)
        .map(|(r, &y)| [r.clone(), vec![y]].concat())
        .collect();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        let pivot = a[c].clone();
        for row in a.iter_mut().skip(c + 1) {
            let k = row[c] / pivot[c];
            for (x, &p) in row.iter_mut().zip(&pivot).skip(c) {
                *x -= k * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|q| a[r][q] * x[q]).sum();
        x[r] = (a[r][n] - s) / a[r][r];
    }
    x
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den
}

#[test]
fn fisher_vector_product_equals_the_explicit_fisher_matrix() {
    let mut r = rng(31);
    for _ in 0..3 {
        let model = random_model(&mut r);
        let obs = batch(&mut r, B);
        let mut fvp = FisherVector::new(&model, obs.view(), 0.1);
        let f = explicit_fisher(&model, &obs, 0.1);
        for _ in 0..4 {
            let v: Vec<f32> = (0..fvp.dim()).map(|_| uniform(&mut r, -1.0, 1.0)).collect();
            let got: Vec<f64> = fvp.apply(&v).iter().map(|&x| x as f64).collect();
            let want = matvec(&f, &v);
            assert!(rel_err(&got, &want) < 1e-5, "{}", rel_err(&got, &want));
        }
    }
}

/// The Gauss–Newton form is the mean KL's Hessian at θ_old:
/// `D̄(θ_old + εv) ≈ ½ ε² vᵀFv` (finite differences, f64 KL).
#[test]
fn fisher_is_the_curvature_of_the_mean_kl() {
    let mut r = rng(32);
    let model = random_model(&mut r);
    let obs = batch(&mut r, B);
    let mut fvp = FisherVector::new(&model, obs.view(), 0.0);
    let na = model.actor_range().len();
    let mu_old = means(&model, model.actor_params(), obs.view());
    for _ in 0..4 {
        let v: Vec<f32> = (0..fvp.dim()).map(|_| uniform(&mut r, -1.0, 1.0)).collect();
        let vfv: f64 = fvp
            .apply(&v)
            .iter()
            .zip(&v)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        let eps = 1e-2f32;
        let th: Vec<f32> = model.params[..fvp.dim()]
            .iter()
            .zip(&v)
            .map(|(&t, &d)| t + eps * d)
            .collect();
        let mu = means(&model, &th[..na], obs.view());
        let kl = mean_kl(mu_old.view(), model.log_std(), mu.view(), &th[na..]);
        let want = 0.5 * (eps as f64).powi(2) * vfv;
        assert!((kl - want).abs() / want < 0.05, "KL {kl} vs ½ε²vᵀFv {want}");
    }
}

#[test]
fn conjugate_gradient_matches_a_direct_solve() {
    let mut r = rng(33);
    let n = 24;
    // A = QᵀQ + 0.5 I, symmetric positive definite.
    let q: Vec<Vec<f64>> = (0..n)
        .map(|_| (0..n).map(|_| uniform(&mut r, -1.0, 1.0) as f64).collect())
        .collect();
    let a: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    (0..n).map(|k| q[k][i] * q[k][j]).sum::<f64>() + if i == j { 0.5 } else { 0.0 }
                })
                .collect()
        })
        .collect();
    let b: Vec<f32> = (0..n).map(|_| uniform(&mut r, -1.0, 1.0)).collect();
    let want = solve(&a, &b.iter().map(|&x| x as f64).collect::<Vec<_>>());
    let av = |v: &[f32]| {
        matvec(&a, v)
            .iter()
            .map(|&x| x as f32)
            .collect::<Vec<f32>>()
    };
    let (x, iters) = conjugate_gradient(av, &b, 200, 1e-12);
    let got: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    assert!(
        rel_err(&got, &want) < 1e-3,
        "{} after {iters}",
        rel_err(&got, &want)
    );
    // Exact arithmetic needs at most n iterations; f32 a few more.
    assert!(iters <= 2 * n, "{iters}");
    // Fewer iterations: a worse solution, never a NaN.
    let (x2, _) = conjugate_gradient(av, &b, 3, 0.0);
    assert!(x2.iter().all(|v| v.is_finite()));
}

proptest! {
    /// The line search accepts the first try with `kl ≤ δ` and a positive
    /// improvement, at the fraction `shrink^k`, and never one that breaks
    /// either (NaN breaks both).
    #[test]
    fn line_search_never_accepts_a_step_that_breaks_the_constraint(
        tries in proptest::collection::vec(
            (prop_oneof![Just(f64::NAN), -1.0f64..1.0], prop_oneof![Just(f64::NAN), 0.0f64..0.03]),
            1..12,
        ),
        delta in 0.001f64..0.02,
    ) {
        let mut k = 0;
        let mut asked = Vec::new();
        let ls = line_search(
            |f| {
                asked.push(f);
                let t = tries[k.min(tries.len() - 1)];
                k += 1;
                t
            },
            delta,
            0.5,
            tries.len() as u32,
        );
        let first_ok = tries.iter().position(|&(i, kl)| kl <= delta && i > 0.0);
        match first_ok {
            Some(j) => {
                prop_assert_eq!(ls.tries as usize, j + 1);
                prop_assert_eq!(ls.fraction, 0.5f32.powi(j as i32));
                prop_assert!(ls.kl <= delta && ls.improvement > 0.0);
            }
            None => {
                prop_assert_eq!(ls.fraction, 0.0);
                prop_assert_eq!(ls.tries as usize, tries.len());
            }
        }
        for (j, f) in asked.iter().enumerate() {
            prop_assert_eq!(*f, 0.5f32.powi(j as i32));
        }
    }
}

/// As δ → 0 (and λ → 0) the step's direction is the natural gradient
/// `F⁻¹g` of a direct solve with the explicit Fisher matrix (cosine
/// > 0.99999), and the line search accepts a step within δ.
#[test]
fn at_small_delta_the_step_is_the_natural_gradient() {
    let mut r = rng(34);
    let model = random_model(&mut r);
    // More samples than parameters: F has full rank, and the damping is
    // negligible against it.
    let obs = batch(&mut r, 8 * B * model.act_dim() * 10);
    let na = model.actor_range().len();
    let dim = model.critic_range().start;
    let g: Vec<f32> = (0..dim).map(|_| uniform(&mut r, -1.0, 1.0)).collect();
    let damping = 1e-4;
    let mut fvp = FisherVector::new(&model, obs.view(), damping as f32);
    let (x, _) = conjugate_gradient(|v| fvp.apply(v), &g, 500, 1e-14);
    let f = explicit_fisher(&model, &obs, damping);
    let direct = solve(&f, &g.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    assert!(rel_err(&xf, &direct) < 1e-3, "{}", rel_err(&xf, &direct));
    let cos = xf.iter().zip(&direct).map(|(a, b)| a * b).sum::<f64>()
        / (xf.iter().map(|a| a * a).sum::<f64>().sqrt()
            * direct.iter().map(|a| a * a).sum::<f64>().sqrt());
    assert!(cos > 0.99999, "cos {cos}");
    // The step at δ = 1e-6, scaled with the undamped F.
    let delta = 1e-6f64;
    let mut f0 = FisherVector::new(&model, obs.view(), 0.0);
    let xfx: f64 = f0
        .apply(&x)
        .iter()
        .zip(&x)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum();
    let beta = (2.0 * delta / xfx).sqrt();
    let mu_old = means(&model, model.actor_params(), obs.view());
    let ls = line_search(
        |frac| {
            let th: Vec<f32> = model.params[..dim]
                .iter()
                .zip(&x)
                .map(|(&t, &d)| t + (frac as f64 * beta * d as f64) as f32)
                .collect();
            let mu = means(&model, &th[..na], obs.view());
            // The linear model's improvement is gᵀΔ > 0 along F⁻¹g.
            let imp: f64 = g
                .iter()
                .zip(&x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>()
                * beta
                * frac as f64;
            (
                imp,
                mean_kl(mu_old.view(), model.log_std(), mu.view(), &th[na..]),
            )
        },
        delta,
        0.8,
        10,
    );
    // Accepted, within the trust region. (Not necessarily at the first
    // try: along F's smallest eigenvalues the network's curvature adds
    // terms of order ε³ that the quadratic model does not see.)
    assert!(ls.fraction > 0.0 && ls.kl <= delta, "{ls:?}");
}

/// A short TRPO run: every update's accepted step has an exact mean KL
/// within `max_kl` (0 when rejected), and the run is a function of its
/// seed.
#[test]
fn trpo_runs_keep_every_step_inside_the_trust_region() {
    use tinyppo_trainer::registry::Registry;
    use tinyppo_trainer::{config, run};
    let reg = Registry::builtin();
    let plant = reg.get("pendulum").unwrap();
    let tmp = crate::trainer_util::TempDir::new("trpo-run");
    let sets: Vec<String> = [
        "algo=\"trpo\"",
        "num_envs=2",
        "num_steps=128",
        "actor_hidden=[16]",
        "critic_hidden=[16]",
        "total_timesteps=2560",
        "trpo.max_kl=0.005",
        "trpo.vf_minibatches=4",
        "trpo.vf_epochs=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let go = |name: &str| {
        let c = config::resolve(plant, None, &sets).unwrap();
        assert_eq!(c.algo, config::Algo::Trpo);
        let dir = tmp.path().join(name);
        run::train(&reg, c, &dir, &crate::sim_to_real::opts(None), &mut |_| {}).unwrap();
        tinyppo_trainer::report::read_metrics(&dir.join("metrics.csv")).unwrap()
    };
    let rows = go("a");
    assert_eq!(rows.len(), 10);
    let mut accepted = 0;
    for m in &rows {
        assert!(
            m.approx_kl <= 0.005,
            "update {}: KL {}",
            m.update,
            m.approx_kl
        );
        if m.clipfrac > 0.0 {
            accepted += 1;
            assert!(m.approx_kl > 0.0 && m.pg_loss < 0.0, "{m:?}");
        }
    }
    assert!(accepted >= 8, "{accepted} of 10 steps accepted");
    let again = go("b");
    let bits = |r: &[tinyppo_trainer::algo::UpdateMetrics]| {
        r.iter()
            .map(|m| (m.approx_kl.to_bits(), m.pg_loss.to_bits()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&rows), bits(&again));
}
