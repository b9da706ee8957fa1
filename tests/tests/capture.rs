//! `tinyppo logs capture` through the real serial path: a pseudo-terminal
//! pair (the kernel's tty layer, the same `serialport` calls as a USB
//! adapter), fed at a board's rate with damaged bytes in between; stopped
//! by the End frame, by Ctrl-C, and by the port going away. (The firmware
//! under QEMU on a pty is `cargo xtask ci`'s step "logs capture".)

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serialport::{SerialPort, TTYPort};
use tinyppo_trainer::logs::decode_stream;

use crate::cli::{fails, ok, s, tinyppo};
use crate::trainer_util::TempDir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A device log of the committed pendulum policy (3 episodes, End frame
/// last), as `tinyppo simulate` writes it.
fn device_log(dir: &Path) -> Vec<u8> {
    let out = dir.join("sim.bin");
    let policy = repo().join("firmware/policies/pendulum.bin");
    ok(&[
        "simulate",
        "--policy",
        s(&policy),
        "--env",
        "pendulum",
        "--episodes",
        "3",
        "--seed",
        "1",
        "--out",
        s(&out),
    ]);
    std::fs::read(&out).unwrap()
}

/// `bytes` with damage between and inside frames: line noise between two
/// frames (no delimiter: it merges with the next frame, one bad frame),
/// a flipped bit in a frame (CRC), a stray delimiter-terminated burst.
fn damaged(bytes: &[u8]) -> Vec<u8> {
    let ends: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == 0)
        .map(|(i, _)| i)
        .collect();
    assert!(ends.len() > 100, "{} frames", ends.len());
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut start = 0;
    for (k, &e) in ends.iter().enumerate() {
        let mut frame = bytes[start..=e].to_vec();
        match k {
            10 => out.extend_from_slice(&[0x55, 0xAA, 0x13, 0x37]),
            // Any change of a byte other than the delimiter: never 0.
            20 => frame[3] = frame[3].wrapping_add(1).max(1),
            30 => out.extend_from_slice(&[0xFF, 0xFE, 0xFD, 0x00]),
            _ => {}
        }
        out.extend_from_slice(&frame);
        start = e + 1;
    }
    out
}

/// A pty pair's master and the path of its slave, which the capture
/// opens (exclusively, as it would a USB adapter: so the pair's own slave
/// handle is closed first; the pty lives while the master is open).
fn pty() -> (TTYPort, String) {
    use std::os::fd::AsRawFd;
    let (master, slave) = TTYPort::pair().expect("a pseudo-terminal pair");
    let name = slave.name().expect("the slave's path");
    drop(slave);
    // The master is opened without close-on-exec: without it the capture
    // process would inherit it, and closing ours would not hang up the
    // line (the port-goes-away test).
    // SAFETY: fcntl on an fd this function owns, no memory involved.
    let r = unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    assert_eq!(r, 0, "fcntl(FD_CLOEXEC)");
    (master, name)
}

/// Starts `logs capture` on `port`; returns when it has opened the port
/// (its "capturing …" line), with the rest of its stderr on a channel.
fn start(port: &str, out: &Path, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(tinyppo())
        .args(["logs", "capture", "--port", port, "--out", s(out), "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("logs capture announces the open port");
    assert!(first.starts_with("capturing "), "{first}");
    (child, rx)
}

/// Writes `bytes` to the pty master at about 92 kB/s (921,600 Bd); stops
/// early if nobody reads any more (the capture has ended and the kernel's
/// buffer is full: the write times out).
fn feed(master: &mut TTYPort, bytes: &[u8]) {
    for chunk in bytes.chunks(512) {
        if master.write_all(chunk).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_micros(5_500));
    }
    let _ = master.flush();
}

fn json_of(child: Child) -> (std::process::ExitStatus, serde_json::Value, String) {
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let v = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null);
    (o.status, v, out)
}

/// The whole damaged stream, through the tty layer: the file is every byte
/// sent, the summary is `logs decode --json`'s of that file (plus the
/// capture's own fields), the damaged frames are counted by cause and
/// every other frame decodes (resynchronized at the next delimiter).
#[test]
fn capture_writes_every_byte_and_resyncs_over_damage() {
    let tmp = TempDir::new("capture-pty");
    let sent = damaged(&device_log(tmp.path()));
    let (mut master, port) = pty();
    let out = tmp.path().join("cap.bin");
    let (child, _err) = start(&port, &out, &[]);
    feed(&mut master, &sent);
    let (status, v, raw) = json_of(child);
    assert!(status.success(), "{raw}");
    assert_eq!(std::fs::read(&out).unwrap(), sent, "the file is the stream");
    assert_eq!(v["capture"]["stopped"], "end of stream (End frame)", "{v}");
    assert_eq!(v["capture"]["bytes"], sent.len());
    // The same report as decoding the file afterwards.
    let decoded: serde_json::Value =
        serde_json::from_str(ok(&["logs", "decode", "--json", s(&out)]).trim()).unwrap();
    for k in [
        "frames_ok",
        "frames_bad",
        "bad_by_cause",
        "transitions",
        "episodes",
        "mean_return",
        "dropped",
        "device_totals",
        "policy_ids",
    ] {
        assert_eq!(v[k], decoded[k], "{k}: capture {v} decode {decoded}");
    }
    // Three damaged frames (noise merged into a frame, a flipped bit, a
    // stray burst), the rest intact: the clean stream's frames minus the
    // two the damage hit.
    let clean = decode_stream(&device_log(tmp.path()));
    assert_eq!(v["frames_bad"], 3, "{v}");
    assert_eq!(v["frames_ok"], clean.frames_ok - 2, "{v}");
    // Frames 10 and 20 were transitions: the others all arrived.
    assert_eq!(v["transitions"], clean.transitions.len() - 2, "{v}");
}

/// Ctrl-C stops the capture with exit 0 and a file that is a prefix of
/// the stream, whose complete frames decode.
#[test]
fn ctrl_c_stops_with_a_valid_file() {
    let tmp = TempDir::new("capture-int");
    let sent = device_log(tmp.path());
    let (mut master, port) = pty();
    let out = tmp.path().join("cap.bin");
    let (child, _err) = start(&port, &out, &[]);
    let half = sent.len() / 2 + 7; // mid-frame
    feed(&mut master, &sent[..half]);
    std::thread::sleep(Duration::from_millis(400));
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (status, v, raw) = json_of(child);
    assert!(status.success(), "{raw}");
    assert_eq!(v["capture"]["stopped"], "interrupted");
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got, sent[..half], "every byte sent, nothing else");
    let log = decode_stream(&got);
    assert_eq!(
        (log.frames_bad, log.bad.truncated),
        (1, 1),
        "only the cut last frame"
    );
    assert!(log.frames_ok > 100);
}

/// The port going away (the board unplugged: here the pty's other end
/// closes) ends the capture with a clear error and the bytes so far safe.
#[test]
fn a_vanishing_port_ends_with_an_error_and_a_valid_file() {
    let tmp = TempDir::new("capture-gone");
    let sent = device_log(tmp.path());
    let (mut master, port) = pty();
    let out = tmp.path().join("cap.bin");
    let (child, err) = start(&port, &out, &[]);
    let part = sent.len() / 3;
    feed(&mut master, &sent[..part]);
    std::thread::sleep(Duration::from_millis(400));
    drop(master);
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    // The rest of its stderr (the reader thread ends with the pipe).
    let err: Vec<String> = err.iter().collect();
    let err = err.join("\n");
    assert!(err.contains("stopped working"), "{err}");
    assert!(err.contains(&format!("{part} bytes captured")), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), sent[..part]);
}

/// Bad input: an existing file is not overwritten without --force, a port
/// that cannot be opened leaves no file, zero episodes is refused.
#[test]
fn capture_refuses_bad_input_without_losing_data() {
    let tmp = TempDir::new("capture-bad");
    let out = tmp.path().join("keep.bin");
    std::fs::write(&out, b"precious").unwrap();
    let e = fails(&["logs", "capture", "--port", "/dev/null", "--out", s(&out)]);
    assert!(e.contains("exists: pass --force"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let fresh = tmp.path().join("new.bin");
    let e = fails(&[
        "logs",
        "capture",
        "--port",
        "/nonexistent/ttyUSB9",
        "--out",
        s(&fresh),
    ]);
    assert!(
        e.contains("opening serial port /nonexistent/ttyUSB9"),
        "{e}"
    );
    assert!(!fresh.exists());
    let e = fails(&[
        "logs",
        "capture",
        "--port",
        "/dev/null",
        "--episodes",
        "0",
        "--out",
        s(&fresh),
    ]);
    assert!(e.contains("--episodes 0"), "{e}");
    let e = fails(&[
        "logs",
        "capture",
        "--port",
        "/dev/null",
        "--duration=-1",
        "--out",
        s(&fresh),
    ]);
    assert!(e.contains("--duration"), "{e}");
}

/// `--episodes N` stops after N complete episodes.
#[test]
fn capture_stops_after_the_episodes_asked_for() {
    let tmp = TempDir::new("capture-eps");
    let sent = device_log(tmp.path());
    let (mut master, port) = pty();
    let out = tmp.path().join("cap.bin");
    let (child, _err) = start(&port, &out, &["--episodes", "2"]);
    feed(&mut master, &sent);
    let (status, v, raw) = json_of(child);
    assert!(status.success(), "{raw}");
    assert_eq!(v["capture"]["stopped"], "episodes reached");
    let got = std::fs::read(&out).unwrap();
    assert!(got.len() < sent.len() && sent.starts_with(&got));
    assert!(v["episodes"].as_u64().unwrap() >= 2, "{v}");
}
