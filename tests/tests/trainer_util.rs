//! Helpers shared by the trainer tests: seeded random numbers, random
//! networks, a gradient comparison with a readable failure message, Monte
//! Carlo means with their standard errors and Simpson quadrature, tiny
//! training configurations and self-deleting temporary directories.

#![allow(dead_code)] // Not every test module uses every helper.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::Rng;
use tinyppo_runtime::gaussian::standard_normals;
use tinyppo_runtime::rng::{seeded, DefaultRng};
use tinyppo_trainer::config::{PpoParams, TrainConfig};
use tinyppo_trainer::mlp::Mlp;
use tinyppo_trainer::registry::{RegisteredPlant, Registry};

/// The tests' generator (the runtime's xoshiro128++, seeded).
pub fn rng(seed: u64) -> DefaultRng {
    seeded(seed)
}

/// Uniform in `[lo, hi)`.
pub fn uniform(rng: &mut DefaultRng, lo: f32, hi: f32) -> f32 {
    rng.random_range(lo..hi)
}

/// One standard normal.
pub fn normal(rng: &mut DefaultRng) -> f32 {
    let mut z = [0.0f32];
    standard_normals(rng, &mut z);
    z[0]
}

/// `k` distinct indices from `range`, in increasing order.
pub fn pick(rng: &mut DefaultRng, range: std::ops::Range<usize>, k: usize) -> Vec<usize> {
    let mut all: Vec<usize> = range.collect();
    for i in (1..all.len()).rev() {
        let j = rng.random_range(0..=i);
        all.swap(i, j);
    }
    all.truncate(k);
    all.sort_unstable();
    all
}

/// Random parameters for `mlp` (flat layout): `W ~ U(±gain·√(3/fan_in))`
/// (unit-variance pre-activations for unit-variance inputs when gain = 1),
/// `b ~ U(±0.3)`. Unlike the orthogonal init (actor head gain 0.01), every
/// layer matters for the output.
pub fn random_params(mlp: &Mlp, gain: f32, rng: &mut DefaultRng) -> Vec<f32> {
    let mut p = vec![0.0; mlp.n_params()];
    for l in 0..mlp.n_layers() {
        let (ow, ob, rows, cols) = mlp.layer_offsets(l);
        let a = gain * (3.0 / cols as f32).sqrt();
        for v in &mut p[ow..ob] {
            *v = uniform(rng, -a, a);
        }
        for v in &mut p[ob..ob + rows] {
            *v = uniform(rng, -0.3, 0.3);
        }
    }
    p
}

/// Indices of `per_w` weights and `per_b` biases of every layer of `mlp`,
/// shifted by `base` (the MLP's offset in a larger parameter vector).
pub fn pick_per_layer(
    mlp: &Mlp,
    base: usize,
    per_w: usize,
    per_b: usize,
    rng: &mut DefaultRng,
) -> Vec<usize> {
    let mut out = Vec::new();
    for l in 0..mlp.n_layers() {
        let (ow, ob, rows, _) = mlp.layer_offsets(l);
        out.extend(pick(rng, ow..ob, per_w).into_iter().map(|i| base + i));
        out.extend(
            pick(rng, ob..ob + rows, per_b)
                .into_iter()
                .map(|i| base + i),
        );
    }
    out
}

/// Compares analytic and finite-difference gradients of the parameters in
/// `idx`: `|a − n| ≤ rtol·max(|a|, |n|) + atol·scale`, where `scale` is the
/// largest analytic component (so components far below the gradient's size
/// are compared absolutely, where f32 round-off in the difference quotient
/// dominates). Panics naming the worst component; returns the largest
/// relative error among components above the absolute floor.
pub fn check_grad(
    what: &str,
    idx: &[usize],
    analytic: &[f32],
    numeric: &[f64],
    rtol: f64,
    atol: f64,
) -> f64 {
    assert_eq!(idx.len(), numeric.len());
    let scale = analytic
        .iter()
        .fold(0.0f64, |m, &g| m.max(g.abs() as f64))
        .max(1e-3);
    let floor = atol * scale;
    let mut worst_rel = 0.0f64;
    let mut failures = Vec::new();
    for (&i, &n) in idx.iter().zip(numeric) {
        let a = analytic[i] as f64;
        let err = (a - n).abs();
        if err > rtol * a.abs().max(n.abs()) + floor {
            failures.push(format!("θ[{i}]: analytic {a:.6e}, numeric {n:.6e}"));
        }
        if a.abs().max(n.abs()) > 10.0 * floor {
            worst_rel = worst_rel.max(err / a.abs().max(n.abs()));
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} gradient components differ from central differences \
         (rtol {rtol}, atol {floor:.2e}):\n{}",
        failures.len(),
        idx.len(),
        failures.join("\n")
    );
    println!(
        "{what}: {} components, worst relative error {worst_rel:.2e}",
        idx.len()
    );
    worst_rel
}

// ---------------------------------------------------------------------------
// Monte Carlo and quadrature.

/// Mean and standard error of the mean.
pub fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// `∫ g(a) da` over [−14, 14] by Simpson's rule (the integrands here are
/// Gaussian-weighted: the tails beyond ±14 are below 1e-40).
pub fn integrate(g: impl Fn(f64) -> f64) -> f64 {
    let (lo, hi, n) = (-14.0f64, 14.0f64, 40_000usize);
    let h = (hi - lo) / n as f64;
    let mut s = g(lo) + g(hi);
    for i in 1..n {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        s += w * g(lo + i as f64 * h);
    }
    s * h / 3.0
}

/// A run small enough for a test: pendulum, 2 envs × 64 steps, 4
/// minibatches, 2 epochs, 512 steps (4 updates), 16-wide networks.
pub fn tiny_config(seed: u64) -> TrainConfig {
    TrainConfig {
        env: "pendulum".into(),
        seed,
        total_timesteps: 512,
        num_envs: 2,
        num_steps: 64,
        ppo: PpoParams {
            num_minibatches: 4,
            update_epochs: 2,
            ..PpoParams::default()
        },
        actor_hidden: vec![16, 16],
        critic_hidden: vec![16, 16],
        learning_rate: 1e-3,
        gamma: 0.9,
        eval_episodes: 2,
        ..TrainConfig::default()
    }
}

/// The built-in plant `name`, through the registry every command uses.
pub fn plant(name: &str) -> RegisteredPlant {
    Registry::builtin()
        .get(name)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .clone()
}

/// A fresh run of `cfg` on its registered plant.
pub fn new_trainer(cfg: TrainConfig) -> anyhow::Result<tinyppo_trainer::algo::Trainer> {
    let p = plant(&cfg.env);
    tinyppo_trainer::algo::Trainer::new(cfg, &p)
}

/// A directory under cargo's per-target scratch space, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        TempDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A time-major `T × num_envs` rollout for the advantage tests (the layout
/// of `gae::GaeInput`).
pub struct Rollout {
    /// Rewards.
    pub rewards: Vec<f32>,
    /// `V(s_t)`.
    pub values: Vec<f32>,
    /// `V(s'_t)`.
    pub next_values: Vec<f32>,
    /// Terminal steps.
    pub terminated: Vec<bool>,
    /// Time-limit cuts.
    pub truncated: Vec<bool>,
    /// Environments.
    pub num_envs: usize,
}

impl Rollout {
    /// The borrowed view `gae` and `nstep_advantages` take.
    pub fn input(&self) -> tinyppo_trainer::gae::GaeInput<'_> {
        tinyppo_trainer::gae::GaeInput {
            rewards: &self.rewards,
            values: &self.values,
            next_values: &self.next_values,
            terminated: &self.terminated,
            truncated: &self.truncated,
            num_envs: self.num_envs,
        }
    }
}
