//! Checkpoints and atomic file writes.
//!
//! `checkpoint.bin` = `b"TPCK"`, u16 LE version, postcard of
//! [`TrainState`], CRC-32C of everything before it (u32 LE). Every file of a
//! run directory is written to a temporary file in the same directory,
//! synced, then renamed over the target, so a crash never leaves a
//! half-written policy or checkpoint.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tinyppo_runtime::format::CRC32C;

use crate::ppo::TrainState;

const MAGIC: &[u8; 4] = b"TPCK";
/// 2: the configuration gained the algorithm family's fields (issue 6).
const VERSION: u16 = 2;

/// Writes `bytes` to `path` atomically (temp file + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Serializes a state into checkpoint bytes.
pub fn to_bytes(state: &TrainState) -> Result<Vec<u8>> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend(postcard::to_allocvec(state).context("serializing checkpoint")?);
    let crc = CRC32C.checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Parses checkpoint bytes; `origin` names the file in errors.
pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<TrainState> {
    if bytes.len() < 10 || &bytes[..4] != MAGIC {
        bail!("{origin}: not a tinyppo checkpoint (expected magic \"TPCK\")");
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        bail!("{origin}: checkpoint version {version}, this build reads {VERSION}");
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = CRC32C.checksum(body);
    if stored != computed {
        bail!("{origin}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x}); the file is corrupt");
    }
    postcard::from_bytes(&body[6..]).with_context(|| format!("{origin}: decoding checkpoint"))
}

/// Saves `state` as `dir/checkpoint.bin`.
pub fn save(dir: &Path, state: &TrainState) -> Result<()> {
    write_atomic(&dir.join("checkpoint.bin"), &to_bytes(state)?)
}

/// Loads `dir/checkpoint.bin`.
pub fn load(dir: &Path) -> Result<TrainState> {
    let path = dir.join("checkpoint.bin");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    from_bytes(&bytes, &path.display().to_string())
}
