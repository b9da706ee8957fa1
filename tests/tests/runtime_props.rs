//! Property tests: the parser never panics on any input, valid specs
//! round-trip exactly, and inference stays finite on every finite input.

use proptest::collection::vec;
use proptest::prelude::*;

use tinyppo_runtime::format::{self, max_encoded_len, Blob, MAX_ABS_VALUE, MAX_INT8_SCALE};
use tinyppo_runtime::{
    rng, ActError, Activation, BlobSpec, Encoding, LayerSpec, Policy, WeightsSpec,
};

use crate::util::{crc32c_ref, f32_bytes, frame, Net, RawLayer, RawPayload, RawTail, TestRng};

// ---------------------------------------------------------------------------
// Random valid specs.

#[derive(Clone, Debug)]
enum GenWeights {
    F32(Vec<f32>),
    Int8(Vec<i8>, Vec<f32>),
}

/// A valid policy with owned arrays, anywhere in the format's value range.
#[derive(Clone, Debug)]
struct GenSpec {
    obs_dim: usize,
    act_dim: usize,
    hidden: Vec<usize>,
    activation: Activation,
    obs_mean: Vec<f32>,
    obs_inv_std: Vec<f32>,
    obs_clip: f32,
    low: Vec<f32>,
    high: Vec<f32>,
    log_std: Vec<f32>,
    layers: Vec<(GenWeights, Vec<f32>)>,
}

impl GenSpec {
    fn encode(&self) -> Vec<u8> {
        let layers: Vec<LayerSpec> = self
            .layers
            .iter()
            .map(|(w, b)| LayerSpec {
                weights: match w {
                    GenWeights::F32(w) => WeightsSpec::F32(w),
                    GenWeights::Int8(q, s) => WeightsSpec::Int8 { q, scales: s },
                },
                bias: b,
            })
            .collect();
        let spec = BlobSpec {
            obs_dim: self.obs_dim,
            act_dim: self.act_dim,
            hidden: &self.hidden,
            activation: self.activation,
            obs_mean: &self.obs_mean,
            obs_inv_std: &self.obs_inv_std,
            obs_clip: self.obs_clip,
            action_low: &self.low,
            action_high: &self.high,
            log_std: &self.log_std,
            layers: &layers,
            plant: 0x81,
            safe_action: &self.low,
            extensions: &[],
        };
        let mut buf = vec![0u8; max_encoded_len(&spec)];
        let n = format::encode(&spec, &mut buf).expect("a generated spec is valid");
        buf.truncate(n);
        buf
    }

    fn raw(&self) -> RawPayload {
        let int8 = matches!(self.layers[0].0, GenWeights::Int8(..));
        RawPayload {
            obs_dim: self.obs_dim as u64,
            act_dim: self.act_dim as u64,
            hidden: self.hidden.iter().map(|&h| h as u64).collect(),
            activation: self.activation.code(),
            encoding: int8 as u8,
            obs_mean: f32_bytes(&self.obs_mean),
            obs_inv_std: f32_bytes(&self.obs_inv_std),
            obs_clip: self.obs_clip,
            action_low: f32_bytes(&self.low),
            action_high: f32_bytes(&self.high),
            log_std: f32_bytes(&self.log_std),
            layers: self
                .layers
                .iter()
                .map(|(w, b)| match w {
                    GenWeights::F32(w) => RawLayer {
                        weights: f32_bytes(w),
                        scales: vec![],
                        bias: f32_bytes(b),
                    },
                    GenWeights::Int8(q, s) => RawLayer {
                        weights: q.iter().map(|&v| v as u8).collect(),
                        scales: f32_bytes(s),
                        bias: f32_bytes(b),
                    },
                })
                .collect(),
            v2: Some(RawTail {
                plant: 0x81,
                safe_action: f32_bytes(&self.low),
                extensions: vec![],
            }),
        }
    }
}

/// Any value a weight, bias, mean or bound may take: mostly ordinary
/// magnitudes, often the whole range, sometimes exactly a limit, zero,
/// negative zero or a subnormal.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -3.0f32..3.0,
        2 => -MAX_ABS_VALUE..=MAX_ABS_VALUE,
        1 => prop_oneof![
            Just(MAX_ABS_VALUE),
            Just(-MAX_ABS_VALUE),
            Just(0.0f32),
            Just(-0.0f32),
            Just(1e-40f32),
        ],
    ]
}

/// A strictly positive value up to `max`.
fn positive(max: f32) -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => 0.01f32..3.0,
        1 => f32::MIN_POSITIVE..=max,
        1 => prop_oneof![Just(max), Just(1e-40f32)],
    ]
}

fn bounds() -> impl Strategy<Value = (f32, f32)> {
    (value(), value()).prop_map(|(a, b)| {
        if a < b {
            (a, b)
        } else if a > b {
            (b, a)
        } else {
            (-MAX_ABS_VALUE, MAX_ABS_VALUE)
        }
    })
}

/// A valid spec with `obs_dim`, `act_dim` in the given ranges and hidden
/// widths up to `max_hidden`.
fn spec(
    obs: std::ops::RangeInclusive<usize>,
    act: std::ops::RangeInclusive<usize>,
    max_hidden: usize,
) -> impl Strategy<Value = GenSpec> {
    (
        obs,
        act,
        vec(1..=max_hidden, 1..=3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(obs_dim, act_dim, hidden, relu, int8)| {
            let mut shapes = Vec::new();
            let mut cols = obs_dim;
            for &rows in hidden.iter().chain([act_dim].iter()) {
                shapes.push((rows, cols));
                cols = rows;
            }
            let layers: Vec<_> = shapes
                .into_iter()
                .map(|(rows, cols)| {
                    let w = if int8 {
                        (
                            vec(-127i8..=127, rows * cols),
                            vec(positive(MAX_INT8_SCALE), rows),
                        )
                            .prop_map(|(q, s)| GenWeights::Int8(q, s))
                            .boxed()
                    } else {
                        vec(value(), rows * cols).prop_map(GenWeights::F32).boxed()
                    };
                    (w, vec(value(), rows))
                })
                .collect();
            (
                vec(value(), obs_dim),
                vec(positive(MAX_ABS_VALUE), obs_dim),
                positive(MAX_ABS_VALUE),
                vec(bounds(), act_dim),
                vec(-20.0f32..=10.0, act_dim),
                layers,
            )
                .prop_map(
                    move |(obs_mean, obs_inv_std, obs_clip, b, log_std, layers)| GenSpec {
                        obs_dim,
                        act_dim,
                        hidden: hidden.clone(),
                        activation: if relu {
                            Activation::Relu
                        } else {
                            Activation::Tanh
                        },
                        obs_mean,
                        obs_inv_std,
                        obs_clip,
                        low: b.iter().map(|p| p.0).collect(),
                        high: b.iter().map(|p| p.1).collect(),
                        log_std,
                        layers,
                    },
                )
        })
}

/// A finite observation element, including the extremes.
fn finite_obs() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -10.0f32..10.0,
        2 => prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL | prop::num::f32::ZERO,
        2 => prop_oneof![
            Just(1e30f32),
            Just(-1e30f32),
            Just(f32::MAX),
            Just(-f32::MAX),
            Just(f32::MIN_POSITIVE),
        ],
    ]
}

/// A valid blob of the given size and seed, for mutation.
fn seed_blob(seed: u64, int8: bool) -> Vec<u8> {
    let net = Net::random(
        &mut TestRng::new(seed),
        3,
        1,
        &[5, 4],
        Activation::Relu,
        (-1.0, 0.0),
    );
    if int8 {
        net.encode_int8()
    } else {
        net.encode_f32()
    }
}

/// If `bytes` load as a 3-in 1-out policy, run it and check that nothing
/// non-finite comes out.
fn run_if_valid(bytes: &[u8], obs: [f32; 3]) {
    if let Ok(p) = Policy::<3, 1, 64>::from_bytes(bytes) {
        let mut r = rng::seeded(1);
        let step = p.act(&obs, &mut r).unwrap();
        assert!(step.action[0].is_finite() && step.applied[0].is_finite());
        assert!(step.log_prob.is_finite());
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Xor(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        4 => (any::<usize>(), 1u8..).prop_map(|(i, b)| Mutation::Xor(i, b)),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(p: &mut Vec<u8>, m: &Mutation) {
    let n = p.len();
    match *m {
        Mutation::Set(i, b) if n > 0 => p[i % n] = b,
        Mutation::Xor(i, b) if n > 0 => p[i % n] ^= b,
        Mutation::Insert(i, b) => p.insert(i % (n + 1), b),
        Mutation::Remove(i) if n > 0 => {
            p.remove(i % n);
        }
        Mutation::Truncate(i) => p.truncate(i % (n + 1)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        let _ = Blob::parse(&bytes);
        let _ = Policy::<3, 1, 64>::from_bytes(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        version in prop_oneof![Just(1u16), any::<u16>()],
        id in any::<u32>(),
        len in prop_oneof![0u32..300, any::<u32>()],
        tail in vec(any::<u8>(), 0..300),
    ) {
        let mut b = b"TPPO".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&tail);
        let _ = Blob::parse(&b);
        let _ = Policy::<3, 1, 64>::from_bytes(&b);
    }

    #[test]
    fn random_payloads_in_a_valid_frame_never_panic(payload in vec(any::<u8>(), 0..400)) {
        let blob = frame(&payload);
        let _ = Blob::parse(&blob);
        run_if_valid(&blob, [0.5, -1.0, 2.0]);
    }

    #[test]
    fn mutated_payloads_never_panic(
        seed in 0u64..8,
        int8 in any::<bool>(),
        muts in vec(mutation(), 1..6),
        obs in [finite_obs(), finite_obs(), finite_obs()],
    ) {
        let blob = seed_blob(seed, int8);
        let mut payload = crate::util::payload_of(&blob).to_vec();
        for m in &muts {
            mutate(&mut payload, m);
        }
        let reframed = frame(&payload);
        let _ = Blob::parse(&reframed);
        run_if_valid(&reframed, obs);
        // The same mutations on the whole blob (framing included).
        let mut whole = blob.clone();
        for m in &muts {
            mutate(&mut whole, m);
        }
        run_if_valid(&whole, obs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn encode_then_parse_round_trips_every_value(s in spec(1..=6, 1..=4, 12)) {
        let blob = s.encode();
        // The runtime's encoder and the test's writer agree byte for byte.
        prop_assert_eq!(&blob, &s.raw().blob());
        let b = Blob::parse(&blob).unwrap();
        prop_assert_eq!(b.version, 2);
        prop_assert_eq!(b.plant_code(), Some(0x81));
        prop_assert_eq!(b.safe_action_bytes, &f32_bytes(&s.low)[..]);
        prop_assert_eq!(b.len, blob.len());
        prop_assert_eq!(b.policy_id, crc32c_ref(&blob[14..blob.len() - 4]));
        prop_assert_eq!((b.obs_dim, b.act_dim), (s.obs_dim, s.act_dim));
        prop_assert_eq!(b.hidden(), &s.hidden[..]);
        prop_assert_eq!(b.activation, s.activation);
        // Byte equality is bit equality of every f32 (−0.0 and subnormals included).
        prop_assert_eq!(b.obs_mean, &f32_bytes(&s.obs_mean)[..]);
        prop_assert_eq!(b.obs_inv_std, &f32_bytes(&s.obs_inv_std)[..]);
        prop_assert_eq!(b.obs_clip.to_bits(), s.obs_clip.to_bits());
        prop_assert_eq!(b.action_low, &f32_bytes(&s.low)[..]);
        prop_assert_eq!(b.action_high, &f32_bytes(&s.high)[..]);
        prop_assert_eq!(b.log_std, &f32_bytes(&s.log_std)[..]);
        let layers: Vec<_> = b.layers().collect();
        prop_assert_eq!(layers.len(), s.layers.len());
        for (l, (w, bias)) in layers.iter().zip(&s.layers) {
            prop_assert_eq!(l.bias, &f32_bytes(bias)[..]);
            match w {
                GenWeights::F32(w) => {
                    prop_assert_eq!(b.encoding, Encoding::F32);
                    prop_assert_eq!(l.weights, &f32_bytes(w)[..]);
                    prop_assert!(l.scales.is_empty());
                }
                GenWeights::Int8(q, sc) => {
                    prop_assert_eq!(b.encoding, Encoding::Int8);
                    let qb: Vec<u8> = q.iter().map(|&v| v as u8).collect();
                    prop_assert_eq!(l.weights, &qb[..]);
                    prop_assert_eq!(l.scales, &f32_bytes(sc)[..]);
                }
            }
        }
    }

    #[test]
    fn act_is_finite_for_every_finite_observation(
        s in spec(3..=3, 2..=2, 16),
        obs in [finite_obs(), finite_obs(), finite_obs()],
        seed in any::<u64>(),
    ) {
        let blob = s.encode();
        let p = Policy::<3, 2, 16>::from_bytes(&blob).unwrap();
        let mut r = rng::seeded(seed);
        let step = p.act(&obs, &mut r).unwrap();
        for j in 0..2 {
            prop_assert!(step.action[j].is_finite(), "{:?}", step);
            prop_assert!(step.applied[j] >= s.low[j] && step.applied[j] <= s.high[j]);
        }
        prop_assert!(step.log_prob.is_finite(), "{:?}", step);
        let mean = p.mean(&obs).unwrap();
        prop_assert!(mean.iter().all(|m| m.is_finite()));
        prop_assert!(p.mean_applied(&obs).unwrap().iter().all(|m| m.is_finite()));
        prop_assert!(p.entropy().is_finite());
        let safe = p.safe_action();
        prop_assert!(safe.iter().zip(&s.low).zip(&s.high).all(|((a, lo), hi)| a >= lo && a <= hi));
    }

    #[test]
    fn non_finite_observations_are_refused(
        s in spec(3..=3, 2..=2, 16),
        obs in [finite_obs(), finite_obs(), finite_obs()],
        index in 0usize..3,
        bad in prop_oneof![Just(f32::NAN), Just(f32::INFINITY), Just(f32::NEG_INFINITY)],
    ) {
        let blob = s.encode();
        let p = Policy::<3, 2, 16>::from_bytes(&blob).unwrap();
        let mut obs = obs;
        obs[index] = bad;
        let want = Err(ActError::NonFiniteObservation { index });
        prop_assert_eq!(p.act(&obs, &mut rng::seeded(0)), want);
        prop_assert_eq!(p.mean(&obs).map(|_| ()), Err(ActError::NonFiniteObservation { index }));
        prop_assert_eq!(p.log_prob(&obs, &[0.0, 0.0]), Err(ActError::NonFiniteObservation { index }));
        prop_assert_eq!(
            p.log_prob(&[0.0; 3], &[0.0, bad]),
            Err(ActError::NonFiniteAction { index: 1 })
        );
        let msg = ActError::NonFiniteObservation { index }.to_string();
        prop_assert!(msg.contains(&format!("observation[{index}]")), "{}", msg);
    }
}
