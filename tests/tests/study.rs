//! `tinyppo study gradient-variance`: the statistics against hand
//! computations, GAE(λ = 1) against reward-to-go + value baseline (equal by
//! telescoping), the fresh policy against the trainer's initial one, and
//! the command line (outputs, determinism, error messages).

use std::path::Path;

use tinyppo_runtime::rng::seeded;
use tinyppo_trainer::checkpoint;
use tinyppo_trainer::config;
use tinyppo_trainer::env::Env;
use tinyppo_trainer::pg::{
    collect_episodes, episode_score_grads, logp_grad, optimal_baseline, policy_gradient,
    reward_to_go, Baseline, Estimator, PgOptions, ReturnKind,
};
use tinyppo_trainer::study::{
    self, cosine, fixed_baseline_gradient, leave_one_out_gradient, total_variance, GradStats, Row,
    StudyConfig, StudyPolicy, ValueFitConfig,
};

use crate::cli::run;
use crate::trainer_util::{new_trainer, plant, tiny_config, TempDir};

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn study_total_variance_matches_hand_computation() {
    // Three samples of a 2-vector. Means (3, 4); deviations (−2, 0, 2) and
    // (−2, 2, 0): each component's squares sum to 8, /(M − 1) = 4, trace 8.
    let g = vec![vec![1.0f32, 2.0], vec![3.0, 6.0], vec![5.0, 4.0]];
    assert_eq!(total_variance(&g), 8.0);
    // Against the reference (1, 0): cos of the mean (3, 4) is 3/5; of the
    // samples 1/√5, 3/√45, 5/√41.
    let st = GradStats::of(&g, &[1.0, 0.0]);
    assert_eq!(st.mean, vec![3.0, 4.0]);
    assert!((st.cos_ref - 0.6).abs() < 1e-12, "{}", st.cos_ref);
    let want = (1.0 / 5f64.sqrt() + 3.0 / 45f64.sqrt() + 5.0 / 41f64.sqrt()) / 3.0;
    assert!(
        (st.cos_batch - want).abs() < 1e-12,
        "{} vs {want}",
        st.cos_batch
    );
    // Shifting every sample by one vector changes the mean, not the spread.
    let shifted: Vec<Vec<f32>> = g.iter().map(|v| vec![v[0] + 10.0, v[1] - 7.0]).collect();
    assert_eq!(total_variance(&shifted), 8.0);
    // One sample has no sample variance.
    assert!(total_variance(&g[..1]).is_nan());
    assert!((cosine(&[1.0, 1.0], &[-2.0, -2.0]) + 1.0).abs() < 1e-12);
}

#[test]
fn study_fresh_policy_is_the_trainers_initial_policy() {
    let mut rng = seeded(7);
    let p = StudyPolicy::fresh(&plant("cartpole"), 7, &mut rng).expect("fresh");
    let cfg = config::resolve(&plant("cartpole"), None, &["seed=7".into()]).expect("config");
    let t = new_trainer(cfg).expect("trainer");
    assert_eq!(p.model.params, t.state.model.params);
    assert!(!p.norm.update, "the study must not move the obs statistics");
}

fn small_study(seed: u64) -> study::StudyResult {
    let mut rng = seeded(seed);
    let policy = StudyPolicy::fresh(&plant("pendulum"), seed, &mut rng).expect("fresh");
    let cfg = StudyConfig {
        batches: 3,
        episodes_per_batch: 2,
        gamma: 0.99,
        seed,
        value_fit: ValueFitConfig {
            epochs: 3,
            ..ValueFitConfig::for_batch(2)
        },
    };
    study::gradient_variance(&policy, &cfg, &mut rng, &mut |_| {}).expect("study")
}

#[test]
fn study_gae_lambda_one_equals_reward_to_go_with_value_baseline() {
    let r = small_study(3);
    let labels: Vec<&str> = r.rows.iter().map(|r| r.estimator.as_str()).collect();
    let want: Vec<String> = study::rows().iter().map(Row::label).collect();
    assert_eq!(labels, want);
    let row = |l: &str| r.rows.iter().find(|r| r.estimator == l).expect(l);
    let (a, b) = (row("GAE λ=1"), row("reward-to-go + value baseline"));
    let diff: Vec<f64> = a
        .mean_gradient
        .iter()
        .zip(&b.mean_gradient)
        .map(|(x, y)| x - y)
        .collect();
    let rel = study::norm(&diff) / study::norm(&b.mean_gradient);
    println!("GAE λ=1 vs reward-to-go + V: relative difference {rel:e}");
    assert!(rel < 1e-5, "mean gradients differ by {rel:e} (relative)");
    let rel_var = (a.total_variance - b.total_variance).abs() / b.total_variance;
    assert!(rel_var < 1e-5, "total variances differ by {rel_var:e}");
    // λ < 1 bootstraps from V, which 3 epochs of fitting leave far from
    // the true value: the rows must differ (else the check above is void).
    let c = row("GAE λ=0.5");
    assert!((c.total_variance - b.total_variance).abs() > 1e-3 * b.total_variance);
    // Leaving one of N = 2 episodes out of the full-return mean doubles
    // the estimate: (R_i − (S − R_i)/(N − 1)) = N/(N − 1) (R_i − S/N).
    let (m, loo) = (
        row("full return + mean baseline"),
        row("full return + mean baseline, leave-one-out"),
    );
    let diff: Vec<f64> = loo
        .mean_gradient
        .iter()
        .zip(&m.mean_gradient)
        .map(|(l, m)| l - 2.0 * m)
        .collect();
    let rel = study::norm(&diff) / study::norm(&loo.mean_gradient);
    assert!(
        rel < 1e-5,
        "leave-one-out mean is not 2× the batch mean: {rel:e}"
    );
    assert!((loo.total_variance / m.total_variance - 4.0).abs() < 1e-4);
    // The reference row is the reference.
    assert_eq!(b.diff_to_ref, 0.0);
    assert!((b.cos_ref - 1.0).abs() < 1e-12);
    let full = &r.rows[0];
    assert_eq!(full.variance_vs_full_return, 1.0);
    assert!(r.value_fit.target_scale > 0.0);
}

#[test]
fn study_config_errors_name_the_flag() {
    let mut cfg = StudyConfig {
        batches: 1,
        episodes_per_batch: 2,
        gamma: 0.99,
        seed: 1,
        value_fit: ValueFitConfig::for_batch(2),
    };
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("--batches"), "{e}");
    cfg.batches = 2;
    cfg.episodes_per_batch = 0;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("--episodes-per-batch"), "{e}");
    cfg.episodes_per_batch = 1;
    cfg.gamma = 1.5;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("--gamma"), "{e}");
}

/// Runs the CLI study on pendulum (M = 4, N = 2, 3 value epochs) into
/// `out`; returns stdout.
fn cli_study(out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "study",
        "gradient-variance",
        "--env",
        "pendulum",
        "--batches",
        "4",
        "--episodes-per-batch",
        "2",
        "--value-epochs",
        "3",
        "--quiet",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(
        o.status.success(),
        "tinyppo {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn study_cli_writes_table_csv_png_and_is_deterministic() {
    let tmp = TempDir::new("study-cli");
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let table = cli_study(&a, &[]);
    assert!(table.contains("| estimator | total variance |"), "{table}");
    for e in study::rows() {
        assert!(table.contains(&format!("| {} |", e.label())), "{table}");
    }
    let csv = std::fs::read_to_string(a.join("gradient-variance.csv")).expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + study::rows().len(), "{csv}");
    assert!(
        lines[0].starts_with("estimator,total_variance,"),
        "{}",
        lines[0]
    );
    let png = std::fs::read(a.join("gradient-variance.png")).expect("png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(&a)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    cli_study(&b, &["--seed", "1"]);
    let csv_b = std::fs::read_to_string(b.join("gradient-variance.csv")).expect("csv");
    assert_eq!(csv, csv_b, "same seed, different CSV");
    cli_study(&c, &["--seed", "2"]);
    let csv_c = std::fs::read_to_string(c.join("gradient-variance.csv")).expect("csv");
    assert_ne!(csv, csv_c, "different seeds, same CSV");
}

#[test]
fn study_cli_json_and_checkpoint() {
    let tmp = TempDir::new("study-ck");
    let run_dir = tmp.path().join("run");
    std::fs::create_dir_all(&run_dir).expect("mkdir");
    let t = new_trainer(tiny_config(5)).expect("trainer");
    checkpoint::save(&run_dir, &t.state).expect("save");
    let out = cli_study(
        &tmp.path().join("out"),
        &["--checkpoint", s(&run_dir), "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["env"], "pendulum");
    assert_eq!(v["batches"], 4);
    assert_eq!(
        v["rows"].as_array().expect("rows").len(),
        study::rows().len()
    );
    assert!(
        v["policy"]
            .as_str()
            .expect("policy")
            .contains("checkpoint.bin"),
        "{v}"
    );
    // The checkpoint's 16-wide actor: 3·16+16 + 16·16+16 + 16+1, + log σ.
    assert_eq!(v["parameters"], 3 * 16 + 16 + 16 * 16 + 16 + 16 + 1 + 1);
    let ev = v["value_fit"]["explained_variance_held_out"].as_f64();
    assert!(ev.is_some_and(f64::is_finite), "{v}");
}

/// Runs the CLI study with `args` and expects failure; returns stderr.
fn study_fails(args: &[&str]) -> String {
    let mut all = vec!["study", "gradient-variance"];
    all.extend_from_slice(args);
    let o = run(&all);
    assert!(
        !o.status.success(),
        "tinyppo {all:?} unexpectedly succeeded"
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn study_cli_bad_input_is_named() {
    let tmp = TempDir::new("study-bad");
    let out = tmp.path().join("out");
    let o = s(&out);
    let e = study_fails(&["--env", "pendulum", "--batches", "1", "--out", o]);
    assert!(e.contains("--batches must be at least 2"), "{e}");
    let e = study_fails(&["--env", "pendulum", "--episodes-per-batch", "0", "--out", o]);
    assert!(e.contains("--episodes-per-batch must be at least 1"), "{e}");
    let e = study_fails(&["--env", "acrobot", "--out", o]);
    assert!(e.contains("unknown plant \"acrobot\""), "{e}");
    let e = study_fails(&["--out", o]);
    assert!(e.contains("--env"), "{e}");
    // Missing, corrupt and mismatched checkpoints name the file.
    let missing = tmp.path().join("nothing-here");
    let e = study_fails(&["--env", "pendulum", "--checkpoint", s(&missing), "--out", o]);
    assert!(e.contains(s(&missing.join("checkpoint.bin"))), "{e}");
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(bad.join("checkpoint.bin"), b"not a checkpoint at all").expect("write");
    let e = study_fails(&["--env", "pendulum", "--checkpoint", s(&bad), "--out", o]);
    assert!(e.contains("not a tinyppo checkpoint"), "{e}");
    assert!(e.contains(s(&bad.join("checkpoint.bin"))), "{e}");
    let good = tmp.path().join("good");
    std::fs::create_dir_all(&good).expect("mkdir");
    let t = new_trainer(tiny_config(5)).expect("trainer");
    checkpoint::save(&good, &t.state).expect("save");
    let e = study_fails(&["--env", "cartpole", "--checkpoint", s(&good), "--out", o]);
    assert!(e.contains("--env cartpole does not match"), "{e}");
    assert!(e.contains("env pendulum"), "{e}");
    assert!(!out.exists(), "a failed study wrote {}", out.display());
}

/// The diagnostic rows against independent computations: leave-one-out
/// baselines by `pg::optimal_baseline` on the other episodes and by
/// explicit loops over the reward-to-go; a fixed baseline (per-episode
/// score sums) against `pg::policy_gradient`'s per-step weights.
#[test]
fn study_diagnostic_rows_match_naive_recomputation() {
    // Cartpole: episodes of different lengths, so some steps are reached
    // by fewer than N episodes.
    let mut rng = seeded(11);
    let policy = StudyPolicy::fresh(&plant("cartpole"), 11, &mut rng).expect("fresh");
    let mut envs: Vec<Box<dyn Env>> = (0..5).map(|_| plant("cartpole").make_env()).collect();
    let mut rms = policy.obs_rms.clone();
    let batch = collect_episodes(&policy.model, &mut envs, &mut rms, policy.norm, &mut rng);
    let n = batch.episodes();
    let lens: Vec<usize> = (0..n).map(|i| batch.range(i).len()).collect();
    assert!(lens.iter().any(|&l| l != lens[0]), "equal lengths {lens:?}");
    let opts = PgOptions {
        gamma: 0.97,
        time_discount: true,
    };
    let model = &policy.model;
    let p = model.critic_range().start;
    let close = |what: &str, got: &[f32], want: &[f64]| {
        let d: f64 = got
            .iter()
            .zip(want)
            .map(|(&a, b)| (a as f64 - b).powi(2))
            .sum();
        let rel = d.sqrt() / study::norm(want);
        assert!(rel < 1e-5, "{what}: relative difference {rel:e}");
    };

    // Full return, optimal baseline from the other episodes.
    let score = episode_score_grads(model, &batch);
    let rets = batch.returns(opts.gamma);
    let mut want = vec![0.0f64; p];
    for i in 0..n {
        let others: Vec<Vec<f32>> = (0..n)
            .filter(|&j| j != i)
            .map(|j| score[j].clone())
            .collect();
        let r_others: Vec<f32> = (0..n).filter(|&j| j != i).map(|j| rets[j]).collect();
        let b = optimal_baseline(&others, &r_others);
        for k in 0..p {
            want[k] += score[i][k] as f64 * (rets[i] - b[k]) as f64 / n as f64;
        }
    }
    let got = leave_one_out_gradient(model, &batch, ReturnKind::Full, Baseline::Optimal, &opts);
    close("optimal, leave-one-out", &got, &want);

    // Reward-to-go, per-step mean of the other episodes reaching step t.
    let mut rtg = vec![0.0f32; batch.steps()];
    for i in 0..n {
        let r = batch.range(i);
        reward_to_go(&batch.rewards[r.clone()], opts.gamma, &mut rtg[r]);
    }
    let mut psi = vec![0.0f32; batch.steps()];
    for i in 0..n {
        for (k, t) in batch.range(i).enumerate() {
            let others: Vec<f32> = (0..n)
                .filter(|&j| j != i && lens[j] > k)
                .map(|j| rtg[batch.range(j).start + k])
                .collect();
            let b = if others.is_empty() {
                0.0
            } else {
                others.iter().sum::<f32>() / others.len() as f32
            };
            psi[t] = opts.gamma.powi(k as i32) * (rtg[t] - b);
        }
    }
    let mut g = vec![0.0f32; p];
    let mut cache = Default::default();
    logp_grad(model, &batch.obs, &batch.actions, &psi, &mut cache, &mut g);
    let want: Vec<f64> = g.iter().map(|&x| x as f64 / n as f64).collect();
    let got = leave_one_out_gradient(model, &batch, ReturnKind::RewardToGo, Baseline::Mean, &opts);
    close("reward-to-go mean, leave-one-out", &got, &want);

    // A fixed baseline of 0, and of the batch mean.
    let full = |b| {
        let g = policy_gradient(
            model,
            &batch,
            Estimator::Reinforce(ReturnKind::Full, b),
            None,
            &opts,
        );
        g.iter().map(|&x| x as f64).collect::<Vec<f64>>()
    };
    let got = fixed_baseline_gradient(model, &batch, &vec![0.0; p], &opts);
    close("fixed baseline 0", &got, &full(Baseline::None));
    let mean = rets.iter().sum::<f32>() / n as f32;
    let got = fixed_baseline_gradient(model, &batch, &vec![mean; p], &opts);
    close("fixed baseline = batch mean", &got, &full(Baseline::Mean));
}

#[test]
fn study_table_numbers_keep_three_significant_digits() {
    use study::sig3;
    assert_eq!(sig3(1.0), "1.00");
    assert_eq!(sig3(0.0506), "0.0506");
    assert_eq!(sig3(0.001742), "0.00174");
    assert_eq!(sig3(0.0001742), "1.74e-4");
    assert_eq!(sig3(123.4), "123");
    assert_eq!(sig3(0.0), "0");
}
