//! Actor-critic model: a Gaussian policy with state-independent log-std and a
//! separate value network, all parameters in one flat vector.
//!
//! Layout of [`ActorCritic::params`]: `[actor MLP | log_std (act_dim) | critic MLP]`.
//!
//! Policy: `π(u|x) = N(u; μ_θ(x), diag(σ²))`, `σ_j = exp(log_std_j)`, with
//! (notes' diagonal-Gaussian log-density)
//! `log π(u|x) = −Σ_j [ (u_j − μ_j)²/(2σ_j²) + log σ_j + ½ log 2π ]`,
//! so `∂ log π/∂μ_j = (u_j − μ_j)/σ_j²` and
//! `∂ log π/∂ log σ_j = (u_j − μ_j)²/σ_j² − 1`; entropy
//! `H = Σ_j (log σ_j + ½(1 + log 2π))`, `∂H/∂ log σ_j = 1`.

use std::ops::Range;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::mlp::{Act, Mlp};

/// `½ log 2π`, the runtime's constant (host and device use the same f32).
pub use tinyppo_runtime::gaussian::HALF_LOG_2PI;

/// A Gaussian actor and a value critic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActorCritic {
    /// Mean network `obs → μ`.
    pub actor: Mlp,
    /// Value network `obs → V`.
    pub critic: Mlp,
    /// All parameters (see module docs for the layout).
    pub params: Vec<f32>,
}

impl ActorCritic {
    /// A freshly initialized model: orthogonal init with gain √2 on hidden
    /// layers, 0.01 on the actor head and 1.0 on the critic head (the PPO
    /// implementation details); biases 0; `log_std = init_log_std`.
    pub fn new<R: Rng>(
        obs_dim: usize,
        act_dim: usize,
        actor_hidden: &[usize],
        critic_hidden: &[usize],
        act: Act,
        init_log_std: f32,
        rng: &mut R,
    ) -> Self {
        let actor = Mlp::new(obs_dim, actor_hidden, act_dim, act);
        let critic = Mlp::new(obs_dim, critic_hidden, 1, act);
        let n = actor.n_params() + act_dim + critic.n_params();
        let mut m = ActorCritic {
            actor,
            critic,
            params: vec![0.0; n],
        };
        let (ar, lr, cr) = (m.actor_range(), m.log_std_range(), m.critic_range());
        let sqrt2 = std::f32::consts::SQRT_2;
        let actor = m.actor.clone();
        actor.init_orthogonal(&mut m.params[ar], sqrt2, 0.01, rng);
        m.params[lr].fill(init_log_std);
        let critic = m.critic.clone();
        critic.init_orthogonal(&mut m.params[cr], sqrt2, 1.0, rng);
        m
    }

    /// Observation dimension.
    pub fn obs_dim(&self) -> usize {
        self.actor.input()
    }
    /// Action dimension.
    pub fn act_dim(&self) -> usize {
        self.actor.output()
    }
    /// Range of the actor's parameters in [`ActorCritic::params`].
    pub fn actor_range(&self) -> Range<usize> {
        0..self.actor.n_params()
    }
    /// Range of `log_std`.
    pub fn log_std_range(&self) -> Range<usize> {
        let a = self.actor.n_params();
        a..a + self.act_dim()
    }
    /// Range of the critic's parameters.
    pub fn critic_range(&self) -> Range<usize> {
        let s = self.log_std_range().end;
        s..s + self.critic.n_params()
    }
    /// The actor's parameters.
    pub fn actor_params(&self) -> &[f32] {
        &self.params[self.actor_range()]
    }
    /// The critic's parameters.
    pub fn critic_params(&self) -> &[f32] {
        &self.params[self.critic_range()]
    }
    /// `log σ`.
    pub fn log_std(&self) -> &[f32] {
        &self.params[self.log_std_range()]
    }
}

/// `log π(u|x)` of one action given the mean and `log σ`.
pub fn gaussian_log_prob(u: &[f32], mu: &[f32], log_std: &[f32]) -> f32 {
    let mut lp = 0.0;
    for ((&u, &m), &ls) in u.iter().zip(mu).zip(log_std) {
        let z = (u - m) * (-ls).exp();
        lp -= 0.5 * z * z + ls + HALF_LOG_2PI;
    }
    lp
}

/// Entropy of the diagonal Gaussian.
pub fn gaussian_entropy(log_std: &[f32]) -> f32 {
    log_std.iter().map(|&l| l + 0.5 + HALF_LOG_2PI).sum()
}
