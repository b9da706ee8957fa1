//! Ending a run: the exit code reaches QEMU (and a probe-rs/OpenOCD
//! session) through semihosting `SYS_EXIT`, so a test can assert on it.
//!
//! Messages go to the semihosting console through [`Console`], a `ufmt`
//! writer: no device binary links `core::fmt` (its formatting machinery
//! and integer tables cost kilobytes of flash; `cargo xtask ci` checks
//! the ELFs for it). Errors of the runtime are printed as their numeric
//! code ([`FormatError::code`](tinyppo_runtime::FormatError::code));
//! `tinyppo inspect` on the same blob prints the message.
//!
//! Without a debugger attached, a semihosting call on a real board is a
//! breakpoint that hard-faults; the firmware only exits at the end of a
//! simulated run, which is what the QEMU and bench builds do. Each board
//! module defines the panic handler.

use core::convert::Infallible;

use cortex_m_semihosting::{debug, hio};
use ufmt::{uDisplay, uWrite, Formatter};

/// The semihosting console (the host's stderr) as a [`ufmt::uWrite`]:
/// `ufmt::uwrite!(Console::new(), "…{}…", n)`. Output is lost, never an
/// error, if the host refuses it.
pub struct Console(Option<hio::HostStream>);

impl Console {
    /// Opens the console.
    pub fn new() -> Console {
        Console(hio::hstderr().ok())
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl uWrite for Console {
    type Error = Infallible;
    fn write_str(&mut self, s: &str) -> Result<(), Infallible> {
        if let Some(h) = &mut self.0 {
            let _ = h.write_all(s.as_bytes());
        }
        Ok(())
    }
}

/// The 8 hex digits of `v`, written one `char` at a time (a `str` of them
/// would go through `from_utf8`'s 350 bytes of validation).
fn write_hex<W: uWrite + ?Sized>(f: &mut Formatter<'_, W>, v: u32) -> Result<(), W::Error> {
    for i in 0..8 {
        f.write_char(char::from(
            b"0123456789abcdef"[((v >> (28 - 4 * i)) & 0xF) as usize],
        ))?;
    }
    Ok(())
}

/// `{}` of a `u32` as `0x` and 8 hex digits (`ufmt` prints integers in
/// decimal only).
#[derive(Debug, Clone, Copy)]
pub struct Hex(pub u32);

impl uDisplay for Hex {
    fn fmt<W: uWrite + ?Sized>(&self, f: &mut Formatter<'_, W>) -> Result<(), W::Error> {
        f.write_str("0x")?;
        write_hex(f, self.0)
    }
}

/// `{}` of a `u64` as `0x` and 16 hex digits (decimal would link the
/// 64-bit division routine).
#[derive(Debug, Clone, Copy)]
pub struct Hex64(pub u64);

impl uDisplay for Hex64 {
    fn fmt<W: uWrite + ?Sized>(&self, f: &mut Formatter<'_, W>) -> Result<(), W::Error> {
        f.write_str("0x")?;
        write_hex(f, (self.0 >> 32) as u32)?;
        write_hex(f, self.0 as u32)
    }
}

/// Exits with status 0.
pub fn success() -> ! {
    debug::exit(debug::EXIT_SUCCESS);
    halt()
}

/// Prints `error: {msg}` on the semihosting console and exits with status 1.
pub fn failure(msg: &str) -> ! {
    failure_with(|c| {
        let _ = c.write_str(msg);
    })
}

/// Prints `error: `, whatever `write` writes, and a newline on the
/// semihosting console, and exits with status 1.
pub fn failure_with(write: impl FnOnce(&mut Console)) -> ! {
    let mut c = Console::new();
    let _ = c.write_str("error: ");
    write(&mut c);
    let _ = c.write_str("\n");
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

/// Reports a panic without formatting its arguments: the message when it
/// is a plain string (`panic!("…")`), and the location.
pub fn panic_failure(info: &core::panic::PanicInfo) -> ! {
    failure_with(|c| {
        let _ = c.write_str("panic");
        if let Some(msg) = info.message().as_str() {
            let _ = c.write_str(": ");
            let _ = c.write_str(msg);
        }
        if let Some(l) = info.location() {
            let _ = ufmt::uwrite!(c, " at {}:{}", l.file(), l.line());
        }
    })
}

/// Spins forever (if the debugger ignored the exit request).
pub fn halt() -> ! {
    loop {
        cortex_m::asm::bkpt();
    }
}
