//! Rollout logging: log records, the frame codec and the bounded queue.
//!
//! The device streams what its control loop did — every transition
//! `(o_t, u_t, r_t, terminated, truncated, log π(u_t|o_t))` — as a sequence
//! of self-delimiting, checksummed **frames** over any byte channel (UART,
//! RTT, USB, a file). The byte-level specification, with tables and an
//! annotated example, is the "Log frames" section of `docs/FORMAT.md`; this
//! module is its implementation. In short:
//!
//! ```text
//! frame = COBS( body ‖ CRC-32C(body) as u32 LE ) ‖ 0x00
//! body  = postcard enum: varint tag, then the kind's fields
//!         0 Header  1 Transition  2 Dropped  3 EpisodeEnd  4 End
//! ```
//!
//! COBS removes every `0x00` from the encoded bytes, so `0x00` only ever
//! ends a frame: a reader that lost bytes resynchronizes at the next
//! delimiter, and the CRC rejects the damaged frame. `f32` arrays are
//! written without a length (postcard tuples): their lengths come from the
//! stream's [`Header`] ([`Dims`]).
//!
//! **Queue.** [`Logger`] keeps up to `CAP` entries in a `heapless::Deque`
//! until the caller drains them as frames ([`Logger::encode_next`]). Pushing
//! is O(1) and never blocks or allocates. When the queue is full the
//! **newest** entry is dropped and counted: keeping the oldest entries keeps
//! every episode's logged part a contiguous prefix starting at `t = 0`,
//! which an off-policy learner can still use (GAE and returns need
//! contiguous steps), whereas dropping the oldest would punch holes at the
//! start of episodes already half-sent. A run of drops is reported by one
//! [`Dropped`] frame (`first_seq`, `count`), written at the place of the gap:
//! before the next entry that could be queued, or as soon as the queue is
//! empty.
//!
//! **Guarantees.** Nothing here allocates or panics on any input: encoding
//! into a short buffer returns [`LogError::BufferTooSmall`], decoding any
//! byte string returns `Ok` or a [`LogError`].

use core::fmt;

use heapless::Deque;
use postcard::ser_flavors::{Cobs, Flavor, Slice};
use serde::ser::{Serialize, SerializeTuple, Serializer};

use crate::format::{CRC32C, MAX_WIDTH};

/// The log format version written in every [`Header`] (independent of the
/// policy blob's format version).
pub const LOG_VERSION: u16 = 1;

/// The frame delimiter: the only place a `0x00` byte appears in a stream.
pub const DELIMITER: u8 = 0x00;

/// Frame kinds: the postcard enum tag (variant index) that starts a body.
pub mod kind {
    /// [`Header`](super::Header): what produced the stream.
    pub const HEADER: u32 = 0;
    /// [`Record`](super::Record): one control step.
    pub const TRANSITION: u32 = 1;
    /// [`Dropped`](super::Dropped): entries the device could not queue.
    pub const DROPPED: u32 = 2;
    /// [`EpisodeEnd`](super::EpisodeEnd): the final observation of an episode.
    pub const EPISODE_END: u32 = 3;
    /// [`Totals`](super::Totals): the last frame of a finished run.
    pub const END: u32 = 4;
}

/// Plant code of a [`Header`] for a real plant (hardware) or an unknown one.
/// Codes 0–3 are the built-in plants in the order of `plants::NAMES`
/// (`pendulum`, `mountain-car`, `cartpole`, `dc-motor`); 0x80–0xFE are free
/// for an application's own plants.
pub const PLANT_HARDWARE: u8 = 0xFF;

/// Largest body of a frame with these dimensions: a transition,
/// `1 + 3·5 + 4·(obs + act) + 4 + 2 + 4 + 4` bytes, or the `End` frame's
/// 44 bytes if larger.
pub const fn max_body_len(obs_dim: usize, act_dim: usize) -> usize {
    let transition = 1 + 3 * 5 + 4 * (obs_dim + act_dim) + 4 + 2 + 4 + 4;
    let end = 1 + 7 * 5 + 8;
    if transition > end {
        transition
    } else {
        end
    }
}

/// Largest encoded frame for these dimensions, delimiter included:
/// body + 4 CRC bytes, plus COBS's one code byte per started block of 254
/// bytes, plus the `0x00`. A buffer this long always fits any frame.
pub const fn max_frame_len(obs_dim: usize, act_dim: usize) -> usize {
    let raw = max_body_len(obs_dim, act_dim) + 4;
    raw + 1 + raw / 254 + 1
}

/// Largest frame of any stream (`OBS = ACT = 256`): 2 092 bytes. Readers
/// reject longer frames as [`LogError::TooLong`].
pub const MAX_FRAME_LEN: usize = max_frame_len(MAX_WIDTH, MAX_WIDTH);

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogError {
    /// Encoding: the output buffer cannot hold the frame (use
    /// [`max_frame_len`]).
    BufferTooSmall,
    /// The frame has no bytes (two delimiters in a row). Readers skip it:
    /// a writer may send a lone `0x00` to resynchronize a reader.
    Empty,
    /// The frame is longer than [`MAX_FRAME_LEN`] (frames ran together).
    TooLong {
        /// Bytes in the frame.
        len: usize,
    },
    /// Not valid COBS: a `0x00` inside the frame, or a code byte that
    /// points past its end.
    Cobs,
    /// The decoded frame is shorter than a tag and a CRC (5 bytes).
    TooShort {
        /// Decoded bytes.
        len: usize,
    },
    /// The CRC-32C trailer does not match the body: the frame was damaged.
    BadChecksum {
        /// CRC stored in the frame.
        stored: u32,
        /// CRC computed over the body.
        computed: u32,
    },
    /// The tag is not a known frame kind.
    UnknownKind {
        /// Tag found.
        tag: u32,
    },
    /// The body does not decode as its kind's schema (short field, bad
    /// varint, bool other than 0/1, bytes left over, or arrays that do not
    /// fit the stream's dimensions).
    Malformed,
    /// A header with a log version this runtime does not read (it reads 1).
    UnsupportedVersion {
        /// Version found.
        found: u16,
    },
    /// A header whose dimensions are outside 1–256.
    BadDims {
        /// `obs_dim` found.
        obs_dim: u16,
        /// `act_dim` found.
        act_dim: u16,
    },
    /// A frame with arrays (`Transition`, `EpisodeEnd`) before any header:
    /// its dimensions are unknown. A reader may keep it and decode it once
    /// a header arrives (the CRC already showed it is intact).
    UnknownDims,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use LogError::*;
        match *self {
            BufferTooSmall => f.write_str("output buffer too small for the frame"),
            Empty => f.write_str("empty frame"),
            TooLong { len } => {
                write!(f, "frame of {len} bytes is longer than {MAX_FRAME_LEN} bytes")
            }
            Cobs => f.write_str("invalid COBS encoding"),
            TooShort { len } => write!(f, "frame decodes to {len} bytes, fewer than tag + CRC"),
            BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored CRC-32C {stored:#010x}, computed {computed:#010x}"
            ),
            UnknownKind { tag } => write!(f, "unknown frame kind {tag}"),
            Malformed => f.write_str("frame body does not match its schema"),
            UnsupportedVersion { found } => {
                write!(f, "unsupported log version {found} (this reader reads {LOG_VERSION})")
            }
            BadDims { obs_dim, act_dim } => {
                write!(f, "header dims obs {obs_dim}, act {act_dim} outside 1..=256")
            }
            UnknownDims => f.write_str("frame with arrays before any header"),
        }
    }
}

impl core::error::Error for LogError {}

// ---------------------------------------------------------------------------
// Records and frame contents.

/// One control step, as the device logs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<const OBS: usize, const ACT: usize> {
    /// Entry number in the device's log (assigned by [`Logger::push`]):
    /// counts transitions and episode ends, dropped ones included, so a gap
    /// shows what is missing. Wraps at 2³².
    pub seq: u32,
    /// Episode number, from 0.
    pub episode: u32,
    /// Step within the episode, from 0. A step without a transition (a
    /// sensor fault, see `control`) leaves a gap in `t`.
    pub t: u32,
    /// The observation `o_t` the action was chosen on (raw, not normalized).
    pub obs: [f32; OBS],
    /// The **unclipped** action `u_t` (the actuator got it clipped).
    pub action: [f32; ACT],
    /// Reward `r_t` for the step.
    pub reward: f32,
    /// The step reached a terminal state (no bootstrapping).
    pub terminated: bool,
    /// The step hit the time limit (bootstrap from the next observation).
    pub truncated: bool,
    /// Behaviour log-probability `log π(u_t|o_t)` of the unclipped action.
    pub log_prob: f32,
    /// Id of the policy that acted (CRC-32C of its blob payload).
    pub policy_id: u32,
}

/// The observation after the last step of an episode, `o_T`: the learner
/// bootstraps a truncated episode from it. Written by a control loop whose
/// reward source knows it (a simulator); on hardware, the next episode's
/// first observation is the same state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeEnd<const OBS: usize> {
    /// Entry number (see [`Record::seq`]).
    pub seq: u32,
    /// Episode that ended.
    pub episode: u32,
    /// Steps the episode took (`T`, one past the last step's `t`).
    pub t: u32,
    /// The final observation `o_T`.
    pub obs: [f32; OBS],
}

/// The dimensions of a stream's arrays, from its [`Header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Observation dimension.
    pub obs: usize,
    /// Action dimension.
    pub act: usize,
}

/// What produced a stream. Written first, and again at the start of every
/// episode by `sim::run_simulated`, so a reader that missed it (or got it
/// damaged) recovers the dimensions from the next one. All headers of one
/// stream are identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// [`LOG_VERSION`].
    pub log_version: u16,
    /// Id of the policy blob (CRC-32C of its payload).
    pub policy_id: u32,
    /// Plant code: 0–3 the built-in plants, [`PLANT_HARDWARE`] real hardware.
    pub plant: u8,
    /// Observation dimension, 1–256.
    pub obs_dim: u16,
    /// Action dimension, 1–256.
    pub act_dim: u16,
    /// Seed of the run's generator (0 when not meaningful).
    pub seed: u64,
    /// Actions were the policy mean, not samples.
    pub deterministic: bool,
}

impl Header {
    /// The dimensions of the stream's arrays.
    pub fn dims(&self) -> Dims {
        Dims { obs: self.obs_dim as usize, act: self.act_dim as usize }
    }
}

/// `count` consecutive entries from `first_seq` on were not queued (the
/// queue was full) and are missing from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Entry number of the first dropped entry.
    pub first_seq: u32,
    /// Entries dropped in this run.
    pub count: u32,
}

/// Totals of a finished run: the last frame of a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Totals {
    /// Entry numbers used (transitions and episode ends, dropped ones
    /// included): the next `seq`.
    pub entries: u32,
    /// Transitions recorded (queued or dropped).
    pub transitions: u32,
    /// Episodes completed.
    pub episodes: u32,
    /// Entries dropped because the queue was full.
    pub dropped: u32,
    /// Ticks with a non-finite observation (safe action applied).
    pub nonfinite_obs: u32,
    /// Ticks whose sensor read failed (safe action applied).
    pub sensor_errors: u32,
    /// Ticks whose actuator refused the action.
    pub actuator_errors: u32,
    /// Sum of the returns of the completed episodes (f64 accumulation of
    /// the f32 rewards, step by step, then episode by episode).
    pub return_sum: f64,
}

// ---------------------------------------------------------------------------
// Serialization (postcard). Arrays are tuples: no length on the wire.

struct F32Array<'a>(&'a [f32]);

impl Serialize for Record<'_, 0, 0> {}

