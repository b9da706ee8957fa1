//! Board support for the tinyppo firmware on QEMU's MPS2 AN386
//! (Cortex-M4F at 25 MHz), shared by the `tinyppo-firmware` and `bench`
//! binaries:
//!
//! - [`uart`]: transmit-only driver of the CMSDK UART0 (the log stream);
//! - [`exit`]: success/failure exit through semihosting, and the panic
//!   handler (a panic exits with failure after printing its message);
//! - [`stack`]: stack painting at boot and the high-water mark at exit;
//! - [`timing`]: SysTick as a 24-bit down-counter, for instruction counts
//!   under `-icount shift=0` and for pacing the control loop;
//! - [`config`]: the run configuration fixed at build time (`build.rs`).
//!
//! Unsafe code is confined to [`uart`] (memory-mapped registers) and
//! [`stack`] (reading and writing unused stack memory).
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod exit;
pub mod stack;
pub mod timing;
pub mod uart;

/// The run configuration, from `TINYPPO_EPISODES`, `TINYPPO_SEED` and
/// `TINYPPO_DETERMINISTIC` at build time (defaults 3, 1, 0).
pub mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

/// The policy blob embedded at build time (`TINYPPO_POLICY`, default
/// `policies/pendulum.bin`). It stays in flash: the runtime borrows the
/// weights from it.
pub static POLICY_BLOB: &[u8] = include_bytes!(env!("TINYPPO_POLICY_FILE"));
