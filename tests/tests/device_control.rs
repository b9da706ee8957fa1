//! The device control loop (`runtime/src/control.rs`) with hand-made
//! sensors, actuators and reward sources: what is applied, logged and
//! counted on good ticks, non-finite observations, sensor and actuator
//! errors, deterministic mode, a full log queue and episode ends.

use std::collections::VecDeque;

use tinyppo_runtime::control::{
    Actuator, ControlLoop, Io, Outcome, RewardSource, Sensor, TickStatus,
};
use tinyppo_runtime::gaussian::log_normalizer;
use tinyppo_runtime::log::{decode_frame, Dims, Frame, Logger};
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::{Activation, Policy};

use crate::util::{Net, TestRng};

/// Plays back scripted readings (`Err(())` for a bus error).
struct Script(VecDeque<Result<[f32; 2], ()>>);

impl Sensor<2> for Script {
    type Error = ();
    fn read(&mut self) -> Result<[f32; 2], ()> {
        self.0.pop_front().unwrap_or(Err(()))
    }
}

/// Records what it was told; fails while `fail` is set.
#[derive(Default)]
struct Recorder {
    applied: Vec<[f32; 1]>,
    fail: bool,
}

impl Actuator<1> for Recorder {
    type Error = &'static str;
    fn apply(&mut self, a: &[f32; 1]) -> Result<(), &'static str> {
        self.applied.push(*a);
        if self.fail {
            Err("bus")
        } else {
            Ok(())
        }
    }
}

/// Reward −|x₀| (0 without an observation), truncates every `len` ticks,
/// and remembers which ticks had an observation.
struct Cost {
    len: u32,
    ticks: u32,
    saw: Vec<bool>,
}

impl RewardSource<2, 1> for Cost {
    fn outcome(&mut self, obs: Option<&[f32; 2]>, _applied: &[f32; 1]) -> Outcome<2> {
        self.ticks += 1;
        self.saw.push(obs.is_some());
        Outcome {
            reward: obs.map_or(0.0, |o| -o[0].abs()),
            terminated: false,
            truncated: self.ticks % self.len == 0,
            next_obs: None,
        }
    }
}

fn policy_blob() -> Vec<u8> {
    Net::random(
        &mut TestRng::new(3),
        2,
        1,
        &[4],
        Activation::Relu,
        (-1.0, 0.0),
    )
    .encode_f32()
}

fn io(readings: Vec<Result<[f32; 2], ()>>, len: u32) -> Io<Script, Recorder, Cost> {
    Io {
        sensor: Script(readings.into()),
        actuator: Recorder::default(),
        reward: Cost {
            len,
            ticks: 0,
            saw: Vec::new(),
        },
    }
}

/// The transitions in the log, as `(seq, episode, t, obs0)`.
fn logged<const CAP: usize>(log: &mut Logger<2, 1, CAP>) -> Vec<(u32, u32, u32, f32)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 128];
    while let Some(n) = log.encode_next(&mut buf).unwrap() {
        if let Frame::Transition(r) =
            decode_frame(&mut buf[..n], Some(Dims { obs: 2, act: 1 })).unwrap()
        {
            out.push((r.seq, r.episode, r.t, r.obs.get(0).unwrap()));
        }
    }
    out
}

#[test]
fn a_non_finite_observation_gets_the_safe_action_and_is_not_logged() {
    let blob = policy_blob();
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let mut ctl = ControlLoop::new(&policy, false);
    let mut plant = io(
        vec![
            Ok([0.5, 0.25]),
            Ok([f32::NAN, 1.0]),
            Ok([1.0, f32::INFINITY]),
            Ok([0.75, 0.0]),
        ],
        100,
    );
    let mut log = Logger::<2, 1, 8>::new();
    let mut rng = seeded(1);
    let statuses: Vec<_> = (0..4)
        .map(|_| ctl.tick(&mut plant, &mut rng, &mut log).status)
        .collect();
    assert_eq!(
        statuses,
        [
            TickStatus::Logged,
            TickStatus::NonFiniteObservation { index: 0 },
            TickStatus::NonFiniteObservation { index: 1 },
            TickStatus::Logged,
        ]
    );
    let safe = policy.safe_action();
    assert_eq!(plant.actuator.applied[1], safe);
    assert_eq!(plant.actuator.applied[2], safe);
    assert_ne!(plant.actuator.applied[0], safe);
    let s = ctl.stats();
    assert_eq!(
        (s.ticks, s.transitions, s.nonfinite_obs, s.safe_actions),
        (4, 2, 2, 2)
    );
    assert_eq!((s.sensor_errors, s.actuator_errors), (0, 0));
    // The reward source saw every tick, without an observation on the bad
    // ones; `t` jumps over them in the log.
    assert_eq!(plant.reward.saw, [true, false, false, true]);
    // One event for the run of two non-finite ticks takes entry 1.
    assert_eq!(logged(&mut log), [(0, 0, 0, 0.5), (2, 0, 3, 0.75)]);
    assert_eq!(ctl.t(), 4);
}

#[test]
fn sensor_and_actuator_errors_are_counted_and_never_logged() {
    let blob = policy_blob();
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let mut ctl = ControlLoop::new(&policy, false);
    let mut plant = io(
        vec![Err(()), Ok([0.1, 0.2]), Ok([0.3, 0.4]), Ok([0.5, 0.6])],
        100,
    );
    let mut log = Logger::<2, 1, 8>::new();
    let mut rng = seeded(2);
    assert_eq!(
        ctl.tick(&mut plant, &mut rng, &mut log).status,
        TickStatus::SensorError
    );
    assert_eq!(plant.actuator.applied[0], policy.safe_action());
    plant.actuator.fail = true;
    assert_eq!(
        ctl.tick(&mut plant, &mut rng, &mut log).status,
        TickStatus::ActuatorError
    );
    plant.actuator.fail = false;
    assert_eq!(
        ctl.tick(&mut plant, &mut rng, &mut log).status,
        TickStatus::Logged
    );
    // A sensor error whose safe action also fails counts both.
    plant.sensor.0.push_front(Err(()));
    plant.actuator.fail = true;
    assert_eq!(
        ctl.tick(&mut plant, &mut rng, &mut log).status,
        TickStatus::SensorError
    );
    let s = *ctl.stats();
    assert_eq!(
        (s.sensor_errors, s.actuator_errors, s.transitions),
        (2, 2, 1)
    );
    // Entries 0, 1 and 3 are the events of the three fault ticks.
    assert_eq!(logged(&mut log), [(2, 0, 2, 0.3)]);
    let totals = ctl.totals(&log);
    assert_eq!(
        (totals.sensor_errors, totals.actuator_errors, totals.entries),
        (2, 2, 4)
    );
}

#[test]
fn deterministic_mode_applies_the_clipped_mean_and_logs_the_mean() {
    let blob = policy_blob();
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let mut ctl = ControlLoop::new(&policy, true);
    let obs = [[3.0, -2.0], [-40.0, 9.0], [0.0, 0.0]];
    let mut plant = io(obs.iter().map(|o| Ok(*o)).collect(), 100);
    let mut log = Logger::<2, 1, 8>::new();
    // The generator is not used: any state gives the same result.
    let mut rng = seeded(3);
    for _ in 0..3 {
        ctl.tick(&mut plant, &mut rng, &mut log);
    }
    let mut buf = [0u8; 128];
    for (i, o) in obs.iter().enumerate() {
        assert_eq!(plant.actuator.applied[i], policy.mean_applied(o).unwrap());
        let n = log.encode_next(&mut buf).unwrap().unwrap();
        let Frame::Transition(r) =
            decode_frame(&mut buf[..n], Some(Dims { obs: 2, act: 1 })).unwrap()
        else {
            panic!("not a transition")
        };
        let mu = policy.mean(o).unwrap();
        assert_eq!(r.action.to_array::<1>().unwrap(), mu);
        assert_eq!(r.log_prob, -log_normalizer(policy.log_std()));
        assert_eq!(r.log_prob, policy.log_prob(o, &mu).unwrap());
    }
}

#[test]
fn episodes_end_on_the_reward_sources_flags_and_a_full_queue_only_drops() {
    let blob = policy_blob();
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let mut ctl = ControlLoop::new(&policy, false);
    let mut plant = io((0..7).map(|i| Ok([i as f32, 0.0])).collect(), 3);
    let mut log = Logger::<2, 1, 5>::new();
    let mut rng = seeded(4);
    let outs: Vec<_> = (0..7)
        .map(|_| ctl.tick(&mut plant, &mut rng, &mut log))
        .collect();
    let done: Vec<bool> = outs.iter().map(|o| o.done).collect();
    assert_eq!(done, [false, false, true, false, false, true, false]);
    assert_eq!(outs[4].status, TickStatus::Logged);
    assert_eq!(outs[5].status, TickStatus::LogFull);
    assert_eq!(outs[6].status, TickStatus::LogFull);
    assert_eq!((ctl.episode(), ctl.t()), (2, 1));
    let s = ctl.stats();
    assert_eq!((s.episodes, s.transitions), (2, 7));
    // Returns of the two completed episodes: −(0+1+2) − (3+4+5).
    assert_eq!(s.return_sum, -15.0);
    assert_eq!(log.dropped(), 2);
    // No next observation from this reward source: no EpisodeEnd entries.
    assert_eq!(
        logged(&mut log),
        [
            (0, 0, 0, 0.0),
            (1, 0, 1, 1.0),
            (2, 0, 2, 2.0),
            (3, 1, 0, 3.0),
            (4, 1, 1, 4.0)
        ]
    );
}
