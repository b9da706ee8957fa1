//! The simulation entry point (`runtime/src/sim.rs`) and the host commands
//! around it (`tinyppo simulate`, `tinyppo logs decode`): determinism, what
//! `HID`/`CAP`/the drain schedule may and may not change, an independent
//! replay of the logged transitions, returns equal to `tinyppo eval`, and
//! drop accounting on a slow link.

use std::path::Path;

use tinyppo_runtime::log::{decode_frame, Dims, Frame};
use tinyppo_runtime::plants::{self, Pendulum, Plant};
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::sim::{run_simulated, run_simulated_draining, RunConfig, RunStats};
use tinyppo_runtime::{Activation, Policy};
use tinyppo_trainer::logs::{decode_stream, DecodedLog};
use tinyppo_trainer::stats::mean_std;

use crate::trainer_util::{plant, TempDir};
use crate::util::{Net, TestRng};

fn blob(seed: u64, obs: usize, act: usize, quant_int8: bool) -> Vec<u8> {
    let net = Net::random(
        &mut TestRng::new(seed),
        obs,
        act,
        &[16],
        Activation::Tanh,
        (-1.0, 0.0),
    );
    if quant_int8 {
        net.encode_int8()
    } else {
        net.encode_f32()
    }
}

fn sim<const HID: usize, const CAP: usize>(blob: &[u8], cfg: &RunConfig) -> (Vec<u8>, RunStats) {
    let policy = Policy::<3, 1, HID>::from_bytes(blob).unwrap();
    let mut out = Vec::new();
    let st = run_simulated::<_, 3, 1, HID, CAP>(&policy, &mut Pendulum::new(), cfg, &mut |f| {
        out.extend_from_slice(f)
    });
    (out, st)
}

fn cfg(episodes: u32, seed: u64, deterministic: bool) -> RunConfig {
    RunConfig {
        episodes,
        seed,
        deterministic,
    }
}

#[test]
fn the_stream_depends_on_seed_and_mode_but_not_on_hid_cap_or_host() {
    let b = blob(1, 3, 1, true);
    let c = cfg(3, 42, false);
    let (a, st) = sim::<16, 64>(&b, &c);
    assert_eq!(sim::<16, 64>(&b, &c).0, a, "same inputs, same bytes");
    assert_eq!(sim::<256, 64>(&b, &c).0, a, "HID changes no byte");
    assert_eq!(sim::<16, 2>(&b, &c).0, a, "CAP >= 2 drops nothing");
    assert_ne!(sim::<16, 64>(&b, &cfg(3, 43, false)).0, a, "another seed");
    assert_ne!(sim::<16, 64>(&b, &cfg(3, 42, true)).0, a, "mean actions");
    // The host command's function is the same call.
    let (host, host_st) = plant("pendulum").simulate_blob(&b, &c).unwrap();
    assert_eq!(host, a);
    assert_eq!(host_st, st);
    assert_eq!((st.episodes, st.transitions, st.dropped), (3, 600, 0));
    // 3 headers, 600 transitions, 3 episode ends, 1 end.
    assert_eq!(st.frames, 607);
    assert_eq!(st.bytes as usize, a.len());

    // A drain schedule that drops nothing changes no byte either.
    let policy = Policy::<3, 1, 16>::from_bytes(&b).unwrap();
    let mut slow = Vec::new();
    let st2 = run_simulated_draining::<_, 3, 1, 16, 64>(
        &policy,
        &mut Pendulum::new(),
        &c,
        13,
        &mut |f| slow.extend_from_slice(f),
    );
    assert_eq!(slow, a);
    assert_eq!(st2, st);
}

/// Logs written before plants declared codes numbered them 0–3 in this
/// order; the registry finds each by name and by code.
#[test]
fn plant_codes_are_stable_and_found_by_the_registry() {
    let reg = tinyppo_trainer::registry::Registry::builtin();
    for (code, name) in [
        (0u8, "pendulum"),
        (1, "mountain-car"),
        (2, "cartpole"),
        (3, "dc-motor"),
    ] {
        assert_eq!(reg.get(name).unwrap().code(), code);
        assert_eq!(reg.by_code(code).unwrap().name(), name);
        assert_eq!(reg.describe_code(code), name);
    }
    assert!(reg.by_code(0xFF).is_none());
    assert_eq!(reg.describe_code(0xFF), "unspecified");
    assert_eq!(reg.describe_code(0x90), "unknown (0x90)");
}

/// Replays the log with the runtime's pieces directly (not the control
/// loop): the same generator order, the policy's sample, the plant's step.
/// Every logged field must come out bit for bit.
fn replay<P: Plant<O, 1> + Default, const O: usize>(blob: &[u8], log: &DecodedLog, c: &RunConfig) {
    let policy = Policy::<O, 1, 16>::from_bytes(blob).unwrap();
    let mut rng = seeded(c.seed);
    let mut plant = P::default();
    let mut it = log.transitions.iter();
    for ep in 0..c.episodes {
        let mut obs = plant.reset(&mut rng);
        for t in 0.. {
            let rec = it.next().expect("a transition per step");
            assert_eq!((rec.episode, rec.t), (ep, t));
            assert_eq!(rec.obs(), obs.as_slice(), "episode {ep} t {t}");
            let (action, applied, log_prob) = if c.deterministic {
                let mu = policy.mean(&obs).unwrap();
                (
                    mu,
                    policy.mean_applied(&obs).unwrap(),
                    policy.log_prob(&obs, &mu).unwrap(),
                )
            } else {
                let s = policy.act(&obs, &mut rng).unwrap();
                (s.action, s.applied, s.log_prob)
            };
            assert_eq!(rec.action(), action.as_slice());
            assert_eq!(rec.log_prob.to_bits(), log_prob.to_bits());
            // The behaviour log-prob is the policy's density of the action.
            assert_eq!(
                rec.log_prob.to_bits(),
                policy.log_prob(&obs, &action).unwrap().to_bits()
            );
            let tr = plant.step(&applied);
            assert_eq!(rec.reward.to_bits(), tr.reward.to_bits());
            assert_eq!(
                (rec.terminated, rec.truncated),
                (tr.terminated, tr.truncated)
            );
            assert_eq!(rec.policy_id, policy.id());
            obs = tr.obs;
            if tr.terminated || tr.truncated {
                let end = &log.episode_ends[ep as usize];
                assert_eq!((end.episode, end.t), (ep, t + 1));
                assert_eq!(end.obs, obs.to_vec(), "final observation");
                break;
            }
        }
    }
    assert!(it.next().is_none());
}

#[test]
fn logged_transitions_replay_bit_for_bit() {
    for det in [false, true] {
        let b = blob(2, 3, 1, true);
        let c = cfg(2, 7, det);
        let (bytes, _) = plant("pendulum").simulate_blob(&b, &c).unwrap();
        replay::<plants::Pendulum, 3>(&b, &decode_stream(&bytes), &c);

        let b = blob(3, 4, 1, false);
        let c = cfg(3, 8, det);
        let (bytes, _) = plant("cartpole").simulate_blob(&b, &c).unwrap();
        replay::<plants::CartPole, 4>(&b, &decode_stream(&bytes), &c);
    }
}

#[test]
fn decoded_returns_equal_eval_returns() {
    let envs: [(&str, usize); 4] = [
        ("pendulum", 3),
        ("mountain-car", 2),
        ("cartpole", 4),
        ("dc-motor", 3),
    ];
    for (env, obs) in envs {
        for stochastic in [true, false] {
            let b = blob(4, obs, 1, true);
            let c = cfg(3, 21, !stochastic);
            let (bytes, st) = plant(env).simulate_blob(&b, &c).unwrap();
            let log = decode_stream(&bytes);
            let rets = plant(env).eval_blob(&b, 3, 21, stochastic).unwrap();
            assert_eq!(log.episode_returns(), rets, "{env} stochastic={stochastic}");
            let (m, _) = mean_std(&rets);
            assert_eq!(log.mean_return(), Some(m));
            // The device sums in f32 with compensation (math::Sum): within
            // two f32 roundings of the host's f64 sum.
            let abs: f64 = rets.iter().map(|r| r.abs()).sum();
            let tol = 2.0 * f64::from(f32::EPSILON) * abs;
            assert!(
                (st.return_sum - 3.0 * m).abs() <= tol,
                "{env}: {} vs {}",
                st.return_sum,
                3.0 * m
            );
            assert!(
                (f64::from(st.mean_return) - m).abs()
                    <= tol / 3.0 + f64::from(f32::EPSILON) * m.abs()
            );
            let (_, end) = log.ends[0];
            assert_eq!(end.return_sum, st.return_sum);
            assert_eq!(
                (end.episodes, end.transitions, end.dropped),
                (3, st.transitions, 0)
            );
            assert_eq!(end.entries, st.transitions + 3);
            assert_eq!(log.frames_bad, 0);
            assert_eq!(log.streams.len(), 1);
            assert_eq!(log.streams[0].plant, plant(env).code());
            assert_eq!(log.streams[0].deterministic, !stochastic);
        }
    }
}

#[test]
fn a_slow_link_with_a_one_entry_queue_counts_and_reports_every_drop() {
    let b = blob(5, 3, 1, true);
    let policy = Policy::<3, 1, 16>::from_bytes(&b).unwrap();
    let c = cfg(2, 3, false);
    let mut bytes = Vec::new();
    let st =
        run_simulated_draining::<_, 3, 1, 16, 1>(&policy, &mut Pendulum::new(), &c, 5, &mut |f| {
            bytes.extend_from_slice(f)
        });
    assert_eq!(st.transitions, 400);
    assert!(st.dropped > 300, "{st:?}");
    let log = decode_stream(&bytes);
    assert_eq!(log.frames_bad, 0);
    assert_eq!(log.dropped(), st.dropped as u64);
    let (_, end) = log.ends[0];
    assert_eq!(end.dropped, st.dropped);
    // Every entry number is sent or inside exactly one drop run.
    let mut seen = vec![0u32; end.entries as usize];
    for t in &log.transitions {
        seen[t.seq as usize] += 1;
    }
    for e in &log.episode_ends {
        seen[e.seq as usize] += 1;
    }
    for (_, d) in &log.drops {
        for s in d.first_seq..d.first_seq + d.count {
            seen[s as usize] += 1;
        }
    }
    assert!(seen.iter().all(|&n| n == 1));
    // Sent transitions are a prefix of each drain window: their episodes
    // are incomplete, so no return is claimed.
    assert_eq!(log.mean_return(), None);
    assert_eq!(log.episodes_seen(), 2);
    // The totals still know what the plant earned.
    let full = sim::<16, 64>(&b, &c).1;
    assert_eq!(st.return_sum, full.return_sum);
}

#[test]
fn every_frame_of_a_stream_decodes_with_the_headers_dims() {
    let (mut bytes, _) = plant("mountain-car")
        .simulate_blob(&blob(6, 2, 1, true), &cfg(1, 1, false))
        .unwrap();
    let mut dims = None;
    let mut kinds = [0usize; 7];
    for f in bytes.split_mut(|&b| b == 0).filter(|f| !f.is_empty()) {
        match decode_frame(f, dims).unwrap() {
            Frame::Header(h) => {
                dims = Some(h.dims());
                kinds[0] += 1;
            }
            Frame::Transition(_) => kinds[1] += 1,
            Frame::Dropped(_) => kinds[2] += 1,
            Frame::EpisodeEnd(_) => kinds[3] += 1,
            Frame::End(_) => kinds[4] += 1,
            Frame::SelfTest(_) => kinds[5] += 1,
            Frame::Event(_) => kinds[6] += 1,
        }
    }
    assert_eq!(dims, Some(Dims { obs: 2, act: 1 }));
    assert_eq!(kinds[0], 1);
    assert_eq!(kinds[2], 0);
    assert_eq!((kinds[3], kinds[4]), (1, 1));
}

// ---------------------------------------------------------------------------
// The commands, as processes.

use crate::cli::run;

fn ok(args: &[&str]) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "tinyppo {args:?} failed:\n{err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).expect("one JSON object")
}

#[test]
fn simulate_then_decode_from_the_command_line() {
    let dir = TempDir::new("device-sim-cli");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let policy = dir.path().join("policy.bin");
    std::fs::write(&policy, blob(7, 3, 1, true)).unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    for out in [&a, &b] {
        let msg = ok(&[
            "simulate",
            "--policy",
            &s(&policy),
            "--env",
            "pendulum",
            "--episodes",
            "3",
            "--seed",
            "9",
            "--out",
            &s(out),
        ]);
        assert!(msg.contains("3 episodes, 600 transitions"), "{msg}");
    }
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes, std::fs::read(&b).unwrap(), "same seed, same bytes");

    let v = json(&["logs", "decode", &s(&a), "--json"]);
    assert_eq!(v["frames_ok"], 607);
    assert_eq!(v["frames_bad"], 0);
    assert_eq!(v["transitions"], 600);
    assert_eq!(v["episodes"], 3);
    assert_eq!(v["dropped"], 0);
    assert_eq!(v["headers"][0]["plant_name"], "pendulum");
    let eval = json(&[
        "eval",
        "--policy",
        &s(&policy),
        "--env",
        "pendulum",
        "--episodes",
        "3",
        "--seed",
        "9",
        "--stochastic",
        "--json",
    ]);
    assert_eq!(
        v["mean_return"], eval["mean_return"],
        "the same episodes as eval --stochastic"
    );
    assert_eq!(v["policy_ids"].as_array().unwrap().len(), 1);

    // Two files: two streams, counts add up.
    let v2 = json(&["logs", "decode", &s(&a), &s(&b), "--json"]);
    assert_eq!(v2["transitions"], 1200);
    assert_eq!(v2["episodes"], 6);
    assert_eq!(v2["mean_return"], eval["mean_return"]);

    // A damaged copy still decodes; the bad frame is counted by cause.
    let mut bad = bytes.clone();
    bad[bytes.len() / 2] ^= 0x10;
    bad.truncate(bad.len() - 3);
    let c = dir.path().join("bad.log");
    std::fs::write(&c, &bad).unwrap();
    let v = json(&["logs", "decode", &s(&c), "--json"]);
    assert_eq!(v["frames_bad"], 2);
    assert_eq!(v["bad_by_cause"]["truncated"], 1);
    assert_eq!(v["episodes"], 2);
    let text = ok(&["logs", "decode", &s(&c)]);
    assert!(text.contains("truncated 1"), "{text}");

    // Errors name the file.
    let missing = dir.path().join("missing.log");
    let o = run(&["logs", "decode", &s(&missing)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.log"));
    let o = run(&[
        "simulate",
        "--policy",
        &s(&policy),
        "--env",
        "cartpole",
        "--out",
        &s(&c),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("policy.bin") && err.contains("cartpole"),
        "{err}"
    );
}
