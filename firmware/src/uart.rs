//! Transmit-only driver for the CMSDK APB UART0 of the MPS2 boards.
//!
//! | offset | register | used bits |
//! |--------|----------|-----------|
//! | `0x00` | DATA     | 7:0 byte to send |
//! | `0x04` | STATE    | 0 = TX buffer full |
//! | `0x08` | CTRL     | 0 = TX enable |
//! | `0x10` | BAUDDIV  | divider, must be ≥ 16 |
//!
//! at `0x4000_4000` (ARM DAI 0386C, "CMSDK APB UART"). QEMU's
//! `-serial file:PATH` captures the bytes exactly; on a real MPS2 board the
//! divider sets the baud rate (25 MHz / 16 ≈ 1.56 MBd, the fastest setting).
#![allow(unsafe_code)]

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};

const BASE: usize = 0x4000_4000;
const DATA: *mut u32 = BASE as *mut u32;
const STATE: *const u32 = (BASE + 0x4) as *const u32;
const CTRL: *mut u32 = (BASE + 0x8) as *mut u32;
const BAUDDIV: *mut u32 = (BASE + 0x10) as *mut u32;
const STATE_TX_FULL: u32 = 1 << 0;
const CTRL_TX_ENABLE: u32 = 1 << 0;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// The UART0 transmitter. At most one exists ([`Uart0::take`]).
pub struct Uart0 {
    _owned: (),
}

impl Uart0 {
    /// Enables the transmitter (divider 16) and returns the only handle, or
    /// `None` if it was taken before.
    pub fn take() -> Option<Uart0> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: BAUDDIV and CTRL are registers of the CMSDK UART0 on this
        // board (memory-mapped, always present, 32-bit aligned); `TAKEN`
        // makes this the only code that writes them.
        unsafe {
            write_volatile(BAUDDIV, 16);
            write_volatile(CTRL, CTRL_TX_ENABLE);
        }
        Some(Uart0 { _owned: () })
    }

    /// Sends one byte, waiting while the transmit buffer is full.
    #[inline]
    pub fn write_byte(&mut self, byte: u8) {
        // SAFETY: STATE and DATA are UART0 registers (see `take`); `&mut
        // self` on the only handle serializes the accesses.
        unsafe {
            while read_volatile(STATE) & STATE_TX_FULL != 0 {}
            write_volatile(DATA, u32::from(byte));
        }
    }

    /// Sends all of `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}

impl core::fmt::Write for Uart0 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.write_all(s.as_bytes());
        Ok(())
    }
}
