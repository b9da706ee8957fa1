//! Files and trajectories written by an older tinyppo must still mean the
//! same thing: a v1 policy blob and a v1 device log (both written at commit
//! 185fbaf, before plants carried codes and parameters, by
//!
//! ```sh
//! cp firmware/policies/pendulum.bin tests/golden/pendulum-v1.bin
//! tinyppo simulate --policy tests/golden/pendulum-v1.bin --env pendulum \
//!     --episodes 2 --seed 7 --out tests/golden/pendulum-v1-log.bin
//! ```
//!
//! with the figures below printed by `tinyppo logs decode --json` and
//! `tinyppo eval --json` of that commit), and the built-in plants'
//! trajectories, fingerprinted by [`fingerprint`] at that commit.

use tinyppo_runtime::plants::{CartPole, DcMotor, MountainCar, Pendulum, Plant};
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::Blob;
use tinyppo_trainer::logs::decode_stream;

const BLOB_V1: &[u8] = include_bytes!("../golden/pendulum-v1.bin");
const LOG_V1: &[u8] = include_bytes!("../golden/pendulum-v1-log.bin");

/// FNV-1a over the bits of every observation and reward of three episodes
/// under actions drawn uniformly from 1.5× the bounds (so clipping is
/// exercised), resetting at episode ends.
fn fingerprint<P: Plant<O, 1> + Default, const O: usize>() -> u64 {
    let mut rng = seeded(0x601D);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bits: u32| {
        for b in bits.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    let mut plant = P::default();
    let (lo, hi) = (P::ACTION_LOW[0], P::ACTION_HIGH[0]);
    let mid = 0.5 * (lo + hi);
    let half = 0.75 * (hi - lo);
    let mut episodes = 0;
    for o in plant.reset(&mut rng) {
        mix(o.to_bits());
    }
    while episodes < 3 {
        let u = tinyppo_runtime::rng::uniform(&mut rng, mid - half, mid + half);
        let tr = plant.step(&[u]);
        tr.obs.iter().for_each(|o| mix(o.to_bits()));
        mix(tr.reward.to_bits());
        mix(tr.terminated as u32 | (tr.truncated as u32) << 1);
        if tr.terminated || tr.truncated {
            episodes += 1;
            for o in plant.reset(&mut rng) {
                mix(o.to_bits());
            }
        }
    }
    h
}

#[test]
fn builtin_plant_trajectories_are_bit_identical_to_commit_185fbaf() {
    let got = [
        fingerprint::<Pendulum, 3>(),
        fingerprint::<MountainCar, 2>(),
        fingerprint::<CartPole, 4>(),
        fingerprint::<DcMotor, 3>(),
    ];
    assert_eq!(got, GOLDEN_FINGERPRINTS);
}

/// Printed by the test above at commit 185fbaf.
const GOLDEN_FINGERPRINTS: [u64; 4] = [
    0x3900_b63e_384b_eded,
    0xe0b3_5696_2f8c_241f,
    0x95fc_e6a2_3619_b734,
    0x8a58_79c5_129b_c21d,
];

#[test]
fn the_v1_blob_still_loads_with_its_id_and_values() {
    let b = Blob::parse(BLOB_V1).expect("a v1 blob loads");
    assert_eq!(b.version, 1);
    assert_eq!(b.policy_id, 0x5d37_9591);
    assert_eq!(
        (b.obs_dim, b.act_dim, b.hidden()),
        (3, 1, &[64usize, 64][..])
    );
    assert_eq!(b.len, 5470);
}

#[test]
fn the_v1_log_decodes_unchanged() {
    let log = decode_stream(LOG_V1);
    assert_eq!((log.frames_ok, log.frames_bad), (405, 0));
    assert_eq!(log.transitions.len(), 400);
    assert_eq!(log.streams.len(), 1);
    let h = &log.streams[0];
    assert_eq!(
        (
            h.log_version,
            h.policy_id,
            h.plant,
            h.obs_dim,
            h.act_dim,
            h.seed
        ),
        (1, 0x5d37_9591, 0, 3, 1, 7)
    );
    assert!(!h.deterministic);
    assert_eq!(log.episode_returns().len(), 2);
    assert_eq!(log.mean_return(), Some(-190.90687970467843));
    assert_eq!(log.ends.len(), 1);
    assert_eq!(log.ends[0].1.return_sum, -381.81375940935686);
    assert_eq!(log.ends[0].1.entries, 402);
}

#[test]
fn the_v1_blob_evaluates_to_the_same_returns() {
    let rets = tinyppo_trainer::evaluate::eval_blob(BLOB_V1, "pendulum", 5, 3, false).unwrap();
    let mean = rets.iter().sum::<f64>() / rets.len() as f64;
    assert_eq!(mean, -181.3284664957784);
    let min = rets.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(min, -376.70151669019833);
}

#[test]
fn the_v1_log_replays_bit_for_bit_from_the_v1_blob() {
    let (bytes, _) = tinyppo_trainer::logs::simulate_blob(
        BLOB_V1,
        "pendulum",
        &tinyppo_runtime::sim::SimConfig {
            episodes: 2,
            seed: 7,
            deterministic: false,
        },
    )
    .unwrap();
    assert_eq!(bytes, LOG_V1);
}
