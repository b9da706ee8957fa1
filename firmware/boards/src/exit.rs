//! Ending a run: the exit code reaches QEMU (and a probe-rs/OpenOCD
//! session) through semihosting `SYS_EXIT`, so a test can assert on it.
//!
//! Without a debugger attached, a semihosting call on a real board is a
//! breakpoint that hard-faults; the firmware only exits at the end of a
//! simulated run, which is what the QEMU and bench builds do. Each board
//! module defines the panic handler.

use cortex_m_semihosting::{debug, heprintln};

/// Exits with status 0.
pub fn success() -> ! {
    debug::exit(debug::EXIT_SUCCESS);
    halt()
}

/// Prints `error: {msg}` on the semihosting console and exits with status 1.
pub fn failure(msg: core::fmt::Arguments) -> ! {
    heprintln!("error: {}", msg);
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

/// Spins forever (if the debugger ignored the exit request).
pub fn halt() -> ! {
    loop {
        cortex_m::asm::bkpt();
    }
}
