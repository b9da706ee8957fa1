//! Policy blob, formats v1 and v2: framing, checked parsing and encoding.
//!
//! The byte-level specification is `docs/FORMAT.md`; this module is its
//! implementation. In short:
//!
//! ```text
//! offset  size  field
//! 0       4     magic  b"TPPO"
//! 4       2     format version, u16 LE (2; 1 is still read)
//! 6       4     policy id, u32 LE (= CRC-32C of the payload)
//! 10      4     payload length n, u32 LE
//! 14      n     payload (postcard, schema below)
//! 14+n    4     CRC-32C (Castagnoli) of bytes [0, 14+n), u32 LE
//! ```
//!
//! The v2 payload is the v1 payload followed by the plant's code, its safe
//! action and a list of tagged extension records (for later additions that
//! a reader must understand, tags `0x00–0x7F`, or may skip, `0x80–0xFF`).
//!
//! [`Blob::parse`] is the *checked* constructor: it verifies framing,
//! checksum, schema and every value, and borrows all arrays from the input
//! bytes (nothing is copied). [`encode`] writes a v2 blob into a caller
//! buffer and re-parses it, so it never emits a blob the runtime would
//! refuse.

use serde::{ser::SerializeSeq, Deserialize, Serialize, Serializer};

use crate::error::{Field, FormatError};

/// The four bytes every blob starts with.
pub const MAGIC: [u8; 4] = *b"TPPO";
/// The format version this runtime writes.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this runtime reads (v1: no plant code, the
/// safe action is the midpoint of the bounds).
pub const MIN_FORMAT_VERSION: u16 = 1;
/// Most extension records a blob may have (v2).
pub const MAX_EXTENSIONS: usize = 8;
/// Extension tags below this are *required*: a reader that does not know
/// one refuses the blob. Tags from here up are optional and skipped.
pub const OPTIONAL_EXTENSION_TAGS: u8 = 0x80;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 14;
/// Bytes after the payload (the CRC).
pub const TRAILER_LEN: usize = 4;
/// Most hidden layers a blob may have.
pub const MAX_HIDDEN_LAYERS: usize = 3;
/// Most layers (hidden + output).
pub const MAX_LAYERS: usize = MAX_HIDDEN_LAYERS + 1;
/// Widest layer, and largest observation or action dimension.
pub const MAX_WIDTH: usize = 256;
/// Largest magnitude of any weight, bias, mean, bound or scale. Keeps every
/// intermediate of a forward pass finite in f32 (see `docs/FORMAT.md`: the
/// worst case, relu with 3 hidden layers 256 wide, is 256⁴·V⁵ ≈ 4.3e34).
/// 1e6 was too large: 256⁴·1e30 ≈ 4.3e39 overflows f32.
pub const MAX_ABS_VALUE: f32 = 1.0e5;
/// Largest int8 row scale: `127·scale ≤ MAX_ABS_VALUE`, so a dequantized
/// weight obeys the same limit as an f32 one. Written as the division an
/// exporter computes (`max|w|/127`), so a row at the limit is accepted.
pub const MAX_INT8_SCALE: f32 = MAX_ABS_VALUE / 127.0;
/// Accepted range of `log_std`.
pub const LOG_STD_MIN: f32 = -20.0;
/// Accepted range of `log_std`.
pub const LOG_STD_MAX: f32 = 10.0;

/// CRC-32C (Castagnoli, iSCSI), as used by the blob and the log frames.
pub const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Hidden-layer nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `tanh`, code 0.
    Tanh,
    /// `max(0, x)`, code 1.
    Relu,
}

impl Activation {
    /// Wire code.
    pub const fn code(self) -> u8 {
        match self {
            Activation::Tanh => 0,
            Activation::Relu => 1,
        }
    }
    /// Lower-case name, as the CLI prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
        }
    }
}

/// How weight matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// IEEE-754 binary32, little-endian, code 0.
    F32,
    /// Symmetric int8 with one f32 scale per output row, code 1:
    /// `w[r][c] ≈ scale[r] · q[r][c]`, `q ∈ [−127, 127]`.
    Int8,
    /// int8 as code 1, code 2, with the weights of every layer whose rows
    /// are a multiple of 4 and columns a multiple of 8 ([`interleavable`])
    /// stored 4 rows at a time, 4 columns each, from a word-aligned offset
    /// of the blob (`docs/FORMAT.md`, "Interleaved int8"): the device's
    /// kernel then loads 16 weights with one `LDM`. The same integers, the
    /// same actions as code 1.
    Int8x4,
}

/// Whether an [`Encoding::Int8x4`] blob stores a `rows × cols` layer
/// interleaved (else row-major, as [`Encoding::Int8`]).
pub const fn interleavable(rows: usize, cols: usize) -> bool {
    rows % 4 == 0 && cols % 8 == 0 && rows > 0 && cols > 0
}

impl Encoding {
    /// Wire code.
    pub const fn code(self) -> u8 {
        match self {
            Encoding::F32 => 0,
            Encoding::Int8 => 1,
            Encoding::Int8x4 => 2,
        }
    }
    /// Lower-case name, as the CLI prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Encoding::F32 => "f32",
            Encoding::Int8 => "int8",
            Encoding::Int8x4 => "int8x4",
        }
    }
    /// Bytes per stored weight.
    pub const fn weight_size(self) -> usize {
        match self {
            Encoding::F32 => 4,
            Encoding::Int8 | Encoding::Int8x4 => 1,
        }
    }
    /// int8 weights with per-row scales (codes 1 and 2).
    pub const fn is_int8(self) -> bool {
        matches!(self, Encoding::Int8 | Encoding::Int8x4)
    }
}

// ---------------------------------------------------------------------------
// Wire schema (decoding side). Every array is a postcard byte string, so it
// is borrowed from the input whatever its alignment.

#[derive(Deserialize)]
struct RawLayer<'a> {
    weights: &'a [u8],
    scales: &'a [u8],
    bias: &'a [u8],
}

#[derive(Deserialize)]
struct RawExtension<'a> {
    tag: u8,
    body: &'a [u8],
}

/// The fields format v2 appends to the v1 payload.
#[derive(Deserialize)]
struct RawTailV2<'a> {
    plant: u8,
    safe_action: &'a [u8],
    #[serde(borrow)]
    extensions: Seq<RawExtension<'a>, MAX_EXTENSIONS>,
}

#[derive(Deserialize)]
struct RawPayload<'a> {
    obs_dim: u16,
    act_dim: u16,
    hidden: Seq<u16, MAX_LAYERS>,
    activation: u8,
    encoding: u8,
    obs_mean: &'a [u8],
    obs_inv_std: &'a [u8],
    obs_clip: f32,
    action_low: &'a [u8],
    action_high: &'a [u8],
    log_std: &'a [u8],
    #[serde(borrow)]
    layers: Seq<RawLayer<'a>, MAX_LAYERS>,
}

/// A postcard sequence decoded without allocation: the first `N` elements
/// are kept, the rest are decoded and dropped but counted in `len`, so
/// validation can report a count error (`BadLayerCount`,
/// `TooManyExtensions`) for them.
struct Seq<T, const N: usize> {
    items: [Option<T>; N],
    len: usize,
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Seq<T, N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(core::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for V<T, N> {
            type Value = Seq<T, N>;
            fn expecting(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Seq<T, N>, A::Error> {
                let mut s = Seq {
                    items: core::array::from_fn(|_| None),
                    len: 0,
                };
                // Each element consumes payload bytes, so this ends within
                // the payload length whatever count the varint announced.
                while let Some(v) = a.next_element()? {
                    if let Some(slot) = s.items.get_mut(s.len) {
                        *slot = Some(v);
                    }
                    s.len += 1;
                }
                Ok(s)
            }
        }
        d.deserialize_seq(V::<T, N>(core::marker::PhantomData))
    }
}

// ---------------------------------------------------------------------------
// Checked view.

/// One dense layer as stored in a blob: `y = W x + b`, `W` with `rows`
/// outputs and `cols` inputs, row-major unless `interleaved`. All slices
/// borrow the blob.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// Output units.
    pub rows: usize,
    /// Input units.
    pub cols: usize,
    /// `rows·cols` weights: f32 LE (4 bytes each) or i8 (1 byte each);
    /// row-major, or for an `interleaved` layer 4 rows at a time (see
    /// [`Layer::q`]), the alignment padding already skipped.
    pub weights: &'a [u8],
    /// The int8 weights are interleaved ([`Encoding::Int8x4`]): for each
    /// group `g` of 4 rows and each 4 columns `k`, the 4 rows' 4 bytes,
    /// i.e. `q[r][c]` at `(g·cols/4 + k)·16 + 4·(r mod 4) + c mod 4` with
    /// `g = r/4`, `k = c/4`.
    pub interleaved: bool,
    /// `rows` f32 LE scales for int8, empty for f32.
    pub scales: &'a [u8],
    /// `rows` f32 LE biases.
    pub bias: &'a [u8],
}

impl Layer<'_> {
    /// The int8 weight `q[r][c]` in either layout (0 outside the layer or
    /// for an f32 layer's bytes read as int8).
    pub fn q(&self, r: usize, c: usize) -> i8 {
        if r >= self.rows || c >= self.cols {
            return 0;
        }
        let at = if self.interleaved {
            ((r / 4) * (self.cols / 4) + c / 4) * 16 + 4 * (r % 4) + c % 4
        } else {
            r * self.cols + c
        };
        self.weights.get(at).map_or(0, |&b| b as i8)
    }
}

/// One extension record of a v2 blob: a tag and its body, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The record's tag (`0x00–0x7F` required, `0x80–0xFF` optional).
    pub tag: u8,
    /// Its body.
    pub body: &'a [u8],
}

/// A parsed, fully validated policy blob of any dimensions. All arrays are
/// borrowed from the input bytes.
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    /// Policy id: CRC-32C of the payload; tags device logs.
    pub policy_id: u32,
    /// Format version (1 or 2).
    pub version: u16,
    /// The code of the plant the policy was trained for
    /// ([`plants::code`](crate::plants::code)); `0xFF` if none is named
    /// (every v1 blob).
    pub plant: u8,
    /// Observation dimension.
    pub obs_dim: usize,
    /// Action dimension.
    pub act_dim: usize,
    hidden: [usize; MAX_HIDDEN_LAYERS],
    n_hidden: usize,
    /// Hidden-layer nonlinearity.
    pub activation: Activation,
    /// Weight encoding.
    pub encoding: Encoding,
    /// `obs_dim` f32 LE means.
    pub obs_mean: &'a [u8],
    /// `obs_dim` f32 LE inverse standard deviations.
    pub obs_inv_std: &'a [u8],
    /// Normalized observations are clipped to `[−obs_clip, obs_clip]`.
    pub obs_clip: f32,
    /// `act_dim` f32 LE lower action bounds.
    pub action_low: &'a [u8],
    /// `act_dim` f32 LE upper action bounds.
    pub action_high: &'a [u8],
    /// `act_dim` f32 LE log standard deviations.
    pub log_std: &'a [u8],
    layers: [Option<Layer<'a>>; MAX_LAYERS],
    /// `act_dim` f32 LE safe actions (v2); empty in a v1 blob, whose safe
    /// action is the midpoint of the bounds (see [`Blob::safe_action`]).
    pub safe_action_bytes: &'a [u8],
    extensions: [Option<Extension<'a>>; MAX_EXTENSIONS],
    /// Total blob length in bytes.
    pub len: usize,
}

/// Iterates little-endian f32 values stored in a byte string.
pub fn f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// The first `N` little-endian f32 values of `bytes`, zeros after its
/// end (for byte strings whose length `Blob::parse` checked).
pub(crate) fn f32_array<const N: usize>(bytes: &[u8]) -> [f32; N] {
    let mut out = [0.0; N];
    for (o, v) in out.iter_mut().zip(f32s(bytes)) {
        *o = v;
    }
    out
}

/// Element `j` of a little-endian f32 byte string, if it has one.
fn f32_at(bytes: &[u8], j: usize) -> Option<f32> {
    let b = bytes.get(4 * j..4 * j + 4)?;
    Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> Blob<'a> {
    /// Checks and parses a blob. Order of checks: length of the header,
    /// magic, version, announced length, CRC, policy id, payload schema,
    /// dimensions and byte lengths, values. Never panics, whatever the input.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let found = bytes.len();
        if found < 4 || bytes[..4] != MAGIC {
            // Magic first, when there are enough bytes to tell.
            if found >= 4 {
                return Err(FormatError::BadMagic);
            }
            return Err(FormatError::Truncated {
                needed: HEADER_LEN + TRAILER_LEN,
                found,
            });
        }
        if found < HEADER_LEN {
            return Err(FormatError::Truncated {
                needed: HEADER_LEN + TRAILER_LEN,
                found,
            });
        }
        let version = u16_at(bytes, 4);
        if !(MIN_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let policy_id = u32_at(bytes, 6);
        let payload_len = u32_at(bytes, 10) as usize;
        let expected = HEADER_LEN
            .saturating_add(payload_len)
            .saturating_add(TRAILER_LEN);
        if found < expected {
            return Err(FormatError::Truncated {
                needed: expected,
                found,
            });
        }
        if found > expected {
            return Err(FormatError::TrailingBytes { expected, found });
        }
        let body_end = HEADER_LEN + payload_len;
        let stored = u32_at(bytes, body_end);
        let computed = CRC32C.checksum(&bytes[..body_end]);
        if stored != computed {
            return Err(FormatError::BadChecksum { stored, computed });
        }
        let payload = &bytes[HEADER_LEN..body_end];
        let id = CRC32C.checksum(payload);
        if id != policy_id {
            return Err(FormatError::PolicyIdMismatch {
                stored: policy_id,
                computed: id,
            });
        }
        let (raw, rest): (RawPayload<'a>, _) =
            postcard::take_from_bytes(payload).map_err(|_| FormatError::Malformed)?;
        let (tail, rest) = match version {
            1 => (None, rest),
            _ => {
                let (t, r): (RawTailV2<'a>, _) =
                    postcard::take_from_bytes(rest).map_err(|_| FormatError::Malformed)?;
                (Some(t), r)
            }
        };
        if !rest.is_empty() {
            return Err(FormatError::Malformed);
        }
        Self::validate(raw, tail, policy_id, version, bytes)
    }

    fn validate(
        raw: RawPayload<'a>,
        tail: Option<RawTailV2<'a>>,
        policy_id: u32,
        version: u16,
        bytes: &'a [u8],
    ) -> Result<Self, FormatError> {
        let len = bytes.len();
        let dim = |field, v: u16| {
            let v = v as usize;
            if v == 0 || v > MAX_WIDTH {
                Err(FormatError::BadWidth {
                    field,
                    found: v,
                    max: MAX_WIDTH,
                })
            } else {
                Ok(v)
            }
        };
        let obs_dim = dim(Field::ObsDim, raw.obs_dim)?;
        let act_dim = dim(Field::ActDim, raw.act_dim)?;
        let n_hidden = raw.hidden.len;
        if n_hidden == 0 || n_hidden > MAX_HIDDEN_LAYERS {
            return Err(FormatError::BadLayerCount { found: n_hidden });
        }
        let mut hidden = [0usize; MAX_HIDDEN_LAYERS];
        for (i, (h, w)) in hidden.iter_mut().zip(raw.hidden.items.iter()).enumerate() {
            if let Some(w) = w {
                *h = dim(Field::HiddenWidth(i as u8), *w)?;
            }
        }
        let activation = match raw.activation {
            0 => Activation::Tanh,
            1 => Activation::Relu,
            found => return Err(FormatError::UnknownActivation { found }),
        };
        let encoding = match raw.encoding {
            0 => Encoding::F32,
            1 => Encoding::Int8,
            2 => Encoding::Int8x4,
            found => return Err(FormatError::UnknownEncoding { found }),
        };
        if raw.layers.len != n_hidden + 1 {
            return Err(FormatError::BadLayerCount {
                found: raw.layers.len,
            });
        }

        check_f32s(Field::ObsMean, raw.obs_mean, obs_dim, |_| true)?;
        check_f32s(Field::ObsInvStd, raw.obs_inv_std, obs_dim, |_| true)?;
        scales_positive(Field::ObsInvStd, raw.obs_inv_std)?;
        check_value(Field::ObsClip, 0, raw.obs_clip)?;
        if raw.obs_clip.partial_cmp(&0.0) != Some(core::cmp::Ordering::Greater) {
            return Err(FormatError::BadScale {
                field: Field::ObsClip,
                index: 0,
            });
        }
        check_f32s(Field::ActionLow, raw.action_low, act_dim, |_| true)?;
        check_f32s(Field::ActionHigh, raw.action_high, act_dim, |_| true)?;
        for (dim, (lo, hi)) in f32s(raw.action_low).zip(f32s(raw.action_high)).enumerate() {
            if lo >= hi {
                return Err(FormatError::BadBounds { dim });
            }
        }
        check_f32s(Field::LogStd, raw.log_std, act_dim, |v| {
            (LOG_STD_MIN..=LOG_STD_MAX).contains(&v)
        })?;

        let mut layers = [None; MAX_LAYERS];
        let mut cols = obs_dim;
        for (i, (slot, raw_layer)) in layers.iter_mut().zip(raw.layers.items.iter()).enumerate() {
            let Some(l) = raw_layer else { break };
            let rows = if i < n_hidden { hidden[i] } else { act_dim };
            let li = i as u8;
            let interleaved = encoding == Encoding::Int8x4 && interleavable(rows, cols);
            // An interleaved layer's weights start at a multiple of 4 from
            // the blob's first byte: 0–3 zero bytes come first.
            let pad = if interleaved {
                let offset = (l.weights.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
                (4 - offset % 4) % 4
            } else {
                0
            };
            let want_w = pad + rows * cols * encoding.weight_size();
            if l.weights.len() != want_w {
                return Err(FormatError::LengthMismatch {
                    field: Field::Weights(li),
                    expected: want_w,
                    found: l.weights.len(),
                });
            }
            match encoding {
                Encoding::F32 => {
                    check_f32s(Field::Weights(li), l.weights, rows * cols, |_| true)?;
                    if !l.scales.is_empty() {
                        return Err(FormatError::LengthMismatch {
                            field: Field::Scales(li),
                            expected: 0,
                            found: l.scales.len(),
                        });
                    }
                }
                Encoding::Int8 | Encoding::Int8x4 => {
                    check_f32s(Field::Scales(li), l.scales, rows, |v| v <= MAX_INT8_SCALE)?;
                    scales_positive(Field::Scales(li), l.scales)?;
                    if let Some(index) = l.weights[..pad].iter().position(|&b| b != 0) {
                        return Err(FormatError::OutOfRange {
                            field: Field::Weights(li),
                            index,
                        });
                    }
                    // -128 is outside the symmetric range and would make
                    // the quantization error bound asymmetric.
                    if let Some(index) = l.weights.iter().position(|&b| b as i8 == i8::MIN) {
                        return Err(FormatError::OutOfRange {
                            field: Field::Weights(li),
                            index,
                        });
                    }
                }
            }
            check_f32s(Field::Bias(li), l.bias, rows, |_| true)?;
            *slot = Some(Layer {
                rows,
                cols,
                weights: &l.weights[pad..],
                interleaved,
                scales: l.scales,
                bias: l.bias,
            });
            cols = rows;
        }

        // Format v2: the plant, its safe action, the extension records.
        let mut plant = crate::plants::code::UNSPECIFIED;
        let mut safe_action_bytes: &[u8] = &[];
        let mut extensions = [None; MAX_EXTENSIONS];
        if let Some(t) = tail {
            plant = t.plant;
            check_f32s(Field::SafeAction, t.safe_action, act_dim, |_| true)?;
            let bounds = f32s(raw.action_low).zip(f32s(raw.action_high));
            for (index, (s, (lo, hi))) in f32s(t.safe_action).zip(bounds).enumerate() {
                if !(lo <= s && s <= hi) {
                    return Err(FormatError::OutOfRange {
                        field: Field::SafeAction,
                        index,
                    });
                }
            }
            safe_action_bytes = t.safe_action;
            if t.extensions.len > MAX_EXTENSIONS {
                return Err(FormatError::TooManyExtensions {
                    found: t.extensions.len,
                });
            }
            let mut prev: Option<u8> = None;
            for (slot, e) in extensions
                .iter_mut()
                .zip(t.extensions.items.iter().flatten())
            {
                if prev.is_some_and(|p| e.tag <= p) {
                    return Err(FormatError::ExtensionOrder { tag: e.tag });
                }
                prev = Some(e.tag);
                // The required records this runtime knows; any other
                // required tag is refused.
                match e.tag {
                    crate::history::TAG => {
                        let rows = layers[0].map_or(0, |l| l.rows);
                        crate::history::parse_body(e.body, obs_dim, act_dim, rows)?;
                    }
                    crate::safety::TAG => {
                        crate::safety::parse_body(
                            e.body,
                            obs_dim,
                            act_dim,
                            raw.action_low,
                            raw.action_high,
                            t.safe_action,
                        )?;
                    }
                    tag if tag < OPTIONAL_EXTENSION_TAGS => {
                        return Err(FormatError::UnknownExtension { tag })
                    }
                    // Optional records this runtime knows are checked too.
                    crate::realism::TAG => {
                        crate::realism::parse_body(e.body, obs_dim, act_dim)
                            .map_err(FormatError::Realism)?;
                    }
                    crate::selftest::TAG => {
                        crate::selftest::parse_body(e.body, obs_dim, act_dim)?;
                    }
                    _ => {}
                }
                *slot = Some(Extension {
                    tag: e.tag,
                    body: e.body,
                });
            }
        }

        Ok(Blob {
            policy_id,
            version,
            plant,
            obs_dim,
            act_dim,
            hidden,
            n_hidden,
            activation,
            encoding,
            obs_mean: raw.obs_mean,
            obs_inv_std: raw.obs_inv_std,
            obs_clip: raw.obs_clip,
            action_low: raw.action_low,
            action_high: raw.action_high,
            log_std: raw.log_std,
            layers,
            safe_action_bytes,
            extensions,
            len,
        })
    }

    /// The code of the plant the policy was trained for, if the blob names
    /// one (v1 blobs do not).
    pub fn plant_code(&self) -> Option<u8> {
        (self.plant != crate::plants::code::UNSPECIFIED).then_some(self.plant)
    }

    /// The action to apply when the policy cannot act: the plant's safe
    /// action as exported (v2), or the midpoint `½low + ½high` of the bounds
    /// (v1).
    pub fn safe_action(&self) -> impl Iterator<Item = f32> + 'a {
        let (low, high, stored) = (self.action_low, self.action_high, self.safe_action_bytes);
        (0..self.act_dim).map(move |j| match f32_at(stored, j) {
            Some(s) => s,
            None => 0.5 * f32_at(low, j).unwrap_or(0.0) + 0.5 * f32_at(high, j).unwrap_or(0.0),
        })
    }

    /// The simulation realism the policy was trained with (the optional
    /// record with tag [`realism::TAG`](crate::realism::TAG), checked by
    /// [`Blob::parse`]), if the blob has one.
    pub fn realism(&self) -> Option<crate::realism::RealismView<'a>> {
        let e = self.extensions().find(|e| e.tag == crate::realism::TAG)?;
        crate::realism::parse_body(e.body, self.obs_dim, self.act_dim).ok()
    }

    /// The action-history record (required tag
    /// [`history::TAG`](crate::history::TAG), checked by [`Blob::parse`]),
    /// if the policy takes past actions as inputs.
    pub fn history(&self) -> Option<crate::history::HistoryView<'a>> {
        let e = self.extensions().find(|e| e.tag == crate::history::TAG)?;
        let rows = self.layers[0].map_or(0, |l| l.rows);
        crate::history::parse_body(e.body, self.obs_dim, self.act_dim, rows).ok()
    }

    /// The safety limits (the required record with tag
    /// [`safety::TAG`](crate::safety::TAG), checked by [`Blob::parse`]),
    /// if the blob has them.
    pub fn safety(&self) -> Option<crate::safety::SafetyView<'a>> {
        let e = self.extensions().find(|e| e.tag == crate::safety::TAG)?;
        crate::safety::parse_body(
            e.body,
            self.obs_dim,
            self.act_dim,
            self.action_low,
            self.action_high,
            self.safe_action_bytes,
        )
        .ok()
    }

    /// The boot self-test vectors (the optional record with tag
    /// [`selftest::TAG`](crate::selftest::TAG), checked by
    /// [`Blob::parse`]), if the blob has them.
    pub fn self_test(&self) -> Option<crate::selftest::SelfTestView<'a>> {
        let e = self.extensions().find(|e| e.tag == crate::selftest::TAG)?;
        crate::selftest::parse_body(e.body, self.obs_dim, self.act_dim).ok()
    }

    /// The extension records, in tag order: the required ones this runtime
    /// knows (see [`Blob::history`]), the optional ones it knows (see
    /// [`Blob::realism`]) and the optional ones it skipped.
    pub fn extensions(&self) -> impl Iterator<Item = Extension<'a>> + '_ {
        self.extensions.iter().flatten().copied()
    }

    /// Hidden layer widths, first to last.
    pub fn hidden(&self) -> &[usize] {
        &self.hidden[..self.n_hidden]
    }

    /// The layers, first hidden layer to output layer.
    pub fn layers(&self) -> impl Iterator<Item = Layer<'a>> + '_ {
        self.layers.iter().flatten().copied()
    }

    /// Widest hidden layer.
    pub fn max_hidden(&self) -> usize {
        self.hidden().iter().copied().max().unwrap_or(0)
    }
}

fn check_value(field: Field, index: usize, v: f32) -> Result<(), FormatError> {
    if !v.is_finite() {
        return Err(FormatError::NonFinite { field, index });
    }
    if !(-MAX_ABS_VALUE..=MAX_ABS_VALUE).contains(&v) {
        return Err(FormatError::OutOfRange { field, index });
    }
    Ok(())
}

pub(crate) fn check_f32s(
    field: Field,
    bytes: &[u8],
    count: usize,
    in_range: impl Fn(f32) -> bool,
) -> Result<(), FormatError> {
    if bytes.len() != count * 4 {
        return Err(FormatError::LengthMismatch {
            field,
            expected: count * 4,
            found: bytes.len(),
        });
    }
    for (index, v) in f32s(bytes).enumerate() {
        check_value(field, index, v)?;
        if !in_range(v) {
            return Err(FormatError::OutOfRange { field, index });
        }
    }
    Ok(())
}

pub(crate) fn scales_positive(field: Field, bytes: &[u8]) -> Result<(), FormatError> {
    match f32s(bytes).position(|v| v <= 0.0) {
        Some(index) => Err(FormatError::BadScale { field, index }),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Encoding side.

/// Weights of one layer to encode.
#[derive(Debug, Clone, Copy)]
pub enum WeightsSpec<'a> {
    /// Row-major f32 weights.
    F32(&'a [f32]),
    /// Row-major int8 weights and one scale per row.
    Int8 {
        /// Quantized weights, row-major, in [−127, 127].
        q: &'a [i8],
        /// One positive scale per output row.
        scales: &'a [f32],
    },
    /// The same, written as [`Encoding::Int8x4`]: interleaved and aligned
    /// where the layer's shape allows ([`interleavable`]), row-major
    /// elsewhere. Given row-major; [`encode`] lays it out.
    Int8x4 {
        /// Quantized weights, row-major, in [−127, 127].
        q: &'a [i8],
        /// One positive scale per output row.
        scales: &'a [f32],
    },
}

/// One layer to encode. Its shape follows from the [`BlobSpec`] dimensions.
#[derive(Debug, Clone, Copy)]
pub struct LayerSpec<'a> {
    /// The weights.
    pub weights: WeightsSpec<'a>,
    /// One bias per output row.
    pub bias: &'a [f32],
}

/// Everything a v2 blob holds, as plain slices, for [`encode`].
#[derive(Debug, Clone, Copy)]
pub struct BlobSpec<'a> {
    /// Observation dimension.
    pub obs_dim: usize,
    /// Action dimension.
    pub act_dim: usize,
    /// Hidden layer widths (1–3 entries).
    pub hidden: &'a [usize],
    /// Hidden-layer nonlinearity.
    pub activation: Activation,
    /// Observation means.
    pub obs_mean: &'a [f32],
    /// Observation inverse standard deviations.
    pub obs_inv_std: &'a [f32],
    /// Normalized-observation clip range.
    pub obs_clip: f32,
    /// Lower action bounds.
    pub action_low: &'a [f32],
    /// Upper action bounds.
    pub action_high: &'a [f32],
    /// Log standard deviations of the Gaussian.
    pub log_std: &'a [f32],
    /// Layers, first hidden to output; all with the same encoding.
    pub layers: &'a [LayerSpec<'a>],
    /// Code of the plant the policy is for ([`crate::plants::code`];
    /// `0xFF` for none).
    pub plant: u8,
    /// The plant's safe action, within the bounds.
    pub safe_action: &'a [f32],
    /// Extension records, in increasing tag order (format v2).
    pub extensions: &'a [Extension<'a>],
}

/// Why [`encode`] refused to write a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// Layers mix f32 and int8 encodings, or there are no layers.
    MixedEncoding,
    /// A dimension does not fit in the format (u16).
    TooLarge,
    /// The spec would produce a blob the runtime refuses; the error says why.
    Invalid(FormatError),
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EncodeError::BufferTooSmall => f.write_str("output buffer too small"),
            EncodeError::MixedEncoding => {
                f.write_str("layers must all be f32 or all int8, and there must be at least one")
            }
            EncodeError::TooLarge => f.write_str("a dimension does not fit in 16 bits"),
            EncodeError::Invalid(e) => write!(f, "invalid policy: {e}"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Serializes a slice of f32 as a postcard byte string (varint length in
/// bytes, then the LE bytes), the same wire form `&[u8]` decodes from.
pub(crate) struct F32Bytes<'a>(pub(crate) &'a [f32]);
impl Serialize for F32Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len() * 4))?;
        for v in self.0 {
            for b in v.to_le_bytes() {
                seq.serialize_element(&b)?;
            }
        }
        seq.end()
    }
}
struct I8Bytes<'a>(&'a [i8]);
impl Serialize for I8Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for v in self.0 {
            seq.serialize_element(&(*v as u8))?;
        }
        seq.end()
    }
}
struct Widths<'a>(&'a [usize]);
impl Serialize for Widths<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for &w in self.0 {
            seq.serialize_element(&u16::try_from(w).unwrap_or(u16::MAX))?;
        }
        seq.end()
    }
}
/// The layers, with the alignment padding of each interleaved layer
/// (found by [`encode`]).
struct Layers<'a> {
    layers: &'a [LayerSpec<'a>],
    /// Shapes `(rows, cols)` of the layers, in order.
    shapes: [(usize, usize); MAX_LAYERS],
    pads: [usize; MAX_LAYERS],
}
impl Serialize for Layers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.layers.len()))?;
        for (i, l) in self.layers.iter().enumerate() {
            let (rows, cols) = self.shapes.get(i).copied().unwrap_or((0, 0));
            let pad = self.pads.get(i).copied().unwrap_or(0);
            let (weights, scales) = match l.weights {
                WeightsSpec::F32(w) => (WeightBytes::F32(F32Bytes(w)), F32Bytes(&[])),
                WeightsSpec::Int8 { q, scales } => (WeightBytes::I8(I8Bytes(q)), F32Bytes(scales)),
                WeightsSpec::Int8x4 { q, scales } if interleavable(rows, cols) => {
                    (WeightBytes::I8x4 { q, rows, cols, pad }, F32Bytes(scales))
                }
                WeightsSpec::Int8x4 { q, scales } => {
                    (WeightBytes::I8(I8Bytes(q)), F32Bytes(scales))
                }
            };
            seq.serialize_element(&(weights, scales, F32Bytes(l.bias)))?;
        }
        seq.end()
    }
}

/// Any weight layout; all serialize as a plain byte string.
enum WeightBytes<'a> {
    F32(F32Bytes<'a>),
    I8(I8Bytes<'a>),
    /// `pad` zero bytes, then row-major `q` interleaved (see
    /// [`Layer::q`]).
    I8x4 {
        q: &'a [i8],
        rows: usize,
        cols: usize,
        pad: usize,
    },
}
impl Serialize for WeightBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            WeightBytes::F32(ref w) => w.serialize(s),
            WeightBytes::I8(ref w) => w.serialize(s),
            WeightBytes::I8x4 { q, rows, cols, pad } => {
                let mut seq = s.serialize_seq(Some(pad + rows * cols))?;
                for _ in 0..pad {
                    seq.serialize_element(&0u8)?;
                }
                for g in 0..rows / 4 {
                    for k in 0..cols / 4 {
                        for j in 0..4 {
                            for t in 0..4 {
                                let at = (4 * g + j) * cols + 4 * k + t;
                                let v = q.get(at).copied().unwrap_or(0);
                                seq.serialize_element(&(v as u8))?;
                            }
                        }
                    }
                }
                seq.end()
            }
        }
    }
}

#[derive(Serialize)]
struct PayloadOut<'a> {
    obs_dim: u16,
    act_dim: u16,
    hidden: Widths<'a>,
    activation: u8,
    encoding: u8,
    obs_mean: F32Bytes<'a>,
    obs_inv_std: F32Bytes<'a>,
    obs_clip: f32,
    action_low: F32Bytes<'a>,
    action_high: F32Bytes<'a>,
    log_std: F32Bytes<'a>,
    layers: Layers<'a>,
    plant: u8,
    safe_action: F32Bytes<'a>,
    extensions: Exts<'a>,
}

struct Exts<'a>(&'a [Extension<'a>]);
impl Serialize for Exts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            seq.serialize_element(&(e.tag, e.body))?;
        }
        seq.end()
    }
}

/// An upper bound on the encoded size of `spec`, for sizing the buffer.
pub fn max_encoded_len(spec: &BlobSpec) -> usize {
    let varint = 5;
    let floats = |n: usize| varint + 4 * n;
    let mut n = HEADER_LEN + TRAILER_LEN + 2 * 3 + varint * (1 + spec.hidden.len()) + 2;
    n += 2 * floats(spec.obs_dim) + 4 + 3 * floats(spec.act_dim) + varint;
    for l in spec.layers {
        n += match l.weights {
            WeightsSpec::F32(w) => floats(w.len()) + varint,
            WeightsSpec::Int8 { q, scales } => varint + q.len() + floats(scales.len()),
            // Up to 3 bytes of alignment padding.
            WeightsSpec::Int8x4 { q, scales } => varint + 3 + q.len() + floats(scales.len()),
        };
        n += floats(l.bias.len());
    }
    n += 1 + floats(spec.safe_action.len()) + varint;
    for e in spec.extensions {
        n += 1 + varint + e.body.len();
    }
    n
}

/// Writes `spec` as a v2 blob into `out` and returns its length. The result
/// is re-parsed with [`Blob::parse`] before returning, so a spec the runtime
/// would refuse (wrong lengths, NaN, zero scale…) is an error here too.
pub fn encode(spec: &BlobSpec, out: &mut [u8]) -> Result<usize, EncodeError> {
    let encoding = match spec.layers.first().map(|l| l.weights) {
        Some(WeightsSpec::F32(_)) => Encoding::F32,
        Some(WeightsSpec::Int8 { .. }) => Encoding::Int8,
        Some(WeightsSpec::Int8x4 { .. }) => Encoding::Int8x4,
        None => return Err(EncodeError::MixedEncoding),
    };
    let same = spec.layers.iter().all(|l| {
        matches!(
            (encoding, l.weights),
            (Encoding::F32, WeightsSpec::F32(_))
                | (Encoding::Int8, WeightsSpec::Int8 { .. })
                | (Encoding::Int8x4, WeightsSpec::Int8x4 { .. })
        )
    });
    if !same {
        return Err(EncodeError::MixedEncoding);
    }
    if spec.hidden.iter().any(|&w| w > u16::MAX as usize) {
        return Err(EncodeError::TooLarge);
    }
    let mut shapes = [(0usize, 0usize); MAX_LAYERS];
    let mut cols = spec.obs_dim;
    for (i, shape) in shapes.iter_mut().enumerate().take(spec.layers.len()) {
        let rows = spec.hidden.get(i).copied().unwrap_or(spec.act_dim);
        *shape = (rows, cols);
        cols = rows;
    }
    let mut pads = [0usize; MAX_LAYERS];
    // Each pass writes the blob with the current padding, reads back where
    // every interleaved layer's weights start, and pads them to a multiple
    // of 4; a pad only moves the layers after it, so this settles within
    // a pass per layer.
    let mut len = 0;
    for _ in 0..=2 * MAX_LAYERS + 1 {
        len = write_blob(spec, encoding, shapes, pads, out)?;
        let want = interleaved_pads(&out[..len], encoding, shapes);
        if want == pads {
            break;
        }
        pads = want;
    }
    Blob::parse(&out[..len]).map_err(EncodeError::Invalid)?;
    Ok(len)
}

/// One pass of [`encode`]: the blob with the given layer paddings.
fn write_blob(
    spec: &BlobSpec,
    encoding: Encoding,
    shapes: [(usize, usize); MAX_LAYERS],
    pads: [usize; MAX_LAYERS],
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    let to16 = |v: usize| u16::try_from(v).map_err(|_| EncodeError::TooLarge);
    let payload = PayloadOut {
        obs_dim: to16(spec.obs_dim)?,
        act_dim: to16(spec.act_dim)?,
        hidden: Widths(spec.hidden),
        activation: spec.activation.code(),
        encoding: encoding.code(),
        obs_mean: F32Bytes(spec.obs_mean),
        obs_inv_std: F32Bytes(spec.obs_inv_std),
        obs_clip: spec.obs_clip,
        action_low: F32Bytes(spec.action_low),
        action_high: F32Bytes(spec.action_high),
        log_std: F32Bytes(spec.log_std),
        layers: Layers {
            layers: spec.layers,
            shapes,
            pads,
        },
        plant: spec.plant,
        safe_action: F32Bytes(spec.safe_action),
        extensions: Exts(spec.extensions),
    };
    if out.len() < HEADER_LEN + TRAILER_LEN {
        return Err(EncodeError::BufferTooSmall);
    }
    let avail = out.len() - TRAILER_LEN;
    let n = postcard::to_slice(&payload, &mut out[HEADER_LEN..avail])
        .map_err(|_| EncodeError::BufferTooSmall)?
        .len();
    let body_end = HEADER_LEN + n;
    let id = CRC32C.checksum(&out[HEADER_LEN..body_end]);
    out[..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[6..10].copy_from_slice(&id.to_le_bytes());
    out[10..14].copy_from_slice(&(n as u32).to_le_bytes());
    let crc = CRC32C.checksum(&out[..body_end]);
    out[body_end..body_end + TRAILER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(body_end + TRAILER_LEN)
}

/// The paddings that align the interleaved layers of `blob`: for each, the
/// zero bytes that bring its weights from where its byte string starts to
/// a multiple of 4.
fn interleaved_pads(
    blob: &[u8],
    encoding: Encoding,
    shapes: [(usize, usize); MAX_LAYERS],
) -> [usize; MAX_LAYERS] {
    let mut want = [0usize; MAX_LAYERS];
    if encoding != Encoding::Int8x4 || blob.len() < HEADER_LEN {
        return want;
    }
    let Ok((raw, _)) = postcard::take_from_bytes::<RawPayload>(&blob[HEADER_LEN..]) else {
        return want;
    };
    for (i, l) in raw.layers.items.iter().enumerate() {
        let (Some(l), Some(&(rows, cols))) = (l, shapes.get(i)) else {
            continue;
        };
        if interleavable(rows, cols) {
            // Where the byte string's content (padding first) starts. Its
            // length `pad + rows·cols` is a multiple of 32 plus at most 3,
            // so the padding never changes its varint's width.
            let start = (l.weights.as_ptr() as usize) - (blob.as_ptr() as usize);
            want[i] = (4 - start % 4) % 4;
        }
    }
    want
}

/// A parsed blob copied into owned arrays (feature `alloc`, host tools
/// only), to write it again: for another plant, or int8 weights in the
/// other layout ([`Encoding::Int8`] ⇄ [`Encoding::Int8x4`]). The weights
/// are kept row-major whatever the blob's layout ([`Layer::q`]), so the
/// re-encoded blob acts exactly like the original.
#[cfg(feature = "alloc")]
pub mod owned {
    use alloc::vec::Vec;

    use super::{encode, f32s, max_encoded_len, Blob, BlobSpec, EncodeError, Encoding};
    use super::{Activation, Extension, LayerSpec, WeightsSpec, MAX_HIDDEN_LAYERS};

    /// One layer: f32 weights, or int8 `q` and scales; row-major.
    #[derive(Debug, Clone, PartialEq)]
    pub struct OwnedLayer {
        /// f32 weights (empty for int8).
        pub w: Vec<f32>,
        /// int8 weights (empty for f32).
        pub q: Vec<i8>,
        /// int8 per-row scales (empty for f32).
        pub scales: Vec<f32>,
        /// Biases.
        pub bias: Vec<f32>,
    }

    /// Everything of a blob but its plant, safe action and records.
    #[derive(Debug, Clone, PartialEq)]
    pub struct OwnedBlob {
        /// The blob's encoding.
        pub encoding: Encoding,
        /// Observation and action dimensions.
        pub obs_dim: usize,
        /// Action dimension.
        pub act_dim: usize,
        hidden: [usize; MAX_HIDDEN_LAYERS],
        n_hidden: usize,
        /// Hidden-layer nonlinearity.
        pub activation: Activation,
        /// Observation normalization.
        pub obs_mean: Vec<f32>,
        /// Observation inverse standard deviations.
        pub obs_inv_std: Vec<f32>,
        /// Normalized-observation clip range.
        pub obs_clip: f32,
        /// Action bounds.
        pub action_low: Vec<f32>,
        /// Upper action bounds.
        pub action_high: Vec<f32>,
        /// Log standard deviations.
        pub log_std: Vec<f32>,
        /// The layers, first hidden to output.
        pub layers: Vec<OwnedLayer>,
    }

    impl OwnedBlob {
        /// Copies `b`.
        pub fn of(b: &Blob<'_>) -> OwnedBlob {
            let f = |v: &[u8]| f32s(v).collect::<Vec<f32>>();
            let layers = b
                .layers()
                .map(|l| match b.encoding {
                    Encoding::F32 => OwnedLayer {
                        w: f(l.weights),
                        q: Vec::new(),
                        scales: Vec::new(),
                        bias: f(l.bias),
                    },
                    Encoding::Int8 | Encoding::Int8x4 => OwnedLayer {
                        w: Vec::new(),
                        q: (0..l.rows)
                            .flat_map(|r| (0..l.cols).map(move |c| l.q(r, c)))
                            .collect(),
                        scales: f(l.scales),
                        bias: f(l.bias),
                    },
                })
                .collect();
            let mut hidden = [0; MAX_HIDDEN_LAYERS];
            hidden[..b.hidden().len()].copy_from_slice(b.hidden());
            OwnedBlob {
                encoding: b.encoding,
                obs_dim: b.obs_dim,
                act_dim: b.act_dim,
                hidden,
                n_hidden: b.hidden().len(),
                activation: b.activation,
                obs_mean: f(b.obs_mean),
                obs_inv_std: f(b.obs_inv_std),
                obs_clip: b.obs_clip,
                action_low: f(b.action_low),
                action_high: f(b.action_high),
                log_std: f(b.log_std),
                layers,
            }
        }

        /// The policy as a v2 blob in `encoding` (the blob's own, or the
        /// other int8 layout), naming `plant` with its `safe_action` and
        /// carrying `extensions`. An f32 policy asked as int8, or an int8
        /// one as f32, is [`EncodeError::MixedEncoding`] (that would need
        /// quantizing, or lose nothing but gain nothing).
        pub fn encode(
            &self,
            encoding: Encoding,
            plant: u8,
            safe_action: &[f32],
            extensions: &[Extension<'_>],
        ) -> Result<Vec<u8>, EncodeError> {
            if (encoding == Encoding::F32) != (self.encoding == Encoding::F32) {
                return Err(EncodeError::MixedEncoding);
            }
            let layers: Vec<LayerSpec> = self
                .layers
                .iter()
                .map(|l| LayerSpec {
                    weights: match encoding {
                        Encoding::F32 => WeightsSpec::F32(&l.w),
                        Encoding::Int8 => WeightsSpec::Int8 {
                            q: &l.q,
                            scales: &l.scales,
                        },
                        Encoding::Int8x4 => WeightsSpec::Int8x4 {
                            q: &l.q,
                            scales: &l.scales,
                        },
                    },
                    bias: &l.bias,
                })
                .collect();
            let spec = BlobSpec {
                obs_dim: self.obs_dim,
                act_dim: self.act_dim,
                hidden: &self.hidden[..self.n_hidden],
                activation: self.activation,
                obs_mean: &self.obs_mean,
                obs_inv_std: &self.obs_inv_std,
                obs_clip: self.obs_clip,
                action_low: &self.action_low,
                action_high: &self.action_high,
                log_std: &self.log_std,
                layers: &layers,
                plant,
                safe_action,
                extensions,
            };
            let mut buf = alloc::vec![0u8; max_encoded_len(&spec)];
            let n = encode(&spec, &mut buf)?;
            buf.truncate(n);
            Ok(buf)
        }
    }
}
