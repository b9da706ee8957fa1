//! SysTick as a free-running 24-bit down-counter on the core clock.
//!
//! Under `qemu-system-arm -icount shift=0` each guest instruction advances
//! virtual time by 1 ns and the MPS2 core clock is 25 MHz, so one SysTick
//! tick is exactly [`INSTRUCTIONS_PER_TICK`] instructions, the same on every
//! run. On a board a tick is one core cycle.

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;

/// Core clock of the MPS2 AN386 (Hz).
pub const CORE_HZ: u32 = 25_000_000;

/// Instructions per SysTick tick under `-icount shift=0` (1 ns per
/// instruction, 40 ns per 25 MHz tick).
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

/// Largest SysTick reload value.
pub const MAX_RELOAD: u32 = 0x00FF_FFFF;

/// Starts SysTick counting down from `reload` on the core clock, without
/// its interrupt.
pub fn start(syst: &mut SYST, reload: u32) {
    syst.disable_counter();
    syst.disable_interrupt();
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(reload.min(MAX_RELOAD));
    syst.clear_current();
    syst.enable_counter();
}

/// The current counter value.
#[inline(always)]
pub fn now() -> u32 {
    SYST::get_current()
}

/// Ticks from `start` to `end` of a down-counter with reload [`MAX_RELOAD`]
/// (correct across one wrap).
#[inline(always)]
pub fn ticks(start: u32, end: u32) -> u32 {
    start.wrapping_sub(end) & MAX_RELOAD
}
