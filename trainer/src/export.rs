//! Export of the trained actor as a runtime policy blob (format v1).
//!
//! int8: per output row `s_r = max_c |w_rc| / 127`, `q_rc = round(w_rc / s_r)`
//! (so `|w − s_r q| ≤ s_r/2`); an all-zero row gets `s_r = 1` and `q = 0`.

use anyhow::{bail, Context, Result};
use tinyppo_runtime::format::{self, max_encoded_len, BlobSpec, LayerSpec, WeightsSpec};
use tinyppo_runtime::Activation;

use crate::mlp::Act;
use crate::ppo::TrainState;

/// Weight encoding of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quant {
    /// 8-bit weights with per-row scales.
    Int8,
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

/// Encodes the actor of `state` as a blob.
pub fn export_blob(state: &TrainState, quant: Quant) -> Result<Vec<u8>> {
    let m = &state.model;
    if let Some(k) = m.params.iter().position(|p| !p.is_finite()) {
        bail!("refusing to export: parameter {k} is {}", m.params[k]);
    }
    let params = m.actor_params();
    let (mean, inv_std) = if state.cfg.norm_obs {
        state.obs_rms.export()
    } else {
        (vec![0.0; m.obs_dim()], vec![1.0; m.obs_dim()])
    };
    let env = crate::env::make_env(&state.cfg.env)?;
    let (low, high) = (env.action_low(), env.action_high());
    let n_layers = m.actor.n_layers();
    let mut f32_layers = Vec::new();
    let mut q_layers = Vec::new();
    for l in 0..n_layers {
        let (ow, ob, rows, cols) = m.actor.layer_offsets(l);
        let w = &params[ow..ob];
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
    };
    let spec = BlobSpec {
        obs_dim: m.obs_dim(),
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
        action_low: &low,
        action_high: &high,
        log_std: m.log_std(),
        layers: &layers,
    };
    let mut buf = vec![0u8; max_encoded_len(&spec)];
    let n = format::encode(&spec, &mut buf)
        .map_err(anyhow::Error::msg)
        .context("encoding the policy blob")?;
    buf.truncate(n);
    Ok(buf)
}
