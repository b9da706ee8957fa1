//! Whole training updates on tiny budgets: determinism, checkpoint
//! round-trips, divergence handling.

use rand::RngCore;
use tinyppo_trainer::algo::{TrainState, Trainer, UpdateMetrics};
use tinyppo_trainer::checkpoint;
use tinyppo_trainer::export::{export_blob, Quant};

use crate::trainer_util::{new_trainer, plant, tiny_config};

/// Every field of the metrics except the wall-clock `sps`, as bits (so NaN
/// compares equal to NaN and -0.0 differs from 0.0).
fn fingerprint(m: &UpdateMetrics) -> Vec<u64> {
    vec![
        m.update,
        m.global_step,
        m.episodic_return.to_bits(),
        m.recent_return.to_bits(),
        m.episodes as u64,
        m.learning_rate.to_bits() as u64,
        m.pg_loss.to_bits() as u64,
        m.v_loss.to_bits() as u64,
        m.entropy.to_bits() as u64,
        m.approx_kl.to_bits() as u64,
        m.old_approx_kl.to_bits() as u64,
        m.clipfrac.to_bits() as u64,
        m.explained_variance.to_bits() as u64,
        m.grad_norm.to_bits() as u64,
        m.epochs as u64,
        m.std.to_bits() as u64,
    ]
}

fn run(seed: u64) -> (Vec<UpdateMetrics>, Trainer) {
    let mut t = new_trainer(tiny_config(seed)).expect("trainer");
    let mut rows = Vec::new();
    while !t.done() {
        rows.push(t.step_update().expect("update"));
    }
    (rows, t)
}

#[test]
fn trainer_same_seed_same_run() {
    let (a, ta) = run(7);
    let (b, tb) = run(7);
    assert_eq!(a.len(), 4, "512 steps / (2 envs × 64 steps) = 4 updates");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(fingerprint(x), fingerprint(y), "update {}", x.update);
    }
    assert_eq!(ta.state.model.params, tb.state.model.params);
    assert_eq!(ta.state.adam.m, tb.state.adam.m);
    assert_eq!(ta.state.global_step, 512);
    assert_eq!(a.last().map(|m| m.global_step), Some(512));
    // The run did something: parameters moved and losses are finite.
    let fresh = new_trainer(tiny_config(7)).expect("trainer");
    assert_ne!(fresh.state.model.params, ta.state.model.params);
    for m in &a {
        assert!(m.pg_loss.is_finite() && m.v_loss.is_finite() && m.approx_kl.is_finite());
        assert_eq!(m.epochs, 2);
    }
    // A different seed is a different run.
    let (c, tc) = run(8);
    assert_ne!(tc.state.model.params, ta.state.model.params);
    assert_ne!(fingerprint(&c[0]), fingerprint(&a[0]));
}

#[test]
fn trainer_learning_rate_is_annealed_linearly() {
    // lr_k = (1 − (k−1)/U)·lr for update k of U.
    let (rows, _) = run(9);
    let lr = tiny_config(9).learning_rate;
    for m in &rows {
        let want = (1.0 - (m.update - 1) as f32 / 4.0) * lr;
        assert!((m.learning_rate - want).abs() < 1e-9, "{m:?}");
    }
}

fn assert_same_state(a: &TrainState, b: &TrainState) {
    assert_eq!(a.cfg, b.cfg);
    assert_eq!(a.model.params, b.model.params);
    assert_eq!(a.model.actor, b.model.actor);
    assert_eq!(a.model.critic, b.model.critic);
    assert_eq!(a.adam.m, b.adam.m);
    assert_eq!(a.adam.v, b.adam.v);
    assert_eq!(a.adam.t, b.adam.t);
    assert_eq!(a.obs_rms.mean, b.obs_rms.mean);
    assert_eq!(a.obs_rms.var, b.obs_rms.var);
    assert_eq!(a.obs_rms.count, b.obs_rms.count);
    assert_eq!(a.reward_scaler.ret, b.reward_scaler.ret);
    assert_eq!(a.reward_scaler.rms.var, b.reward_scaler.rms.var);
    assert_eq!(a.global_step, b.global_step);
    assert_eq!(a.update, b.update);
    assert_eq!(a.recent_returns, b.recent_returns);
    let (mut ra, mut rb) = (a.rng.clone(), b.rng.clone());
    for _ in 0..8 {
        assert_eq!(ra.next_u64(), rb.next_u64(), "rng streams differ");
    }
}

#[test]
fn trainer_checkpoint_round_trip() {
    let mut cfg = tiny_config(10);
    cfg.total_timesteps = 1024;
    let mut t = new_trainer(cfg).expect("trainer");
    for _ in 0..2 {
        t.step_update().expect("update");
    }
    let bytes = checkpoint::to_bytes(&t.state).expect("serialize");
    assert_eq!(&bytes[..4], b"TPCK");
    let back = checkpoint::from_bytes(&bytes, "ck.bin").expect("parse");
    assert_same_state(&t.state, &back);
    assert_eq!(checkpoint::to_bytes(&back).expect("serialize"), bytes);

    // A resumed run continues exactly like the original state would.
    let mut a = Trainer::from_state(t.state.clone(), &plant("pendulum")).expect("from state");
    let mut b = Trainer::from_state(back, &plant("pendulum")).expect("from state");
    let (ma, mb) = (a.step_update().expect("a"), b.step_update().expect("b"));
    assert_eq!(fingerprint(&ma), fingerprint(&mb));
    assert_eq!(a.state.model.params, b.state.model.params);

    // Every single flipped bit of the body is caught by the CRC.
    for pos in [6, bytes.len() / 3, bytes.len() / 2, bytes.len() - 5] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        let err = format!(
            "{:#}",
            checkpoint::from_bytes(&bad, "runs/x/checkpoint.bin")
                .err()
                .expect("corrupt checkpoint accepted")
        );
        assert!(err.contains("checksum"), "byte {pos}: {err}");
        assert!(err.contains("runs/x/checkpoint.bin"), "{err}");
    }
    // Truncated anywhere: an error naming the file, never a panic.
    for len in [0, 3, 9, 10, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = format!(
            "{:#}",
            checkpoint::from_bytes(&bytes[..len], "ck.bin")
                .err()
                .expect("truncated checkpoint accepted")
        );
        assert!(err.contains("ck.bin"), "{len} bytes: {err}");
    }
    // Not a checkpoint at all.
    let err = checkpoint::from_bytes(b"TPPO\x01\x00 a policy blob", "p.bin")
        .err()
        .expect("wrong magic accepted");
    assert!(format!("{err:#}").contains("not a tinyppo checkpoint"));
}

#[test]
fn trainer_checkpoint_save_load_files() {
    let dir = crate::trainer_util::TempDir::new("ckpt");
    let t = new_trainer(tiny_config(11)).expect("trainer");
    checkpoint::save(dir.path(), &t.state).expect("save");
    let back = checkpoint::load(dir.path()).expect("load");
    assert_same_state(&t.state, &back);
    // No temporary files are left behind by the atomic write.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["checkpoint.bin"]);
    let missing = crate::trainer_util::TempDir::new("ckpt-missing");
    let err = format!(
        "{:#}",
        checkpoint::load(missing.path()).err().expect("no file")
    );
    assert!(err.contains("checkpoint.bin"), "{err}");
}

#[test]
fn trainer_divergence_is_an_error_naming_the_quantity() {
    let mut cfg = tiny_config(12);
    cfg.learning_rate = 1e30;
    let mut t = new_trainer(cfg).expect("trainer");
    let err = loop {
        assert!(!t.done(), "a learning rate of 1e30 did not diverge");
        if let Err(e) = t.step_update() {
            break format!("{e:#}");
        }
    };
    assert!(err.contains("diverged at update"), "{err}");
    assert!(
        [
            "policy loss",
            "value loss",
            "entropy",
            "gradient norm",
            "weight"
        ]
        .iter()
        .any(|q| err.contains(q)),
        "the error does not name the quantity: {err}"
    );
}

#[test]
fn trainer_export_refuses_non_finite_parameters() {
    let mut t = new_trainer(tiny_config(13)).expect("trainer");
    assert!(export_blob(&t.state, &t.plant, Quant::Int8).is_ok());
    t.state.model.params[5] = f32::NAN;
    let err = format!(
        "{:#}",
        export_blob(&t.state, &t.plant, Quant::Int8).expect_err("NaN exported")
    );
    assert!(err.contains("parameter 5"), "{err}");
    t.state.model.params[5] = f32::INFINITY;
    assert!(export_blob(&t.state, &t.plant, Quant::F32).is_err());
}
