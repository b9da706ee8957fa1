//! Shared helpers for the runtime tests: an independent CRC-32C, an
//! independent writer of the v1 payload (written from `docs/FORMAT.md`, not
//! from the runtime's encoder), framing of arbitrary payloads, random
//! networks and an f64 reference forward pass.

#![allow(dead_code)] // Not every test module uses every helper.

use tinyppo_runtime::format::{self, max_encoded_len};
use tinyppo_runtime::rng::{self, DefaultRng};
use tinyppo_runtime::{Activation, BlobSpec, LayerSpec, WeightsSpec};

// ---------------------------------------------------------------------------
// CRC-32C, bit by bit.

/// CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, init and final
/// xor 0xFFFFFFFF. Bitwise, so it shares no code (or table) with the `crc`
/// crate the runtime uses. Check value: `crc32c_ref(b"123456789") == 0xE3069283`.
pub fn crc32c_ref(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------------------
// Framing.

/// Frames `payload` as a v1 blob with a correct policy id and CRC.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    frame_with(payload, 1, crc32c_ref(payload))
}

/// Frames `payload` as a blob of `version` with a correct policy id and CRC.
pub fn frame_v(payload: &[u8], version: u16) -> Vec<u8> {
    frame_with(payload, version, crc32c_ref(payload))
}

/// Frames `payload` with any version and policy id; the length and the
/// trailer CRC are always correct, so parsing gets past the checksum.
pub fn frame_with(payload: &[u8], version: u16, policy_id: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(payload.len() + 18);
    b.extend_from_slice(b"TPPO");
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&policy_id.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    let crc = crc32c_ref(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The payload of a blob (no checks beyond the header's length field).
pub fn payload_of(blob: &[u8]) -> &[u8] {
    let n = u32::from_le_bytes(blob[10..14].try_into().unwrap()) as usize;
    &blob[14..14 + n]
}

// ---------------------------------------------------------------------------
// Postcard writer, from the spec.

/// Appends postcard wire values to a byte vector.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// Unsigned LEB128 varint (postcard's `u16` and `usize` lengths).
    pub fn varint(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return self;
            }
            self.0.push(byte | 0x80);
        }
    }
    /// A raw byte (postcard's `u8`).
    pub fn u8(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    /// Four bytes, little-endian (postcard's `f32`).
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A byte string: varint length, then the bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
}

/// f32 values as the LE bytes of a byte string.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// One layer record, as raw byte strings.
#[derive(Clone, Debug, PartialEq)]
pub struct RawLayer {
    pub weights: Vec<u8>,
    pub scales: Vec<u8>,
    pub bias: Vec<u8>,
}

/// Every payload field, unchecked: any value the wire types can carry, so
/// tests can write payloads the runtime must refuse.
#[derive(Clone, Debug, PartialEq)]
pub struct RawPayload {
    pub obs_dim: u64,
    pub act_dim: u64,
    pub hidden: Vec<u64>,
    pub activation: u8,
    pub encoding: u8,
    pub obs_mean: Vec<u8>,
    pub obs_inv_std: Vec<u8>,
    pub obs_clip: f32,
    pub action_low: Vec<u8>,
    pub action_high: Vec<u8>,
    pub log_std: Vec<u8>,
    pub layers: Vec<RawLayer>,
    /// The fields format v2 appends (`None`: a v1 payload).
    pub v2: Option<RawTail>,
}

/// The v2 fields after the layers, unchecked.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTail {
    /// `plant`, a raw byte.
    pub plant: u8,
    /// `safe_action`, a byte string of f32.
    pub safe_action: Vec<u8>,
    /// `extensions`: `(tag, body)` records.
    pub extensions: Vec<(u8, Vec<u8>)>,
}

impl RawTail {
    /// No plant named, this safe action, no extensions.
    pub fn unspecified(safe: &[f32]) -> RawTail {
        RawTail {
            plant: 0xFF,
            safe_action: f32_bytes(safe),
            extensions: vec![],
        }
    }
}

impl RawPayload {
    /// The payload bytes, field by field in the order of `docs/FORMAT.md`.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.varint(self.obs_dim).varint(self.act_dim);
        w.varint(self.hidden.len() as u64);
        for &h in &self.hidden {
            w.varint(h);
        }
        w.u8(self.activation).u8(self.encoding);
        w.bytes(&self.obs_mean)
            .bytes(&self.obs_inv_std)
            .f32(self.obs_clip);
        w.bytes(&self.action_low)
            .bytes(&self.action_high)
            .bytes(&self.log_std);
        w.varint(self.layers.len() as u64);
        for l in &self.layers {
            w.bytes(&l.weights).bytes(&l.scales).bytes(&l.bias);
        }
        if let Some(t) = &self.v2 {
            w.u8(t.plant).bytes(&t.safe_action);
            w.varint(t.extensions.len() as u64);
            for (tag, body) in &t.extensions {
                w.u8(*tag).bytes(body);
            }
        }
        w.0
    }
    /// The payload framed as a blob with a valid id and CRC: version 2 with
    /// the v2 fields, else version 1.
    pub fn blob(&self) -> Vec<u8> {
        frame_v(&self.encode(), if self.v2.is_some() { 2 } else { 1 })
    }
}

// ---------------------------------------------------------------------------
// Random numbers for tests (the runtime's own generator, so no extra deps).

/// A seeded test RNG with f64 helpers.
pub struct TestRng(pub DefaultRng);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng(rng::seeded(seed))
    }
    /// Uniform in [0, 1) with 48 random bits.
    pub fn f64(&mut self) -> f64 {
        let hi = rng::uniform01(&mut self.0) as f64;
        let lo = rng::uniform01(&mut self.0) as f64;
        hi + lo / 16_777_216.0
    }
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    /// Standard normal (f64 Box–Muller, independent of the runtime's f32 one).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.f64(); // (0, 1]
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    pub fn below(&mut self, n: usize) -> usize {
        ((self.f64() * n as f64) as usize).min(n - 1)
    }
}

// ---------------------------------------------------------------------------
// Networks.

/// A dense layer with f32 weights, row-major `rows × cols`.
#[derive(Clone, Debug)]
pub struct Dense {
    pub rows: usize,
    pub cols: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// The int8 form of a [`Dense`]: `w[r][c] ≈ s[r]·q[r][c]`.
#[derive(Clone, Debug)]
pub struct QDense {
    pub q: Vec<i8>,
    pub s: Vec<f32>,
}

/// The test quantizer (what an exporter does): per-row scale
/// `s_r = max_c |w_rc| / 127`, `q = round(w / s_r)` (half away from zero),
/// clamped to [−127, 127]. An all-zero row gets scale 1 and q = 0.
pub fn quantize(d: &Dense) -> QDense {
    let mut q = Vec::with_capacity(d.w.len());
    let mut s = Vec::with_capacity(d.rows);
    for row in d.w.chunks(d.cols) {
        let amax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        s.push(scale);
        q.extend(
            row.iter()
                .map(|&v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    QDense { q, s }
}

/// A whole policy as plain vectors.
#[derive(Clone, Debug)]
pub struct Net {
    pub obs_dim: usize,
    pub act_dim: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub obs_mean: Vec<f32>,
    pub obs_inv_std: Vec<f32>,
    pub obs_clip: f32,
    pub low: Vec<f32>,
    pub high: Vec<f32>,
    pub log_std: Vec<f32>,
    pub layers: Vec<Dense>,
}

impl Net {
    /// Random weights `N(0, gain²/fan_in)`, small biases, random
    /// normalization, bounds and log-std in `log_std_range`.
    pub fn random(
        rng: &mut TestRng,
        obs_dim: usize,
        act_dim: usize,
        hidden: &[usize],
        activation: Activation,
        log_std_range: (f64, f64),
    ) -> Net {
        let gain = match activation {
            Activation::Tanh => 1.5,
            Activation::Relu => 1.4,
        };
        let mut layers = Vec::new();
        let mut cols = obs_dim;
        for (i, &rows) in hidden.iter().chain([act_dim].iter()).enumerate() {
            let g = if i == hidden.len() { 1.0 } else { gain };
            let sd = g / (cols as f64).sqrt();
            let w = (0..rows * cols)
                .map(|_| (sd * rng.normal()) as f32)
                .collect();
            let b = (0..rows).map(|_| rng.uniform(-0.2, 0.2) as f32).collect();
            layers.push(Dense { rows, cols, w, b });
            cols = rows;
        }
        let low: Vec<f32> = (0..act_dim)
            .map(|_| rng.uniform(-3.0, -0.5) as f32)
            .collect();
        let high = (0..act_dim).map(|_| rng.uniform(0.5, 3.0) as f32).collect();
        Net {
            obs_dim,
            act_dim,
            hidden: hidden.to_vec(),
            activation,
            obs_mean: (0..obs_dim)
                .map(|_| rng.uniform(-1.0, 1.0) as f32)
                .collect(),
            obs_inv_std: (0..obs_dim).map(|_| rng.uniform(0.3, 3.0) as f32).collect(),
            obs_clip: 5.0,
            low,
            high,
            log_std: (0..act_dim)
                .map(|_| rng.uniform(log_std_range.0, log_std_range.1) as f32)
                .collect(),
            layers,
        }
    }

    pub fn quantized(&self) -> Vec<QDense> {
        self.layers.iter().map(quantize).collect()
    }

    fn encode_with(&self, layers: &[LayerSpec]) -> Vec<u8> {
        self.encode_spec(layers, tinyppo_runtime::plants::code::UNSPECIFIED, &[])
    }

    fn encode_spec(
        &self,
        layers: &[LayerSpec],
        plant: u8,
        extensions: &[tinyppo_runtime::Extension],
    ) -> Vec<u8> {
        let spec = BlobSpec {
            obs_dim: self.obs_dim,
            act_dim: self.act_dim,
            hidden: &self.hidden,
            activation: self.activation,
            obs_mean: &self.obs_mean,
            obs_inv_std: &self.obs_inv_std,
            obs_clip: self.obs_clip,
            action_low: &self.low,
            action_high: &self.high,
            log_std: &self.log_std,
            layers,
            plant,
            safe_action: &self.safe_action(),
            extensions,
        };
        let mut buf = vec![0u8; max_encoded_len(&spec)];
        let n = format::encode(&spec, &mut buf).expect("encode");
        buf.truncate(n);
        buf
    }

    /// The blob with f32 weights, by the runtime's encoder.
    pub fn encode_f32(&self) -> Vec<u8> {
        let specs: Vec<LayerSpec> = self
            .layers
            .iter()
            .map(|l| LayerSpec {
                weights: WeightsSpec::F32(&l.w),
                bias: &l.b,
            })
            .collect();
        self.encode_with(&specs)
    }

    /// The blob with int8 weights ([`quantize`]), by the runtime's encoder.
    pub fn encode_int8(&self) -> Vec<u8> {
        self.encode_int8_for(tinyppo_runtime::plants::code::UNSPECIFIED, &[])
    }

    /// [`encode_int8`](Self::encode_int8) naming `plant`, with extension
    /// records.
    pub fn encode_int8_for(&self, plant: u8, extensions: &[tinyppo_runtime::Extension]) -> Vec<u8> {
        self.encode_quantized(false, plant, extensions)
    }

    /// The same int8 weights as [`encode_int8`](Self::encode_int8), written
    /// as `Int8x4` (interleaved, aligned layers where the shape allows).
    pub fn encode_int8x4(&self) -> Vec<u8> {
        self.encode_quantized(true, tinyppo_runtime::plants::code::UNSPECIFIED, &[])
    }

    /// The [`quantize`]d weights as `Int8` or (`x4`) `Int8x4`.
    fn encode_quantized(
        &self,
        x4: bool,
        plant: u8,
        extensions: &[tinyppo_runtime::Extension],
    ) -> Vec<u8> {
        let q = self.quantized();
        let specs: Vec<LayerSpec> = self
            .layers
            .iter()
            .zip(&q)
            .map(|(l, q)| LayerSpec {
                weights: if x4 {
                    WeightsSpec::Int8x4 {
                        q: &q.q,
                        scales: &q.s,
                    }
                } else {
                    WeightsSpec::Int8 {
                        q: &q.q,
                        scales: &q.s,
                    }
                },
                bias: &l.b,
            })
            .collect();
        self.encode_spec(&specs, plant, extensions)
    }

    fn raw_common(&self, encoding: u8, layers: Vec<RawLayer>) -> RawPayload {
        RawPayload {
            obs_dim: self.obs_dim as u64,
            act_dim: self.act_dim as u64,
            hidden: self.hidden.iter().map(|&h| h as u64).collect(),
            activation: self.activation.code(),
            encoding,
            obs_mean: f32_bytes(&self.obs_mean),
            obs_inv_std: f32_bytes(&self.obs_inv_std),
            obs_clip: self.obs_clip,
            action_low: f32_bytes(&self.low),
            action_high: f32_bytes(&self.high),
            log_std: f32_bytes(&self.log_std),
            layers,
            v2: Some(RawTail::unspecified(&self.safe_action())),
        }
    }

    /// The safe action the test encoders write: the midpoint of the bounds
    /// (what a v1 blob means).
    pub fn safe_action(&self) -> Vec<f32> {
        self.low
            .iter()
            .zip(&self.high)
            .map(|(l, h)| 0.5 * l + 0.5 * h)
            .collect()
    }

    /// The f32 payload, by the test's own writer.
    pub fn raw_f32(&self) -> RawPayload {
        let layers = self
            .layers
            .iter()
            .map(|l| RawLayer {
                weights: f32_bytes(&l.w),
                scales: vec![],
                bias: f32_bytes(&l.b),
            })
            .collect();
        self.raw_common(0, layers)
    }

    /// The int8 payload, by the test's own writer.
    pub fn raw_int8(&self) -> RawPayload {
        let layers = self
            .layers
            .iter()
            .zip(self.quantized())
            .map(|(l, q)| RawLayer {
                weights: q.q.iter().map(|&v| v as u8).collect(),
                scales: f32_bytes(&q.s),
                bias: f32_bytes(&l.b),
            })
            .collect();
        self.raw_common(1, layers)
    }

    /// `x̂ = clip((x − mean)·inv_std, −c, c)` in f64.
    pub fn normalize64(&self, obs: &[f32]) -> Vec<f64> {
        let c = self.obs_clip as f64;
        obs.iter()
            .zip(&self.obs_mean)
            .zip(&self.obs_inv_std)
            .map(|((&x, &m), &is)| ((x as f64 - m as f64) * is as f64).clamp(-c, c))
            .collect()
    }

    /// The f64 forward pass from a normalized observation; returns the
    /// activations of every layer (the last one is the mean `μ`).
    pub fn forward64(&self, xhat: &[f64]) -> Vec<Vec<f64>> {
        let mut outs = Vec::new();
        let mut x = xhat.to_vec();
        for (i, l) in self.layers.iter().enumerate() {
            let mut y: Vec<f64> =
                l.w.chunks(l.cols)
                    .zip(&l.b)
                    .map(|(row, &b)| {
                        row.iter().zip(&x).map(|(&w, &v)| w as f64 * v).sum::<f64>() + b as f64
                    })
                    .collect();
            if i + 1 < self.layers.len() {
                for v in &mut y {
                    *v = match self.activation {
                        Activation::Tanh => v.tanh(),
                        Activation::Relu => v.max(0.0),
                    };
                }
            }
            outs.push(y.clone());
            x = y;
        }
        outs
    }

    /// `μ(x)` in f64.
    pub fn mean64(&self, obs: &[f32]) -> Vec<f64> {
        self.forward64(&self.normalize64(obs)).pop().unwrap()
    }
}

/// `log π(u|x) = −Σ_j [ (u_j − μ_j)² / (2σ_j²) + ½ log(2π σ_j²) ]`, f64.
pub fn log_prob64(u: &[f32], mu: &[f64], log_std: &[f32]) -> f64 {
    u.iter()
        .zip(mu)
        .zip(log_std)
        .map(|((&u, &m), &l)| {
            let var = (2.0 * l as f64).exp();
            -((u as f64 - m).powi(2) / (2.0 * var) + 0.5 * (std::f64::consts::TAU * var).ln())
        })
        .sum()
}

/// `H = Σ_j (log σ_j + ½ (1 + log 2π))`, f64.
pub fn entropy64(log_std: &[f32]) -> f64 {
    log_std
        .iter()
        .map(|&l| l as f64 + 0.5 * (1.0 + std::f64::consts::TAU.ln()))
        .sum()
}

/// Random observation, `N(0, scale²)` per element.
pub fn random_obs<const N: usize>(rng: &mut TestRng, scale: f64) -> [f32; N] {
    std::array::from_fn(|_| (scale * rng.normal()) as f32)
}
