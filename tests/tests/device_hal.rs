//! The embedded-hal adapters (`runtime/src/hal.rs`) against
//! `embedded-hal-mock`: the exact I2C transactions and PWM duty cycles, and
//! a bus error going through the control loop as a counted fault with the
//! safe action applied.

use embedded_hal::i2c::ErrorKind;
use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cT};
use embedded_hal_mock::eh1::pwm::{Mock as PwmMock, Transaction as PwmT};
use embedded_hal_mock::eh1::MockError;

use tinyppo_runtime::control::{
    Actuator, ControlLoop, Io, Outcome, RewardSource, Sensor, TickStatus,
};
use tinyppo_runtime::hal::{ByteOrder, I2cSensor, PwmActuator};
use tinyppo_runtime::log::Logger;
use tinyppo_runtime::rng::seeded;
use tinyppo_runtime::{Activation, Policy};

use crate::util::{Net, TestRng};

const ADDR: u8 = 0x6A;
const REG: u8 = 0x22;

#[test]
fn i2c_sensor_reads_all_channels_in_one_transaction() {
    // Channels: 0x0100 = 256, 0xFF38 = −200 (little-endian), 0x7FFF.
    let mut i2c = I2cMock::new(&[
        I2cT::write_read(ADDR, vec![REG], vec![0x00, 0x01, 0x38, 0xFF, 0xFF, 0x7F]),
        I2cT::write_read(ADDR, vec![REG], vec![0x01, 0x00, 0xFF, 0x38, 0x80, 0x00]),
    ]);
    let mut s = I2cSensor::<_, 3>::new(i2c.clone(), ADDR, REG, [0.5, 0.01, 1.0])
        .with_offset([1.0, 0.0, -1.0]);
    assert_eq!(s.read().unwrap(), [129.0, 0.01 * -200.0, 32766.0]);
    // Big-endian registers (MPU-6050 style).
    let mut s = s.with_byte_order(ByteOrder::BigEndian);
    assert_eq!(
        s.read().unwrap(),
        [0.5 * 256.0 + 1.0, 0.01 * -200.0, -32769.0]
    );
    s.release();
    i2c.done();
}

#[test]
fn i2c_errors_are_returned() {
    let mut i2c =
        I2cMock::new(&[I2cT::write_read(ADDR, vec![REG], vec![0, 0]).with_error(ErrorKind::Other)]);
    let mut s = I2cSensor::<_, 1>::new(i2c.clone(), ADDR, REG, [1.0]);
    assert_eq!(s.read(), Err(ErrorKind::Other));
    i2c.done();
}

#[test]
fn pwm_maps_the_action_range_to_the_duty_range() {
    // max duty 1000, range [−2, 2]: −2 → 0, 2 → 1000, 0 → 500, 0.5 → 625,
    // beyond the bounds clipped, NaN → midpoint.
    let expect: Vec<PwmT> = [0u16, 1000, 500, 625, 0, 1000, 500, 333]
        .iter()
        .flat_map(|&d| [PwmT::max_duty_cycle(1000), PwmT::set_duty_cycle(d)])
        .collect();
    let mut pwm = PwmMock::new(&expect);
    let mut a = PwmActuator::new([pwm.clone()], [-2.0], [2.0]);
    for x in [
        -2.0,
        2.0,
        0.0,
        0.5,
        -9.0,
        f32::INFINITY,
        f32::NAN,
        -2.0 + 4.0 / 3.0,
    ] {
        a.apply(&[x]).unwrap();
    }
    a.release();
    pwm.done();
}

#[test]
fn pwm_sets_every_channel_and_returns_the_first_error() {
    let mut ch0 = PwmMock::new(&[
        PwmT::max_duty_cycle(100),
        PwmT::set_duty_cycle(25).with_error(MockError::Io(std::io::ErrorKind::Other)),
    ]);
    let mut ch1 = PwmMock::new(&[PwmT::max_duty_cycle(255), PwmT::set_duty_cycle(255)]);
    let mut a = PwmActuator::new([ch0.clone(), ch1.clone()], [0.0, -1.0], [4.0, 1.0]);
    assert!(a.apply(&[1.0, 1.0]).is_err());
    ch0.done();
    ch1.done();
}

/// Reward 0, never ends.
struct Zero;

impl RewardSource<2, 1> for Zero {
    fn outcome(&mut self, _: Option<&[f32; 2]>, _: &[f32; 1]) -> Outcome<2> {
        Outcome {
            reward: 0.0,
            terminated: false,
            truncated: false,
            next_obs: None,
        }
    }
}

#[test]
fn a_bus_error_in_the_loop_applies_the_safe_action_and_is_counted() {
    let net = Net::random(
        &mut TestRng::new(9),
        2,
        1,
        &[4],
        Activation::Tanh,
        (-1.0, 0.0),
    );
    let blob = net.encode_f32();
    let policy = Policy::<2, 1, 4>::from_bytes(&blob).unwrap();
    let (lo, hi) = (policy.action_low()[0], policy.action_high()[0]);
    // Tick 1 reads [1.0, −0.5] (scale 1/1000); tick 2's read fails.
    let mut i2c = I2cMock::new(&[
        I2cT::write_read(ADDR, vec![REG], vec![0xE8, 0x03, 0x0C, 0xFE]),
        I2cT::write_read(ADDR, vec![REG], vec![0, 0, 0, 0]).with_error(ErrorKind::Bus),
    ]);
    // The policy's mean decides tick 1; tick 2 gets the safe action, the
    // midpoint of the bounds, which is half of full scale.
    let step = policy.mean_applied(&[1.0, -0.5]).unwrap()[0];
    let duty1 = libm::roundf((step - lo) / (hi - lo) * 1000.0) as u16;
    let mut pwm = PwmMock::new(&[
        PwmT::max_duty_cycle(1000),
        PwmT::set_duty_cycle(duty1),
        PwmT::max_duty_cycle(1000),
        PwmT::set_duty_cycle(500),
    ]);
    let mut plant = Io {
        sensor: I2cSensor::<_, 2>::new(i2c.clone(), ADDR, REG, [1e-3, 1e-3]),
        actuator: PwmActuator::new([pwm.clone()], [lo], [hi]),
        reward: Zero,
    };
    let mut ctl = ControlLoop::new(&policy, true);
    let mut log = Logger::<2, 1, 4>::new();
    let mut rng = seeded(0);
    assert_eq!(
        ctl.tick(&mut plant, &mut rng, &mut log).status,
        TickStatus::Logged
    );
    assert_eq!(
        ctl.tick(&mut plant, &mut rng, &mut log).status,
        TickStatus::SensorError
    );
    assert_eq!(ctl.stats().sensor_errors, 1);
    assert_eq!(log.len(), 2, "the transition and the sensor-error event");
    i2c.done();
    pwm.done();
}
