//! Run directories that never lose or misstate data (issue 15): resume is
//! bit-identical, the metrics never lag the checkpoint.

use std::path::Path;
use std::time::Duration;

use tinyppo_trainer::registry::Registry;
use tinyppo_trainer::{checkpoint, config, report, run};

use crate::trainer_util::TempDir;

fn opts(stop: Option<u64>) -> run::RunOptions {
    run::RunOptions {
        // A checkpoint after every update: every update is a kill point.
        checkpoint_every: Duration::ZERO,
        final_eval: false,
        stop_after_update: stop,
    }
}

fn cfg(reg: &Registry, env: &str, sets: &[&str]) -> config::TrainConfig {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    config::resolve(reg.get(env).unwrap(), None, &sets).unwrap()
}

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
}

/// Regression (issue 15, item 13): resume restarted the plants' episodes
/// in flight, so a resumed run never equalled the uninterrupted one (seed
/// 5: −323 vs −166). Now a run killed after any checkpoint and resumed
/// writes the same `policy.bin` and checkpoint, byte for byte — for PPO
/// (episodes cut mid-way at every update boundary) and REINFORCE.
#[test]
fn resume_after_any_checkpoint_is_bit_identical() {
    let reg = Registry::builtin();
    let tiny = [
        "seed=5",
        "num_envs=2",
        "num_steps=96", // pendulum episodes are 200 steps: cut at every update
        "actor_hidden=[16]",
        "critic_hidden=[16]",
    ];
    let ppo = [
        "ppo.num_minibatches=4",
        "ppo.update_epochs=2",
        "total_timesteps=960",
    ];
    for (env, sets, updates) in [
        ("pendulum", &[&tiny[..], &ppo[..]].concat(), 5u64),
        (
            "cartpole",
            &[&tiny[..], &["algo=\"reinforce\"", "total_timesteps=600"]].concat(),
            0,
        ),
    ] {
        let tmp = TempDir::new("resume-identical");
        let whole = tmp.path().join("whole");
        let s = run::train(&reg, cfg(&reg, env, sets), &whole, &opts(None), &mut |_| {}).unwrap();
        let n = if updates > 0 { updates } else { s.updates };
        assert!(n >= 3, "{env}: {n} updates");
        for k in 1..n {
            let dir = tmp.path().join(format!("killed-{k}"));
            let e = run::train(
                &reg,
                cfg(&reg, env, sets),
                &dir,
                &opts(Some(k)),
                &mut |_| {},
            )
            .unwrap_err();
            assert!(e.to_string().contains("stopped after"), "{e}");
            assert!(
                !dir.join("policy.bin").exists(),
                "nothing exported at a kill"
            );
            let r = run::resume(&reg, &dir, None, &opts(None), &mut |_| {}).unwrap();
            assert_eq!(r.updates, s.updates, "{env} killed after {k}");
            assert_eq!(
                read(&dir, "policy.bin"),
                read(&whole, "policy.bin"),
                "{env} killed after {k}"
            );
            assert_eq!(
                read(&dir, "checkpoint.bin"),
                read(&whole, "checkpoint.bin"),
                "{env} killed after {k}"
            );
            let rows = report::read_metrics(&dir.join("metrics.csv")).unwrap();
            let want = report::read_metrics(&whole.join("metrics.csv")).unwrap();
            let key = |r: &tinyppo_trainer::algo::UpdateMetrics| {
                (
                    r.update,
                    r.global_step,
                    r.episodic_return.to_bits(),
                    r.pg_loss.to_bits(),
                )
            };
            assert_eq!(
                rows.iter().map(key).collect::<Vec<_>>(),
                want.iter().map(key).collect::<Vec<_>>(),
                "{env} killed after {k}: metrics rows"
            );
        }
    }
}

/// Regression (issue 15, item 5): the checkpoint was written before its
/// metrics row, so a kill between the two lost the row for good. Now the
/// row comes first: at every kill point the metrics hold every update the
/// checkpoint has.
#[test]
fn metrics_never_lag_the_checkpoint() {
    let reg = Registry::builtin();
    let tmp = TempDir::new("metrics-order");
    for k in 1..4 {
        let dir = tmp.path().join(format!("k{k}"));
        let c = cfg(
            &reg,
            "pendulum",
            &[
                "total_timesteps=1024",
                "num_envs=2",
                "num_steps=64",
                "actor_hidden=[8]",
                "critic_hidden=[8]",
            ],
        );
        let _ = run::train(&reg, c, &dir, &opts(Some(k)), &mut |_| {});
        let state = checkpoint::load(&dir).unwrap();
        let rows = report::read_metrics(&dir.join("metrics.csv")).unwrap();
        assert_eq!(state.update, k);
        assert_eq!(rows.last().map(|r| r.update), Some(k));
        assert!(
            state.in_flight.is_some(),
            "the checkpoint holds the episodes in flight"
        );
    }
}
