//! tinyppo's QEMU firmware: runs the embedded policy on the built-in plant
//! its blob names, for the configured episodes, streams the rollout log
//! frames on UART0, then exits through semihosting (status 0, or 1 with a
//! message if the policy blob is refused or anything panics).
//!
//! Everything but the choice of plant is `tinyppo_boards::mps2_an386::
//! simulate`, the same call a firmware for your own plant makes with its
//! plant type. The plant type here comes from the blob's plant code, a
//! build-time constant, through the runtime's `plants::Builtin` (no `cfg`
//! per plant, no table of names).
//!
//! The default build runs the episodes as fast as the core goes: its byte
//! stream is a pure function of blob, plant, episodes, seed and mode, so
//! `tinyppo simulate` on the host writes the same bytes (CI compares
//! them). With feature `real-io` the same driver is paced by SysTick at the
//! plant period and counts late ticks, as a board runs it.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use tinyppo_boards::mps2_an386::{simulate, Pacing};
use tinyppo_runtime::plants::{Builtin, BuiltinPlant};

tinyppo_boards::embed_policy!();

/// The built-in plant the embedded blob was exported for.
type SimPlant = <Builtin<{ config::PLANT_CODE }> as BuiltinPlant>::Plant;

#[entry]
fn main() -> ! {
    let pacing = if cfg!(feature = "real-io") {
        Pacing::SysTick
    } else {
        Pacing::Unpaced
    };
    simulate::<SimPlant, { config::OBS }, { config::ACT }, { config::HID }>(
        POLICY_BLOB,
        &config::RUN,
        pacing,
    )
}
