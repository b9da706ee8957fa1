//! Action history (`action_history = k`, issue 11): the trainer's
//! environment, the exported blob, the device's control loop and the
//! fine-tune's reconstruction from logs all agree on `[o_t, a_{t−1}, …,
//! a_{t−k}]`, and a runtime that cannot build it refuses the blob.

use ndarray::ArrayView2;
use tinyppo_runtime::driver::RunConfig;
use tinyppo_runtime::format::{self, FORMAT_VERSION};
use tinyppo_runtime::history::{ActionHistory, TAG};
use tinyppo_runtime::{ActError, Blob, FormatError, Policy};
use tinyppo_trainer::export::{export_blob, Quant};
use tinyppo_trainer::history::{augment, HistoryEnv};
use tinyppo_trainer::logs::decode_stream;
use tinyppo_trainer::mlp::Cache;
use tinyppo_trainer::registry::Registry;
use tinyppo_trainer::{checkpoint, config, run};

use crate::cli::{ok, s};
use crate::trainer_util::TempDir;

const SETS: [&str; 9] = [
    "num_envs=2",
    "num_steps=64",
    "actor_hidden=[8]",
    "critic_hidden=[8]",
    "ppo.num_minibatches=4",
    "ppo.update_epochs=2",
    "total_timesteps=512",
    "action_history=3",
    "realism.action_delay=1",
];

/// A small pendulum run with a 3-action history.
fn trained(dir: &std::path::Path) -> (Registry, tinyppo_trainer::algo::TrainState) {
    let reg = Registry::builtin();
    let sets: Vec<String> = SETS.iter().map(|s| s.to_string()).collect();
    let cfg = config::resolve(reg.get("pendulum").unwrap(), None, &sets).unwrap();
    let opts = run::RunOptions {
        checkpoint_every: std::time::Duration::ZERO,
        final_eval: false,
        stop_after_update: None,
        replace_existing: false,
    };
    run::train(&reg, cfg, dir, &opts, &mut |_| {}).unwrap();
    let state = checkpoint::load(dir).unwrap();
    (reg, state)
}

/// The exported blob carries the history; its first layer plus the
/// record computes what the trainer's network computes on the same
/// `[o, h]`; a policy with history refuses to act without it.
#[test]
fn the_blob_splits_the_first_layer_and_computes_the_trainers_mean() {
    let tmp = TempDir::new("hist-blob");
    let (reg, state) = trained(tmp.path());
    let plant = reg.get("pendulum").unwrap();
    assert_eq!(state.model.obs_dim(), 3 + 3);
    let blob = export_blob(&state, plant, Quant::F32).unwrap();
    let b = Blob::parse(&blob).unwrap();
    assert_eq!((b.obs_dim, b.version), (3, FORMAT_VERSION));
    let h = b.history().expect("a history record");
    assert_eq!((h.len, h.weights.len()), (3, 4 * 8 * 3));
    assert!(b.realism().is_some(), "the realism record too");
    let p = Policy::<3, 1, 256>::from_bytes(&blob).unwrap();
    assert_eq!(p.history_len(), 3);
    assert_eq!(p.mean(&[1.0, 0.0, 0.0]), Err(ActError::HistoryRequired));

    let (mean, inv_std) = state.obs_rms.export();
    let clip = state.cfg.obs_clip;
    let mut cache = Cache::default();
    let mut hist = ActionHistory::<1>::new([0.0]);
    for (i, a) in [0.5f32, -2.0, 1.25, 0.0, 2.0].iter().enumerate() {
        let o = [(i as f32).cos(), (i as f32).sin(), 0.3 * i as f32];
        // The trainer's input: o, then a_{t−1}, a_{t−2}, a_{t−3}.
        let mut x: Vec<f32> = o.to_vec();
        x.extend((0..3).map(|j| hist.get(j)[0]));
        for ((v, m), s) in x.iter_mut().zip(&mean).zip(&inv_std) {
            *v = ((*v - m) * s).clamp(-clip, clip);
        }
        let xv = ArrayView2::from_shape((1, 6), &x).unwrap();
        let want = state
            .model
            .actor
            .forward(state.model.actor_params(), xv, &mut cache)[[0, 0]];
        let got = p.mean_with(&o, &hist).unwrap()[0];
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "tick {i}: runtime {got}, trainer {want}"
        );
        hist.push([*a]);
    }
    // The int8 blob too (within quantization error).
    let q = export_blob(&state, plant, Quant::Int8).unwrap();
    let pq = Policy::<3, 1, 256>::from_bytes(&q).unwrap();
    let (f, i8m) = (
        p.mean_with(&[0.0, 1.0, -1.0], &hist).unwrap()[0],
        pq.mean_with(&[0.0, 1.0, -1.0], &hist).unwrap()[0],
    );
    assert!(
        (f - i8m).abs() < 0.05 * (1.0 + f.abs()),
        "f32 {f} int8 {i8m}"
    );
}

/// The history record is required: a runtime that does not know tag 0x00
/// must refuse the blob, and a damaged record is refused with its field.
#[test]
fn the_record_is_required_and_checked() {
    let tmp = TempDir::new("hist-req");
    let (reg, state) = trained(tmp.path());
    let blob = export_blob(&state, reg.get("pendulum").unwrap(), Quant::Int8).unwrap();
    let b = Blob::parse(&blob).unwrap();
    const { assert!(TAG < format::OPTIONAL_EXTENSION_TAGS) };
    let e = b.extensions().next().unwrap();
    assert_eq!(e.tag, TAG, "the history record comes first (tag order)");
    // Another required tag in its place is unknown to this runtime.
    let exts: Vec<_> = b.extensions().collect();
    let mut other = exts.clone();
    other[0].tag = 0x02;
    let err = reencode_with(&b, &other).unwrap_err();
    assert_eq!(err, FormatError::UnknownExtension { tag: 0x02 });
    // A history of 9 actions (more than MAX_HISTORY) is refused.
    let mut body = e.body.to_vec();
    body[0] = 9;
    let mut bad = exts.clone();
    bad[0].body = &body;
    let err = reencode_with(&b, &bad).unwrap_err();
    assert!(err.to_string().contains("history.len"), "{err}");
}

/// `b` re-encoded with other extension records.
fn reencode_with(
    b: &Blob<'_>,
    exts: &[tinyppo_runtime::Extension<'_>],
) -> Result<Vec<u8>, FormatError> {
    let f = |v: &[u8]| format::f32s(v).collect::<Vec<f32>>();
    let layers: Vec<(Vec<i8>, Vec<f32>, Vec<f32>)> = b
        .layers()
        .map(|l| {
            (
                l.weights.iter().map(|&w| w as i8).collect(),
                f(l.scales),
                f(l.bias),
            )
        })
        .collect();
    let specs: Vec<tinyppo_runtime::LayerSpec> = layers
        .iter()
        .map(|(q, s, bias)| tinyppo_runtime::LayerSpec {
            weights: tinyppo_runtime::WeightsSpec::Int8 { q, scales: s },
            bias,
        })
        .collect();
    let (mean, inv, low, high, ls) = (
        f(b.obs_mean),
        f(b.obs_inv_std),
        f(b.action_low),
        f(b.action_high),
        f(b.log_std),
    );
    let safe: Vec<f32> = b.safe_action().collect();
    let spec = tinyppo_runtime::BlobSpec {
        obs_dim: b.obs_dim,
        act_dim: b.act_dim,
        hidden: b.hidden(),
        activation: b.activation,
        obs_mean: &mean,
        obs_inv_std: &inv,
        obs_clip: b.obs_clip,
        action_low: &low,
        action_high: &high,
        log_std: &ls,
        layers: &specs,
        plant: b.plant_code().unwrap_or(0),
        safe_action: &safe,
        extensions: exts,
    };
    let mut buf = vec![0u8; format::max_encoded_len(&spec)];
    let n = tinyppo_runtime::encode(&spec, &mut buf).map_err(|e| match e {
        tinyppo_runtime::EncodeError::Invalid(f) => f,
        other => panic!("{other:?}"),
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// The device's loop (simulate: the firmware's code) builds the history
/// the way the trainer's environment does and the way the fine-tune
/// rebuilds it from the log: the logged log-probabilities recompute
/// exactly from the rebuilt inputs, and replaying the logged actions
/// through the training environment's wrapper gives the same history.
#[test]
fn device_loop_trainer_env_and_log_rebuild_agree() {
    let tmp = TempDir::new("hist-agree");
    let (reg, state) = trained(tmp.path());
    let plant = reg.get("pendulum").unwrap();
    let blob = export_blob(&state, plant, Quant::Int8).unwrap();
    let (bytes, stats) = plant
        .simulate_blob(
            &blob,
            &RunConfig {
                episodes: 3,
                seed: 5,
                deterministic: false,
            },
        )
        .unwrap();
    assert_eq!(stats.episodes, 3);
    let log = decode_stream(&bytes);
    let n = log.transitions.len();
    assert_eq!(n, 600);
    let (aug, left_out) = augment(log, 3, &[-2.0], &[2.0], &[0.0]);
    assert_eq!((aug.transitions.len(), left_out), (n, 0));
    assert_eq!(aug.streams[0].obs_dim, 6);
    // Log-probs: the device's, recomputed from the rebuilt inputs.
    let items: Vec<(&[f32], &[f32])> = aug
        .transitions
        .iter()
        .map(|t| (t.obs(), t.action()))
        .collect();
    let lps = plant.log_probs(&blob, &items).unwrap();
    for (t, lp) in aug.transitions.iter().zip(&lps) {
        assert_eq!(
            lp.map(f32::to_bits),
            Some(t.log_prob.to_bits()),
            "episode {} t {}",
            t.episode,
            t.t
        );
    }
    // The trainer's wrapper, fed the logged actions (clipped by the
    // trainer before the step), gives the same history.
    let mut env = HistoryEnv::new(plant.make_env(), 3);
    let mut obs = vec![0.0; 6];
    let mut rng = tinyppo_runtime::rng::seeded(0);
    for t in &aug.transitions {
        if t.t == 0 {
            env.reset(&mut rng, &mut obs);
        }
        assert_eq!(&obs[3..], &t.obs()[3..], "episode {} t {}", t.episode, t.t);
        let a = [t.action()[0].clamp(-2.0, 2.0)];
        use tinyppo_trainer::env::Env;
        env.step(&a, &mut obs);
    }
    // The end of each episode has its history too.
    assert!(aug.episode_ends.iter().all(|e| e.obs.len() == 6));
}

/// `tinyppo` end to end: train with a history, inspect, eval, simulate,
/// and fine-tune from the simulated device's log.
#[test]
fn cli_trains_exports_and_finetunes_a_history_policy() {
    let tmp = TempDir::new("hist-cli");
    let run_dir = tmp.path().join("run");
    let mut args = vec![
        "train",
        "--env",
        "pendulum",
        "--seed",
        "3",
        "--quiet",
        "--out",
        s(&run_dir),
    ];
    for x in &SETS {
        args.extend(["--set", x]);
    }
    ok(&args);
    let policy = run_dir.join("policy.bin");
    let out = ok(&["inspect", s(&policy)]);
    assert!(out.contains("action history  3"), "{out}");
    let out = ok(&[
        "eval",
        "--env",
        "pendulum",
        "--policy",
        s(&policy),
        "--episodes",
        "4",
    ]);
    assert!(out.contains("mean return"), "{out}");
    let log = tmp.path().join("dev.log");
    ok(&[
        "simulate",
        "--policy",
        s(&policy),
        "--env",
        "pendulum",
        "--episodes",
        "4",
        "--seed",
        "9",
        "--out",
        s(&log),
    ]);
    let out = ok(&[
        "finetune",
        "--accept",
        "always",
        "--checkpoint",
        s(&run_dir),
        "--logs",
        s(&log),
        "--iterations",
        "1",
    ]);
    assert!(out.contains("imported 800 records"), "{out}");
    assert!(out.contains("0 mismatches"), "{out}");
    let v2 = Blob::parse(&std::fs::read(&policy).unwrap())
        .unwrap()
        .history()
        .map(|h| h.len);
    assert_eq!(v2, Some(3), "the fine-tuned version keeps its history");
}

/// Golden bytes of the example in `docs/FORMAT.md` ("Action-history
/// record"), written out from the spec's layout, not from the encoder.
#[test]
fn golden_history_record() {
    use tinyppo_runtime::history::{encode_body, parse_body, HistorySpec};
    let f = |v: f32| v.to_le_bytes();
    let mut want = vec![2u8]; // len
    want.push(8); // mean: 8 bytes
    want.extend(f(0.0));
    want.extend(f(0.0));
    want.push(8); // inv_std
    want.extend(f(1.0));
    want.extend(f(0.5));
    want.push(16); // weights: 2 rows × 2 columns
    for w in [1.0, -1.0, 0.5, 0.25] {
        want.extend(f(w));
    }
    let doc = "02 08 00 00 00 00 00 00 00 00 08 00 00 80 3f 00 \
               00 00 3f 10 00 00 80 3f 00 00 80 bf 00 00 00 3f \
               00 00 80 3e";
    let hex: Vec<String> = want.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex.join(" "),
        doc.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let spec = HistorySpec {
        len: 2,
        mean: &[0.0, 0.0],
        inv_std: &[1.0, 0.5],
        weights: &[1.0, -1.0, 0.5, 0.25],
    };
    let mut buf = [0u8; 64];
    let n = encode_body(&spec, &mut buf).unwrap();
    assert_eq!(&buf[..n], &want[..]);
    let v = parse_body(&want, 3, 1, 2).unwrap();
    assert_eq!(v.len, 2);
    assert_eq!(format::f32s(v.inv_std).collect::<Vec<_>>(), [1.0, 0.5]);
    assert_eq!(
        format::f32s(v.weights).collect::<Vec<_>>(),
        [1.0, -1.0, 0.5, 0.25]
    );
}
