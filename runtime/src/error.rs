//! Errors of the runtime: one small `Copy` enum per phase.
//!
//! [`FormatError`] is what [`crate::Blob::parse`] and
//! [`crate::Policy::from_bytes`] return for a blob that must not be run;
//! [`ActError`] is what inference returns for an input it refuses.

use core::fmt;

/// A named part of the policy blob, used by [`FormatError`] to say *where*
/// a blob is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// `obs_dim` (payload field 1).
    ObsDim,
    /// `act_dim` (payload field 2).
    ActDim,
    /// The width of hidden layer `n` (payload field 3).
    HiddenWidth(u8),
    /// `obs_mean` (payload field 6).
    ObsMean,
    /// `obs_inv_std` (payload field 7).
    ObsInvStd,
    /// `obs_clip` (payload field 8).
    ObsClip,
    /// `action_low` (payload field 9).
    ActionLow,
    /// `action_high` (payload field 10).
    ActionHigh,
    /// `log_std` (payload field 11).
    LogStd,
    /// The weight matrix of layer `n` (0 = first hidden layer).
    Weights(u8),
    /// The per-row int8 scales of layer `n`.
    Scales(u8),
    /// The bias vector of layer `n`.
    Bias(u8),
    /// `safe_action` (payload field 14, format v2).
    SafeAction,
    /// `len` of the action-history record (extension 0x00).
    HistoryLen,
    /// `mean` of the action-history record.
    HistoryMean,
    /// `inv_std` of the action-history record.
    HistoryInvStd,
    /// `weights` of the action-history record.
    HistoryWeights,
    /// `action_low` of the safety record (extension 0x01).
    SafetyActionLow,
    /// `action_high` of the safety record.
    SafetyActionHigh,
    /// `max_delta` of the safety record.
    SafetyMaxDelta,
    /// `obs_low` of the safety record.
    SafetyObsLow,
    /// `obs_high` of the safety record.
    SafetyObsHigh,
    /// `count` of the self-test record (extension 0x81).
    SelfTestCount,
    /// `tolerance` of the self-test record.
    SelfTestTolerance,
    /// `obs` of the self-test record.
    SelfTestObs,
    /// `mean` of the self-test record.
    SelfTestMean,
}

impl Field {
    /// The field's number in a [`FormatError::code`]: the payload fields
    /// 1–14 by their number, the layers' as `0x20 + n` (weights),
    /// `0x30 + n` (scales), `0x40 + n` (bias) and `0x10 + n` (hidden
    /// width), the records' from `0x50` (`docs/FORMAT.md`, "Error codes").
    pub const fn code(self) -> u8 {
        match self {
            Field::ObsDim => 1,
            Field::ActDim => 2,
            Field::HiddenWidth(n) => 0x10 + (n & 0xF),
            Field::ObsMean => 6,
            Field::ObsInvStd => 7,
            Field::ObsClip => 8,
            Field::ActionLow => 9,
            Field::ActionHigh => 10,
            Field::LogStd => 11,
            Field::Weights(n) => 0x20 + (n & 0xF),
            Field::Scales(n) => 0x30 + (n & 0xF),
            Field::Bias(n) => 0x40 + (n & 0xF),
            Field::SafeAction => 14,
            Field::HistoryLen => 0x50,
            Field::HistoryMean => 0x51,
            Field::HistoryInvStd => 0x52,
            Field::HistoryWeights => 0x53,
            Field::SafetyActionLow => 0x58,
            Field::SafetyActionHigh => 0x59,
            Field::SafetyMaxDelta => 0x5A,
            Field::SafetyObsLow => 0x5B,
            Field::SafetyObsHigh => 0x5C,
            Field::SelfTestCount => 0x60,
            Field::SelfTestTolerance => 0x61,
            Field::SelfTestObs => 0x62,
            Field::SelfTestMean => 0x63,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::ObsDim => f.write_str("obs_dim"),
            Field::ActDim => f.write_str("act_dim"),
            Field::HiddenWidth(n) => write!(f, "hidden[{n}]"),
            Field::ObsMean => f.write_str("obs_mean"),
            Field::ObsInvStd => f.write_str("obs_inv_std"),
            Field::ObsClip => f.write_str("obs_clip"),
            Field::ActionLow => f.write_str("action_low"),
            Field::ActionHigh => f.write_str("action_high"),
            Field::LogStd => f.write_str("log_std"),
            Field::Weights(n) => write!(f, "layers[{n}].weights"),
            Field::Scales(n) => write!(f, "layers[{n}].scales"),
            Field::Bias(n) => write!(f, "layers[{n}].bias"),
            Field::SafeAction => f.write_str("safe_action"),
            Field::HistoryLen => f.write_str("history.len (extension 0x00)"),
            Field::HistoryMean => f.write_str("history.mean (extension 0x00)"),
            Field::HistoryInvStd => f.write_str("history.inv_std (extension 0x00)"),
            Field::HistoryWeights => f.write_str("history.weights (extension 0x00)"),
            Field::SafetyActionLow => {
                f.write_str("safety.action_low (extension 0x01; within action_low..safe_action)")
            }
            Field::SafetyActionHigh => {
                f.write_str("safety.action_high (extension 0x01; within safe_action..action_high)")
            }
            Field::SafetyMaxDelta => f.write_str("safety.max_delta (extension 0x01; >= 0)"),
            Field::SafetyObsLow => f.write_str("safety.obs_low (extension 0x01)"),
            Field::SafetyObsHigh => f.write_str("safety.obs_high (extension 0x01; > obs_low)"),
            Field::SelfTestCount => f.write_str("self_test.count (extension 0x81)"),
            Field::SelfTestTolerance => f.write_str("self_test.tolerance (extension 0x81)"),
            Field::SelfTestObs => f.write_str("self_test.obs (extension 0x81)"),
            Field::SelfTestMean => f.write_str("self_test.mean (extension 0x81)"),
        }
    }
}

/// Why a policy blob was rejected. Checks run in the order of the variants'
/// documentation in `docs/FORMAT.md` (framing, then checksum, then payload),
/// so a truncated blob reports [`FormatError::Truncated`], a corrupted one
/// [`FormatError::BadChecksum`], and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ends before the header, or before the length the header
    /// announces (plus the 4-byte CRC).
    Truncated {
        /// Bytes the blob needs.
        needed: usize,
        /// Bytes that were given.
        found: usize,
    },
    /// The first four bytes are not `b"TPPO"`.
    BadMagic,
    /// The format version is not one this runtime reads (it reads 1 and 2).
    UnsupportedVersion {
        /// The version found in the header.
        found: u16,
    },
    /// The input is longer than header + payload + CRC.
    TrailingBytes {
        /// Bytes the header announces in total.
        expected: usize,
        /// Bytes that were given.
        found: usize,
    },
    /// The CRC-32C trailer does not match the bytes before it.
    BadChecksum {
        /// CRC stored in the trailer.
        stored: u32,
        /// CRC computed over header and payload.
        computed: u32,
    },
    /// The header's policy id is not the CRC-32C of the payload.
    PolicyIdMismatch {
        /// Id stored in the header.
        stored: u32,
        /// Id computed from the payload.
        computed: u32,
    },
    /// The payload is not a valid postcard encoding of its version's schema
    /// (bad varint, short field, or bytes left over).
    Malformed,
    /// A dimension does not match what the caller compiled for.
    ShapeMismatch {
        /// Which dimension.
        field: Field,
        /// The dimension the caller's const generics require.
        expected: usize,
        /// The dimension in the blob.
        found: usize,
    },
    /// A byte string has the wrong length for the blob's dimensions.
    LengthMismatch {
        /// Which field.
        field: Field,
        /// Bytes the dimensions require.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Not 1–3 hidden layers, or layer count ≠ hidden layers + 1.
    BadLayerCount {
        /// Number found.
        found: usize,
    },
    /// A dimension is zero or wider than the limit (256, or the caller's `HID`).
    BadWidth {
        /// Which dimension.
        field: Field,
        /// Width found.
        found: usize,
        /// Largest width accepted.
        max: usize,
    },
    /// Activation code other than 0 (tanh) or 1 (relu).
    UnknownActivation {
        /// Code found.
        found: u8,
    },
    /// Weight encoding code other than 0 (f32), 1 (int8) or 2 (int8
    /// interleaved).
    UnknownEncoding {
        /// Code found.
        found: u8,
    },
    /// A float is NaN or infinite.
    NonFinite {
        /// Which field.
        field: Field,
        /// Element index within the field.
        index: usize,
    },
    /// A float is finite but outside the range the format allows
    /// (|v| ≤ 1e5; int8 scales ≤ 1e5/127; log-std in [−20, 10]).
    OutOfRange {
        /// Which field.
        field: Field,
        /// Element index within the field.
        index: usize,
    },
    /// A scale (int8 row scale, observation inverse std, clip range) is not > 0.
    BadScale {
        /// Which field.
        field: Field,
        /// Element index within the field.
        index: usize,
    },
    /// `action_low[dim] >= action_high[dim]`.
    BadBounds {
        /// Action dimension.
        dim: usize,
    },
    /// More extension records than a reader keeps
    /// ([`crate::format::MAX_EXTENSIONS`]).
    TooManyExtensions {
        /// Records found.
        found: usize,
    },
    /// Extension tags are not strictly increasing: `tag` follows a tag that
    /// is not smaller.
    ExtensionOrder {
        /// The out-of-order tag.
        tag: u8,
    },
    /// A required extension (tag `0x00–0x7F`) that this runtime does not
    /// know: the blob needs a newer runtime.
    UnknownExtension {
        /// Its tag.
        tag: u8,
    },
    /// The realism record (optional tag `0x80`) is malformed or holds a
    /// value out of range.
    Realism(crate::realism::RealismError),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FormatError::*;
        match *self {
            Truncated { needed, found } => {
                write!(f, "blob truncated: needs {needed} bytes, got {found}")
            }
            BadMagic => f.write_str("bad magic: expected the bytes \"TPPO\" at offset 0"),
            UnsupportedVersion { found } => {
                write!(f, "unsupported format version {found} (this runtime reads versions 1 and 2)")
            }
            TrailingBytes { expected, found } => write!(
                f,
                "{} trailing bytes: the header announces {expected} bytes, got {found}",
                found - expected
            ),
            BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored CRC-32C {stored:#010x}, computed {computed:#010x} (corrupted blob)"
            ),
            PolicyIdMismatch { stored, computed } => write!(
                f,
                "policy id {stored:#010x} in the header is not the payload's CRC-32C {computed:#010x}"
            ),
            Malformed => f.write_str("payload is not a valid postcard encoding of its version's schema"),
            ShapeMismatch { field, expected, found } => {
                write!(f, "{field} is {found}, expected {expected}")
            }
            LengthMismatch { field, expected, found } => {
                write!(f, "{field} has {found} bytes, expected {expected}")
            }
            BadLayerCount { found } => write!(
                f,
                "{found} layers: expected 1 to 3 hidden layers and one output layer after them"
            ),
            BadWidth { field, found, max } => {
                write!(f, "{field} is {found}, expected 1 to {max}")
            }
            UnknownActivation { found } => {
                write!(f, "unknown activation code {found} (0 = tanh, 1 = relu)")
            }
            UnknownEncoding { found } => {
                write!(f, "unknown weight encoding code {found} (0 = f32, 1 = int8, 2 = int8 interleaved)")
            }
            NonFinite { field, index } => write!(f, "{field}[{index}] is not finite"),
            OutOfRange { field, index } => {
                write!(f, "{field}[{index}] is outside the range the format allows")
            }
            BadScale { field, index } => write!(f, "{field}[{index}] must be > 0"),
            BadBounds { dim } => {
                write!(f, "action_low[{dim}] must be < action_high[{dim}]")
            }
            TooManyExtensions { found } => write!(
                f,
                "{found} extension records, at most {} are read",
                crate::format::MAX_EXTENSIONS
            ),
            ExtensionOrder { tag } => write!(
                f,
                "extension tag {tag:#04x} is out of order (tags must be strictly increasing)"
            ),
            UnknownExtension { tag } => write!(
                f,
                "required extension {tag:#04x} is unknown to this runtime (a newer one is needed)"
            ),
            Realism(e) => write!(f, "extension 0x80 (realism): {e}"),
        }
    }
}

impl FormatError {
    /// The error as one number, for a device that reports without
    /// `core::fmt` (formatting pulls kilobytes of code into flash):
    /// `kind << 24 | field << 16 | detail`, where `kind` is the variant's
    /// position in this enum (1 = `Truncated` … 21 = `Realism`), `field`
    /// is [`Field::code`] (0 without a field; for `Realism`, the realism
    /// error's variant) and `detail` the element index, tag or found value
    /// (saturated to 16 bits). The firmware prints it in hex; `tinyppo
    /// inspect` on the same blob prints the message and the same code.
    pub fn code(&self) -> u32 {
        use FormatError::*;
        let sat = |v: usize| v.min(0xFFFF) as u32;
        let (kind, field, detail): (u32, u8, u32) = match *self {
            Truncated { found, .. } => (1, 0, sat(found)),
            BadMagic => (2, 0, 0),
            UnsupportedVersion { found } => (3, 0, u32::from(found)),
            TrailingBytes { found, .. } => (4, 0, sat(found)),
            BadChecksum { .. } => (5, 0, 0),
            PolicyIdMismatch { .. } => (6, 0, 0),
            Malformed => (7, 0, 0),
            ShapeMismatch { field, found, .. } => (8, field.code(), sat(found)),
            LengthMismatch { field, found, .. } => (9, field.code(), sat(found)),
            BadLayerCount { found } => (10, 0, sat(found)),
            BadWidth { field, found, .. } => (11, field.code(), sat(found)),
            UnknownActivation { found } => (12, 0, u32::from(found)),
            UnknownEncoding { found } => (13, 0, u32::from(found)),
            NonFinite { field, index } => (14, field.code(), sat(index)),
            OutOfRange { field, index } => (15, field.code(), sat(index)),
            BadScale { field, index } => (16, field.code(), sat(index)),
            BadBounds { dim } => (17, 0, sat(dim)),
            TooManyExtensions { found } => (18, 0, sat(found)),
            ExtensionOrder { tag } => (19, 0, u32::from(tag)),
            UnknownExtension { tag } => (20, 0, u32::from(tag)),
            Realism(e) => {
                use crate::realism::RealismError as R;
                let (v, detail) = match e {
                    R::Malformed => (1, 0),
                    R::Length { found, .. } => (2, sat(found)),
                    R::Invalid { index, .. } => (3, sat(index)),
                    R::DelayTooLong { found, .. } => (4, found.min(0xFFFF)),
                };
                (21, v, detail)
            }
        };
        kind << 24 | u32::from(field) << 16 | detail
    }
}

impl core::error::Error for FormatError {}

/// Why inference refused an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActError {
    /// Observation element `index` is NaN or infinite. No action is produced;
    /// the caller applies its safe action (see [`crate::Policy::safe_action`]).
    NonFiniteObservation {
        /// Index of the first non-finite element.
        index: usize,
    },
    /// Action element `index` given to `log_prob` is NaN or infinite.
    NonFiniteAction {
        /// Index of the first non-finite element.
        index: usize,
    },
    /// The policy takes the last applied actions as inputs (an action
    /// history record): call the `*_with` method with an
    /// [`ActionHistory`](crate::history::ActionHistory).
    HistoryRequired,
}

impl fmt::Display for ActError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ActError::NonFiniteObservation { index } => {
                write!(f, "observation[{index}] is not finite")
            }
            ActError::NonFiniteAction { index } => write!(f, "action[{index}] is not finite"),
            ActError::HistoryRequired => {
                f.write_str("the policy needs the action history (use the *_with methods)")
            }
        }
    }
}

impl core::error::Error for ActError {}
