//! Puts the selected board's memory map on the linker search path as
//! `memory.x` (cortex-m-rt's `link.x` includes it). A firmware without a
//! board feature brings its own `memory.x` (tinyppo-firmware-build's
//! `Firmware::memory_x`).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let boards: Vec<&str> = [
        ("CARGO_FEATURE_MPS2_AN386", "memory/mps2-an386.x"),
        ("CARGO_FEATURE_STM32F411", "memory/stm32f411.x"),
    ]
    .into_iter()
    .filter(|(f, _)| env::var_os(f).is_some())
    .map(|(_, m)| m)
    .collect();
    match boards[..] {
        [] => {}
        [memory] => {
            // Under another name in `memory/`: the linker looks for
            // `memory.x` in its working directory before the search path.
            fs::copy(manifest.join(memory), out.join("memory.x"))
                .unwrap_or_else(|e| panic!("copy {memory} to OUT_DIR: {e}"));
            println!("cargo:rustc-link-search={}", out.display());
            println!("cargo:rerun-if-changed={memory}");
        }
        _ => panic!("tinyppo-boards: enable exactly one board feature (mps2-an386 or stm32f411)"),
    }
}
