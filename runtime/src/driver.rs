//! The board-independent firmware driver: whole episodes of the control
//! loop and the log stream they produce, over any plant interface.
//!
//! A firmware — under QEMU with a simulated plant, or on a board with a
//! real sensor and actuator — is the same loop:
//!
//! ```text
//! Header
//! SelfTest (the blob's self-test vectors checked on this core, if it has them)
//! for each episode:  rig.begin_episode(rng); pace.episode_start()
//!                    loop { ControlLoop::tick; drain the log if pace says so; pace.wait() }
//!                    until the tick ends the episode
//! End (the run's totals)
//! ```
//!
//! What differs from board to board is behind four small traits:
//!
//! - [`Rig`]: the plant as the loop sees it — a [`Sensor`], an [`Actuator`]
//!   and a [`RewardSource`], plus what happens before an episode. A
//!   simulated plant is one rig ([`sim::PlantIo`](crate::sim::PlantIo): it
//!   resets the plant with the run's generator); `control::Io` of a real
//!   sensor, actuator and cost function is another (nothing to reset).
//! - [`Pace`]: when ticks happen and when the log queue is drained (as fast
//!   as possible on the host; one tick per timer period on a board).
//! - the sink, `FnMut(&[u8])`: where frames go (a UART, a `Vec`).
//! - [`Watchdog`]: kicked after every healthy tick
//!   ([`TickOutcome::healthy`](crate::control::TickOutcome)); a board
//!   wires it to its independent watchdog, so a loop that hangs, or a
//!   sensor or actuator that keeps failing, resets the board. [`run`] has
//!   none; [`run_with`] takes one.
//!
//! **Self-test.** Before the first episode the driver runs the blob's
//! self-test vectors ([`selftest`]) and logs the result.
//! If it failed, the loop applies only the safe action for the whole run
//! (the ticks are counted, the first logs an `Event`).
//!
//! **Determinism.** The byte stream is a pure function of the policy blob,
//! the rig's behaviour, the plant code and the [`RunConfig`]: one
//! generator, `rng::seeded(cfg.seed)`, is used in this order: for each
//! episode, `rig.begin_episode(rng)`, then per tick (stochastic only) the
//! policy's two `u32` per action pair. With a [`Pace`] that drains after
//! every tick and a queue of `CAP ≥ 2` entries nothing is ever dropped (a
//! tick queues at most a transition or an event, and an episode end), so neither the
//! hidden-layer scratch width `HID` nor `CAP` changes a byte.
//!
//! **Guarantees.** [`run`] never panics and never allocates; it blocks only
//! where the sink or [`Pace::wait`] blocks. Frames that do not fit are
//! impossible (the frame buffer is `MAX_FRAME_LEN`); a full queue drops
//! and counts entries, reported in `Dropped` frames and the totals.

use rand_core::RngCore;

use crate::control::{Actuator, ControlLoop, Io, LoopStats, RewardSource, Sensor};
use crate::log::{
    encode_end, encode_header, encode_self_test, event, Entry, Event, Header, Logger, SafetyTotals,
    LOG_VERSION, MAX_FRAME_LEN,
};
use crate::policy::Policy;
use crate::rng;
use crate::selftest::{self, SelfTestReport};

/// A plant as the driver sees it: sensor, actuator and reward source, and
/// what happens before each episode.
pub trait Rig<const OBS: usize, const ACT: usize>:
    Sensor<OBS> + Actuator<ACT> + RewardSource<OBS, ACT>
{
    /// Before an episode's first tick, with the run's generator: a
    /// simulated plant resets itself; hardware may drive to a start
    /// position, or do nothing (the default).
    fn begin_episode<R: RngCore + ?Sized>(&mut self, rng: &mut R) {
        let _ = rng;
    }
}

/// A real sensor, actuator and cost function: episodes follow each other
/// without a reset (the reward source ends them).
impl<S, A, W, const OBS: usize, const ACT: usize> Rig<OBS, ACT> for Io<S, A, W>
where
    S: Sensor<OBS>,
    A: Actuator<ACT>,
    W: RewardSource<OBS, ACT>,
{
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunConfig {
    /// Episodes to run.
    pub episodes: u32,
    /// Seed of the one generator used for episode starts and sampling.
    pub seed: u64,
    /// Apply the policy mean instead of sampling.
    pub deterministic: bool,
}

/// What a run did (the same numbers are in its `End` frame).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunStats {
    /// Episodes completed.
    pub episodes: u32,
    /// Transitions recorded (sent or dropped).
    pub transitions: u32,
    /// Log entries dropped because the queue was full.
    pub dropped: u32,
    /// Mean episode return, `return_sum / episodes` (0 without episodes).
    pub mean_return: f32,
    /// Sum of the episode returns ([`LoopStats::return_sum`]).
    pub return_sum: f64,
    /// Ticks with a non-finite observation (the safe action was applied).
    pub nonfinite_obs: u32,
    /// Ticks whose sensor read failed (the safe action was applied).
    pub sensor_errors: u32,
    /// Ticks whose actuator refused the action.
    pub actuator_errors: u32,
    /// Frames written to the sink.
    pub frames: u32,
    /// Bytes written to the sink.
    pub bytes: u32,
    /// The safety layer's tick counts.
    pub safety: SafetyTotals,
    /// The boot self-test's result (`None`: the blob has no vectors).
    pub self_test: Option<SelfTestReport>,
}

impl RunStats {
    /// The statistics of a finished run: the loop's counters, the
    /// logger's drop count, and the frames and bytes written to the sink.
    pub fn new(s: &LoopStats, dropped: u32, frames: u32, bytes: u32) -> Self {
        RunStats {
            episodes: s.episodes,
            transitions: s.transitions,
            dropped,
            mean_return: if s.episodes == 0 {
                0.0
            } else {
                s.return_sum_f32 / s.episodes as f32
            },
            return_sum: s.return_sum,
            nonfinite_obs: s.nonfinite_obs,
            sensor_errors: s.sensor_errors,
            actuator_errors: s.actuator_errors,
            frames,
            bytes,
            safety: s.safety,
            self_test: None,
        }
    }
}

/// When the log queue is drained and how ticks are spaced in time: the one
/// difference between the host simulation (as fast as possible) and a
/// firmware loop paced by a timer. Every hook has a do-nothing default.
pub trait Pace {
    /// Before the first tick of each episode (after the rig's
    /// `begin_episode`).
    fn episode_start(&mut self) {}
    /// After tick `n` (1-based, counted over the run): drain the queue now?
    fn drain_after(&mut self, n: u32) -> bool {
        let _ = n;
        true
    }
    /// After the tick and its frames: wait for the next period.
    fn wait(&mut self) {}
}

/// A watchdog the driver kicks after every healthy tick: a board's
/// independent watchdog (the STM32's IWDG), started before the run with a
/// timeout of a few control periods.
pub trait Watchdog {
    /// Restarts the watchdog's countdown.
    fn feed(&mut self);
    /// This watchdog reset the board before the run (a board reads its
    /// reset-cause register at boot): the driver logs a `WATCHDOG_RESET`
    /// event at the run's first tick.
    fn caused_last_reset(&self) -> bool {
        false
    }
}

/// No watchdog (the host simulation, QEMU).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWatchdog;

impl Watchdog for NoWatchdog {
    fn feed(&mut self) {}
}

/// Ticks as fast as the core goes, draining the log after every tick: the
/// host simulation, and a firmware that needs no timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unpaced;

impl Pace for Unpaced {}

/// Drains the queue every `n` ticks, never waits: a link slower than the
/// control loop (`0` counts as 1).
#[derive(Debug, Clone, Copy)]
pub struct DrainEvery(pub u32);

impl Pace for DrainEvery {
    fn drain_after(&mut self, n: u32) -> bool {
        n % self.0.max(1) == 0
    }
}

/// Writes frames to the sink and counts them.
struct Out<'s, F: FnMut(&[u8])> {
    sink: &'s mut F,
    frames: u32,
    bytes: u32,
}

impl<F: FnMut(&[u8])> Out<'_, F> {
    fn emit(&mut self, frame: Option<&[u8]>) {
        if let Some(f) = frame {
            (self.sink)(f);
            self.frames = self.frames.saturating_add(1);
            self.bytes = self
                .bytes
                .saturating_add(u32::try_from(f.len()).unwrap_or(u32::MAX));
        }
    }

    fn drain<const OBS: usize, const ACT: usize, const CAP: usize>(
        &mut self,
        log: &mut Logger<OBS, ACT, CAP>,
        buf: &mut [u8],
    ) {
        // `buf` holds any frame, so `encode_next` cannot fail; stop if it did.
        while let Ok(Some(n)) = log.encode_next(buf) {
            self.emit(buf.get(..n));
        }
    }
}

/// Runs `cfg.episodes` episodes of `policy` on `rig` through
/// [`ControlLoop`] with the timing of `pace`, and writes the log stream to
/// `sink`, one call per frame.
///
/// The stream is: a `Header` frame (`plant` is `plant_code`); for each
/// episode its transitions, then (if the rig knows the final observation)
/// its `EpisodeEnd`, with the header repeated before every episode after
/// the first (so a reader that lost the first one still learns the
/// dimensions); finally an `End` frame with the totals. See the
/// [module docs](self) for what the bytes depend on.
///
/// Uses about `MAX_FRAME_LEN` (2 KiB) of stack for the frame buffer plus
/// the queue (`CAP` records).
pub fn run<G, const OBS: usize, const ACT: usize, const HID: usize, const CAP: usize>(
    policy: &Policy<'_, OBS, ACT, HID>,
    rig: &mut G,
    plant_code: u8,
    cfg: &RunConfig,
    pace: &mut impl Pace,
    sink: &mut impl FnMut(&[u8]),
) -> RunStats
where
    G: Rig<OBS, ACT>,
{
    run_with::<G, OBS, ACT, HID, CAP>(policy, rig, plant_code, cfg, pace, &mut NoWatchdog, sink)
}

/// [`run`] with a [`Watchdog`], kicked after every healthy tick.
pub fn run_with<G, const OBS: usize, const ACT: usize, const HID: usize, const CAP: usize>(
    policy: &Policy<'_, OBS, ACT, HID>,
    rig: &mut G,
    plant_code: u8,
    cfg: &RunConfig,
    pace: &mut impl Pace,
    watchdog: &mut impl Watchdog,
    sink: &mut impl FnMut(&[u8]),
) -> RunStats
where
    G: Rig<OBS, ACT>,
{
    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut out = Out {
        sink,
        frames: 0,
        bytes: 0,
    };
    let header = Header {
        log_version: LOG_VERSION,
        policy_id: policy.id(),
        plant: plant_code,
        // `Policy` dims are 1..=256 (checked at compile time).
        obs_dim: u16::try_from(OBS).unwrap_or(u16::MAX),
        act_dim: u16::try_from(ACT).unwrap_or(u16::MAX),
        seed: cfg.seed,
        deterministic: cfg.deterministic,
    };
    let n = encode_header(&header, &mut buf).ok();
    out.emit(n.and_then(|n| buf.get(..n)));

    let mut rng = rng::seeded(cfg.seed);
    let mut log = Logger::<OBS, ACT, CAP>::new();
    let mut ctl = ControlLoop::new(policy, cfg.deterministic);
    let report = selftest::run(policy);
    if let Some(r) = &report {
        let n = encode_self_test(r, &mut buf).ok();
        out.emit(n.and_then(|n| buf.get(..n)));
        ctl.self_tested(r);
    }
    if watchdog.caused_last_reset() {
        let _ = log.push(Entry::Event(Event {
            seq: 0,
            episode: 0,
            t: 0,
            code: event::WATCHDOG_RESET,
            index: 0,
            value: 0.0,
        }));
    }
    let mut ticks = 0u32;
    for episode in 0..cfg.episodes {
        if episode > 0 {
            // The header again, after what is left of the previous episode.
            out.drain(&mut log, &mut buf);
            let n = encode_header(&header, &mut buf).ok();
            out.emit(n.and_then(|n| buf.get(..n)));
        }
        rig.begin_episode(&mut rng);
        pace.episode_start();
        loop {
            let tick = ctl.tick(rig, &mut rng, &mut log);
            if tick.healthy {
                watchdog.feed();
            }
            ticks = ticks.wrapping_add(1);
            if pace.drain_after(ticks) {
                out.drain(&mut log, &mut buf);
            }
            pace.wait();
            if tick.done {
                break;
            }
        }
    }
    out.drain(&mut log, &mut buf);
    let totals = ctl.totals(&log);
    let n = encode_end(&totals, &mut buf).ok();
    out.emit(n.and_then(|n| buf.get(..n)));

    RunStats {
        self_test: report,
        ..RunStats::new(ctl.stats(), log.dropped(), out.frames, out.bytes)
    }
}
