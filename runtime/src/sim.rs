//! Simulated plants in the device control loop, and the simulation entry
//! point shared by the firmware (under QEMU) and the host (`tinyppo
//! simulate`).
//!
//! [`PlantIo`] adapts a [`Plant`] to the [`driver`](crate::driver)'s
//! [`Rig`]: the sensor reads the plant's current observation, the actuator
//! steps the plant, the reward source reports that step's reward, done
//! flags and next observation, and each episode begins with `plant.reset`.
//! [`run_simulated`] runs whole episodes through the driver, as fast as
//! possible, and streams the log frames to a sink.
//!
//! **Determinism.** The byte stream is a pure function of the policy blob,
//! the plant (its type, parameters and code) and the [`RunConfig`]: all
//! math is f32 through `libm`, and one [`DefaultRng`](crate::rng::DefaultRng),
//! `rng::seeded(cfg.seed)`, is used in this order: for each episode,
//! `plant.reset(rng)`, then per tick (stochastic only) the policy's two
//! `u32` per action pair. That is the order of the trainer's
//! `eval_blob(.., stochastic)`, so the two compute the same episodes. The
//! hidden-layer scratch width `HID` and the queue capacity `CAP` do not
//! change a byte: `run_simulated` drains the queue after every tick, and a
//! tick queues at most two entries (its transition or event and, at an episode's
//! end, the `EpisodeEnd`), so with `CAP ≥ 2` (checked at compile time)
//! nothing is ever dropped. A firmware with `HID = 64` and `CAP = 8` and the
//! host with `HID = 256` and `CAP = 64` write the same bytes.

use core::convert::Infallible;

use crate::control::{Actuator, Outcome, RewardSource, Sensor};
use crate::driver::{self, DrainEvery, Rig, Unpaced};
pub use crate::driver::{Pace, RunConfig, RunStats};
use crate::plants::{Plant, Transition};
use crate::policy::Policy;

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

impl<P: Plant<OBS, ACT>, const OBS: usize, const ACT: usize> Rig<OBS, ACT>
    for PlantIo<'_, P, OBS, ACT>
{
    /// `plant.reset(rng)`.
    fn begin_episode<R: rand_core::RngCore + ?Sized>(&mut self, rng: &mut R) {
        self.reset(rng);
    }
}

/// Runs `cfg.episodes` episodes of `plant` under `policy` through the
/// [driver](crate::driver::run), as fast as possible, and writes the log
/// stream to `sink`, one call per frame. The header's plant code is
/// `P::CODE`.
///
/// The stream is: a `Header` frame; for each episode the transitions, then
/// its `EpisodeEnd` with the final observation; a copy of the header before
/// every episode after the first; finally an `End` frame with the totals.
/// The queue holds `CAP ≥ 2` entries and is drained after every tick, so
/// nothing is dropped. See the [module docs](self) for what the bytes
/// depend on.
///
/// Never panics. Uses about `MAX_FRAME_LEN` (2 KiB) of stack for the frame
/// buffer plus the queue (`CAP` records).
pub fn run_simulated<P, const OBS: usize, const ACT: usize, const HID: usize, const CAP: usize>(
    policy: &Policy<'_, OBS, ACT, HID>,
    plant: &mut P,
    cfg: &RunConfig,
    sink: &mut impl FnMut(&[u8]),
) -> RunStats
where
    P: Plant<OBS, ACT>,
{
    const {
        assert!(
            CAP >= 2,
            "run_simulated needs CAP >= 2 so that no entry is dropped"
        )
    };
    run_simulated_paced::<P, OBS, ACT, HID, CAP>(policy, plant, cfg, &mut Unpaced, sink)
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
    cfg: &RunConfig,
    drain_every: u32,
    sink: &mut impl FnMut(&[u8]),
) -> RunStats
where
    P: Plant<OBS, ACT>,
{
    let mut pace = DrainEvery(drain_every);
    run_simulated_paced::<P, OBS, ACT, HID, CAP>(policy, plant, cfg, &mut pace, sink)
}

/// [`run_simulated`] with the timing of `pace`: a firmware that paces the
/// simulated plant by a timer (the stream is the same).
pub fn run_simulated_paced<
    P,
    const OBS: usize,
    const ACT: usize,
    const HID: usize,
    const CAP: usize,
>(
    policy: &Policy<'_, OBS, ACT, HID>,
    plant: &mut P,
    cfg: &RunConfig,
    pace: &mut impl Pace,
    sink: &mut impl FnMut(&[u8]),
) -> RunStats
where
    P: Plant<OBS, ACT>,
{
    let mut io = PlantIo::new(plant);
    driver::run::<_, OBS, ACT, HID, CAP>(policy, &mut io, P::CODE, cfg, pace, sink)
}
