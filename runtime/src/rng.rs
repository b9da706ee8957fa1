//! Random numbers on the device: the default generator and f32 uniforms.
//!
//! Sampling takes any [`rand_core::RngCore`]. The shipped default is
//! xoshiro128++ (32-bit state words, four of them: fast on a Cortex-M4 and
//! reproducible everywhere), seeded explicitly, never from entropy.

/// The generator trait `Plant::reset` takes (re-exported, so a plant crate
/// needs no `rand_core` dependency of its own to name it).
pub use rand_core::RngCore;
use rand_core::SeedableRng;

/// The default generator: xoshiro128++.
pub type DefaultRng = rand_xoshiro::Xoshiro128PlusPlus;

/// A [`DefaultRng`] from a 64-bit seed (expanded with SplitMix64, so
/// nearby seeds give unrelated streams). Same seed, same stream, on every
/// platform.
pub fn seeded(seed: u64) -> DefaultRng {
    DefaultRng::seed_from_u64(seed)
}

/// Uniform in `[0, 1)` with 24 bits of resolution (every value exactly
/// representable in f32).
#[inline]
pub fn uniform01<R: RngCore + ?Sized>(rng: &mut R) -> f32 {
    (rng.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Uniform in `[lo, hi)`.
#[inline]
pub fn uniform<R: RngCore + ?Sized>(rng: &mut R, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * uniform01(rng)
}
