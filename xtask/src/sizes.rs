//! `cargo xtask sizes [--bless]`: the device binaries' golden size files
//! and their symbol check (issue 13), also steps of `cargo xtask ci`.
//!
//! **Sizes.** `firmware/sizes/<binary>.size` holds the Berkeley sizes
//! (text, data, bss) of each flashable release ELF, like RTIC's `.size`
//! files. A build whose figure moved by more than [`slack`] from the file,
//! up or down, fails with both numbers: growth must be intended, and a
//! shrink must be recorded so the file stays the truth. An intended
//! change re-writes the files with `--bless` in the same commit.
//!
//! **Symbols.** No device binary may link f64 soft-float, float
//! formatting, the `core::fmt` engine or 64-bit division. For each such
//! symbol found, the check walks the direct call graph up to the code
//! that pulls it in and fails with the chain. One exception is stated per
//! binary: the QEMU firmware *simulates* its plant on the device, and the
//! built-in plants call libm's `sinf`/`cosf`/`fmodf`, whose musl
//! algorithms evaluate in f64 (and 64-bit integers). Changing them would
//! change every simulated trajectory (`golden_compat`'s fingerprints), so
//! those symbols are allowed there when every chain ends in `libm::`;
//! the board binary, which controls a real plant, has no exception.
//!
//! The bench binary is not checked: it measures libm against the
//! runtime's math and prints floats.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::elf::{Elf, Function};
use crate::firmware::{self, Build, Sizes};
use crate::toolchain::Toolchain;

/// A device binary with a golden size file.
pub struct Device {
    /// File stem under `firmware/sizes/`.
    pub name: &'static str,
    /// What it is (the file's first comment line).
    pub what: &'static str,
    /// Functions (by name prefix) allowed to pull a forbidden symbol in,
    /// and why.
    pub allowed_roots: Option<(&'static str, &'static str)>,
    build: fn() -> Build,
}

/// The binaries `cargo xtask ci` checks.
pub fn devices() -> [Device; 2] {
    [
        Device {
            name: firmware::MAIN_BIN,
            what: "the QEMU MPS2-AN386 firmware with firmware/policies/pendulum.bin \
                   (`cargo xtask firmware --release`)",
            allowed_roots: Some((
                "libm::",
                "the simulated plant's libm sinf/cosf/fmodf (musl's algorithms, in f64)",
            )),
            build: Build::default,
        },
        Device {
            name: firmware::BOARD_BIN,
            what: "the STM32F411 pendulum board binary with firmware/policies/pendulum.bin \
                   (`cargo xtask firmware --board f411 --release`)",
            allowed_roots: None,
            build: || Build {
                bin: Some(firmware::BOARD_BIN.into()),
                features: vec![firmware::BOARD_FEATURE],
                no_default_features: true,
                ..Build::default()
            },
        },
    ]
}

impl Device {
    /// The build this file describes.
    pub fn build(&self) -> Build {
        (self.build)()
    }

    fn file(&self, root: &Path) -> PathBuf {
        firmware::dir(root)
            .join("sizes")
            .join(format!("{}.size", self.name))
    }
}

/// The tolerance on a figure of `golden` bytes: 1 % or 256 B, whichever
/// is larger (compiler patch releases move code by a few hundred bytes).
pub fn slack(golden: u64) -> u64 {
    (golden / 100).max(256)
}

/// What a size file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Golden {
    pub sizes: Sizes,
    pub rustc: String,
}

/// Parses a size file: `#` comments, then `key value` lines for `rustc`,
/// `text`, `data`, `bss`.
pub fn parse_golden(text: &str, path: &Path) -> Result<Golden> {
    let (mut sizes, mut rustc) = ([None::<u64>; 3], None);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(' ').with_context(|| {
            format!(
                "{}:{}: expected `key value`, got {line:?}",
                path.display(),
                n + 1
            )
        })?;
        let slot = match key {
            "rustc" => {
                rustc = Some(value.trim().to_owned());
                continue;
            }
            "text" => 0,
            "data" => 1,
            "bss" => 2,
            other => bail!(
                "{}:{}: unknown key `{other}` (expected rustc, text, data or bss)",
                path.display(),
                n + 1
            ),
        };
        sizes[slot] = Some(value.trim().parse().with_context(|| {
            format!(
                "{}:{}: `{key}` must be a byte count, got {value:?}",
                path.display(),
                n + 1
            )
        })?);
    }
    let get =
        |i: usize, k: &str| sizes[i].with_context(|| format!("{}: no `{k}` line", path.display()));
    Ok(Golden {
        sizes: Sizes {
            text: get(0, "text")?,
            data: get(1, "data")?,
            bss: get(2, "bss")?,
        },
        rustc: rustc.with_context(|| format!("{}: no `rustc` line", path.display()))?,
    })
}

fn render_golden(d: &Device, g: &Golden) -> String {
    format!(
        "# {}: Berkeley sizes of the release ELF in bytes.\n\
         # Checked by `cargo xtask ci` (and `cargo xtask sizes`): a figure that moves\n\
         # by more than max(1 %, 256 B) either way fails. After an intended change,\n\
         # `cargo xtask sizes --bless` rewrites this file; commit it with the change.\n\
         rustc {}\ntext {}\ndata {}\nbss {}\n",
        d.what, g.rustc, g.sizes.text, g.sizes.data, g.sizes.bss
    )
}

/// Compares `got` with the golden file of `d`: `Ok` with a one-line report,
/// or an error naming every figure out of its slack.
pub fn check_sizes(root: &Path, d: &Device, got: &Sizes, rustc: &str) -> Result<String> {
    let path = d.file(root);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (a new device binary: create it with `cargo xtask sizes --bless`)",
            path.display()
        )
    })?;
    let golden = parse_golden(&text, &path)?;
    let mut bad = Vec::new();
    let mut line = String::new();
    for (k, g, n) in [
        ("text", golden.sizes.text, got.text),
        ("data", golden.sizes.data, got.data),
        ("bss", golden.sizes.bss, got.bss),
    ] {
        let delta = n as i64 - g as i64;
        let _ = write!(line, "{k} {n} ({delta:+}) ");
        if delta.unsigned_abs() > slack(g) {
            bad.push(format!(
                "{k} is {n} B, the file says {g} B: {delta:+} B, beyond the slack of ±{} B",
                slack(g)
            ));
        }
    }
    if !bad.is_empty() {
        let toolchain = if golden.rustc == rustc {
            String::new()
        } else {
            format!(
                " (the file was written by rustc {}, this build used {rustc})",
                golden.rustc
            )
        };
        bail!(
            "{}: {}{toolchain}. If the change is intended, run `cargo xtask sizes --bless` \
             and commit {}",
            d.name,
            bad.join("; "),
            path.display()
        );
    }
    Ok(format!(
        "{}: {}within the slack of {}",
        d.name,
        line,
        path.display()
    ))
}

/// A class of symbols no device binary may link.
struct Forbidden {
    what: &'static str,
    matches: fn(&str) -> bool,
}

/// The last path segment of a demangled name (`compiler_builtins::float::
/// add::__adddf3` → `__adddf3`).
fn leaf(name: &str) -> &str {
    name.rsplit("::").next().unwrap_or(name)
}

const FORBIDDEN: &[Forbidden] = &[
    Forbidden {
        what: "f64 soft-float",
        matches: |n| {
            let l = leaf(n);
            l.starts_with("__aeabi_d")
                || matches!(
                    l,
                    "__aeabi_f2d" | "__aeabi_i2d" | "__aeabi_ui2d" | "__aeabi_l2d" | "__aeabi_ul2d"
                )
                || l.starts_with("__")
                    && (l.ends_with("df3")
                        || l.ends_with("df2")
                        || l.ends_with("sfdf2")
                        || l.ends_with("dfsf2")
                        || l.ends_with("sidf")
                        || l.ends_with("didf")
                        || l.starts_with("__fixdf")
                        || l.starts_with("__fixunsdf"))
        },
    },
    Forbidden {
        what: "float formatting",
        matches: |n| {
            n.contains("core::fmt::float")
                || n.contains("core::num::flt2dec")
                || n.contains("float_to_decimal")
                || n.contains("float_to_exponential")
                || n.contains("<f32 as core::fmt")
                || n.contains("<f64 as core::fmt")
        },
    },
    Forbidden {
        what: "the core::fmt engine",
        matches: |n| {
            n == "core::fmt::write"
                || n == "<core::fmt::Formatter>::pad"
                || n == "<core::fmt::Formatter>::write_fmt"
        },
    },
    Forbidden {
        what: "64-bit division",
        matches: |n| {
            matches!(
                leaf(n),
                "__aeabi_uldivmod"
                    | "__aeabi_ldivmod"
                    | "__udivdi3"
                    | "__divdi3"
                    | "__umoddi3"
                    | "__moddi3"
                    | "__udivmoddi4"
                    | "u64_div_rem"
                    | "i64_div_rem"
            )
        },
    },
];

fn forbidden(name: &str) -> Option<&'static str> {
    FORBIDDEN.iter().find(|f| (f.matches)(name)).map(|f| f.what)
}

/// Functions between a forbidden symbol and its user: other forbidden
/// symbols and the compiler's runtime routines.
fn internal(name: &str) -> bool {
    forbidden(name).is_some()
        || name.starts_with("compiler_builtins::")
        || leaf(name).starts_with("__")
}

/// The first functions above `f` in the call graph that are not
/// [`internal`]: who pulls it in (empty: referenced by address only).
fn roots<'a>(elf: &'a Elf, f: &'a Function) -> Vec<&'a Function> {
    let mut seen = std::collections::BTreeSet::from([f.addr]);
    let mut todo = vec![f];
    let mut out: Vec<&Function> = Vec::new();
    while let Some(g) = todo.pop() {
        for c in elf.callers_of(g.addr) {
            if !seen.insert(c.addr) {
                continue;
            }
            if internal(&c.name) {
                todo.push(c);
            } else {
                out.push(c);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The symbol check of `d`'s ELF: `Ok` with the report (allowed symbols
/// listed with who pulls them in), or an error listing every violation.
pub fn check_symbols(d: &Device, elf: &Elf) -> Result<String> {
    let mut report = String::new();
    let mut violations = Vec::new();
    let mut allowed_bytes = 0;
    for f in elf.functions.values() {
        let Some(what) = forbidden(&f.name) else {
            continue;
        };
        let roots = roots(elf, f);
        let by = if roots.is_empty() {
            "referenced by address only".to_owned()
        } else {
            let names: Vec<&str> = roots.iter().map(|r| r.name.as_str()).collect();
            format!("pulled in by {}", names.join(", "))
        };
        let allowed = match d.allowed_roots {
            Some((prefix, _)) => {
                !roots.is_empty() && roots.iter().all(|r| r.name.starts_with(prefix))
            }
            None => false,
        };
        if allowed {
            allowed_bytes += f.size;
            let _ = writeln!(report, "  allowed: {} ({what}, {} B), {by}", f.name, f.size);
        } else {
            violations.push(format!("{} ({what}, {} B), {by}", f.name, f.size));
        }
    }
    if !violations.is_empty() {
        bail!(
            "{}: {} forbidden symbol(s) linked:\n  {}",
            d.name,
            violations.len(),
            violations.join("\n  ")
        );
    }
    match d.allowed_roots {
        Some((_, why)) if allowed_bytes > 0 => Ok(format!(
            "{}: no f64 soft-float, float formatting, fmt engine or 64-bit division outside \
             {why}: {allowed_bytes} B of it\n{report}",
            d.name
        )),
        _ => Ok(format!(
            "{}: no f64 soft-float, float formatting, fmt engine or 64-bit division",
            d.name
        )),
    }
}

/// Both checks on a built ELF.
pub fn check(root: &Path, d: &Device, elf_path: &Path, rustc: &str) -> Result<()> {
    let elf = Elf::load(elf_path)?;
    println!("{}", check_symbols(d, &elf)?.trim_end());
    println!("{}", check_sizes(root, d, &elf.sizes, rustc)?);
    Ok(())
}

/// `cargo xtask sizes [--bless]`.
pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let bless = match args {
        [] => false,
        ["--bless"] => true,
        other => bail!("sizes: unknown arguments {other:?} (expected nothing or --bless)"),
    };
    let tc = Toolchain::detect(root)?;
    let mut failed = Vec::new();
    for d in devices() {
        let built = firmware::build(root, &tc, &d.build())?;
        let elf = Elf::load(&built.elf)?;
        if bless {
            let g = Golden {
                sizes: elf.sizes,
                rustc: tc.rustc_version.clone(),
            };
            let path = d.file(root);
            std::fs::create_dir_all(path.parent().expect("sizes/ has a parent"))?;
            std::fs::write(&path, render_golden(&d, &g))
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "wrote {}: text {} data {} bss {}",
                path.display(),
                g.sizes.text,
                g.sizes.data,
                g.sizes.bss
            );
        }
        if let Err(e) = check(root, &d, &built.elf, &tc.rustc_version) {
            eprintln!("error: {e:#}");
            failed.push(d.name);
        }
    }
    if !failed.is_empty() {
        bail!("sizes: {} failed", failed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forbidden_classes_match_what_they_name() {
        for n in [
            "compiler_builtins::float::add::__adddf3",
            "__aeabi_dadd",
            "__aeabi_f2d",
            "__aeabi_d2f",
            "compiler_builtins::float::div::__divdf3",
            "__aeabi_ui2d",
        ] {
            assert_eq!(forbidden(n), Some("f64 soft-float"), "{n}");
        }
        assert_eq!(
            forbidden("core::fmt::float::float_to_decimal_common_exact"),
            Some("float formatting")
        );
        assert_eq!(forbidden("core::fmt::write"), Some("the core::fmt engine"));
        assert_eq!(
            forbidden("compiler_builtins::int::specialized_div_rem::u64_div_rem"),
            Some("64-bit division")
        );
        for ok in [
            "<core::fmt::Formatter>::pad_integral",
            "__aeabi_f2lz",
            "__aeabi_uidiv",
            "libm::math::sinf::sinf",
            "tinyppo_runtime::math::widen",
        ] {
            assert_eq!(forbidden(ok), None, "{ok}");
        }
    }

    /// An ELF of named functions and direct calls `(caller, callee)`.
    fn fake_elf(names: &[&str], calls: &[(usize, usize)]) -> Elf {
        let at = |i: usize| 0x100 * (i as u64 + 1);
        let functions = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let f = Function {
                    name: (*n).to_owned(),
                    addr: at(i),
                    size: 10,
                };
                (f.addr, f)
            })
            .collect();
        let mut callers: std::collections::BTreeMap<u64, std::collections::BTreeSet<u64>> =
            Default::default();
        for &(from, to) in calls {
            callers.entry(at(to)).or_default().insert(at(from));
        }
        Elf {
            sizes: Sizes {
                text: 0,
                data: 0,
                bss: 0,
            },
            functions,
            callers,
        }
    }

    #[test]
    fn the_symbol_check_names_who_pulls_a_symbol_in_and_allows_only_the_exception() {
        let [qemu, board] = devices();
        let names = [
            "compiler_builtins::float::add::__adddf3",
            "__aeabi_dadd",
            "libm::math::sinf::sinf",
            "tinyppo_runtime::control::tick",
        ];
        // Through the plant's libm only: allowed in the QEMU firmware, not
        // on the board.
        let libm_only = fake_elf(&names, &[(1, 0), (2, 1), (3, 2)]);
        let ok = check_symbols(&qemu, &libm_only).unwrap();
        assert!(
            ok.contains("allowed: compiler_builtins::float::add::__adddf3"),
            "{ok}"
        );
        assert!(ok.contains("pulled in by libm::math::sinf::sinf"), "{ok}");
        let e = check_symbols(&board, &libm_only).unwrap_err().to_string();
        assert!(
            e.contains("__adddf3 (f64 soft-float, 10 B), pulled in by libm::math::sinf::sinf"),
            "{e}"
        );
        // Called from the control loop: refused everywhere, naming it.
        let from_runtime = fake_elf(&names, &[(1, 0), (3, 1)]);
        let e = check_symbols(&qemu, &from_runtime).unwrap_err().to_string();
        assert!(
            e.contains("pulled in by tinyppo_runtime::control::tick"),
            "{e}"
        );
        // Nothing calls it directly: still refused.
        let e = check_symbols(&qemu, &fake_elf(&names[..1], &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("referenced by address only"), "{e}");
        // No forbidden symbol at all.
        let clean = fake_elf(&names[2..], &[(1, 0)]);
        assert!(check_symbols(&board, &clean).is_ok());
    }

    #[test]
    fn a_size_beyond_the_slack_fails_with_both_numbers_either_way() {
        let root = std::env::temp_dir().join(format!("tinyppo-sizes-{}", std::process::id()));
        let [_, board] = devices();
        let file = board.file(&root);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let golden = Golden {
            sizes: Sizes {
                text: 40_000,
                data: 0,
                bss: 16,
            },
            rustc: "1.95.0".into(),
        };
        std::fs::write(&file, render_golden(&board, &golden)).unwrap();
        let at = |text| Sizes {
            text,
            ..golden.sizes
        };
        assert!(check_sizes(&root, &board, &at(40_400), "1.95.0").is_ok());
        let e = check_sizes(&root, &board, &at(40_401), "1.95.0")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("text is 40401 B, the file says 40000 B: +401 B"),
            "{e}"
        );
        assert!(e.contains("cargo xtask sizes --bless"), "{e}");
        let e = check_sizes(&root, &board, &at(39_000), "1.96.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("-1000 B"), "{e}");
        assert!(
            e.contains("written by rustc 1.95.0, this build used 1.96.0"),
            "{e}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn size_files_parse_and_name_what_is_wrong() {
        let p = Path::new("x.size");
        let g = parse_golden("# c\nrustc 1.95.0 (x)\ntext 100\ndata 0\nbss 8\n", p).unwrap();
        assert_eq!((g.sizes.text, g.sizes.data, g.sizes.bss), (100, 0, 8));
        assert_eq!(g.rustc, "1.95.0 (x)");
        let e = parse_golden("rustc 1\ntext 1O0\ndata 0\nbss 0\n", p).unwrap_err();
        assert!(
            format!("{e:#}").contains("x.size:2: `text` must be a byte count"),
            "{e:#}"
        );
        let e = parse_golden("rustc 1\ntext 1\ndata 0\n", p).unwrap_err();
        assert!(format!("{e:#}").contains("no `bss` line"), "{e:#}");
        assert_eq!(slack(10_000), 256);
        assert_eq!(slack(50_000), 500);
    }
}
