//! QEMU's MPS2 AN386 board (feature `mps2-an386`): a Cortex-M4F at 25 MHz
//! with 4 MiB of flash and RAM (`memory/mps2-an386.x`), its CMSDK UART0 for
//! the log stream, semihosting for the exit code and messages, and
//! [`simulate`]: the whole firmware for a simulated plant, generic over the
//! plant type.
//!
//! UART0 (CMSDK APB UART, ARM DAI 0386C) at `0x4000_4000`:
//!
//! | offset | register | used bits |
//! |--------|----------|-----------|
//! | `0x00` | DATA     | 7:0 byte to send |
//! | `0x04` | STATE    | 0 = TX buffer full |
//! | `0x08` | CTRL     | 0 = TX enable |
//! | `0x10` | BAUDDIV  | divider, must be ≥ 16 |
//!
//! QEMU's `-serial file:PATH` captures the bytes exactly; on a real MPS2
//! board the divider sets the baud rate (25 MHz / 16 ≈ 1.56 MBd, the
//! fastest setting).
#![allow(unsafe_code)]

use core::panic::PanicInfo;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};

use tinyppo_runtime::log::{Logger, MAX_FRAME_LEN};
use tinyppo_runtime::plants::Plant;
use tinyppo_runtime::realism::{Realism, Realistic};
use tinyppo_runtime::sim::{self, RunConfig};
use tinyppo_runtime::{Blob, Policy};
use ufmt::{uWrite, uwrite};

use crate::exit::{self, Console, Hex, Hex64};
use crate::pace::SysTickPace;
use crate::stack;

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

impl uWrite for Uart0 {
    type Error = core::convert::Infallible;
    fn write_str(&mut self, s: &str) -> Result<(), Self::Error> {
        self.write_all(s.as_bytes());
        Ok(())
    }
}

/// Core clock (Hz).
pub const CORE_HZ: u32 = 25_000_000;

/// Instructions per SysTick tick under `qemu-system-arm -icount shift=0`
/// (1 ns per instruction, 40 ns per 25 MHz tick).
pub const INSTRUCTIONS_PER_TICK: u64 = 40;

/// A panic is a bug (the runtime promises not to panic once a policy is
/// loaded): report it and exit with failure.
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    exit::panic_failure(info)
}

/// How [`simulate`] spaces its ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// As fast as the core runs: the log stream is then a pure function of
    /// the blob, the plant and the run configuration, so `tinyppo
    /// simulate` on the host writes the same bytes.
    Unpaced,
    /// One tick per plant period `P::DT` on SysTick, counting late ticks:
    /// the loop a board runs (the same bytes too).
    SysTick,
}

/// Log queue capacity (entries) of [`simulate`]. The driver drains the
/// queue after every tick, and a tick queues at most a transition and an
/// episode end, so a small queue never drops.
pub const LOG_CAP: usize = 4;

/// The whole firmware for a simulated plant `P` on this board: loads
/// `blob` as a `Policy<OBS, ACT, HID>` (refusing a blob of another plant),
/// wraps the plant in the realism the blob records ([`Realistic`]: sensor
/// noise and delays, actuator lag…; the bare plant without a record),
/// runs `cfg.episodes` episodes through the runtime's driver
/// ([`sim::run_simulated`]), streams every frame on UART0 as it is made,
/// prints one `key=value` summary line on the semihosting console (parsed
/// by `cargo xtask bench-mcu`) and exits: status 0, or 1 with a message if
/// the blob is refused, an entry was dropped, or anything panics.
///
/// ```ignore
/// #[cortex_m_rt::entry]
/// fn main() -> ! {
///     mps2_an386::simulate::<MyPlant, 2, 1, { config::HID }>(POLICY_BLOB, &config::RUN, Pacing::Unpaced)
/// }
/// ```
pub fn simulate<P, const OBS: usize, const ACT: usize, const HID: usize>(
    blob: &[u8],
    cfg: &RunConfig,
    pacing: Pacing,
) -> !
where
    P: Plant<OBS, ACT> + Default,
{
    stack::paint();
    let Some(mut uart) = Uart0::take() else {
        exit::failure("UART0 taken twice")
    };
    let policy = match Blob::parse(blob).and_then(|b| Policy::<OBS, ACT, HID>::from_blob(&b)) {
        Ok(p) => p,
        Err(e) => {
            // The code, not the message: `tinyppo inspect` on the blob
            // prints both.
            let code = Hex(e.code());
            let _ = uwrite!(uart, "policy blob refused: error code {}\r\n", code);
            exit::failure_with(|c| {
                let _ = uwrite!(
                    c,
                    "policy blob refused: error code {} (`tinyppo inspect` on the blob says why)",
                    code
                );
            })
        }
    };
    if let Some(c) = policy.plant_code() {
        if c != P::CODE {
            exit::failure_with(|w| {
                let _ = uwrite!(
                    w,
                    "the policy was exported for plant code {}; this firmware simulates {} (code {})",
                    c,
                    P::NAME,
                    P::CODE
                );
            })
        }
    }
    // The sensor and actuator effects the policy was trained with (the
    // blob's realism record; none without one), as `tinyppo simulate`
    // applies them.
    let realism = match Blob::parse(blob) {
        Ok(b) => Realism::<OBS, ACT>::from_blob(&b),
        Err(_) => Realism::NONE,
    };
    let mut plant = Realistic::new(P::default(), realism);
    let mut sink = |frame: &[u8]| uart.write_all(frame);
    let (stats, late) = match pacing {
        Pacing::Unpaced => (
            sim::run_simulated::<Realistic<P, OBS, ACT>, OBS, ACT, HID, LOG_CAP>(
                &policy, &mut plant, cfg, &mut sink,
            ),
            0u32,
        ),
        Pacing::SysTick => {
            let Some(mut cp) = cortex_m::Peripherals::take() else {
                exit::failure("core peripherals taken twice")
            };
            let mut pace = SysTickPace::start(&mut cp.SYST, CORE_HZ, P::DT);
            let st = sim::run_simulated_paced::<Realistic<P, OBS, ACT>, OBS, ACT, HID, LOG_CAP>(
                &policy, &mut plant, cfg, &mut pace, &mut sink,
            );
            (st, pace.late())
        }
    };
    let hw = stack::high_water();
    // Integers only: formatting an f32 (or a u64 in decimal) would pull
    // float-printing code (or 64-bit division) into flash.
    let _ = uwrite!(
        Console::new(),
        "tinyppo-firmware: policy={} plant={} episodes={} seed={} deterministic={} \
         transitions={} dropped={} frames={} log_bytes={} mean_return_milli={} late_ticks={} \
         stack_high_water={} stack_saturated={} log_buffers={}\n",
        Hex(policy.id()),
        P::NAME,
        stats.episodes,
        Hex64(cfg.seed),
        cfg.deterministic,
        stats.transitions,
        stats.dropped,
        stats.frames,
        stats.bytes,
        // Saturating f32 → i32 (one VCVT).
        (stats.mean_return * 1000.0) as i32,
        late,
        hw.bytes,
        hw.saturated,
        // The frame buffer and the queue live on the stack of the loop.
        (MAX_FRAME_LEN + core::mem::size_of::<Logger<OBS, ACT, LOG_CAP>>()) as u32,
    );
    if stats.dropped != 0 {
        exit::failure_with(|c| {
            let _ = uwrite!(c, "{} log entries dropped", stats.dropped);
        })
    }
    exit::success()
}
