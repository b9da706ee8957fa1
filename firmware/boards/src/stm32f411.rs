//! An STM32F411CEU6 "Black Pill" (feature `stm32f411`): 512 KiB flash, 128
//! KiB RAM (`memory/stm32f411.x`), clocked from its 25 MHz crystal to
//! 100 MHz, with the peripherals a tinyppo firmware drives:
//!
//! | what             | peripheral | pins                  | setting              |
//! |------------------|------------|-----------------------|----------------------|
//! | log stream (TX)  | USART1     | PA9                   | 921,600 Bd           |
//! | sensor bus       | I2C1       | SCL PB6, SDA PB7      | 400 kHz (fast mode)  |
//! | actuator         | TIM3 CH1   | PA6                   | 20 kHz PWM           |
//!
//! [`take`] hands them out as `embedded-hal` 1.0 traits, so the runtime's
//! `hal` adapters (`I2cSensor`, `PwmActuator`) and the driver take them
//! unchanged; the pins are this board's, the rest of a firmware is not.
//! Run with `probe-rs run --chip STM32F411CEUx`: the semihosting exit ends
//! the session.

use core::panic::PanicInfo;

use cortex_m::peripheral::SYST;
use embedded_hal::i2c::I2c as I2cTrait;
use embedded_hal::pwm::SetDutyCycle;
use stm32f4xx_hal::i2c::{DutyCycle, I2c, Mode};
use stm32f4xx_hal::pac;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config;

/// Core clock (Hz).
pub const CORE_HZ: u32 = 100_000_000;
/// Baud rate of the log stream on USART1.
pub const LOG_BAUD: u32 = 921_600;

/// The board's peripherals, as the firmware uses them.
pub struct Parts<L, I, P> {
    /// Sends a log frame on USART1 (blocking). A UART error loses the
    /// frame; the reader resynchronizes at the next delimiter.
    pub log: L,
    /// The I2C1 bus.
    pub i2c: I,
    /// TIM3 channel 1 on PA6, enabled, at 20 kHz.
    pub pwm: P,
    /// SysTick, for pacing the control loop.
    pub syst: SYST,
}

/// Why [`take`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeError {
    /// The peripherals were taken before.
    Taken,
    /// The USART refused its configuration.
    Usart,
}

/// Clocks the board and configures its peripherals; once.
pub fn take() -> Result<Parts<impl FnMut(&[u8]), impl I2cTrait, impl SetDutyCycle>, TakeError> {
    let (Some(dp), Some(cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        return Err(TakeError::Taken);
    };
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
    let (_, (ch1, ..)) = dp.TIM3.pwm_hz(20.kHz(), &mut rcc);
    let mut pwm = ch1.with(gpioa.pa6);
    pwm.enable();
    Ok(Parts {
        log: move |bytes: &[u8]| {
            let _ = tx.bwrite_all(bytes);
        },
        i2c,
        pwm,
        syst: cp.SYST,
    })
}

/// A panic is a bug: report it through semihosting and stop. (Without a
/// debugger attached the semihosting call faults; driving the actuator to
/// its safe state first is the board firmware's job.)
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::exit::failure(format_args!("panic: {info}"))
}
