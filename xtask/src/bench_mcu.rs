//! `cargo xtask bench-mcu`: instruction counts, sizes and RAM of the
//! firmware on the Cortex-M4F, printed as tables.
//!
//! 1. Builds the firmware (release, bundled pendulum policy), prints its
//!    `size`, runs it under QEMU and reads its stack high-water mark
//!    (stack painting) from the semihosting console.
//! 2. Builds the `bench` binary (feature `bench`: four random policies
//!    encoded by `firmware/build.rs`, micromath) and runs it under
//!    `qemu-system-arm -icount shift=0`, where SysTick counts exactly 40
//!    instructions per tick; parses its tab-separated result lines (format
//!    in `firmware/src/bin/bench.rs`).
//!
//! Instructions are not cycles, but they are deterministic and comparable
//! between versions (`EMBEDDED-TOOLCHAIN.md`). Not part of `cargo xtask ci`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::firmware::{self, Build, Sizes};
use crate::qemu;
use crate::toolchain::Toolchain;

/// `act()` budget of the int8 3-64-64-1 policy (instructions).
const ACT_TARGET: u64 = 12_000;
/// Flash budget with policy and plant (bytes).
const FLASH_TARGET: u64 = 48 * 1024;
/// Static RAM + stack budget, log buffers excluded (bytes).
const RAM_TARGET: u64 = 8 * 1024;

pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    if let Some(a) = args.first() {
        bail!("bench-mcu: unknown argument `{a}`");
    }
    qemu::check_installed()?;
    let tc = Toolchain::detect(root)?;
    println!("toolchain: {} ({})", tc.name(), tc.rustc_version);

    let fw = firmware::build(root, &tc, &Build::default())?;
    let sizes = fw
        .sizes
        .context("bench-mcu needs section sizes: install binutils-arm-none-eabi")?;
    let fw_run = qemu::run(&qemu::Run {
        elf: fw.elf.clone(),
        serial: None,
        icount: false,
        timeout: Duration::from_secs(60),
    })?;
    let summary = FirmwareSummary::parse(&fw_run.console)?;

    let bench = firmware::build(
        root,
        &tc,
        &Build {
            bin: Some(firmware::BENCH_BIN.into()),
            features: vec!["bench"],
            ..Build::default()
        },
    )?;
    let out = qemu::run(&qemu::Run {
        elf: bench.elf,
        serial: None,
        icount: true,
        timeout: Duration::from_secs(600),
    })?;
    let results = Results::parse(&out.console)?;

    print_tables(&results, &sizes, &summary);
    Ok(())
}

/// The `key=value` summary line the firmware prints at exit.
struct FirmwareSummary {
    stack: u64,
    saturated: bool,
    log_buffers: Option<u64>,
    line: String,
}

impl FirmwareSummary {
    fn parse(console: &str) -> Result<Self> {
        let line = console
            .lines()
            .find(|l| l.starts_with("tinyppo-firmware:"))
            .with_context(|| format!("no summary line in the firmware's output:\n{console}"))?;
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        let stack = field("stack_high_water")
            .context("no stack_high_water= in the summary")?
            .parse()
            .context("stack_high_water")?;
        Ok(FirmwareSummary {
            stack,
            saturated: field("stack_saturated") == Some("true"),
            log_buffers: field("log_buffers").and_then(|v| v.parse().ok()),
            line: line.to_owned(),
        })
    }
}

#[derive(Default)]
struct Results {
    /// (name, instructions per call) of `act`, `part` and `tick` lines.
    act: Vec<(String, u64)>,
    parts: Vec<(String, u64)>,
    /// (function, implementation, range, instructions, max abs, max rel).
    math: Vec<[String; 6]>,
    info: Vec<(String, String)>,
}

impl Results {
    fn parse(console: &str) -> Result<Self> {
        let mut r = Results::default();
        for line in console.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let num = |s: &str| -> Result<u64> {
                s.trim()
                    .parse()
                    .with_context(|| format!("bad number in bench line {line:?}"))
            };
            match f[..] {
                ["act", name, n] => r.act.push((name.to_owned(), num(n)?)),
                ["part", name, n] => r.parts.push((name.to_owned(), num(n)?)),
                ["math", func, imp, range, n, abs, rel] => r.math.push([
                    func.into(),
                    imp.into(),
                    range.into(),
                    num(n)?.to_string(),
                    abs.into(),
                    rel.into(),
                ]),
                ["info", key, value] => r.info.push((key.to_owned(), value.to_owned())),
                _ => {}
            }
        }
        if r.act.is_empty() {
            bail!("the bench printed no results:\n{console}");
        }
        Ok(r)
    }

    fn act(&self, name: &str) -> Option<u64> {
        self.act.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

fn print_tables(r: &Results, sizes: &Sizes, fw: &FirmwareSummary) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };

    println!("\n## act() on the Cortex-M4F (instructions per call, QEMU -icount, N = 1000)\n");
    println!("| policy / work | instructions |");
    println!("|---|---:|");
    for (name, n) in &r.act {
        println!("| {name} | {n} |");
    }
    println!("\n### Where the int8 3-64-64-1 time goes (the runtime's kernels on its layers)\n");
    println!("| part | instructions |");
    println!("|---|---:|");
    for (name, n) in &r.parts {
        println!("| {name} | {n} |");
    }

    println!("\n## Device math: libm vs micromath vs the runtime's `math` (instructions per call incl. call overhead; errors against libm f64)\n");
    println!(
        "| function | implementation | range | instructions | max abs error | max rel error |"
    );
    println!("|---|---|---|---:|---:|---:|");
    for [func, imp, range, n, abs, rel] in &r.math {
        println!("| {func} | {imp} | {range} | {n} | {abs} | {rel} |");
    }
    println!("| tanhf | micromath | | — | micromath has no tanh | |");

    if !r.info.is_empty() {
        println!("\n### Checks\n");
        for (k, v) in &r.info {
            println!("- {k}: {v}");
        }
    }

    println!("\n## Firmware (release, bundled pendulum policy)\n");
    println!("| quantity | bytes | budget | |");
    println!("|---|---:|---:|---|");
    println!(
        "| flash: text {} + data {} | {} | {} | {} |",
        sizes.text,
        sizes.data,
        sizes.flash(),
        FLASH_TARGET,
        verdict(sizes.flash() <= FLASH_TARGET)
    );
    println!(
        "| static RAM: data {} + bss {} | {} | | |",
        sizes.data,
        sizes.bss,
        sizes.static_ram()
    );
    let stack_note = if fw.saturated { " (saturated)" } else { "" };
    println!(
        "| stack high-water (painting){stack_note} | {} | | |",
        fw.stack
    );
    let ram = sizes.static_ram() + fw.stack;
    match fw.log_buffers {
        Some(log) => {
            println!("| of which log buffers (frame buffer + queue) | {log} | | |");
            let net = ram.saturating_sub(log);
            println!(
                "| static RAM + stack, log buffers excluded | {net} | {RAM_TARGET} | {} |",
                verdict(net <= RAM_TARGET)
            );
        }
        None => println!(
            "| static RAM + stack | {ram} | {RAM_TARGET} | {} |",
            verdict(ram <= RAM_TARGET)
        ),
    }
    println!("\nfirmware: {}", fw.line);

    if let Some(n) = r.act("3-64-64-1 int8") {
        println!(
            "\nint8 3-64-64-1 act(): {n} instructions, target ≤ {ACT_TARGET}: {}",
            verdict(n <= ACT_TARGET)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_lines_and_ignores_the_rest() {
        let console = "noise\nact\t3-64-64-1 int8\t45084\npart\tdense\t21653\n\
                       math\texpf\tlibm\t[-20,2]\t63\t3.9e-7\t6.9e-8\ninfo\tN\t1000\n";
        let r = Results::parse(console).unwrap();
        assert_eq!(r.act("3-64-64-1 int8"), Some(45084));
        assert_eq!(r.parts, [("dense".to_owned(), 21653)]);
        assert_eq!(r.math[0][3], "63");
        assert_eq!(r.info, [("N".to_owned(), "1000".to_owned())]);
        assert!(Results::parse("nothing").is_err());
    }

    #[test]
    fn parses_the_firmware_summary() {
        let s = FirmwareSummary::parse(
            "x\ntinyppo-firmware: policy=5d379591 stack_high_water=1732 stack_saturated=false log_buffers=2100\n",
        )
        .unwrap();
        assert_eq!(s.stack, 1732);
        assert!(!s.saturated);
        assert_eq!(s.log_buffers, Some(2100));
    }
}
