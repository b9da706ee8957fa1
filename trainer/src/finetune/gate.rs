//! The publication gate of `finetune`: a fine-tuned candidate is published
//! only when the logs say, with high confidence, that it is better than
//! the policy that produced them.
//!
//! From the **complete** logged episodes (each step of each logged, so the
//! importance weights of every step are known), [`Gate::decide`]
//! estimates the candidate's undiscounted return off-policy with weighted
//! doubly robust ([`crate::ope::wdr`], the candidate's critic as the
//! control variate, in reward units) and a bootstrap interval over
//! episodes ([`crate::ope::bootstrap`], one-sided at `confidence`), and
//! compares its **lower** bound with the behaviour's value: the mean
//! logged return of the same episodes. The candidate's `log π` are the
//! runtime's, from the int8 blob that would be published, so the estimate
//! is of the policy the board would run. WPDIS is reported beside it.
//!
//! Two tests ([`GateTest`]): `unpaired` compares the lower bound of the
//! estimate `V̂_WDR(π)` with the logged return `Ĝ_μ = (1/n) Σ_i G_i`
//! taken as known; `paired` bootstraps the gain `V̂_WDR(π) − Ĝ_μ` on the
//! same resamples ([`crate::ope::gain`]) and accepts when its lower bound
//! is above 0. Both quantities are estimated from the same episodes, and
//! most of their variance is the episodes' (an episode's initial state
//! decides much of its return, under any policy), so the
//! difference has a much smaller variance than either, and the paired test
//! also accounts for `Ĝ_μ`'s own error, which the unpaired one ignores.

use anyhow::Result;
use ndarray::Array2;
use serde::Serialize;

use crate::finetune::ImportCtx;
use crate::logs::DecodedLog;
use crate::mlp::Cache;
use crate::model::ActorCritic;
use crate::ope::{
    bootstrap, bootstrap_by, ess_fraction, gain, kl_behaviour, wpdis, Episode, Estimator,
};
use crate::registry::RegisteredPlant;

/// When `finetune` publishes its candidate (`--accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Accept {
    /// Only when the lower confidence bound of the candidate's estimated
    /// return beats the behaviour's logged return.
    Improvement,
    /// Always (the estimates are still computed and reported).
    Always,
}

/// What the gate's confidence bound is of (`--gate-test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GateTest {
    /// The gain `V̂_WDR(π) − Ĝ_μ` bootstrapped on the same resamples: accept
    /// when its lower bound is above 0.
    Paired,
    /// The estimate `V̂_WDR(π)` alone: accept when its lower bound is above
    /// the logged return `Ĝ_μ`, taken as known.
    Unpaired,
}

/// How the gate judges a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateOpts {
    /// `--accept`.
    pub accept: Accept,
    /// `--gate-test`.
    pub test: GateTest,
    /// One-sided confidence of the lower bounds.
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the resamples.
    pub seed: u64,
}

/// The complete logged episodes, kept from the import for the gate.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// Per episode: the policy inputs (raw, with the action history),
    /// the unclipped actions, the rewards (raw), the logged `log μ`, and
    /// the critic's normalized inputs.
    episodes: Vec<LoggedEpisode>,
}

#[derive(Debug, Clone)]
struct LoggedEpisode {
    inputs: Vec<Vec<f32>>,
    actions: Vec<Vec<f32>>,
    rewards: Vec<f64>,
    logp: Vec<f64>,
    critic_obs: Vec<f32>,
}

/// What the gate decided, with the numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    /// The candidate is published.
    pub accepted: bool,
    /// Complete episodes the estimate used.
    pub episodes: usize,
    /// The behaviour's value: the mean logged return of those episodes.
    pub behaviour_return: f64,
    /// The candidate's WDR estimate.
    pub estimate: f64,
    /// Its lower confidence bound.
    pub lower: f64,
    /// Its upper confidence bound.
    pub upper: f64,
    /// The WPDIS estimate, for comparison.
    pub wpdis: f64,
    /// The one-sided confidence of `lower`.
    pub confidence: f64,
    /// Effective sample size of the whole-episode weights, over `episodes`.
    pub ess: f64,
    /// The least `ess` the gate accepts (`--min-ess`; 0 with `always`).
    pub min_ess: f64,
    /// The test that decided.
    pub test: GateTest,
    /// The estimated gain `estimate − behaviour_return`.
    pub gain: f64,
    /// The paired lower confidence bound of the gain.
    pub gain_lower: f64,
    /// The paired upper confidence bound of the gain.
    pub gain_upper: f64,
    /// k3 estimate of the per-step `KL(μ‖π)` over the logged steps.
    pub kl_mu: f64,
}

impl Decision {
    /// The lower bound beats the behaviour by the decision's test (what
    /// `--accept always` overrides).
    pub fn beats(&self) -> bool {
        match self.test {
            GateTest::Paired => self.gain_lower > 0.0,
            GateTest::Unpaired => self.lower > self.behaviour_return,
        }
    }

    /// Why, in one sentence with the numbers.
    pub fn reason(&self) -> String {
        if self.episodes == 0 {
            return "no complete episode in the logs: the candidate's return cannot be \
                    estimated"
                .into();
        }
        if self.ess < self.min_ess {
            return format!(
                "the logs cannot judge the candidate: the effective sample size of its \
                 importance weights is {:.3} of the {} episodes, below --min-ess {} \
                 (estimated return {:.1}, behaviour's logged return {:.1})",
                self.ess, self.episodes, self.min_ess, self.estimate, self.behaviour_return
            );
        }
        if self.test == GateTest::Paired {
            let cmp = if self.gain_lower > 0.0 {
                "is above"
            } else {
                "is not above"
            };
            return format!(
                "the candidate's estimated gain over the behaviour's logged return {:.1} is \
                 {:+.1} (WDR {:.1}; paired {:.0}% lower bound {:+.1}, upper {:+.1}; WPDIS {:.1}; \
                 ESS {:.3}, KL(μ‖π) {:.5} per step): the lower bound {cmp} 0 over {} episodes",
                self.behaviour_return,
                self.gain,
                self.estimate,
                100.0 * self.confidence,
                self.gain_lower,
                self.gain_upper,
                self.wpdis,
                self.ess,
                self.kl_mu,
                self.episodes
            );
        }
        let cmp = if self.lower > self.behaviour_return {
            "beats"
        } else {
            "does not beat"
        };
        format!(
            "the candidate's estimated return {:.1} (WDR; {:.0}% lower bound {:.1}, upper {:.1}; \
             WPDIS {:.1}; ESS {:.3}) {cmp} the behaviour's logged return {:.1} over {} episodes",
            self.estimate,
            100.0 * self.confidence,
            self.lower,
            self.upper,
            self.wpdis,
            self.ess,
            self.behaviour_return,
            self.episodes
        )
    }
}

impl Gate {
    /// Keeps the complete episodes of `log` (whose inputs already carry the
    /// action history of a history policy), normalized for the critic as
    /// `ctx` normalizes the import.
    pub fn from_log(log: &DecodedLog, ctx: &ImportCtx) -> Self {
        let tr = &log.transitions;
        let episodes = log
            .complete_episodes()
            .into_iter()
            .filter(|steps| steps.iter().all(|&i| tr[i].obs().len() == ctx.obs_dim))
            .map(|steps| LoggedEpisode {
                inputs: steps.iter().map(|&i| tr[i].obs().to_vec()).collect(),
                actions: steps.iter().map(|&i| tr[i].action().to_vec()).collect(),
                rewards: steps.iter().map(|&i| tr[i].reward as f64).collect(),
                logp: steps.iter().map(|&i| tr[i].log_prob as f64).collect(),
                critic_obs: steps
                    .iter()
                    .flat_map(|&i| ctx.normalized(tr[i].obs()))
                    .collect(),
            })
            .collect();
        Gate { episodes }
    }

    /// Complete episodes kept.
    pub fn len(&self) -> usize {
        self.episodes.len()
    }

    /// No complete episode.
    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }

    /// The logged episodes as the estimators see them for the candidate
    /// `blob`: the runtime's `log π − log μ` per step and, with `critic`
    /// (a model and the reward scale), `V̂(x_t)` in reward units.
    fn episodes(
        &self,
        plant: &RegisteredPlant,
        blob: &[u8],
        critic: Option<(&ActorCritic, f64)>,
    ) -> Result<Vec<Episode>> {
        let mut eps = Vec::with_capacity(self.episodes.len());
        let mut cache = Cache::default();
        for e in &self.episodes {
            let items: Vec<(&[f32], &[f32])> = e
                .inputs
                .iter()
                .zip(&e.actions)
                .map(|(x, u)| (x.as_slice(), u.as_slice()))
                .collect();
            let lp = plant.log_probs(blob, &items)?;
            let t = e.rewards.len();
            let values = match critic {
                Some((model, reward_std)) => {
                    let x = Array2::from_shape_vec((t, model.obs_dim()), e.critic_obs.clone())?;
                    let v = model
                        .critic
                        .forward(model.critic_params(), x.view(), &mut cache);
                    v.column(0).iter().map(|&v| v as f64 * reward_std).collect()
                }
                None => Vec::new(),
            };
            // A step the runtime refuses has weight 0 (ratio e^−∞).
            let log_ratio = lp
                .iter()
                .zip(&e.logp)
                .map(|(c, &b)| c.map_or(f64::NEG_INFINITY, |c| c as f64 - b))
                .collect();
            eps.push(Episode {
                rewards: e.rewards.clone(),
                log_ratio,
                values,
            });
        }
        Ok(eps)
    }

    /// How far the candidate `blob` is from the logs' policy: the k3
    /// estimate of the per-step `KL(μ‖π)` ([`kl_behaviour`]) and the ESS
    /// fraction of the whole-episode weights ([`ess_fraction`]), without
    /// the bootstrap (cheap: one pass of the runtime over the logged steps).
    pub fn divergence(&self, plant: &RegisteredPlant, blob: &[u8]) -> Result<(f64, f64)> {
        let eps = self.episodes(plant, blob, None)?;
        Ok((kl_behaviour(&eps), ess_fraction(&eps)))
    }

    /// Estimates the candidate (`blob`, its int8 export, and `model`, whose
    /// critic is the control variate, in reward units through
    /// `reward_std`) and decides.
    pub fn decide(
        &self,
        plant: &RegisteredPlant,
        blob: &[u8],
        model: &ActorCritic,
        reward_std: f64,
        o: &GateOpts,
    ) -> Result<Decision> {
        let eps = self.episodes(plant, blob, Some((model, reward_std)))?;
        let n = eps.len();
        let behaviour_return = if n == 0 {
            f64::NAN
        } else {
            self.episodes
                .iter()
                .map(|e| e.rewards.iter().sum::<f64>())
                .sum::<f64>()
                / n as f64
        };
        let alpha = 1.0 - o.confidence;
        let ci = bootstrap(&eps, 1.0, Estimator::Wdr, o.resamples, alpha, o.seed);
        let g = bootstrap_by(&eps, o.resamples, alpha, o.seed, |p| gain(p, 1.0));
        let mut d = Decision {
            accepted: false,
            episodes: n,
            behaviour_return,
            estimate: ci.estimate,
            lower: ci.lower,
            upper: ci.upper,
            wpdis: wpdis(&eps, 1.0),
            confidence: o.confidence,
            ess: ess_fraction(&eps),
            min_ess: 0.0,
            test: o.test,
            gain: g.estimate,
            gain_lower: g.lower,
            gain_upper: g.upper,
            kl_mu: kl_behaviour(&eps),
        };
        d.accepted = o.accept == Accept::Always || d.beats();
        Ok(d)
    }
}
