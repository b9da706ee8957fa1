//! The safety layer (`runtime/src/safety.rs`) and the boot self-test
//! (`runtime/src/selftest.rs`) in the device's control loop and driver:
//! sensors that fail, stick, leave their bounds or read NaN (through
//! `embedded-hal-mock` where the fault is a bus's) get the safe action on
//! that very tick with the event in the log; the e-stop is latched until
//! the next episode; the action limits and the rate limit hold under a
//! random policy (property test); a failed self-test holds the safe action
//! for the whole run; the watchdog is fed on healthy ticks only.

use std::collections::VecDeque;

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cT};
use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as PwmT};
use proptest::prelude::*;

use tinyppo_runtime::control::{
    Actuator, ControlLoop, Io, Outcome, RewardSource, Sensor, TickStatus,
};
use tinyppo_runtime::driver::{self, RunConfig, Unpaced, Watchdog};
use tinyppo_runtime::format::{self, Blob};
use tinyppo_runtime::hal::{I2cSensor, PwmActuator};
use tinyppo_runtime::history::ActionHistory;
use tinyppo_runtime::log::{event, Dims, Frame, Logger};
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::safety::{self, SafetySpec};
use tinyppo_runtime::selftest::{self, SelfTestSpec};
use tinyppo_runtime::{Activation, Extension, Field, FormatError, Policy};
use tinyppo_trainer::logs::decode_stream;

use crate::util::{Net, TestRng};

const ADDR: u8 = 0x36;
const REG: u8 = 0x0C;

fn net(seed: u64) -> Net {
    Net::random(
        &mut TestRng::new(seed),
        2,
        1,
        &[4],
        Activation::Tanh,
        (-1.0, 0.0),
    )
}

/// A safety record's body.
fn safety_body(spec: &SafetySpec) -> Vec<u8> {
    let mut b = vec![0u8; safety::max_body_len(spec)];
    let n = safety::encode_body(spec, &mut b).unwrap();
    b.truncate(n);
    b
}

/// `net` as an int8 blob with a safety record: observations within ±`obs`,
/// a stuck sensor after `stuck` unchanged ticks, `max_delta` per tick.
fn guarded(net: &Net, obs: f32, stuck: u16, max_delta: f32) -> Vec<u8> {
    let body = safety_body(&SafetySpec {
        action_low: &net.low,
        action_high: &net.high,
        max_delta: &[max_delta],
        obs_low: &[-obs, -obs],
        obs_high: &[obs, obs],
        stuck_ticks: stuck,
    });
    net.encode_int8_for(
        tinyppo_runtime::plants::code::UNSPECIFIED,
        &[Extension {
            tag: safety::TAG,
            body: &body,
        }],
    )
}

/// Plays back scripted readings (`Err(())` for a failed read).
struct Script(VecDeque<Result<[f32; 2], ()>>);

impl Sensor<2> for Script {
    type Error = ();
    fn read(&mut self) -> Result<[f32; 2], ()> {
        self.0.pop_front().unwrap_or(Err(()))
    }
}

/// Records what it is given.
#[derive(Default)]
struct Recorder(Vec<[f32; 1]>);

impl Actuator<1> for Recorder {
    type Error = ();
    fn apply(&mut self, a: &[f32; 1]) -> Result<(), ()> {
        self.0.push(*a);
        Ok(())
    }
}

/// Reward 0, truncates every `len` ticks.
struct Episodes {
    len: u32,
    ticks: u32,
}

impl RewardSource<2, 1> for Episodes {
    fn outcome(&mut self, _obs: Option<&[f32; 2]>, _a: &[f32; 1]) -> Outcome<2> {
        self.ticks += 1;
        Outcome {
            reward: 0.0,
            terminated: false,
            truncated: self.ticks % self.len == 0,
            next_obs: None,
        }
    }
}

/// Drains the queue: the events as `(code, episode, t, index, value)` and
/// the transitions' `t`.
/// An event as `(code, episode, t, index, value)`.
type Ev = (u8, u32, u32, u16, f32);

fn drain<const CAP: usize>(log: &mut Logger<2, 1, CAP>) -> (Vec<Ev>, Vec<u32>) {
    let (mut events, mut ts) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 128];
    while let Some(n) = log.encode_next(&mut buf).unwrap() {
        match tinyppo_runtime::log::decode_frame(&mut buf[..n], Some(Dims { obs: 2, act: 1 }))
            .unwrap()
        {
            Frame::Event(e) => events.push((e.code, e.episode, e.t, e.index, e.value)),
            Frame::Transition(r) => ts.push(r.t),
            other => panic!("unexpected {other:?}"),
        }
    }
    (events, ts)
}

/// Two little-endian i16 channels, as the mock bus returns them.
fn raw(a: i16, b: i16) -> Vec<u8> {
    [a.to_le_bytes(), b.to_le_bytes()].concat()
}

/// PWM duty of `a` on `[lo, hi]` at full scale 1000 (`hal::PwmActuator`'s rule).
fn duty(a: f32, lo: f32, hi: f32) -> u16 {
    libm::roundf(((a - lo) / (hi - lo)).clamp(0.0, 1.0) * 1000.0) as u16
}

/// A bus error, a stuck sensor and an out-of-range reading, through the
/// runtime's I2C sensor and PWM actuator on `embedded-hal-mock`: each tick
/// gets the safe action's duty on the tick the fault shows, with its event.
#[test]
fn bus_error_stuck_and_out_of_range_sensors_get_the_safe_action_on_that_tick() {
    let n = net(11);
    let blob = guarded(&n, 2.0, 3, 0.0);
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let (lo, hi) = (n.low[0], n.high[0]);
    let safe = policy.safe_action();
    // Readings in milli-units (scale 1e-3).
    let reads: Vec<I2cT> = vec![
        I2cT::write_read(ADDR, vec![REG], raw(100, -200)), // t0 policy
        I2cT::write_read(ADDR, vec![REG], raw(0, 0)).with_error(ErrorKind::Bus), // t1 bus error
        I2cT::write_read(ADDR, vec![REG], raw(300, 50)),   // t2 policy
        I2cT::write_read(ADDR, vec![REG], raw(300, 50)),   // t3 same (1 repeat)
        I2cT::write_read(ADDR, vec![REG], raw(300, 50)),   // t4 same (2)
        I2cT::write_read(ADDR, vec![REG], raw(300, 50)),   // t5 same (3): stuck
        I2cT::write_read(ADDR, vec![REG], raw(300, 50)),   // t6 still stuck
        I2cT::write_read(ADDR, vec![REG], raw(310, 50)),   // t7 moves: policy
        I2cT::write_read(ADDR, vec![REG], raw(2500, 50)),  // t8 out of range: e-stop
        I2cT::write_read(ADDR, vec![REG], raw(0, 0)),      // t9 fine, but latched
    ];
    let policy_at = |a: i16, b: i16| {
        let m = policy
            .mean_applied(&[a as f32 * 1e-3, b as f32 * 1e-3])
            .unwrap()[0];
        duty(m, lo, hi)
    };
    let s = duty(safe[0], lo, hi);
    let duties = [
        policy_at(100, -200),
        s,
        policy_at(300, 50),
        policy_at(300, 50),
        policy_at(300, 50),
        s,
        s,
        policy_at(310, 50),
        s,
        s,
    ];
    assert_ne!(
        duties[0], s,
        "the policy's action differs from the safe one"
    );
    let pwm_t: Vec<PwmT> = duties
        .iter()
        .flat_map(|&d| [PwmT::max_duty_cycle(1000), PwmT::set_duty_cycle(d)])
        .collect();
    let mut i2c = I2cMock::new(&reads);
    let mut pwm = PwmMock::new(&pwm_t);
    let mut plant = Io {
        sensor: I2cSensor::<_, 2>::new(i2c.clone(), ADDR, REG, [1e-3, 1e-3]),
        actuator: PwmActuator::new([pwm.clone()], [lo], [hi]),
        reward: Episodes { len: 100, ticks: 0 },
    };
    let mut ctl = ControlLoop::new(&policy, true);
    let mut log = Logger::<2, 1, 16>::new();
    let mut rng = seeded(0);
    let statuses: Vec<TickStatus> = (0..10)
        .map(|_| ctl.tick(&mut plant, &mut rng, &mut log).status)
        .collect();
    use TickStatus::*;
    assert_eq!(
        statuses,
        [
            Logged,
            SensorError,
            Logged,
            Logged,
            Logged,
            StuckSensor,
            StuckSensor,
            Logged,
            EStop { index: 0 },
            EStop { index: 0 },
        ]
    );
    let (events, ts) = drain(&mut log);
    assert_eq!(
        events,
        [
            (event::SENSOR_ERROR, 0, 1, 0, 0.0),
            (event::STUCK_SENSOR, 0, 5, 0, 3.0),
            (event::ESTOP, 0, 8, 0, 2.5),
        ]
    );
    assert_eq!(ts, [0, 2, 3, 4, 7]);
    let st = ctl.stats();
    assert_eq!(
        (
            st.safety.stuck_ticks,
            st.safety.estop_ticks,
            st.safe_actions
        ),
        (2, 2, 5)
    );
    i2c.done();
    pwm.done();
}

/// An observation whose sensor reports "invalid" (0x8000, as many MEMS
/// parts do) as NaN: the safe action on that tick, one event for the run.
#[test]
fn a_nan_reading_from_the_bus_gets_the_safe_action_on_that_tick() {
    /// 0x8000 on either channel reads as NaN.
    struct Validated<S>(S);
    impl<S: Sensor<2>> Sensor<2> for Validated<S> {
        type Error = S::Error;
        fn read(&mut self) -> Result<[f32; 2], S::Error> {
            let mut v = self.0.read()?;
            for x in &mut v {
                if *x == -32768.0 * 1e-3 {
                    *x = f32::NAN;
                }
            }
            Ok(v)
        }
    }
    let n = net(12);
    let blob = guarded(&n, 5.0, 0, 0.0);
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let mut i2c = I2cMock::new(&[
        I2cT::write_read(ADDR, vec![REG], raw(10, 20)),
        I2cT::write_read(ADDR, vec![REG], raw(i16::MIN, 20)),
        I2cT::write_read(ADDR, vec![REG], raw(10, i16::MIN)),
        I2cT::write_read(ADDR, vec![REG], raw(10, 30)),
    ]);
    let mut plant = Io {
        sensor: Validated(I2cSensor::<_, 2>::new(i2c.clone(), ADDR, REG, [1e-3, 1e-3])),
        actuator: Recorder::default(),
        reward: Episodes { len: 100, ticks: 0 },
    };
    let mut ctl = ControlLoop::new(&policy, false);
    let mut log = Logger::<2, 1, 16>::new();
    let mut rng = seeded(1);
    let statuses: Vec<TickStatus> = (0..4)
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
    assert_eq!(plant.actuator.0[1], safe);
    assert_eq!(plant.actuator.0[2], safe);
    let (events, ts) = drain(&mut log);
    assert_eq!(events, [(event::NONFINITE_OBS, 0, 1, 0, 0.0)]);
    assert_eq!(ts, [0, 3]);
    i2c.done();
}

/// An e-stop holds the safe action for the rest of the episode, whatever
/// the later readings, and is released at the next episode.
#[test]
fn the_estop_is_latched_until_the_next_episode() {
    let n = net(13);
    let blob = guarded(&n, 1.0, 0, 0.0);
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let ok = Ok([0.1, 0.2]);
    let mut plant = Io {
        sensor: Script(
            vec![ok, Ok([0.1, -1.5]), ok, ok, ok, ok, ok]
                .into_iter()
                .collect(),
        ),
        actuator: Recorder::default(),
        reward: Episodes { len: 5, ticks: 0 },
    };
    let mut ctl = ControlLoop::new(&policy, true);
    let mut log = Logger::<2, 1, 16>::new();
    let mut rng = seeded(2);
    let statuses: Vec<TickStatus> = (0..7)
        .map(|_| ctl.tick(&mut plant, &mut rng, &mut log).status)
        .collect();
    use TickStatus::*;
    let e = EStop { index: 1 };
    assert_eq!(statuses, [Logged, e, e, e, e, Logged, Logged]);
    let (events, ts) = drain(&mut log);
    assert_eq!(events, [(event::ESTOP, 0, 1, 1, -1.5)]);
    assert_eq!(ts, [0, 0, 1], "episode 1 starts afresh");
    let safe = policy.safe_action();
    assert!(plant.actuator.0[1..5].iter().all(|a| *a == safe));
    assert_eq!(ctl.stats().safety.estop_ticks, 4);
    // An operator's reset releases it within the episode.
    plant.sensor.0.extend([Ok([0.1, 1.5]), ok, ok]);
    assert_eq!(
        ctl.tick(&mut plant, &mut rng, &mut log).status,
        EStop { index: 1 }
    );
    assert!(ctl.estopped());
    ctl.release_estop();
    assert_eq!(ctl.tick(&mut plant, &mut rng, &mut log).status, Logged);
    assert!(!ctl.estopped());
}

/// Counts its feeds; says whether it reset the board.
struct CountingWatchdog {
    feeds: u32,
    fired: bool,
}

impl Watchdog for CountingWatchdog {
    fn feed(&mut self) {
        self.feeds += 1;
    }
    fn caused_last_reset(&self) -> bool {
        self.fired
    }
}

/// The driver feeds the watchdog after the ticks the loop chose its action
/// on purpose (policy, e-stop) and the actuator took, not after sensor
/// faults; a watchdog that reset the board gets an event at the first tick.
#[test]
fn the_watchdog_is_fed_on_healthy_ticks_only() {
    let n = net(14);
    let blob = guarded(&n, 1.0, 0, 0.0);
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let ok = Ok([0.1, 0.2]);
    // Episode 0: ok, error, error, ok, e-stop, (latched): 4 fed.
    // Episode 1: ok ×6: 6 fed.
    let script = vec![
        ok,
        Err(()),
        Err(()),
        ok,
        Ok([3.0, 0.0]),
        ok,
        ok,
        ok,
        ok,
        ok,
        ok,
        ok,
    ];
    let mut rig = Io {
        sensor: Script(script.into_iter().collect()),
        actuator: Recorder::default(),
        reward: Episodes { len: 6, ticks: 0 },
    };
    let mut wd = CountingWatchdog {
        feeds: 0,
        fired: true,
    };
    let mut bytes = Vec::new();
    let cfg = RunConfig {
        episodes: 2,
        seed: 3,
        deterministic: true,
    };
    let stats = driver::run_with::<_, 2, 1, 4, 4>(
        &policy,
        &mut rig,
        0xFF,
        &cfg,
        &mut Unpaced,
        &mut wd,
        &mut |f: &[u8]| bytes.extend_from_slice(f),
    );
    assert_eq!(stats.sensor_errors, 2);
    assert_eq!(stats.safety.estop_ticks, 2);
    assert_eq!(wd.feeds, 12 - 2, "every tick but the two sensor errors");
    let log = decode_stream(&bytes);
    let codes: Vec<(u8, u32, u32)> = log
        .events
        .iter()
        .map(|(_, e)| (e.code, e.episode, e.t))
        .collect();
    assert_eq!(
        codes,
        [
            (event::WATCHDOG_RESET, 0, 0),
            (event::SENSOR_ERROR, 0, 1),
            (event::ESTOP, 0, 4),
        ]
    );
    assert_eq!(log.ends[0].1.safety.estop_ticks, 2);
    assert!(log.self_tests.is_empty(), "no vectors, no SelfTest frame");
}

/// The self-test record of `net`'s int8 blob: its own means at `points`,
/// with `shift` added to the first expected value.
fn self_test_blob(net: &Net, points: &[[f32; 2]], shift: f32) -> Vec<u8> {
    let plain = net.encode_int8();
    let policy = Policy::<2, 1, 4>::from_bytes(&plain).unwrap();
    let h = ActionHistory::new(policy.safe_action());
    let obs: Vec<f32> = points.iter().flatten().copied().collect();
    let mut mean: Vec<f32> = points
        .iter()
        .flat_map(|p| policy.mean_with(p, &h).unwrap())
        .collect();
    mean[0] += shift;
    let spec = SelfTestSpec {
        tolerance: 1e-4,
        obs: &obs,
        mean: &mean,
    };
    let mut body = vec![0u8; selftest::max_body_len(&spec)];
    let k = selftest::encode_body(&spec, points.len() as u8, &mut body).unwrap();
    body.truncate(k);
    net.encode_int8_for(
        tinyppo_runtime::plants::code::UNSPECIFIED,
        &[Extension {
            tag: selftest::TAG,
            body: &body,
        }],
    )
}

fn run_on_script(blob: &[u8], ticks: usize) -> (Vec<u8>, Vec<[f32; 1]>, u32) {
    let policy = Policy::<2, 1, 4>::from_bytes(blob).unwrap();
    let mut rig = Io {
        sensor: Script(vec![Ok([0.3, -0.2]); ticks].into_iter().collect()),
        actuator: Recorder::default(),
        reward: Episodes {
            len: ticks as u32,
            ticks: 0,
        },
    };
    let mut wd = CountingWatchdog {
        feeds: 0,
        fired: false,
    };
    let mut bytes = Vec::new();
    let cfg = RunConfig {
        episodes: 1,
        seed: 4,
        deterministic: false,
    };
    driver::run_with::<_, 2, 1, 4, 4>(
        &policy,
        &mut rig,
        0xFF,
        &cfg,
        &mut Unpaced,
        &mut wd,
        &mut |f: &[u8]| bytes.extend_from_slice(f),
    );
    (bytes, rig.actuator.0, wd.feeds)
}

/// A self-test that passes is logged and changes nothing; one whose
/// stored means do not match (another computation, a corrupted or
/// swapped blob) is logged as failed and the whole run gets the safe
/// action, counted, with one event — and the watchdog is still fed (the
/// safe state is deliberate).
#[test]
fn a_failed_self_test_holds_the_safe_action_for_the_whole_run() {
    let n = net(15);
    let points = [[0.0, 0.0], [0.5, -1.0], [2.0, 3.0]];
    let good = self_test_blob(&n, &points, 0.0);
    let (bytes, applied, _) = run_on_script(&good, 8);
    let log = decode_stream(&bytes);
    let (_, r) = log.self_tests[0];
    assert!(r.passed(), "{r:?}");
    assert_eq!((r.vectors, r.failed, r.worst_error), (3, 0, 0.0));
    assert_eq!(log.transitions.len(), 8);
    let safe = Policy::<2, 1, 4>::from_bytes(&good).unwrap().safe_action();
    assert!(applied.iter().any(|a| *a != safe));

    let bad = self_test_blob(&n, &points, 0.01);
    let (bytes, applied, feeds) = run_on_script(&bad, 8);
    let log = decode_stream(&bytes);
    let (_, r) = log.self_tests[0];
    assert!(!r.passed());
    assert_eq!((r.failed, r.worst_index), (1, 0));
    assert!((r.worst_error - 0.01).abs() < 1e-6, "{}", r.worst_error);
    assert!(log.transitions.is_empty(), "the policy never acted");
    assert!(applied.iter().all(|a| *a == safe));
    assert_eq!(feeds, 8);
    let ev: Vec<u8> = log.events.iter().map(|(_, e)| e.code).collect();
    assert_eq!(ev, [event::SELF_TEST_FAILED]);
    assert_eq!(log.ends[0].1.safety.inhibited_ticks, 8);

    // The vectors of one policy in another's blob (same dimensions, valid
    // CRC): the self-test fails.
    let other = net(16);
    let b = Blob::parse(&good).unwrap();
    let rec: Vec<Extension> = b.extensions().collect();
    let swapped = other.encode_int8_for(tinyppo_runtime::plants::code::UNSPECIFIED, &rec);
    let p = Policy::<2, 1, 4>::from_bytes(&swapped).unwrap();
    assert!(!selftest::run(&p).unwrap().passed());
}

/// The records are checked at load, each error naming its field.
#[test]
fn bad_safety_and_self_test_records_are_refused_naming_the_field() {
    let n = net(17);
    let (lo, hi) = (n.low[0], n.high[0]);
    let safe = 0.5 * lo + 0.5 * hi;
    let case = |spec: SafetySpec| {
        let body = safety_body(&spec);
        let ext = [Extension {
            tag: safety::TAG,
            body: &body,
        }];
        let q = n.quantized();
        let layers: Vec<_> = n
            .layers
            .iter()
            .zip(&q)
            .map(|(l, q)| tinyppo_runtime::LayerSpec {
                weights: tinyppo_runtime::WeightsSpec::Int8 {
                    q: &q.q,
                    scales: &q.s,
                },
                bias: &l.b,
            })
            .collect();
        let spec = tinyppo_runtime::BlobSpec {
            obs_dim: 2,
            act_dim: 1,
            hidden: &n.hidden,
            activation: n.activation,
            obs_mean: &n.obs_mean,
            obs_inv_std: &n.obs_inv_std,
            obs_clip: n.obs_clip,
            action_low: &n.low,
            action_high: &n.high,
            log_std: &n.log_std,
            layers: &layers,
            plant: 0xFF,
            safe_action: &[safe],
            extensions: &ext,
        };
        let mut buf = vec![0u8; format::max_encoded_len(&spec)];
        match format::encode(&spec, &mut buf) {
            Err(format::EncodeError::Invalid(e)) => e,
            other => panic!("encoded: {other:?}"),
        }
    };
    let ok = SafetySpec {
        action_low: &[lo],
        action_high: &[hi],
        max_delta: &[0.1],
        obs_low: &[-1.0, -1.0],
        obs_high: &[1.0, 1.0],
        stuck_ticks: 0,
    };
    let below = [lo - 0.5];
    let e = case(SafetySpec {
        action_low: &below,
        ..ok
    });
    assert_eq!(
        e,
        FormatError::OutOfRange {
            field: Field::SafetyActionLow,
            index: 0
        }
    );
    assert!(e.to_string().contains("safety.action_low"), "{e}");
    // A limit that excludes the safe action.
    let above_safe = [safe + 0.1];
    assert_eq!(
        case(SafetySpec {
            action_low: &above_safe,
            ..ok
        }),
        FormatError::OutOfRange {
            field: Field::SafetyActionLow,
            index: 0
        }
    );
    assert_eq!(
        case(SafetySpec {
            max_delta: &[-1.0],
            ..ok
        }),
        FormatError::OutOfRange {
            field: Field::SafetyMaxDelta,
            index: 0
        }
    );
    assert_eq!(
        case(SafetySpec {
            obs_high: &[1.0, -1.0],
            ..ok
        }),
        FormatError::OutOfRange {
            field: Field::SafetyObsHigh,
            index: 1
        }
    );
    assert_eq!(
        case(SafetySpec {
            obs_low: &[-1.0],
            ..ok
        }),
        FormatError::LengthMismatch {
            field: Field::SafetyObsLow,
            expected: 8,
            found: 4
        }
    );
    // Self-test: 0 vectors, and a tolerance of 0.
    for (count, tol, field) in [
        (0u8, 1e-4f32, Field::SelfTestCount),
        (1, 0.0, Field::SelfTestTolerance),
    ] {
        let spec = SelfTestSpec {
            tolerance: tol,
            obs: &[0.0, 0.0],
            mean: &[0.0],
        };
        let mut body = vec![0u8; 64];
        let k = selftest::encode_body(&spec, count, &mut body).unwrap();
        let e = selftest::parse_body(&body[..k], 2, 1).unwrap_err();
        let named = match e {
            FormatError::BadWidth { field, .. } | FormatError::BadScale { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(named, field);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Under a random stochastic policy, random limits and random readings
    /// (with NaN, bus errors and e-stops among them), every applied action
    /// is within the limits, and every action the policy chose moved at
    /// most `max_delta` from the previous tick's.
    #[test]
    fn limits_and_rate_limit_hold_under_a_random_policy(
        seed in 0u64..1_000_000,
        low_f in 0.0f32..1.0,
        high_f in 0.0f32..1.0,
        delta in 0.01f32..1.0,
        readings in proptest::collection::vec(
            prop_oneof![
                8 => (-3.0f32..3.0, -3.0f32..3.0).prop_map(|(a, b)| Ok([a, b])),
                1 => Just(Ok([f32::NAN, 0.0])),
                1 => Just(Err(())),
            ],
            1..120,
        ),
    ) {
        let mut n = net(seed);
        n.log_std = vec![0.5]; // wide samples: the limits have work to do
        let safe = 0.5 * n.low[0] + 0.5 * n.high[0];
        let a_lo = n.low[0] + low_f * (safe - n.low[0]);
        let a_hi = safe + high_f * (n.high[0] - safe);
        let body = safety_body(&SafetySpec {
            action_low: &[a_lo],
            action_high: &[a_hi],
            max_delta: &[delta],
            obs_low: &[-2.5, -2.5],
            obs_high: &[2.5, 2.5],
            stuck_ticks: 0,
        });
        let blob = n.encode_int8_for(0xFF, &[Extension { tag: safety::TAG, body: &body }]);
        let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
        let len = readings.len();
        let mut plant = Io {
            sensor: Script(readings.into_iter().collect()),
            actuator: Recorder::default(),
            reward: Episodes { len: 40, ticks: 0 },
        };
        let mut ctl = ControlLoop::new(&policy, false);
        let mut log = Logger::<2, 1, 4>::new();
        let mut rng = seeded(seed);
        let mut prev = safe;
        for _ in 0..len {
            let out = ctl.tick(&mut plant, &mut rng, &mut log);
            while log.encode_next(&mut [0u8; 128]).unwrap().is_some() {}
            let a = plant.actuator.0.last().unwrap()[0];
            prop_assert!(a_lo <= a && a <= a_hi, "{a} outside [{a_lo}, {a_hi}]");
            if matches!(out.status, TickStatus::Logged | TickStatus::LogFull) {
                prop_assert!((a - prev).abs() <= delta * (1.0 + 1e-6) + 1e-7,
                    "moved {} > {delta}", (a - prev).abs());
            }
            prev = if out.done { safe } else { a };
        }
    }
}

/// `[safety]` from the configuration to the blob and back: `export`
/// writes the safety record (only when set) and the self-test vectors;
/// `inspect` shows both; `eval` applies the limits exactly as the device
/// loop in `simulate` does (same returns), and they change what the plant
/// gets; `logs decode` reports the passed self-test, the e-stops and the
/// limited ticks. Training does not see the table (same weights).
#[test]
fn safety_settings_reach_the_blob_eval_simulate_and_the_log_report() {
    use crate::cli::{run as cli, stderr, stdout};
    use crate::sim_to_real::read;
    use tinyppo_trainer::registry::Registry;
    use tinyppo_trainer::{config, run};

    let reg = Registry::builtin();
    let plant = reg.get("pendulum").unwrap();
    let tmp = crate::trainer_util::TempDir::new("safety-cli");
    let small = [
        "num_envs=2",
        "num_steps=96",
        "actor_hidden=[8]",
        "critic_hidden=[8]",
        "ppo.num_minibatches=4",
        "ppo.update_epochs=2",
        "total_timesteps=384",
    ];
    let limits = [
        "safety.action_low=-1.0",
        "safety.action_high=1.5",
        "safety.max_delta=0.001",
        "safety.obs_low=[-1.1, -1.1, -6.0]",
        "safety.obs_high=[1.1, 1.1, 6.0]",
        "safety.stuck_ticks=50",
    ];
    let train = |name: &str, extra: &[&str]| {
        let sets: Vec<String> = small.iter().chain(extra).map(|s| s.to_string()).collect();
        let c = config::resolve(plant, None, &sets).unwrap();
        let dir = tmp.path().join(name);
        run::train(&reg, c, &dir, &crate::sim_to_real::opts(None), &mut |_| {}).unwrap();
        dir
    };
    let guarded_dir = train("guarded", &limits);
    let free_dir = train("free", &[]);
    let (guarded, free) = (
        read(&guarded_dir, "policy.bin"),
        read(&free_dir, "policy.bin"),
    );
    let (g, f) = (Blob::parse(&guarded).unwrap(), Blob::parse(&free).unwrap());
    let tags = |b: &Blob| b.extensions().map(|e| e.tag).collect::<Vec<_>>();
    assert_eq!(tags(&g), [safety::TAG, selftest::TAG]);
    assert_eq!(tags(&f), [selftest::TAG], "no [safety]: no record");
    assert_eq!(
        g.layers().next().unwrap().weights,
        f.layers().next().unwrap().weights,
        "training ignores [safety]"
    );
    let v = g.safety().unwrap();
    assert_eq!(format::f32s(v.max_delta).collect::<Vec<_>>(), [0.001]);
    assert_eq!(v.stuck_ticks, 50);
    assert_eq!(g.self_test().unwrap().count, 5);

    // eval = the device loop, deterministic: the same total return.
    let rets = plant.eval_blob(&guarded, 4, 9, false).unwrap();
    let rc = RunConfig {
        episodes: 4,
        seed: 9,
        deterministic: true,
    };
    let (bytes, stats) = plant.simulate_blob(&guarded, &rc).unwrap();
    // The device's total (f32 with compensation) and eval's f64 sum.
    let total: f64 = rets.iter().sum();
    assert!(
        (total - stats.return_sum).abs() <= 2.0 * f64::from(f32::EPSILON) * total.abs(),
        "{total} vs {}",
        stats.return_sum
    );
    assert_ne!(rets, plant.eval_blob(&free, 4, 9, false).unwrap());
    assert!(stats.safety.limited_ticks > 0, "{stats:?}");
    let log = decode_stream(&bytes);
    assert!(log.self_tests[0].1.passed());
    assert_eq!(
        log.self_tests[0].1.worst_error, 0.0,
        "host = host, bit for bit"
    );
    let estops = log
        .events
        .iter()
        .filter(|(_, e)| e.code == event::ESTOP)
        .count();
    let estop_ticks = log.ends[0].1.safety.estop_ticks;
    assert!(estops <= 4, "latched: at most one e-stop per episode");
    assert_eq!(estops > 0, estop_ticks > 0);

    // The command line.
    let p = guarded_dir.join("policy.bin");
    let o = cli(&["inspect", p.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(text.contains("change per tick at most [0.001]"), "{text}");
    assert!(
        text.contains("stuck sensor after 50 unchanged ticks"),
        "{text}"
    );
    assert!(text.contains("self-test       5 vectors"), "{text}");
    let out = tmp.path().join("sim.bin");
    let o = cli(&[
        "simulate",
        "--policy",
        p.to_str().unwrap(),
        "--env",
        "pendulum",
        "--episodes",
        "4",
        "--seed",
        "9",
        "--deterministic",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    let o = cli(&["logs", "decode", out.to_str().unwrap()]);
    let text = stdout(&o);
    assert!(text.contains("self-test       passed: 5 vectors"), "{text}");
    assert!(
        text.contains(&format!("limited {}", stats.safety.limited_ticks)),
        "{text}"
    );
    let o = cli(&["logs", "decode", "--json", out.to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["self_tests"][0]["passed"], true);
    assert_eq!(
        j["device_totals"][0]["limited_ticks"],
        stats.safety.limited_ticks
    );

    // Bad values name the key and what was expected.
    let err = |set: &str| {
        config::resolve(plant, None, &[set.to_string()])
            .unwrap_err()
            .to_string()
    };
    let e = err("safety.action_low=-3.0");
    assert!(
        e.contains("safety.action_low = -3: expected a limit from pendulum's bound -2"),
        "{e}"
    );
    let e = err("safety.obs_high=[1.0, 1.0]");
    assert!(e.contains("a list of 3 (one per observation)"), "{e}");
    let e = err("safety.max_delta=-0.5");
    assert!(
        e.contains("safety.max_delta = -0.5: expected a change per tick"),
        "{e}"
    );
    let e = err("safety.max_dleta=1");
    assert!(e.contains("safety.max_delta"), "lists the known keys: {e}");
}

/// The example safety record of `docs/FORMAT.md`, byte for byte.
#[test]
fn golden_safety_record() {
    let body = safety_body(&SafetySpec {
        action_low: &[-1.0],
        action_high: &[1.5],
        max_delta: &[0.25],
        obs_low: &[-1.0, -2.0],
        obs_high: &[1.0, 2.0],
        stuck_ticks: 20,
    });
    let want: Vec<u8> = [
        &[0x04, 0x00, 0x00, 0x80, 0xbf][..], // action_low  [−1]
        &[0x04, 0x00, 0x00, 0xc0, 0x3f],     // action_high [1.5]
        &[0x04, 0x00, 0x00, 0x80, 0x3e],     // max_delta   [0.25]
        &[0x08, 0x00, 0x00, 0x80, 0xbf, 0x00, 0x00, 0x00, 0xc0], // obs_low [−1, −2]
        &[0x08, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40], // obs_high [1, 2]
        &[0x14],                             // stuck_ticks 20
    ]
    .concat();
    assert_eq!(body, want);
    let v = safety::parse_body(
        &body,
        2,
        1,
        &(-2.0f32).to_le_bytes(),
        &2.0f32.to_le_bytes(),
        &0.0f32.to_le_bytes(),
    )
    .unwrap();
    assert_eq!(v.stuck_ticks, 20);
}

/// The example self-test record of `docs/FORMAT.md`, byte for byte.
#[test]
fn golden_self_test_record() {
    let spec = SelfTestSpec {
        tolerance: 1e-4,
        obs: &[0.5, -0.25],
        mean: &[0.125],
    };
    let mut body = vec![0u8; selftest::max_body_len(&spec)];
    let n = selftest::encode_body(&spec, 1, &mut body).unwrap();
    body.truncate(n);
    let want: Vec<u8> = [
        &[0x01][..],                                             // count 1
        &[0x17, 0xb7, 0xd1, 0x38],                               // tolerance 1e-4
        &[0x08, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0xbe], // obs [0.5, −0.25]
        &[0x04, 0x00, 0x00, 0x00, 0x3e],                         // mean [0.125]
    ]
    .concat();
    assert_eq!(body, want);
    let v = selftest::parse_body(&body, 2, 1).unwrap();
    assert_eq!((v.count, v.tolerance), (1, 1e-4));
}

/// A fault tick logs an event, which takes an entry number: a learner that
/// rebuilds a history policy's past actions from the log still knows the
/// fault tick applied the safe action (the gap in `seq` holds only the
/// event), so no record is left out, and the rebuilt inputs are the
/// device's.
#[test]
fn events_in_the_log_do_not_hide_what_a_fault_tick_applied() {
    use tinyppo_runtime::history::{self, HistorySpec};
    let n = net(18);
    let hist = HistorySpec {
        len: 1,
        mean: &[0.0],
        inv_std: &[1.0],
        weights: &[0.5, -0.5, 0.25, 1.0],
    };
    let mut body = vec![0u8; history::max_body_len(&hist)];
    let k = history::encode_body(&hist, &mut body).unwrap();
    body.truncate(k);
    let blob = n.encode_int8_for(
        0xFF,
        &[Extension {
            tag: history::TAG,
            body: &body,
        }],
    );
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let ok = |a: f32| Ok([a, -a]);
    let script = vec![
        ok(0.1),
        ok(0.2),
        Err(()),
        ok(0.3),
        ok(0.4),
        Err(()),
        Err(()),
        ok(0.5),
    ];
    let mut rig = Io {
        sensor: Script(script.into_iter().collect()),
        actuator: Recorder::default(),
        reward: Episodes { len: 8, ticks: 0 },
    };
    let mut bytes = Vec::new();
    let cfg = RunConfig {
        episodes: 1,
        seed: 5,
        deterministic: false,
    };
    driver::run::<_, 2, 1, 4, 4>(
        &policy,
        &mut rig,
        0xFF,
        &cfg,
        &mut Unpaced,
        &mut |f: &[u8]| bytes.extend_from_slice(f),
    );
    let log = decode_stream(&bytes);
    assert_eq!(log.events.len(), 2, "one event per run of faults");
    assert_eq!(log.transitions.len(), 5);
    let safe = policy.safe_action();
    let (aug, left_out) = tinyppo_trainer::history::augment(log, 1, &n.low, &n.high, &safe);
    assert_eq!(left_out, 0, "the events fill the gaps in seq");
    // The device's history at each logged tick: the previous tick's
    // applied action (clipped sample), or the safe action after a fault.
    let applied: Vec<f32> = rig.actuator.0.iter().map(|a| a[0]).collect();
    let want = [safe[0], applied[1 - 1], safe[0], applied[3], safe[0]];
    for (t, w) in aug.transitions.iter().zip(want) {
        assert_eq!(t.obs().len(), 3);
        assert_eq!(t.obs()[2], w, "t = {}", t.t);
    }
}
