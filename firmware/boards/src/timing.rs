//! SysTick as a free-running 24-bit down-counter on the core clock.
//!
//! On a board a tick is one core cycle. Under `qemu-system-arm -icount
//! shift=0` each guest instruction advances virtual time by 1 ns, so on the
//! MPS2 AN386 (25 MHz) one tick is exactly 40 instructions
//! (`mps2_an386::INSTRUCTIONS_PER_TICK`), the same on every run.

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;

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
