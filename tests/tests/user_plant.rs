//! A plant of one's own, from outside tinyppo's crates, through the public
//! door only: `Plant` in this crate, registered with `Registry::with`, then
//! trained, exported, evaluated, simulated, decoded and fine-tuned by the
//! library and by `cli::run_from` with that registry. Also: nothing in
//! `trainer/src` knows the built-in plants' names but the registry.

use std::path::Path;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use tinyppo_runtime::plants::{check_constants, clip, Plant, Transition};
use tinyppo_runtime::rng::uniform;
use tinyppo_runtime::Blob;
use tinyppo_trainer::registry::Registry;
use tinyppo_trainer::{cli, config, run};

use crate::trainer_util::TempDir;

/// A first-order lag `τ·ẏ = −y + k·u`, driven to a target drawn per
/// episode; the input is in [0, 5] with a safe action of 0 (off).
#[derive(Debug, Clone, Default)]
struct Lag {
    p: LagParams,
    s: LagState,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct LagParams {
    tau: f32,
    gain: f32,
}

impl Default for LagParams {
    fn default() -> Self {
        LagParams {
            tau: 2.0,
            gain: 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct LagState {
    y: f32,
    target: f32,
    steps: u32,
}

impl Plant<2, 1> for Lag {
    const NAME: &'static str = "lag";
    const CODE: u8 = 0x91;
    const ACTION_LOW: [f32; 1] = [0.0];
    const ACTION_HIGH: [f32; 1] = [5.0];
    const SAFE_ACTION: [f32; 1] = [0.0];
    const MAX_EPISODE_STEPS: u32 = 50;
    const DT: f32 = 0.1;
    type Params = LagParams;
    type State = LagState;

    fn params(&self) -> LagParams {
        self.p
    }
    fn set_params(&mut self, p: LagParams) {
        self.p = p;
    }
    fn state(&self) -> LagState {
        self.s
    }
    fn set_state(&mut self, s: LagState) {
        self.s = s;
    }
    fn observe(&self) -> [f32; 2] {
        [self.s.target - self.s.y, self.s.target]
    }
    fn reset<R: rand_core::RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; 2] {
        self.s = LagState {
            y: 0.0,
            target: uniform(rng, 1.0, 4.0),
            steps: 0,
        };
        self.observe()
    }
    fn step(&mut self, a: &[f32; 1]) -> Transition<2> {
        let u = clip(a[0], 0.0, 5.0);
        self.s.y += Self::DT / self.p.tau * (self.p.gain * u - self.s.y);
        self.s.steps += 1;
        let e = self.s.target - self.s.y;
        Transition {
            obs: self.observe(),
            reward: -e * e,
            terminated: false,
            truncated: self.s.steps >= Self::MAX_EPISODE_STEPS,
        }
    }
}

const _: () = check_constants::<Lag, 2, 1>();

const PRESET: &str = "total_timesteps = 2048\nnum_envs = 2\nnum_steps = 128\n\
                      actor_hidden = [16]\ncritic_hidden = [16]\ninit_log_std = 0.5\n\
                      eval_episodes = 4\n[ppo]\nnum_minibatches = 4\nupdate_epochs = 2\n";

fn registry() -> Registry {
    Registry::builtin().with::<Lag, 2, 1>(PRESET)
}

fn cli_ok(args: &[&str]) {
    let mut all = vec!["tinyppo"];
    all.extend_from_slice(args);
    assert_eq!(
        cli::run_from(registry(), &all),
        ExitCode::SUCCESS,
        "{args:?}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn user_plant_trains_exports_evaluates_simulates_and_finetunes() {
    let reg = registry();
    let plant = reg.get("lag").unwrap();
    assert_eq!((plant.code(), plant.safe_action()), (0x91, &[0.0][..]));
    assert_eq!(
        plant.default_params().unwrap(),
        serde_json::json!({"tau": 2.0, "gain": 1.0})
    );

    // The library: a run directory with everything `tinyppo train` writes.
    let tmp = TempDir::new("user-plant");
    let dir = tmp.path().join("run");
    let cfg = config::resolve(plant, None, &["seed=4".into()]).unwrap();
    assert_eq!((cfg.num_steps, cfg.ppo.update_epochs), (128, 2));
    let summary = run::train(&reg, cfg, &dir, &run::RunOptions::default(), &mut |_| {}).unwrap();
    let eval = summary.eval.expect("final evaluation");
    assert_eq!(eval.episodes, 4);
    for f in [
        "policy.bin",
        "policy-f32.bin",
        "checkpoint.bin",
        "metrics.csv",
        "config.toml",
        "policies.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let blob = std::fs::read(dir.join("policy.bin")).unwrap();
    let b = Blob::parse(&blob).unwrap();
    assert_eq!((b.plant_code(), b.version), (Some(0x91), 2));
    assert_eq!(b.safe_action().collect::<Vec<_>>(), [0.0]);
    assert_eq!(
        plant
            .eval_blob(&blob, 4, 10_004, false)
            .unwrap()
            .iter()
            .sum::<f64>()
            / 4.0,
        eval.mean_return
    );

    // The command line with the same registry: every subcommand knows it.
    let log = tmp.path().join("log.bin");
    let pol = dir.join("policy.bin");
    cli_ok(&["plants", "--json"]);
    cli_ok(&["inspect", s(&pol), "--json"]);
    cli_ok(&[
        "eval",
        "--policy",
        s(&pol),
        "--env",
        "lag",
        "--episodes",
        "3",
    ]);
    cli_ok(&[
        "simulate",
        "--policy",
        s(&pol),
        "--env",
        "lag",
        "--episodes",
        "6",
        "--seed",
        "2",
        "--out",
        s(&log),
    ]);
    let decoded = tinyppo_trainer::logs::decode_files(&[&log]).unwrap();
    assert_eq!(decoded.streams[0].plant, 0x91);
    assert_eq!(decoded.episode_returns().len(), 6);
    assert_eq!(
        tinyppo_trainer::logs::report_json(&decoded, &[], &reg)["headers"][0]["plant_name"],
        "lag"
    );
    cli_ok(&["logs", "decode", s(&log)]);
    cli_ok(&[
        "finetune",
        "--accept",
        "always",
        "--checkpoint",
        s(&dir),
        "--logs",
        s(&log),
        "--iterations",
        "1",
        "--quiet",
    ]);
    let idx = tinyppo_trainer::export::PolicyIndex::load(&dir)
        .unwrap()
        .unwrap();
    assert_eq!(idx.latest_version(), 2);
    cli_ok(&[
        "train",
        "--resume",
        s(&dir),
        "--total-steps",
        "2560",
        "--quiet",
    ]);
    // The built-in binary does not know the plant, and says which it knows.
    let mut all = vec!["tinyppo", "eval", "--policy", s(&pol), "--env", "lag"];
    assert_eq!(cli::run_from(Registry::builtin(), &all), ExitCode::FAILURE);
    all[5] = "pendulum";
    assert_eq!(cli::run_from(Registry::builtin(), &all), ExitCode::FAILURE);
}

#[test]
fn the_registry_refuses_a_second_plant_with_a_taken_name_or_code() {
    let e = Registry::new()
        .with::<Lag, 2, 1>("")
        .try_with::<Lag, 2, 1>("")
        .unwrap_err();
    assert!(e.to_string().contains("already registered"), "{e}");
    // A built-in name or code is taken too.
    assert!(Registry::builtin().try_with::<Lag, 2, 1>("").is_ok());
}

/// The built-in plants are ordinary registrations: their names appear in
/// `trainer/src` only where `Registry::builtin` registers them.
#[test]
fn no_builtin_plant_name_outside_the_registry() {
    let names = [
        "pendulum",
        "mountain-car",
        "mountain_car",
        "cartpole",
        "dc-motor",
        "dc_motor",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trainer/src");
    let mut stack = vec![root];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("registry.rs") {
                let text = std::fs::read_to_string(&p).unwrap().to_lowercase();
                for n in names {
                    if text.contains(n) {
                        found.push(format!("{}: {n}", p.display()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}

/// The user's plant takes `[randomize]` and `[realism]` exactly as a
/// built-in does: its parameters by the names of `LagParams`, drawn per
/// episode; the effects around it in training, deterministic per seed;
/// the settings exported into the blob and applied by `eval`.
#[test]
fn user_plant_trains_with_randomize_and_realism() {
    use tinyppo_runtime::realism::{Realism as RtRealism, Realistic};
    use tinyppo_trainer::realism::Realism;
    use tinyppo_trainer::registry::Model;

    use crate::sim_to_real::{opts, read};

    let reg = registry();
    let plant = reg.get("lag").unwrap();
    let sets: Vec<String> = [
        "seed=3",
        "total_timesteps=512", // two updates of 2 × 128 steps
        "randomize.tau=0.5:1.5",
        "realism.obs_noise=[0.02, 0.0]",
        "realism.action_delay=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cfg = || config::resolve(plant, None, &sets).unwrap();

    // Every episode draws its own tau (× the default 2.0) around an
    // unchanged gain, in the realistic wrapper.
    let mut env = plant.make_training_env(&cfg()).unwrap();
    let mut rng = tinyppo_runtime::rng::seeded(3);
    let mut obs = [0.0; 2];
    let mut taus = Vec::new();
    for _ in 0..50 {
        env.reset(&mut rng, &mut obs);
        type Saved = (<Realistic<Lag, 2, 1> as Plant<2, 1>>::State, LagParams);
        let (_, p): Saved = postcard::from_bytes(&env.save_state().unwrap()).unwrap();
        assert!((1.0..3.0).contains(&p.tau), "{p:?}");
        assert_eq!(p.gain, 1.0, "not randomized");
        taus.push(p.tau);
    }
    taus.sort_by(f32::total_cmp);
    taus.dedup();
    assert!(taus.len() > 45, "{} distinct taus", taus.len());

    // Two runs with the same seed write the same checkpoint.
    let tmp = TempDir::new("user-plant-s2r");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let s = run::train(&reg, cfg(), &a, &opts(None), &mut |_| {}).unwrap();
    assert_eq!(s.updates, 2);
    run::train(&reg, cfg(), &b, &opts(None), &mut |_| {}).unwrap();
    assert_eq!(read(&a, "checkpoint.bin"), read(&b, "checkpoint.bin"));
    assert_eq!(read(&a, "policy.bin"), read(&b, "policy.bin"));

    // The blob carries the realism, and eval applies it by default.
    let blob = read(&a, "policy.bin");
    let bl = Blob::parse(&blob).unwrap();
    let want = RtRealism::<2, 1> {
        obs_noise: [0.02, 0.0],
        action_delay: 1,
        ..RtRealism::NONE
    };
    let v = bl.realism().expect("a realism record");
    assert_eq!(RtRealism::<2, 1>::from_view(&v), Some(want));
    let on = |realism: Realism| Model {
        realism: Some(realism),
        params: None,
    };
    let rets = plant.eval_blob(&blob, 3, 1, false).unwrap();
    let exported = Realism::of_blob(&bl);
    assert_eq!(
        rets,
        plant
            .eval_blob_on(&blob, 3, 1, false, &on(exported))
            .unwrap()
    );
    assert_ne!(
        rets,
        plant
            .eval_blob_on(&blob, 3, 1, false, &on(Realism::none(2, 1)))
            .unwrap()
    );

    // An unknown name lists the plant's parameters.
    let e = config::resolve(plant, None, &["randomize.taus=0.5:1.5".into()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--set randomize.taus=0.5:1.5")
            && e.contains("a parameter of plant lag: gain, tau"),
        "{e}"
    );
}
