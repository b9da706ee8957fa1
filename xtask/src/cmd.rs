//! Running child processes: echo the command line, inherit stdio, turn a
//! non-zero exit into an error that quotes the command.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Prints `$ ENV=… program args…` and runs `cmd` to completion with the
/// terminal's stdout/stderr and no stdin (CI has none).
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    println!("$ {line}");
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// The command as a shell-like line: changed env vars, then program name
/// and arguments. A `PATH` with a prepended directory prints as `DIR:$PATH`.
pub fn display(cmd: &Command) -> String {
    let mut line = String::new();
    let old_path = std::env::var_os("PATH").unwrap_or_default();
    for (key, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        let mut shown = value.to_string_lossy().into_owned();
        if key == "PATH" {
            let old = old_path.to_string_lossy();
            if let Some(prefix) = shown.strip_suffix(old.as_ref()) {
                shown = format!("{prefix}$PATH");
            }
        }
        let _ = write!(
            line,
            "{}={} ",
            key.to_string_lossy(),
            quote(OsStr::new(&shown))
        );
    }
    // `$CARGO` is a full path into the rustup toolchain; `cargo` reads better.
    let program = Path::new(cmd.get_program());
    let name = program.file_name().unwrap_or(program.as_os_str());
    line.push_str(&name.to_string_lossy());
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    line
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=+/.,:@%$".contains(c))
    {
        s.into_owned()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_program_name_and_quoted_args() {
        let mut cmd = Command::new("/some/toolchain/bin/cargo");
        cmd.args(["build", "--features", "a b"])
            .env("RUSTFLAGS", "-D warnings");
        assert_eq!(
            display(&cmd),
            "RUSTFLAGS=\"-D warnings\" cargo build --features \"a b\""
        );
    }

    #[test]
    fn display_abbreviates_prepended_path() {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut path = std::ffi::OsString::from("/opt/lld/bin:");
        path.push(&old);
        let mut cmd = Command::new("cargo");
        cmd.env("PATH", path);
        assert_eq!(display(&cmd), "PATH=/opt/lld/bin:$PATH cargo");
    }
}
