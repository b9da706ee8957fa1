//! Sets `cfg(tinyppo_armv7em)` for ARMv7E-M targets (Cortex-M4/M7:
//! `thumbv7em-none-eabi`, `thumbv7em-none-eabihf`), which always have the
//! DSP instructions (`SXTB16`, `SMLAD`) that the int8 kernel uses, and
//! `cfg(tinyppo_vfp)` for `thumbv7em-none-eabihf` (FPv4-SP: `VSQRT.F32`).
//!
//! Not `cfg(target_feature = "dsp")`: stable Rust does not report ARM
//! target features to `cfg` (they are unstable), so that test is false on
//! a stable toolchain even where the core has DSP. The cortex-m crate's
//! build script decides the same way, from the target name.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(tinyppo_armv7em)");
    println!("cargo:rustc-check-cfg=cfg(tinyppo_vfp)");
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em-") {
        println!("cargo:rustc-cfg=tinyppo_armv7em");
        if target.ends_with("eabihf") {
            println!("cargo:rustc-cfg=tinyppo_vfp");
        }
    }
}
