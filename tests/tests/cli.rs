//! The `tinyppo` command line, run as a process: a tiny training run and
//! what it writes, `eval`, `inspect`, resuming, and the error messages for
//! corrupt or mismatched inputs and bad configurations.
//!
//! `CARGO_BIN_EXE_tinyppo` only exists for tests of the package that owns
//! the binary, so this test builds it itself, once per test process, with
//! `cargo build -p tinyppo-trainer --bin tinyppo` into the same target
//! directory and profile as this test executable (a no-op when it is up to
//! date; without it a stale binary could be tested). `TINYPPO_BIN` points
//! at a prebuilt binary instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::trainer_util::TempDir;

/// The path of the `tinyppo` binary, built on first use (shared by the
/// modules that run the CLI as a process).
pub(crate) fn tinyppo() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("TINYPPO_BIN") {
            return PathBuf::from(p);
        }
        // <target>/<profile>/deps/tests-<hash>
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable lives in <target>/<profile>/deps");
        let bin = profile_dir.join(format!("tinyppo{}", std::env::consts::EXE_SUFFIX));
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("profile directory name");
        // The `debug` directory holds the dev and test profiles; build with
        // the test profile (opt-level 1) so the trainer's library is shared
        // with this test's build instead of compiled a second time.
        let profile = if profile == "debug" { "test" } else { profile };
        let target_dir = profile_dir.parent().expect("target directory");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "tinyppo-trainer",
                "--bin",
                "tinyppo",
            ])
            .args(["--profile", profile])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
        match status {
            Ok(s) if s.success() => {}
            // No cargo here (a copied test binary): use what is there.
            _ if bin.exists() => {}
            other => panic!("building the tinyppo binary failed: {other:?}"),
        }
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
}

pub(crate) fn run(args: &[&str]) -> Output {
    Command::new(tinyppo())
        .args(args)
        .output()
        .expect("running tinyppo")
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `args` and expects success.
pub(crate) fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "tinyppo {args:?} failed ({}):\n{}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// Runs `args`, expects failure and returns stderr.
pub(crate) fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        !o.status.success(),
        "tinyppo {args:?} unexpectedly succeeded:\n{}",
        stdout(&o)
    );
    stderr(&o)
}

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

const TINY: &[&str] = &[
    "--set",
    "num_steps=128",
    "--set",
    "num_envs=2",
    "--set",
    "ppo.num_minibatches=4",
    "--set",
    "ppo.update_epochs=1",
    "--set",
    "eval_episodes=2",
    "--quiet",
];

pub(crate) fn train_tiny(out: &Path, total: u64, extra: &[&str]) -> Output {
    let total = total.to_string();
    let mut args = vec!["train", "--env", "pendulum", "--total-steps", &total];
    args.extend_from_slice(TINY);
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", s(out)]);
    run(&args)
}

/// One 1024-step pendulum run shared by the read-only tests.
fn trained() -> &'static Path {
    static RUN: OnceLock<TempDir> = OnceLock::new();
    RUN.get_or_init(|| {
        // Statics are never dropped: remove shared runs of earlier test
        // processes (older than an hour, so a concurrent one is left alone).
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old && e.file_name().to_string_lossy().starts_with("cli-run-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let dir = TempDir::new("cli-run");
        let o = train_tiny(dir.path(), 1024, &[]);
        assert!(o.status.success(), "training failed:\n{}", stderr(&o));
        dir
    })
    .path()
}

fn metrics(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .expect("metrics.csv")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Column `name` of the data rows of `metrics.csv`.
fn column(lines: &[String], name: &str) -> Vec<String> {
    let k = lines[0]
        .split(',')
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {}", lines[0]));
    lines[1..]
        .iter()
        .map(|l| l.split(',').nth(k).expect("column").to_owned())
        .collect()
}

/// A copy of `file` in `dir` with `f` applied to its bytes.
fn mangled(dir: &TempDir, file: &Path, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(file).expect("read");
    f(&mut b);
    let p = dir.path().join("mangled-policy.bin");
    std::fs::write(&p, b).expect("write");
    p
}

#[test]
fn cli_train_writes_run_directory() {
    let dir = trained();
    for f in [
        "policy.bin",
        "policy-f32.bin",
        "checkpoint.bin",
        "metrics.csv",
        "learning-curve.png",
        "config.toml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let lines = metrics(dir);
    assert!(lines[0].contains("losses/approx_kl"), "{}", lines[0]);
    assert!(lines[0].contains("charts/episodic_return"));
    // 1024 steps in batches of 2 × 128: four updates.
    assert_eq!(lines.len(), 1 + 4);
    assert_eq!(column(&lines, "global_step"), ["256", "512", "768", "1024"]);
    let png = std::fs::read(dir.join("learning-curve.png")).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let cfg = std::fs::read_to_string(dir.join("config.toml")).expect("config");
    assert!(cfg.contains("num_steps = 128"), "{cfg}");
    assert!(cfg.contains("total_timesteps = 1024"), "{cfg}");
    assert!(cfg.contains("env = \"pendulum\""), "{cfg}");
    // Both blobs are valid policies for pendulum (3 → 1).
    for f in ["policy.bin", "policy-f32.bin"] {
        let b = std::fs::read(dir.join(f)).expect("blob");
        tinyppo_runtime::Policy::<3, 1, 256>::from_bytes(&b).expect("valid blob");
    }
    // No temporary files left by the atomic writes.
    for e in std::fs::read_dir(dir).expect("dir") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(!name.contains("tmp"), "leftover {name}");
    }
}

#[test]
fn cli_eval_json() {
    let policy = trained().join("policy.bin");
    let out = ok(&[
        "eval",
        "--policy",
        s(&policy),
        "--env",
        "pendulum",
        "--episodes",
        "3",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["episodes"], 3);
    let mean = v["mean_return"].as_f64().expect("mean_return");
    let std = v["std_return"].as_f64().expect("std_return");
    // Pendulum rewards are in [−16.3, 0] per step, 200 steps per episode.
    assert!((-3300.0..=0.0).contains(&mean), "{mean}");
    assert!(std >= 0.0);
    assert!(v["min_return"].as_f64().expect("min") <= mean);
    // Same seed, same returns.
    let again = ok(&[
        "eval",
        "--policy",
        s(&policy),
        "--env",
        "pendulum",
        "--episodes",
        "3",
        "--json",
    ]);
    assert_eq!(out, again);
}

#[test]
fn cli_inspect() {
    let policy = trained().join("policy.bin");
    let bytes = std::fs::read(&policy).expect("blob");
    // Header: magic (4), version u16 (2), policy id u32 LE (4), …
    let id = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes"));
    let out = ok(&["inspect", s(&policy)]);
    assert!(out.contains(&format!("{id:08x}")), "{out}");
    assert!(out.contains("3 -> [64, 64] -> 1"), "{out}");
    assert!(out.contains("int8"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(ok(&["inspect", s(&policy), "--json"]).trim()).expect("JSON");
    assert_eq!(json["policy_id"], format!("{id:08x}"));
    assert_eq!(json["obs_dim"], 3);
    assert_eq!(json["act_dim"], 1);
}

/// `tinyppo inspect x.bin | head -c 0`: the reader is gone before the
/// first write; the process ends quietly with success (std's `println!`
/// would panic with "failed printing to stdout: Broken pipe").
#[test]
fn cli_closed_stdout_ends_quietly() {
    let policy = trained().join("policy.bin");
    // The subshell starts tinyppo after `head -c 0` has exited, so its
    // stdout is a pipe without reader (if head were slower, the write
    // would simply succeed and the assertions still hold).
    let script = format!(
        "(sleep 0.3; '{}' inspect '{}'; echo \"status=$?\" >&2) | head -c 0",
        tinyppo().display(),
        policy.display()
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("running sh (POSIX shell, part of every Linux base system)");
    let err = stderr(&o);
    assert!(err.contains("status=0"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `eval` and `inspect` of the damaged blob `bad` both fail, naming the
/// file and `what` went wrong.
fn eval_and_inspect_fail_naming(bad: &Path, what: &str) {
    for args in [
        vec![
            "eval",
            "--policy",
            s(bad),
            "--env",
            "pendulum",
            "--episodes",
            "1",
        ],
        vec!["inspect", s(bad)],
    ] {
        let err = fails(&args);
        assert!(err.contains("mangled-policy.bin"), "{args:?}: {err}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

#[test]
fn cli_corrupt_policy_reports_checksum() {
    let tmp = TempDir::new("cli-corrupt");
    let bad = mangled(&tmp, &trained().join("policy.bin"), |b| {
        let k = b.len() / 2;
        b[k] ^= 0x01;
    });
    eval_and_inspect_fail_naming(&bad, "checksum");
}

#[test]
fn cli_truncated_policy_reports_truncated() {
    let tmp = TempDir::new("cli-trunc");
    let bad = mangled(&tmp, &trained().join("policy-f32.bin"), |b| {
        b.truncate(b.len() - 7)
    });
    eval_and_inspect_fail_naming(&bad, "truncated");
}

/// A pendulum blob has the dimensions of dc-motor (3 observations, 1
/// action); before blobs recorded their plant, eval and simulate ran it
/// without a word. Now both refuse it unless `--allow-other-plant`.
#[test]
fn cli_blob_of_another_plant_with_the_same_dims_is_refused() {
    let policy = trained().join("policy.bin");
    let tmp = TempDir::new("cli-other-plant");
    let log = tmp.path().join("log.bin");
    for cmd in [
        vec![
            "eval",
            "--policy",
            s(&policy),
            "--env",
            "dc-motor",
            "--episodes",
            "1",
        ],
        vec![
            "simulate",
            "--policy",
            s(&policy),
            "--env",
            "dc-motor",
            "--episodes",
            "1",
            "--out",
            s(&log),
        ],
    ] {
        let err = fails(&cmd);
        assert!(
            err.contains("exported for plant code 0x00")
                && err.contains("not for dc-motor")
                && err.contains("--allow-other-plant")
                && err.contains(s(&policy)),
            "{cmd:?}: {err}"
        );
        let mut allowed = cmd.clone();
        allowed.push("--allow-other-plant");
        let o = run(&allowed);
        assert!(o.status.success(), "{allowed:?}: {}", stderr(&o));
    }
    assert!(log.exists(), "simulate --allow-other-plant wrote its log");
}

#[test]
fn cli_eval_on_wrong_plant_says_why() {
    let policy = trained().join("policy.bin");
    let err = fails(&[
        "eval",
        "--policy",
        s(&policy),
        "--env",
        "cartpole",
        "--episodes",
        "1",
    ]);
    assert!(err.contains("cartpole"), "{err}");
    assert!(
        err.contains("has 3 observations") && err.contains("cartpole has 4"),
        "{err}"
    );
    let err = fails(&["eval", "--policy", s(&policy), "--env", "moon-lander"]);
    assert!(
        err.contains("moon-lander") && err.contains("pendulum"),
        "{err}"
    );
}

#[test]
fn cli_resume_continues_the_run() {
    let tmp = TempDir::new("cli-resume");
    for e in std::fs::read_dir(trained()).expect("run dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), tmp.path().join(e.file_name())).expect("copy");
    }
    let before = metrics(tmp.path());
    let old_policy = std::fs::read(tmp.path().join("policy.bin")).expect("blob");
    ok(&[
        "train",
        "--resume",
        s(tmp.path()),
        "--total-steps",
        "2048",
        "--quiet",
    ]);
    let after = metrics(tmp.path());
    assert_eq!(after.len(), 1 + 8, "{after:?}");
    // The first rows are preserved as they were written.
    assert_eq!(after[..before.len()], before[..]);
    let steps = column(&after, "global_step");
    assert_eq!(steps.last().map(String::as_str), Some("2048"));
    let updates: Vec<u64> = column(&after, "update")
        .iter()
        .map(|u| u.parse().expect("integer"))
        .collect();
    assert_eq!(updates, (1..=8).collect::<Vec<u64>>());
    // A new policy was exported from the continued run.
    assert_ne!(
        std::fs::read(tmp.path().join("policy.bin")).expect("blob"),
        old_policy
    );
    let state = tinyppo_trainer::checkpoint::load(tmp.path()).expect("checkpoint");
    assert_eq!(state.global_step, 2048);
    assert_eq!(state.update, 8);
}

#[test]
fn cli_unknown_hyperparameter_is_named() {
    let tmp = TempDir::new("cli-unknown");
    let o = train_tiny(tmp.path(), 256, &["--set", "foo=1"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("\"foo\""), "{err}");
    assert!(err.contains("--set"), "{err}");
}

#[test]
fn cli_divergent_run_exports_nothing() {
    let tmp = TempDir::new("cli-diverge");
    let o = train_tiny(tmp.path(), 1024, &["--set", "learning_rate=1e30"]);
    assert!(!o.status.success(), "a learning rate of 1e30 trained fine");
    let err = stderr(&o);
    assert!(err.contains("diverged"), "{err}");
    assert!(err.contains("no policy exported"), "{err}");
    assert!(!tmp.path().join("policy.bin").exists());
    assert!(!tmp.path().join("policy-f32.bin").exists());
}

/// Regression: a run that diverged before its first checkpoint said "the
/// last good checkpoint is in …/checkpoint.bin", a file that did not exist.
/// A checkpoint the message points at must exist.
#[test]
fn cli_divergence_message_names_only_existing_checkpoints() {
    let tmp = TempDir::new("cli-diverge-ck");
    let o = train_tiny(tmp.path(), 1024, &["--set", "learning_rate=1e30"]);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("diverged"), "{err}");
    let ck = tmp.path().join("checkpoint.bin");
    assert!(
        !ck.exists(),
        "diverged at the first update: no checkpoint yet"
    );
    assert!(!err.contains("last good checkpoint"), "{err}");
    assert!(err.contains("no checkpoint"), "{err}");

    // Resuming a good run with a divergent learning rate does point at
    // the checkpoint, and leaves it (and the old policy) in place.
    let run = TempDir::new("cli-diverge-resume");
    assert!(train_tiny(run.path(), 256, &[]).status.success());
    let mut state = tinyppo_trainer::checkpoint::load(run.path()).expect("checkpoint");
    state.cfg.learning_rate = 1e30;
    state.cfg.total_timesteps = 1024;
    tinyppo_trainer::checkpoint::save(run.path(), &state).expect("save");
    let before = std::fs::read(run.path().join("checkpoint.bin")).expect("checkpoint");
    let err = fails(&["train", "--resume", s(run.path()), "--quiet"]);
    assert!(err.contains("diverged"), "{err}");
    assert!(err.contains("last good checkpoint"), "{err}");
    assert!(err.contains(s(&run.path().join("checkpoint.bin"))), "{err}");
    let after = std::fs::read(run.path().join("checkpoint.bin")).expect("checkpoint");
    assert_eq!(before, after);
}
