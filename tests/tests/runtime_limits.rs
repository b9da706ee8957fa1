//! The value limits of format v1 keep every forward pass finite.
//!
//! Regression tests: with the first limits (|v| ≤ 1e6 for everything and
//! int8 scales up to 1e6, i.e. dequantized weights up to 1.27e8) a valid
//! relu policy with three hidden layers overflowed f32 and `act` returned
//! ±inf or NaN, breaking the runtime's "never a non-finite action"
//! guarantee. These blobs sit exactly on the current limits and must stay
//! finite (see "Why these limits" in `docs/FORMAT.md`).

use tinyppo_runtime::format::{MAX_ABS_VALUE, MAX_INT8_SCALE};
use tinyppo_runtime::rng;
use tinyppo_runtime::{Field, FormatError, Policy};

use crate::util::{f32_bytes, RawLayer, RawPayload};

const W: usize = 256;

/// obs W, hidden [W, W, W], act 1, relu, every value at the limit with the
/// sign `sign` on the output layer.
fn extreme(encoding: u8, sign: f32) -> RawPayload {
    let v = MAX_ABS_VALUE;
    let layer = |rows: usize, cols: usize, s: f32| match encoding {
        0 => RawLayer {
            weights: f32_bytes(&vec![s * v; rows * cols]),
            scales: vec![],
            bias: f32_bytes(&vec![s * v; rows]),
        },
        _ => RawLayer {
            weights: vec![if s > 0.0 { 127u8 } else { (-127i8) as u8 }; rows * cols],
            scales: f32_bytes(&vec![MAX_INT8_SCALE; rows]),
            bias: f32_bytes(&vec![s * v; rows]),
        },
    };
    RawPayload {
        obs_dim: W as u64,
        act_dim: 1,
        hidden: vec![W as u64; 3],
        activation: 1, // relu: nothing saturates
        encoding,
        obs_mean: f32_bytes(&[0.0; W]),
        obs_inv_std: f32_bytes(&[v; W]),
        obs_clip: v,
        action_low: f32_bytes(&[-v]),
        action_high: f32_bytes(&[v]),
        log_std: f32_bytes(&[10.0]),
        layers: vec![
            layer(W, W, 1.0),
            layer(W, W, 1.0),
            layer(W, W, 1.0),
            layer(1, W, sign),
        ],
        v2: None,
    }
}

#[test]
fn forward_pass_at_the_value_limits_stays_finite() {
    let mut rng = rng::seeded(1);
    for encoding in [0u8, 1] {
        for sign in [1.0f32, -1.0] {
            let blob = extreme(encoding, sign).blob();
            let p = Policy::<W, 1, W>::from_bytes(&blob).expect("blob on the limits is valid");
            for obs in [[f32::MAX; W], [1.0; W], [-f32::MAX; W]] {
                let mu = p.mean(&obs).unwrap();
                assert!(mu[0].is_finite(), "encoding {encoding}: mean {mu:?}");
                let step = p.act(&obs, &mut rng).unwrap();
                assert!(step.action[0].is_finite() && step.applied[0].is_finite());
                assert!(step.log_prob.is_finite());
            }
            println!(
                "limits: encoding {encoding}, sign {sign}: μ = {:e}",
                p.mean(&[f32::MAX; W]).unwrap()[0]
            );
        }
    }
}

#[test]
fn values_past_the_limits_are_rejected() {
    // A weight just above MAX_ABS_VALUE.
    let mut raw = extreme(0, 1.0);
    raw.layers[2].weights[4..8].copy_from_slice(&(MAX_ABS_VALUE * 1.0001).to_le_bytes());
    assert_eq!(
        Policy::<W, 1, W>::from_bytes(&raw.blob()).unwrap_err(),
        FormatError::OutOfRange {
            field: Field::Weights(2),
            index: 1
        }
    );
    // An int8 scale above MAX_INT8_SCALE: 127·scale would exceed the limit.
    let mut raw = extreme(1, 1.0);
    raw.layers[1].scales[8..12].copy_from_slice(&(MAX_INT8_SCALE * 1.0001).to_le_bytes());
    assert_eq!(
        Policy::<W, 1, W>::from_bytes(&raw.blob()).unwrap_err(),
        FormatError::OutOfRange {
            field: Field::Scales(1),
            index: 2
        }
    );
    // Exactly max|w|/127 for max|w| = MAX_ABS_VALUE, as an exporter
    // computes it, is accepted.
    assert_eq!(MAX_INT8_SCALE, MAX_ABS_VALUE / 127.0);
}
