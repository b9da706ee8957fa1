//! Trainer vs runtime: the mean action the trainer computes (f32 `Mlp`
//! forward on `normalize_obs` of the observation) against the exported
//! blob run by `tinyppo_runtime::Policy`.
//!
//! - f32 blob: the same arithmetic up to summation order (both use
//!   `tinyppo_runtime::math::tanh`): ≤ 1e-5 absolute on O(1) outputs.
//! - int8 blob: within the analytic bound, propagated layer by layer from
//!   the float activations `x` of the layer input and the bound `e` on how
//!   far the int8 path's input is from them (e = 0 for the observation,
//!   which both normalize identically in f32), with `h` the input
//!   quantization's own error: `h = s_x/2`, `s_x ≤ max_c (|x_c| + e_c)/127`
//!   for the runtime's dynamic input scale (first layer, after relu), and
//!   `h = 1/254 + 6e-7` after tanh (the runtime rounds 127·tanh with the
//!   exact tanh; the trainer's tanh is within 5e-7 of it):
//!   `|Δy_r| ≤ (s_r/2)·Σ_c (|x_c| + e_c + h) + Σ_c |w_rc|·(e_c + h)`
//!   (weight rounding times the quantized input, plus the weights times the
//!   input error and input rounding), then `e ← |Δy|` through tanh or relu
//!   (both 1-Lipschitz). A small f32 slack covers float round-off.

use ndarray::Array2;
use tinyppo_runtime::Policy;
use tinyppo_trainer::algo::Trainer;
use tinyppo_trainer::export::{export_blob, quantize_rows, Quant};
use tinyppo_trainer::mlp::{Act, Cache};
use tinyppo_trainer::normalize::normalize_obs;

use crate::trainer_util::{new_trainer, random_params, rng, tiny_config, uniform};

/// A trainer whose actor is re-randomised (the 0.01 head gain would make
/// the mean ~0 and the comparison vacuous) and whose observation
/// statistics are non-trivial.
fn trainer(act: Act, seed: u64) -> Trainer {
    let mut cfg = tiny_config(seed);
    cfg.actor_hidden = vec![64, 48];
    cfg.activation = act;
    let mut t = new_trainer(cfg).expect("trainer");
    let mut r = rng(seed);
    let m = &mut t.state.model;
    let actor = random_params(&m.actor, 1.0, &mut r);
    let (ar, lr) = (m.actor_range(), m.log_std_range());
    m.params[ar].copy_from_slice(&actor);
    m.params[lr].fill(-0.7);
    let rms = &mut t.state.obs_rms;
    rms.mean = vec![0.3, -0.2, 1.0];
    rms.var = vec![0.5, 2.0, 9.0];
    rms.count = 1000.0;
    t
}

/// Pendulum-like observations (cos, sin, θ̇ ∈ ±8), some far enough out to
/// hit the ±obs_clip clip after normalization.
fn observations(n: usize, seed: u64) -> Vec<[f32; 3]> {
    let mut r = rng(seed);
    (0..n)
        .map(|k| {
            if k % 10 == 9 {
                [40.0, -60.0, 200.0]
            } else {
                let th = uniform(&mut r, -3.2, 3.2);
                [th.cos(), th.sin(), uniform(&mut r, -8.0, 8.0)]
            }
        })
        .collect()
}

/// The trainer's mean actions and the float activations of every layer
/// input (normalized obs, hidden activations), as f64 rows.
fn trainer_forward(t: &Trainer, obs: &[[f32; 3]]) -> (Vec<f32>, Vec<Array2<f32>>) {
    let (mean, inv) = t.state.obs_rms.export();
    let mut x: Vec<f32> = obs.iter().flatten().copied().collect();
    for row in x.chunks_mut(3) {
        normalize_obs(row, &mean, &inv, t.state.cfg.obs_clip);
    }
    let x = Array2::from_shape_vec((obs.len(), 3), x).expect("rows");
    let m = &t.state.model;
    let mut cache = Cache::default();
    let mu = m
        .actor
        .forward(m.actor_params(), x.view(), &mut cache)
        .column(0)
        .to_vec();
    let n = cache.acts.len();
    (mu, cache.acts[..n - 1].to_vec())
}

/// The analytic int8 error bound on the output for sample `i`.
fn int8_bound(t: &Trainer, acts: &[Array2<f32>], i: usize) -> f64 {
    let m = &t.state.model;
    let params = m.actor_params();
    let mut e: Vec<f64> = vec![0.0; m.obs_dim()];
    for (l, a) in acts.iter().enumerate() {
        let (ow, ob, rows, cols) = m.actor.layer_offsets(l);
        let w = &params[ow..ob];
        let (_, scales) = quantize_rows(w, rows, cols);
        let x: Vec<f64> = a.row(i).iter().map(|&v| (v as f64).abs()).collect();
        let h = if l > 0 && m.actor.act == Act::Tanh {
            1.0 / 254.0 + 6e-7
        } else {
            x.iter().zip(&e).map(|(x, e)| x + e).fold(0.0, f64::max) / 254.0
        };
        e = (0..rows)
            .map(|rr| {
                let row = &w[rr * cols..(rr + 1) * cols];
                let s_r = scales[rr] as f64;
                let weight_err: f64 = (0..cols).map(|c| s_r / 2.0 * (x[c] + e[c] + h)).sum();
                let input_err: f64 = (0..cols).map(|c| (row[c] as f64).abs() * (e[c] + h)).sum();
                weight_err + input_err
            })
            .collect();
    }
    e[0]
}

/// The int8 forward pass re-implemented from the trainer's own
/// quantization (`quantize_rows`) and the runtime's documented arithmetic
/// (`docs/FORMAT.md`, "Inference semantics"): the first layer's input
/// quantized with `s_x = max|x|/127`, `p = rne(x·127/max|x|)` (ties to
/// even); after a tanh layer `p = rne(127·tanh(y))` with the exact tanh
/// (f64 decides it for every f32 `y`) and `s_x = 1/127`; after relu the
/// dynamic scale again; exact integer dot products,
/// `y_r = acc_r·(s_r·s_x) + b_r`. Same operations in the same order as the
/// runtime, so the results agree to the bit in practice; this catches an
/// export that stores wrong scales or rows, which the loose worst-case
/// bound could miss.
fn int8_simulated(t: &Trainer, x0: &[f32]) -> f32 {
    let m = &t.state.model;
    let params = m.actor_params();
    let dynamic = |x: &[f32]| -> (Vec<i32>, f32) {
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        if amax < 2f32.powi(-100) {
            (vec![0; x.len()], 0.0)
        } else {
            let inv = 127.0 / amax;
            let p = x
                .iter()
                .map(|&v| (v * inv).round_ties_even() as i32)
                .collect();
            (p, amax / 127.0)
        }
    };
    let (mut p, mut s_x) = dynamic(x0);
    let n = m.actor.n_layers();
    let mut y = Vec::new();
    for l in 0..n {
        let (ow, ob, rows, cols) = m.actor.layer_offsets(l);
        let (q, scales) = quantize_rows(&params[ow..ob], rows, cols);
        y = (0..rows)
            .map(|r| {
                let acc: i32 = (0..cols).map(|c| q[r * cols + c] as i32 * p[c]).sum();
                acc as f32 * (scales[r] * s_x) + params[ob + r]
            })
            .collect::<Vec<f32>>();
        if l + 1 < n {
            (p, s_x) = match m.actor.act {
                Act::Tanh => (
                    y.iter()
                        .map(|&v| (127.0 * (v as f64).tanh()).round_ties_even() as i32)
                        .collect(),
                    1.0 / 127.0,
                ),
                Act::Relu => dynamic(&y.iter().map(|v| v.max(0.0)).collect::<Vec<_>>()),
            };
        }
    }
    y[0]
}

fn check_parity(act: Act, seed: u64) {
    let t = trainer(act, seed);
    let obs = observations(200, seed + 1);
    let (mu, acts) = trainer_forward(&t, &obs);
    let spread = mu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        spread > 0.3,
        "outputs too small to compare: max |μ| = {spread}"
    );

    let f32_blob = export_blob(&t.state, &t.plant, Quant::F32).expect("export f32");
    let p = Policy::<3, 1, 256>::from_bytes(&f32_blob).expect("f32 blob loads");
    assert_eq!(p.log_std(), &[-0.7]);
    let mut worst = 0.0f32;
    for (o, &want) in obs.iter().zip(&mu) {
        let got = p.mean(o).expect("finite obs")[0];
        worst = worst.max((got - want).abs());
    }
    println!(
        "parity {act:?} f32 blob: max |μ_runtime − μ_trainer| = {worst:.3e} (max |μ| {spread:.3})"
    );
    assert!(worst <= 1e-5, "{act:?} f32 blob: error {worst}");

    let i8_blob = export_blob(&t.state, &t.plant, Quant::Int8).expect("export int8");
    let p = Policy::<3, 1, 256>::from_bytes(&i8_blob).expect("int8 blob loads");
    let (mut worst_err, mut worst_ratio, mut worst_bound) = (0.0f64, 0.0f64, 0.0f64);
    for (i, (o, &want)) in obs.iter().zip(&mu).enumerate() {
        let got = p.mean(o).expect("finite obs")[0];
        let err = (got as f64 - want as f64).abs();
        let bound = int8_bound(&t, &acts, i);
        worst_err = worst_err.max(err);
        worst_bound = worst_bound.max(bound);
        worst_ratio = worst_ratio.max(err / bound);
        assert!(
            err <= bound * (1.0 + 1e-4) + 1e-5,
            "{act:?} int8 sample {i}: error {err:.3e} exceeds the bound {bound:.3e}"
        );
    }
    println!(
        "parity {act:?} int8 blob: max error {worst_err:.3e}, max bound {worst_bound:.3e}, \
         max error/bound {worst_ratio:.3}"
    );
    let mut worst_sim = 0.0f32;
    for (i, o) in obs.iter().enumerate() {
        let got = p.mean(o).expect("finite obs")[0];
        let x0: Vec<f32> = acts[0].row(i).to_vec();
        let want = int8_simulated(&t, &x0);
        worst_sim = worst_sim.max((got - want).abs() / (1.0 + want.abs()));
    }
    println!(
        "parity {act:?} int8 blob vs f32 re-implementation of the int8 path: \
         max rel. error {worst_sim:.3e}"
    );
    assert!(
        worst_sim < 1e-6,
        "{act:?}: int8 runtime vs re-implementation {worst_sim}"
    );
    // The int8 path is not secretly the f32 one.
    assert!(worst_err > 0.0);
}

#[test]
fn trainer_export_parity_tanh() {
    check_parity(Act::Tanh, 50);
}

#[test]
fn trainer_export_parity_relu() {
    check_parity(Act::Relu, 51);
}

#[test]
fn trainer_export_without_obs_normalization() {
    // norm_obs = false exports identity statistics: the runtime then sees
    // the raw observation (clip at the format's largest value).
    let mut t = trainer(Act::Tanh, 52);
    t.state.cfg.norm_obs = false;
    let blob = export_blob(&t.state, &t.plant, Quant::F32).expect("export");
    let p = Policy::<3, 1, 256>::from_bytes(&blob).expect("loads");
    let o = [0.5f32, -0.5, 3.0];
    let x = Array2::from_shape_vec((1, 3), o.to_vec()).expect("row");
    let m = &t.state.model;
    let want = m
        .actor
        .forward(m.actor_params(), x.view(), &mut Cache::default())[[0, 0]];
    let got = p.mean(&o).expect("finite")[0];
    assert!((got - want).abs() <= 1e-5, "{got} vs {want}");
}
