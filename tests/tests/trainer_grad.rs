//! Hand-written gradients against central finite differences:
//! `∂L/∂θ_i ≈ (L(θ + h e_i) − L(θ − h e_i)) / 2h`.
//!
//! - `Mlp::backward` (tanh and relu, every layer, and the input gradient)
//!   with the probe loss `L = Σ dout ⊙ f(x; θ)`, so `∂L/∂f = dout`.
//! - `ppo_loss`: the full loss and each term isolated through its
//!   coefficient, with `clip_vloss` and `norm_adv` on and off, on a
//!   minibatch whose ratios lie inside and outside `[1 − ε, 1 + ε]` and
//!   whose values lie inside and outside `V_old ± ε`.
//!
//! The models are f32, so steps are 1e-2 … 1e-3 and tolerances ~1e-2
//! relative; the networks are small and randomly initialised (not the 0.01
//! actor-head gain) so that every layer matters.

use ndarray::Array2;
use tinyppo_runtime::rng::DefaultRng;
use tinyppo_trainer::loss::{ppo_loss, LossCoefs, LossStats, Minibatch, Workspace};
use tinyppo_trainer::mlp::{Act, Cache, Mlp};
use tinyppo_trainer::model::{gaussian_log_prob, ActorCritic};

use crate::trainer_util::{check_grad, normal, pick_per_layer, random_params, rng, uniform};

// ---------------------------------------------------------------------------
// Mlp::backward

fn random_matrix(rng: &mut DefaultRng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| normal(rng))
}

/// `L = Σ dout ⊙ f(x; θ)`, summed in f64, and the hidden activations.
fn probe(mlp: &Mlp, params: &[f32], x: &Array2<f32>, dout: &Array2<f32>) -> (f64, Vec<bool>) {
    let mut cache = Cache::default();
    let y = mlp.forward(params, x.view(), &mut cache);
    let l = y
        .iter()
        .zip(dout.iter())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum();
    let n = cache.acts.len();
    let mask = cache.acts[1..n - 1]
        .iter()
        .flat_map(|a| a.iter().map(|&v| v > 0.0).collect::<Vec<_>>())
        .collect();
    (l, mask)
}

/// Checks parameter and input gradients of a 3 → 6 → 5 → 2 MLP on a batch
/// of 4. For relu, a difference whose two evaluations see a different set
/// of active units has crossed a kink and is not a derivative: such
/// components are skipped (and counted; most must survive).
fn check_mlp(act: Act, h: f32, seed: u64) {
    let mut r = rng(seed);
    let mlp = Mlp::new(3, &[6, 5], 2, act);
    let mut params = random_params(&mlp, 1.0, &mut r);
    let x = random_matrix(&mut r, 4, 3);
    let dout = random_matrix(&mut r, 4, 2);

    let mut cache = Cache::default();
    mlp.forward(&params, x.view(), &mut cache);
    // backward *adds* into the gradient: start from a non-zero buffer to
    // check that, then subtract it again.
    let mut grad = vec![0.25f32; mlp.n_params()];
    mlp.backward(&params, &mut cache, dout.view(), &mut grad);
    grad.iter_mut().for_each(|g| *g -= 0.25);
    let dx = mlp.input_grad(&params, &cache);

    let (_, mask0) = probe(&mlp, &params, &x, &dout);
    let idx = pick_per_layer(&mlp, 0, 12, 5, &mut r);
    let (mut kept, mut numeric, mut skipped) = (Vec::new(), Vec::new(), 0);
    for &i in &idx {
        let p0 = params[i];
        params[i] = p0 + h;
        let (lp, mp) = probe(&mlp, &params, &x, &dout);
        params[i] = p0 - h;
        let (lm, mm) = probe(&mlp, &params, &x, &dout);
        params[i] = p0;
        if mp != mask0 || mm != mask0 {
            skipped += 1;
            continue;
        }
        kept.push(i);
        numeric.push((lp - lm) / (2.0 * h as f64));
    }
    assert!(
        skipped * 5 <= idx.len(),
        "{act:?}: {skipped} of {} differences crossed a relu kink",
        idx.len()
    );
    check_grad(
        &format!("Mlp::backward {act:?} params"),
        &kept,
        &grad,
        &numeric,
        1e-2,
        2e-3,
    );

    // Input gradient, every element.
    let mut xs = x.clone();
    let mut numeric = Vec::new();
    let all: Vec<usize> = (0..x.len()).collect();
    for k in 0..x.len() {
        let (b, c) = (k / 3, k % 3);
        let x0 = xs[[b, c]];
        xs[[b, c]] = x0 + h;
        let (lp, mp) = probe(&mlp, &params, &xs, &dout);
        xs[[b, c]] = x0 - h;
        let (lm, mm) = probe(&mlp, &params, &xs, &dout);
        xs[[b, c]] = x0;
        assert!(
            mp == mask0 && mm == mask0,
            "input difference crossed a relu kink; pick another seed"
        );
        numeric.push((lp - lm) / (2.0 * h as f64));
    }
    let dx: Vec<f32> = dx.iter().copied().collect();
    check_grad(
        &format!("Mlp::input_grad {act:?}"),
        &all,
        &dx,
        &numeric,
        1e-2,
        2e-3,
    );
}

#[test]
fn trainer_mlp_backward_matches_finite_differences_tanh() {
    check_mlp(Act::Tanh, 1e-2, 11);
}

#[test]
fn trainer_mlp_backward_matches_finite_differences_relu() {
    // relu is piecewise linear: away from kinks the difference quotient is
    // exact up to round-off, so a small step is best.
    check_mlp(Act::Relu, 1e-3, 12);
}

#[test]
fn trainer_mlp_backward_accumulates_over_calls() {
    // Two backward passes into one buffer = twice one pass (the Trainer
    // relies on "adds into grad" after a grad.fill(0)).
    let mut r = rng(13);
    let mlp = Mlp::new(3, &[4], 2, Act::Tanh);
    let params = random_params(&mlp, 1.0, &mut r);
    let x = random_matrix(&mut r, 5, 3);
    let dout = random_matrix(&mut r, 5, 2);
    let mut cache = Cache::default();
    mlp.forward(&params, x.view(), &mut cache);
    let mut once = vec![0.0f32; mlp.n_params()];
    mlp.backward(&params, &mut cache, dout.view(), &mut once);
    let mut twice = vec![0.0f32; mlp.n_params()];
    mlp.backward(&params, &mut cache, dout.view(), &mut twice);
    mlp.backward(&params, &mut cache, dout.view(), &mut twice);
    for (a, b) in once.iter().zip(&twice) {
        assert!((2.0 * a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

// ---------------------------------------------------------------------------
// ppo_loss

/// A model and a minibatch with every branch of the loss represented.
pub struct Case {
    pub model: ActorCritic,
    pub obs: Array2<f32>,
    pub actions: Array2<f32>,
    pub logp_old: Vec<f32>,
    pub adv: Vec<f32>,
    pub returns: Vec<f32>,
    pub values_old: Vec<f32>,
}

impl Case {
    pub fn mb(&self) -> Minibatch<'_> {
        Minibatch {
            obs: self.obs.view(),
            actions: self.actions.view(),
            logp_old: &self.logp_old,
            adv: &self.adv,
            returns: &self.returns,
            values_old: &self.values_old,
        }
    }

    /// Loss stats and the gradient (from zero).
    pub fn eval(&self, c: &LossCoefs) -> (LossStats, Vec<f32>) {
        let mut grad = vec![0.0f32; self.model.params.len()];
        let st = ppo_loss(
            &self.model,
            &self.mb(),
            c,
            &mut Workspace::default(),
            Some(&mut grad),
        );
        (st, grad)
    }

    fn loss(&self, c: &LossCoefs) -> LossStats {
        ppo_loss(&self.model, &self.mb(), c, &mut Workspace::default(), None)
    }
}

/// A random actor-critic (obs 3, act 2, actor 3 → 6 → 5 → 2, critic
/// 3 → 7 → 4 → 1) with all parameters re-randomised.
pub fn random_model(r: &mut DefaultRng) -> ActorCritic {
    let mut m = ActorCritic::new(3, 2, &[6, 5], &[7, 4], Act::Tanh, -0.2, r);
    let actor = random_params(&m.actor, 1.0, r);
    let critic = random_params(&m.critic, 1.0, r);
    let (ar, lr, cr) = (m.actor_range(), m.log_std_range(), m.critic_range());
    m.params[ar].copy_from_slice(&actor);
    for v in &mut m.params[lr] {
        *v = uniform(r, -0.5, 0.3);
    }
    m.params[cr].copy_from_slice(&critic);
    m
}

/// Means `μ(x)` and values `V(x)` of `model` on `obs`.
pub fn heads(model: &ActorCritic, obs: &Array2<f32>) -> (Array2<f32>, Vec<f32>) {
    let mu = model
        .actor
        .forward(model.actor_params(), obs.view(), &mut Cache::default())
        .to_owned();
    let v = model
        .critic
        .forward(model.critic_params(), obs.view(), &mut Cache::default())
        .column(0)
        .to_vec();
    (mu, v)
}

/// 18 samples. Log-ratios cycle through targets 0.07 or more away from the
/// clip boundaries `log 0.8 = −0.223` and `log 1.2 = 0.182` (so a
/// difference step cannot cross them), advantages change sign every two
/// samples, and `V_old` is within ±0.1 of `V` (value clip inactive) or
/// 0.3–0.5 away (active), with returns placed so that the clipped and
/// unclipped squared errors differ clearly. [`coverage`] checks that every
/// branch occurs.
fn make_case(seed: u64, clip: f32) -> Case {
    let mut r = rng(seed);
    let model = random_model(&mut r);
    let m = 18;
    let obs = Array2::from_shape_fn((m, 3), |_| normal(&mut r));
    let (mu, v) = heads(&model, &obs);
    let log_std = model.log_std().to_vec();
    let actions = Array2::from_shape_fn((m, 2), |(i, j)| {
        mu[[i, j]] + log_std[j].exp() * normal(&mut r)
    });
    let targets = [-0.6f32, -0.33, -0.08, 0.0, 0.08, 0.45];
    let (mut logp_old, mut adv, mut returns, mut values_old) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..m {
        let u = actions.row(i).to_vec();
        let lp = gaussian_log_prob(&u, &mu.row(i).to_vec(), &log_std);
        let lr = targets[i % 6] + uniform(&mut r, -0.02, 0.02);
        logp_old.push(lp - lr);
        // Period 4 against the ratio targets' period 6: every combination
        // of sign and ratio regime occurs.
        let sign = if i % 4 < 2 { 1.0 } else { -1.0 };
        adv.push(sign * uniform(&mut r, 0.3, 2.0));
        let off = match i % 4 {
            0 => uniform(&mut r, -0.1, 0.1),
            1 => uniform(&mut r, 0.3, 0.5),
            2 => -uniform(&mut r, 0.3, 0.5),
            _ => uniform(&mut r, 0.3, 0.5),
        };
        let vold = v[i] + off;
        // Outside the value clip range, alternate the return between the
        // far side of V (the clipped error is larger: no gradient) and
        // beyond V_old's side (the unclipped error is larger); either way
        // the two squared errors differ by a clear margin.
        let dist = 0.3 + (1.5 * normal(&mut r)).abs();
        let ret = if off.abs() < clip || (i / 4) % 2 == 0 {
            v[i] - off.signum() * dist
        } else {
            v[i] + off.signum() * dist
        };
        values_old.push(vold);
        returns.push(ret);
    }
    Case {
        model,
        obs,
        actions,
        logp_old,
        adv,
        returns,
        values_old,
    }
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

/// Central differences of the total loss at the parameters `idx`. Asserts
/// that no step changes which samples are ratio-clipped (`clipfrac`), i.e.
/// no difference straddles a kink of the clipped objective.
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

/// ~50 parameters: weights and biases of every actor and critic layer and
/// every log-std.
fn param_subset(model: &ActorCritic, r: &mut DefaultRng) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let actor = pick_per_layer(&model.actor, model.actor_range().start, 6, 3, r);
    let log_std: Vec<usize> = model.log_std_range().collect();
    let critic = pick_per_layer(&model.critic, model.critic_range().start, 6, 2, r);
    (actor, log_std, critic)
}

/// Asserts that the minibatch exercises every branch of the loss: samples
/// inside the ratio clip range, outside it with the clip active (Â > 0,
/// r > 1+ε or Â < 0, r < 1−ε: no gradient) and outside it with the clip
/// inactive; and value samples with the value clip inactive, active and
/// larger (no gradient), and active but smaller.
fn coverage(case: &Case, norm_adv: bool, eps: f32) {
    let (mu, v) = heads(&case.model, &case.obs);
    let m = case.adv.len();
    let mean = case.adv.iter().sum::<f32>() / m as f32;
    let std = (case.adv.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / (m - 1) as f32).sqrt();
    let mut counts = [0usize; 6];
    for (i, &vi) in v.iter().enumerate() {
        let lp = gaussian_log_prob(
            &case.actions.row(i).to_vec(),
            &mu.row(i).to_vec(),
            case.model.log_std(),
        );
        let r = (lp - case.logp_old[i]).exp();
        let a = if norm_adv {
            (case.adv[i] - mean) / std
        } else {
            case.adv[i]
        };
        let k = if (r - 1.0).abs() <= eps {
            0
        } else if (a > 0.0 && r > 1.0 + eps) || (a < 0.0 && r < 1.0 - eps) {
            1
        } else {
            2
        };
        counts[k] += 1;
        let (vold, ret) = (case.values_old[i], case.returns[i]);
        let vc = vold + (vi - vold).clamp(-eps, eps);
        let k = if (vi - vold).abs() < eps {
            3
        } else if (vc - ret).powi(2) > (vi - ret).powi(2) {
            4
        } else {
            5
        };
        counts[k] += 1;
    }
    assert!(
        counts.iter().all(|&c| c >= 2),
        "branch counts [ratio inside, clip active, clip inactive, \
         value inside, value clip active, value clip inactive] = {counts:?}"
    );
}

const H: f32 = 5e-3;
const RTOL: f64 = 2e-2;
const ATOL: f64 = 5e-3;

fn check_loss_terms(clip_vloss: bool, norm_adv: bool, seed: u64) {
    let mut case = make_case(seed, 0.2);
    let mut r = rng(seed + 100);
    let (actor, log_std, critic) = param_subset(&case.model, &mut r);
    let policy_params: Vec<usize> = actor.iter().chain(&log_std).copied().collect();
    let tag = format!("clip_vloss={clip_vloss} norm_adv={norm_adv}");

    coverage(&case, norm_adv, 0.2);

    // Policy term alone (c_V = c_ent = 0): gradient on actor and log σ,
    // exactly none on the critic.
    let c_pg = coefs(clip_vloss, norm_adv, 0.0, 0.0);
    let (st_pg, g_pg) = case.eval(&c_pg);
    assert_eq!(st_pg.total, st_pg.pg_loss);
    assert!(
        g_pg[case.model.critic_range()].iter().all(|&g| g == 0.0),
        "{tag}: critic gradient with vf_coef = 0"
    );
    assert!(g_pg[case.model.log_std_range()].iter().all(|&g| g != 0.0));
    let num = numeric_grad(&mut case, &c_pg, &policy_params, H);
    check_grad(
        &format!("ppo_loss policy term ({tag})"),
        &policy_params,
        &g_pg,
        &num,
        RTOL,
        ATOL,
    );

    // Value term: the critic only sees c_V·L^V; the actor's gradient does
    // not depend on c_V, and the critic's is linear in it.
    let c_v = coefs(clip_vloss, norm_adv, 0.0, 1.0);
    let (_, g_v) = case.eval(&c_v);
    let num = numeric_grad(&mut case, &c_v, &critic, H);
    check_grad(
        &format!("ppo_loss value term ({tag})"),
        &critic,
        &g_v,
        &num,
        RTOL,
        ATOL,
    );
    let (_, g_half) = case.eval(&coefs(clip_vloss, norm_adv, 0.0, 0.5));
    let (ar, lr, cr) = (
        case.model.actor_range(),
        case.model.log_std_range(),
        case.model.critic_range(),
    );
    assert_eq!(
        g_v[ar.clone()],
        g_pg[ar.clone()],
        "{tag}: vf_coef leaks into the actor"
    );
    assert_eq!(g_v[lr.clone()], g_pg[lr.clone()]);
    for (a, b) in g_v[cr.clone()].iter().zip(&g_half[cr.clone()]) {
        assert!(
            (a - 2.0 * b).abs() <= 1e-6 * (1.0 + a.abs()),
            "{a} vs 2·{b}"
        );
    }
    if clip_vloss {
        // Samples with an active, larger clipped error pass no gradient:
        // check it on one such sample against the unclipped loss.
        let st_c = case.loss(&c_v);
        let st_u = case.loss(&coefs(false, norm_adv, 0.0, 1.0));
        assert!(
            st_c.v_loss > st_u.v_loss,
            "{tag}: the clipped value loss is a max of two terms"
        );
    }

    // Entropy term: ∂(−c_ent·H)/∂log σ_j = −c_ent, nothing else changes.
    let c_ent = coefs(clip_vloss, norm_adv, 0.05, 0.0);
    let (st_e, g_e) = case.eval(&c_ent);
    assert!((st_e.total - (st_pg.pg_loss - 0.05 * st_e.entropy)).abs() < 1e-6);
    for &j in &log_std {
        assert!(
            (g_e[j] - (g_pg[j] - 0.05)).abs() < 1e-6,
            "{tag}: entropy gradient on log σ"
        );
    }
    assert_eq!(g_e[ar.clone()], g_pg[ar.clone()]);
    assert_eq!(g_e[cr.clone()], g_pg[cr.clone()]);
    let num = numeric_grad(&mut case, &c_ent, &log_std, H);
    check_grad(
        &format!("ppo_loss entropy term ({tag})"),
        &log_std,
        &g_e,
        &num,
        RTOL,
        ATOL,
    );

    // Everything at once (CleanRL-like coefficients).
    let c_all = coefs(clip_vloss, norm_adv, 0.01, 0.5);
    let (_, g_all) = case.eval(&c_all);
    let all: Vec<usize> = actor
        .iter()
        .chain(&log_std)
        .chain(&critic)
        .copied()
        .collect();
    let num = numeric_grad(&mut case, &c_all, &all, H);
    check_grad(
        &format!("ppo_loss total ({tag})"),
        &all,
        &g_all,
        &num,
        RTOL,
        ATOL,
    );
}

#[test]
fn trainer_ppo_loss_gradient_plain() {
    check_loss_terms(false, false, 21);
}

#[test]
fn trainer_ppo_loss_gradient_clip_vloss() {
    check_loss_terms(true, false, 22);
}

#[test]
fn trainer_ppo_loss_gradient_norm_adv() {
    check_loss_terms(false, true, 23);
}

#[test]
fn trainer_ppo_loss_gradient_clip_vloss_norm_adv() {
    check_loss_terms(true, true, 24);
}

// ---------------------------------------------------------------------------
// The clipped surrogate passes no gradient where the clip is active.

/// A one-sample minibatch whose ratio is `exp(logratio)` and advantage `adv`.
fn single(adv: f32, logratio: f32, seed: u64) -> Case {
    let mut r = rng(seed);
    let model = random_model(&mut r);
    let obs = Array2::from_shape_fn((1, 3), |_| normal(&mut r));
    let (mu, v) = heads(&model, &obs);
    let log_std = model.log_std().to_vec();
    let actions = Array2::from_shape_fn((1, 2), |(_, j)| mu[[0, j]] + 0.7 * log_std[j].exp());
    let lp = gaussian_log_prob(&actions.row(0).to_vec(), &mu.row(0).to_vec(), &log_std);
    Case {
        model,
        obs,
        actions,
        logp_old: vec![lp - logratio],
        adv: vec![adv],
        returns: vec![v[0] + 1.0],
        values_old: vec![v[0]],
    }
}

#[test]
fn trainer_clipped_objective_has_zero_gradient_when_clip_is_active() {
    let eps = 0.2f32;
    // (Â, r, clip active?) — active exactly when the clipped term is the
    // larger (pessimistic) one: Â > 0 with r > 1+ε, Â < 0 with r < 1−ε.
    let cases = [
        (1.5f32, 1.5f32, true),
        (-0.7, 0.6, true),
        (1.5, 1.05, false),
        (-0.7, 0.95, false),
        (1.5, 0.6, false),  // r < 1−ε but Â > 0: unclipped term is the max
        (-0.7, 1.5, false), // r > 1+ε but Â < 0: likewise
    ];
    for (k, &(adv, ratio, active)) in cases.iter().enumerate() {
        for norm_adv in [false, true] {
            let case = single(adv, ratio.ln(), 30 + k as u64);
            let c = LossCoefs {
                clip_coef: eps,
                clip_vloss: true,
                ent_coef: 0.0,
                vf_coef: 0.0,
                norm_adv,
            };
            let (st, g) = case.eval(&c);
            let policy = &g[..case.model.critic_range().start];
            let nonzero = policy.iter().filter(|&&v| v != 0.0).count();
            let expected_loss = -adv * ratio.min(1.0 + eps).max(1.0 - eps);
            if active {
                assert_eq!(
                    nonzero, 0,
                    "Â = {adv}, r = {ratio}: clipped sample moved the policy"
                );
                assert!(
                    (st.pg_loss - expected_loss).abs() < 1e-5,
                    "pg_loss {} vs −Â·clip(r) = {expected_loss}",
                    st.pg_loss
                );
                assert_eq!(st.clipfrac, 1.0);
            } else {
                assert!(
                    nonzero > policy.len() / 2,
                    "Â = {adv}, r = {ratio}: only {nonzero} non-zero policy gradients"
                );
                assert!((st.pg_loss - (-adv * ratio)).abs() < 1e-4 * (1.0 + st.pg_loss.abs()));
                // d L/d log σ_j = −Â r ((u−μ)²/σ² − 1) with (u−μ)/σ = 0.7.
                let want = -adv * ratio * (0.49 - 1.0);
                for &gl in &g[case.model.log_std_range()] {
                    assert!((gl - want).abs() < 1e-4, "log σ gradient {gl} vs {want}");
                }
            }
            assert!(g[case.model.critic_range()].iter().all(|&v| v == 0.0));
        }
    }
}

#[test]
fn trainer_ppo_loss_diagnostics() {
    // approx_kl = mean((r − 1) − log r), old_approx_kl = mean(−log r),
    // clipfrac = mean(|r − 1| > ε), on two samples with r = e^{0.5}, e^{−0.1}.
    let mut case = single(1.0, 0.5, 40);
    let other = single(-1.0, -0.1, 40);
    case.obs = ndarray::concatenate![ndarray::Axis(0), case.obs, other.obs];
    case.actions = ndarray::concatenate![ndarray::Axis(0), case.actions, other.actions];
    case.logp_old.extend(&other.logp_old);
    case.adv.extend(&other.adv);
    case.returns.extend(&other.returns);
    case.values_old.extend(&other.values_old);
    let st = case.loss(&coefs(true, false, 0.0, 0.5));
    let (r1, r2) = (0.5f64.exp(), (-0.1f64).exp());
    let kl = ((r1 - 1.0 - 0.5) + (r2 - 1.0 + 0.1)) / 2.0;
    assert!(
        (st.approx_kl as f64 - kl).abs() < 1e-5,
        "{} vs {kl}",
        st.approx_kl
    );
    assert!((st.old_approx_kl as f64 - (-0.5 + 0.1) / 2.0).abs() < 1e-5);
    assert_eq!(st.clipfrac, 0.5);
}
