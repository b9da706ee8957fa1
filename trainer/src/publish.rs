//! Publishing a policy version as one transaction, and repairing a run
//! directory that a crash interrupted.
//!
//! A version is several files: its blobs (`policy-<id>.bin`), the run's
//! index (`policies.json`), the deployed copies (`policy.bin`,
//! `policy-f32.bin`) and, for a fine-tune, the new checkpoint and
//! metrics. [`publish`] writes them in an order in which **the index is
//! the commit point**:
//!
//! 1. every blob of the version, as `policy-<id>.bin` (a file the index
//!    does not list yet is not part of the run);
//! 2. every other file of the version under a staged name,
//!    `<file>.v<N>.staged` (`checkpoint.bin.v3.staged`);
//! 3. `policies.json` listing version N — the commit;
//! 4. the staged files renamed to their names;
//! 5. the deployed copies `policy.bin`, `policy-f32.bin`.
//!
//! Every write is a temporary file, synced and renamed
//! ([`write_atomic`]), so a crash at any point leaves whole files only. A
//! crash before step 3 leaves the old version in force and files nobody
//! lists; after it, the new version is committed and some files lag.
//! [`repair`], which `train --resume` and `finetune` run first (holding
//! the run's lock), finishes or rolls back either: staged files of the
//! committed version are renamed into place, staged files of an
//! uncommitted one and unlisted blobs are removed, the deployed copies are
//! made the newest version's, and temporary files of killed processes are
//! removed. So every crash point leaves a directory that loads, resumes,
//! lists every blob it holds, and deploys the policy it lists as newest.

use std::cell::Cell;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::checkpoint::{is_temp_file, write_atomic};
use crate::export::{blob_file_name, policy_id, PolicyIndex, Quant, INDEX_FILE};

thread_local! {
    /// Test hook: fail at the N-th crash point from now (0 = none). A
    /// crash point is every write and rename of [`publish`]; an `Err`
    /// there leaves the directory exactly as a killed process would.
    static CRASH_AT: Cell<usize> = const { Cell::new(0) };
}

/// Makes the `n`-th crash point of [`publish`] from now, on this thread,
/// fail (`n ≥ 1`), as if the process were killed there; `0` turns it off.
/// For tests of the transaction.
pub fn crash_at(n: usize) {
    CRASH_AT.with(|c| c.set(n));
}

fn crash_point(what: &str) -> Result<()> {
    let n = CRASH_AT.with(|c| c.get());
    if n == 0 {
        return Ok(());
    }
    CRASH_AT.with(|c| c.set(n - 1));
    if n == 1 {
        bail!("simulated crash before {what}");
    }
    Ok(())
}

fn staged_name(file: &str, version: u32) -> String {
    format!("{file}.v{version}.staged")
}

/// Publishes `blobs` (int8 first, then f32) as the next version of the run
/// in `dir` with the other files `extra` (`(name, bytes)`, e.g. the
/// fine-tune's checkpoint and metrics), in the order of the
/// [module docs](self). Returns the version (the newest one unchanged, if
/// the blobs are already it: nothing is written then but `extra`).
pub fn publish(
    dir: &Path,
    idx: &mut PolicyIndex,
    blobs: &[(&[u8], Quant)],
    extra: &[(&str, &[u8])],
    origin: &str,
    (update, global_step): (u64, u64),
) -> Result<u32> {
    let (version, new) = idx.add(blobs, origin, update, global_step)?;
    if new {
        for (b, _) in blobs {
            let file = blob_file_name(policy_id(b)?);
            crash_point(&file)?;
            write_atomic(&dir.join(&file), b)?;
        }
    }
    for (name, bytes) in extra {
        let staged = staged_name(name, version);
        crash_point(&staged)?;
        write_atomic(&dir.join(&staged), bytes)?;
    }
    if new {
        crash_point(INDEX_FILE)?;
        idx.save(dir)?;
    }
    for (name, _) in extra {
        crash_point(name)?;
        let staged = dir.join(staged_name(name, version));
        std::fs::rename(&staged, dir.join(name))
            .with_context(|| format!("renaming {} to {name}", staged.display()))?;
    }
    deploy(dir, idx)?;
    Ok(version)
}

/// Writes the deployed copies `policy.bin` (int8) and `policy-f32.bin` of
/// the index's newest version where they differ from its blobs. A blob
/// file that is missing or not its id is left alone here (the commands
/// that need it say so, naming it).
fn deploy(dir: &Path, idx: &PolicyIndex) -> Result<()> {
    let latest = idx.latest_version();
    for (file, quant) in [("policy.bin", "int8"), ("policy-f32.bin", "f32")] {
        let Some(r) = idx
            .policies
            .iter()
            .find(|r| r.version == latest && r.quant == quant)
        else {
            continue;
        };
        let Ok(bytes) = std::fs::read(dir.join(&r.file)) else {
            continue;
        };
        if policy_id(&bytes)
            .ok()
            .map(|id| format!("{id:08x}"))
            .as_deref()
            != Some(&r.id)
        {
            continue;
        }
        if std::fs::read(dir.join(file)).ok().as_deref() != Some(&bytes[..]) {
            crash_point(file)?;
            write_atomic(&dir.join(file), &bytes)?;
        }
    }
    Ok(())
}

/// What [`repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repair {
    /// Staged files of the committed version renamed into place.
    pub completed: Vec<String>,
    /// Staged files of an uncommitted version, unlisted blobs and stale
    /// temporary files, removed.
    pub removed: Vec<String>,
    /// Deployed copies rewritten to the newest version.
    pub redeployed: bool,
}

impl Repair {
    /// Nothing was needed.
    pub fn is_empty(&self) -> bool {
        self.completed.is_empty() && self.removed.is_empty() && !self.redeployed
    }
}

/// Finishes or rolls back an interrupted [`publish`] in `dir` and removes
/// temporary files of killed processes (see the [module docs](self)). Call
/// it holding the run's lock.
pub fn repair(dir: &Path) -> Result<Repair> {
    let mut rep = Repair::default();
    let idx = PolicyIndex::load(dir)?;
    let latest = idx.as_ref().map_or(0, |i| i.latest_version());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(rep);
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if is_temp_file(&name) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            rep.removed.push(name);
        } else if let Some((file, v)) = parse_staged(&name) {
            if v == latest {
                std::fs::rename(&path, dir.join(file))
                    .with_context(|| format!("renaming {} to {file}", path.display()))?;
                rep.completed.push(name);
            } else {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                rep.removed.push(name);
            }
        } else if let (Some(idx), true) = (&idx, is_blob_file(&name)) {
            if !idx.policies.iter().any(|r| r.file == name) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                rep.removed.push(name);
            }
        }
    }
    if let Some(idx) = &idx {
        let before: Vec<Option<Vec<u8>>> = ["policy.bin", "policy-f32.bin"]
            .iter()
            .map(|f| std::fs::read(dir.join(f)).ok())
            .collect();
        deploy(dir, idx)?;
        let after: Vec<Option<Vec<u8>>> = ["policy.bin", "policy-f32.bin"]
            .iter()
            .map(|f| std::fs::read(dir.join(f)).ok())
            .collect();
        rep.redeployed = before != after;
    }
    Ok(rep)
}

/// `<file>.v<N>.staged` → `(file, N)`.
fn parse_staged(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_suffix(".staged")?;
    let (file, v) = rest.rsplit_once(".v")?;
    Some((file, v.parse().ok()?))
}

/// `policy-<8 hex digits>.bin`.
fn is_blob_file(name: &str) -> bool {
    name.strip_prefix("policy-")
        .and_then(|r| r.strip_suffix(".bin"))
        .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}
