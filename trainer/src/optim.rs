//! Adam with global gradient-norm clipping.
//!
//! `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `θ ← θ − lr · m̂ / (√v̂ + ε)` with bias-corrected `m̂ = m/(1−β₁ᵗ)`,
//! `v̂ = v/(1−β₂ᵗ)` — PyTorch's formulation, with PPO's ε = 1e-5.

use serde::{Deserialize, Serialize};

/// Adam state for one flat parameter vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adam {
    /// First-moment estimates.
    pub m: Vec<f32>,
    /// Second-moment estimates.
    pub v: Vec<f32>,
    /// Steps taken.
    pub t: u64,
    /// β₁.
    pub beta1: f32,
    /// β₂.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
}

impl Adam {
    /// Zeroed state for `n` parameters.
    pub fn new(n: usize, eps: f32) -> Self {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps,
        }
    }

    /// One update of `params` with gradient `grad` and learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32], lr: f32) {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        let step = lr / bc1;
        let bc2_sqrt = bc2.sqrt();
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step * *m / (v.sqrt() / bc2_sqrt + eps);
        }
    }
}

/// Scales `grad` so its L2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grad: &mut [f32], max_norm: f32) -> f32 {
    let norm = grad
        .iter()
        .map(|g| (*g as f64) * (*g as f64))
        .sum::<f64>()
        .sqrt() as f32;
    if norm > max_norm && norm.is_finite() {
        let s = max_norm / (norm + 1e-6);
        grad.iter_mut().for_each(|g| *g *= s);
    }
    norm
}

/// One guarded optimizer step, shared by PPO and the off-policy fine-tune:
/// refuses a non-finite loss term, gradient norm or resulting weight and
/// says which (`"policy loss is NaN"`, `"weight 12 became inf"`); otherwise
/// clips `grad` to `max_grad_norm`, takes an Adam step and returns the
/// gradient norm before clipping. The caller adds where it happened.
pub fn guarded_step(
    st: &crate::loss::LossStats,
    grad: &mut [f32],
    params: &mut [f32],
    adam: &mut Adam,
    max_grad_norm: f32,
    lr: f32,
) -> Result<f32, String> {
    for (name, v) in [
        ("policy loss", st.pg_loss),
        ("value loss", st.v_loss),
        ("entropy", st.entropy),
    ] {
        if !v.is_finite() {
            return Err(format!("{name} is {v}"));
        }
    }
    let gn = clip_grad_norm(grad, max_grad_norm);
    if !gn.is_finite() {
        return Err(format!("gradient norm is {gn}"));
    }
    adam.step(params, grad, lr);
    if let Some(k) = params.iter().position(|p| !p.is_finite()) {
        return Err(format!("weight {k} became {}", params[k]));
    }
    Ok(gn)
}
