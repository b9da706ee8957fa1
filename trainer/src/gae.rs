//! Generalized advantage estimation (notes (6.40)–(6.46)).
//!
//! `δ_t = r_t + γ (1 − term_t) V(s'_t) − V(s_t)` and
//! `Â_t = Σ_k (γλ)^k δ_{t+k}` within an episode, computed backward as
//! `Â_t = δ_t + γλ (1 − done_t) Â_{t+1}`, `done_t = term_t ∨ trunc_t`.
//!
//! `s'_t` is the true successor of step t. On **termination** its value is 0
//! (no bootstrap). On **truncation** (time limit) it is the final
//! observation of the cut episode, and the learner bootstraps from `V(s'_t)`;
//! the recursion still stops there because step t+1 belongs to a new episode.
//! At the end of the rollout `V(s'_{T−1})` is the value of the current
//! observation. Returns (the value targets) are `Â_t + V(s_t)`.
//!
//! Data is laid out time-major: index `t·N + n` for step t of env n.

/// Inputs of GAE for a `T × N` rollout (time-major).
pub struct GaeInput<'a> {
    /// Rewards `r_t`.
    pub rewards: &'a [f32],
    /// `V(s_t)`.
    pub values: &'a [f32],
    /// `V(s'_t)`, the successor's value (ignored where terminated).
    pub next_values: &'a [f32],
    /// Terminal transitions.
    pub terminated: &'a [bool],
    /// Time-limit cuts.
    pub truncated: &'a [bool],
    /// Number of environments N.
    pub num_envs: usize,
}

/// Advantages `Â_t` (time-major), written into `adv`.
pub fn gae(inp: &GaeInput, gamma: f32, lambda: f32, adv: &mut [f32]) {
    let n = inp.num_envs;
    let t_len = inp.rewards.len() / n;
    for env in 0..n {
        let mut last = 0.0f32;
        for t in (0..t_len).rev() {
            let i = t * n + env;
            let not_term = if inp.terminated[i] { 0.0 } else { 1.0 };
            let not_done = if inp.terminated[i] || inp.truncated[i] {
                0.0
            } else {
                1.0
            };
            let delta = inp.rewards[i] + gamma * not_term * inp.next_values[i] - inp.values[i];
            last = delta + gamma * lambda * not_done * last;
            adv[i] = last;
        }
    }
}
