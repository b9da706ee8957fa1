//! Float math of the forward pass and the sampler, in plain IEEE f32.
//!
//! Every function here is a fixed sequence of f32 `+ − × ÷`, integer
//! operations and conversions, with no fused multiply-add, so the host and a
//! Cortex-M4F compute the same bits (`docs/FORMAT.md`, "Inference
//! semantics"). They replace `libm` where `libm` is slow on the device:
//! `libm::tanhf` (≈ 108 instructions), and `libm::sinf`/`cosf`, whose kernels
//! evaluate in f64, which the M4F's single-precision FPU emulates in
//! software (≈ 1,250 instructions each).
//!
//! - [`tanh`]: the activation of tanh networks, shared with the trainer
//!   (`trainer/src/mlp.rs` calls it), so the trainer and the f32 runtime
//!   apply the same function. (The int8 runtime quantizes the exact tanh
//!   to 8 bits instead, from a table: `kernels::tanh_q`.)
//! - [`sincos_turns`]: the Box–Muller angle, exact argument reduction.
//! - [`sqrt`]: IEEE square root (the FPU's `VSQRT` on the device).
//! - [`fmod`]: the exact f32 remainder in 32-bit integers (the pendulum's
//!   angle wrap); `libm::fmodf` links 64-bit division.
//! - [`Sum`] and [`widen`]: the run's return total without f64 arithmetic
//!   (a compensated f32 sum, widened to f64 bit by bit for the `End`
//!   frame's f64 field), so no device binary links the f64 soft-float
//!   routines (`__adddf3`, `__aeabi_f2d`…).

/// `tanh` by a [13/6] rational minimax approximation on `[−c, c]`,
/// `c = 7.905311` (the coefficients Eigen uses for f32,
/// `generic_fast_tanh_float`): `x` is clamped to `[−c, c]`, then
///
/// ```text
/// x² · (…(x²·a13 + a11)·x² + … + a1) · x  /  ((x²·b6 + b4)·x² + b2)·x² + b0
/// ```
///
/// evaluated by Horner in f32 exactly in the order written below (one
/// rounding per operation, no fused multiply-add). Max abs error against
/// f64 `tanh` < 5e-7 on the whole real line (tested), `|tanh(x)| ≤ 1`
/// for every finite `x`, exactly odd (`tanh(−x) = −tanh(x)` bit for bit:
/// the clamp, `x²`, `q` are even and `p·x` flips only the sign), and
/// branch-free (the clamp is two selects) so the trainer's loops over it
/// vectorize. NaN stays NaN (the runtime never passes one). Not monotone
/// to the last bit (no f32 rational is), which is why the int8 path does
/// not use it (`kernels::tanh_q`).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    const C: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-C, C);
    let x2 = x * x;
    let mut p = x2 * A13 + A11;
    p = x2 * p + A9;
    p = x2 * p + A7;
    p = x2 * p + A5;
    p = x2 * p + A3;
    p = x2 * p + A1;
    p *= x;
    let mut q = x2 * B6 + B4;
    q = x2 * q + B2;
    q = x2 * q + B0;
    p / q
}

/// `(sin θ, cos θ)` of the angle `θ = 2π·k/2²⁴`, for `k < 2²⁴` (Box–Muller's
/// `θ = 2π·u2` with `u2 = k·2⁻²⁴`), in f32 only.
///
/// The reduction to `[−π/4, π/4]` is exact, in integers: the quadrant is
/// `q = ((k + 2²¹) >> 22) mod 4` and the remainder `d = k − 2²²·⌊(k + 2²¹)/2²²⌋`
/// (`−2²¹ ≤ d < 2²¹`), so `θ = q·π/2 + φ` with `φ = f32(d)·(2π·2⁻²⁴)` (one
/// rounding; the constant is `TAU` scaled by 2⁻²⁴, exactly). Then, with
/// `z = φ·φ`, Cephes' `sinf`/`cosf` kernels:
///
/// ```text
/// s = φ + (φ·z)·((S3·z + S2)·z + S1)
/// c = (1 − 0.5·z) + (z·z)·((C3·z + C2)·z + C1)
/// ```
///
/// in this order, and by quadrant `(sin θ, cos θ)` = `(s, c)`, `(c, −s)`,
/// `(−s, −c)`, `(−c, s)` for `q` = 0, 1, 2, 3. Max abs error against f64
/// over all 2²⁴ angles: see the test (`tests/tests/runtime_gaussian.rs`),
/// ≈ 1e-7. A `k ≥ 2²⁴` is taken modulo 2²⁴.
#[inline]
pub fn sincos_turns(k: u32) -> (f32, f32) {
    const S1: f32 = -1.666_665_5e-1;
    const S2: f32 = 8.332_161e-3;
    const S3: f32 = -1.951_529_6e-4;
    const C1: f32 = 4.166_664_6e-2;
    const C2: f32 = -1.388_731_6e-3;
    const C3: f32 = 2.443_315_7e-5;
    /// 2π·2⁻²⁴: one step of `k`, in radians.
    const STEP: f32 = core::f32::consts::TAU / 16_777_216.0;
    let k = k & 0x00FF_FFFF;
    let n = (k + (1 << 21)) >> 22; // nearest quadrant, 0..=4
    let d = k as i32 - (n << 22) as i32;
    let phi = d as f32 * STEP;
    let z = phi * phi;
    let s = phi + (phi * z) * ((S3 * z + S2) * z + S1);
    let c = (1.0 - 0.5 * z) + (z * z) * ((C3 * z + C2) * z + C1);
    match n & 3 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// IEEE-754 square root, correctly rounded: `libm::sqrtf` on the host, the
/// FPU's `VSQRT.F32` on `thumbv7em-none-eabihf` (Cortex-M4F/M7) (7
/// instructions with the call instead of ≈ 80). Both are correctly rounded,
/// so they agree to the bit.
#[inline]
pub fn sqrt(x: f32) -> f32 {
    #[cfg(tinyppo_vfp)]
    {
        vsqrt::sqrt(x)
    }
    #[cfg(not(tinyppo_vfp))]
    {
        libm::sqrtf(x)
    }
}

/// `cfg(tinyppo_vfp)`: `thumbv7em-none-eabihf` (set by `build.rs`).
#[cfg(tinyppo_vfp)]
#[allow(unsafe_code)]
mod vsqrt {
    // A leaf function: the hard-float ABI passes and returns the f32 in s0.
    // (Inline `asm!` cannot name `s` registers on this target on stable
    // Rust: the `sreg` class needs the unstable `vfp2` target feature.)
    core::arch::global_asm!(
        ".section .text.tinyppo_vsqrt,\"ax\",%progbits",
        // Module-level assembly does not see the target's FPU features.
        ".fpu fpv4-sp-d16",
        ".global tinyppo_vsqrt",
        ".type tinyppo_vsqrt,%function",
        ".p2align 1",
        ".thumb_func",
        "tinyppo_vsqrt:",
        "vsqrt.f32 s0, s0",
        "bx lr",
        ".size tinyppo_vsqrt, . - tinyppo_vsqrt",
    );

    extern "C" {
        fn tinyppo_vsqrt(x: f32) -> f32;
    }

    #[inline]
    pub fn sqrt(x: f32) -> f32 {
        // SAFETY: `tinyppo_vsqrt` (above) reads s0, writes s0 and returns;
        // it touches no memory and no other register, and follows the
        // AAPCS-VFP calling convention that `extern "C"` uses on this target.
        unsafe { tinyppo_vsqrt(x) }
    }
}

/// A running sum of f32 values with Neumaier's compensation (the improved
/// Kahan–Babuška summation), in f32 arithmetic only: `hi` is the rounded
/// sum, `lo` collects each addition's rounding error exactly (`TwoSum`
/// in the order of magnitudes), so [`value`](Self::value) is within about
/// one f32 rounding of the exact sum of everything added, whatever the
/// count, where a plain f32 sum drifts by one rounding per addition. The
/// control loop sums rewards with it (the M4F's FPU has no f64: an f64
/// accumulator costs ≈ 3 KB of soft-float code and ≈ 60 instructions per
/// addition).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sum {
    hi: f32,
    lo: f32,
}

impl Sum {
    /// The empty sum, 0.
    pub const ZERO: Sum = Sum { hi: 0.0, lo: 0.0 };

    /// Adds `x`.
    #[inline]
    pub fn add(&mut self, x: f32) {
        let t = self.hi + x;
        // The rounding error of `hi + x`, exact when |a| ≥ |b| (Dekker).
        self.lo += if self.hi.abs() >= x.abs() {
            (self.hi - t) + x
        } else {
            (x - t) + self.hi
        };
        self.hi = t;
    }

    /// The sum, rounded to f32.
    #[inline]
    pub fn value(&self) -> f32 {
        self.hi + self.lo
    }
}

/// `x as f64`, exactly, with integer operations only (on the M4F, `as f64`
/// calls the soft-float `__aeabi_f2d`). Every f32 is an f64: zeros, normals,
/// subnormals (normalized), infinities and NaNs (payload kept, made
/// quiet) map to the same value, which the tests check against `as f64`.
pub fn widen(x: f32) -> f64 {
    let b = x.to_bits();
    let sign = u64::from(b >> 31) << 63;
    let exp = (b >> 23) & 0xFF;
    let man = u64::from(b & 0x7F_FFFF);
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // value = man · 2^−149, man < 2^23: normalize on its top bit p.
            let p = 63 - man.leading_zeros() as u64;
            let e = 1023 - 149 + p;
            sign | e << 52 | (man << (52 - p)) & ((1 << 52) - 1)
        }
        // Infinity; a NaN keeps its payload and comes out quiet, as an
        // IEEE conversion (and `as f64`) makes it.
        0xFF if man == 0 => sign | 0x7FF << 52,
        0xFF => sign | 0x7FF << 52 | 1 << 51 | man << 29,
        _ => sign | (u64::from(exp) + 1023 - 127) << 52 | man << 29,
    };
    f64::from_bits(bits)
}

/// `fmodf(x, y)`: `x − n·y` with `n = trunc(x/y)`, exactly (the result is
/// always representable, so every correct implementation gives the same
/// bits), with the sign of `x`. musl's algorithm (`src/math/fmodf.c`, MIT):
/// the significands aligned in `u32`, then one shift-and-subtract per
/// binade of `x/y`. The `libm` crate's `fmodf` gives the same values
/// (tested bit for bit) but divides in 64 bits, which a Cortex-M4 does in
/// a 900-byte library routine. NaN for `y = 0`, a NaN, or an infinite `x`.
pub fn fmod(x: f32, y: f32) -> f32 {
    let (mut uxi, mut uyi) = (x.to_bits(), y.to_bits());
    let mut ex = ((uxi >> 23) & 0xFF) as i32;
    let mut ey = ((uyi >> 23) & 0xFF) as i32;
    let sx = uxi & 0x8000_0000;
    if uyi << 1 == 0 || y.is_nan() || ex == 0xFF {
        return f32::NAN;
    }
    if uxi << 1 <= uyi << 1 {
        if uxi << 1 == uyi << 1 {
            return 0.0 * x;
        }
        return x;
    }
    // Normalize the significands (a subnormal's exponent goes below 1).
    if ex == 0 {
        let mut i = uxi << 9;
        while i >> 31 == 0 {
            ex -= 1;
            i <<= 1;
        }
        uxi <<= (1 - ex) as u32;
    } else {
        uxi &= u32::MAX >> 9;
        uxi |= 1 << 23;
    }
    if ey == 0 {
        let mut i = uyi << 9;
        while i >> 31 == 0 {
            ey -= 1;
            i <<= 1;
        }
        uyi <<= (1 - ey) as u32;
    } else {
        uyi &= u32::MAX >> 9;
        uyi |= 1 << 23;
    }
    // x mod y, one binade at a time.
    while ex > ey {
        let i = uxi.wrapping_sub(uyi);
        if i >> 31 == 0 {
            if i == 0 {
                return 0.0 * x;
            }
            uxi = i;
        }
        uxi <<= 1;
        ex -= 1;
    }
    let i = uxi.wrapping_sub(uyi);
    if i >> 31 == 0 {
        if i == 0 {
            return 0.0 * x;
        }
        uxi = i;
    }
    while uxi >> 23 == 0 {
        uxi <<= 1;
        ex -= 1;
    }
    // Scale the result back.
    if ex > 0 {
        uxi -= 1 << 23;
        uxi |= (ex as u32) << 23;
    } else {
        uxi >>= (1 - ex) as u32;
    }
    f32::from_bits(uxi | sx)
}
