//! The project's checks as a list of named steps, run in order with a
//! header and a timing for each, stopping at the first failure, and a
//! summary table at the end.
//!
//! A step is a name and a closure over [`Ctx`]; to add one (firmware build,
//! QEMU run, log comparison), push it in [`ci_steps`]. Steps that build for
//! the device get the toolchain from [`Ctx::toolchain`], which detects it
//! once, on first use.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cmd;
use crate::toolchain::{cargo_bin, Toolchain};

/// The device crate checked for the thumb target.
const RUNTIME: &str = "tinyppo-runtime";

/// Feature sets of the runtime that must build for the device, each with
/// `-D warnings` (a warning only one set triggers would otherwise slip by).
const RUNTIME_FEATURE_SETS: &[&[&str]] = &[&[], &["plants"]];

/// State shared by the steps of one run.
pub struct Ctx {
    /// Workspace root (holds the root `Cargo.toml`).
    pub root: PathBuf,
    toolchain: Option<Toolchain>,
}

impl Ctx {
    pub fn new(root: PathBuf) -> Ctx {
        Ctx {
            root,
            toolchain: None,
        }
    }

    /// The thumb toolchain, detected (and installed if needed) on first call.
    pub fn toolchain(&mut self) -> Result<&Toolchain> {
        if self.toolchain.is_none() {
            self.toolchain = Some(Toolchain::detect(&self.root)?);
        }
        Ok(self.toolchain.as_ref().expect("set just above"))
    }

    /// `cargo <args>` for the host, run from the workspace root.
    pub fn cargo(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(cargo_bin());
        cmd.current_dir(&self.root).args(args);
        cmd
    }
}

type Action = Box<dyn FnOnce(&mut Ctx) -> Result<()>>;

/// One named check.
pub struct Step {
    pub name: String,
    action: Action,
}

impl Step {
    pub fn new(
        name: impl Into<String>,
        action: impl FnOnce(&mut Ctx) -> Result<()> + 'static,
    ) -> Step {
        Step {
            name: name.into(),
            action: Box::new(action),
        }
    }

    /// A step that runs `cargo <args>` on the host.
    pub fn cargo(name: &str, args: &'static [&'static str]) -> Step {
        Step::new(name, move |ctx| cmd::run(&mut ctx.cargo(args)))
    }
}

/// Everything `cargo xtask ci` runs, in order.
pub fn ci_steps() -> Vec<Step> {
    let mut steps = vec![
        Step::cargo("fmt", &["fmt", "--all", "--", "--check"]),
        Step::cargo(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        Step::cargo("test", &["test", "--workspace"]),
    ];
    steps.extend(thumb_steps());
    steps.extend(firmware_steps());
    steps.push(Step::new("fmt: firmware workspace", |ctx| {
        let mut c = ctx.cargo(&["fmt", "--all", "--manifest-path"]);
        c.arg(crate::firmware::dir(&ctx.root).join("Cargo.toml"))
            .args(["--", "--check"]);
        cmd::run(&mut c)
    }));
    steps.extend(crate::example::steps(crate::example::HEATER));
    steps
}

/// The firmware: built for the device with `-D warnings`, run under QEMU
/// for 3 episodes with seed 1 (UART0 captured to `target/qemu-log.bin`,
/// exit status checked), its log compared byte for byte with `tinyppo
/// simulate`'s; then the `real-io` variant, the STM32F411 board binary and
/// the `bench` binary are built so they keep compiling.
pub fn firmware_steps() -> Vec<Step> {
    use crate::firmware::{self, Build};

    // The QEMU run (3 episodes, seed 1, bundled pendulum policy) is the
    // firmware's default configuration.
    let device_build = || Build::default();
    let elf: Rc<RefCell<Option<PathBuf>>> = Rc::default();
    let elf_out = Rc::clone(&elf);
    let elf_pty = Rc::clone(&elf);
    let elf_sizes = Rc::clone(&elf);
    let board_elf: Rc<RefCell<Option<PathBuf>>> = Rc::default();
    let board_elf_out = Rc::clone(&board_elf);
    let [qemu_device, board_device] = crate::sizes::devices();
    vec![
        build_step("firmware: build", device_build(), Some(elf_out)),
        size_step(qemu_device, elf_sizes),
        Step::new("firmware: QEMU run (3 episodes, seed 1)", move |ctx| {
            let elf = elf
                .borrow()
                .clone()
                .ok_or_else(|| anyhow::anyhow!("the firmware was not built"))?;
            let out = crate::toolchain::default_target_dir(&ctx.root).join(QEMU_LOG);
            qemu_run(elf, &out)
        }),
        Step::new("firmware: QEMU log = tinyppo simulate", move |ctx| {
            let bin = tinyppo_bin(ctx)?;
            let target = crate::toolchain::default_target_dir(&ctx.root);
            let policy = firmware::dir(&ctx.root).join("policies/pendulum.bin");
            compare_with_simulate(
                &bin,
                &policy,
                &device_build(),
                &target.join(QEMU_LOG),
                &target.join("simulate-log.bin"),
            )
        }),
        Step::new(
            "firmware: logs capture of QEMU's UART on a pty = -serial file = simulate",
            move |ctx| {
                let bin = tinyppo_bin(ctx)?;
                let target = crate::toolchain::default_target_dir(&ctx.root);
                let elf = elf_pty
                    .borrow()
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("the firmware was not built"))?;
                let out = target.join("capture-pty.bin");
                let summary = crate::qemu::run_pty_capture(
                    &elf,
                    &bin,
                    &out,
                    std::time::Duration::from_secs(120),
                )?;
                println!("capture: {}", summary.trim());
                let captured =
                    std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?;
                for other in [QEMU_LOG, "simulate-log.bin"] {
                    let p = target.join(other);
                    let want =
                        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                    if let Some(at) = crate::qemu::first_difference(&captured, &want) {
                        bail!(
                            "the pty capture ({} bytes) differs from {} ({} bytes) at byte {at}",
                            captured.len(),
                            p.display(),
                            want.len()
                        );
                    }
                }
                println!(
                    "{} bytes captured through the pty: identical to the -serial file capture and to simulate",
                    captured.len()
                );
                Ok(())
            },
        ),
        realism_step(),
        // Built last: they write the same ELF path as the runs above.
        build_step(
            "firmware: build +real-io",
            Build {
                features: vec!["real-io"],
                ..device_build()
            },
            None,
        ),
        build_step(
            "firmware: build board-f411 (STM32F411)",
            board_device.build(),
            Some(board_elf_out),
        ),
        size_step(board_device, board_elf),
        build_step(
            "firmware: build bench",
            Build {
                bin: Some(firmware::BENCH_BIN.into()),
                features: vec!["bench"],
                ..device_build()
            },
            None,
        ),
    ]
}

/// The `[realism]` settings of the realism step: every effect on.
pub const REALISM_SETS: &[&str] = &[
    "realism.obs_noise=[0.01, 0.01, 0.05]",
    "realism.obs_resolution=0.001",
    "realism.obs_delay=1",
    "realism.action_delay=1",
    "realism.actuator_tau=0.1",
    "realism.rate_limit=40.0",
    "realism.deadzone=0.05",
    "realism.smoothness=0.01",
    "randomize.mass=0.7:1.3",
    "randomize.length=0.8:1.2",
    "action_history=2",
    // The safety layer: tighter action limits, a rate limit, an e-stop on
    // the angular velocity, a stuck-sensor detector.
    "safety.action_low=-1.5",
    "safety.action_high=1.5",
    "safety.max_delta=0.3",
    "safety.obs_low=[-1.1, -1.1, -5.0]",
    "safety.obs_high=[1.1, 1.1, 5.0]",
    "safety.stuck_ticks=20",
];

/// Sensor and actuator realism and the safety layer on the device: a short
/// pendulum run with every effect of `[realism]` on (and randomized
/// parameters), a 2-action history and `[safety]` limits, exported as
/// `int8x4` and as `f32` with its self-test vectors; the firmware built with that blob runs it under
/// QEMU (the blob's realism record is what the firmware applies, its
/// control loop builds the history and applies the limits, its driver
/// runs the self-test), and its log must be `tinyppo simulate`'s byte for
/// byte, with a passed self-test, limited ticks and e-stop events in it.
fn realism_step() -> Step {
    Step::new(
        "firmware: realism + action history + safety limits + self-test QEMU log = simulate",
        |ctx| {
            let bin = tinyppo_bin(ctx)?;
            let repo = ctx.root.clone();
            let work = crate::toolchain::default_target_dir(&repo).join("ci-realism");
            std::fs::create_dir_all(&work)?;
            let run = work.join("run");
            let mut args: Vec<std::ffi::OsString> = [
                "train",
                "--env",
                "pendulum",
                "--total-steps",
                "4096",
                "--seed",
                "1",
                "--force",
                "--quiet",
            ]
            .iter()
            .map(Into::into)
            .collect();
            for s in REALISM_SETS {
                args.push("--set".into());
                args.push(s.into());
            }
            args.push("--out".into());
            args.push(run.clone().into());
            let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            run_tool(&bin, &refs)?;
            // Exported as int8x4 (the device runs the interleaved kernel,
            // LDM, on the 64×64 layer; the host the portable loop) and as
            // f32: with the bundled int8 blob's run above, every encoding's
            // QEMU log is compared with simulate's.
            for quant in ["int8x4", "f32"] {
                let policy = work.join(format!("policy-{quant}.bin"));
                run_tool(
                    &bin,
                    &[
                        "export".as_ref(),
                        "--checkpoint".as_ref(),
                        run.as_os_str(),
                        "--quant".as_ref(),
                        quant.as_ref(),
                        "--out".as_ref(),
                        policy.as_os_str(),
                    ],
                )?;
                print!(
                    "{}",
                    run_tool(&bin, &[std::ffi::OsStr::new("inspect"), policy.as_os_str()])?
                );
                let b = crate::firmware::Build {
                    policy: Some(policy.clone()),
                    ..crate::firmware::Build::default()
                };
                let built = crate::firmware::build(&repo, ctx.toolchain()?, &b)?;
                let device = work.join(format!("qemu-log-{quant}.bin"));
                qemu_run(built.elf, &device)?;
                let host = work.join(format!("simulate-log-{quant}.bin"));
                compare_with_simulate(&bin, &policy, &b, &device, &host)?;
                check_safety_log(&bin, &device)?;
            }
            Ok(())
        },
    )
}

/// The device log of the safety step: the self-test ran on the device
/// and passed with no error at all, the limits changed some actions, the
/// e-stop tripped and was logged.
fn check_safety_log(bin: &Path, device: &Path) -> Result<()> {
    let os = std::ffi::OsStr::new;
    let j: serde_json::Value = serde_json::from_str(&run_tool(
        bin,
        &[os("logs"), os("decode"), os("--json"), device.as_os_str()],
    )?)
    .context("`logs decode --json` output")?;
    let st = &j["self_tests"][0];
    if st["passed"] != true || st["worst_error"] != 0.0 {
        bail!("the device's self-test: {st}");
    }
    let totals = &j["device_totals"][0];
    let estops = j["events"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["name"] == "e-stop").count());
    let limited = totals["limited_ticks"].as_u64().unwrap_or(0);
    if limited == 0 || estops == 0 {
        bail!("expected limited ticks and e-stop events in the device log: {totals}");
    }
    println!(
        "device self-test passed ({} vectors, worst error 0); {limited} limited ticks, \
         {estops} e-stops ({} ticks)",
        st["vectors"], totals["estop_ticks"]
    );
    Ok(())
}

/// A step that builds the firmware `b` with `-D warnings`, prints its size
/// and, with `elf_out`, hands the ELF's path to a later step.
fn build_step(
    name: &str,
    b: crate::firmware::Build,
    elf_out: Option<Rc<RefCell<Option<PathBuf>>>>,
) -> Step {
    Step::new(name, move |ctx| {
        let root = ctx.root.clone();
        let tc = ctx.toolchain()?;
        let mut cmd = crate::firmware::command(&root, tc, &b)?;
        cmd.env("RUSTFLAGS", deny_warnings_rustflags());
        cmd::run(&mut cmd)?;
        let profile = if b.release { "release" } else { "dev" };
        let path = tc
            .artifact_dir(&b.dir(&root)?, profile)
            .join(b.bin_name(&root)?);
        if let Ok(s) = crate::firmware::sizes(&path) {
            crate::firmware::print_sizes(&s);
        }
        if let Some(out) = elf_out {
            *out.borrow_mut() = Some(path);
        }
        Ok(())
    })
}

/// The golden size file and the symbol check of a device binary built by
/// an earlier step (`cargo xtask sizes`).
fn size_step(d: crate::sizes::Device, elf: Rc<RefCell<Option<PathBuf>>>) -> Step {
    Step::new(
        format!("firmware: size file and symbols ({})", d.name),
        move |ctx| {
            let path = elf
                .borrow()
                .clone()
                .ok_or_else(|| anyhow::anyhow!("{} was not built", d.name))?;
            let root = ctx.root.clone();
            let rustc = ctx.toolchain()?.rustc_version.clone();
            crate::sizes::check(&root, &d, &path, &rustc)
        },
    )
}

/// Runs `elf` under QEMU (60 s at most), UART0 into `out`.
fn qemu_run(elf: PathBuf, out: &Path) -> Result<()> {
    let result = crate::qemu::run(&crate::qemu::Run {
        elf,
        serial: Some(out.to_path_buf()),
        icount: false,
        timeout: std::time::Duration::from_secs(60),
    })?;
    print!("{}", result.console);
    println!(
        "{} bytes from UART0 in {}",
        result.serial_bytes,
        out.display()
    );
    Ok(())
}

/// The `tinyppo` binary (test profile: the `test` step built it already,
/// for tests/tests/cli.rs, so this is a no-op then).
fn tinyppo_bin(ctx: &Ctx) -> Result<PathBuf> {
    cmd::run(&mut ctx.cargo(&[
        "build",
        "--quiet",
        "-p",
        "tinyppo-trainer",
        "--bin",
        "tinyppo",
        "--profile",
        "test",
    ]))?;
    Ok(crate::toolchain::default_target_dir(&ctx.root)
        .join("debug")
        .join(format!("tinyppo{}", std::env::consts::EXE_SUFFIX)))
}

/// Runs `bin` (a tinyppo command line: `tinyppo`, or a user's binary with
/// their plants) and returns its stdout; fails with its stderr.
pub fn run_tool(bin: &Path, args: &[&std::ffi::OsStr]) -> Result<String> {
    let mut c = Command::new(bin);
    c.args(args);
    let line = cmd::display(&c);
    let out = c.output().with_context(|| format!("cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `bin simulate` with the firmware's policy, episodes and seed, on
/// the plant the blob names (`bin inspect --json`), and fails unless its
/// log is byte-for-byte `device`'s (naming the first differing offset);
/// both are decoded with `bin logs decode --json`, which must agree as
/// well.
pub fn compare_with_simulate(
    bin: &Path,
    policy: &Path,
    b: &crate::firmware::Build,
    device: &Path,
    host: &Path,
) -> Result<()> {
    let os = |s: &str| std::ffi::OsString::from(s);
    let info: serde_json::Value = serde_json::from_str(&run_tool(
        bin,
        &[
            os("inspect").as_os_str(),
            policy.as_os_str(),
            os("--json").as_os_str(),
        ],
    )?)
    .context("`inspect --json` output")?;
    let plant = info["plant"]
        .as_str()
        .with_context(|| {
            format!(
                "{}: the blob names no registered plant ({})",
                policy.display(),
                info["plant_code"]
            )
        })?
        .to_string();
    let mut args = vec![
        os("simulate"),
        os("--policy"),
        policy.as_os_str().to_owned(),
        os("--env"),
        os(&plant),
        os("--episodes"),
        os(&b.episodes.to_string()),
        os("--seed"),
        os(&b.seed.to_string()),
        os("--out"),
        host.as_os_str().to_owned(),
    ];
    if b.deterministic {
        args.push(os("--deterministic"));
    }
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    print!("{}", run_tool(bin, &refs)?);
    let decode = |file: &Path| -> Result<String> {
        let text = run_tool(
            bin,
            &[
                os("logs").as_os_str(),
                os("decode").as_os_str(),
                os("--json").as_os_str(),
                file.as_os_str(),
            ],
        )?;
        // The file name is part of the report; the rest must agree.
        Ok(text.replace(&file.display().to_string(), "<log>"))
    };
    crate::qemu::compare_files(device, host)?;
    let (device_json, host_json) = (decode(device)?, decode(host)?);
    if device_json != host_json {
        let line = device_json
            .lines()
            .zip(host_json.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        bail!(
            "the logs are identical but `logs decode --json` differs at line {}",
            line + 1
        );
    }
    println!("decoded: {}", device_json.trim());
    Ok(())
}

/// Where the CI's QEMU run writes UART0, under the target directory.
pub const QEMU_LOG: &str = "qemu-log.bin";

/// The no_std builds of the runtime for the device: toolchain detection,
/// then one `cargo build --lib` per feature set with `-D warnings`.
pub fn thumb_steps() -> Vec<Step> {
    let mut steps = vec![Step::new("thumb toolchain", |ctx| {
        let tc = ctx.toolchain()?;
        println!("{tc}");
        Ok(())
    })];
    for &features in RUNTIME_FEATURE_SETS {
        let name = match features {
            [] => "thumb: runtime (no features)".to_owned(),
            _ => format!("thumb: runtime +{}", features.join(",")),
        };
        steps.push(Step::new(name, move |ctx| {
            let root = ctx.root.clone();
            let tc = ctx.toolchain()?;
            let mut cmd = tc.cargo(&root, "build");
            cmd.args(["-p", RUNTIME, "--lib"]);
            if !features.is_empty() {
                cmd.args(["--features", &features.join(",")]);
            }
            cmd.env("RUSTFLAGS", deny_warnings_rustflags());
            cmd::run(&mut cmd)
        }));
    }
    steps
}

/// The caller's `RUSTFLAGS` plus `-D warnings`. With `--target`, RUSTFLAGS
/// reaches only target code, so the host build cache is left alone.
fn deny_warnings_rustflags() -> String {
    let old = std::env::var("RUSTFLAGS").unwrap_or_default();
    format!("{old} -D warnings").trim_start().to_owned()
}

enum Outcome {
    Ok(f64),
    Failed(f64),
    Skipped,
}

/// Runs `steps` in order, stopping at the first failure unless
/// `keep_going`, then prints a summary table. The error names the failed
/// step(s).
pub fn run_steps(ctx: &mut Ctx, title: &str, steps: Vec<Step>, keep_going: bool) -> Result<()> {
    let total = steps.len();
    let started = Instant::now();
    let mut results: Vec<(String, Outcome)> = Vec::with_capacity(total);
    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        if !failures.is_empty() && !keep_going {
            results.push((step.name, Outcome::Skipped));
            continue;
        }
        println!("\n==> [{}/{total}] {}", i + 1, step.name);
        let t = Instant::now();
        let result = (step.action)(ctx);
        let secs = t.elapsed().as_secs_f64();
        match result {
            Ok(()) => {
                println!("<== {} ok ({secs:.1} s)", step.name);
                results.push((step.name, Outcome::Ok(secs)));
            }
            Err(err) => {
                println!("<== {} FAILED ({secs:.1} s): {err:#}", step.name);
                results.push((step.name.clone(), Outcome::Failed(secs)));
                failures.push((step.name, err));
            }
        }
    }
    print_summary(title, &results, started.elapsed().as_secs_f64());
    let mut failures = failures.into_iter();
    match (failures.next(), failures.len()) {
        (None, _) => Ok(()),
        (Some((name, err)), 0) => Err(err.context(format!("{title} failed at step `{name}`"))),
        (Some((name, err)), _) => {
            let others: Vec<String> = failures.map(|(n, _)| format!("`{n}`")).collect();
            Err(err.context(format!(
                "{title} failed at step `{name}` (and at {})",
                others.join(", ")
            )))
        }
    }
}

fn print_summary(title: &str, results: &[(String, Outcome)], total_secs: f64) {
    let width = results
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0)
        .max("step".len());
    println!("\n{title} summary");
    println!("{:<width$}  {:<7}  {:>8}", "step", "status", "seconds");
    println!("{}", "-".repeat(width + 2 + 7 + 2 + 8));
    for (name, outcome) in results {
        let (status, secs) = match outcome {
            Outcome::Ok(s) => ("ok", format!("{s:.1}")),
            Outcome::Failed(s) => ("FAILED", format!("{s:.1}")),
            Outcome::Skipped => ("skipped", "-".to_owned()),
        };
        println!("{name:<width$}  {status:<7}  {secs:>8}");
    }
    println!("{:<width$}  {:<7}  {:>8.1}", "total", "", total_secs);
}
