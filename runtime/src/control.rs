//! The on-device control loop: read → act → actuate → log, once per tick.
//!
//! A plant is seen through three roles, each a small trait:
//!
//! - [`Sensor`]: reads the observation `o_t`;
//! - [`Actuator`]: applies the (clipped) action;
//! - [`RewardSource`]: says what the step earned and whether the episode
//!   ended (`r_t`, `terminated`, `truncated`), and, if it knows it, the
//!   observation after the step.
//!
//! On hardware they are usually three separate parts (an I2C sensor, a PWM
//! output, a cost function in firmware), bundled with [`Io`]; a simulated
//! plant implements all three at once (`sim::PlantIo`). [`ControlLoop::tick`]
//! takes anything that has the three roles.
//!
//! One tick, with `π` the policy:
//!
//! ```text
//! o_t      = sensor.read()
//! u_t      ~ N(μ(o_t), σ²)          (or u_t = μ(o_t) when deterministic)
//! applied  = clip(u_t, low, high)   → actuator.apply(applied)
//! outcome  = reward.outcome(Some(o_t), applied)
//! log        (seq, episode, t, o_t, u_t unclipped, r_t, terminated, truncated,
//!             log π(u_t|o_t), policy id)
//! ```
//!
//! **Faults.** If the sensor fails or any element of `o_t` is NaN or ±∞,
//! the loop applies [`Policy::safe_action`] instead, counts the tick
//! (`sensor_errors` or `nonfinite_obs`) and logs **no** transition: its
//! observation cannot be trusted, and the safe action did not come from the
//! policy, so an off-policy learner must not see it. The tick still is a
//! step of the episode: `t` advances (the gap in `t` tells a learner that
//! the next observation does not follow from the previous action), the
//! reward source is asked for the outcome (with `obs = None`), its reward
//! counts towards the episode's return and its done flags end the episode.
//! If the actuator refuses an action, the tick is counted
//! (`actuator_errors`) and treated the same way (nothing logged: the plant
//! may not have received the action).
//!
//! **Action history.** For a policy with an action-history record
//! ([`Policy::history_len`] `= k > 0`) the loop keeps the actions applied
//! in the episode's last `k` ticks and gives them to the policy with
//! `o_t`: the policy's clipped action on a tick the actuator took, the
//! safe action on every other tick and before the episode's first, exactly
//! as the trainer builds them in simulation. A learner rebuilds them from
//! the log the same way: logged ticks give their clipped action, gaps in
//! `t` give the safe action (a dropped record, a gap in `seq`, leaves
//! them unknown).
//!
//! **Guarantees.** `tick` never panics, blocks or allocates: the policy
//! refuses non-finite input instead of producing NaN, the logger drops (and
//! counts) when its queue is full, and every counter saturates.

use rand_core::RngCore;

use crate::error::ActError;
use crate::gaussian;
use crate::history::ActionHistory;
use crate::log::{Entry, EpisodeEnd, Logger, Record, Totals};
use crate::policy::{Policy, Step};

/// Reads the plant's observation.
pub trait Sensor<const OBS: usize> {
    /// Why a read failed (the loop only counts it).
    type Error;
    /// The current observation `o_t`.
    fn read(&mut self) -> Result<[f32; OBS], Self::Error>;
}

/// Drives the plant's inputs.
pub trait Actuator<const ACT: usize> {
    /// Why an action could not be applied (the loop only counts it).
    type Error;
    /// Applies `action`, already clipped to the policy's bounds.
    fn apply(&mut self, action: &[f32; ACT]) -> Result<(), Self::Error>;
}

/// What one step earned, and whether the episode ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome<const OBS: usize> {
    /// Reward `r_t`.
    pub reward: f32,
    /// A terminal state was reached (no bootstrapping).
    pub terminated: bool,
    /// The time limit was reached (bootstrap from the next observation).
    pub truncated: bool,
    /// The observation after the step, if known now (a simulator knows
    /// it; hardware reads it at the next tick). At an episode's end the
    /// loop logs it as an [`EpisodeEnd`].
    pub next_obs: Option<[f32; OBS]>,
}

impl<const OBS: usize> Outcome<OBS> {
    /// The episode ended (terminated or truncated).
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// Decides the reward and the end of episodes.
pub trait RewardSource<const OBS: usize, const ACT: usize> {
    /// Called once per tick, after the actuator: `obs` is `o_t` (`None` on a
    /// fault tick, see the [module docs](self)) and `applied` what the
    /// actuator was given.
    fn outcome(&mut self, obs: Option<&[f32; OBS]>, applied: &[f32; ACT]) -> Outcome<OBS>;
}

/// A sensor, an actuator and a reward source bundled into one plant
/// interface for [`ControlLoop::tick`].
#[derive(Debug, Clone, Default)]
pub struct Io<S, A, W> {
    /// Reads `o_t`.
    pub sensor: S,
    /// Applies the action.
    pub actuator: A,
    /// Rewards and episode ends.
    pub reward: W,
}

impl<S: Sensor<OBS>, A, W, const OBS: usize> Sensor<OBS> for Io<S, A, W> {
    type Error = S::Error;
    fn read(&mut self) -> Result<[f32; OBS], S::Error> {
        self.sensor.read()
    }
}

impl<S, A: Actuator<ACT>, W, const ACT: usize> Actuator<ACT> for Io<S, A, W> {
    type Error = A::Error;
    fn apply(&mut self, action: &[f32; ACT]) -> Result<(), A::Error> {
        self.actuator.apply(action)
    }
}

impl<S, A, W: RewardSource<OBS, ACT>, const OBS: usize, const ACT: usize> RewardSource<OBS, ACT>
    for Io<S, A, W>
{
    fn outcome(&mut self, obs: Option<&[f32; OBS]>, applied: &[f32; ACT]) -> Outcome<OBS> {
        self.reward.outcome(obs, applied)
    }
}

/// What happened in one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TickStatus {
    /// The policy acted and the transition was queued.
    Logged,
    /// The policy acted, but the log queue was full: the transition was
    /// dropped (and counted).
    LogFull,
    /// The sensor failed: the safe action was applied.
    SensorError,
    /// Observation element `index` was not finite: the safe action was
    /// applied.
    NonFiniteObservation {
        /// First non-finite element.
        index: usize,
    },
    /// The actuator refused the action (the policy's, or the safe one after
    /// a sensor fault; the sensor fault is counted too).
    ActuatorError,
}

/// The result of [`ControlLoop::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    /// What happened.
    pub status: TickStatus,
    /// The tick ended an episode (the next tick starts episode + 1 at
    /// `t = 0`; a simulator resets its plant now).
    pub done: bool,
}

/// Counters of a [`ControlLoop`]. All saturate at `u32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoopStats {
    /// Ticks run.
    pub ticks: u32,
    /// Transitions recorded (offered to the logger, queued or dropped).
    pub transitions: u32,
    /// Episodes completed.
    pub episodes: u32,
    /// Sum of the returns of completed episodes. Every tick's reward
    /// counts, fault ticks included: it is what the plant earned.
    pub return_sum: f64,
    /// Ticks with a non-finite observation.
    pub nonfinite_obs: u32,
    /// Ticks whose sensor read failed.
    pub sensor_errors: u32,
    /// Ticks whose actuator refused the action.
    pub actuator_errors: u32,
    /// Ticks on which the safe action was applied (sensor or non-finite
    /// faults).
    pub safe_actions: u32,
}

/// The control loop of one policy. Holds the episode counters and
/// statistics; the plant, generator and log are passed to each
/// [`tick`](Self::tick), so a firmware can own them where it likes (and a
/// simulator can reset its plant with the same generator between ticks).
#[derive(Debug, Clone)]
pub struct ControlLoop<'p, 'b, const OBS: usize, const ACT: usize, const HID: usize> {
    policy: &'p Policy<'b, OBS, ACT, HID>,
    deterministic: bool,
    /// `log π(μ|x) = −Σ_j (log σ_j + ½ log 2π)`, the density at the mean.
    mean_log_prob: f32,
    safe: [f32; ACT],
    /// The actions applied before this tick, for a policy that takes them
    /// as inputs ([`Policy::history_len`]).
    history: ActionHistory<ACT>,
    episode: u32,
    t: u32,
    episode_return: f64,
    stats: LoopStats,
}

fn inc(c: &mut u32) {
    *c = c.saturating_add(1);
}

impl<'p, 'b, const OBS: usize, const ACT: usize, const HID: usize>
    ControlLoop<'p, 'b, OBS, ACT, HID>
{
    /// A loop at episode 0, step 0. With `deterministic` the actuator gets
    /// the clipped mean `clip(μ(o_t))` and the log records `u_t = μ(o_t)`
    /// with the Gaussian's log-density at its mean; otherwise `u_t` is
    /// sampled with the generator given to `tick`.
    pub fn new(policy: &'p Policy<'b, OBS, ACT, HID>, deterministic: bool) -> Self {
        ControlLoop {
            policy,
            deterministic,
            mean_log_prob: -gaussian::log_normalizer(policy.log_std()),
            safe: policy.safe_action(),
            history: ActionHistory::new(policy.safe_action()),
            episode: 0,
            t: 0,
            episode_return: 0.0,
            stats: LoopStats::default(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &'p Policy<'b, OBS, ACT, HID> {
        self.policy
    }
    /// Current episode number.
    pub fn episode(&self) -> u32 {
        self.episode
    }
    /// Step of the next tick within the episode.
    pub fn t(&self) -> u32 {
        self.t
    }
    /// The counters.
    pub fn stats(&self) -> &LoopStats {
        &self.stats
    }

    /// The totals of the run so far, for an `End` frame.
    pub fn totals<const CAP: usize>(&self, log: &Logger<OBS, ACT, CAP>) -> Totals {
        Totals {
            entries: log.next_seq(),
            transitions: self.stats.transitions,
            episodes: self.stats.episodes,
            dropped: log.dropped(),
            nonfinite_obs: self.stats.nonfinite_obs,
            sensor_errors: self.stats.sensor_errors,
            actuator_errors: self.stats.actuator_errors,
            return_sum: self.stats.return_sum,
        }
    }

    /// The policy's action for `obs`: a sample, or the mean.
    fn decide<R: RngCore + ?Sized>(
        &self,
        obs: &[f32; OBS],
        rng: &mut R,
    ) -> Result<Step<ACT>, ActError> {
        if !self.deterministic {
            return self.policy.act_with(obs, &self.history, rng);
        }
        let action = self.policy.mean_with(obs, &self.history)?;
        let mut applied = action;
        let (low, high) = (self.policy.action_low(), self.policy.action_high());
        for ((v, &lo), &hi) in applied.iter_mut().zip(low).zip(high) {
            // The same clamp as `Policy::mean_applied`.
            *v = if *v < lo {
                lo
            } else if *v > hi {
                hi
            } else {
                *v
            };
        }
        Ok(Step {
            action,
            applied,
            log_prob: self.mean_log_prob,
        })
    }

    /// One control period: read, act, actuate, log. See the
    /// [module docs](self) for the order and for what happens on faults.
    pub fn tick<P, R, const CAP: usize>(
        &mut self,
        plant: &mut P,
        rng: &mut R,
        log: &mut Logger<OBS, ACT, CAP>,
    ) -> TickOutcome
    where
        P: Sensor<OBS> + Actuator<ACT> + RewardSource<OBS, ACT>,
        R: RngCore + ?Sized,
    {
        inc(&mut self.stats.ticks);
        let t = self.t;
        // `Ok((o_t, step))` when the policy acted, `Err(status)` on a fault.
        let decided = match plant.read() {
            Err(_) => {
                inc(&mut self.stats.sensor_errors);
                Err(TickStatus::SensorError)
            }
            Ok(obs) => match self.decide(&obs, rng) {
                Ok(step) => Ok((obs, step)),
                Err(e) => {
                    inc(&mut self.stats.nonfinite_obs);
                    let index = match e {
                        ActError::NonFiniteObservation { index } => index,
                        _ => 0,
                    };
                    Err(TickStatus::NonFiniteObservation { index })
                }
            },
        };
        let applied = match &decided {
            Ok((_, step)) => step.applied,
            Err(_) => {
                inc(&mut self.stats.safe_actions);
                self.safe
            }
        };
        let actuated = plant.apply(&applied).is_ok();
        if !actuated {
            inc(&mut self.stats.actuator_errors);
        }
        let obs = match &decided {
            Ok((obs, _)) => Some(obs),
            Err(_) => None,
        };
        let outcome = plant.outcome(obs, &applied);
        let done = outcome.done();
        // What the history remembers of this tick: the policy's action if
        // the actuator took it, else the safe action (a fault tick, or one
        // the actuator refused: logged as a gap either way).
        if self.policy.history_len() > 0 {
            self.history.push(match &decided {
                Ok(_) if actuated => applied,
                _ => self.safe,
            });
        }
        self.episode_return += outcome.reward as f64;

        let status = match decided {
            Err(status) => status,
            Ok(_) if !actuated => TickStatus::ActuatorError,
            Ok((obs, step)) => {
                inc(&mut self.stats.transitions);
                let rec = Record {
                    seq: 0, // assigned by the logger
                    episode: self.episode,
                    t,
                    obs,
                    action: step.action,
                    reward: outcome.reward,
                    terminated: outcome.terminated,
                    truncated: outcome.truncated,
                    log_prob: step.log_prob,
                    policy_id: self.policy.id(),
                };
                match log.push(Entry::Transition(rec)) {
                    Ok(_) => TickStatus::Logged,
                    Err(_) => TickStatus::LogFull,
                }
            }
        };

        if done {
            if let Some(obs) = outcome.next_obs {
                let end = EpisodeEnd {
                    seq: 0,
                    episode: self.episode,
                    t: t.saturating_add(1),
                    obs,
                };
                // A full queue drops (and counts) it like any entry.
                let _ = log.push(Entry::EpisodeEnd(end));
            }
            inc(&mut self.stats.episodes);
            self.stats.return_sum += self.episode_return;
            self.episode_return = 0.0;
            self.episode = self.episode.saturating_add(1);
            self.t = 0;
            self.history.reset(self.safe);
        } else {
            self.t = t.saturating_add(1);
        }
        TickOutcome { status, done }
    }
}
