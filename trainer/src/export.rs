//! Export of the trained actor as a runtime policy blob (format v2: the
//! network, the observation normalization, the plant's bounds, code and
//! safe action).
//!
//! int8: per output row `s_r = max_c |w_rc| / 127`, `q_rc = round(w_rc / s_r)`
//! (so `|w − s_r q| ≤ s_r/2`); an all-zero row gets `s_r = 1` and `q = 0`.
//!
//! **Policy index.** Every run directory keeps the history of the policies
//! it exported, so that device logs (which name the acting policy only by
//! its id) can be mapped to a version: [`PolicyIndex`] in
//! `policies.json`, with every exported blob kept as `policy-<id>.bin`
//! next to it (see `docs/OFFPOLICY.md`). `train` registers its final
//! export, `finetune` each of its exports; versions count exports from 1.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tinyppo_runtime::format::{self, max_encoded_len, BlobSpec, LayerSpec, WeightsSpec};
use tinyppo_runtime::history::HistorySpec;
use tinyppo_runtime::selftest::{self, SelfTestSpec};
use tinyppo_runtime::{Activation, Extension};

use crate::algo::TrainState;
use crate::mlp::Act;
use crate::registry::RegisteredPlant;

/// Weight encoding of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quant {
    /// 8-bit weights with per-row scales.
    Int8,
    /// The same weights, interleaved 4 rows at a time and word-aligned
    /// where a layer's shape allows (rows a multiple of 4, columns of 8):
    /// the device's kernel loads 16 weights per instruction. The same
    /// actions as `int8`; a runtime older than this one refuses it.
    #[value(name = "int8x4")]
    Int8x4,
    /// 32-bit float weights.
    F32,
}

/// Symmetric per-row int8 quantization of a row-major `rows × cols` matrix.
pub fn quantize_rows(w: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut q = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows);
    for row in w.chunks_exact(cols).take(rows) {
        let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(
            row.iter()
                .map(|&v| (v / s).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// Encodes the actor of `state`, a run on `plant`, as a blob.
pub fn export_blob(state: &TrainState, plant: &RegisteredPlant, quant: Quant) -> Result<Vec<u8>> {
    let m = &state.model;
    // The model's inputs: the observation, then `k` past actions.
    let k = state.cfg.action_history;
    let inputs = plant.obs_dim() + k * plant.act_dim();
    if state.cfg.env != plant.name() || (m.obs_dim(), m.act_dim()) != (inputs, plant.act_dim()) {
        bail!(
            "the run is on plant {:?} with a {}→{} model, not on {} ({}→{} with {k} past actions)",
            state.cfg.env,
            m.obs_dim(),
            m.act_dim(),
            plant.name(),
            inputs,
            plant.act_dim()
        );
    }
    if let Some(k) = m.params.iter().position(|p| !p.is_finite()) {
        bail!("refusing to export: parameter {k} is {}", m.params[k]);
    }
    let params = m.actor_params();
    let (mean, inv_std) = if state.cfg.norm_obs {
        state.obs_rms.export()
    } else {
        (vec![0.0; m.obs_dim()], vec![1.0; m.obs_dim()])
    };
    let (low, high) = (plant.action_low(), plant.action_high());
    // The run's realism, for simulating the board as it was trained.
    let (realism, _) = state.cfg.validate_for(plant)?;
    let body = realism.encode();
    // With a history, the first layer's history columns and their
    // normalization go into the history record (f32), the rest as usual.
    let (ow0, _, rows0, _) = m.actor.layer_offsets(0);
    let split = crate::history::split(
        &params[ow0..ow0 + rows0 * inputs],
        rows0,
        plant.obs_dim(),
        &mean,
        &inv_std,
    );
    let hist_spec = HistorySpec {
        len: k as u8,
        mean: &split.hist_mean,
        inv_std: &split.hist_inv_std,
        weights: &split.w_hist,
    };
    let mut hist_body = vec![0u8; tinyppo_runtime::history::max_body_len(&hist_spec)];
    let n = tinyppo_runtime::history::encode_body(&hist_spec, &mut hist_body)
        .context("encoding the action-history record")?;
    hist_body.truncate(n);
    let mut extensions: Vec<Extension> = Vec::new();
    if k > 0 {
        extensions.push(Extension {
            tag: tinyppo_runtime::history::TAG,
            body: &hist_body,
        });
    }
    let safety = state.cfg.safety.resolve(plant)?;
    let safety_spec = safety.spec();
    let mut safety_body = vec![0u8; tinyppo_runtime::safety::max_body_len(&safety_spec)];
    let n = tinyppo_runtime::safety::encode_body(&safety_spec, &mut safety_body)
        .context("encoding the safety record")?;
    safety_body.truncate(n);
    if !safety.is_none(plant) {
        extensions.push(Extension {
            tag: tinyppo_runtime::safety::TAG,
            body: &safety_body,
        });
    }
    if !realism.is_none() {
        extensions.push(Extension {
            tag: tinyppo_runtime::realism::TAG,
            body: &body,
        });
    }
    let (mean, inv_std) = (split.obs_mean, split.obs_inv_std);
    let n_layers = m.actor.n_layers();
    let mut f32_layers = Vec::new();
    let mut q_layers = Vec::new();
    for l in 0..n_layers {
        let (ow, ob, rows, cols) = m.actor.layer_offsets(l);
        let (w, cols) = if l == 0 {
            (&split.w_obs[..], plant.obs_dim())
        } else {
            (&params[ow..ob], cols)
        };
        let b = &params[ob..ob + rows];
        f32_layers.push((w, b));
        q_layers.push((quantize_rows(w, rows, cols), b));
    }
    let layers: Vec<LayerSpec> = match quant {
        Quant::F32 => f32_layers
            .iter()
            .map(|&(w, b)| LayerSpec {
                weights: WeightsSpec::F32(w),
                bias: b,
            })
            .collect(),
        Quant::Int8 => q_layers
            .iter()
            .map(|((q, s), b)| LayerSpec {
                weights: WeightsSpec::Int8 { q, scales: s },
                bias: b,
            })
            .collect(),
        Quant::Int8x4 => q_layers
            .iter()
            .map(|((q, s), b)| LayerSpec {
                weights: WeightsSpec::Int8x4 { q, scales: s },
                bias: b,
            })
            .collect(),
    };
    let spec = BlobSpec {
        obs_dim: plant.obs_dim(),
        act_dim: m.act_dim(),
        hidden: &m.actor.sizes[1..m.actor.sizes.len() - 1],
        activation: match m.actor.act {
            Act::Tanh => Activation::Tanh,
            Act::Relu => Activation::Relu,
        },
        obs_mean: &mean,
        obs_inv_std: &inv_std,
        obs_clip: if state.cfg.norm_obs {
            state.cfg.obs_clip
        } else {
            format::MAX_ABS_VALUE
        },
        action_low: low,
        action_high: high,
        log_std: m.log_std(),
        layers: &layers,
        plant: plant.code(),
        safe_action: plant.safe_action(),
        extensions: &extensions,
    };
    let blob = encode_spec(&spec)?;
    // The boot self-test: the runtime's own means on the finished policy.
    let (obs, means) = plant.self_test_vectors(&blob)?;
    let range = low
        .iter()
        .zip(high)
        .map(|(l, h)| h - l)
        .fold(0.0f32, f32::max);
    let test = SelfTestSpec {
        tolerance: SELF_TEST_TOLERANCE * range,
        obs: &obs,
        mean: &means,
    };
    let count = u8::try_from(obs.len() / plant.obs_dim()).unwrap_or(0);
    if count == 0 {
        return Ok(blob);
    }
    let mut test_body = vec![0u8; selftest::max_body_len(&test)];
    let n = selftest::encode_body(&test, count, &mut test_body)
        .context("encoding the self-test record")?;
    test_body.truncate(n);
    let mut all = extensions.clone();
    all.push(Extension {
        tag: selftest::TAG,
        body: &test_body,
    });
    encode_spec(&BlobSpec {
        extensions: &all,
        ..spec
    })
}

/// The self-test's tolerance, as a fraction of the widest action range:
/// the device computes the host's bits exactly, so any error at all means
/// another computation; 1e-4 of the range leaves room for a kernel that
/// sums in another order, and none for a wrong weight, scale or
/// normalization.
pub const SELF_TEST_TOLERANCE: f32 = 1e-4;

/// `spec` as blob bytes (re-parsed by the runtime's encoder before they
/// are returned).
fn encode_spec(spec: &BlobSpec) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; max_encoded_len(spec)];
    let n = format::encode(spec, &mut buf)
        .map_err(anyhow::Error::msg)
        .context("encoding the policy blob")?;
    buf.truncate(n);
    Ok(buf)
}

/// Re-encodes a blob of any format version as a current (v2) blob of the
/// same policy for `plant`: the same weights, normalization, bounds and
/// log-std (so the same actions, bit for bit), with the plant's code and
/// safe action. Refuses a blob of other dimensions, or one that names
/// another plant.
pub fn reencode_blob(blob: &[u8], plant: &RegisteredPlant) -> Result<Vec<u8>> {
    let b = tinyppo_runtime::Blob::parse(blob)
        .map_err(|e| anyhow::anyhow!("invalid policy blob: {e}"))?;
    plant.check_blob(blob, "the blob", false)?;
    // The records the blob had (realism, records of newer versions).
    let extensions: Vec<_> = b.extensions().collect();
    format::owned::OwnedBlob::of(&b)
        .encode(b.encoding, plant.code(), plant.safe_action(), &extensions)
        .map_err(anyhow::Error::msg)
        .context("encoding the policy blob")
}

/// File name of the policy index in a run directory.
pub const INDEX_FILE: &str = "policies.json";

/// File name under which a blob with policy id `id` is kept in a run
/// directory (next to [`INDEX_FILE`]; a flat layout, so a run directory
/// can be copied file by file).
pub fn blob_file_name(id: u32) -> String {
    format!("policy-{id:08x}.bin")
}

/// The policy id of a blob (CRC-32C of its payload, as stored in it).
pub fn policy_id(blob: &[u8]) -> Result<u32> {
    let b = tinyppo_runtime::Blob::parse(blob)
        .map_err(|e| anyhow::anyhow!("invalid policy blob: {e}"))?;
    Ok(b.policy_id)
}

/// One exported blob of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Export number of the run, from 1; the int8 and f32 blobs of one
    /// export share it.
    pub version: u32,
    /// Policy id, 8 lowercase hex digits (as `tinyppo inspect` prints it).
    pub id: String,
    /// Weight encoding: `int8` or `f32`.
    pub quant: String,
    /// The blob's file, relative to the run directory.
    pub file: String,
    /// What exported it: `train`, `finetune` or `bootstrap` (an index
    /// created for a run directory that had none).
    pub origin: String,
    /// Updates of the run at the export.
    pub update: u64,
    /// Environment steps of the run at the export.
    pub global_step: u64,
    /// Version this one was trained from (`None` for the first).
    pub parent: Option<u32>,
}

/// The exports of a run directory, oldest first (`policies.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyIndex {
    /// Index format, 1.
    pub format: u32,
    /// Every exported blob.
    pub policies: Vec<PolicyRecord>,
}

impl PolicyIndex {
    /// Reads `dir/policies.json`; `Ok(None)` if there is none.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(INDEX_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let idx: PolicyIndex = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a policy index", path.display()))?;
        if idx.format != 1 {
            bail!(
                "{}: policy index format {}, this build reads 1",
                path.display(),
                idx.format
            );
        }
        Ok(Some(idx))
    }

    /// Writes `dir/policies.json` atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("serializing the policy index")?;
        crate::checkpoint::write_atomic(&dir.join(INDEX_FILE), text.as_bytes())
    }

    /// The newest version (0 if nothing was exported yet).
    pub fn latest_version(&self) -> u32 {
        self.policies.iter().map(|r| r.version).max().unwrap_or(0)
    }

    /// The record of policy id `id`, if this run exported it.
    pub fn find(&self, id: u32) -> Option<&PolicyRecord> {
        let hex = format!("{id:08x}");
        self.policies.iter().find(|r| r.id == hex)
    }

    /// The version of policy id `id`, if this run exported it.
    pub fn version_of(&self, id: u32) -> Option<u32> {
        self.find(id).map(|r| r.version)
    }

    /// The int8 record of the newest version, if any.
    pub fn latest_int8(&self) -> Option<&PolicyRecord> {
        let v = self.latest_version();
        self.policies
            .iter()
            .find(|r| r.version == v && r.quant == "int8")
    }

    /// Adds one export (its blobs, e.g. int8 and f32) as the next version,
    /// in memory; returns the version and whether it is new. If every blob
    /// is already the newest version (a `train --resume` that ran no
    /// update), nothing changes. [`crate::publish::publish`] writes it.
    pub fn add(
        &mut self,
        blobs: &[(&[u8], Quant)],
        origin: &str,
        update: u64,
        global_step: u64,
    ) -> Result<(u32, bool)> {
        let latest = self.latest_version();
        let ids = blobs
            .iter()
            .map(|(b, _)| policy_id(b))
            .collect::<Result<Vec<_>>>()?;
        if latest > 0 && ids.iter().all(|&id| self.version_of(id) == Some(latest)) {
            return Ok((latest, false));
        }
        let version = latest + 1;
        for ((_, quant), id) in blobs.iter().zip(ids) {
            self.policies.push(PolicyRecord {
                version,
                id: format!("{id:08x}"),
                quant: match quant {
                    Quant::Int8 => "int8",
                    Quant::Int8x4 => "int8x4",
                    Quant::F32 => "f32",
                }
                .into(),
                file: blob_file_name(id),
                origin: origin.into(),
                update,
                global_step,
                parent: (latest > 0).then_some(latest),
            });
        }
        self.format = 1;
        Ok((version, true))
    }
}
