//! Action history: the last `k` applied actions as extra policy inputs.
//!
//! A plant whose actuator lags, or whose sensor is late, is not Markov in
//! its observation alone: what the controller commanded in the last few
//! ticks is still on its way. A policy trained with `action_history = k`
//! sees, besides `o_t`, the vector
//!
//! ```text
//! h_t = [a_{t−1}, a_{t−2}, …, a_{t−k}]      (k·ACT values, most recent first)
//! ```
//!
//! of the actions the controller **applied** (clipped to the bounds; the
//! safe action on a fault tick and before the episode's first tick).
//! [`ActionHistory`] keeps them; the [`ControlLoop`](crate::control) builds
//! it on the device exactly as the trainer does in simulation.
//!
//! The blob holds it as the **required** extension record [`TAG`] (`0x00`):
//! a runtime that does not know it refuses the blob rather than run the
//! policy on half its inputs. Its body (postcard, `docs/FORMAT.md`):
//!
//! ```text
//! len      u8      k, 1–8 (MAX_HISTORY)
//! mean     bytes   k·ACT f32 LE: normalization of h_t, like obs_mean
//! inv_std  bytes   k·ACT f32 LE, > 0
//! weights  bytes   rows₀·k·ACT f32 LE, row-major: the first layer's
//!                  columns for h_t (f32 whatever the blob's encoding)
//! ```
//!
//! The first layer's pre-activation becomes
//! `W₀ x̂ + W_h ĥ + b₀` with `ĥ = clip((h − mean) ⊙ inv_std, −c, c)` and
//! `c` the blob's `obs_clip`; the rest of the network is unchanged.
//! `OBS + k·ACT ≤ 256`, so the format's finiteness bound still holds.

use serde::{Deserialize, Serialize};

use crate::error::{Field, FormatError};
use crate::format::{check_f32s, f32s, scales_positive, F32Bytes};

/// The tag of the action-history record (required: `0x00–0x7F`).
pub const TAG: u8 = 0x00;

/// Longest history (`k`).
pub const MAX_HISTORY: usize = 8;

/// A checked action-history record, borrowed from the blob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryView<'a> {
    /// `k`: how many past actions.
    pub len: usize,
    /// Normalization mean, `k·ACT` f32 LE.
    pub mean: &'a [u8],
    /// Normalization inverse standard deviation, `k·ACT` f32 LE.
    pub inv_std: &'a [u8],
    /// First-layer weights of the history, `rows₀ × k·ACT` f32 LE,
    /// row-major.
    pub weights: &'a [u8],
}

impl HistoryView<'_> {
    /// `k·ACT`: the history's input width.
    pub fn width(&self, act_dim: usize) -> usize {
        self.len * act_dim
    }
}

/// What a history record is built from (the encoding side).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistorySpec<'a> {
    /// `k`, 1–[`MAX_HISTORY`].
    pub len: u8,
    /// Normalization mean, `k·ACT` values.
    pub mean: &'a [f32],
    /// Normalization inverse standard deviation, `k·ACT` values.
    pub inv_std: &'a [f32],
    /// First-layer weights, `rows₀ × k·ACT`, row-major.
    pub weights: &'a [f32],
}

#[derive(Deserialize)]
struct RawHistory<'a> {
    len: u8,
    mean: &'a [u8],
    inv_std: &'a [u8],
    weights: &'a [u8],
}

#[derive(Serialize)]
struct HistoryOut<'a> {
    len: u8,
    mean: F32Bytes<'a>,
    inv_std: F32Bytes<'a>,
    weights: F32Bytes<'a>,
}

/// Parses and checks a history record's body for a policy with `obs_dim`
/// observations, `act_dim` actions and a first layer of `rows` rows (what
/// `Blob::parse` does with tag [`TAG`]).
pub fn parse_body(
    body: &[u8],
    obs_dim: usize,
    act_dim: usize,
    rows: usize,
) -> Result<HistoryView<'_>, FormatError> {
    let raw: RawHistory<'_> = match postcard::take_from_bytes(body) {
        Ok((r, [])) => r,
        _ => return Err(FormatError::Malformed),
    };
    let k = raw.len as usize;
    let max = MAX_HISTORY.min(crate::format::MAX_WIDTH.saturating_sub(obs_dim) / act_dim.max(1));
    if !(1..=max).contains(&k) {
        return Err(FormatError::BadWidth {
            field: Field::HistoryLen,
            found: k,
            max,
        });
    }
    let n = k * act_dim;
    check_f32s(Field::HistoryMean, raw.mean, n, |_| true)?;
    check_f32s(Field::HistoryInvStd, raw.inv_std, n, |_| true)?;
    scales_positive(Field::HistoryInvStd, raw.inv_std)?;
    check_f32s(Field::HistoryWeights, raw.weights, rows * n, |_| true)?;
    Ok(HistoryView {
        len: k,
        mean: raw.mean,
        inv_std: raw.inv_std,
        weights: raw.weights,
    })
}

/// Writes a history record's body into `out` and returns its length
/// (`None` if `out` is too small). Does not check the values: the blob
/// encoder re-parses the whole blob, record included.
pub fn encode_body(spec: &HistorySpec<'_>, out: &mut [u8]) -> Option<usize> {
    let raw = HistoryOut {
        len: spec.len,
        mean: F32Bytes(spec.mean),
        inv_std: F32Bytes(spec.inv_std),
        weights: F32Bytes(spec.weights),
    };
    postcard::to_slice(&raw, out).ok().map(|b| b.len())
}

/// The body length [`encode_body`] needs at most for `spec`.
pub fn max_body_len(spec: &HistorySpec<'_>) -> usize {
    // u8 + three byte strings with up-to-5-byte varint lengths.
    1 + 3 * 5 + 4 * (spec.mean.len() + spec.inv_std.len() + spec.weights.len())
}

/// The last [`MAX_HISTORY`] applied actions of an episode, most recent
/// first. Fixed size, no allocation; [`reset`](Self::reset) fills it with
/// the safe action at every episode start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionHistory<const ACT: usize> {
    ring: [[f32; ACT]; MAX_HISTORY],
    /// Index of the most recent action.
    head: usize,
}

impl<const ACT: usize> ActionHistory<ACT> {
    /// A history of `fill` only (an episode's start).
    pub fn new(fill: [f32; ACT]) -> Self {
        ActionHistory {
            ring: [fill; MAX_HISTORY],
            head: 0,
        }
    }

    /// Forgets every action: all of them `fill` (the safe action).
    pub fn reset(&mut self, fill: [f32; ACT]) {
        *self = Self::new(fill);
    }

    /// Records the action applied this tick.
    pub fn push(&mut self, applied: [f32; ACT]) {
        self.head = (self.head + MAX_HISTORY - 1) % MAX_HISTORY;
        if let Some(slot) = self.ring.get_mut(self.head) {
            *slot = applied;
        }
    }

    /// The action applied `i + 1` ticks ago (`i = 0`: the last one);
    /// `i ≥ MAX_HISTORY` gives the oldest kept.
    pub fn get(&self, i: usize) -> [f32; ACT] {
        let i = i.min(MAX_HISTORY - 1);
        self.ring[(self.head + i) % MAX_HISTORY]
    }

    /// The first `k` actions, most recent first, flattened into `out`
    /// (`k·ACT` values; `out` shorter: as many as fit).
    pub fn write(&self, k: usize, out: &mut [f32]) {
        for (chunk, i) in out.chunks_mut(ACT.max(1)).zip(0..k) {
            for (o, v) in chunk.iter_mut().zip(self.get(i)) {
                *o = v;
            }
        }
    }
}

/// `ĥ = clip((h − mean) ⊙ inv_std, −c, c)` of the first `k·ACT` values of
/// `hist` into `out`.
pub(crate) fn normalize<const ACT: usize>(
    view: &HistoryView<'_>,
    hist: &ActionHistory<ACT>,
    clip: f32,
    out: &mut [f32],
) {
    let n = view.width(ACT).min(out.len());
    let out = &mut out[..n];
    hist.write(view.len, out);
    for ((o, m), s) in out.iter_mut().zip(f32s(view.mean)).zip(f32s(view.inv_std)) {
        let v = (*o - m) * s;
        *o = if v < -clip {
            -clip
        } else if v > clip {
            clip
        } else {
            v
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_actions_most_recent_first() {
        let mut h = ActionHistory::<2>::new([9.0, 9.0]);
        assert_eq!(h.get(0), [9.0, 9.0]);
        for t in 0..10 {
            h.push([t as f32, -(t as f32)]);
        }
        assert_eq!(h.get(0), [9.0, -9.0]);
        assert_eq!(h.get(3), [6.0, -6.0]);
        assert_eq!(h.get(7), [2.0, -2.0]);
        assert_eq!(h.get(100), [2.0, -2.0]);
        let mut out = [0.0; 6];
        h.write(3, &mut out);
        assert_eq!(out, [9.0, -9.0, 8.0, -8.0, 7.0, -7.0]);
        h.reset([0.5, 0.5]);
        h.write(3, &mut out);
        assert_eq!(out, [0.5; 6]);
    }

    #[test]
    fn bodies_round_trip_and_bad_ones_are_refused() {
        let spec = HistorySpec {
            len: 2,
            mean: &[0.1, 0.2],
            inv_std: &[2.0, 4.0],
            weights: &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        };
        let mut buf = [0u8; 256];
        let n = encode_body(&spec, &mut buf).unwrap();
        assert!(n <= max_body_len(&spec));
        let v = parse_body(&buf[..n], 3, 1, 3).unwrap();
        assert_eq!(v.len, 2);
        assert_eq!(f32s(v.weights).nth(5), Some(6.0));
        // Wrong first-layer height, length 0, too long, a zero inv_std.
        assert!(matches!(
            parse_body(&buf[..n], 3, 1, 4),
            Err(FormatError::LengthMismatch {
                field: Field::HistoryWeights,
                ..
            })
        ));
        for (len, inv) in [(0u8, 1.0f32), (9, 1.0), (2, 0.0)] {
            let k = len as usize;
            let ones = [1.0f32; 32];
            let s = HistorySpec {
                len,
                mean: &ones[..k],
                inv_std: &[inv; 16][..k],
                weights: &ones[..3 * k],
            };
            let n = encode_body(&s, &mut buf).unwrap();
            assert!(
                parse_body(&buf[..n], 3, 1, 3).is_err(),
                "len {len} inv {inv}"
            );
        }
        // Trailing bytes.
        let n = encode_body(&spec, &mut buf).unwrap();
        assert_eq!(
            parse_body(&buf[..n + 1], 3, 1, 3),
            Err(FormatError::Malformed)
        );
    }
}
