//! A loaded Gaussian policy with fixed dimensions: the device's inference.
//!
//! `Policy<'a, OBS, ACT, HID>` borrows its weights from the blob bytes (on a
//! microcontroller: from flash) and keeps only the small per-dimension
//! vectors in RAM. `HID` is the widest hidden layer the caller reserves
//! scratch for (≤ 256); every buffer is a fixed-size array on the stack.
//!
//! **Guarantee.** Once [`Policy::from_bytes`] returns `Ok`, no method of
//! `Policy` panics, allocates or returns a non-finite action: non-finite
//! observations are reported as [`ActError::NonFiniteObservation`], never
//! propagated to an actuator. The format's value limits (`docs/FORMAT.md`)
//! bound every intermediate of the forward pass below `f32::MAX`.
//!
//! Forward pass: `x̂ = clip((x − mean) ⊙ inv_std, −c, c)`, then per hidden
//! layer `h ← act(W h + b)` (tanh or relu), then the linear head
//! `μ = W h + b`. Sampling: `u = μ + σ ⊙ z`, `z ~ N(0, I)` (f32 Box–Muller),
//! `applied = clip(u, low, high)`.

use rand_core::RngCore;

use crate::error::{ActError, Field, FormatError};
use crate::format::{
    f32_array as fill, f32s, Activation, Blob, Encoding, Layer, MAX_LAYERS, MAX_WIDTH,
};
use crate::gaussian;
use crate::history::{self, ActionHistory, HistoryView, MAX_HISTORY};
use crate::kernels::{self, QVec};
use crate::math;
use crate::safety::{Limits, SafetyView};
use crate::selftest::SelfTestView;

/// One sampled action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step<const ACT: usize> {
    /// The unclipped sample `u ~ N(μ(x), σ²)`: what the learner needs.
    pub action: [f32; ACT],
    /// `u` clipped to the action bounds: what the actuator gets.
    pub applied: [f32; ACT],
    /// `log π(u|x)` of the unclipped sample.
    pub log_prob: f32,
}

/// A validated policy with `OBS` inputs, `ACT` outputs and hidden layers at
/// most `HID` wide.
#[derive(Debug, Clone)]
pub struct Policy<'a, const OBS: usize, const ACT: usize, const HID: usize> {
    id: u32,
    activation: Activation,
    encoding: Encoding,
    layers: [Option<Layer<'a>>; MAX_LAYERS],
    obs_mean: [f32; OBS],
    obs_inv_std: [f32; OBS],
    obs_clip: f32,
    low: [f32; ACT],
    high: [f32; ACT],
    log_std: [f32; ACT],
    std: [f32; ACT],
    log_norm: f32,
    safe: [f32; ACT],
    plant: u8,
    history: Option<HistoryView<'a>>,
    safety: Option<SafetyView<'a>>,
    self_test: Option<SelfTestView<'a>>,
}

#[inline]
fn clampf(v: f32, lo: f32, hi: f32) -> f32 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

impl<'a, const OBS: usize, const ACT: usize, const HID: usize> Policy<'a, OBS, ACT, HID> {
    const DIMS_OK: () = assert!(
        OBS >= 1
            && OBS <= MAX_WIDTH
            && ACT >= 1
            && ACT <= MAX_WIDTH
            && HID >= 1
            && HID <= MAX_WIDTH,
        "Policy dims must be in 1..=256"
    );

    /// Parses and validates a blob (see [`Blob::parse`]) and checks its
    /// dimensions against `OBS`, `ACT` and `HID`. Weights stay in `bytes`.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, FormatError> {
        #[allow(clippy::let_unit_value)]
        let () = Self::DIMS_OK;
        let blob = Blob::parse(bytes)?;
        Self::from_blob(&blob)
    }

    /// Checks a parsed blob's dimensions against `OBS`, `ACT` and `HID`.
    pub fn from_blob(blob: &Blob<'a>) -> Result<Self, FormatError> {
        if blob.obs_dim != OBS {
            return Err(FormatError::ShapeMismatch {
                field: Field::ObsDim,
                expected: OBS,
                found: blob.obs_dim,
            });
        }
        if blob.act_dim != ACT {
            return Err(FormatError::ShapeMismatch {
                field: Field::ActDim,
                expected: ACT,
                found: blob.act_dim,
            });
        }
        for (i, &w) in blob.hidden().iter().enumerate() {
            if w > HID {
                return Err(FormatError::BadWidth {
                    field: Field::HiddenWidth(i as u8),
                    found: w,
                    max: HID,
                });
            }
        }
        let mut layers = [None; MAX_LAYERS];
        for (slot, l) in layers.iter_mut().zip(blob.layers()) {
            *slot = Some(l);
        }
        let log_std: [f32; ACT] = fill(blob.log_std);
        let mut std = [0.0; ACT];
        for (s, &l) in std.iter_mut().zip(&log_std) {
            *s = libm::expf(l);
        }
        Ok(Policy {
            id: blob.policy_id,
            activation: blob.activation,
            encoding: blob.encoding,
            layers,
            obs_mean: fill(blob.obs_mean),
            obs_inv_std: fill(blob.obs_inv_std),
            obs_clip: blob.obs_clip,
            low: fill(blob.action_low),
            high: fill(blob.action_high),
            log_norm: gaussian::log_normalizer(&log_std),
            log_std,
            std,
            safe: {
                let mut a = [0.0; ACT];
                for (o, v) in a.iter_mut().zip(blob.safe_action()) {
                    *o = v;
                }
                a
            },
            plant: blob.plant,
            history: blob.history(),
            safety: blob.safety(),
            self_test: blob.self_test(),
        })
    }

    /// The policy id (CRC-32C of the blob payload).
    pub fn id(&self) -> u32 {
        self.id
    }
    /// Hidden-layer activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Weight encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }
    /// Lower action bounds.
    pub fn action_low(&self) -> &[f32; ACT] {
        &self.low
    }
    /// Upper action bounds.
    pub fn action_high(&self) -> &[f32; ACT] {
        &self.high
    }
    /// Log standard deviations.
    pub fn log_std(&self) -> &[f32; ACT] {
        &self.log_std
    }

    /// The action for when no observation can be trusted: the plant's safe
    /// action recorded in the blob (format v2; a heater's is "off", not the
    /// middle of its range), or the midpoint of the bounds for a v1 blob.
    pub fn safe_action(&self) -> [f32; ACT] {
        self.safe
    }

    /// The code of the plant the policy was trained for, if the blob names
    /// one (v1 blobs do not).
    pub fn plant_code(&self) -> Option<u8> {
        (self.plant != crate::plants::code::UNSPECIFIED).then_some(self.plant)
    }

    /// The safety limits of the blob's record, or [`Limits::none`] (the
    /// policy's bounds only) without one; see [`safety`](crate::safety).
    pub fn limits(&self) -> Limits<OBS, ACT> {
        match &self.safety {
            Some(v) => Limits::from_view(v),
            None => Limits::none(self.low, self.high),
        }
    }

    /// The blob's self-test vectors, if it has them; run them with
    /// [`selftest::run`](crate::selftest::run).
    pub fn self_test(&self) -> Option<&SelfTestView<'a>> {
        self.self_test.as_ref()
    }

    /// How many past applied actions the policy takes as inputs (`k` of
    /// the blob's action-history record; 0 without one). With `k > 0`,
    /// call the `*_with` methods ([`mean_with`](Self::mean_with),
    /// [`act_with`](Self::act_with), [`log_prob_with`](Self::log_prob_with))
    /// or run it in a [`ControlLoop`](crate::control::ControlLoop), which
    /// keeps the history; the others return [`ActError::HistoryRequired`].
    pub fn history_len(&self) -> usize {
        self.history.map_or(0, |h| h.len)
    }

    /// `x̂ = clip((x − mean) ⊙ inv_std, −c, c)`; refuses non-finite input.
    pub fn normalize(&self, obs: &[f32; OBS]) -> Result<[f32; OBS], ActError> {
        let mut out = [0.0; OBS];
        for (index, (((o, &x), &m), &is)) in out
            .iter_mut()
            .zip(obs)
            .zip(&self.obs_mean)
            .zip(&self.obs_inv_std)
            .enumerate()
        {
            if !x.is_finite() {
                return Err(ActError::NonFiniteObservation { index });
            }
            *o = clampf((x - m) * is, -self.obs_clip, self.obs_clip);
        }
        Ok(out)
    }

    /// The deterministic action: the Gaussian's mean `μ(x)`, unclipped.
    pub fn mean(&self, obs: &[f32; OBS]) -> Result<[f32; ACT], ActError> {
        if self.history.is_some() {
            return Err(ActError::HistoryRequired);
        }
        let x = self.normalize(obs)?;
        Ok(self.forward(&x, &[]))
    }

    /// [`mean`](Self::mean) of a policy that may take past actions as
    /// inputs: `hist` holds the actions applied before this tick (ignored
    /// if the policy has no history record).
    pub fn mean_with(
        &self,
        obs: &[f32; OBS],
        hist: &ActionHistory<ACT>,
    ) -> Result<[f32; ACT], ActError> {
        let x = self.normalize(obs)?;
        let Some(view) = &self.history else {
            return Ok(self.forward(&x, &[]));
        };
        let mut h = [[0.0f32; ACT]; MAX_HISTORY];
        let h = h.as_flattened_mut();
        history::normalize(view, hist, self.obs_clip, h);
        Ok(self.forward(&x, h.get(..view.width(ACT)).unwrap_or(&[])))
    }

    /// The mean, clipped to the action bounds (what a deterministic
    /// controller applies).
    pub fn mean_applied(&self, obs: &[f32; OBS]) -> Result<[f32; ACT], ActError> {
        let mut m = self.mean(obs)?;
        self.clip(&mut m);
        Ok(m)
    }

    /// [`mean_applied`](Self::mean_applied) with the actions applied
    /// before this tick (see [`mean_with`](Self::mean_with)).
    pub fn mean_applied_with(
        &self,
        obs: &[f32; OBS],
        hist: &ActionHistory<ACT>,
    ) -> Result<[f32; ACT], ActError> {
        let mut m = self.mean_with(obs, hist)?;
        self.clip(&mut m);
        Ok(m)
    }

    /// Samples `u ~ N(μ(x), σ²)` and returns it with its clipped form and
    /// `log π(u|x)`.
    pub fn act<R: RngCore + ?Sized>(
        &self,
        obs: &[f32; OBS],
        rng: &mut R,
    ) -> Result<Step<ACT>, ActError> {
        if self.history.is_some() {
            return Err(ActError::HistoryRequired);
        }
        self.sample(self.mean(obs)?, rng)
    }

    /// [`act`](Self::act) with the actions applied before this tick (see
    /// [`mean_with`](Self::mean_with)).
    pub fn act_with<R: RngCore + ?Sized>(
        &self,
        obs: &[f32; OBS],
        hist: &ActionHistory<ACT>,
        rng: &mut R,
    ) -> Result<Step<ACT>, ActError> {
        self.sample(self.mean_with(obs, hist)?, rng)
    }

    fn sample<R: RngCore + ?Sized>(
        &self,
        mu: [f32; ACT],
        rng: &mut R,
    ) -> Result<Step<ACT>, ActError> {
        let mut z = [0.0; ACT];
        gaussian::standard_normals(rng, &mut z);
        let mut action = [0.0; ACT];
        for (((u, &m), &s), &zj) in action.iter_mut().zip(&mu).zip(&self.std).zip(&z) {
            *u = m + s * zj;
        }
        let mut applied = action;
        self.clip(&mut applied);
        let log_prob = gaussian::log_prob(&action, &mu, &self.std, self.log_norm);
        Ok(Step {
            action,
            applied,
            log_prob,
        })
    }

    /// `log π(u|x)` of an (unclipped) action.
    pub fn log_prob(&self, obs: &[f32; OBS], action: &[f32; ACT]) -> Result<f32, ActError> {
        if let Some(index) = action.iter().position(|a| !a.is_finite()) {
            return Err(ActError::NonFiniteAction { index });
        }
        let mu = self.mean(obs)?;
        Ok(gaussian::log_prob(action, &mu, &self.std, self.log_norm))
    }

    /// [`log_prob`](Self::log_prob) with the actions applied before the
    /// tick of `obs` (see [`mean_with`](Self::mean_with)).
    pub fn log_prob_with(
        &self,
        obs: &[f32; OBS],
        action: &[f32; ACT],
        hist: &ActionHistory<ACT>,
    ) -> Result<f32, ActError> {
        if let Some(index) = action.iter().position(|a| !a.is_finite()) {
            return Err(ActError::NonFiniteAction { index });
        }
        let mu = self.mean_with(obs, hist)?;
        Ok(gaussian::log_prob(action, &mu, &self.std, self.log_norm))
    }

    /// Entropy of the action distribution (state-independent).
    pub fn entropy(&self) -> f32 {
        gaussian::entropy(&self.log_std)
    }

    /// `a` clipped to the action bounds (what the actuator may get).
    pub fn clipped(&self, a: &[f32; ACT]) -> [f32; ACT] {
        let mut a = *a;
        self.clip(&mut a);
        a
    }

    fn clip(&self, a: &mut [f32; ACT]) {
        for ((v, &lo), &hi) in a.iter_mut().zip(&self.low).zip(&self.high) {
            *v = clampf(*v, lo, hi);
        }
    }

    /// The MLP on a normalized observation and (possibly empty)
    /// normalized history `h`.
    fn forward(&self, x: &[f32; OBS], h: &[f32]) -> [f32; ACT] {
        match (&self.history, self.layers[0]) {
            (Some(view), Some(l0)) if !h.is_empty() => self.forward_history(x, h, view, &l0),
            _ => self.forward_bias0(x, None),
        }
    }

    /// With a history, the first layer's bias becomes `b₀ + W_h ĥ` (f32,
    /// little-endian like the blob's), computed once here; a policy
    /// without one never pays for the buffer.
    #[inline(never)]
    fn forward_history(
        &self,
        x: &[f32; OBS],
        h: &[f32],
        view: &HistoryView<'_>,
        l0: &Layer<'_>,
    ) -> [f32; ACT] {
        let mut bias0 = [0u8; 4 * MAX_WIDTH];
        let n = h.len();
        for ((out, b), w) in bias0
            .chunks_exact_mut(4)
            .zip(f32s(l0.bias))
            .zip(view.weights.chunks_exact(4 * n.max(1)))
        {
            let mut v = b;
            for (wj, hj) in f32s(w).zip(h) {
                v += wj * hj;
            }
            out.copy_from_slice(&v.to_le_bytes());
        }
        self.forward_bias0(x, bias0.get(..4 * l0.rows))
    }

    fn forward_bias0(&self, x: &[f32; OBS], bias0: Option<&[u8]>) -> [f32; ACT] {
        match self.encoding {
            Encoding::F32 => self.forward_f32(x, bias0),
            Encoding::Int8 | Encoding::Int8x4 => self.forward_i8(x, bias0),
        }
    }

    /// f32 weights: two ping-pong activation buffers of `HID` floats.
    fn forward_f32(&self, x: &[f32; OBS], bias0: Option<&[u8]>) -> [f32; ACT] {
        let mut out = [0.0f32; ACT];
        let (mut buf_a, mut buf_b) = ([0.0f32; HID], [0.0f32; HID]);
        let (mut cur, mut next) = (&mut buf_a, &mut buf_b);
        let mut width = 0;
        let mut layers = self.layers.iter().flatten().peekable();
        let mut first = true;
        while let Some(layer) = layers.next() {
            // `get(..n)` with lengths validated by `from_blob`: never empty
            // in practice, and no panic path if it were.
            let (input, bias): (&[f32], &[u8]) = if first {
                (&x[..], bias0.unwrap_or(layer.bias))
            } else {
                (cur.get(..width).unwrap_or(&[]), layer.bias)
            };
            first = false;
            if layers.peek().is_none() {
                kernels::dense_f32(layer.weights, bias, input, &mut out);
                break;
            }
            let y = next.get_mut(..layer.rows).unwrap_or(&mut []);
            kernels::dense_f32(layer.weights, bias, input, y);
            match self.activation {
                Activation::Tanh => y.iter_mut().for_each(|v| *v = math::tanh(*v)),
                Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
            }
            width = layer.rows;
            core::mem::swap(&mut cur, &mut next);
        }
        out
    }

    /// int8 weights: the input quantized once per layer into a [`QVec`],
    /// exact `i32` sums, then the activation, fused with the next layer's
    /// quantization for tanh (`docs/FORMAT.md`, "Inference semantics").
    /// One `QVec` of `HID` serves every hidden layer: its sums are done
    /// before the next input overwrites it.
    fn forward_i8(&self, x: &[f32; OBS], bias0: Option<&[u8]>) -> [f32; ACT] {
        let mut out = [0.0f32; ACT];
        let mut q_obs = QVec::<OBS>::new();
        let mut q = QVec::<HID>::new();
        let mut acc = [0i32; HID];
        let mut s_x = kernels::quantize(x, &mut q_obs);
        let mut width = OBS;
        let mut layers = self.layers.iter().flatten().peekable();
        let mut first = true;
        while let Some(layer) = layers.next() {
            let (input, bias) = if first {
                (q_obs.as_input(OBS), bias0.unwrap_or(layer.bias))
            } else {
                (q.as_input(width), layer.bias)
            };
            first = false;
            if layers.peek().is_none() {
                let mut acc_out = [0i32; ACT];
                matvec(layer, input, &mut acc_out);
                kernels::rescale(&acc_out, layer.scales, bias, s_x, &mut out);
                break;
            }
            let acc = acc.get_mut(..layer.rows).unwrap_or(&mut []);
            matvec(layer, input, acc);
            s_x = match self.activation {
                Activation::Tanh => kernels::requant_tanh(acc, layer.scales, bias, s_x, &mut q),
                Activation::Relu => {
                    let mut y = [0.0f32; HID];
                    let y = y.get_mut(..layer.rows).unwrap_or(&mut []);
                    kernels::rescale_relu(acc, layer.scales, bias, s_x, y);
                    kernels::quantize(y, &mut q)
                }
            };
            width = layer.rows;
        }
        out
    }
}

/// The int8 sums of `layer` in its layout.
#[inline(always)]
fn matvec(layer: &crate::format::Layer<'_>, input: kernels::QInput<'_>, acc: &mut [i32]) {
    if layer.interleaved {
        kernels::matvec_i8x4(layer.weights, input, acc);
    } else {
        kernels::matvec_i8(layer.weights, input, acc);
    }
}
