//! Sim-to-real (issue 11): domain randomization, sensor and actuator
//! realism, and the robustness sweep — deterministic per seed, resumable
//! bit for bit, recorded in the blob and applied by eval and simulate,
//! and refusing bad settings with the key and what was expected.

use proptest::prelude::*;
use tinyppo_runtime::plants::{
    CartPole, DcMotor, MountainCar, Pendulum, PendulumParams, PendulumState, Plant,
};
use tinyppo_runtime::realism::{Realism as RtRealism, Realistic};
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::Blob;
use tinyppo_trainer::realism::Realism;
use tinyppo_trainer::registry::{Model, Registry};
use tinyppo_trainer::{config, run};

use crate::cli::{run as cli_run, stderr, stdout};
use crate::trainer_util::TempDir;

/// Every effect on, and randomized mass and length.
const REAL: [&str; 10] = [
    "realism.obs_noise=[0.01, 0.01, 0.05]",
    "realism.obs_resolution=0.001",
    "realism.obs_delay=1",
    "realism.action_delay=1",
    "realism.actuator_tau=0.1",
    "realism.rate_limit=40.0",
    "realism.deadzone=0.05",
    "realism.smoothness=0.01",
    "randomize.mass=0.7:1.3",
    "randomize.length=0.5:2:log",
];

const SMALL: [&str; 6] = [
    "num_envs=2",
    "num_steps=96", // pendulum episodes are 200 steps: cut at every update
    "actor_hidden=[8]",
    "critic_hidden=[8]",
    "ppo.num_minibatches=4",
    "ppo.update_epochs=2",
];

fn cfg(reg: &Registry, sets: &[&str]) -> config::TrainConfig {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    config::resolve(reg.get("pendulum").unwrap(), None, &sets).unwrap()
}

pub(crate) fn opts(stop: Option<u64>) -> run::RunOptions {
    run::RunOptions {
        checkpoint_every: std::time::Duration::ZERO,
        final_eval: false,
        stop_after_update: stop,
        replace_existing: false,
    }
}

pub(crate) fn read(dir: &std::path::Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
}

/// The metrics rows without their wall-clock columns, bit for bit.
fn metrics(dir: &std::path::Path) -> Vec<(u64, u64, u64, u64)> {
    tinyppo_trainer::report::read_metrics(&dir.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.update,
                r.global_step,
                r.episodic_return.to_bits(),
                (r.pg_loss as f64).to_bits(),
            )
        })
        .collect()
}

/// A run with every effect and randomized parameters is a function of its
/// seed, and a run killed after any update and resumed equals the
/// uninterrupted one byte for byte (the episodes in flight carry their
/// drawn parameters, delay lines, lag state and noise stream).
#[test]
fn realistic_runs_are_deterministic_and_resume_bit_identical() {
    let reg = Registry::builtin();
    let sets = [&SMALL[..], &REAL[..], &["total_timesteps=768", "seed=4"]].concat();
    let tmp = TempDir::new("s2r-resume");
    let whole = tmp.path().join("whole");
    let s = run::train(&reg, cfg(&reg, &sets), &whole, &opts(None), &mut |_| {}).unwrap();
    assert_eq!(s.updates, 4);
    let again = tmp.path().join("again");
    run::train(&reg, cfg(&reg, &sets), &again, &opts(None), &mut |_| {}).unwrap();
    assert_eq!(
        read(&again, "checkpoint.bin"),
        read(&whole, "checkpoint.bin")
    );
    assert_eq!(metrics(&again), metrics(&whole));
    // The same run without realism and randomization is another run.
    let plain = tmp.path().join("plain");
    let plain_sets = [&SMALL[..], &["total_timesteps=768", "seed=4"]].concat();
    run::train(
        &reg,
        cfg(&reg, &plain_sets),
        &plain,
        &opts(None),
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(metrics(&plain), metrics(&whole));
    for k in 1..4 {
        let dir = tmp.path().join(format!("killed-{k}"));
        let e = run::train(&reg, cfg(&reg, &sets), &dir, &opts(Some(k)), &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("stopped after"), "{e}");
        run::resume(&reg, &dir, None, &opts(None), &mut |_| {}).unwrap();
        for f in ["checkpoint.bin", "policy.bin"] {
            assert_eq!(read(&dir, f), read(&whole, f), "{f}, killed after {k}");
        }
        assert_eq!(metrics(&dir), metrics(&whole), "killed after {k}");
    }
    // The resolved tables are in the run's config.toml.
    let toml = String::from_utf8(read(&whole, "config.toml")).unwrap();
    assert!(
        toml.contains("[randomize]") && toml.contains("mass = \"0.7:1.3\""),
        "{toml}"
    );
    assert!(toml.contains("length = \"0.5:2:log\""), "{toml}");
    assert!(
        toml.contains("[realism]") && toml.contains("action_delay = 1"),
        "{toml}"
    );
}

/// Each training episode draws its own parameters, within the ranges,
/// from the run's generator.
#[test]
fn training_episodes_draw_their_parameters() {
    let reg = Registry::builtin();
    let plant = reg.get("pendulum").unwrap();
    let c = cfg(
        &reg,
        &["randomize.mass=0.7:1.3", "randomize.gravity=9:11:abs"],
    );
    let mut env = plant.make_training_env(&c).unwrap();
    let mut rng = seeded(3);
    let mut obs = [0.0; 3];
    let mut seen = Vec::new();
    for _ in 0..200 {
        env.reset(&mut rng, &mut obs);
        let (_, p): (PendulumState, PendulumParams) =
            postcard::from_bytes(&env.save_state().unwrap()).unwrap();
        assert!((0.7..1.3).contains(&p.mass), "{p:?}");
        assert!((9.0..11.0).contains(&p.gravity), "{p:?}");
        assert_eq!((p.length, p.max_speed), (1.0, 8.0), "not randomized");
        seen.push(p.mass);
    }
    seen.sort_by(f32::total_cmp);
    seen.dedup();
    assert!(seen.len() > 190, "{} distinct masses", seen.len());
    assert!(seen[0] < 0.75 && seen[seen.len() - 1] > 1.25, "{seen:?}");
}

/// `export` writes the run's realism into the blob; `eval` and `simulate`
/// apply it (the same as naming it explicitly), `--no-realism` removes
/// it, and `inspect` shows it.
#[test]
fn the_blob_carries_its_realism_to_eval_and_simulate() {
    let reg = Registry::builtin();
    let plant = reg.get("pendulum").unwrap();
    let tmp = TempDir::new("s2r-blob");
    let dir = tmp.path().join("run");
    let c = cfg(
        &reg,
        &[&SMALL[..], &REAL[..], &["total_timesteps=192"]].concat(),
    );
    let want = c.validate_for(plant).unwrap().0;
    run::train(&reg, c, &dir, &opts(None), &mut |_| {}).unwrap();
    let blob = read(&dir, "policy.bin");
    let b = Blob::parse(&blob).unwrap();
    assert_eq!(Realism::of_blob(&b), want);
    let none = Realism::none(3, 1);
    let on = |realism: Option<Realism>| Model {
        realism,
        params: None,
    };
    let rets = plant.eval_blob(&blob, 5, 1, false).unwrap();
    assert_eq!(
        rets,
        plant
            .eval_blob_on(&blob, 5, 1, false, &on(Some(want.clone())))
            .unwrap()
    );
    assert_ne!(
        rets,
        plant
            .eval_blob_on(&blob, 5, 1, false, &on(Some(none.clone())))
            .unwrap()
    );
    let rc = tinyppo_runtime::sim::RunConfig {
        episodes: 2,
        seed: 7,
        deterministic: false,
    };
    let (with, _) = plant.simulate_blob(&blob, &rc).unwrap();
    let (without, _) = plant.simulate_blob_on(&blob, &rc, &on(Some(none))).unwrap();
    assert_ne!(with, without);
    // The command line: the default is the blob's, --no-realism the exact model.
    let p = dir.join("policy.bin");
    let p = p.to_str().unwrap();
    let out = tmp.path().join("sim.bin");
    let o = cli_run(&[
        "simulate",
        "--policy",
        p,
        "--env",
        "pendulum",
        "--episodes",
        "2",
        "--seed",
        "7",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), with);
    let o = cli_run(&[
        "simulate",
        "--policy",
        p,
        "--env",
        "pendulum",
        "--episodes",
        "2",
        "--seed",
        "7",
        "--no-realism",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), without);
    let o = cli_run(&["inspect", p]);
    assert!(
        stdout(&o).contains("realism         obs_noise [0.01, 0.01, 0.05]"),
        "{}",
        stdout(&o)
    );
    // --realism FILE: the run's own config.toml gives the same settings.
    let cfg_file = dir.join("config.toml");
    let a = cli_run(&[
        "eval",
        "--policy",
        p,
        "--env",
        "pendulum",
        "--episodes",
        "3",
        "--json",
    ]);
    let b = cli_run(&[
        "eval",
        "--policy",
        p,
        "--env",
        "pendulum",
        "--episodes",
        "3",
        "--json",
        "--realism",
        cfg_file.to_str().unwrap(),
    ]);
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        stderr(&a),
        stderr(&b)
    );
    let m = |o: &std::process::Output| {
        serde_json::from_str::<serde_json::Value>(&stdout(o)).unwrap()["mean_return"].clone()
    };
    assert_eq!(m(&a), m(&b));
}

/// Bad `[randomize]` and `[realism]` values are errors that name the key,
/// its origin and what was expected; unknown parameter names list the
/// plant's parameters.
#[test]
fn bad_settings_name_the_key_and_what_was_expected() {
    let reg = Registry::builtin();
    let plant = reg.get("pendulum").unwrap();
    let err = |set: &str| {
        config::resolve(plant, None, &[set.to_string()])
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            "randomize.masss=0.7:1.3",
            "gravity, length, mass, max_speed",
        ),
        ("randomize.mass=1.3:0.7", "above"),
        ("randomize.mass=0:1", "multiplier must be positive"),
        ("randomize.mass=-1:1", "multiplier must be positive"),
        ("randomize.mass=nan:1", "not finite"),
        ("randomize.mass=0.5:2:lin", "abs or log"),
        ("randomize.mass=\"0.5\"", "HI is missing"),
        ("realism.obs_noise=-0.1", "[0, 1e5]"),
        ("realism.obs_noise=nan", "[0, 1e5]"),
        ("realism.obs_noise=[0.1, 0.2]", "list of 3"),
        ("realism.rate_limit=[1.0, 2.0]", "one per action"),
        ("realism.action_delay=9", "0 to 8 ticks"),
        ("realism.actuator_tau=-1.0", "actuator_tau"),
        ("realism.smoothness=inf", "smoothness"),
        ("realism.noise=1", "unknown hyperparameter"),
    ];
    for (set, want) in cases {
        let e = err(set);
        assert!(e.contains(&format!("--set {set}")), "{set}: {e}");
        assert!(e.contains(want), "{set}: {e:?} should say {want:?}");
    }
    // A config file: the file and line.
    let tmp = TempDir::new("s2r-file");
    let f = tmp.path().join("c.toml");
    std::fs::write(&f, "seed = 2\n[realism]\nobs_delay = 12\n").unwrap();
    let e = config::resolve(plant, Some(&f), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("c.toml:3") && e.contains("realism.obs_delay"),
        "{e}"
    );
    // Through the CLI: exit 1, no run directory.
    let out = tmp.path().join("run");
    let o = cli_run(&[
        "train",
        "--env",
        "pendulum",
        "--set",
        "randomize.mas=1:2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("randomize.mas") && stderr(&o).contains("mass"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// `eval --sweep`: the grid as JSON (mean and worst per cell), CSV and PNG
/// in --out, which is not overwritten without --force; bad axes say why.
#[test]
fn cli_sweep_writes_the_grid_and_refuses_bad_axes() {
    let blob = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../firmware/policies/pendulum.bin"
    );
    let tmp = TempDir::new("s2r-sweep");
    let out = tmp.path().join("sweep");
    let o = out.to_str().unwrap();
    let args = [
        "eval",
        "--policy",
        blob,
        "--env",
        "pendulum",
        "--episodes",
        "4",
        "--sweep",
        "mass=0.6:1.4:3",
        "--sweep",
        "action_delay=0:1:2",
        "--out",
        o,
    ];
    let r = cli_run(&[&args[..], &["--json"]].concat());
    assert!(r.status.success(), "{}", stderr(&r));
    let v: serde_json::Value = serde_json::from_str(&stdout(&r)).unwrap();
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    assert_eq!(cells[0]["values"], serde_json::json!([0.6, 0.0]));
    assert_eq!(cells[5]["values"], serde_json::json!([1.4, 1.0]));
    for c in cells {
        assert!(c["worst_return"].as_f64().unwrap() <= c["mean_return"].as_f64().unwrap());
    }
    // The nominal cell equals a plain evaluation of the same episodes.
    let plain = cli_run(&[
        "eval",
        "--policy",
        blob,
        "--env",
        "pendulum",
        "--episodes",
        "4",
        "--json",
    ]);
    let plain: serde_json::Value = serde_json::from_str(&stdout(&plain)).unwrap();
    assert_eq!(cells[2]["mean_return"], plain["mean_return"]);
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 7);
    assert!(
        csv.starts_with("mass,action_delay,mean_return,std_return,worst_return"),
        "{csv}"
    );
    let png = std::fs::read(out.join("sweep.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // Not overwritten without --force.
    let again = cli_run(&args);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(out.join("sweep.csv")).unwrap(), csv);
    let forced = cli_run(&[&args[..], &["--force"]].concat());
    assert!(forced.status.success(), "{}", stderr(&forced));
    for (bad, why) in [
        ("masss=1:2:2", "gravity, length, mass, max_speed"),
        ("mass=2:1:2", "above"),
        ("mass=0:1:2", "positive"),
        ("mass=1:2:0", "count"),
        ("obs_delay=0:1.5:2", "whole ticks"),
        ("obs_delay=0:9:2", "whole ticks 0–8"),
        ("obs_noise=0:2:3", "--realism FILE"),
        ("mass=1:2", "NAME=LO:HI:N"),
    ] {
        let r = cli_run(&[
            "eval", "--policy", blob, "--env", "pendulum", "--sweep", bad, "--out", o,
        ]);
        assert_eq!(r.status.code(), Some(1), "{bad}");
        assert!(stderr(&r).contains(why), "{bad}: {}", stderr(&r));
    }
    let r = cli_run(&[
        "eval",
        "--policy",
        blob,
        "--env",
        "pendulum",
        "--sweep",
        "mass=1:2:2",
    ]);
    assert!(stderr(&r).contains("--out DIR"), "{}", stderr(&r));
}

/// Any settings, valid or not (`Realistic::new` turns invalid ones off),
/// on every built-in plant, under wild actions: observations stay finite
/// and rewards are never NaN (the wrapper never makes a plant's finite
/// observation non-finite).
fn wild_run<P: Plant<O, 1> + Default, const O: usize>(
    r: RtRealism<O, 1>,
    actions: &[f32],
    seed: u64,
) {
    let mut p = Realistic::new(P::default(), r);
    let mut rng = seeded(seed);
    let mut obs = p.reset(&mut rng);
    for &a in actions {
        assert!(
            obs.iter().all(|o| o.is_finite()),
            "{}: {obs:?} with {r:?}",
            P::NAME
        );
        let t = p.step(&[a]);
        assert!(!t.reward.is_nan(), "{}: NaN reward with {r:?}", P::NAME);
        obs = t.obs;
        if t.terminated || t.truncated {
            obs = p.reset(&mut rng);
        }
    }
}

/// The same settings for the first `O` observation dimensions.
fn first<const O: usize>(r: &RtRealism<4, 1>) -> RtRealism<O, 1> {
    RtRealism {
        obs_noise: core::array::from_fn(|i| r.obs_noise[i]),
        obs_resolution: core::array::from_fn(|i| r.obs_resolution[i]),
        obs_delay: r.obs_delay,
        action_delay: r.action_delay,
        actuator_tau: r.actuator_tau,
        rate_limit: r.rate_limit,
        deadzone: r.deadzone,
        smoothness: r.smoothness,
    }
}

fn any_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => 0.0f32..10.0,
        1 => 0.0f32..1e5,
        1 => any::<u32>().prop_map(f32::from_bits),
        1 => Just(0.0f32),
        1 => Just(f32::MIN_POSITIVE),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_realism_keeps_observations_finite(
        noise in proptest::array::uniform4(any_f32()),
        res in proptest::array::uniform4(any_f32()),
        (od, ad) in (0u8..20, 0u8..20),
        tau in any_f32(),
        rate in any_f32(),
        dz in any_f32(),
        smooth in any_f32(),
        actions in proptest::collection::vec(prop_oneof![
            4 => -10.0f32..10.0,
            1 => any::<u32>().prop_map(f32::from_bits),
        ], 300),
        seed in any::<u64>(),
    ) {
        let r = RtRealism::<4, 1> {
            obs_noise: noise,
            obs_resolution: res,
            obs_delay: od,
            action_delay: ad,
            actuator_tau: tau,
            rate_limit: [rate],
            deadzone: [dz],
            smoothness: smooth,
        };
        wild_run::<Pendulum, 3>(first(&r), &actions, seed);
        wild_run::<MountainCar, 2>(first(&r), &actions, seed);
        wild_run::<CartPole, 4>(first(&r), &actions, seed);
        wild_run::<DcMotor, 3>(first(&r), &actions, seed);
    }
}

/// The realism record of `docs/FORMAT.md` ("Realism record (tag 0x80)",
/// the example): pendulum, O = 3, A = 1. The expected body is written
/// field by field from the spec's table — byte strings are a varint
/// length in bytes and the LE f32s, delays one raw byte each, the scalars
/// plain LE f32 — and compared with the runtime's encoder, with the hex
/// printed in the doc, and with what `parse_body` and `Blob::parse` read
/// back.
#[test]
fn golden_realism_record() {
    use tinyppo_runtime::realism::{encode_body, parse_body, TAG};
    let r = RtRealism::<3, 1> {
        obs_noise: [0.01, 0.01, 0.05],
        obs_resolution: [0.0; 3],
        obs_delay: 1,
        action_delay: 2,
        actuator_tau: 0.05,
        rate_limit: [40.0],
        deadzone: [0.0],
        smoothness: 0.01,
    };
    let le = |v: f32| v.to_le_bytes();
    let mut want = Vec::new();
    want.push(12); // 1 obs_noise: 12 bytes
    for v in [0.01f32, 0.01, 0.05] {
        want.extend(le(v));
    }
    want.push(12); // 2 obs_resolution: 12 bytes
    for v in [0.0f32; 3] {
        want.extend(le(v));
    }
    want.push(1); // 3 obs_delay
    want.push(2); // 4 action_delay
    want.extend(le(0.05)); // 5 actuator_tau
    want.push(4); // 6 rate_limit: 4 bytes
    want.extend(le(40.0));
    want.push(4); // 7 deadzone: 4 bytes
    want.extend(le(0.0));
    want.extend(le(0.01)); // 8 smoothness
    assert_eq!(want.len(), 14 + 8 * (3 + 1));

    let mut buf = [0u8; 128];
    let n = encode_body(&r.spec(), &mut buf).unwrap();
    let got = &buf[..n];
    assert_eq!(got, &want[..]);
    // The bytes printed in docs/FORMAT.md.
    let golden = "0c 0a d7 23 3c 0a d7 23 3c cd cc 4c 3d 0c 00 00 \
                  00 00 00 00 00 00 00 00 00 00 01 02 cd cc 4c 3d \
                  04 00 00 20 42 04 00 00 00 00 0a d7 23 3c";
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        hex(got),
        golden.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    // The f32 bit patterns the doc's table names.
    assert_eq!(
        [0.01f32, 0.05, 40.0].map(f32::to_bits),
        [0x3C23_D70A, 0x3D4C_CCCD, 0x4220_0000]
    );

    // Read back: the same settings.
    let v = parse_body(&want, 3, 1).unwrap();
    assert_eq!(RtRealism::<3, 1>::from_view(&v), Some(r));
    assert_eq!(
        Realism::from_view(&v).describe(),
        "obs_noise [0.01, 0.01, 0.05], obs_delay 1, action_delay 2, \
         actuator_tau 0.05 s, rate_limit [40.0]/s, smoothness 0.01"
    );

    // In a blob: payload field 15 ends the payload as `01 80 2e ⟨body⟩`,
    // and `Blob::realism` gives the settings.
    let net = crate::util::Net::random(
        &mut crate::util::TestRng::new(5),
        3,
        1,
        &[4],
        tinyppo_runtime::Activation::Tanh,
        (-1.0, 0.0),
    );
    let ext = [tinyppo_runtime::Extension {
        tag: TAG,
        body: &want,
    }];
    let blob = net.encode_int8_for(0x00, &ext);
    let payload = crate::util::payload_of(&blob);
    let tail = [&[0x01, 0x80, 0x2e][..], &want].concat();
    assert!(payload.ends_with(&tail), "{}", hex(payload));
    let b = Blob::parse(&blob).unwrap();
    assert_eq!(RtRealism::<3, 1>::from_blob(&b), r);
    assert_eq!(b.realism().unwrap(), v);
}
