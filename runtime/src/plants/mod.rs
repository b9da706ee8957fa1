//! Built-in control plants, `no_std`, shared by the trainer and the firmware.
//!
//! Every plant is f32 and uses `libm`, so a plant simulated on the host and
//! on a Cortex-M4F produces the same trajectory bit for bit.
//!
//! **Termination vs truncation.** `terminated` means the episode reached a
//! terminal state of the MDP (the pole fell, the car reached the goal):
//! the value of the next state is 0. `truncated` means the episode was cut
//! by the time limit: the learner bootstraps from `V(s')`.

use rand_core::RngCore;

/// The result of one plant step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition<const OBS: usize> {
    /// Observation after the step.
    pub obs: [f32; OBS],
    /// Reward for the step.
    pub reward: f32,
    /// A terminal state was reached (no bootstrapping).
    pub terminated: bool,
    /// The time limit was reached (bootstrap from the next state).
    pub truncated: bool,
}

/// A simulated plant with `OBS` observations and `ACT` actions.
pub trait Plant<const OBS: usize, const ACT: usize> {
    /// Name used on the command line (`pendulum`, `mountain-car`, …).
    const NAME: &'static str;
    /// Lower action bounds (the plant clips to these).
    const ACTION_LOW: [f32; ACT];
    /// Upper action bounds.
    const ACTION_HIGH: [f32; ACT];
    /// Steps after which an episode is truncated.
    const MAX_EPISODE_STEPS: u32;
    /// Control period in seconds (what a firmware's timer paces).
    const DT: f32;

    /// Starts a new episode and returns the first observation.
    fn reset<R: RngCore + ?Sized>(&mut self, rng: &mut R) -> [f32; OBS];

    /// Applies `action` (clipped to the bounds by the plant) for one period.
    /// After `terminated` or `truncated`, call [`Plant::reset`].
    fn step(&mut self, action: &[f32; ACT]) -> Transition<OBS>;
}
