//! Board support for tinyppo firmware.
//!
//! What depends on a board lives in one file per board, behind a feature
//! (enable exactly one; its build script puts the board's `memory.x` on
//! the linker path):
//!
//! | feature      | module          | board                                                     |
//! |--------------|-----------------|-----------------------------------------------------------|
//! | `mps2-an386` | [`mps2_an386`]  | QEMU's MPS2 AN386 (Cortex-M4F, 25 MHz): UART0, semihosting exit, the simulated-plant firmware [`mps2_an386::simulate`] |
//! | `stm32f411`  | [`stm32f411`]   | STM32F411CEU6 "Black Pill" (100 MHz): USART1, I2C1 with timeouts ([`stm32f411_i2c`]), TIM3 PWM, IWDG |
//!
//! The rest is the same on every Cortex-M board:
//!
//! - [`pace::SysTickPace`]: the runtime driver's [`Pace`](tinyppo_runtime::driver::Pace)
//!   on SysTick, one tick per control period, counting late ticks;
//! - [`timing`]: SysTick as a free-running counter (instruction counts
//!   under QEMU `-icount`);
//! - [`stack`]: stack painting at boot and the high-water mark;
//! - [`exit`]: success/failure through semihosting;
//! - [`embed_policy!`]: the policy blob and run configuration that
//!   `tinyppo-firmware-build` prepared in the firmware's build script.
//!
//! The episode and log loop itself is the runtime's board-independent
//! driver ([`tinyppo_runtime::driver::run`]); a board supplies a rig
//! (sensor, actuator, reward), a pace and a sink for the frames.
//!
//! Unsafe code is confined to the UART driver (memory-mapped registers),
//! [`stack`] (reading and writing unused stack memory), the STM32F411's
//! I2C register restore after a reset ([`stm32f411_i2c`]) and its panic
//! handler (TIM3's compare register, set to the safe duty).
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod exit;
pub mod pace;
pub mod stack;
pub mod timing;

#[cfg(feature = "mps2-an386")]
pub mod mps2_an386;
#[cfg(feature = "stm32f411")]
pub mod stm32f411;
#[cfg(feature = "stm32f411")]
pub mod stm32f411_i2c;

/// Declares, in the firmware crate that calls it, the module `config` (the
/// run configuration and the embedded blob's dimensions, written by
/// `tinyppo-firmware-build` from `TINYPPO_POLICY`, `TINYPPO_EPISODES`,
/// `TINYPPO_SEED`, `TINYPPO_DETERMINISTIC`) and the static `POLICY_BLOB`
/// (the blob itself; it stays in flash, the runtime borrows the weights).
///
/// `config` holds `OBS`, `ACT`, `HID` (the blob's dimensions, for
/// `Policy<OBS, ACT, HID>`), `PLANT_CODE` (the blob's plant, checked
/// against the firmware's plant by the build script), `EPISODES`, `SEED`,
/// `DETERMINISTIC` and `RUN`, the same as a
/// [`RunConfig`](tinyppo_runtime::driver::RunConfig).
#[macro_export]
macro_rules! embed_policy {
    () => {
        /// The run configuration and the embedded blob's dimensions
        /// (written by the build script).
        pub mod config {
            include!(concat!(env!("OUT_DIR"), "/tinyppo_config.rs"));
        }
        /// The policy blob embedded at build time (`TINYPPO_POLICY`),
        /// word-aligned in flash: an `int8x4` blob's interleaved weights
        /// are then word-aligned too, and its kernel loads them with `LDM`.
        pub static POLICY_BLOB: &[u8] = {
            #[repr(C, align(4))]
            struct Aligned<T: ?Sized>(T);
            static ALIGNED: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("TINYPPO_POLICY_FILE")));
            &ALIGNED.0
        };
    };
}
