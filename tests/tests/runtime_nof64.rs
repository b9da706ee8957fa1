//! What replaced f64 and `core::fmt` on the device (issue 13): the exact
//! f32 → f64 widening, the compensated f32 sum of the run's returns, and
//! the numeric error codes the firmware prints instead of messages.

use proptest::collection::vec;
use proptest::prelude::*;

use tinyppo_runtime::error::Field;
use tinyppo_runtime::math::{widen, Sum};
use tinyppo_runtime::realism::RealismError;
use tinyppo_runtime::FormatError;

fn same(x: f32) -> bool {
    widen(x).to_bits() == (x as f64).to_bits()
}

#[test]
fn widen_is_as_f64_on_every_class_of_f32() {
    let special = [
        0.0f32,
        -0.0,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(1),           // smallest subnormal
        f32::from_bits(0x007F_FFFF), // largest subnormal
        f32::from_bits(0x8040_0001), // negative subnormal
        f32::from_bits(0x7FC0_0000), // quiet NaN
        f32::from_bits(0x7F80_0001), // signalling NaN payload
        f32::from_bits(0xFFC1_2345), // negative NaN with payload
    ];
    for x in special {
        assert!(same(x), "{x:e} ({:#010x})", x.to_bits());
    }
    // Every subnormal's top bit position, every exponent, and a sweep of
    // one bit pattern in 4,099 over the whole u32 range (1.05M values).
    for p in 0..23 {
        for low in [0u32, 1, (1 << p) - 1] {
            let bits = (1u32 << p) | (low & ((1 << p) - 1));
            assert!(same(f32::from_bits(bits)), "subnormal {bits:#x}");
        }
    }
    for e in 0..=255u32 {
        for m in [0u32, 1, 0x40_0000, 0x7F_FFFF, 0x12_3456] {
            let bits = e << 23 | m;
            assert!(same(f32::from_bits(bits)), "{bits:#x}");
            assert!(
                same(f32::from_bits(bits | 1 << 31)),
                "{:#x}",
                bits | 1 << 31
            );
        }
    }
    let mut bits = 0u64;
    while bits <= u64::from(u32::MAX) {
        let x = f32::from_bits(bits as u32);
        assert!(same(x), "{:#010x}", bits as u32);
        bits += 4099;
    }
}

#[test]
fn the_compensated_sum_keeps_what_a_plain_f32_sum_loses() {
    // 1e8 + 1000 × 1.0: a plain f32 sum never moves (ulp(1e8) = 8).
    let mut plain = 1.0e8f32;
    let mut sum = Sum::ZERO;
    sum.add(1.0e8);
    for _ in 0..1000 {
        plain += 1.0;
        sum.add(1.0);
    }
    assert_eq!(plain, 1.0e8);
    assert_eq!(sum.value(), 100_001_000.0);
    // Cancellation: the small terms survive the big ones cancelling.
    let mut s = Sum::ZERO;
    for x in [1.0e8f32, 3.25, -1.0e8, 0.125] {
        s.add(x);
    }
    assert_eq!(s.value(), 3.375);
}

proptest! {
    /// Within one f32 rounding of the exact (f64) sum, plus Neumaier's
    /// second-order term, for any count: a plain f32 sum of 500 terms is
    /// not (the mutant check below).
    #[test]
    fn the_compensated_sum_is_within_one_rounding(xs in vec(-1000.0f32..1000.0, 1..500)) {
        let mut s = Sum::ZERO;
        for &x in &xs {
            s.add(x);
        }
        let exact: f64 = xs.iter().map(|&x| f64::from(x)).sum();
        let abs: f64 = xs.iter().map(|&x| f64::from(x).abs()).sum();
        let eps = f64::from(f32::EPSILON) / 2.0;
        let bound = eps * exact.abs() + 2.0 * xs.len() as f64 * eps * eps * abs + f64::from(f32::MIN_POSITIVE);
        prop_assert!((f64::from(s.value()) - exact).abs() <= bound,
            "sum {} exact {exact} bound {bound}", s.value());
    }
}

#[test]
fn a_plain_f32_sum_breaks_that_bound() {
    // The property above can fail: 300 rewards like the pendulum's.
    let xs: Vec<f32> = (0..300)
        .map(|k| -(0.1 + (k as f32 * 0.37).sin().abs() * 9.0))
        .collect();
    let plain: f32 = xs.iter().sum();
    let exact: f64 = xs.iter().map(|&x| f64::from(x)).sum();
    let eps = f64::from(f32::EPSILON) / 2.0;
    assert!((f64::from(plain) - exact).abs() > eps * exact.abs() + 600.0 * eps * eps * exact.abs());
    let mut s = Sum::ZERO;
    xs.iter().for_each(|&x| s.add(x));
    assert!((f64::from(s.value()) - exact).abs() <= eps * exact.abs() * 1.0001);
}

#[test]
fn error_codes_name_the_kind_field_and_detail() {
    let e = FormatError::NonFinite {
        field: Field::Weights(1),
        index: 7,
    };
    assert_eq!(e.code(), 14 << 24 | 0x21 << 16 | 7);
    assert_eq!(FormatError::BadMagic.code(), 2 << 24);
    let big = FormatError::Truncated {
        needed: 10,
        found: 1 << 20,
    };
    assert_eq!(big.code() & 0xFFFF, 0xFFFF, "detail saturates");
    let r = FormatError::Realism(RealismError::Malformed);
    assert_eq!(r.code() >> 24, 21);
    // Every field has its own number.
    let fields = [
        Field::ObsDim,
        Field::ActDim,
        Field::HiddenWidth(0),
        Field::HiddenWidth(2),
        Field::ObsMean,
        Field::ObsInvStd,
        Field::ObsClip,
        Field::ActionLow,
        Field::ActionHigh,
        Field::LogStd,
        Field::Weights(0),
        Field::Weights(3),
        Field::Scales(0),
        Field::Bias(0),
        Field::Bias(3),
        Field::SafeAction,
        Field::HistoryLen,
        Field::HistoryMean,
        Field::HistoryInvStd,
        Field::HistoryWeights,
        Field::SafetyActionLow,
        Field::SafetyActionHigh,
        Field::SafetyMaxDelta,
        Field::SafetyObsLow,
        Field::SafetyObsHigh,
        Field::SelfTestCount,
        Field::SelfTestTolerance,
        Field::SelfTestObs,
        Field::SelfTestMean,
    ];
    let mut codes: Vec<u8> = fields.iter().map(|f| f.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), fields.len());
}

#[test]
fn fmod_is_libm_fmodf_bit_for_bit() {
    use tinyppo_runtime::math::fmod;
    let check = |x: f32, y: f32| {
        let (got, want) = (fmod(x, y), libm::fmodf(x, y));
        assert!(
            got.to_bits() == want.to_bits() || got.is_nan() && want.is_nan(),
            "fmod({x:e}, {y:e}) = {got:e}, libm {want:e}"
        );
    };
    // The pendulum's angle wrap over a dense sweep of angles.
    let two_pi = 2.0 * core::f32::consts::PI;
    for k in -400_000..400_000 {
        check(k as f32 * 1.0e-4 + core::f32::consts::PI, two_pi);
    }
    // Every class against every class: zeros, subnormals, normals of
    // every binade, infinities, NaN; then random bit patterns.
    let mut classes = vec![0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    for e in (0..255u32).step_by(3) {
        for m in [0u32, 1, 0x40_0000, 0x7F_FFFF, 0x2A_AAAA] {
            classes.push(f32::from_bits(e << 23 | m));
            classes.push(f32::from_bits(e << 23 | m | 1 << 31));
        }
    }
    for &x in &classes {
        for &y in &classes {
            check(x, y);
        }
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..500_000 {
        let r = next();
        check(f32::from_bits(r as u32), f32::from_bits((r >> 32) as u32));
    }
}
