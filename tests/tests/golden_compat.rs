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
    let rets = crate::trainer_util::plant("pendulum")
        .eval_blob(BLOB_V1, 5, 3, false)
        .unwrap();
    let mean = rets.iter().sum::<f64>() / rets.len() as f64;
    assert_eq!(mean, -181.3284664957784);
    let min = rets.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(min, -376.70151669019833);
}

/// The v1 blob's log today: every frame bit for bit as at commit 185fbaf
/// but the `End` frame's `return_sum`, which the device sums in f32 with
/// compensation since issue 13 (no f64 soft-float on the device) instead
/// of in f64: it is within two f32 roundings of the f64 sum, and the
/// frame's other fields are unchanged.
#[test]
fn the_v1_log_replays_bit_for_bit_from_the_v1_blob() {
    let (bytes, _) = crate::trainer_util::plant("pendulum")
        .simulate_blob(
            BLOB_V1,
            &tinyppo_runtime::sim::RunConfig {
                episodes: 2,
                seed: 7,
                deterministic: false,
            },
        )
        .unwrap();
    // Frames end with a 0x00 delimiter; the last one is the End frame.
    let last_frame = |b: &[u8]| b[..b.len() - 1].iter().rposition(|&x| x == 0).unwrap() + 1;
    let (cut, golden_cut) = (last_frame(&bytes), last_frame(LOG_V1));
    assert_eq!(
        &bytes[..cut],
        &LOG_V1[..golden_cut],
        "every frame before End"
    );
    let (got, want) = (decode_stream(&bytes), decode_stream(LOG_V1));
    let (mut g, w) = (got.ends[0].1, want.ends[0].1);
    let tolerance = 2.0 * f64::from(f32::EPSILON) * w.return_sum.abs();
    assert!(
        (g.return_sum - w.return_sum).abs() <= tolerance,
        "return_sum {} vs the f64 sum {}",
        g.return_sum,
        w.return_sum
    );
    assert_ne!(g.return_sum, w.return_sum, "summed in f32 now, not f64");
    g.return_sum = w.return_sum;
    assert_eq!(g, w, "the End frame's other fields");
}

/// A run directory of checkpoint format 2 (the flat configuration of
/// commit 185fbaf), written by
///
/// ```sh
/// tinyppo train --env pendulum --total-steps 2048 --seed 3 \
///     --set 'actor_hidden=[8]' --set 'critic_hidden=[8]' \
///     --set num_minibatches=4 --out tests/golden/run-v2 --quiet
/// ```
///
/// at that commit: it loads with its configuration, exports the same
/// policy (now as a v2 blob that names the plant), and resumes.
#[test]
fn a_v2_checkpoint_loads_exports_the_same_policy_and_resumes() {
    use tinyppo_trainer::export::{export_blob, Quant};
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/run-v2");
    let state = tinyppo_trainer::checkpoint::load(&golden).expect("a v2 checkpoint loads");
    assert_eq!(state.cfg.env, "pendulum");
    assert_eq!((state.cfg.seed, state.cfg.ppo.num_minibatches), (3, 4));
    assert_eq!(state.cfg.actor_hidden, [8]);
    assert_eq!((state.update, state.global_step), (2, 2048));

    let plant = crate::trainer_util::plant("pendulum");
    let old = std::fs::read(golden.join("policy.bin")).unwrap();
    let new = export_blob(&state, &plant, Quant::Int8).unwrap();
    let (bo, bn) = (Blob::parse(&old).unwrap(), Blob::parse(&new).unwrap());
    assert_eq!((bo.version, bn.version), (1, 2));
    assert_eq!(bn.plant_code(), Some(0));
    // The v2 payload is the v1 payload plus the plant and safe action.
    let payload = |b: &[u8]| b[14..b.len() - 4].to_vec();
    assert!(payload(&new).starts_with(&payload(&old)));
    // Printed by `tinyppo eval --policy tests/golden/run-v2/policy.bin
    // --env pendulum --episodes 3 --seed 1 --json` at commit 185fbaf.
    for blob in [&old, &new] {
        let rets = plant.eval_blob(blob, 3, 1, false).unwrap();
        assert_eq!(rets.iter().sum::<f64>() / 3.0, -1183.6007141228765);
    }

    let tmp = crate::trainer_util::TempDir::new("golden-run-v2");
    for e in std::fs::read_dir(&golden).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).unwrap();
    }
    let opts = tinyppo_trainer::run::RunOptions {
        final_eval: false,
        ..Default::default()
    };
    let reg = tinyppo_trainer::registry::Registry::builtin();
    let s = tinyppo_trainer::run::resume(&reg, tmp.path(), Some(3072), &opts, &mut |_| {})
        .expect("resumes");
    assert_eq!((s.updates, s.global_step, s.version), (3, 3072, 2));
    let resumed = tinyppo_trainer::checkpoint::load(tmp.path()).unwrap();
    assert_eq!(resumed.cfg.ppo.num_minibatches, 4);
}

/// `tinyppo export --blob OLD --env NAME` turns a v1 blob into the v2 blob
/// of the same policy (what `firmware/policies/pendulum.bin` is), refusing
/// another plant's dimensions.
#[test]
fn a_v1_blob_reencodes_as_the_same_policy_naming_its_plant() {
    let reg = tinyppo_trainer::registry::Registry::builtin();
    let v2 = tinyppo_trainer::export::reencode_blob(BLOB_V1, reg.get("pendulum").unwrap()).unwrap();
    let b = Blob::parse(&v2).unwrap();
    assert_eq!((b.version, b.plant_code()), (2, Some(0)));
    assert_eq!(b.safe_action().collect::<Vec<_>>(), [0.0]);
    let payload = |x: &[u8]| x[14..x.len() - 4].to_vec();
    assert!(payload(&v2).starts_with(&payload(BLOB_V1)));
    let p = reg.get("pendulum").unwrap();
    assert_eq!(
        p.eval_blob(&v2, 5, 3, false).unwrap(),
        p.eval_blob(BLOB_V1, 5, 3, false).unwrap()
    );
    // The bundled firmware policy is exactly this re-encoding.
    let bundled = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware/policies/pendulum.bin"
    ))
    .unwrap();
    assert_eq!(bundled, v2);
    let e =
        tinyppo_trainer::export::reencode_blob(BLOB_V1, reg.get("cartpole").unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("cartpole has 4"), "{e:#}");
    // Re-encoding for another plant of the same dimensions is refused once
    // the blob names its plant.
    let e = tinyppo_trainer::export::reencode_blob(&v2, reg.get("dc-motor").unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("plant code 0x00"), "{e:#}");
}
