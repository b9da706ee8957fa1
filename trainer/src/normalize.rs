//! Running observation and reward normalization (the wrappers PPO relies on).
//!
//! Observations: running mean and variance (parallel/Chan update, f64) per
//! dimension; the policy sees `x̂ = clip((x − mean)·inv_std, −c, c)` with
//! `inv_std = 1/√(var + 1e-8)`, computed in f32 exactly as the runtime does
//! with the exported statistics.
//!
//! Rewards: divided by the running standard deviation of the discounted
//! return `R ← γR + r` (reset at episode ends), then clipped to ±c.

use serde::{Deserialize, Serialize};

/// Running mean/variance of vectors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningMeanStd {
    /// Mean per dimension.
    pub mean: Vec<f64>,
    /// Population variance per dimension.
    pub var: Vec<f64>,
    /// Effective count (starts at 1e-4 as in Gymnasium).
    pub count: f64,
}

impl RunningMeanStd {
    /// Zero mean, unit variance, `dim` dimensions.
    pub fn new(dim: usize) -> Self {
        RunningMeanStd {
            mean: vec![0.0; dim],
            var: vec![1.0; dim],
            count: 1e-4,
        }
    }

    /// Merges a batch of rows (row-major, `dim` wide).
    pub fn update(&mut self, batch: &[f32]) {
        let dim = self.mean.len();
        let n = (batch.len() / dim) as f64;
        if n == 0.0 {
            return;
        }
        for d in 0..dim {
            let col = batch.iter().skip(d).step_by(dim).map(|&v| v as f64);
            let bmean = col.clone().sum::<f64>() / n;
            let bvar = col.map(|v| (v - bmean) * (v - bmean)).sum::<f64>() / n;
            self.merge(d, bmean, bvar, n);
        }
        self.count += n;
    }

    /// Merges a batch of scalars (one dimension).
    pub fn update_f64(&mut self, batch: &[f64]) {
        let n = batch.len() as f64;
        if n == 0.0 || self.mean.len() != 1 {
            return;
        }
        let bmean = batch.iter().sum::<f64>() / n;
        let bvar = batch.iter().map(|v| (v - bmean) * (v - bmean)).sum::<f64>() / n;
        self.merge(0, bmean, bvar, n);
        self.count += n;
    }

    fn merge(&mut self, d: usize, bmean: f64, bvar: f64, n: f64) {
        let delta = bmean - self.mean[d];
        let tot = self.count + n;
        let m2 = self.var[d] * self.count + bvar * n + delta * delta * self.count * n / tot;
        self.mean[d] += delta * n / tot;
        self.var[d] = m2 / tot;
    }

    /// `(mean, inv_std)` as the f32 vectors that are exported.
    pub fn export(&self) -> (Vec<f32>, Vec<f32>) {
        let mean = self.mean.iter().map(|&m| m as f32).collect();
        let inv = self
            .var
            .iter()
            .map(|&v| (1.0 / (v + 1e-8).sqrt()) as f32)
            .collect();
        (mean, inv)
    }
}

/// Normalizes `x` in place with exported statistics, as the runtime does.
pub fn normalize_obs(x: &mut [f32], mean: &[f32], inv_std: &[f32], clip: f32) {
    for ((v, &m), &is) in x.iter_mut().zip(mean).zip(inv_std) {
        *v = ((*v - m) * is).clamp(-clip, clip);
    }
}

/// Reward scaling by the running std of the discounted return.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewardScaler {
    /// Statistics of the discounted return.
    pub rms: RunningMeanStd,
    /// Current discounted return per env.
    pub ret: Vec<f64>,
    /// γ.
    pub gamma: f64,
    /// Clip of the scaled reward.
    pub clip: f32,
}

impl RewardScaler {
    /// For `num_envs` envs.
    pub fn new(num_envs: usize, gamma: f32, clip: f32) -> Self {
        RewardScaler {
            rms: RunningMeanStd::new(1),
            ret: vec![0.0; num_envs],
            gamma: gamma as f64,
            clip,
        }
    }

    /// Scales one step of rewards (one per env) in place; `done` resets the
    /// running return after the step.
    pub fn scale(&mut self, rewards: &mut [f32], done: &[bool]) {
        for (r, &rew) in self.ret.iter_mut().zip(rewards.iter()) {
            *r = *r * self.gamma + rew as f64;
        }
        self.rms.update_f64(&self.ret);
        let std = (self.rms.var[0] + 1e-8).sqrt() as f32;
        for ((rew, r), &d) in rewards.iter_mut().zip(self.ret.iter_mut()).zip(done) {
            *rew = (*rew / std).clamp(-self.clip, self.clip);
            if d {
                *r = 0.0;
            }
        }
    }
}
