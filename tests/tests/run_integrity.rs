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
        replace_existing: false,
    }
}

fn cfg(reg: &Registry, env: &str, sets: &[&str]) -> config::TrainConfig {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    config::resolve(reg.get(env).unwrap(), None, &sets).unwrap()
}

/// A run small enough to repeat in a test.
const SMALL: [&str; 5] = [
    "num_envs=2",
    "num_steps=64",
    "actor_hidden=[8]",
    "critic_hidden=[8]",
    "total_timesteps=256",
];

/// Trains [`SMALL`] on `env` into `dir` (checkpoint after every update).
fn train_small(reg: &Registry, env: &str, dir: &Path) {
    run::train(reg, cfg(reg, env, &SMALL), dir, &opts(None), &mut |_| {}).unwrap();
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

/// Regression (issue 15, item 1): `train --out DIR` into a directory that
/// held a run overwrote its checkpoint, metrics, config, plot and policies
/// and exited 0, and `policies.json` then said the new run descended from
/// the old one. Now it is refused, the old run left byte for byte; with
/// `--force` the old run is moved aside, never deleted.
#[test]
fn train_into_an_existing_run_is_refused_or_moves_it_aside() {
    use crate::cli::{fails, s, stderr, train_tiny};
    let tmp = TempDir::new("existing-run");
    let dir = tmp.path().join("run");
    let o = train_tiny(&dir, 256, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before: Vec<(&str, Vec<u8>)> = tinyppo_trainer::run::RUN_FILES
        .iter()
        .map(|f| (*f, read(&dir, f)))
        .collect();
    let o = train_tiny(&dir, 256, &["--seed", "9"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("already holds a run") && err.contains("--resume") && err.contains("--force"),
        "{err}"
    );
    for (f, bytes) in &before {
        assert_eq!(&read(&dir, f), bytes, "{f} changed");
    }
    // A plant of another kind is refused the same way.
    let e = fails(&[
        "train",
        "--env",
        "cartpole",
        "--total-steps",
        "256",
        "--out",
        s(&dir),
    ]);
    assert!(e.contains("already holds a run"), "{e}");

    let o = train_tiny(&dir, 256, &["--seed", "9", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let aside = tmp.path().join("run.replaced-1");
    for (f, bytes) in &before {
        assert_eq!(&read(&aside, f), bytes, "{f} moved aside unchanged");
    }
    let idx = tinyppo_trainer::export::PolicyIndex::load(&dir)
        .unwrap()
        .unwrap();
    assert_eq!(idx.latest_version(), 1);
    assert!(
        idx.policies.iter().all(|r| r.parent.is_none()),
        "the new run has no parent"
    );
    assert_eq!(checkpoint::load(&dir).unwrap().cfg.seed, 9);
}

/// Regression (issue 15, item 1): two trains into one directory at once
/// both exited 0. The directory's lock refuses the second writer.
#[test]
fn a_second_writer_of_a_run_is_refused() {
    let reg = Registry::builtin();
    let tmp = TempDir::new("run-lock");
    let dir = tmp.path().join("run");
    let held = tinyppo_trainer::run::RunLock::acquire(&dir).unwrap();
    let c = cfg(
        &reg,
        "pendulum",
        &["total_timesteps=256", "num_steps=128", "num_envs=2"],
    );
    let e = run::train(&reg, c.clone(), &dir, &opts(None), &mut |_| {}).unwrap_err();
    assert!(
        e.to_string()
            .contains("another tinyppo process is writing this run"),
        "{e}"
    );
    assert!(
        tinyppo_trainer::run::run_files(&dir).is_empty(),
        "nothing written"
    );
    // The CLI's train and finetune take the same lock.
    let err = crate::cli::fails(&[
        "train",
        "--env",
        "pendulum",
        "--total-steps",
        "256",
        "--out",
        crate::cli::s(&dir),
    ]);
    assert!(err.contains("another tinyppo process"), "{err}");
    drop(held);
    run::train(&reg, c, &dir, &opts(None), &mut |_| {}).unwrap();
    let _held = tinyppo_trainer::run::RunLock::acquire(&dir).unwrap();
    let e = run::resume(&reg, &dir, Some(512), &opts(None), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("another tinyppo process"), "{e}");
}

/// Regression (issue 15, item 9): a checkpoint from another plant copied
/// into a run was resumed without complaint; `--set env=…` was accepted and
/// ignored; after `--resume --total-steps N` the run's config.toml still
/// showed the old total.
#[test]
fn resume_checks_the_checkpoint_and_records_the_new_total() {
    let reg = Registry::builtin();
    let tmp = TempDir::new("resume-checks");
    let (p, c) = (tmp.path().join("p"), tmp.path().join("c"));
    train_small(&reg, "pendulum", &p);
    train_small(&reg, "cartpole", &c);

    let s = run::resume(&reg, &p, Some(512), &opts(None), &mut |_| {}).unwrap();
    assert_eq!(s.global_step, 512);
    let text = std::fs::read_to_string(p.join("config.toml")).unwrap();
    assert!(text.contains("total_timesteps = 512"), "{text}");

    std::fs::copy(c.join("checkpoint.bin"), p.join("checkpoint.bin")).unwrap();
    let e = run::resume(&reg, &p, None, &opts(None), &mut |_| {}).unwrap_err();
    assert!(
        e.to_string().contains("plant cartpole") && e.to_string().contains("not this run's"),
        "{e}"
    );

    let plant = reg.get("pendulum").unwrap();
    let e = config::resolve(plant, None, &["env=cartpole".into()]).unwrap_err();
    assert!(e.to_string().contains("chosen with --env"), "{e}");
    let file = tmp.path().join("other.toml");
    std::fs::write(&file, "env = \"cartpole\"\n").unwrap();
    let e = config::resolve(plant, Some(&file), &[]).unwrap_err();
    assert!(
        e.to_string().contains("other.toml") && e.to_string().contains("cartpole"),
        "{e}"
    );
    // A run's own config.toml is a valid --config for the same plant.
    let own = config::resolve(plant, Some(&p.join("config.toml")), &[]).unwrap();
    assert_eq!(own.total_timesteps, 512);
}

/// Regression (issue 15, item 2): `tinyppo finetune … | head -1` exited 0
/// and saved nothing: the closed stdout ended the process before the save.
/// Now the output is dropped and the fine-tune is published.
#[test]
fn a_closed_stdout_never_skips_a_save() {
    use crate::cli::{s, stderr, tinyppo, train_tiny};
    let tmp = TempDir::new("closed-stdout");
    let dir = tmp.path().join("run");
    let o = train_tiny(&dir, 256, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = tmp.path().join("log.bin");
    crate::cli::ok(&[
        "simulate",
        "--policy",
        s(&dir.join("policy.bin")),
        "--env",
        "pendulum",
        "--episodes",
        "3",
        "--out",
        s(&log),
    ]);
    // The reader is gone before the first line (`head -c 0` exits at once).
    let script = format!(
        "(sleep 0.3; '{}' finetune --accept always --checkpoint '{}' --logs '{}' --iterations 1; echo \"status=$?\" >&2) | head -c 0",
        tinyppo().display(),
        dir.display(),
        log.display()
    );
    let o = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("running sh");
    let err = stderr(&o);
    assert!(err.contains("status=0"), "{err}");
    let idx = tinyppo_trainer::export::PolicyIndex::load(&dir)
        .unwrap()
        .unwrap();
    assert_eq!(idx.latest_version(), 2, "the fine-tune was published");
}

/// Regression (issue 15, item 3): with the parent policy blob of a run
/// missing or damaged, `finetune` skipped the log-prob check for every
/// record, saved version 2, then failed with an error naming no file. Now
/// it fails first, naming the file, and writes nothing.
#[test]
fn finetune_without_the_parent_blob_fails_first_naming_it() {
    use crate::cli::{fails, ok, s, stderr, train_tiny};
    let tmp = TempDir::new("missing-parent");
    let dir = tmp.path().join("run");
    let o = train_tiny(&dir, 256, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = tmp.path().join("log.bin");
    ok(&[
        "simulate",
        "--policy",
        s(&dir.join("policy.bin")),
        "--env",
        "pendulum",
        "--episodes",
        "2",
        "--out",
        s(&log),
    ]);
    let idx = tinyppo_trainer::export::PolicyIndex::load(&dir)
        .unwrap()
        .unwrap();
    let parent = dir.join(&idx.latest_int8().unwrap().file);
    let good = std::fs::read(&parent).unwrap();
    let snapshot = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap() != ".tinyppo.lock")
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    };
    for damage in ["missing", "damaged"] {
        match damage {
            "missing" => std::fs::remove_file(&parent).unwrap(),
            _ => {
                let mut b = good.clone();
                b[40] ^= 1;
                std::fs::write(&parent, b).unwrap();
            }
        }
        let before = snapshot(&dir);
        let err = fails(&["finetune", "--checkpoint", s(&dir), "--logs", s(&log)]);
        assert!(
            err.contains(s(&parent)) && err.contains("newest policy"),
            "{damage}: {err}"
        );
        assert_eq!(snapshot(&dir), before, "{damage}: nothing written");
    }
    std::fs::write(&parent, &good).unwrap();
    ok(&[
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
}

/// Every file of a directory, name → bytes (the lock file aside).
fn files(d: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != ".tinyppo.lock")
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for (name, bytes) in files(src) {
        std::fs::write(dst.join(name), bytes).unwrap();
    }
}

/// The invariants a run directory must have after any crash and the
/// repair the next command runs: it loads, every blob the index lists is
/// there with its id, no blob is unlisted, and the deployed `policy.bin`
/// is the newest int8 version.
fn assert_consistent(dir: &Path, what: &str) {
    let rep = tinyppo_trainer::publish::repair(dir).unwrap();
    let idx = tinyppo_trainer::export::PolicyIndex::load(dir)
        .unwrap()
        .unwrap();
    checkpoint::load(dir).unwrap_or_else(|e| panic!("{what}: checkpoint: {e:#}"));
    let listed: Vec<&str> = idx.policies.iter().map(|r| r.file.as_str()).collect();
    for r in &idx.policies {
        let b = read(dir, &r.file);
        let id = tinyppo_trainer::export::policy_id(&b).unwrap();
        assert_eq!(format!("{id:08x}"), r.id, "{what}: {}", r.file);
    }
    for name in files(dir).keys() {
        let blob = name.starts_with("policy-") && name.len() == "policy-00000000.bin".len();
        assert!(
            !blob || listed.contains(&name.as_str()),
            "{what}: {name} unlisted"
        );
        assert!(
            !name.contains(".staged") && !name.starts_with(".tinyppo-tmp"),
            "{what}: {name} left"
        );
    }
    assert_eq!(
        read(dir, "policy.bin"),
        read(dir, &idx.latest_int8().unwrap().file),
        "{what}: policy.bin is not the newest version ({rep:?})"
    );
}

/// Regression (issue 15, item 4): publishing wrote checkpoint → policy.bin
/// → policy-f32.bin → policy-<id>.bin → policies.json → metrics.csv, so a
/// crash between them left a deployed policy the index did not list (and
/// every log from it was then dropped as "unknown policy"). Now the index
/// is the commit point: a crash at every write and rename of a fine-tune's
/// and a training run's publication leaves a directory that, after the
/// next command's repair, loads, lists every blob it holds, deploys its
/// newest version, and fine-tunes or resumes again.
#[test]
fn a_crash_at_any_write_of_a_publication_leaves_a_consistent_run() {
    use tinyppo_trainer::finetune::{finetune, FinetuneConfig};
    use tinyppo_trainer::publish::crash_at;
    let reg = Registry::builtin();
    let tmp = TempDir::new("publish-crash");
    let base = tmp.path().join("base");
    train_small(&reg, "pendulum", &base);
    let log = tmp.path().join("log.bin");
    let blob = read(&base, "policy.bin");
    let (bytes, _) = reg
        .get("pendulum")
        .unwrap()
        .simulate_blob(
            &blob,
            &tinyppo_runtime::sim::RunConfig {
                episodes: 2,
                seed: 3,
                deterministic: false,
            },
        )
        .unwrap();
    std::fs::write(&log, bytes).unwrap();
    let fc = FinetuneConfig {
        iterations: 1,
        accept: tinyppo_trainer::finetune::Accept::Always,
        ..FinetuneConfig::default()
    };

    // A fine-tune: 2 blobs, 3 staged files, the index, 3 renames, 2 copies.
    let mut crashed = 0;
    for k in 1.. {
        let dir = tmp.path().join(format!("ft-{k}"));
        copy_dir(&base, &dir);
        crash_at(k);
        let r = finetune(
            &reg,
            &dir,
            None,
            std::slice::from_ref(&log),
            &fc,
            &mut |_| {},
        );
        crash_at(0);
        let Err(e) = r else {
            // Past the last crash point: the publication went through.
            assert_consistent(&dir, "no crash");
            break;
        };
        assert!(e.to_string().contains("simulated crash"), "{e:#}");
        crashed += 1;
        let what = format!("fine-tune crashed at point {k}");
        assert_consistent(&dir, &what);
        let idx = tinyppo_trainer::export::PolicyIndex::load(&dir)
            .unwrap()
            .unwrap();
        // The checkpoint is the committed version's: the base run's before
        // the commit, the fine-tuned one after it.
        let committed = idx.latest_version() == 2;
        assert_eq!(
            read(&dir, "checkpoint.bin") != read(&base, "checkpoint.bin"),
            committed,
            "{what}"
        );
        // And the next fine-tune works from there.
        let o = finetune(
            &reg,
            &dir,
            None,
            std::slice::from_ref(&log),
            &fc,
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{what}: the next fine-tune: {e:#}"));
        assert_eq!(o.version, idx.latest_version() + 1, "{what}");
        assert_consistent(&dir, &what);
    }
    assert!(crashed >= 10, "{crashed} crash points");

    // A training run's final export: 2 blobs, the index, 2 copies.
    let mut crashed = 0;
    for k in 1.. {
        let dir = tmp.path().join(format!("train-{k}"));
        crash_at(k);
        let r = run::train(
            &reg,
            cfg(&reg, "pendulum", &SMALL),
            &dir,
            &opts(None),
            &mut |_| {},
        );
        crash_at(0);
        if r.is_ok() {
            assert_consistent(&dir, "no crash");
            break;
        }
        crashed += 1;
        let what = format!("train crashed at point {k}");
        // Before the commit there is no index yet: resume publishes it.
        if tinyppo_trainer::export::PolicyIndex::load(&dir)
            .unwrap()
            .is_some()
        {
            assert_consistent(&dir, &what);
        }
        run::resume(&reg, &dir, None, &opts(None), &mut |_| {})
            .unwrap_or_else(|e| panic!("{what}: resume: {e:#}"));
        assert_consistent(&dir, &what);
        assert_eq!(
            read(&dir, "policy.bin"),
            read(&base, "policy.bin"),
            "{what}: same run, same policy"
        );
    }
    assert!(crashed >= 5, "{crashed} crash points");
}

/// Regression (issue 15, item 12): a 249-character `--out` file name failed
/// on the hidden temporary file (its name was the target's plus a suffix,
/// over the 255-byte limit); temporary files of killed runs were never
/// removed. Now the temporary name is short, and the next command on a run
/// removes stale ones.
#[test]
fn long_names_work_and_stale_temporary_files_are_removed() {
    use crate::cli::{ok, s, train_tiny};
    let tmp = TempDir::new("long-names");
    let dir = tmp.path().join("run");
    assert!(train_tiny(&dir, 256, &[]).status.success());
    let long = tmp.path().join(format!("{}.bin", "p".repeat(245)));
    assert_eq!(long.file_name().unwrap().len(), 249);
    ok(&["export", "--checkpoint", s(&dir), "--out", s(&long)]);
    assert!(tinyppo_runtime::Blob::parse(&std::fs::read(&long).unwrap()).is_ok());
    // What a killed process leaves: this version's and older versions' names.
    for stale in [
        ".tinyppo-tmp-999999-0",
        ".policy.bin.tmp-999999",
        ".checkpoint.bin.tmp-12",
    ] {
        std::fs::write(dir.join(stale), b"half").unwrap();
    }
    ok(&[
        "train",
        "--resume",
        s(&dir),
        "--total-steps",
        "512",
        "--quiet",
    ]);
    let left: Vec<String> = files(&dir)
        .into_keys()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Regression (issue 15, item 14): `finetune` on a 52 MB log held 1.57 GB
/// (30× the file): the whole decoded log stayed alive through the updates,
/// each record kept two heap vectors, and the value and log-density passes
/// ran the networks over the whole dataset at once (their caches hold
/// every layer's activations and gradients: over 2 KB per step). Now the
/// file is read in chunks, a record is one allocation, the log is freed
/// after the import and the passes run in chunks: the heap peak of a
/// fine-tune grows by well under 800 bytes per imported step (measured
/// with the tests' counting allocator; `tinyppo finetune` on a 54.9 MB
/// log of 1.26 M steps peaks at 315 MB of RSS, was 1.65 GB).
#[test]
fn finetune_memory_grows_with_the_steps_it_keeps() {
    use tinyppo_trainer::finetune::{finetune, FinetuneConfig};
    let reg = Registry::builtin();
    let tmp = TempDir::new("ft-memory");
    let dir = tmp.path().join("run");
    let small = ["num_envs=2", "num_steps=64", "total_timesteps=256"];
    run::train(
        &reg,
        cfg(&reg, "pendulum", &small),
        &dir,
        &opts(None),
        &mut |_| {},
    )
    .unwrap();
    let blob = read(&dir, "policy.bin");
    let log = tmp.path().join("log.bin");
    let (bytes, st) = reg
        .get("pendulum")
        .unwrap()
        .simulate_blob(
            &blob,
            &tinyppo_runtime::sim::RunConfig {
                episodes: 200,
                seed: 4,
                deterministic: false,
            },
        )
        .unwrap();
    std::fs::write(&log, &bytes).unwrap();
    drop(bytes);
    let fc = FinetuneConfig {
        iterations: 1,
        accept: tinyppo_trainer::finetune::Accept::Always,
        ..FinetuneConfig::default()
    };
    let (o, peak) = crate::alloc_count::peak_during(|| {
        finetune(
            &reg,
            &dir,
            None,
            std::slice::from_ref(&log),
            &fc,
            &mut |_| {},
        )
        .unwrap()
    });
    let steps = o.report.used as u64;
    assert!(
        steps > 39_000 && u64::from(st.transitions) == 40_000,
        "{steps}"
    );
    let per_step = peak / steps;
    println!("peak {peak} B over {steps} steps: {per_step} B per step");
    assert!(
        per_step < 800,
        "{per_step} B per step ({peak} B for {steps} steps)"
    );
}
