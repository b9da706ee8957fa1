//! The heater firmware: the embedded policy on the simulated TCLab heater,
//! the rollout log on UART0, exit through semihosting. Everything but the
//! plant type is tinyppo's board-independent pieces, so the log equals
//! `heater simulate`'s byte for byte.
#![no_std]
#![no_main]

use heater_plant::Heater;
use tinyppo_boards::mps2_an386::{simulate, Pacing};

tinyppo_boards::embed_policy!();

#[cortex_m_rt::entry]
fn main() -> ! {
    simulate::<Heater, { config::OBS }, { config::ACT }, { config::HID }>(
        POLICY_BLOB,
        &config::RUN,
        Pacing::Unpaced,
    )
}
