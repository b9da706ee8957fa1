//! One validation layer for every hyperparameter and flag (issue 15, items
//! 6 and 11): every key and flag, given values a user can type, gives an
//! error naming it — or a run that works — and never a panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tinyppo_trainer::config::{self, TrainConfig};
use tinyppo_trainer::finetune::FinetuneConfig;
use tinyppo_trainer::registry::Registry;

use crate::cli::{run, s, stderr, train_tiny};
use crate::trainer_util::{new_trainer, TempDir};

/// Values a user could type for any key.
const WEIRD: &[&str] = &[
    "nan",
    "-nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "-0.0",
    "1e30",
    "1e-30",
    "1e38",
    "3.5",
    "7",
    "18446744073709551615",
    "true",
    "\"x\"",
    "[]",
    "[0]",
    "[1, 2, 3, 4]",
    "[300]",
    "{}",
];

/// Every top-level and group key of the configuration.
fn keys() -> Vec<String> {
    let t = toml::Table::try_from(TrainConfig::default()).unwrap();
    let mut keys = Vec::new();
    for (k, v) in t {
        match v {
            toml::Value::Table(sub) => keys.extend(sub.keys().map(|s| format!("{k}.{s}"))),
            _ => keys.push(k),
        }
    }
    keys.retain(|k| k != "env");
    keys
}

/// The run a validated configuration makes, shrunk so that a test can
/// afford it (every shrunk field keeps the value the case gave if that is
/// already small).
fn shrink(mut c: TrainConfig) -> TrainConfig {
    c.total_timesteps = c.total_timesteps.min(256);
    c.num_envs = c.num_envs.min(2);
    c.num_steps = c.num_steps.min(64);
    c.eval_episodes = c.eval_episodes.min(2);
    c.actor_hidden.truncate(1);
    c.critic_hidden.truncate(1);
    c.actor_hidden.iter_mut().for_each(|w| *w = (*w).min(8));
    c.critic_hidden.iter_mut().for_each(|w| *w = (*w).min(8));
    c.ppo.num_minibatches = 1;
    c.ppo.update_epochs = c.ppo.update_epochs.min(2);
    c.n_step = c.n_step.min(16);
    c
}

/// Regression (issue 15, item 6): `--set reward_clip=-1` or `nan`
/// panicked (exit 101, backtrace) in `f32::clamp`. Every key × every value
/// above is now an error that names the key, or a configuration that
/// trains one update, for every algorithm; nothing panics.
#[test]
fn every_key_with_any_value_is_an_error_or_trains_never_a_panic() {
    let reg = Registry::builtin();
    let plant = reg.get("pendulum").unwrap();
    let (mut refused, mut trained) = (0, 0);
    for algo in ["ppo", "a2c", "reinforce"] {
        for key in keys() {
            for v in WEIRD {
                let mut sets = vec![format!("algo=\"{algo}\"")];
                sets.push(format!("{key}={v}"));
                let what = format!("{algo}: --set {key}={v}");
                let r = catch_unwind(AssertUnwindSafe(|| config::resolve(plant, None, &sets)));
                let cfg = match r.unwrap_or_else(|_| panic!("{what}: resolve panicked")) {
                    Err(e) => {
                        let msg = format!("{e:#}");
                        let leaf = key.rsplit('.').next().unwrap();
                        assert!(
                            msg.contains(leaf),
                            "{what}: the error does not name the key: {msg}"
                        );
                        refused += 1;
                        continue;
                    }
                    Ok(c) => c,
                };
                let r = catch_unwind(AssertUnwindSafe(|| {
                    let mut t = new_trainer(shrink(cfg))?;
                    t.step_update()
                }));
                assert!(r.is_ok(), "{what}: training panicked");
                trained += 1;
            }
        }
    }
    println!("refused {refused}, trained {trained}");
    assert!(
        refused > 500 && trained > 100,
        "refused {refused}, trained {trained}"
    );
}

/// Regression (issue 15, items 6 and 11): `finetune --clip-coef nan`
/// panicked; `--gamma 2` failed late as "advantage is NaN"; `--iterations
/// 0` exited 0 with `--quiet` and 1 without. Every flag is now checked
/// first, with the flag's name.
#[test]
fn finetune_flags_are_checked_first_by_name() {
    let reg = Registry::builtin();
    let tmp = TempDir::new("ft-flags");
    let dir = tmp.path().join("missing-run");
    type Edit = fn(&mut FinetuneConfig);
    let cases: [(&str, Edit); 12] = [
        ("--clip-coef", |c| c.clip_coef = Some(f32::NAN)),
        ("--clip-coef", |c| c.clip_coef = Some(-1.0)),
        ("--gamma", |c| c.gamma = Some(2.0)),
        ("--lambda", |c| c.gae_lambda = Some(f32::NAN)),
        ("--iterations", |c| c.iterations = 0),
        ("--learning-rate", |c| c.learning_rate = f32::INFINITY),
        ("--rho-bar", |c| c.rho_bar = 0.0),
        ("--c-bar", |c| c.c_bar = f32::NAN),
        ("--w-bar", |c| c.w_bar = -2.0),
        ("--epochs", |c| c.update_epochs = Some(0)),
        ("--minibatches", |c| c.num_minibatches = Some(0)),
        ("--target-kl", |c| c.target_kl = Some(f32::NAN)),
    ];
    for (flag, edit) in cases {
        let mut fc = FinetuneConfig::default();
        edit(&mut fc);
        let r = catch_unwind(AssertUnwindSafe(|| {
            tinyppo_trainer::finetune::finetune(&reg, &dir, None, &[], &fc, &mut |_| {})
        }));
        let e = r
            .unwrap_or_else(|_| panic!("{flag}: panicked"))
            .unwrap_err();
        assert!(e.to_string().starts_with(flag), "{flag}: {e}");
        // Checked before anything else: the run directory was not even read.
        assert!(!dir.exists(), "{flag}: created {}", dir.display());
    }
}

/// The command line exits 1 or 2 (clap's usage error) with a message for
/// bad values, never 101; and the rules are the same everywhere.
#[test]
fn the_command_line_never_panics_on_bad_values() {
    let tmp = TempDir::new("cli-values");
    let out = tmp.path().join("run");
    let o = train_tiny(&out, 256, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pol = out.join("policy.bin");
    let log = tmp.path().join("log.bin");
    let p = s(&pol);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--env", "pendulum", "--set", "reward_clip=-1"],
            "reward_clip",
        ),
        (
            vec!["train", "--env", "pendulum", "--set", "reward_clip=nan"],
            "reward_clip",
        ),
        (
            vec!["train", "--env", "pendulum", "--set", "reward_clip=0"],
            "reward_clip",
        ),
        (
            vec!["train", "--env", "pendulum", "--checkpoint-secs", "inf"],
            "--checkpoint-secs",
        ),
        (
            vec!["train", "--env", "pendulum", "--total-steps", "0"],
            "total_timesteps",
        ),
        (
            vec!["train", "--env", "pendulum", "--set", "eval_episodes=0"],
            "eval_episodes",
        ),
        (
            vec!["train", "--env", "pendulum", "--set", "num_envs=100000000"],
            "num_envs",
        ),
        (
            vec!["train", "--env", "pendulum", "--set", "obs_clip=1e30"],
            "obs_clip",
        ),
        (
            vec!["train", "--env", "pendulum", "--set", "init_log_std=50"],
            "init_log_std",
        ),
        (vec!["train", "--env", "pendulum", "--seed", "-1"], "-1"),
        (
            vec![
                "eval",
                "--policy",
                p,
                "--env",
                "pendulum",
                "--episodes",
                "0",
            ],
            "--episodes",
        ),
        (
            vec![
                "simulate",
                "--policy",
                p,
                "--env",
                "pendulum",
                "--episodes",
                "0",
                "--out",
                s(&log),
            ],
            "--episodes",
        ),
        (
            vec![
                "finetune",
                "--checkpoint",
                s(&out),
                "--logs",
                p,
                "--clip-coef",
                "nan",
            ],
            "--clip-coef",
        ),
        (
            vec![
                "finetune",
                "--checkpoint",
                s(&out),
                "--logs",
                p,
                "--gamma",
                "2",
            ],
            "--gamma",
        ),
        (
            vec![
                "finetune",
                "--checkpoint",
                s(&out),
                "--logs",
                p,
                "--iterations",
                "0",
                "--quiet",
            ],
            "--iterations",
        ),
        (
            vec![
                "finetune",
                "--checkpoint",
                s(&out),
                "--logs",
                p,
                "--iterations",
                "0",
            ],
            "--iterations",
        ),
        (
            vec![
                "study",
                "gradient-variance",
                "--env",
                "pendulum",
                "--gamma",
                "nan",
            ],
            "--gamma",
        ),
    ];
    let never = tmp.path().join("never");
    for (args, word) in cases {
        let mut a = args.clone();
        if a[0] == "train" {
            a.extend(["--out", s(&never)]);
        }
        let o = run(&a);
        let code = o.status.code();
        let err = stderr(&o);
        assert!(matches!(code, Some(1 | 2)), "{a:?}: exit {code:?}\n{err}");
        assert!(err.contains(word), "{a:?}: {err}");
        assert!(!err.contains("panicked"), "{a:?}: {err}");
    }
    assert!(!never.join("checkpoint.bin").exists());
    assert!(!log.exists(), "simulate --episodes 0 wrote nothing");
}

/// Regression (issue 15, item 12): a TOML value of the wrong type in
/// `--config` gave a message without the file's name. Now the error names
/// the file and the line, for a wrong type and for a value out of range.
#[test]
fn config_file_errors_name_the_file_and_the_line() {
    let reg = Registry::builtin();
    let plant = reg.get("pendulum").unwrap();
    let tmp = TempDir::new("config-file");
    let f = tmp.path().join("my.toml");
    std::fs::write(&f, "# mine\nlearning_rate = \"fast\"\n").unwrap();
    let e = format!("{:#}", config::resolve(plant, Some(&f), &[]).unwrap_err());
    assert!(e.contains("my.toml") && e.contains("line 2"), "{e}");
    std::fs::write(&f, "gamma = 0.9\n\n[ppo]\nclip_coef = -0.5\n").unwrap();
    let e = format!("{:#}", config::resolve(plant, Some(&f), &[]).unwrap_err());
    assert!(
        e.contains("my.toml:4") && e.contains("ppo.clip_coef = -0.5"),
        "{e}"
    );
}
