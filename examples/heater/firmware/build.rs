//! Checks the embedded blob against the heater (its plant code and
//! dimensions) with the runtime's own parser, and writes the run
//! configuration; the memory map comes from `tinyppo-boards`.

fn main() {
    tinyppo_firmware_build::Firmware::new()
        .default_policy("policies/heater.bin")
        .plant::<heater_plant::Heater, { heater_plant::OBS }, 1>()
        .emit();
}
