//! Running firmware under QEMU's MPS2 AN386 (Cortex-M4F), and
//! `cargo xtask qemu`.
//!
//! ```text
//! qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -display none -monitor none \
//!   -semihosting-config enable=on,target=native -serial file:OUT -kernel ELF
//! ```
//!
//! UART0 goes to a file byte for byte; the semihosting console (the
//! firmware's messages) is QEMU's stderr, captured and echoed; the
//! firmware's semihosting exit code becomes QEMU's. A run that does not
//! finish within the timeout is killed and reported.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::firmware::{self, Build};
use crate::toolchain::Toolchain;

const QEMU: &str = "qemu-system-arm";

/// One QEMU run.
#[derive(Debug, Clone)]
pub struct Run {
    pub elf: PathBuf,
    /// Where UART0's bytes go; `None`: discarded.
    pub serial: Option<PathBuf>,
    /// `-icount shift=0`: one instruction per ns of virtual time, so
    /// SysTick counts instructions (benchmarks).
    pub icount: bool,
    pub timeout: Duration,
}

/// What a successful run left.
#[derive(Debug)]
pub struct Output {
    /// The semihosting console (QEMU's stderr, and stdout if any).
    pub console: String,
    /// Bytes captured from UART0 (0 without a serial file).
    pub serial_bytes: u64,
}

/// Fails with how to install QEMU if `qemu-system-arm` is not on PATH.
pub fn check_installed() -> Result<()> {
    match Command::new(QEMU)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!("`{QEMU} --version` failed ({})", o.status),
        Err(e) => bail!(
            "{QEMU} not found ({e}); install it with `apt-get install qemu-system-arm` \
             (Debian/Ubuntu, as root)"
        ),
    }
}

/// QEMU on the MPS2 AN386 board with semihosting, its monitor on
/// `monitor` (`none`, `stdio`).
fn machine(monitor: &str) -> Command {
    let mut c = Command::new(QEMU);
    c.args([
        "-machine",
        "mps2-an386",
        "-cpu",
        "cortex-m4",
        "-display",
        "none",
        "-monitor",
        monitor,
        "-semihosting-config",
        "enable=on,target=native",
    ]);
    c
}

/// Waits for `child` at most `timeout`: its status, or `None` if it is
/// still running then.
fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(s));
        }
        if started.elapsed() > timeout {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The QEMU command line of `run`.
pub fn command(run: &Run) -> Command {
    let mut c = machine("none");
    if run.icount {
        c.args(["-icount", "shift=0"]);
    }
    match &run.serial {
        Some(path) => c.arg("-serial").arg(format!("file:{}", path.display())),
        None => c.args(["-serial", "null"]),
    };
    c.arg("-kernel").arg(&run.elf);
    c
}

/// Runs the firmware with UART0 on a pseudo-terminal (`-serial pty`) and
/// captures it with `capture` (`tinyppo logs capture --port PTY --out
/// OUT`, the path a real board's bytes take): QEMU starts paused (`-S`),
/// the capture opens the pty, then the monitor's `cont` starts the CPU, so
/// no byte is written before anyone reads. Returns the capture's stdout
/// (its `--json` summary).
pub fn run_pty_capture(
    elf: &Path,
    capture: &Path,
    out: &Path,
    timeout: Duration,
) -> Result<String> {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::mpsc;
    check_installed()?;
    let mut q = machine("stdio");
    q.args(["-S", "-serial", "pty", "-kernel"]).arg(elf);
    let line = crate::cmd::display(&q);
    println!("$ {line}");
    let mut qemu = q
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let lines = |r: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        rx
    };
    let qout = lines(Box::new(qemu.stdout.take().context("no stdout pipe")?));
    let qerr = lines(Box::new(qemu.stderr.take().context("no stderr pipe")?));
    let result = (|| -> Result<String> {
        // "(qemu) char device redirected to /dev/pts/N (label serial0)"
        let pty = loop {
            let l = qout
                .recv_timeout(Duration::from_secs(20))
                .context("QEMU did not say where its pty is")?;
            if let Some(rest) = l.split("redirected to ").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        let mut c = Command::new(capture);
        c.args([
            "logs", "capture", "--port", &pty, "--force", "--json", "--out",
        ])
        .arg(out);
        let cl = crate::cmd::display(&c);
        println!("$ {cl}");
        let mut cap = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{cl}`"))?;
        let cerr = lines(Box::new(cap.stderr.take().context("no stderr pipe")?));
        let opened = cerr.recv_timeout(Duration::from_secs(20));
        match opened {
            Ok(l) if l.starts_with("capturing ") => println!("{l}"),
            other => {
                let _ = cap.kill();
                bail!("`{cl}` did not open the pty: {other:?}");
            }
        }
        let stdin = qemu.stdin.as_mut().context("no stdin pipe")?;
        stdin
            .write_all(b"cont\n")
            .context("writing `cont` to QEMU's monitor")?;
        stdin.flush().context("writing `cont` to QEMU's monitor")?;
        let Some(status) = wait_timeout(&mut cap, timeout)? else {
            let _ = cap.kill();
            bail!("`{cl}` did not finish within {} s", timeout.as_secs());
        };
        let mut stdout = String::new();
        if let Some(mut o) = cap.stdout.take() {
            let _ = o.read_to_string(&mut stdout);
        }
        if !status.success() {
            let err: Vec<String> = cerr.try_iter().collect();
            bail!("`{cl}` failed ({status}): {}", err.join("\n"));
        }
        Ok(stdout)
    })();
    // The firmware exits through semihosting after its End frame; end
    // QEMU either way.
    let _ = wait_timeout(&mut qemu, Duration::from_secs(10));
    let _ = qemu.kill();
    let _ = qemu.wait();
    let console: Vec<String> = qout.try_iter().chain(qerr.try_iter()).collect();
    result.with_context(|| format!("QEMU console:\n{}", console.join("\n")))
}

/// Runs QEMU to completion (or kills it at the timeout); a non-zero exit
/// status is an error that names it and quotes the console.
pub fn run(run: &Run) -> Result<Output> {
    check_installed()?;
    if let Some(path) = &run.serial {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        // QEMU appends to an existing file on some versions: start empty.
        std::fs::write(path, b"").with_context(|| format!("creating {}", path.display()))?;
    }
    let mut cmd = command(run);
    let line = crate::cmd::display(&cmd);
    println!("$ {line}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let reader = |mut s: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            buf
        })
    };
    let out = reader(Box::new(child.stdout.take().context("no stdout pipe")?));
    let err = reader(Box::new(child.stderr.take().context("no stderr pipe")?));
    let status = wait_timeout(&mut child, run.timeout)?;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut console = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    console.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    let Some(status) = status else {
        bail!(
            "QEMU timed out after {} s running {}; console so far:\n{}",
            run.timeout.as_secs(),
            run.elf.display(),
            console.trim_end()
        );
    };
    if !status.success() {
        bail!(
            "firmware {} exited with {status} under QEMU (semihosting exit code; \
             1 = the firmware reported a failure); console:\n{}",
            run.elf.display(),
            console.trim_end()
        );
    }
    let serial_bytes = match &run.serial {
        Some(p) => std::fs::metadata(p)
            .with_context(|| format!("reading {}", p.display()))?
            .len(),
        None => 0,
    };
    Ok(Output {
        console,
        serial_bytes,
    })
}

/// `cargo xtask qemu [--firmware DIR] [--policy FILE] [--episodes N]
/// [--seed S] [--deterministic] [--timeout SECS] --out FILE`.
pub fn cli(root: &Path, args: &[&str]) -> Result<()> {
    let mut b = Build::default();
    let mut fw: Option<PathBuf> = None;
    let mut out: Option<PathBuf> = None;
    let mut timeout = 60u64;
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .copied()
                .with_context(|| format!("{a} needs {what}"))
        };
        match a {
            "--firmware" => fw = Some(value("a directory")?.into()),
            "--policy" => b.policy = Some(value("a file")?.into()),
            "--env" => bail!(
                "qemu: --env is gone: the blob names its plant (export it with this tinyppo; \
                 `tinyppo export --blob OLD --env NAME --out NEW` upgrades an old one)"
            ),
            "--episodes" => b.episodes = value("a number")?.parse().context("--episodes")?,
            "--seed" => b.seed = value("a number")?.parse().context("--seed")?,
            "--timeout" => timeout = value("seconds")?.parse().context("--timeout")?,
            "--out" => out = Some(value("a file")?.into()),
            "--deterministic" => b.deterministic = true,
            other => bail!("qemu: unknown argument `{other}`"),
        }
    }
    let out = out.context("qemu: --out FILE is required (where UART0's bytes go)")?;
    let b = firmware::with_firmware(b, fw);
    check_installed()?;
    let tc = Toolchain::detect(root)?;
    let built = firmware::build(root, &tc, &b)?;
    if let Some(s) = &built.sizes {
        firmware::print_sizes(s);
    }
    let result = run(&Run {
        elf: built.elf,
        serial: Some(std::path::absolute(&out)?),
        icount: false,
        timeout: Duration::from_secs(timeout),
    })?;
    print!("{}", result.console);
    println!(
        "qemu: exit status 0; {} bytes from UART0 in {}",
        result.serial_bytes,
        out.display()
    );
    Ok(())
}

/// The offset of the first byte where `a` and `b` differ (the shorter
/// length if one is a prefix of the other), or `None` if they are equal.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// Fails unless the files `device` and `host` hold the same bytes; the
/// error gives the first differing offset and the bytes around it.
pub fn compare_files(device: &Path, host: &Path) -> Result<()> {
    let a = std::fs::read(device).with_context(|| format!("reading {}", device.display()))?;
    let b = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
    let Some(at) = first_difference(&a, &b) else {
        println!(
            "identical: {} and {} ({} bytes)",
            device.display(),
            host.display(),
            a.len()
        );
        return Ok(());
    };
    let around = |v: &[u8]| {
        let lo = at.saturating_sub(8);
        let hi = (at + 8).min(v.len());
        v.get(lo..hi)
            .unwrap_or_default()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    bail!(
        "{} ({} bytes) and {} ({} bytes) differ first at byte offset {at} (0x{at:x}):\n  device [{}..]: {}\n  host   [{}..]: {}",
        device.display(),
        a.len(),
        host.display(),
        b.len(),
        at.saturating_sub(8),
        around(&a),
        at.saturating_sub(8),
        around(&b)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_difference_finds_the_offset() {
        assert_eq!(first_difference(b"abc", b"abc"), None);
        assert_eq!(first_difference(b"abc", b"abd"), Some(2));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
        assert_eq!(first_difference(b"", b"x"), Some(0));
    }

    #[test]
    fn compare_files_names_the_first_differing_offset() {
        let dir = std::env::temp_dir().join(format!("xtask-cmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("device.bin"), dir.join("host.bin"));
        std::fs::write(&a, [0u8, 1, 2, 3, 4]).unwrap();
        std::fs::write(&b, [0u8, 1, 2, 3, 4]).unwrap();
        assert!(compare_files(&a, &b).is_ok());
        std::fs::write(&b, [0u8, 1, 9, 3, 4]).unwrap();
        let err = compare_files(&a, &b).unwrap_err().to_string();
        assert!(err.contains("differ first at byte offset 2 (0x2)"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn command_line_matches_the_documented_one() {
        let run = Run {
            elf: "fw.elf".into(),
            serial: Some("/tmp/u.bin".into()),
            icount: true,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            crate::cmd::display(&command(&run)),
            "qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -display none -monitor none \
             -semihosting-config enable=on,target=native -icount shift=0 \
             -serial file:/tmp/u.bin -kernel fw.elf"
        );
    }
}
