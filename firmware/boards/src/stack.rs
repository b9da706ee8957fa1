//! Stack high-water mark by painting: [`paint`] fills the free stack below
//! the current stack pointer with a pattern (at most [`WINDOW`] bytes), and
//! [`high_water`] finds the lowest word that no longer holds it.
//!
//! The stack grows down from `_stack_start` (top of RAM) towards
//! `_stack_end` (end of `.bss`/`.uninit`), both from cortex-m-rt's
//! `link.x`. A frame that reserves space without writing all of it can
//! hide a few words from the measurement; the result is a lower bound,
//! exact to the deepest written word.
#![allow(unsafe_code)]

use core::ptr::{addr_of, read_volatile, write_volatile};

/// The fill pattern.
const PAINT: u32 = 0x5AC7_C0DE;

/// The most bytes painted below the stack pointer (bounds the boot time on
/// a 4 MiB RAM; a deeper stack reports [`HighWater::saturated`]).
pub const WINDOW: usize = 64 * 1024;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

fn top() -> usize {
    // Only the address of the linker-defined symbol is taken, never its value.
    addr_of!(_stack_start) as usize
}

fn painted_bottom() -> usize {
    let end = addr_of!(_stack_end) as usize;
    let sp = cortex_m::register::msp::read() as usize;
    end.max(sp.saturating_sub(WINDOW)).next_multiple_of(4)
}

/// Bytes right below the stack pointer left unpainted: the compiler may
/// push registers after reading the stack pointer (shrink-wrapping, seen at
/// `opt-level = "s"`), and painting over them would corrupt the return
/// address. Any real stack use goes far deeper, so the measurement is not
/// affected.
const MARGIN: usize = 256;

/// Fills the unused stack below the current stack pointer with the pattern.
/// Call first thing in `main`, before interrupts are enabled.
#[inline(never)]
pub fn paint() {
    let end = (cortex_m::register::msp::read() as usize & !3).saturating_sub(MARGIN);
    let mut p = painted_bottom();
    while p < end {
        // SAFETY: `[painted_bottom, end)` is RAM between the end of the
        // statics and the stack pointer minus a margin that covers this
        // function's own register saves: no live data.
        unsafe { write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
    BOTTOM.store(painted_bottom(), core::sync::atomic::Ordering::Relaxed);
}

static BOTTOM: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// The deepest stack use seen since [`paint`].
#[derive(Debug, Clone, Copy)]
pub struct HighWater {
    /// Bytes between the top of the stack and the deepest written word.
    pub bytes: usize,
    /// The painted window was used up: the true depth may be larger.
    pub saturated: bool,
}

/// Scans the painted region from the bottom for the first overwritten word.
pub fn high_water() -> HighWater {
    let bottom = BOTTOM.load(core::sync::atomic::Ordering::Relaxed);
    if bottom == 0 {
        return HighWater {
            bytes: 0,
            saturated: true,
        };
    }
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = bottom;
    // SAFETY: reads of RAM words in `[bottom, sp)`, below the live stack.
    while p < sp && unsafe { read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    HighWater {
        bytes: top() - p,
        saturated: p == bottom,
    }
}
