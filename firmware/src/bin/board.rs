//! tinyppo on a real board: an STM32F411CEU6 "Black Pill" driving a
//! pendulum (feature `board-f411`; README.md, "Real board").
//!
//! The board's clock, UART, I2C and PWM are `tinyppo_boards::stm32f411`;
//! this file is the pendulum's sensor, actuator and cost on them, handed
//! to the runtime's board-independent driver (`driver::run`), which runs
//! the episodes and streams the log exactly as the QEMU firmware does:
//!
//! - Sensor: an AS5600 magnetic angle encoder on I2C1 (RAW ANGLE, 12 bits
//!   big-endian at register 0x0C) through the runtime's `hal::I2cSensor`,
//!   turned into the policy's observation `[cos θ, sin θ, θ̇]` by
//!   [`PendulumSensor`].
//! - Actuator: TIM3 CH1 PWM into a locked-antiphase H-bridge (50 % duty =
//!   zero torque), through `hal::PwmActuator`.
//! - Reward: the Pendulum-v1 cost computed from the observation
//!   ([`PendulumCost`]), 200-tick episodes.
//! - Pace: SysTick, one tick per `Pendulum::DT`, late ticks counted.
//! - Log: frames on USART1 TX (PA9) at 921,600 Bd; the header names the
//!   blob's plant.
//! - Safety: the blob's self-test runs at boot (on failure only the safe
//!   action is applied), the blob's `[safety]` limits apply after the
//!   policy, the IWDG resets the board after four control periods without
//!   a healthy tick, and a panic drives the PWM to the safe action's duty.
//!   Without a debugger attached the binary never calls semihosting: at
//!   the end of the run it holds the safe action.
//!
//! Run with `probe-rs run --chip STM32F411CEUx` (semihosting exit ends the
//! session after the configured episodes). Build-checked by
//! `cargo xtask ci`; never run in CI (no board).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use embedded_hal::pwm::SetDutyCycle;
use tinyppo_boards::exit::{Console, Hex};
use tinyppo_boards::pace::SysTickPace;
use tinyppo_boards::{exit, stack, stm32f411};
use tinyppo_runtime::control::{Actuator, Io, Outcome, RewardSource, Sensor};
use tinyppo_runtime::driver;
use tinyppo_runtime::driver::Watchdog as _;
use tinyppo_runtime::hal::{ByteOrder, I2cSensor, PwmActuator};
use tinyppo_runtime::plants::{code, Pendulum, Plant};
use tinyppo_runtime::Policy;
use ufmt::uwrite;

tinyppo_boards::embed_policy!();

const DT: f32 = <Pendulum as Plant<3, 1>>::DT;
const EPISODE_STEPS: u32 = <Pendulum as Plant<3, 1>>::MAX_EPISODE_STEPS;
const HID: usize = config::HID;
const LOG_CAP: usize = 4;
/// AS5600: 7-bit address, RAW ANGLE register, 4096 counts per turn.
const AS5600: u8 = 0x36;
const RAW_ANGLE: u8 = 0x0C;
/// Encoder reading of the upright position (calibrate per build).
const UPRIGHT: f32 = 0.0;

// The board drives a pendulum: the embedded blob must be a pendulum policy.
const _: () = assert!(
    config::PLANT_CODE == code::PENDULUM
        || (config::PLANT_CODE == code::UNSPECIFIED && config::OBS == 3 && config::ACT == 1),
    "the board binary drives a pendulum: embed a pendulum policy (TINYPPO_POLICY)"
);

/// `[cos θ, sin θ, θ̇]` from an angle sensor; θ̇ by differencing over `DT`,
/// clipped to the plant's ±8 rad/s. In f32 and integers only: the angle
/// becomes turns in units of 2⁻²⁴, so the sine and cosine are
/// `math::sincos_turns` and the wrapped difference is a 24-bit integer
/// subtraction (libm's `sinf`/`cosf` evaluate in f64, which the M4F
/// emulates in software: ≈ 1,250 instructions and 5 KB of flash for the
/// pair; `fmodf` links 64-bit division).
struct PendulumSensor<S> {
    angle: S,
    prev: Option<i32>,
}

/// One turn in the units of [`PendulumSensor`]'s angle.
const TURN: f32 = 16_777_216.0;

impl<S: Sensor<1>> Sensor<3> for PendulumSensor<S> {
    type Error = S::Error;
    fn read(&mut self) -> Result<[f32; 3], S::Error> {
        let [theta] = self.angle.read()?;
        let k = (theta * (TURN / core::f32::consts::TAU)) as i32;
        let omega = match self.prev {
            Some(p) => {
                // The difference modulo one turn, in [−½, ½) turn.
                let d = (k.wrapping_sub(p) << 8) >> 8;
                (d as f32 * (core::f32::consts::TAU / TURN) / DT).clamp(-8.0, 8.0)
            }
            None => 0.0,
        };
        self.prev = Some(k);
        let (sin, cos) = tinyppo_runtime::math::sincos_turns(k as u32);
        Ok([cos, sin, omega])
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

/// The IWDG's timeout: four control periods without a healthy tick.
const WATCHDOG_MS: u32 = (4.0 * DT * 1000.0) as u32;

/// Reports a setup failure: through semihosting with a debugger attached,
/// else by holding the actuator in its safe state (a semihosting call
/// without a debugger faults).
fn setup_failed(what: &str, code: u32) -> ! {
    if cortex_m::peripheral::DCB::is_debugger_attached() {
        exit::failure_with(|c| {
            let _ = uwrite!(c, "{}: error code {}", what, Hex(code));
        })
    }
    exit::halt()
}

#[entry]
fn main() -> ! {
    stack::paint();
    let mut board = match stm32f411::take() {
        Ok(b) => b,
        Err(e) => setup_failed("board setup failed", e as u32),
    };
    // Zero torque (the H-bridge's 50 % duty) until the policy says what is
    // safe, in the panic handler too.
    let _ = board.pwm.set_duty_cycle_percent(50);
    stm32f411::set_panic_duty(board.pwm.max_duty_cycle() / 2);
    let policy = match Policy::<3, 1, HID>::from_bytes(POLICY_BLOB) {
        Ok(p) => p,
        // `tinyppo inspect` on the blob prints the message for the code.
        Err(e) => setup_failed("policy blob refused", e.code()),
    };
    let angle = I2cSensor::<_, 1>::new(
        board.i2c,
        AS5600,
        RAW_ANGLE,
        [core::f32::consts::TAU / 4096.0],
    )
    .with_byte_order(ByteOrder::BigEndian)
    .with_offset([-UPRIGHT]);
    let mut actuator = PwmActuator::new([board.pwm], *policy.action_low(), *policy.action_high());
    let [safe_duty] = actuator.duty_of(&policy.safe_action());
    stm32f411::set_panic_duty(safe_duty);
    let mut io = Io {
        sensor: PendulumSensor { angle, prev: None },
        actuator,
        reward: PendulumCost { steps: 0 },
    };
    let plant = policy.plant_code().unwrap_or(code::PENDULUM);
    let mut pace = SysTickPace::start(&mut board.syst, stm32f411::CORE_HZ, DT);
    board.watchdog.start(WATCHDOG_MS);
    let stats = driver::run_with::<_, 3, 1, HID, LOG_CAP>(
        &policy,
        &mut io,
        plant,
        &config::RUN,
        &mut pace,
        &mut board.watchdog,
        &mut board.log,
    );
    let late = pace.late();
    // The safe action before leaving.
    let _ = io.actuator.apply(&policy.safe_action());
    if !cortex_m::peripheral::DCB::is_debugger_attached() {
        // Nobody to report to: hold the safe action, keep the watchdog fed.
        loop {
            board.watchdog.feed();
            cortex_m::asm::delay(stm32f411::CORE_HZ / 100);
        }
    }
    let hw = stack::high_water();
    let _ = uwrite!(
        Console::new(),
        "tinyppo-board: policy={} episodes={} transitions={} dropped={} late_ticks={} \
         uart_timeouts={} i2c_timeouts={} e-stop_ticks={} self_test={} stack_high_water={}\n",
        Hex(policy.id()),
        stats.episodes,
        stats.transitions,
        stats.dropped,
        late,
        stm32f411::uart_timeouts(),
        io.sensor.angle.i2c().timeouts(),
        stats.safety.estop_ticks,
        match stats.self_test {
            Some(r) if r.passed() => "passed",
            Some(_) => "FAILED",
            None => "none",
        },
        hw.bytes
    );
    exit::success()
}
