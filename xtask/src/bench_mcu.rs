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

/// Issue 13's targets: `act()` of the int8 3-64-64-1 policy, instructions
/// per MAC of a 64×64 int8 hidden layer (bias, tanh and requantization
/// included), `act()` of the int8 32-256-256-8 policy, the control tick
/// with logging (instructions), flash of the QEMU pendulum firmware with
/// its blob, and static RAM + stack with the log buffers excluded (bytes).
const ACT_TARGET: u64 = 7_000;
const LAYER_TARGET: f64 = 1.4;
const LARGE_TARGET: u64 = 110_000;
const TICK_TARGET: u64 = 10_000;
const FLASH_TARGET: u64 = 24 * 1024;
const RAM_TARGET: u64 = 2 * 1024;

/// Options of `cargo xtask bench-mcu`.
#[derive(Debug, Default)]
struct Opts {
    json: bool,
    opt_level: Option<String>,
}

impl Opts {
    fn parse(args: &[&str]) -> Result<Opts> {
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(&a) = it.next() {
            match a {
                "--json" => o.json = true,
                "--opt-level" => {
                    let v = it
                        .next()
                        .context("--opt-level needs a value (s, z, 2 or 3)")?;
                    if !matches!(*v, "0" | "1" | "2" | "3" | "s" | "z") {
                        bail!("--opt-level: expected 0, 1, 2, 3, s or z, not {v:?}");
                    }
                    o.opt_level = Some((*v).to_owned());
                }
                other => bail!(
                    "bench-mcu: unknown argument `{other}` (expected --json, --opt-level LEVEL)"
                ),
            }
        }
        Ok(o)
    }
}

pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let opts = Opts::parse(args)?;
    qemu::check_installed()?;
    let tc = Toolchain::detect(root)?;
    let opt = |b: Build| Build {
        opt_level: opts.opt_level.clone(),
        ..b
    };
    let fw = firmware::build(root, &tc, &opt(Build::default()))?;
    let sizes = fw.sizes.context("no section sizes of the firmware ELF")?;
    let board = firmware::build(root, &tc, &opt(crate::sizes::devices()[1].build()))?;
    let board_sizes = board.sizes.context("no section sizes of the board ELF")?;
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
        &opt(Build {
            bin: Some(firmware::BENCH_BIN.into()),
            features: vec!["bench"],
            ..Build::default()
        }),
    )?;
    let out = qemu::run(&qemu::Run {
        elf: bench.elf,
        serial: None,
        icount: true,
        timeout: Duration::from_secs(600),
    })?;
    let results = Results::parse(&out.console)?;
    let m = Measured::new(&results, &sizes, &board_sizes, &summary)?;
    let level = opts
        .opt_level
        .as_deref()
        .unwrap_or("the firmware's own (\"s\")");
    if opts.json {
        println!("{}", m.json(&tc, opts.opt_level.as_deref()));
    } else {
        println!(
            "toolchain: {} ({}), opt-level {level}",
            tc.name(),
            tc.rustc_version
        );
        print_tables(&results, &m, &summary);
    }
    Ok(())
}

/// The headline figures, for the targets table and `--json`.
/// The targets are measured with the `int8x4` encoding (the faster one,
/// the same actions); the row-major `int8` figures are kept beside them.
struct Measured {
    act_small: u64,
    act_small_row_major: u64,
    mean_small: u64,
    layer: u64,
    layer_row_major: u64,
    layer_macs: u64,
    act_large: u64,
    act_large_row_major: u64,
    tick_no_log: u64,
    tick_with_log: u64,
    tick_with_log_row_major: u64,
    flash: u64,
    board_flash: u64,
    static_ram: u64,
    stack: u64,
    log_buffers: u64,
}

impl Measured {
    fn new(r: &Results, fw: &Sizes, board: &Sizes, s: &FirmwareSummary) -> Result<Measured> {
        let get =
            |v: Option<u64>, what: &str| v.with_context(|| format!("the bench printed no {what}"));
        let find = |list: &[(String, u64)], prefix: &str| {
            list.iter()
                .find(|(n, _)| n.starts_with(prefix))
                .map(|(_, v)| *v)
        };
        let layer_of = |name: &str| {
            r.layer
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|&(_, m, n)| (m, n))
                .with_context(|| format!("the bench printed no `{name}` layer"))
        };
        let (layer_macs, layer) = layer_of("64x64 int8x4")?;
        let (_, layer_row_major) = layer_of("64x64 int8")?;
        Ok(Measured {
            act_small: get(r.act("3-64-64-1 int8x4"), "3-64-64-1 int8x4 act")?,
            act_small_row_major: get(r.act("3-64-64-1 int8"), "3-64-64-1 int8 act")?,
            mean_small: get(
                find(&r.parts, "3-64-64-1 int8x4 mean()"),
                "3-64-64-1 int8x4 mean",
            )?,
            layer,
            layer_row_major,
            layer_macs,
            act_large: get(r.act("32-256-256-8 int8x4"), "32-256-256-8 int8x4 act")?,
            act_large_row_major: get(r.act("32-256-256-8 int8"), "32-256-256-8 int8 act")?,
            tick_no_log: get(find(&r.act, "control tick: pendulum"), "tick without log")?,
            tick_with_log: get(
                find(
                    &r.act,
                    "control tick: run_simulated incl. logging, the policy as int8x4",
                ),
                "tick with log (int8x4)",
            )?,
            tick_with_log_row_major: get(
                find(&r.act, "control tick: run_simulated incl. logging to UART0"),
                "tick with log",
            )?,
            flash: fw.flash(),
            board_flash: board.flash(),
            static_ram: fw.static_ram(),
            stack: s.stack,
            log_buffers: get(s.log_buffers, "log_buffers in the firmware summary")?,
        })
    }

    fn per_mac(&self) -> f64 {
        self.layer as f64 / self.layer_macs as f64
    }

    fn ram_excl_log(&self) -> u64 {
        (self.static_ram + self.stack).saturating_sub(self.log_buffers)
    }

    fn json(&self, tc: &Toolchain, opt_level: Option<&str>) -> String {
        let v = serde_json::json!({
            "toolchain": tc.rustc_version,
            "opt_level": opt_level.unwrap_or("s"),
            "encoding": "int8x4",
            "act_int8_3_64_64_1_insns": self.act_small,
            "act_int8_3_64_64_1_row_major_insns": self.act_small_row_major,
            "mean_int8_3_64_64_1_insns": self.mean_small,
            "layer_64x64_int8_insns": self.layer,
            "layer_64x64_int8_insns_per_mac": (self.per_mac() * 1000.0).round() / 1000.0,
            "layer_64x64_int8_row_major_insns": self.layer_row_major,
            "act_int8_32_256_256_8_insns": self.act_large,
            "act_int8_32_256_256_8_row_major_insns": self.act_large_row_major,
            "tick_no_log_insns": self.tick_no_log,
            "tick_with_log_insns": self.tick_with_log,
            "tick_with_log_row_major_insns": self.tick_with_log_row_major,
            "firmware_flash_bytes": self.flash,
            "board_flash_bytes": self.board_flash,
            "static_ram_bytes": self.static_ram,
            "stack_high_water_bytes": self.stack,
            "log_buffer_bytes": self.log_buffers,
            "ram_excl_log_bytes": self.ram_excl_log(),
        });
        v.to_string()
    }
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
    /// (encoding, MACs, instructions) of the whole 64×64 hidden layer.
    layer: Vec<(String, u64, u64)>,
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
                ["layer", name, macs, n] => r.layer.push((name.to_owned(), num(macs)?, num(n)?)),
                _ => {}
            }
        }
        if r.act.is_empty() {
            bail!("the bench printed no results:\n{console}");
        }
        // The bench's on-device checks (kernels against naive sums…).
        if let Some((k, v)) = r.info.iter().find(|(_, v)| v.starts_with("false")) {
            bail!("bench check failed on the device: {k}: {v}");
        }
        Ok(r)
    }

    fn act(&self, name: &str) -> Option<u64> {
        self.act.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

fn print_tables(r: &Results, m: &Measured, fw: &FirmwareSummary) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };

    println!(
        "\n## Targets (issue 13; int8 with the int8x4 encoding, row-major int8 in brackets)\n"
    );
    println!("| figure | measured | target | |");
    println!("|---|---:|---:|---|");
    println!(
        "| int8 3-64-64-1 `act()` (MLP + sample + log-prob), instructions | {} ({}) | ≤ {ACT_TARGET} | {} |",
        m.act_small,
        m.act_small_row_major,
        verdict(m.act_small <= ACT_TARGET)
    );
    println!(
        "| int8 3-64-64-1 `mean()`, instructions | {} | | |",
        m.mean_small
    );
    println!(
        "| 64×64 int8 hidden layer (matvec + bias + tanh + requantization), instructions per MAC | {:.3} ({} / {}; {:.3}) | ≤ {LAYER_TARGET} | {} |",
        m.per_mac(),
        m.layer,
        m.layer_macs,
        m.layer_row_major as f64 / m.layer_macs as f64,
        verdict(m.per_mac() <= LAYER_TARGET)
    );
    println!(
        "| int8 32-256-256-8 `act()`, instructions | {} ({}) | ≤ {LARGE_TARGET} | {} |",
        m.act_large,
        m.act_large_row_major,
        verdict(m.act_large <= LARGE_TARGET)
    );
    println!(
        "| control tick with logging (simulated pendulum), instructions | {} ({}) | ≤ {TICK_TARGET} | {} |",
        m.tick_with_log,
        m.tick_with_log_row_major,
        verdict(m.tick_with_log <= TICK_TARGET)
    );
    println!(
        "| flash, QEMU pendulum firmware incl. its blob, bytes | {} | ≤ {FLASH_TARGET} | {} |",
        m.flash,
        verdict(m.flash <= FLASH_TARGET)
    );
    println!(
        "| flash, STM32F411 board binary incl. its blob, bytes | {} | | |",
        m.board_flash
    );
    println!(
        "| static RAM + stack high-water, log buffers excluded, bytes | {} | ≤ {RAM_TARGET} | {} |",
        m.ram_excl_log(),
        verdict(m.ram_excl_log() <= RAM_TARGET)
    );

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
    println!("| quantity | bytes |");
    println!("|---|---:|");
    println!("| flash, QEMU firmware: text + data | {} |", m.flash);
    println!(
        "| flash, STM32F411 board binary: text + data | {} |",
        m.board_flash
    );
    println!("| static RAM: data + bss | {} |", m.static_ram);
    let stack_note = if fw.saturated { " (saturated)" } else { "" };
    println!("| stack high-water (painting){stack_note} | {} |", m.stack);
    println!(
        "| of which log buffers (frame buffer + queue) | {} |",
        m.log_buffers
    );
    println!(
        "| static RAM + stack, log buffers excluded | {} |",
        m.ram_excl_log()
    );
    println!("\nfirmware: {}", fw.line);
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
