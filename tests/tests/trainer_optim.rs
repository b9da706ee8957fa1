//! Adam, gradient clipping and the running normalizers against hand
//! computations.

use tinyppo_trainer::normalize::{normalize_obs, RewardScaler, RunningMeanStd};
use tinyppo_trainer::optim::{clip_grad_norm, Adam};

use crate::trainer_util::{normal, rng, uniform};

/// PyTorch's Adam (`torch.optim.Adam(lr=0.01, eps=1e-5)`, β = (0.9, 0.999)):
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `θ ← θ − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε)`. Golden values from this
/// formula in f64 (Python):
///
/// ```python
/// import math
/// p = [1.0, -1.0, 0.5, 0.25, 0.0]
/// gs = [[0.5, -2.0, 1e-6, 0.0, 3e-5], [-0.5, 1.0, 1e-6, 0.1, 3e-5]]
/// lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-5
/// m = [0] * 5; v = [0] * 5
/// for t, g in enumerate(gs, 1):
///     for i in range(5):
///         m[i] = b1 * m[i] + (1 - b1) * g[i]; v[i] = b2 * v[i] + (1 - b2) * g[i] ** 2
///         p[i] -= lr * (m[i] / (1 - b1 ** t)) / (math.sqrt(v[i] / (1 - b2 ** t)) + eps)
///     print(t, p)
/// ```
///
/// On the first step `m̂ = g`, `v̂ = g²`, so each parameter moves by
/// `−lr·g/(|g| + ε)`: ≈ `−lr·sign(g)` for |g| ≫ ε, less for |g| ~ ε, and 0
/// for g = 0.
#[test]
fn trainer_adam_matches_pytorch_formula() {
    let mut p = vec![1.0f32, -1.0, 0.5, 0.25, 0.0];
    let mut adam = Adam::new(5, 1e-5);
    adam.step(&mut p, &[0.5, -2.0, 1e-6, 0.0, 3e-5], 0.01);
    let step1 = [
        0.9900001999960001f64,
        -0.99000004999975,
        0.4990909090909091,
        0.25,
        -0.007499999999999999,
    ];
    for (a, b) in p.iter().zip(step1) {
        assert!((*a as f64 - b).abs() < 1e-6, "step 1: {a} vs {b}");
    }
    assert_eq!(adam.t, 1);
    adam.step(&mut p, &[-0.5, 1.0, 1e-6, 0.1, 3e-5], 0.01);
    let step2 = [
        0.9905265052593685f64,
        -0.9873366964502014,
        0.49818181818181817,
        0.24255968372086142,
        -0.01499999999999996,
    ];
    for (a, b) in p.iter().zip(step2) {
        assert!((*a as f64 - b).abs() < 1e-6, "step 2: {a} vs {b}");
    }
}

#[test]
fn trainer_adam_matches_reference_over_many_steps() {
    // The same formula in f64 over 50 steps of random gradients and a
    // changing learning rate (as with annealing).
    let mut r = rng(3);
    let n = 7;
    let mut p: Vec<f32> = (0..n).map(|_| normal(&mut r)).collect();
    let mut pr: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
    let mut adam = Adam::new(n, 1e-5);
    for t in 1..=50 {
        let g: Vec<f32> = (0..n).map(|_| normal(&mut r) * 0.1).collect();
        let lr = 3e-3 * (1.0 - (t - 1) as f32 / 50.0);
        adam.step(&mut p, &g, lr);
        for i in 0..n {
            let gi = g[i] as f64;
            m[i] = 0.9 * m[i] + 0.1 * gi;
            v[i] = 0.999 * v[i] + 0.001 * gi * gi;
            let mh = m[i] / (1.0 - 0.9f64.powi(t));
            let vh = v[i] / (1.0 - 0.999f64.powi(t));
            pr[i] -= lr as f64 * mh / (vh.sqrt() + 1e-5);
        }
    }
    for (a, b) in p.iter().zip(&pr) {
        assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn trainer_clip_grad_norm() {
    // ‖(3, 4)‖ = 5 → scaled by 1/(5 + 1e-6) to norm ≈ 1.
    let mut g = vec![3.0f32, 4.0];
    let n = clip_grad_norm(&mut g, 1.0);
    assert_eq!(n, 5.0);
    assert!(
        (g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6,
        "{g:?}"
    );
    let after = (g[0] * g[0] + g[1] * g[1]).sqrt();
    assert!((after - 1.0).abs() < 1e-6);
    // Below the limit: unchanged, returns the norm.
    let mut g = vec![0.3f32, -0.4];
    assert!((clip_grad_norm(&mut g, 1.0) - 0.5).abs() < 1e-7);
    assert_eq!(g, [0.3, -0.4]);
    // Many components: the norm is the global L2 norm and the direction is kept.
    let mut r = rng(4);
    let g0: Vec<f32> = (0..1000).map(|_| normal(&mut r)).collect();
    let mut g = g0.clone();
    let n = clip_grad_norm(&mut g, 0.5);
    let want = g0.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    assert!((n as f64 - want).abs() < 1e-4 * want);
    let after = g.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    assert!((after - 0.5).abs() < 1e-5, "{after}");
    for (a, b) in g.iter().zip(&g0) {
        assert!((a / b - 0.5 / n).abs() < 1e-5);
    }
    // Non-finite: reported, not scaled (the trainer turns it into an error).
    let mut g = vec![1.0f32, f32::NAN];
    assert!(clip_grad_norm(&mut g, 1.0).is_nan());
}

/// Data of `dim` columns in batches of the given sizes, around mean 5 with
/// different spreads per column.
fn batches(sizes: &[usize], dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = rng(seed);
    sizes
        .iter()
        .map(|&n| {
            (0..n * dim)
                .map(|k| 5.0 + (1 + k % dim) as f32 * normal(&mut r))
                .collect()
        })
        .collect()
}

/// Mean and population variance per column of the concatenation, in f64,
/// plus an optional prior pseudo-sample of weight `w0` with mean 0 and
/// variance 1 (the 1e-4 initial count): `μ = Σx/(n + w0)`,
/// `σ² = (Σ(x − μ)² + w0·(1 + μ²))/(n + w0)`.
fn reference(data: &[Vec<f32>], dim: usize, w0: f64) -> (Vec<f64>, Vec<f64>) {
    let all: Vec<f64> = data.iter().flatten().map(|&v| v as f64).collect();
    let n = (all.len() / dim) as f64;
    let mut mean = vec![0.0; dim];
    let mut var = vec![0.0; dim];
    for d in 0..dim {
        let col = all.iter().skip(d).step_by(dim);
        let mu = col.clone().sum::<f64>() / (n + w0);
        let ss = col.map(|v| (v - mu) * (v - mu)).sum::<f64>();
        mean[d] = mu;
        var[d] = (ss + w0 * (1.0 + mu * mu)) / (n + w0);
    }
    (mean, var)
}

#[test]
fn trainer_running_mean_std_merges_like_concatenation() {
    let dim = 3;
    let data = batches(&[7, 1, 20, 13, 2], dim, 5);
    // Without the prior (count 0): exactly the statistics of all the data.
    let mut rms = RunningMeanStd::new(dim);
    rms.count = 0.0;
    for b in &data {
        rms.update(b);
    }
    rms.update(&[]); // an empty batch changes nothing
    let (mean, var) = reference(&data, dim, 0.0);
    for d in 0..dim {
        assert!((rms.mean[d] - mean[d]).abs() < 1e-9, "mean[{d}]");
        assert!((rms.var[d] - var[d]).abs() < 1e-9 * var[d], "var[{d}]");
    }
    assert_eq!(rms.count, 43.0);
    // With Gymnasium's initial count 1e-4 the prior (0, 1) is one more
    // weighted sample.
    let mut rms = RunningMeanStd::new(dim);
    for b in &data {
        rms.update(b);
    }
    let (mean, var) = reference(&data, dim, 1e-4);
    for d in 0..dim {
        assert!((rms.mean[d] - mean[d]).abs() < 1e-9, "mean[{d}]");
        assert!((rms.var[d] - var[d]).abs() < 1e-9 * var[d], "var[{d}]");
    }
    // Batch order does not matter.
    let mut rev = RunningMeanStd::new(dim);
    for b in data.iter().rev() {
        rev.update(b);
    }
    for d in 0..dim {
        assert!((rev.mean[d] - rms.mean[d]).abs() < 1e-9);
        assert!((rev.var[d] - rms.var[d]).abs() < 1e-9 * rms.var[d]);
    }
    // Export: inv_std = 1/√(var + 1e-8) in f32; normalization clips.
    let (m32, inv) = rms.export();
    for d in 0..dim {
        assert_eq!(m32[d], rms.mean[d] as f32);
        assert!((inv[d] as f64 - 1.0 / (rms.var[d] + 1e-8).sqrt()).abs() < 1e-6 * inv[d] as f64);
    }
    let mut x = vec![m32[0], m32[1] + 1000.0, m32[2] - 1.0 / inv[2]];
    normalize_obs(&mut x, &m32, &inv, 10.0);
    assert_eq!(x[0], 0.0);
    assert_eq!(x[1], 10.0);
    assert!((x[2] + 1.0).abs() < 1e-6);
}

#[test]
fn trainer_reward_scaler_divides_by_return_std() {
    // R ← γR + r per env (reset after done), statistics of R over all
    // steps so far, reward / √(var + 1e-8) clipped to ±c.
    let (n, gamma) = (2, 0.9f32);
    let mut sc = RewardScaler::new(n, gamma, 10.0);
    let mut r = rng(6);
    let mut ret = vec![0.0f64; n];
    let mut seen: Vec<f32> = Vec::new();
    for step in 0..40 {
        let raw: Vec<f32> = (0..n).map(|_| uniform(&mut r, -2.0, 1.0)).collect();
        let done = vec![step % 7 == 6, step % 11 == 10];
        let mut scaled = raw.clone();
        sc.scale(&mut scaled, &done);
        for e in 0..n {
            ret[e] = ret[e] * gamma as f64 + raw[e] as f64;
            seen.push(ret[e] as f32);
        }
        let batches: Vec<Vec<f32>> = seen.chunks(n).map(|c| c.to_vec()).collect();
        let (_, var) = reference(&batches, 1, 1e-4);
        let std = (var[0] + 1e-8).sqrt();
        for e in 0..n {
            let want = (raw[e] as f64 / std).clamp(-10.0, 10.0);
            assert!(
                (scaled[e] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                "step {step} env {e}: {} vs {want}",
                scaled[e]
            );
            if done[e] {
                ret[e] = 0.0;
            }
        }
    }
}
