//! TRPO's step (notes (6.33)–(6.34)): maximize the surrogate
//! `L(θ) = E[π_θ(u|x)/π_old(u|x) · Â]` subject to the mean KL
//! `D̄(θ) = E_x[D_KL(π_old(·|x) ‖ π_θ(·|x))] ≤ δ`, by a natural-gradient
//! step and a backtracking line search (Schulman et al. 2015, appendix C).
//!
//! Near `θ_old`, `L(θ) ≈ gᵀΔ` and `D̄(θ) ≈ ½ ΔᵀFΔ` with `g = ∇L(θ_old)`
//! and `F` the Fisher matrix of the policy (the Hessian of `D̄` at
//! `θ_old`). The maximizer of the linear model on the quadratic ball is
//! `Δ = √(2δ / xᵀFx) · x` with `x = F⁻¹g`, the natural gradient; `x` comes
//! from [`conjugate_gradient`] on `(F + λI) x = g` (damping `λ`), which
//! only needs products `F v` ([`FisherVector`]).
//!
//! **The Fisher–vector product** is exact, in the Gauss–Newton form. The
//! policy is `N(μ_θ(x), diag σ²)` with `σ = exp(log_std)` independent of
//! `x`, so the Fisher matrix of the mean KL is block diagonal: for the
//! network's parameters `F_μ = (1/B) Σ_i J_iᵀ diag(1/σ²) J_i`, with `J_i`
//! the Jacobian of `μ(x_i)` (the Fisher of a Gaussian with respect to its
//! mean is `diag(1/σ²)`); for `log σ_j` it is `2` (the KL's second
//! derivative in `log σ_j` at `σ_old`); and the cross terms vanish (the
//! KL's mixed derivatives in `μ` and `log σ` are 0 at `θ_old`). So
//! `F_μ v = (1/B) Jᵀ(diag(1/σ²) (J v))`: one forward-mode pass
//! ([`Mlp::jvp`](crate::mlp::Mlp::jvp)) and one backward pass through
//! the hand-written [`Mlp::backward`](crate::mlp::Mlp::backward). We use
//! it rather than a double backward because the network has no second
//! derivative code, and because `JᵀMJ` is positive semi-definite by
//! construction (the KL's Hessian is too at `θ_old`, but its numerical
//! double-backward form need not be), which conjugate gradient needs.
//!
//! The line search accepts the largest `α^k Δ` (`k = 0…max_backtracks−1`)
//! whose exact mean KL is `≤ δ` **and** whose surrogate improved; if none
//! does, the policy does not move.

use ndarray::{Array2, ArrayView2};

use crate::mlp::Cache;
use crate::model::ActorCritic;

/// `F v` for the policy of `model` on a batch of observations.
pub struct FisherVector<'a> {
    model: &'a ActorCritic,
    /// The actor's forward pass on the batch at `θ_old`.
    cache: Cache,
    /// `1/σ_j²` at `θ_old`.
    inv_var: Vec<f32>,
    /// `λ`.
    damping: f32,
    batch: usize,
}

impl<'a> FisherVector<'a> {
    /// The product at `model`'s current parameters on the normalized
    /// observations `obs` (`B × obs_dim`), with damping `λ`.
    pub fn new(model: &'a ActorCritic, obs: ArrayView2<f32>, damping: f32) -> Self {
        let mut cache = Cache::default();
        model.actor.forward(model.actor_params(), obs, &mut cache);
        let inv_var = model.log_std().iter().map(|&l| (-2.0 * l).exp()).collect();
        FisherVector {
            model,
            cache,
            inv_var,
            damping,
            batch: obs.nrows(),
        }
    }

    /// Dimension of the policy's parameters: the actor network's, then
    /// the log-stds (the layout of [`ActorCritic::params`] up to the
    /// critic).
    pub fn dim(&self) -> usize {
        self.model.critic_range().start
    }

    /// `(F + λI) v` for `v` over the policy's parameters ([`dim`](Self::dim)).
    pub fn apply(&mut self, v: &[f32]) -> Vec<f32> {
        let m = self.model;
        let na = m.actor_range().len();
        let (v_net, v_std) = v.split_at(na);
        let mut jv = m.actor.jvp(m.actor_params(), v_net, &self.cache);
        let scale = 1.0 / self.batch as f32;
        for mut row in jv.rows_mut() {
            for (x, &w) in row.iter_mut().zip(&self.inv_var) {
                *x *= w * scale;
            }
        }
        let mut out = vec![0.0f32; v.len()];
        m.actor
            .backward(m.actor_params(), &mut self.cache, jv.view(), &mut out[..na]);
        for (o, &x) in out[na..].iter_mut().zip(v_std) {
            *o = 2.0 * x;
        }
        for (o, &x) in out.iter_mut().zip(v) {
            *o += self.damping * x;
        }
        out
    }
}

/// `Σ a_i b_i` in f64 (the CG's inner products).
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Conjugate gradient on `A x = b` for a symmetric positive-definite `A`
/// given as its product `a(v)`, from `x = 0`, for at most `iters`
/// iterations or until `‖r‖² ≤ tol`. Returns `x` and the iterations run.
pub fn conjugate_gradient(
    mut a: impl FnMut(&[f32]) -> Vec<f32>,
    b: &[f32],
    iters: usize,
    tol: f64,
) -> (Vec<f32>, usize) {
    let mut x = vec![0.0f32; b.len()];
    let mut r = b.to_vec();
    let mut p = b.to_vec();
    let mut rr = dot(&r, &r);
    for k in 0..iters {
        if rr <= tol {
            return (x, k);
        }
        let ap = a(&p);
        let pap = dot(&p, &ap);
        if pap.is_nan() || pap <= 0.0 {
            // Not positive definite along p (or NaN): stop with what we have.
            return (x, k);
        }
        let alpha = rr / pap;
        for ((xi, ri), (&pi, &api)) in x.iter_mut().zip(&mut r).zip(p.iter().zip(&ap)) {
            *xi += (alpha * pi as f64) as f32;
            *ri -= (alpha * api as f64) as f32;
        }
        let rr_new = dot(&r, &r);
        let beta = rr_new / rr;
        for (pi, &ri) in p.iter_mut().zip(&r) {
            *pi = (ri as f64 + beta * *pi as f64) as f32;
        }
        rr = rr_new;
    }
    (x, iters)
}

/// `(1/B) Σ_i D_KL(N(μ_old,i, σ_old²) ‖ N(μ_i, σ²))` for diagonal
/// Gaussians: per dimension
/// `log(σ/σ_old) + (σ_old² + (μ_old − μ)²)/(2σ²) − ½`, summed over
/// dimensions, averaged over the batch (f64).
pub fn mean_kl(
    mu_old: ArrayView2<f32>,
    log_std_old: &[f32],
    mu: ArrayView2<f32>,
    log_std: &[f32],
) -> f64 {
    let b = mu.nrows().max(1);
    let mut sum = 0.0f64;
    for (ro, rn) in mu_old.rows().into_iter().zip(mu.rows()) {
        for j in 0..ro.len() {
            let (lo, ln) = (log_std_old[j] as f64, log_std[j] as f64);
            let (vo, vn) = ((2.0 * lo).exp(), (2.0 * ln).exp());
            let d = ro[j] as f64 - rn[j] as f64;
            sum += ln - lo + (vo + d * d) / (2.0 * vn) - 0.5;
        }
    }
    sum / b as f64
}

/// What [`line_search`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineSearch {
    /// The accepted fraction of the full step (`α^k`), 0 if none.
    pub fraction: f32,
    /// Steps tried.
    pub tries: u32,
    /// The surrogate's improvement at the accepted step (0 if none).
    pub improvement: f64,
    /// The mean KL at the accepted step (0 if none).
    pub kl: f64,
}

/// Tries `θ_old + α^k Δ` for `k = 0, 1, …, max_tries − 1` and accepts the
/// first with `kl ≤ δ` and a positive surrogate improvement; `eval(f)`
/// returns `(improvement, kl)` of the step scaled by `f`. Never accepts a
/// step that breaks either condition (NaN breaks both).
pub fn line_search(
    mut eval: impl FnMut(f32) -> (f64, f64),
    max_kl: f64,
    shrink: f32,
    max_tries: u32,
) -> LineSearch {
    let mut f = 1.0f32;
    for k in 0..max_tries {
        let (improvement, kl) = eval(f);
        if kl <= max_kl && improvement > 0.0 {
            return LineSearch {
                fraction: f,
                tries: k + 1,
                improvement,
                kl,
            };
        }
        f *= shrink;
    }
    LineSearch {
        fraction: 0.0,
        tries: max_tries,
        improvement: 0.0,
        kl: 0.0,
    }
}

/// The actor's means on `obs` with parameters `params` (the actor
/// network's slice).
pub fn means(model: &ActorCritic, params: &[f32], obs: ArrayView2<f32>) -> Array2<f32> {
    let mut cache = Cache::default();
    model.actor.forward(params, obs, &mut cache).to_owned()
}
