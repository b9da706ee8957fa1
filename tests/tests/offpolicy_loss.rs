//! The decoupled PPO loss (`offpolicy::decoupled_ppo_loss`):
//!
//! - with `π_prox = μ` and `w ≡ 1` it is the standard PPO loss
//!   (`loss::ppo_loss`) — value, diagnostics and gradient, bit for bit, with
//!   advantage normalization and value clipping on and off, serial and on
//!   two threads;
//! - its gradient matches central finite differences with weights in
//!   `[0.2, 2.5]`, ratios inside and outside the clip range and advantages
//!   of both signs (each term isolated through its coefficient, and the
//!   total);
//! - the policy gradient is linear in the weights.

use ndarray::Array2;
use tinyppo_trainer::loss::{ppo_loss, LossCoefs, LossStats, Minibatch, Workspace};
use tinyppo_trainer::model::{gaussian_log_prob, ActorCritic};
use tinyppo_trainer::offpolicy::decoupled_ppo_loss;

use crate::trainer_grad::{heads, random_model};
use crate::trainer_util::{check_grad, normal, pick_per_layer, rng, uniform};

struct Case {
    model: ActorCritic,
    obs: Array2<f32>,
    actions: Array2<f32>,
    logp_anchor: Vec<f32>,
    adv: Vec<f32>,
    returns: Vec<f32>,
    values_old: Vec<f32>,
    weights: Vec<f32>,
}

impl Case {
    fn mb(&self) -> Minibatch<'_> {
        Minibatch {
            obs: self.obs.view(),
            actions: self.actions.view(),
            logp_old: &self.logp_anchor,
            adv: &self.adv,
            returns: &self.returns,
            values_old: &self.values_old,
        }
    }

    fn decoupled(&self, c: &LossCoefs, parallel: bool) -> (LossStats, Vec<f32>) {
        let mut g = vec![0.0f32; self.model.params.len()];
        let st = decoupled_ppo_loss(
            &self.model,
            &self.mb(),
            &self.weights,
            c,
            &mut Workspace::new(parallel),
            Some(&mut g),
        );
        (st, g)
    }

    fn loss(&self, c: &LossCoefs) -> LossStats {
        decoupled_ppo_loss(
            &self.model,
            &self.mb(),
            &self.weights,
            c,
            &mut Workspace::default(),
            None,
        )
    }
}

/// 24 samples; log-ratios `log π_θ − log(anchor)` cycle through values at
/// least 0.07 from the clip boundaries `log 0.8`, `log 1.2`; advantages
/// change sign every two samples; `V_old` within ±0.1 of `V`.
fn make_case(seed: u64) -> Case {
    let mut r = rng(seed);
    let model = random_model(&mut r);
    let m = 24;
    let obs = Array2::from_shape_fn((m, 3), |_| normal(&mut r));
    let (mu, v) = heads(&model, &obs);
    let log_std = model.log_std().to_vec();
    let actions = Array2::from_shape_fn((m, 2), |(i, j)| {
        mu[[i, j]] + log_std[j].exp() * normal(&mut r)
    });
    let targets = [-0.6f32, -0.33, -0.08, 0.0, 0.08, 0.45];
    let mut c = Case {
        model,
        obs,
        actions,
        logp_anchor: Vec::new(),
        adv: Vec::new(),
        returns: Vec::new(),
        values_old: Vec::new(),
        weights: Vec::new(),
    };
    for i in 0..m {
        let u = c.actions.row(i).to_vec();
        let lp = gaussian_log_prob(&u, &mu.row(i).to_vec(), &log_std);
        c.logp_anchor
            .push(lp - targets[i % 6] - uniform(&mut r, -0.02, 0.02));
        let sign = if i % 4 < 2 { 1.0 } else { -1.0 };
        c.adv.push(sign * uniform(&mut r, 0.3, 2.0));
        c.values_old.push(v[i] + uniform(&mut r, -0.1, 0.1));
        c.returns.push(v[i] + normal(&mut r));
        c.weights.push(uniform(&mut r, 0.2, 2.5));
    }
    c
}

fn coefs(clip_vloss: bool, norm_adv: bool, ent_coef: f32, vf_coef: f32) -> LossCoefs {
    LossCoefs {
        clip_coef: 0.2,
        clip_vloss,
        ent_coef,
        vf_coef,
        norm_adv,
    }
}

fn same_stats(a: &LossStats, b: &LossStats) -> bool {
    [
        (a.total, b.total),
        (a.pg_loss, b.pg_loss),
        (a.v_loss, b.v_loss),
        (a.entropy, b.entropy),
        (a.approx_kl, b.approx_kl),
        (a.old_approx_kl, b.old_approx_kl),
        (a.clipfrac, b.clipfrac),
    ]
    .iter()
    .all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn offpolicy_decoupled_loss_with_prox_equal_mu_is_the_ppo_loss() {
    for seed in [1u64, 2] {
        let mut case = make_case(seed);
        // π_prox = μ: the anchor is the behaviour log-prob, and w = π_prox/μ = 1.
        case.weights.iter_mut().for_each(|w| *w = 1.0);
        for clip_vloss in [false, true] {
            for norm_adv in [false, true] {
                let c = coefs(clip_vloss, norm_adv, 0.01, 0.5);
                let mut g_ppo = vec![0.0f32; case.model.params.len()];
                let st_ppo = ppo_loss(
                    &case.model,
                    &case.mb(),
                    &c,
                    &mut Workspace::default(),
                    Some(&mut g_ppo),
                );
                assert!(st_ppo.clipfrac > 0.2 && st_ppo.clipfrac < 0.8);
                for parallel in [false, true] {
                    let (st, g) = case.decoupled(&c, parallel);
                    let tag = format!("seed {seed} clip_vloss {clip_vloss} norm_adv {norm_adv}");
                    assert!(same_stats(&st, &st_ppo), "{tag}: {st:?} vs {st_ppo:?}");
                    assert_eq!(g, g_ppo, "{tag}: gradients differ");
                }
            }
        }
    }
}

/// Central differences of the total loss; asserts no step changes which
/// samples are ratio-clipped.
fn numeric_grad(case: &mut Case, c: &LossCoefs, idx: &[usize], h: f32) -> Vec<f64> {
    let base = case.loss(c).clipfrac;
    idx.iter()
        .map(|&i| {
            let p0 = case.model.params[i];
            case.model.params[i] = p0 + h;
            let lp = case.loss(c);
            case.model.params[i] = p0 - h;
            let lm = case.loss(c);
            case.model.params[i] = p0;
            assert!(
                lp.clipfrac == base && lm.clipfrac == base,
                "a difference step at θ[{i}] crossed a clip boundary"
            );
            (lp.total as f64 - lm.total as f64) / (2.0 * h as f64)
        })
        .collect()
}

#[test]
fn offpolicy_decoupled_loss_gradient_matches_finite_differences() {
    const H: f32 = 5e-3;
    for (seed, norm_adv) in [(3u64, false), (4, true)] {
        let mut case = make_case(seed);
        let mut r = rng(seed + 50);
        let m = &case.model;
        let actor = pick_per_layer(&m.actor, m.actor_range().start, 6, 3, &mut r);
        let log_std: Vec<usize> = m.log_std_range().collect();
        let critic = pick_per_layer(&m.critic, m.critic_range().start, 6, 2, &mut r);
        let policy: Vec<usize> = actor.iter().chain(&log_std).copied().collect();
        let all: Vec<usize> = policy.iter().chain(&critic).copied().collect();

        // Policy term alone: nothing flows into the critic.
        let c = coefs(false, norm_adv, 0.0, 0.0);
        let (st, g) = case.decoupled(&c, false);
        assert_eq!(st.total, st.pg_loss);
        assert!(g[case.model.critic_range()].iter().all(|&x| x == 0.0));
        let num = numeric_grad(&mut case, &c, &policy, H);
        check_grad(
            &format!("decoupled policy term (norm_adv {norm_adv})"),
            &policy,
            &g,
            &num,
            2e-2,
            5e-3,
        );

        // Everything at once, value clipping on.
        let c = coefs(true, norm_adv, 0.05, 0.5);
        let (_, g) = case.decoupled(&c, false);
        let num = numeric_grad(&mut case, &c, &all, H);
        check_grad(
            &format!("decoupled total (norm_adv {norm_adv})"),
            &all,
            &g,
            &num,
            2e-2,
            5e-3,
        );
    }
}

#[test]
fn offpolicy_decoupled_policy_gradient_is_linear_in_the_weights() {
    let mut case = make_case(5);
    let c = coefs(false, true, 0.0, 0.0);
    let (st1, g1) = case.decoupled(&c, false);
    case.weights.iter_mut().for_each(|w| *w *= 3.0);
    let (st3, g3) = case.decoupled(&c, false);
    assert!((st3.pg_loss - 3.0 * st1.pg_loss).abs() <= 1e-5 * (1.0 + st1.pg_loss.abs()));
    for (a, b) in g1.iter().zip(&g3) {
        assert!((3.0 * a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} {b}");
    }
    // Zero weights: no policy gradient at all (only the entropy's, here 0).
    case.weights.iter_mut().for_each(|w| *w = 0.0);
    let (st0, g0) = case.decoupled(&c, false);
    assert_eq!(st0.pg_loss, 0.0);
    assert!(g0.iter().all(|&x| x == 0.0));
}
