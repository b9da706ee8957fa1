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
//! check      o_t finite, within the safety bounds, not stuck (`safety`)
//! u_t      ~ N(μ(o_t), σ²)          (or u_t = μ(o_t) when deterministic)
//! a_t      = clip(u_t, low, high)
//! applied  = limit(a_t)             the safety limits and rate limit → actuator.apply(applied)
//! outcome  = reward.outcome(Some(o_t), applied)
//! log        (seq, episode, t, o_t, u_t unclipped, r_t, terminated, truncated,
//!             log π(u_t|o_t), policy id)
//! ```
//!
//! **Faults.** If the sensor fails, any element of `o_t` is NaN or ±∞, an
//! e-stop is latched (an observation left the blob's safety bounds, this
//! tick or earlier in the episode), the sensor is stuck, or the boot
//! self-test failed ([`ControlLoop::self_tested`]), the loop applies
//! [`Policy::safe_action`] instead, counts the tick and logs **no**
//! transition: its observation cannot be trusted (or the policy must not
//! act), and the safe action did not come from the policy, so an
//! off-policy learner must not see it. The first tick of each fault is
//! logged as an [`Event`] frame (code, tick, element, value);
//! a fault that lasts is not logged again. The tick still is a step of
//! the episode: `t` advances (the gap in `t` tells a learner that the next
//! observation does not follow from the previous action), the reward
//! source is asked for the outcome (with `obs = None`), its reward counts
//! towards the episode's return and its done flags end the episode. If the
//! actuator refuses an action, the tick is counted (`actuator_errors`) and
//! treated the same way (nothing logged: the plant may not have received
//! the action). [`TickOutcome::healthy`] says when a watchdog may be
//! kicked: the loop chose the action on purpose and the actuator took it.
//!
//! **Action history.** For a policy with an action-history record
//! ([`Policy::history_len`] `= k > 0`) the loop keeps the actions applied
//! in the episode's last `k` ticks and gives them to the policy with
//! `o_t`: the policy's clipped action `a_t` (before the safety limits) on
//! a tick the actuator took, the
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
use crate::log::{event, Entry, EpisodeEnd, Event, Logger, Record, SafetyTotals, Totals};
use crate::math::{self, Sum};
use crate::policy::{Policy, Step};
use crate::safety::{Guard, Verdict};
use crate::selftest::SelfTestReport;

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
    /// An e-stop is latched (observation `index` left its safety bounds,
    /// on this tick or earlier in the episode): the safe action was
    /// applied.
    EStop {
        /// The observation element that tripped it.
        index: usize,
    },
    /// The sensor reading has not changed while the actuator was driven:
    /// the safe action was applied.
    StuckSensor,
    /// The boot self-test failed: the safe action was applied.
    SelfTestFailed,
    /// The actuator refused the action (the policy's, or the safe one after
    /// a sensor fault; the sensor fault is counted too).
    ActuatorError,
}

impl TickStatus {
    /// The loop chose this tick's action on purpose: the policy acted, or
    /// the safety layer holds the safe action (an e-stop, a failed
    /// self-test). Not on faults it could not avoid (sensor, non-finite
    /// observation, stuck sensor, actuator).
    pub fn is_deliberate(&self) -> bool {
        matches!(
            self,
            TickStatus::Logged
                | TickStatus::LogFull
                | TickStatus::EStop { .. }
                | TickStatus::SelfTestFailed
        )
    }
}

/// The result of [`ControlLoop::tick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickOutcome {
    /// What happened.
    pub status: TickStatus,
    /// The tick ended an episode (the next tick starts episode + 1 at
    /// `t = 0`; a simulator resets its plant now).
    pub done: bool,
    /// The tick was deliberate ([`TickStatus::is_deliberate`]) and the
    /// actuator took its action: kick the watchdog.
    pub healthy: bool,
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
    /// counts, fault ticks included: it is what the plant earned. Summed
    /// in f32 with compensation ([`math::Sum`]: each episode's rewards,
    /// then the episodes), so within about one f32 rounding of the exact
    /// sum; f64 only to keep the `End` frame's field.
    pub return_sum: f64,
    /// The same sum as summed, in f32 ([`return_sum`](Self::return_sum)
    /// is it widened).
    pub return_sum_f32: f32,
    /// Ticks with a non-finite observation.
    pub nonfinite_obs: u32,
    /// Ticks whose sensor read failed.
    pub sensor_errors: u32,
    /// Ticks whose actuator refused the action.
    pub actuator_errors: u32,
    /// Ticks on which the safe action was applied (every fault, e-stop,
    /// stuck sensor and failed self-test).
    pub safe_actions: u32,
    /// The safety layer's tick counts.
    pub safety: SafetyTotals,
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
    /// The safety layer (limits, e-stop, stuck sensor).
    guard: Guard<OBS, ACT>,
    /// A failed self-test holds the safe action for the whole run.
    inhibited: bool,
    inhibit_logged: bool,
    /// The event code of the previous tick's fault, if it had one.
    last_fault: Option<u8>,
    episode: u32,
    t: u32,
    episode_return: Sum,
    /// The completed episodes' returns ([`LoopStats::return_sum`] is this,
    /// widened).
    return_total: Sum,
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
            guard: Guard::new(policy.limits(), policy.safe_action()),
            inhibited: false,
            inhibit_logged: false,
            last_fault: None,
            episode: 0,
            t: 0,
            episode_return: Sum::ZERO,
            return_total: Sum::ZERO,
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

    /// An e-stop is latched (see [`safety`](crate::safety)).
    pub fn estopped(&self) -> bool {
        self.guard.estopped()
    }

    /// Releases a latched e-stop before the episode ends (an operator's
    /// reset button); the next tick checks the observation afresh.
    pub fn release_estop(&mut self) {
        self.guard.release();
    }

    /// Takes the boot self-test's result: if it failed, every later tick
    /// applies the safe action (an `Event` at the first, the ticks counted
    /// in `inhibited_ticks`).
    pub fn self_tested(&mut self, report: &SelfTestReport) {
        if !report.passed() {
            self.inhibited = true;
        }
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
            safety: self.stats.safety,
        }
    }

    /// The policy's action for `obs`, or why the safe action applies: a
    /// non-finite observation, an e-stop, a stuck sensor, a failed
    /// self-test (checked in this order).
    fn decide<R: RngCore + ?Sized>(
        &mut self,
        obs: &[f32; OBS],
        rng: &mut R,
    ) -> Result<Step<ACT>, Fault> {
        if let Some(index) = obs.iter().position(|v| !v.is_finite()) {
            inc(&mut self.stats.nonfinite_obs);
            let mut f = Fault::new(
                TickStatus::NonFiniteObservation { index },
                event::NONFINITE_OBS,
            );
            f.index = index as u16;
            return Err(f);
        }
        match self.guard.check(obs) {
            Verdict::Clear => {}
            Verdict::EStop {
                index,
                value,
                onset,
            } => {
                inc(&mut self.stats.safety.estop_ticks);
                return Err(Fault {
                    status: TickStatus::EStop { index },
                    code: event::ESTOP,
                    index: index as u16,
                    value,
                    onset,
                    repeats_as_run: false,
                });
            }
            Verdict::Stuck { repeats, onset } => {
                inc(&mut self.stats.safety.stuck_ticks);
                return Err(Fault {
                    status: TickStatus::StuckSensor,
                    code: event::STUCK_SENSOR,
                    index: 0,
                    value: repeats as f32,
                    onset,
                    repeats_as_run: false,
                });
            }
        }
        if self.inhibited {
            inc(&mut self.stats.safety.inhibited_ticks);
            let onset = !self.inhibit_logged;
            self.inhibit_logged = true;
            return Err(Fault {
                status: TickStatus::SelfTestFailed,
                code: event::SELF_TEST_FAILED,
                index: 0,
                value: 0.0,
                onset,
                repeats_as_run: false,
            });
        }
        let step = if self.deterministic {
            self.policy
                .mean_with(obs, &self.history)
                .map(|action| Step {
                    action,
                    // The same clamp as `Policy::mean_applied`.
                    applied: self.policy.clipped(&action),
                    log_prob: self.mean_log_prob,
                })
        } else {
            self.policy.act_with(obs, &self.history, rng)
        };
        step.map_err(|e| {
            // Finite input is never refused; count it as non-finite if it were.
            inc(&mut self.stats.nonfinite_obs);
            let index = match e {
                ActError::NonFiniteObservation { index } => index,
                _ => 0,
            };
            Fault::new(
                TickStatus::NonFiniteObservation { index },
                event::NONFINITE_OBS,
            )
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
        // `Ok((o_t, step))` when the policy acted, `Err(fault)` otherwise.
        let decided = match plant.read() {
            Err(_) => {
                inc(&mut self.stats.sensor_errors);
                Err(Fault::new(TickStatus::SensorError, event::SENSOR_ERROR))
            }
            Ok(obs) => self.decide(&obs, rng).map(|step| (obs, step)),
        };
        let applied = match &decided {
            Ok((_, step)) => {
                let limited = self.guard.limit(&step.applied);
                if limited != step.applied {
                    inc(&mut self.stats.safety.limited_ticks);
                }
                limited
            }
            Err(_) => {
                inc(&mut self.stats.safe_actions);
                self.safe
            }
        };
        let actuated = plant.apply(&applied).is_ok();
        self.guard.applied(&applied);
        if !actuated {
            inc(&mut self.stats.actuator_errors);
        }
        let obs = match &decided {
            Ok((obs, _)) => Some(obs),
            Err(_) => None,
        };
        let outcome = plant.outcome(obs, &applied);
        let done = outcome.done();
        // What the history remembers of this tick: the policy's clipped
        // action if the actuator took it, else the safe action (a fault
        // tick, or one the actuator refused: logged as a gap either way).
        if self.policy.history_len() > 0 {
            self.history.push(match &decided {
                Ok((_, step)) if actuated => step.applied,
                _ => self.safe,
            });
        }
        self.episode_return.add(outcome.reward);

        // The event of this tick, if a fault starts on it (a fault that
        // lasts is logged once, at its first tick).
        let fault = match &decided {
            Err(f) => Some(*f),
            Ok(_) if !actuated => {
                Some(Fault::new(TickStatus::ActuatorError, event::ACTUATOR_ERROR))
            }
            Ok(_) => None,
        };
        let code = fault.map(|f| f.code);
        if let Some(f) = fault {
            if f.onset || (f.repeats_as_run && self.last_fault != code) {
                let _ = log.push(Entry::Event(Event {
                    seq: 0,
                    episode: self.episode,
                    t,
                    code: f.code,
                    index: f.index,
                    value: f.value,
                }));
            }
        }
        self.last_fault = code;

        let status = match decided {
            Err(f) => f.status,
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
            self.return_total.add(self.episode_return.value());
            self.stats.return_sum_f32 = self.return_total.value();
            self.stats.return_sum = math::widen(self.stats.return_sum_f32);
            self.episode_return = Sum::ZERO;
            self.episode = self.episode.saturating_add(1);
            self.t = 0;
            self.history.reset(self.safe);
            self.guard.begin_episode();
            self.last_fault = None;
        } else {
            self.t = t.saturating_add(1);
        }
        TickOutcome {
            status,
            done,
            healthy: actuated && status.is_deliberate(),
        }
    }
}

/// Why a tick applied the safe action, and what its event says.
#[derive(Debug, Clone, Copy)]
struct Fault {
    status: TickStatus,
    code: u8,
    index: u16,
    value: f32,
    /// Log the event on this tick whatever came before (an e-stop or
    /// stuck sensor that starts now).
    onset: bool,
    /// Log the event when the previous tick had another fault (or none):
    /// sensor, non-finite and actuator faults, which have no state.
    repeats_as_run: bool,
}

impl Fault {
    fn new(status: TickStatus, code: u8) -> Self {
        Fault {
            status,
            code,
            index: 0,
            value: 0.0,
            onset: false,
            repeats_as_run: true,
        }
    }
}
