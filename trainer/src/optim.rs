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
        let k = self.next_step(lr);
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grad)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            k.update(p, g, m, v);
        }
    }

    /// Advances `t` and returns the step's constants.
    fn next_step(&mut self, lr: f32) -> StepConsts {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        StepConsts {
            step: lr / bc1,
            bc2_sqrt: bc2.sqrt(),
            b1: self.beta1,
            b2: self.beta2,
            eps: self.eps,
        }
    }

    /// [`Adam::step`] with the gradient scaled by `scale` first (and stored
    /// back scaled), in one pass that also checks the new weights; returns
    /// whether they are all finite.
    fn step_scaled(&mut self, params: &mut [f32], grad: &mut [f32], scale: f32, lr: f32) -> bool {
        let k = self.next_step(lr);
        #[cfg(target_arch = "x86_64")]
        if crate::mlp::avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            return unsafe { k.scaled_avx2(params, grad, scale, &mut self.m, &mut self.v) };
        }
        k.scaled(params, grad, scale, &mut self.m, &mut self.v)
    }
}

/// The per-step constants of [`Adam`].
struct StepConsts {
    step: f32,
    bc2_sqrt: f32,
    b1: f32,
    b2: f32,
    eps: f32,
}

impl StepConsts {
    /// The update of one parameter.
    #[inline(always)]
    fn update(&self, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        let (b1, b2) = (self.b1, self.b2);
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        *p -= self.step * *m / (v.sqrt() / self.bc2_sqrt + self.eps);
    }

    /// The loop of [`Adam::step_scaled`] (inlined into the AVX2 copy too).
    #[inline(always)]
    fn scaled(
        &self,
        params: &mut [f32],
        grad: &mut [f32],
        scale: f32,
        m: &mut [f32],
        v: &mut [f32],
    ) -> bool {
        let mut finite = true;
        for (((p, g), m), v) in params.iter_mut().zip(grad).zip(m).zip(v) {
            *g *= scale;
            self.update(p, *g, m, v);
            finite &= p.is_finite();
        }
        finite
    }

    /// [`StepConsts::scaled`] compiled for AVX2 (8-wide square roots and
    /// divisions; the same operations, so the same results).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scaled_avx2(
        &self,
        params: &mut [f32],
        grad: &mut [f32],
        scale: f32,
        m: &mut [f32],
        v: &mut [f32],
    ) -> bool {
        self.scaled(params, grad, scale, m, v)
    }
}

/// The L2 norm of `v`, summed in f64 in eight interleaved partial sums (a
/// fixed order, so deterministic, that vectorizes).
pub fn l2_norm(v: &[f32]) -> f32 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &g) in acc.iter_mut().zip(c) {
            *a += g as f64 * g as f64;
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &g in rest {
        sum += g as f64 * g as f64;
    }
    sum.sqrt() as f32
}

/// The factor that brings a gradient of norm `norm` to at most
/// `max_norm` (1 when it is within, or not finite).
fn clip_scale(norm: f32, max_norm: f32) -> f32 {
    if norm > max_norm && norm.is_finite() {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

/// Scales `grad` so its L2 norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(grad: &mut [f32], max_norm: f32) -> f32 {
    let norm = l2_norm(grad);
    let s = clip_scale(norm, max_norm);
    if s != 1.0 {
        grad.iter_mut().for_each(|g| *g *= s);
    }
    norm
}

/// One guarded optimizer step, shared by PPO and the off-policy fine-tune:
/// refuses a non-finite loss term, gradient norm or resulting weight and
/// says which (`"policy loss is NaN"`, `"weight 12 became inf"`); otherwise
/// clips `grad` to `max_grad_norm`, takes an Adam step and returns the
/// gradient norm before clipping. The caller adds where it happened.
///
/// Two passes over the parameters: the gradient norm, then clipping, Adam
/// and the finiteness check of the new weights together.
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
    let gn = l2_norm(grad);
    if !gn.is_finite() {
        return Err(format!("gradient norm is {gn}"));
    }
    // Scaling by 1 (no clipping) is exact.
    let scale = clip_scale(gn, max_grad_norm);
    if !adam.step_scaled(params, grad, scale, lr) {
        let k = params
            .iter()
            .position(|p| !p.is_finite())
            .expect("a non-finite weight");
        return Err(format!("weight {k} became {}", params[k]));
    }
    Ok(gn)
}
