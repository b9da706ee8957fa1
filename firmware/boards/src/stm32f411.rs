//! An STM32F411CEU6 "Black Pill" (feature `stm32f411`): 512 KiB flash, 128
//! KiB RAM (`memory/stm32f411.x`), clocked from its 25 MHz crystal to
//! 100 MHz, with the peripherals a tinyppo firmware drives:
//!
//! | what             | peripheral | pins                  | setting              |
//! |------------------|------------|-----------------------|----------------------|
//! | log stream (TX)  | USART1     | PA9                   | 921,600 Bd, 1 ms per byte at most |
//! | sensor bus       | I2C1       | SCL PB6, SDA PB7      | 400 kHz, every wait bounded ([`stm32f411_i2c`](crate::stm32f411_i2c)) |
//! | actuator         | TIM3 CH1   | PA6                   | 20 kHz PWM           |
//! | watchdog         | IWDG       | —                     | started by the firmware ([`Iwdg`]) |
//!
//! [`take`] hands them out as `embedded-hal` 1.0 traits, so the runtime's
//! `hal` adapters (`I2cSensor`, `PwmActuator`) and the driver take them
//! unchanged; the pins are this board's, the rest of a firmware is not.
//!
//! **When things go wrong.** Nothing here blocks without bound: a UART
//! byte that does not leave within 1 ms drops the rest of its frame
//! (counted, [`uart_timeouts`]; the reader resynchronizes at the next
//! delimiter), and an I2C transfer that stalls returns an error (the
//! control loop applies the safe action and logs the event). The [`Iwdg`]
//! resets the board if the loop stops having healthy ticks; the next boot
//! logs a `watchdog reset` event. The panic handler drives TIM3 CH1 to the
//! duty set with [`set_panic_duty`] (the plant's safe action) before
//! anything else, then reports through semihosting only if a debugger is
//! attached, and otherwise waits for the watchdog. Run with `probe-rs run
//! --chip STM32F411CEUx`: the semihosting exit ends the session.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::{DCB, DWT, SYST};
use embedded_hal::pwm::SetDutyCycle;
use embedded_hal_nb::serial::Write as _;
use stm32f4xx_hal::i2c::{DutyCycle, I2c, Mode};
use stm32f4xx_hal::pac;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config;
use stm32f4xx_hal::watchdog::IndependentWatchdog;

use crate::stm32f411_i2c::TimeoutI2c;

/// Core clock (Hz).
pub const CORE_HZ: u32 = 100_000_000;
/// Baud rate of the log stream on USART1.
pub const LOG_BAUD: u32 = 921_600;
/// Longest wait for one UART byte: 1 ms (a byte takes 11 µs at 921,600 Bd).
pub const UART_BYTE_TIMEOUT_CYCLES: u32 = CORE_HZ / 1_000;
/// Longest I2C transfer: 2 ms (a 2-byte register read takes about 80 µs at
/// 400 kHz).
pub const I2C_TIMEOUT_CYCLES: u32 = CORE_HZ / 500;

/// The board's peripherals, as the firmware uses them.
pub struct Parts<L, P> {
    /// Sends a log frame on USART1; never blocks longer than 1 ms per
    /// byte (a byte that times out drops the rest of the frame, counted
    /// in [`uart_timeouts`]).
    pub log: L,
    /// The I2C1 bus, every wait bounded.
    pub i2c: TimeoutI2c,
    /// TIM3 channel 1 on PA6, enabled, at 20 kHz.
    pub pwm: P,
    /// SysTick, for pacing the control loop.
    pub syst: SYST,
    /// The independent watchdog, not started yet.
    pub watchdog: Iwdg,
}

/// Why [`take`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// The peripherals were taken before.
    Taken,
    /// The USART refused its configuration.
    Usart,
}

/// UART bytes that timed out (each dropped the rest of its frame).
static UART_TIMEOUTS: AtomicU32 = AtomicU32::new(0);

/// Log frames cut short because a UART byte did not leave within
/// [`UART_BYTE_TIMEOUT_CYCLES`].
pub fn uart_timeouts() -> u32 {
    UART_TIMEOUTS.load(Ordering::Relaxed)
}

/// Clocks the board and configures its peripherals; once. Reads (and
/// clears) the reset cause first, for [`Iwdg::caused_last_reset`].
pub fn take() -> Result<Parts<impl FnMut(&[u8]), impl SetDutyCycle>, TakeError> {
    let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        return Err(TakeError::Taken);
    };
    let watchdog_reset = dp.RCC.csr().read().wdgrstf().bit_is_set();
    dp.RCC.csr().modify(|_, w| w.rmvf().set_bit());
    // The cycle counter times the UART and I2C waits.
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();
    let mut rcc = dp.RCC.freeze(Config::hse(25.MHz()).sysclk(100.MHz()));
    let gpioa = dp.GPIOA.split(&mut rcc);
    let gpiob = dp.GPIOB.split(&mut rcc);
    let mut tx = dp
        .USART1
        .tx(gpioa.pa9, LOG_BAUD.bps(), &mut rcc)
        .map_err(|_| TakeError::Usart)?;
    let i2c = I2c::new(
        dp.I2C1,
        (gpiob.pb6, gpiob.pb7),
        Mode::fast(400.kHz(), DutyCycle::Ratio2to1),
        &mut rcc,
    );
    let (i2c1, _pins) = i2c.release();
    let (_, (ch1, ..)) = dp.TIM3.pwm_hz(20.kHz(), &mut rcc);
    let mut pwm = ch1.with(gpioa.pa6);
    pwm.enable();
    let iwdg = IndependentWatchdog::new(dp.IWDG);
    // A halted core (a debugger's breakpoint) does not starve the watchdog.
    iwdg.stop_on_debug(&dp.DBGMCU, true);
    Ok(Parts {
        log: move |bytes: &[u8]| {
            for &b in bytes {
                let start = DWT::cycle_count();
                loop {
                    match tx.write(b) {
                        Ok(()) => break,
                        Err(embedded_hal_nb::nb::Error::WouldBlock)
                            if DWT::cycle_count().wrapping_sub(start)
                                <= UART_BYTE_TIMEOUT_CYCLES => {}
                        // Timed out, or a UART error: the frame is lost.
                        Err(_) => {
                            UART_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        },
        i2c: TimeoutI2c::new(i2c1, I2C_TIMEOUT_CYCLES),
        pwm,
        syst: cp.SYST,
        watchdog: Iwdg {
            iwdg,
            reset: watchdog_reset,
        },
    })
}

/// The IWDG as the runtime driver's watchdog: kicked after every healthy
/// tick, it resets the board when the loop stops (a hang, a sensor or
/// actuator that keeps failing).
pub struct Iwdg {
    iwdg: IndependentWatchdog,
    reset: bool,
}

impl Iwdg {
    /// Starts the countdown: `timeout_ms` (clamped to 1–32,000 ms) without
    /// a kick resets the board. Once started it cannot be stopped.
    pub fn start(&mut self, timeout_ms: u32) {
        self.iwdg.start(timeout_ms.clamp(1, 32_000).millis());
    }
}

impl tinyppo_runtime::driver::Watchdog for Iwdg {
    fn feed(&mut self) {
        self.iwdg.feed();
    }
    fn caused_last_reset(&self) -> bool {
        self.reset
    }
}

/// The TIM3 CH1 duty the panic handler applies, with bit 16 set once it is
/// known (0: not set yet).
static PANIC_DUTY: AtomicU32 = AtomicU32::new(0);

/// The duty the panic handler drives TIM3 CH1 to: the plant's safe action
/// (`PwmActuator::duty_of(&policy.safe_action())`). Set it before the
/// first tick; until then a panic turns the channel's output off.
pub fn set_panic_duty(duty: u16) {
    PANIC_DUTY.store(u32::from(duty) | 1 << 16, Ordering::Relaxed);
}

/// A panic is a bug: put the actuator in its safe state first, then
/// report through semihosting if a debugger is attached (without one a
/// semihosting call faults), else wait for the watchdog to reset the
/// board.
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    safe_pwm();
    if DCB::is_debugger_attached() {
        crate::exit::panic_failure(info)
    }
    loop {
        cortex_m::asm::wfi();
    }
}

/// TIM3 CH1 to the panic duty, or its output off if none was set.
#[allow(unsafe_code)]
fn safe_pwm() {
    // SAFETY: the panic handler runs once, after the firmware stopped using
    // TIM3 (nothing returns from it); writing CCR1 and CCER of a timer is
    // a plain register write with no memory-safety effect.
    let tim3 = unsafe { pac::TIM3::steal() };
    let duty = PANIC_DUTY.load(Ordering::Relaxed);
    if duty & 1 << 16 != 0 {
        tim3.ccr1().write(|w| unsafe { w.bits(duty & 0xFFFF) });
    } else {
        tim3.ccer().modify(|_, w| w.cc1e().clear_bit());
    }
}
