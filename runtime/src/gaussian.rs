//! The diagonal Gaussian policy head: sampling, log-density, entropy.
//!
//! For mean `μ(x)` and state-independent standard deviations `σ_j = exp(log_std_j)`,
//! the notes' diagonal-Gaussian log-density is
//!
//! ```text
//! log π(u|x) = −Σ_j [ (u_j − μ_j(x))² / (2σ_j²) + ½·log(2π σ_j²) ]
//!            = −½ Σ_j z_j² − Σ_j log σ_j − (d/2)·log 2π,   z_j = (u_j − μ_j)/σ_j
//! ```
//!
//! and its entropy is `Σ_j (log σ_j + ½(1 + log 2π))`. All math is plain f32
//! (`libm` and [`crate::math`]), so host and device produce the same bits.

use rand_core::RngCore;

use crate::math;

/// `½·log(2π)` in f32.
pub const HALF_LOG_2PI: f32 = 0.918_938_5;

/// Standard-normal samples by the Box–Muller transform in f32: from two
/// `u32` draws `a`, `b`, `u1 = ((a >> 8) + 1)·2⁻²⁴ ∈ (0, 1]`,
/// `r = √(−2 ln u1)` and `θ = 2π·(b >> 8)·2⁻²⁴`, the pair
/// `(r cos θ, r sin θ)`, with `ln` from `libm::logf`, `√` IEEE
/// ([`math::sqrt`]) and `(sin θ, cos θ)` from [`math::sincos_turns`].
/// Fills `out` two at a time; an odd last element draws a pair too and
/// uses `r cos θ` only. |z| ≤ √(−2 ln 2⁻²⁴) ≈ 5.77.
pub fn standard_normals<R: RngCore + ?Sized>(rng: &mut R, out: &mut [f32]) {
    let mut chunks = out.chunks_exact_mut(2);
    for pair in &mut chunks {
        let (r, (s, c)) = polar(rng);
        pair[0] = r * c;
        pair[1] = r * s;
    }
    if let [last] = chunks.into_remainder() {
        let (r, (_, c)) = polar(rng);
        *last = r * c;
    }
}

/// `(r, (sin θ, cos θ))` from two draws.
#[inline]
fn polar<R: RngCore + ?Sized>(rng: &mut R) -> (f32, (f32, f32)) {
    let u1 = ((rng.next_u32() >> 8) as f32 + 1.0) * (1.0 / 16_777_216.0);
    let k = rng.next_u32() >> 8;
    (math::sqrt(-2.0 * libm::logf(u1)), math::sincos_turns(k))
}

/// `Σ_j log σ_j + (d/2)·log 2π`: the part of `−log π` that does not depend
/// on the action.
pub fn log_normalizer(log_std: &[f32]) -> f32 {
    log_std.iter().fold(0.0, |acc, &l| acc + l + HALF_LOG_2PI)
}

/// `log π(u|x)` given the mean, `σ` and the [`log_normalizer`].
pub fn log_prob(action: &[f32], mean: &[f32], std: &[f32], log_norm: f32) -> f32 {
    let mut sq = 0.0f32;
    for ((&u, &m), &s) in action.iter().zip(mean).zip(std) {
        // Divide rather than multiply by 1/σ: one rounding instead of two.
        let z = (u - m) / s;
        sq += z * z;
    }
    -0.5 * sq - log_norm
}

/// Entropy `Σ_j (log σ_j + ½(1 + log 2π))` of the diagonal Gaussian.
pub fn entropy(log_std: &[f32]) -> f32 {
    log_std
        .iter()
        .fold(0.0, |acc, &l| acc + l + 0.5 + HALF_LOG_2PI)
}
