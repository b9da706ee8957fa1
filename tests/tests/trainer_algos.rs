//! `--algo reinforce|a2c|ppo`: the algorithm family shares the trainer's
//! machinery and export path. A2C's step is the vanilla policy gradient
//! (the clipped surrogate at θ = θ_old), REINFORCE learns, every variant
//! exports a blob the runtime runs, and bad combinations are refused.

use ndarray::ArrayView2;
use tinyppo_trainer::algo::{Trainer, UpdateMetrics};
use tinyppo_trainer::config::{resolve, AdvantageKind, Algo, ReinforceParams, TrainConfig};
use tinyppo_trainer::export::{export_blob, Quant};
use tinyppo_trainer::loss::{ppo_loss, LossCoefs, Minibatch, Workspace};
use tinyppo_trainer::mlp::{Act, Cache};
use tinyppo_trainer::model::{gaussian_log_prob, ActorCritic};
use tinyppo_trainer::pg::{logp_grad, Baseline, ReturnKind, ValueTarget};

use crate::trainer_util::{new_trainer, normal, plant, rng, tiny_config};

fn run_all(cfg: TrainConfig) -> (Vec<UpdateMetrics>, Trainer) {
    let mut t = new_trainer(cfg).expect("trainer");
    let mut rows = Vec::new();
    while !t.done() {
        rows.push(t.step_update().expect("update"));
    }
    (rows, t)
}

fn reinforce(env: &str, steps: u64, ret: ReturnKind, b: Baseline) -> TrainConfig {
    TrainConfig {
        env: env.into(),
        algo: Algo::Reinforce,
        total_timesteps: steps,
        num_envs: 4,
        reinforce: ReinforceParams {
            pg_return: ret,
            baseline: b,
            ..ReinforceParams::default()
        },
        ..tiny_config(3)
    }
}

/// At θ = θ_old every ratio is 1, no sample is clipped, and the gradient of
/// the clipped surrogate is the vanilla policy gradient
/// `−(1/M) Σ Â_i ∇ log π(u_i|x_i)` that A2C steps along.
#[test]
fn algos_surrogate_at_old_policy_is_vanilla_policy_gradient() {
    let mut r = rng(11);
    let (od, ad, m) = (3, 2, 64);
    let model = ActorCritic::new(od, ad, &[8, 8], &[8, 8], Act::Tanh, -0.5, &mut r);
    let obs: Vec<f32> = (0..m * od).map(|_| normal(&mut r)).collect();
    let x = ArrayView2::from_shape((m, od), &obs).expect("rows");
    let mut cache = Cache::default();
    let mu = model
        .actor
        .forward(model.actor_params(), x, &mut cache)
        .to_owned();
    let actions: Vec<f32> = (0..m * ad)
        .map(|k| mu[[k / ad, k % ad]] + 0.6 * normal(&mut r))
        .collect();
    let logp: Vec<f32> = (0..m)
        .map(|i| {
            let mu_i: Vec<f32> = mu.row(i).to_vec();
            gaussian_log_prob(&actions[i * ad..(i + 1) * ad], &mu_i, model.log_std())
        })
        .collect();
    let adv: Vec<f32> = (0..m).map(|_| normal(&mut r)).collect();
    let zeros = vec![0.0f32; m];
    let mb = Minibatch {
        obs: x,
        actions: ArrayView2::from_shape((m, ad), &actions).expect("rows"),
        logp_old: &logp,
        adv: &adv,
        returns: &zeros,
        values_old: &zeros,
    };
    let coefs = LossCoefs {
        clip_coef: 0.2,
        clip_vloss: false,
        ent_coef: 0.0,
        vf_coef: 0.0,
        norm_adv: false,
    };
    let mut g = vec![0.0f32; model.params.len()];
    let st = ppo_loss(&model, &mb, &coefs, &mut Workspace::default(), Some(&mut g));
    assert_eq!(st.clipfrac, 0.0);
    assert!(st.approx_kl.abs() < 1e-6, "approx_kl {}", st.approx_kl);

    let w: Vec<f32> = adv.iter().map(|a| -a / m as f32).collect();
    let mut v = vec![0.0f32; model.params.len()];
    logp_grad(&model, &obs, &actions, &w, &mut cache, &mut v);
    let p = model.critic_range().start;
    let scale = v[..p].iter().fold(0.0f32, |s, x| s.max(x.abs()));
    for k in 0..p {
        assert!(
            (g[k] - v[k]).abs() <= 1e-5 * scale.max(1e-3),
            "param {k}: surrogate {} vs vanilla {}",
            g[k],
            v[k]
        );
    }
}

#[test]
fn algos_a2c_takes_one_unclipped_step_per_rollout() {
    let cfg = TrainConfig {
        algo: Algo::A2c,
        num_steps: 8,
        ..tiny_config(5)
    };
    // tiny_config's [ppo] has 2 epochs of 4 minibatches: A2C reads none.
    assert_eq!(cfg.epochs_and_minibatches(), (1, 1));
    let (rows, _) = run_all(cfg.clone());
    assert_eq!(rows.len(), 512 / 16);
    for m in &rows {
        assert_eq!(m.epochs, 1);
        assert_eq!(m.clipfrac, 0.0, "update {}", m.update);
        assert!(
            m.approx_kl.abs() < 1e-5,
            "update {}: {}",
            m.update,
            m.approx_kl
        );
    }
    // The n-step advantages drive the same loop.
    let (rows, _) = run_all(TrainConfig {
        advantage: AdvantageKind::Nstep,
        n_step: 3,
        ..cfg
    });
    assert!(rows
        .iter()
        .all(|m| m.pg_loss.is_finite() && m.v_loss.is_finite()));
}

#[test]
fn algos_reinforce_same_seed_same_run_and_steps_count_whole_episodes() {
    let cfg = reinforce("pendulum", 1000, ReturnKind::RewardToGo, Baseline::Value);
    let (a, ta) = run_all(cfg.clone());
    let (b, tb) = run_all(cfg);
    assert_eq!(ta.state.model.params, tb.state.model.params);
    assert_eq!(a.len(), b.len());
    // 4 pendulum episodes of 200 steps per update; stops at ≥ 1000 steps.
    assert_eq!(
        a.iter().map(|m| m.global_step).collect::<Vec<_>>(),
        [800, 1600]
    );
    assert!(a.iter().all(|m| m.episodes == 4));
}

/// Every estimator of the family trains (finite losses, parameters move)
/// and exports a blob the runtime evaluates.
#[test]
fn algos_every_variant_trains_and_exports_a_runtime_blob() {
    let mut cfgs = Vec::new();
    for (ret, b) in [
        (ReturnKind::Full, Baseline::None),
        (ReturnKind::Full, Baseline::Mean),
        (ReturnKind::Full, Baseline::Value),
        (ReturnKind::Full, Baseline::Optimal),
        (ReturnKind::RewardToGo, Baseline::None),
        (ReturnKind::RewardToGo, Baseline::Mean),
        (ReturnKind::RewardToGo, Baseline::Value),
    ] {
        cfgs.push(reinforce("cartpole", 300, ret, b));
    }
    let mut boot = reinforce("cartpole", 300, ReturnKind::RewardToGo, Baseline::Value);
    boot.reinforce.value_target = ValueTarget::Bootstrap;
    cfgs.push(boot);
    cfgs.push(TrainConfig {
        algo: Algo::A2c,
        ..tiny_config(4)
    });
    cfgs.push(tiny_config(4));
    for cfg in cfgs {
        let what = format!(
            "{:?} {:?} {:?} {:?} on {}",
            cfg.algo,
            cfg.reinforce.pg_return,
            cfg.reinforce.baseline,
            cfg.reinforce.value_target,
            cfg.env
        );
        let fresh = new_trainer(cfg.clone())
            .expect("trainer")
            .state
            .model
            .params;
        let (rows, t) = run_all(cfg.clone());
        assert!(!rows.is_empty(), "{what}");
        for m in &rows {
            assert!(
                m.pg_loss.is_finite() && m.v_loss.is_finite() && m.grad_norm.is_finite(),
                "{what}: {m:?}"
            );
        }
        let p = t.state.model.critic_range().start;
        assert_ne!(
            fresh[..p],
            t.state.model.params[..p],
            "{what}: actor did not move"
        );
        let critic_moved = fresh[p..] != t.state.model.params[p..];
        let trains_critic =
            cfg.algo != Algo::Reinforce || cfg.reinforce.baseline == Baseline::Value;
        assert_eq!(critic_moved, trains_critic, "{what}: critic");
        for quant in [Quant::Int8, Quant::F32] {
            let blob = export_blob(&t.state, &t.plant, quant).expect("export");
            let rets = plant(&cfg.env)
                .eval_blob(&blob, 2, 1, false)
                .expect("runtime eval");
            assert!(rets.iter().all(|r| r.is_finite()), "{what}: {rets:?}");
        }
    }
}

/// REINFORCE with reward-to-go and a value baseline learns cartpole: the
/// mean return of the last updates is well above the first update's.
#[test]
fn algos_reinforce_learns_cartpole() {
    let cfg = TrainConfig {
        actor_hidden: vec![64, 64],
        critic_hidden: vec![64, 64],
        ..reinforce("cartpole", 30_000, ReturnKind::RewardToGo, Baseline::Value)
    };
    let (rows, _) = run_all(cfg);
    let first = rows[0].episodic_return;
    let tail = &rows[rows.len() - 5..];
    let last = tail.iter().map(|m| m.episodic_return).sum::<f64>() / tail.len() as f64;
    assert!(
        last > 3.0 * first && last > 100.0,
        "first update {first:.1}, last five {last:.1}"
    );
}

#[test]
fn algos_presets_layer_and_bad_combinations_are_refused() {
    let set = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let a2c = resolve(&plant("pendulum"), None, &set(&["algo=\"a2c\""])).expect("a2c preset");
    assert_eq!(
        (a2c.algo, a2c.epochs_and_minibatches(), a2c.num_steps),
        (Algo::A2c, (1, 1), 8)
    );
    // The plant preset's keys survive where the algorithm preset is silent,
    // and the user's --set wins over both.
    assert_eq!(a2c.gamma, 0.95);
    let a2c16 = resolve(
        &plant("pendulum"),
        None,
        &set(&["algo=\"a2c\"", "num_steps=16"]),
    )
    .expect("a2c");
    assert_eq!(a2c16.num_steps, 16);
    let ppo = resolve(&plant("pendulum"), None, &[]).expect("ppo");
    assert_eq!((ppo.algo, ppo.ppo.update_epochs), (Algo::Ppo, 10));
    assert_eq!(ppo.epochs_and_minibatches(), (10, 16));
    // A group key merges into the preset's group.
    let p = resolve(&plant("pendulum"), None, &set(&["ppo.clip_coef=0.1"])).expect("ppo.");
    assert_eq!((p.ppo.clip_coef, p.ppo.target_kl), (0.1, 0.03));

    for (sets, needle) in [
        (
            &["algo=\"a2c\"", "ppo.update_epochs=3"][..],
            "ppo.update_epochs applies to algo ppo only",
        ),
        (&["update_epochs=3"][..], "it is ppo.update_epochs"),
        (
            &["algo=\"reinforce\"", "reinforce.baseline=\"optimal\""][..],
            "reinforce.pg_return = \"full\"",
        ),
        (
            &["reinforce.baseline=\"mean\""][..],
            "reinforce.baseline applies to algo reinforce only",
        ),
        (&["ppo.clip_coef=\"big\""][..], "--set ppo.clip_coef"),
        (
            &["algo=\"sarsa\""][..],
            "expected ppo, a2c, reinforce or trpo",
        ),
        (
            &["trpo.max_kl=0.02"][..],
            "trpo.max_kl applies to algo trpo only",
        ),
        (
            &["algo=\"trpo\"", "trpo.backtrack_coef=1.0"][..],
            "trpo.backtrack_coef",
        ),
        (
            &["algo=\"trpo\"", "trpo.vf_minibatches=7"][..],
            "a divisor of num_envs",
        ),
        (&["n_step=0"][..], "n_step"),
    ] {
        let e = format!(
            "{:#}",
            resolve(&plant("cartpole"), None, &set(sets)).expect_err("refused")
        );
        assert!(e.contains(needle), "{sets:?}: {e}");
    }
}
