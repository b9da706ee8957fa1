//! `tinyppo logs capture`: a board's log stream from a serial port into a
//! file, decoded as it arrives.
//!
//! The bytes go to the file exactly as read, in the order read, each read
//! written at once and synced at least every [`SYNC_EVERY`]: a capture
//! killed at any moment leaves a prefix of the stream, whose complete
//! frames all decode (`logs decode` counts a cut last frame as truncated).
//! A [`LogReader`] decodes the same bytes for the live status and the
//! summary. The capture stops after `--episodes` complete episodes, after
//! `--duration`, at the stream's `End` frame, or when asked to (Ctrl-C);
//! a port that stops working (a board unplugged, a closed pseudo-terminal)
//! ends it too, with what was captured safely on disk.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::logs::{DecodedLog, LogReader};

/// Longest time written bytes wait for `fsync`.
pub const SYNC_EVERY: Duration = Duration::from_millis(100);
/// How long one read waits for bytes (and so how soon a stop is seen).
const READ_TIMEOUT: Duration = Duration::from_millis(50);
/// How often the status is refreshed.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureOpts {
    /// Serial port path (`/dev/ttyUSB0`, `/dev/pts/3`, `COM3`).
    pub port: String,
    /// Baud rate (the STM32F411 firmware's is 921,600).
    pub baud: u32,
    /// Stop after this many complete episodes.
    pub episodes: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Output file.
    pub out: PathBuf,
    /// Overwrite an existing `out`.
    pub force: bool,
}

/// Why a capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `--episodes` complete episodes arrived.
    Episodes,
    /// `--duration` passed.
    Duration,
    /// The stream's `End` frame arrived.
    End,
    /// Asked to stop (Ctrl-C).
    Interrupted,
    /// The port stopped working: the error.
    PortGone(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Episodes => f.write_str("episodes reached"),
            Stop::Duration => f.write_str("duration reached"),
            Stop::End => f.write_str("end of stream (End frame)"),
            Stop::Interrupted => f.write_str("interrupted"),
            Stop::PortGone(e) => write!(f, "port lost: {e}"),
        }
    }
}

/// The live figures of a capture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    /// Bytes written to the file.
    pub bytes: u64,
    /// Since the port was opened.
    pub elapsed: Duration,
    /// Complete episodes decoded.
    pub episodes: u64,
}

/// A finished capture.
#[derive(Debug)]
pub struct Captured {
    /// Bytes written (and synced).
    pub bytes: u64,
    /// From opening the port to the stop.
    pub elapsed: Duration,
    /// Why it stopped.
    pub stop: Stop,
    /// The decoded stream.
    pub log: DecodedLog,
}

/// Checks the options and opens the output file (never an existing one
/// without `force`); the error names the flag or the file.
fn open_out(o: &CaptureOpts) -> Result<std::fs::File> {
    if o.episodes == Some(0) {
        bail!("--episodes 0: expected at least one episode");
    }
    if o.duration.is_some_and(|d| d.is_zero()) {
        bail!("--duration 0: expected a positive number of seconds");
    }
    if o.baud == 0 {
        bail!("--baud 0: expected a baud rate (the STM32F411 firmware's is 921600)");
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if o.force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    opts.open(&o.out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} exists: pass --force to overwrite it, or choose another --out",
                o.out.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("creating {}", o.out.display()))
        }
    })
}

/// Captures from `o.port` until a stop condition or `stop` is set.
/// `opened` is called once the port is open (before any byte is read);
/// `status` every [`STATUS_EVERY`] with the live figures and the log so
/// far.
pub fn capture(
    o: &CaptureOpts,
    stop: &AtomicBool,
    opened: &mut dyn FnMut(),
    status: &mut dyn FnMut(&Status, &DecodedLog),
) -> Result<Captured> {
    let mut file = open_out(o)?;
    let mut port = match serialport::new(&o.port, o.baud)
        .timeout(READ_TIMEOUT)
        .open()
    {
        Ok(p) => p,
        Err(e) => {
            // Nothing was captured: leave no empty file behind.
            drop(file);
            let _ = std::fs::remove_file(&o.out);
            bail!("opening serial port {}: {e}", o.port);
        }
    };
    opened();
    let t0 = Instant::now();
    let mut reader = LogReader::new();
    let mut buf = vec![0u8; 1 << 14];
    let (mut bytes, mut episodes, mut scanned) = (0u64, 0u64, 0usize);
    let (mut last_sync, mut last_status) = (Instant::now(), Instant::now());
    let mut dirty = false;
    let sync = |file: &mut std::fs::File, out: &Path| {
        file.sync_data()
            .with_context(|| format!("syncing {}", out.display()))
    };
    let why = loop {
        if stop.load(Ordering::Relaxed) {
            break Stop::Interrupted;
        }
        match port.read(&mut buf) {
            Ok(0) => break Stop::PortGone("end of file".into()),
            Ok(n) => {
                file.write_all(&buf[..n])
                    .with_context(|| format!("writing {}", o.out.display()))?;
                dirty = true;
                bytes += n as u64;
                reader.push(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Stop::PortGone(e.to_string()),
        }
        if dirty && last_sync.elapsed() >= SYNC_EVERY {
            sync(&mut file, &o.out)?;
            (dirty, last_sync) = (false, Instant::now());
        }
        let log = reader.log();
        for t in &log.transitions[scanned..] {
            episodes += u64::from(t.terminated || t.truncated);
        }
        scanned = log.transitions.len();
        if last_status.elapsed() >= STATUS_EVERY {
            let st = Status {
                bytes,
                elapsed: t0.elapsed(),
                episodes,
            };
            status(&st, log);
            last_status = Instant::now();
        }
        if !log.ends.is_empty() {
            break Stop::End;
        }
        if o.episodes.is_some_and(|n| episodes >= n) {
            break Stop::Episodes;
        }
        if o.duration.is_some_and(|d| t0.elapsed() >= d) {
            break Stop::Duration;
        }
    };
    file.flush()
        .with_context(|| format!("writing {}", o.out.display()))?;
    sync(&mut file, &o.out)?;
    Ok(Captured {
        bytes,
        elapsed: t0.elapsed(),
        stop: why,
        log: reader.finish(),
    })
}

/// The one-line live status: throughput, frames by cause, episodes,
/// return, what the device reported.
pub fn status_line(st: &Status, log: &DecodedLog) -> String {
    let secs = st.elapsed.as_secs_f64().max(1e-3);
    let b = &log.bad;
    let ret = match log.mean_return() {
        Some(r) => format!("{r:.1}"),
        None => "-".into(),
    };
    let (mut sensor, mut actuator, mut nonfinite) = (0u64, 0u64, 0u64);
    for (_, t) in &log.ends {
        sensor += u64::from(t.sensor_errors);
        actuator += u64::from(t.actuator_errors);
        nonfinite += u64::from(t.nonfinite_obs);
    }
    format!(
        "{} B ({:.0} B/s) | frames {} ok, {} bad (cobs {}, crc {}, schema {}, truncated {}) | \
         episodes {}, mean return {ret} | device: dropped {}, sensor errors {sensor}, \
         actuator errors {actuator}, non-finite obs {nonfinite}",
        st.bytes,
        st.bytes as f64 / secs,
        log.frames_ok,
        log.frames_bad,
        b.cobs,
        b.crc,
        b.schema,
        b.truncated,
        st.episodes,
        log.dropped(),
    )
}
