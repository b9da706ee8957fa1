//! The firmware on a real board: STM32F411CEU6 "Black Pill" driving a
//! pendulum (feature `board-f411`; README.md, "Real board").
//!
//! - Clock: 25 MHz HSE → 100 MHz core; SysTick paces one tick per
//!   `Pendulum::DT` (5,000,000 core cycles) and counts late ticks.
//! - Sensor: an AS5600 magnetic angle encoder on I2C1 (SCL PB6, SDA PB7,
//!   400 kHz), read through the runtime's `hal::I2cSensor` (RAW ANGLE, 12
//!   bits big-endian at register 0x0C) and turned into the policy's
//!   observation `[cos θ, sin θ, θ̇]` by [`PendulumSensor`].
//! - Actuator: TIM3 CH1 PWM on PA6 at 20 kHz into a locked-antiphase
//!   H-bridge (50 % duty = zero torque), through `hal::PwmActuator`.
//! - Reward: the Pendulum-v1 cost computed from the observation
//!   ([`PendulumCost`]), 200-tick episodes.
//! - Log: frames on USART1 TX (PA9) at 921,600 Bd.
//!
//! Run with `probe-rs run --chip STM32F411CEUx` (semihosting exit ends the
//! session after the configured episodes). Build-checked by
//! `cargo xtask ci`; never run in CI (no board).
#![no_std]
#![no_main]

use cortex_m::peripheral::SYST;
use cortex_m_rt::entry;
use cortex_m_semihosting::heprintln;
use stm32f4xx_hal::i2c::{DutyCycle, I2c, Mode};
use stm32f4xx_hal::pac;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config;
use tinyppo_firmware::{config, exit, stack, timing, POLICY_BLOB};
use tinyppo_runtime::control::{ControlLoop, Io, Outcome, RewardSource, Sensor};
use tinyppo_runtime::hal::{ByteOrder, I2cSensor, PwmActuator};
use tinyppo_runtime::log::{encode_end, encode_header, Header, Logger, LOG_VERSION, MAX_FRAME_LEN};
use tinyppo_runtime::plants::{Pendulum, Plant};
use tinyppo_runtime::{rng, Policy};

const CORE_HZ: u32 = 100_000_000;
const DT: f32 = <Pendulum as Plant<3, 1>>::DT;
const EPISODE_STEPS: u32 = <Pendulum as Plant<3, 1>>::MAX_EPISODE_STEPS;
const HID: usize = config::HID;
const LOG_CAP: usize = 4;
/// AS5600: 7-bit address, RAW ANGLE register, 4096 counts per turn.
const AS5600: u8 = 0x36;
const RAW_ANGLE: u8 = 0x0C;
/// Encoder reading of the upright position (calibrate per build).
const UPRIGHT: f32 = 0.0;

// The board loop is written for the pendulum policy.
const _: () = assert!(config::OBS == 3 && config::ACT == 1);

/// `[cos θ, sin θ, θ̇]` from an angle sensor; θ̇ by differencing over `DT`,
/// clipped to the plant's ±8 rad/s.
struct PendulumSensor<S> {
    angle: S,
    prev: Option<f32>,
}

impl<S: Sensor<1>> Sensor<3> for PendulumSensor<S> {
    type Error = S::Error;
    fn read(&mut self) -> Result<[f32; 3], S::Error> {
        let [theta] = self.angle.read()?;
        let omega = match self.prev {
            Some(p) => {
                let d = tinyppo_runtime::plants::pendulum::angle_normalize(theta - p);
                (d / DT).clamp(-8.0, 8.0)
            }
            None => 0.0,
        };
        self.prev = Some(theta);
        Ok([libm::cosf(theta), libm::sinf(theta), omega])
    }
}

/// Pendulum-v1's reward `−(θ² + 0.1 θ̇² + 0.001 u²)` from the observation,
/// and 200-tick episodes.
struct PendulumCost {
    steps: u32,
}

impl RewardSource<3, 1> for PendulumCost {
    fn outcome(&mut self, obs: Option<&[f32; 3]>, applied: &[f32; 1]) -> Outcome<3> {
        self.steps += 1;
        let reward = match obs {
            Some(&[c, s, w]) => {
                let th = libm::atan2f(s, c);
                -(th * th + 0.1 * w * w + 0.001 * applied[0] * applied[0])
            }
            None => 0.0,
        };
        let truncated = self.steps >= EPISODE_STEPS;
        if truncated {
            self.steps = 0;
        }
        Outcome {
            reward,
            terminated: false,
            truncated,
            next_obs: None,
        }
    }
}

#[entry]
fn main() -> ! {
    stack::paint();
    let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        exit::failure(format_args!("peripherals taken twice"))
    };
    let mut rcc = dp.RCC.freeze(Config::hse(25.MHz()).sysclk(100.MHz()));
    let gpioa = dp.GPIOA.split(&mut rcc);
    let gpiob = dp.GPIOB.split(&mut rcc);

    let Ok(mut tx) = dp.USART1.tx(gpioa.pa9, 921_600.bps(), &mut rcc) else {
        exit::failure(format_args!("USART1 configuration refused"))
    };
    let i2c = I2c::new(
        dp.I2C1,
        (gpiob.pb6, gpiob.pb7),
        Mode::fast(400.kHz(), DutyCycle::Ratio2to1),
        &mut rcc,
    );
    let (_, (ch1, ..)) = dp.TIM3.pwm_hz(20.kHz(), &mut rcc);
    let mut ch1 = ch1.with(gpioa.pa6);
    ch1.enable();

    let policy = match Policy::<3, 1, HID>::from_bytes(POLICY_BLOB) {
        Ok(p) => p,
        Err(e) => exit::failure(format_args!("policy blob refused: {e}")),
    };
    let angle = I2cSensor::<_, 1>::new(i2c, AS5600, RAW_ANGLE, [core::f32::consts::TAU / 4096.0])
        .with_byte_order(ByteOrder::BigEndian)
        .with_offset([-UPRIGHT]);
    let mut io = Io {
        sensor: PendulumSensor { angle, prev: None },
        actuator: PwmActuator::new([ch1], *policy.action_low(), *policy.action_high()),
        reward: PendulumCost { steps: 0 },
    };

    let mut buf = [0u8; MAX_FRAME_LEN];
    let mut send = |bytes: &[u8]| {
        // A UART error loses this frame; the reader resynchronizes at the
        // next delimiter.
        let _ = tx.bwrite_all(bytes);
    };
    let header = Header {
        log_version: LOG_VERSION,
        policy_id: policy.id(),
        plant: tinyppo_runtime::log::PLANT_HARDWARE,
        obs_dim: 3,
        act_dim: 1,
        seed: config::SEED,
        deterministic: config::DETERMINISTIC,
    };
    let mut rng = rng::seeded(config::SEED);
    let mut log = Logger::<3, 1, LOG_CAP>::new();
    let mut ctl = ControlLoop::new(&policy, config::DETERMINISTIC);
    let late = paced(&mut cp.SYST, config::EPISODES, |new_episode| {
        if new_episode {
            if let Ok(n) = encode_header(&header, &mut buf) {
                send(&buf[..n]);
            }
        }
        let tick = ctl.tick(&mut io, &mut rng, &mut log);
        while let Ok(Some(n)) = log.encode_next(&mut buf) {
            send(&buf[..n]);
        }
        tick.done
    });
    if let Ok(n) = encode_end(&ctl.totals(&log), &mut buf) {
        send(&buf[..n]);
    }
    // Zero torque before leaving.
    let [mut ch1] = io.actuator.release();
    ch1.set_duty(ch1.get_max_duty() / 2);
    let hw = stack::high_water();
    heprintln!(
        "tinyppo-board: policy={:08x} episodes={} late_ticks={} stack_high_water={}",
        policy.id(),
        config::EPISODES,
        late,
        hw.bytes
    );
    exit::success()
}

/// Calls `tick(new_episode)` once per `DT` until `episodes` episodes ended
/// (`tick` returns true at an episode's last tick); returns the late ticks.
fn paced(syst: &mut SYST, episodes: u32, mut tick: impl FnMut(bool) -> bool) -> u32 {
    timing::start(syst, (DT * CORE_HZ as f32) as u32 - 1);
    let mut late = 0;
    for _ in 0..episodes {
        let mut first = true;
        loop {
            let done = tick(first);
            first = false;
            if syst.has_wrapped() {
                late += 1;
            } else {
                while !syst.has_wrapped() {}
            }
            if done {
                break;
            }
        }
    }
    late
}
