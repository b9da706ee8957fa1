//! Fine-tuning from device logs (`trainer/src/finetune.rs`): the import of
//! logs (fragments, successors and bootstraps, the lag filter, unknown
//! policy ids, deterministic streams, the host's recomputation of `log μ`)
//! on streams written by `simulate_blob`, and the command end to end:
//! `tinyppo train` → `simulate_blob` → `tinyppo finetune` (twice, in place
//! and with `--out`), checking the policy index, the exported blob, the
//! checkpoint and `metrics.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use tinyppo_runtime::sim::RunConfig;
use tinyppo_runtime::Policy;
use tinyppo_trainer::algo::TrainState;
use tinyppo_trainer::checkpoint;
use tinyppo_trainer::export::{export_blob, policy_id, PolicyIndex, Quant};
use tinyppo_trainer::finetune::{import_log, FinetuneConfig, ImportCtx};
use tinyppo_trainer::logs::{decode_stream, DecodedLog};
use tinyppo_trainer::normalize::normalize_obs;
use tinyppo_trainer::registry::Registry;

use crate::cli::run;
use crate::trainer_util::{new_trainer, plant, tiny_config, TempDir};

/// A (briefly trained) pendulum state, its int8 blob and a 3-episode
/// stochastic log of that blob (600 transitions).
fn setup(deterministic: bool) -> (TrainState, Vec<u8>, DecodedLog) {
    let mut t = new_trainer(tiny_config(21)).expect("trainer");
    t.step_update().expect("update"); // non-trivial obs/reward statistics
    let blob = export_blob(&t.state, &t.plant, Quant::Int8).expect("export");
    let cfg = RunConfig {
        episodes: 3,
        seed: 5,
        deterministic,
    };
    let (bytes, st) = plant("pendulum")
        .simulate_blob(&blob, &cfg)
        .expect("simulate");
    assert_eq!(st.transitions, 600);
    (t.state, blob, decode_stream(&bytes))
}

fn maps(id: u32, version: u32, blob: &[u8]) -> (BTreeMap<u32, u32>, BTreeMap<u32, Vec<u8>>) {
    (
        BTreeMap::from([(id, version)]),
        BTreeMap::from([(id, blob.to_vec())]),
    )
}

fn norm(state: &TrainState, x: &[f32]) -> Vec<f32> {
    let (m, s) = state.obs_rms.export();
    let mut v = x.to_vec();
    normalize_obs(&mut v, &m, &s, state.cfg.obs_clip);
    v
}

#[test]
fn offpolicy_import_builds_fragments_with_bootstraps() {
    let (state, blob, log) = setup(false);
    let id = policy_id(&blob).unwrap();
    let (v, b) = maps(id, 1, &blob);
    let fc = FinetuneConfig::default();
    let ctx = ImportCtx::of_state(&plant("pendulum"), &state, &v, &b, 1, &fc);
    let (ds, rep) = import_log(&log, &ctx).expect("import");
    assert_eq!((rep.records, rep.used, rep.fragments), (600, 600, 3));
    assert_eq!(rep.lag_hist, BTreeMap::from([(0, 600)]));
    // The host recomputes the device's log μ exactly (same runtime code).
    assert_eq!((rep.compared, rep.mismatches), (600, 0));
    assert_eq!(rep.max_abs_diff, 0.0);
    // Pendulum episodes are cut by the time limit: each fragment ends at
    // t = 199, truncated, bootstrapping from the EpisodeEnd observation.
    for (k, end) in log.episode_ends.iter().enumerate() {
        let last = 200 * k + 199;
        assert!(ds.ends[last] && !ds.terminated[last]);
        assert_eq!(
            ds.next_obs[last * 3..last * 3 + 3],
            norm(&state, &end.obs)[..]
        );
        // Inside a fragment the successor is the next step.
        assert_eq!(ds.next_obs[0..3], ds.obs[3..6]);
    }
    assert_eq!(ds.ends.iter().filter(|&&e| e).count(), 3);
    // Rewards are scaled by the frozen return std, log μ is the logged one.
    let std = (state.reward_scaler.rms.var[0] + 1e-8).sqrt() as f32;
    assert_eq!(
        ds.rewards[7],
        (log.transitions[7].reward / std).clamp(-10.0, 10.0)
    );
    assert_eq!(ds.logp_mu[7], log.transitions[7].log_prob);
    assert_eq!(ds.episode_returns.len(), 3);
}

#[test]
fn offpolicy_import_splits_fragments_at_drop_gaps() {
    let (state, blob, mut log) = setup(false);
    let id = policy_id(&blob).unwrap();
    let (v, b) = maps(id, 1, &blob);
    let fc = FinetuneConfig::default();
    let ctx = ImportCtx::of_state(&plant("pendulum"), &state, &v, &b, 1, &fc);
    // Entries t = 50..53 of episode 0 were dropped on the link.
    log.transitions
        .retain(|t| !(t.episode == 0 && (50..53).contains(&t.t)));
    let (ds, rep) = import_log(&log, &ctx).expect("import");
    // Episode 0 splits into t = 0..49 and 53..199; step 49 has no known
    // successor and is dropped, its observation bootstraps step 48.
    assert_eq!(rep.fragments, 4);
    assert_eq!(rep.no_successor, 1);
    assert_eq!(rep.used, 600 - 3 - 1);
    assert!(ds.ends[48] && !ds.terminated[48]);
    assert_eq!(
        ds.next_obs[48 * 3..49 * 3],
        norm(&state, log.transitions[49].obs())[..]
    );
    assert_eq!(
        ds.obs[49 * 3..50 * 3],
        norm(&state, log.transitions[50].obs())[..]
    );
}

#[test]
fn offpolicy_import_filters_by_lag_and_reports_unknown_ids() {
    let (state, blob, log) = setup(false);
    let id = policy_id(&blob).unwrap();
    let mut fc = FinetuneConfig::default();
    // The logged policy is version 1 of 5: lag 4.
    let (v, b) = maps(id, 1, &blob);
    fc.max_lag = 3;
    let (_, rep) = import_log(
        &log,
        &ImportCtx::of_state(&plant("pendulum"), &state, &v, &b, 5, &fc),
    )
    .unwrap();
    assert_eq!((rep.used, rep.dropped_lag), (0, 600));
    fc.max_lag = 4;
    let (ds, rep) = import_log(
        &log,
        &ImportCtx::of_state(&plant("pendulum"), &state, &v, &b, 5, &fc),
    )
    .unwrap();
    assert_eq!((rep.used, rep.dropped_lag), (600, 0));
    assert_eq!(rep.lag_hist, BTreeMap::from([(4, 600)]));
    assert!(ds.lag.iter().all(|&l| l == Some(4)));

    // An index that does not know the id: dropped and reported by id, or
    // kept with lag "unknown" and no recomputation of log μ.
    let (empty_v, empty_b) = (BTreeMap::new(), BTreeMap::new());
    let (_, rep) = import_log(
        &log,
        &ImportCtx::of_state(&plant("pendulum"), &state, &empty_v, &empty_b, 1, &fc),
    )
    .unwrap();
    assert_eq!(rep.used, 0);
    assert_eq!(rep.unknown, BTreeMap::from([(format!("{id:08x}"), 600)]));
    fc.keep_unknown = true;
    let (ds, rep) = import_log(
        &log,
        &ImportCtx::of_state(&plant("pendulum"), &state, &empty_v, &empty_b, 1, &fc),
    )
    .unwrap();
    assert_eq!((rep.used, rep.compared), (600, 0));
    assert!(ds.lag.iter().all(Option::is_none));
}

#[test]
fn offpolicy_import_reports_log_mu_mismatches() {
    let (state, blob, mut log) = setup(false);
    let id = policy_id(&blob).unwrap();
    let (v, b) = maps(id, 1, &blob);
    let fc = FinetuneConfig::default();
    for k in [3, 77, 250, 400, 599] {
        log.transitions[k].log_prob += 0.01;
    }
    let (_, rep) = import_log(
        &log,
        &ImportCtx::of_state(&plant("pendulum"), &state, &v, &b, 1, &fc),
    )
    .unwrap();
    assert_eq!((rep.compared, rep.mismatches), (600, 5));
    assert!(
        (rep.max_abs_diff - 0.01).abs() < 1e-5,
        "{}",
        rep.max_abs_diff
    );
}

#[test]
fn offpolicy_import_drops_deterministic_streams() {
    // Mean actions: μ is a point mass, no importance weight exists.
    let (state, blob, log) = setup(true);
    let id = policy_id(&blob).unwrap();
    let (v, b) = maps(id, 1, &blob);
    let fc = FinetuneConfig::default();
    let (ds, rep) = import_log(
        &log,
        &ImportCtx::of_state(&plant("pendulum"), &state, &v, &b, 1, &fc),
    )
    .unwrap();
    assert_eq!((rep.used, rep.deterministic), (0, 600));
    assert!(ds.is_empty());
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "tinyppo {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write_log(blob: &[u8], episodes: u32, seed: u64, path: &Path) {
    let cfg = RunConfig {
        episodes,
        seed,
        deterministic: false,
    };
    let (bytes, _) = plant("pendulum")
        .simulate_blob(blob, &cfg)
        .expect("simulate");
    std::fs::write(path, bytes).expect("write log");
}

/// A short pendulum run (version 1) in `run_dir`.
fn train_small(run_dir: &Path) {
    ok(&[
        "train",
        "--env",
        "pendulum",
        "--total-steps",
        "2048",
        "--set",
        "num_steps=128",
        "--set",
        "num_envs=2",
        "--set",
        "ppo.num_minibatches=4",
        "--set",
        "ppo.update_epochs=2",
        "--set",
        "eval_episodes=2",
        "--quiet",
        "--out",
        s(run_dir),
    ]);
}

fn int8_ids(idx: &PolicyIndex) -> Vec<(u32, String)> {
    idx.policies
        .iter()
        .filter(|r| r.quant == "int8")
        .map(|r| (r.version, r.id.clone()))
        .collect()
}

#[test]
fn offpolicy_finetune_end_to_end() {
    let tmp = TempDir::new("offpolicy-e2e");
    let run_dir = tmp.path().join("run");
    train_small(&run_dir);
    let idx = PolicyIndex::load(&run_dir)
        .unwrap()
        .expect("train writes the index");
    assert_eq!(idx.latest_version(), 1);
    let v1 = std::fs::read(run_dir.join("policy.bin")).unwrap();
    let id1 = policy_id(&v1).unwrap();
    assert_eq!(int8_ids(&idx), [(1, format!("{id1:08x}"))]);
    assert_eq!(
        std::fs::read(run_dir.join(format!("policy-{id1:08x}.bin"))).unwrap(),
        v1
    );

    // Device logs of version 1, then two fine-tune iterations in place.
    let log1 = tmp.path().join("v1.log");
    write_log(&v1, 8, 77, &log1);
    let out = ok(&[
        "finetune",
        "--accept",
        "always",
        "--checkpoint",
        s(&run_dir),
        "--logs",
        s(&log1),
        "--iterations",
        "2",
    ]);
    assert!(out.contains("imported 1600 records"), "{out}");
    assert!(out.contains("0 older than --max-lag"), "{out}");
    assert!(out.contains("0 mismatches"), "{out}");
    assert!(out.contains("iter 2/2 [vtrace]"), "{out}");
    assert!(out.contains("policy version 2"), "{out}");

    let idx = PolicyIndex::load(&run_dir).unwrap().unwrap();
    assert_eq!(idx.latest_version(), 2);
    assert_eq!(idx.policies.len(), 4, "int8 and f32 of each version");
    let v2 = std::fs::read(run_dir.join("policy.bin")).unwrap();
    let id2 = policy_id(&v2).unwrap();
    assert_ne!(id1, id2);
    assert_eq!(
        int8_ids(&idx),
        [(1, format!("{id1:08x}")), (2, format!("{id2:08x}"))]
    );
    assert!(idx
        .policies
        .iter()
        .filter(|r| r.version == 2)
        .all(|r| r.parent == Some(1)));
    // The new policy loads in the runtime and acts.
    let p = Policy::<3, 1, 256>::from_bytes(&v2).expect("runtime loads the fine-tuned blob");
    assert!(p.mean(&[1.0, 0.0, 0.5]).unwrap()[0].is_finite());
    let state = checkpoint::load(&run_dir).unwrap();
    assert!(state.model.params.iter().all(|p| p.is_finite()));
    assert_eq!(
        export_blob(&state, &plant(&state.cfg.env), Quant::Int8).unwrap(),
        v2
    );

    // metrics.csv: the training rows, then one row per iteration with the
    // off-policy diagnostics, all finite.
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(lines.len(), 1 + 8 + 2, "8 training updates + 2 iterations");
    for col in [
        "offpolicy/ess",
        "offpolicy/truncated_frac",
        "losses/clipfrac",
        "offpolicy/kl_mu_prox",
        "offpolicy/lag_hist",
    ] {
        let k = header.iter().position(|h| *h == col).expect(col);
        let v = lines[10].split(',').nth(k).unwrap();
        if col == "offpolicy/lag_hist" {
            assert_eq!(v, "0:1600");
        } else {
            let x: f64 = v.parse().unwrap();
            assert!(x.is_finite(), "{col} = {v}");
        }
    }

    // The logs are now one version old. With --max-lag 0 nothing is left,
    // and the error says why; with --out, the history is copied and the new
    // version appended there while the source keeps two versions.
    let o = run(&[
        "finetune",
        "--accept",
        "always",
        "--checkpoint",
        s(&run_dir),
        "--logs",
        s(&log1),
        "--max-lag",
        "0",
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("1600 older than --max-lag 0"),
        "{err}"
    );
    let fork = tmp.path().join("fork");
    ok(&[
        "finetune",
        "--accept",
        "always",
        "--checkpoint",
        s(&run_dir),
        "--logs",
        s(&log1),
        "--out",
        s(&fork),
        "--iterations",
        "1",
        "--is-correction",
        "per-decision",
        "--quiet",
    ]);
    let fidx = PolicyIndex::load(&fork).unwrap().unwrap();
    assert_eq!(fidx.latest_version(), 3);
    assert_eq!(
        PolicyIndex::load(&run_dir)
            .unwrap()
            .unwrap()
            .latest_version(),
        2
    );
    for r in &fidx.policies {
        let b = std::fs::read(fork.join(&r.file)).expect("every indexed blob is in the fork");
        assert_eq!(format!("{:08x}", policy_id(&b).unwrap()), r.id);
    }
}

#[test]
fn offpolicy_finetune_bootstraps_the_index_and_mixes_onpolicy_episodes() {
    use tinyppo_trainer::finetune::{finetune, Progress};
    // A run directory from before the index existed: checkpoint only.
    let tmp = TempDir::new("offpolicy-mix");
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let mut t = new_trainer(tiny_config(31)).expect("trainer");
    t.step_update().expect("update");
    checkpoint::save(&dir, &t.state).unwrap();
    let v1 = export_blob(&t.state, &t.plant, Quant::Int8).unwrap();
    // Logs of a policy this run never exported: reported and dropped, so
    // the iterations learn from the fresh on-policy episodes alone.
    let mut other = new_trainer(tiny_config(32)).expect("trainer");
    other.step_update().expect("update");
    let foreign = export_blob(&other.state, &other.plant, Quant::Int8).unwrap();
    let log = tmp.path().join("foreign.log");
    write_log(&foreign, 2, 9, &log);

    let fc = FinetuneConfig {
        iterations: 2,
        mix_onpolicy: 2,
        update_epochs: Some(1),
        accept: tinyppo_trainer::finetune::Accept::Always,
        ..FinetuneConfig::default()
    };
    let mut unknown = 0;
    let o = finetune(&Registry::builtin(), &dir, None, &[log], &fc, &mut |p| {
        if let Progress::Imported(r) = p {
            unknown = r.unknown_records();
        }
    })
    .expect("fine-tune");
    assert_eq!(unknown, 400);
    assert_eq!((o.parent_version, o.version), (1, 2));
    for (k, row) in o.rows.iter().enumerate() {
        assert_eq!((row.samples, row.onpolicy_samples), (400, 400));
        assert!(row.onpolicy_return.is_finite() && row.losses.v_loss.is_finite());
        assert_eq!(row.global_step, t.state.global_step + 400 * (k as u64 + 1));
    }
    // The bootstrap made the checkpoint's export version 1.
    let idx = PolicyIndex::load(&dir).unwrap().unwrap();
    let v1_id = format!("{:08x}", policy_id(&v1).unwrap());
    let r1 = idx
        .policies
        .iter()
        .find(|r| r.id == v1_id)
        .expect("v1 indexed");
    assert_eq!((r1.version, r1.origin.as_str()), (1, "bootstrap"));
    assert_eq!(std::fs::read(dir.join(&r1.file)).unwrap(), v1);
    assert_eq!(idx.latest_version(), 2);
}

/// Regression (issue 15, item 7): the same log given twice (`--logs a.bin
/// a.bin`, or a copy) was counted twice, silently. Identical streams are
/// now found by content and used once, and the report says so.
#[test]
fn offpolicy_the_same_stream_twice_is_used_once() {
    let (state, blob, log) = setup(false);
    let id = policy_id(&blob).unwrap();
    let (v, b) = maps(id, 1, &blob);
    let fc = FinetuneConfig::default();
    let ctx = ImportCtx::of_state(&plant("pendulum"), &state, &v, &b, 1, &fc);
    let (once, _) = import_log(&log, &ctx).unwrap();
    let mut twice = log.clone();
    twice.append(log.clone());
    let (ds, rep) = import_log(&twice, &ctx).unwrap();
    assert_eq!(
        (rep.duplicate_streams, rep.duplicate_stream_records),
        (1, 600)
    );
    assert_eq!(ds.len(), once.len());
    assert_eq!(ds.obs, once.obs);
    // Two different logs are both used.
    let (_, _, other) = {
        let (s, bl, _) = setup(false);
        let (bytes, _) = plant("pendulum")
            .simulate_blob(
                &bl,
                &RunConfig {
                    episodes: 3,
                    seed: 6,
                    deterministic: false,
                },
            )
            .unwrap();
        (s, bl, decode_stream(&bytes))
    };
    let mut two = log.clone();
    two.append(other);
    let (ds, rep) = import_log(&two, &ctx).unwrap();
    assert_eq!(rep.duplicate_streams, 0);
    assert_eq!(ds.len(), 1200);
}

/// Regression (issue 15, item 10): one record with a valid CRC and an
/// action of 1e30 made `finetune` fail with "policy loss is NaN". Records
/// with impossible values are dropped and counted; the rest trains.
#[test]
fn offpolicy_absurd_records_are_dropped_and_counted() {
    let (state, blob, mut log) = setup(false);
    let id = policy_id(&blob).unwrap();
    let (v, b) = maps(id, 1, &blob);
    let fc = FinetuneConfig::default();
    log.transitions[17].action_mut()[0] = 1e30;
    log.transitions[300].obs_mut()[1] = -3e20;
    log.transitions[450].reward = 1e25;
    log.transitions[451].log_prob = -1e9;
    let ctx = ImportCtx::of_state(&plant("pendulum"), &state, &v, &b, 1, &fc);
    let (ds, rep) = import_log(&log, &ctx).unwrap();
    assert_eq!(rep.absurd, 4);
    assert!(ds.actions.iter().all(|a| a.abs() < 1e6));
    assert!(ds.rewards.iter().all(|r| r.is_finite()));
    // And the fine-tune of that log runs to the end.
    let tmp = TempDir::new("absurd");
    let dir = tmp.path().join("run");
    let reg = Registry::builtin();
    let cfg = tiny_config(21);
    tinyppo_trainer::run::train(
        &reg,
        cfg,
        &dir,
        &tinyppo_trainer::run::RunOptions {
            final_eval: false,
            ..Default::default()
        },
        &mut |_| {},
    )
    .unwrap();
    let blob = std::fs::read(dir.join("policy.bin")).unwrap();
    let (bytes, _) = plant("pendulum")
        .simulate_blob(
            &blob,
            &RunConfig {
                episodes: 2,
                seed: 1,
                deterministic: false,
            },
        )
        .unwrap();
    let mut bad = bytes.clone();
    // Damage one transition frame's action in place and re-frame it with a
    // valid CRC: decode, edit, re-encode the stream.
    let mut log = decode_stream(&bad);
    log.transitions[5].action_mut()[0] = 1e30;
    bad = reencode(&log, &bytes);
    let path = tmp.path().join("bad.bin");
    std::fs::write(&path, &bad).unwrap();
    let fc = FinetuneConfig {
        iterations: 1,
        accept: tinyppo_trainer::finetune::Accept::Always,
        ..FinetuneConfig::default()
    };
    let o = tinyppo_trainer::finetune::finetune(&reg, &dir, None, &[path], &fc, &mut |_| {})
        .expect("an absurd record is dropped, not a NaN loss");
    assert_eq!(o.report.absurd, 1);
}

/// The stream `original` with its transition frames replaced by `log`'s
/// (valid CRCs): a device that sent an absurd value with a good checksum.
fn reencode(log: &DecodedLog, original: &[u8]) -> Vec<u8> {
    use tinyppo_runtime::log::{decode_frame, encode_transition, Frame, Record, MAX_FRAME_LEN};
    let mut out = Vec::new();
    let mut k = 0;
    let mut dims = None;
    for f in original.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let mut work = f.to_vec();
        match decode_frame(&mut work, dims).unwrap() {
            Frame::Header(h) => {
                dims = Some(h.dims());
                out.extend_from_slice(f);
            }
            Frame::Transition(_) => {
                let t = &log.transitions[k];
                k += 1;
                let rec = Record::<3, 1> {
                    seq: t.seq,
                    episode: t.episode,
                    t: t.t,
                    obs: t.obs().try_into().unwrap(),
                    action: t.action().try_into().unwrap(),
                    reward: t.reward,
                    terminated: t.terminated,
                    truncated: t.truncated,
                    log_prob: t.log_prob,
                    policy_id: t.policy_id,
                };
                let mut buf = [0u8; MAX_FRAME_LEN];
                let n = encode_transition(&rec, &mut buf).unwrap();
                out.extend_from_slice(&buf[..n - 1]);
            }
            _ => out.extend_from_slice(f),
        }
        out.push(0);
    }
    out
}

/// The publication gate: a candidate the logs cannot vouch for (a huge
/// learning rate drives it far from the logged policy) is not published —
/// the run keeps its version, the candidate, its metrics and the decision
/// with its numbers go to `rejected/`, the fine-tune stops at the first
/// iterate the logs cannot judge, and `--json` says so; `--accept always`
/// publishes the same fine-tune, with the gate's estimates in metrics.csv.
#[test]
fn offpolicy_the_gate_keeps_the_version_when_the_logs_cannot_vouch_for_the_candidate() {
    let tmp = TempDir::new("offpolicy-gate");
    let run_dir = tmp.path().join("run");
    train_small(&run_dir);
    let v1 = std::fs::read(run_dir.join("policy.bin")).unwrap();
    let log = tmp.path().join("v1.log");
    write_log(&v1, 20, 5, &log);
    let wild = [
        "--logs",
        s(&log),
        "--iterations",
        "4",
        "--learning-rate",
        "0.05",
        "--json",
    ];
    let args = |extra: &[&str]| -> Vec<String> {
        ["finetune", "--checkpoint", s(&run_dir)]
            .iter()
            .chain(&wild)
            .chain(extra)
            .map(|a| a.to_string())
            .collect()
    };
    let a = args(&[]);
    let out = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["published"], false, "{j}");
    assert_eq!(j["version"], 1);
    assert_eq!(j["decision"]["accepted"], false);
    assert_eq!(j["decision"]["episodes"], 20);
    let reason = j["reason"].as_str().unwrap();
    assert!(
        reason.contains("cannot judge") || reason.contains("does not beat"),
        "{reason}"
    );
    assert_eq!(
        PolicyIndex::load(&run_dir)
            .unwrap()
            .unwrap()
            .latest_version(),
        1,
        "the run keeps its version"
    );
    assert_eq!(std::fs::read(run_dir.join("policy.bin")).unwrap(), v1);
    let cand = std::path::PathBuf::from(j["candidate_dir"].as_str().unwrap());
    assert!(
        cand.starts_with(run_dir.join("rejected")),
        "{}",
        cand.display()
    );
    for f in [
        "policy.bin",
        "policy-f32.bin",
        "metrics.csv",
        "decision.json",
    ] {
        assert!(cand.join(f).exists(), "{f}");
    }
    let rows = std::fs::read_to_string(cand.join("metrics.csv")).unwrap();
    assert!(
        rows.lines().next().unwrap().contains("gate/lower"),
        "{rows}"
    );
    let iterations = rows.lines().count() - 1;
    assert!((1..=4).contains(&iterations), "{iterations}");

    // --accept always: the same fine-tune is published as version 2.
    let a = args(&["--accept", "always"]);
    let out = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["published"], true, "{j}");
    assert_eq!(j["version"], 2);
    assert!(j["decision"]["estimate"].is_number(), "{j}");
    let m = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let header: Vec<&str> = m.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "gate/accepted").unwrap();
    let last: Vec<&str> = m.lines().last().unwrap().split(',').collect();
    assert_eq!(last[col], "1");
}

/// `--kl-budget` bounds the whole fine-tune's distance from the logs'
/// policy: with a learning rate that takes the first iterate far past the
/// budget (checked without it), the line search shortens that iterate
/// onto the budget (`step_scale` < 1), the fine-tune ends there, and every
/// judged candidate's `KL(μ‖π)` is within it. `--keep-candidates` keeps
/// one blob per judged iterate, named with its policy id in
/// `candidates.json`, and its decision matches the metrics row.
#[test]
fn offpolicy_the_kl_budget_keeps_every_candidate_within_it() {
    let tmp = TempDir::new("offpolicy-kl-budget");
    let run_dir = tmp.path().join("run");
    train_small(&run_dir);
    let v1 = std::fs::read(run_dir.join("policy.bin")).unwrap();
    let log = tmp.path().join("v1.log");
    write_log(&v1, 20, 5, &log);
    let budget = 0.002;
    let finetune = |out: &Path, keep: &Path, extra: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec![
            "finetune",
            "--checkpoint",
            s(&run_dir),
            "--out",
            s(out),
            "--logs",
            s(&log),
            "--iterations",
            "3",
            "--learning-rate",
            "0.01",
            "--accept",
            "always",
            "--keep-candidates",
            s(keep),
            "--json",
        ];
        a.extend_from_slice(extra);
        ok(&a);
        let j: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(keep.join("candidates.json")).unwrap())
                .unwrap();
        j["candidates"].as_array().unwrap().clone()
    };
    let free = finetune(&tmp.path().join("free"), &tmp.path().join("free-c"), &[]);
    assert_eq!(free.len(), 3, "one candidate per iteration");
    let kl0 = free[0]["decision"]["kl_mu"].as_f64().unwrap();
    assert!(
        kl0 > 4.0 * budget,
        "the first iterate is past the budget: {kl0}"
    );

    let b = budget.to_string();
    let keep = tmp.path().join("kept");
    let out = tmp.path().join("budget");
    let cands = finetune(&out, &keep, &["--kl-budget", &b]);
    assert_eq!(
        cands.len(),
        1,
        "the fine-tune ends at the budget: {cands:?}"
    );
    let c = &cands[0];
    let scale = c["step_scale"].as_f64().unwrap();
    assert!(scale > 0.0 && scale < 1.0, "{scale}");
    let kl = c["decision"]["kl_mu"].as_f64().unwrap();
    assert!(kl <= budget, "{kl} > {budget}");
    // Bisection to 1/256 lands near the budget, not far inside it.
    assert!(kl > 0.25 * budget, "{kl}");
    let blob = std::fs::read(keep.join(c["file"].as_str().unwrap())).unwrap();
    assert_eq!(
        format!("{:08x}", policy_id(&blob).unwrap()),
        c["policy_id"].as_str().unwrap()
    );
    let m = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let header: Vec<&str> = m.lines().next().unwrap().split(',').collect();
    let last: Vec<&str> = m.lines().last().unwrap().split(',').collect();
    let cell = |k: &str| last[header.iter().position(|h| *h == k).unwrap()];
    assert_eq!(cell("offpolicy/step_scale").parse::<f64>().unwrap(), scale);
    assert_eq!(cell("gate/kl_mu").parse::<f64>().unwrap(), kl);
    // The published blob has the same means as the judged one (only σ
    // differs): the mean actions agree.
    let published = std::fs::read(out.join("policy.bin")).unwrap();
    let (pa, pb) = (
        Policy::<3, 1, 256>::from_bytes(&published).unwrap(),
        Policy::<3, 1, 256>::from_bytes(&blob).unwrap(),
    );
    let x = [0.3f32, -0.2, 0.5];
    assert_eq!(pa.mean(&x).unwrap(), pb.mean(&x).unwrap());
}
