//! The tinyppo firmware: runs the embedded policy on the simulated plant
//! (`TINYPPO_ENV`, default pendulum) for the configured episodes, streams
//! the rollout log frames on UART0, then exits through semihosting (status
//! 0, or 1 with a message if the policy blob is refused or anything
//! panics).
//!
//! The default build runs the runtime's `sim::run_simulated` as fast as the
//! core goes: its byte stream is a pure function of blob, plant, episodes,
//! seed and mode, so `tinyppo simulate` on the host writes the same bytes
//! (CI compares them). With feature `real-io` the same control loop
//! (`control::ControlLoop`) is paced by SysTick at the plant period and
//! counts late ticks, as a board runs it; on a board the plant adapter is
//! replaced by the runtime's `hal` sensor and actuator (README.md).
//!
//! The semihosting console (QEMU's stderr) gets one `key=value` summary
//! line, parsed by `cargo xtask bench-mcu`.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::heprintln;
use tinyppo_firmware::{config, exit, stack, uart::Uart0, POLICY_BLOB};
use tinyppo_runtime::log::{Logger, MAX_FRAME_LEN};
use tinyppo_runtime::sim::RunConfig;
use tinyppo_runtime::Policy;

/// Dimensions of the embedded policy, read from the blob by `build.rs`
/// (which also checks them against the plant's).
const OBS: usize = config::OBS;
const ACT: usize = config::ACT;
const HID: usize = config::HID;

/// Log queue capacity (entries). The loop drains the queue after every
/// tick, and a tick queues at most a transition and an episode end, so a
/// small queue never drops.
const LOG_CAP: usize = 4;

#[cfg(tinyppo_plant = "pendulum")]
type SimPlant = tinyppo_runtime::plants::Pendulum;
#[cfg(tinyppo_plant = "mountain-car")]
type SimPlant = tinyppo_runtime::plants::MountainCar;
#[cfg(tinyppo_plant = "cartpole")]
type SimPlant = tinyppo_runtime::plants::CartPole;
#[cfg(tinyppo_plant = "dc-motor")]
type SimPlant = tinyppo_runtime::plants::DcMotor;

#[entry]
fn main() -> ! {
    stack::paint();
    let Some(mut uart) = Uart0::take() else {
        exit::failure(format_args!("UART0 taken twice"))
    };
    let policy = match Policy::<OBS, ACT, HID>::from_bytes(POLICY_BLOB) {
        Ok(p) => p,
        Err(e) => {
            let mut msg: heapless::String<160> = heapless::String::new();
            // A message longer than the buffer is cut, never a failure.
            let _ = core::fmt::write(&mut msg, format_args!("policy blob refused: {e}\r\n"));
            uart.write_all(msg.as_bytes());
            exit::failure(format_args!("policy blob refused: {e}"))
        }
    };
    let cfg = RunConfig {
        episodes: config::EPISODES,
        seed: config::SEED,
        deterministic: config::DETERMINISTIC,
    };
    let mut plant = SimPlant::new();
    let mut sink = |frame: &[u8]| uart.write_all(frame);

    #[cfg(not(feature = "real-io"))]
    let (stats, late) = (
        tinyppo_runtime::sim::run_simulated::<_, OBS, ACT, HID, LOG_CAP>(
            &policy,
            &mut plant,
            &cfg,
            &mut sink,
        ),
        0u32,
    );
    #[cfg(feature = "real-io")]
    let (stats, late) = {
        let Some(mut cp) = cortex_m::Peripherals::take() else {
            exit::failure(format_args!("core peripherals taken twice"))
        };
        paced::run(&policy, &mut plant, &cfg, &mut cp.SYST, &mut sink)
    };

    let hw = stack::high_water();
    heprintln!(
        "tinyppo-firmware: policy={:08x} plant={} episodes={} seed={} deterministic={} \
         transitions={} dropped={} frames={} log_bytes={} mean_return_milli={} late_ticks={} \
         stack_high_water={} stack_saturated={} log_buffers={}",
        policy.id(),
        config::PLANT,
        stats.episodes,
        config::SEED,
        config::DETERMINISTIC,
        stats.transitions,
        stats.dropped,
        stats.frames,
        stats.bytes,
        // Integer milli-units: formatting an f32 would pull ~14 KiB of
        // float-printing code into flash.
        (stats.mean_return * 1000.0) as i64,
        late,
        hw.bytes,
        hw.saturated,
        // The frame buffer and the queue live on the stack of the loop.
        MAX_FRAME_LEN + core::mem::size_of::<Logger<OBS, ACT, LOG_CAP>>(),
    );
    if stats.dropped != 0 {
        exit::failure(format_args!("{} log entries dropped", stats.dropped))
    }
    exit::success()
}

/// The control loop paced by SysTick at the plant period (`real-io`).
#[cfg(feature = "real-io")]
mod paced {
    use cortex_m::peripheral::SYST;
    use tinyppo_firmware::timing;
    use tinyppo_runtime::plants::Plant;
    use tinyppo_runtime::sim::{run_simulated_paced, Pace, RunStats};

    use super::*;

    /// One tick per SysTick period; counts late ticks (a tick whose work,
    /// log included, did not finish within its period: the next one then
    /// starts at once instead of waiting).
    struct SysTickPace<'a> {
        syst: &'a mut SYST,
        late: u32,
    }

    impl Pace for SysTickPace<'_> {
        fn episode_start(&mut self) {
            // Start the first period now.
            self.syst.clear_current();
            let _ = self.syst.has_wrapped();
        }
        fn wait(&mut self) {
            if self.syst.has_wrapped() {
                self.late += 1;
            } else {
                while !self.syst.has_wrapped() {}
            }
        }
    }

    /// Runs the episodes with one tick per plant period `DT` and returns the
    /// statistics and the number of late ticks. The stream is exactly
    /// `sim::run_simulated`'s (the same driver, `sim::run_paced`). Here the
    /// plant is simulated; on a board `io` is a `control::Io` of the
    /// runtime's `hal` adapters.
    pub fn run<P: Plant<OBS, ACT>>(
        policy: &Policy<'_, OBS, ACT, HID>,
        plant: &mut P,
        cfg: &RunConfig,
        syst: &mut SYST,
        sink: &mut impl FnMut(&[u8]),
    ) -> (RunStats, u32) {
        let period = (P::DT * timing::CORE_HZ as f32) as u32;
        timing::start(syst, period.saturating_sub(1).max(1));
        let mut pace = SysTickPace { syst, late: 0 };
        let stats = run_simulated_paced::<P, OBS, ACT, HID, LOG_CAP>(
            policy,
            plant,
            cfg,
            &mut pace,
            sink,
        );
        (stats, pace.late)
    }
}
