//! Simulated plants in the device control loop, and the simulation entry
//! point shared by the firmware (under QEMU or on a board) and the host
//! (`tinyppo simulate`).
//!
//! [`PlantIo`] adapts a [`Plant`] to the loop's three roles: the sensor
//! reads the plant's current observation, the actuator steps the plant, the
//! reward source reports that step's reward, done flags and next
//! observation. [`run_simulated`] runs whole episodes through
//! [`ControlLoop`] and streams the log frames to a sink.
//!
//! **Determinism.** The byte stream is a pure function of the policy blob,
//! the plant, the plant code and the [`SimConfig`]: all math is f32 through
//! `libm`, and one [`DefaultRng`](crate::rng::DefaultRng),
//! `rng::seeded(cfg.seed)`, is used in this order: for each episode,
//! `plant.reset(rng)`, then per tick (stochastic only) the policy's two
//! `u32` per action pair. That is the order of the trainer's
//! `eval_blob(.., stochastic)`, so the two compute the same episodes. The
//! hidden-layer scratch width `HID` and the queue capacity `CAP` do not
//! change a byte: `run_simulated` drains the queue after every tick, and a
//! tick queues at most two entries (its transition and, at an episode's
//! end, the `EpisodeEnd`), so with `CAP ≥ 2` (checked at compile time)
//! nothing is ever dropped. A firmware with `HID = 64` and `CAP = 8` and the
//! host with `HID = 256` and `CAP = 64` write the same bytes.

use core::convert::Infallible;

use crate::control::{Actuator, ControlLoop, LoopStats, Outcome, RewardSource, Sensor};
use crate::log::{encode_end, encode_header, Header, Logger, LOG_VERSION, MAX_FRAME_LEN};
use crate::plants::{Plant, Transition, NAMES};
use crate::policy::Policy;
use crate::rng;

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Episodes to run.
    pub episodes: u32,
    /// Seed of the one generator used for resets and sampling.
    pub seed: u64,
    /// Apply the policy mean instead of sampling.
    pub deterministic: bool,
}

/// What a simulation did (the same numbers are in its `End` frame).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SimStats {
    /// Episodes completed.
    pub episodes: u32,
    /// Transitions recorded (sent or dropped).
    pub transitions: u32,
    /// Log entries dropped because the queue was full.
    pub dropped: u32,
    /// Mean episode return, `return_sum / episodes` (0 without episodes).
    pub mean_return: f32,
    /// Sum of the episode returns (f64).
    pub return_sum: f64,
    /// Ticks with a non-finite observation (the safe action was applied).
    pub nonfinite_obs: u32,
    /// Frames written to the sink.
    pub frames: u32,
    /// Bytes written to the sink.
    pub bytes: u32,
}

impl SimStats {
    /// The statistics of a finished run: the loop's counters, the
    /// logger's drop count, and the frames and bytes written to the sink.
    pub fn new(s: &LoopStats, dropped: u32, frames: u32, bytes: u32) -> Self {
        SimStats {
            episodes: s.episodes,
            transitions: s.transitions,
            dropped,
            mean_return: if s.episodes == 0 {
                0.0
            } else {
                (s.return_sum / s.episodes as f64) as f32
            },
            return_sum: s.return_sum,
            nonfinite_obs: s.nonfinite_obs,
            frames,
            bytes,
        }
    }
}

/// The log's plant code of a built-in plant name (its index in
/// [`NAMES`]): `pendulum` 0, `mountain-car` 1, `cartpole` 2, `dc-motor` 3.
pub fn plant_code(name: &str) -> Option<u8> {
    NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u8::try_from(i).ok())
}

/// The name of a built-in plant code.
pub fn plant_name(code: u8) -> Option<&'static str> {
    NAMES.get(code as usize).copied()
}

/// A [`Plant`] as the control loop's sensor, actuator and reward source.
///
/// `apply` steps the plant; `outcome` reports that step. The adapter
/// enforces the plant's time limit itself (`truncated` once
/// `MAX_EPISODE_STEPS` steps were taken, at least 1), so an episode always
/// ends even for a plant that never says so.
#[derive(Debug)]
pub struct PlantIo<'a, P, const OBS: usize, const ACT: usize> {
    plant: &'a mut P,
    obs: [f32; OBS],
    last: Option<Transition<OBS>>,
    steps: u32,
}

impl<'a, P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize> PlantIo<'a, P, OBS, ACT> {
    /// Wraps `plant`; call [`reset`](Self::reset) before the first tick.
    pub fn new(plant: &'a mut P) -> Self {
        PlantIo {
            plant,
            obs: [0.0; OBS],
            last: None,
            steps: 0,
        }
    }

    /// Starts an episode: `plant.reset(rng)`.
    pub fn reset<R: rand_core::RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; OBS] {
        self.obs = self.plant.reset(rng);
        self.last = None;
        self.steps = 0;
        self.obs
    }

    fn limit() -> u32 {
        if P::MAX_EPISODE_STEPS == 0 {
            1
        } else {
            P::MAX_EPISODE_STEPS
        }
    }
}

impl<P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize> Sensor<OBS>
    for PlantIo<'_, P, OBS, ACT>
{
    type Error = Infallible;
    fn read(&mut self) -> Result<[f32; OBS], Infallible> {
        Ok(self.obs)
    }
}

impl<P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize> Actuator<ACT>
    for PlantIo<'_, P, OBS, ACT>
{
    type Error = Infallible;
    fn apply(&mut self, action: &[f32; ACT]) -> Result<(), Infallible> {
        self.steps = self.steps.saturating_add(1);
        let mut tr = self.plant.step(action);
        if self.steps >= Self::limit() {
            tr.truncated = true;
        }
        self.obs = tr.obs;
        self.last = Some(tr);
        Ok(())
    }
}

impl<P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize> RewardSource<OBS, ACT>
    for PlantIo<'_, P, OBS, ACT>
{
    fn outcome(&mut self, _obs: Option<&[f32; OBS]>, _applied: &[f32; ACT]) -> Outcome<OBS> {
        match self.last.take() {
            Some(tr) => Outcome {
                reward: tr.reward,
                terminated: tr.terminated,
                truncated: tr.truncated,
                next_obs: Some(tr.obs),
            },
            // No step since the last outcome (the actuator cannot fail
            // here, so only a caller outside the loop sees this).
            None => Outcome {
                reward: 0.0,
                terminated: false,
                truncated: self.steps >= Self::limit(),
                next_obs: None,
            },
        }
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

/// Runs `cfg.episodes` episodes of `plant` under `policy` through
/// [`ControlLoop`] and writes the log stream to `sink`, one call per frame.
///
/// The stream is: a `Header` frame (`plant_id` is its plant code, see
/// [`plant_code`]); for each episode the transitions, then its `EpisodeEnd`
/// with the final observation; a copy of the header before every episode
/// after the first (so a reader that lost the first one still learns the
/// dimensions); finally an `End` frame with the totals. The queue holds
/// `CAP ≥ 2` entries and is drained after every tick, so nothing is dropped.
/// See the [module docs](self) for what the bytes depend on.
///
/// Never panics. Uses about `MAX_FRAME_LEN` (2 KiB) of stack for the frame
/// buffer plus the queue (`CAP` records).
pub fn run_simulated<P, const OBS: usize, const ACT: usize, const HID: usize, const CAP: usize>(
    policy: &Policy<'_, OBS, ACT, HID>,
    plant: &mut P,
    plant_id: u8,
    cfg: &SimConfig,
    sink: &mut impl FnMut(&[u8]),
) -> SimStats
where
    P: Plant<OBS, ACT>,
{
    const {
        assert!(
            CAP >= 2,
            "run_simulated needs CAP >= 2 so that no entry is dropped"
        )
    };
    run_simulated_draining::<P, OBS, ACT, HID, CAP>(policy, plant, plant_id, cfg, 1, sink)
}

/// [`run_simulated`] with the queue drained only every `drain_every` ticks
/// (and before each episode's header): models a link slower than the
/// control loop. With a small `CAP`, entries are dropped, counted and
/// reported in `Dropped` frames and in the totals. `drain_every = 0` counts
/// as 1.
pub fn run_simulated_draining<
    P,
    const OBS: usize,
    const ACT: usize,
    const HID: usize,
    const CAP: usize,
>(
    policy: &Policy<'_, OBS, ACT, HID>,
    plant: &mut P,
    plant_id: u8,
    cfg: &SimConfig,
    drain_every: u32,
    sink: &mut impl FnMut(&[u8]),
) -> SimStats
where
    P: Plant<OBS, ACT>,
{
    let mut pace = DrainEvery(drain_every.max(1));
    run_paced::<P, OBS, ACT, HID, CAP>(policy, plant, plant_id, cfg, &mut pace, sink)
}

/// When the log queue is drained and how ticks are spaced in time: the one
/// difference between the host simulation (as fast as possible) and a
/// firmware loop paced by a timer. Every hook has a do-nothing default.
pub trait Pace {
    /// Before the first tick of each episode (after the plant's reset).
    fn episode_start(&mut self) {}
    /// After tick `n` (1-based, counted over the run): drain the queue now?
    fn drain_after(&mut self, n: u32) -> bool {
        let _ = n;
        true
    }
    /// After the tick and its frames: wait for the next period.
    fn wait(&mut self) {}
}

/// Drains the queue every `.0` ticks, never waits.
struct DrainEvery(u32);

impl Pace for DrainEvery {
    fn drain_after(&mut self, n: u32) -> bool {
        n % self.0 == 0
    }
}

/// The frame sequence of [`run_simulated`] with the timing of `pace`: the
/// shared driver of the host simulation and of a firmware control loop
/// paced by a timer (which implements [`Pace`]). Same stream, same
/// statistics; never panics.
pub fn run_paced<P, const OBS: usize, const ACT: usize, const HID: usize, const CAP: usize>(
    policy: &Policy<'_, OBS, ACT, HID>,
    plant: &mut P,
    plant_id: u8,
    cfg: &SimConfig,
    pace: &mut impl Pace,
    sink: &mut impl FnMut(&[u8]),
) -> SimStats
where
    P: Plant<OBS, ACT>,
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
        plant: plant_id,
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
    let mut io = PlantIo::new(plant);
    let mut ticks = 0u32;
    for episode in 0..cfg.episodes {
        if episode > 0 {
            // The header again, after what is left of the previous episode.
            out.drain(&mut log, &mut buf);
            let n = encode_header(&header, &mut buf).ok();
            out.emit(n.and_then(|n| buf.get(..n)));
        }
        io.reset(&mut rng);
        pace.episode_start();
        loop {
            let tick = ctl.tick(&mut io, &mut rng, &mut log);
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

    SimStats::new(ctl.stats(), log.dropped(), out.frames, out.bytes)
}
