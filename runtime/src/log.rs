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
//!         5 SelfTest  6 Event
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
    /// [`SelfTestReport`](crate::selftest::SelfTestReport): the boot
    /// self-test's result, after the first header.
    pub const SELF_TEST: u32 = 5;
    /// [`Event`](super::Event): a safety or fault event, at its tick.
    pub const EVENT: u32 = 6;
}

/// What an [`Event`] reports. Codes `0x80–0xFF` are free for an
/// application's or a board's own events (`logs decode` prints their
/// number).
pub mod event {
    /// Observation `index` left its safety bounds (value: the observation):
    /// the loop applies the safe action until the episode ends (an e-stop).
    pub const ESTOP: u8 = 0;
    /// The sensor read the same value `value` ticks in a row while the
    /// actuator was driven: the safe action until the reading changes.
    pub const STUCK_SENSOR: u8 = 1;
    /// The sensor read failed (the first tick of a run of failures).
    pub const SENSOR_ERROR: u8 = 2;
    /// Observation `index` was NaN or infinite (first tick of a run).
    pub const NONFINITE_OBS: u8 = 3;
    /// The actuator refused the action (first tick of a run).
    pub const ACTUATOR_ERROR: u8 = 4;
    /// The boot self-test failed: the loop applies only the safe action.
    pub const SELF_TEST_FAILED: u8 = 5;
    /// The board's watchdog reset it before this run (logged at the run's
    /// first tick, see `driver::Watchdog`).
    pub const WATCHDOG_RESET: u8 = 6;

    /// A short name for `code` (`None` for an application's code).
    pub const fn name(code: u8) -> Option<&'static str> {
        Some(match code {
            ESTOP => "e-stop",
            STUCK_SENSOR => "stuck sensor",
            SENSOR_ERROR => "sensor error",
            NONFINITE_OBS => "non-finite observation",
            ACTUATOR_ERROR => "actuator error",
            SELF_TEST_FAILED => "self-test failed",
            WATCHDOG_RESET => "watchdog reset",
            _ => return None,
        })
    }
}

/// Plant code of a [`Header`] for a real plant (hardware) or an unknown one.
/// Codes 0–3 are the built-in plants in the order of `plants::NAMES`
/// (`pendulum`, `mountain-car`, `cartpole`, `dc-motor`); 0x80–0xFE are free
/// for an application's own plants.
pub const PLANT_HARDWARE: u8 = 0xFF;

/// Largest body of a frame with these dimensions: a transition,
/// `1 + 3·5 + 4·(obs + act) + 4 + 2 + 4 + 4` bytes, or the `End` frame's
/// 64 bytes if larger.
pub const fn max_body_len(obs_dim: usize, act_dim: usize) -> usize {
    let transition = 1 + 3 * 5 + 4 * (obs_dim + act_dim) + 4 + 2 + 4 + 4;
    let end = 1 + 11 * 5 + 8;
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
                write!(
                    f,
                    "frame of {len} bytes is longer than {MAX_FRAME_LEN} bytes"
                )
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
                write!(
                    f,
                    "unsupported log version {found} (this reader reads {LOG_VERSION})"
                )
            }
            BadDims { obs_dim, act_dim } => {
                write!(
                    f,
                    "header dims obs {obs_dim}, act {act_dim} outside 1..=256"
                )
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
    /// counts transitions, episode ends and events, dropped ones included, so a gap
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
        Dims {
            obs: self.obs_dim as usize,
            act: self.act_dim as usize,
        }
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
    /// Entry numbers used (transitions, episode ends and events, dropped ones
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
    /// The safety layer's counters (appended to the `End` frame after
    /// `return_sum` when any is non-zero; a frame without them reads as
    /// zeros).
    pub safety: SafetyTotals,
}

/// What the safety layer did in a run (see `safety`): ticks, not events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SafetyTotals {
    /// Ticks spent in an e-stop (safe action applied).
    pub estop_ticks: u32,
    /// Ticks with a stuck sensor (safe action applied).
    pub stuck_ticks: u32,
    /// Ticks on which a limit changed the policy's action (bounds or rate).
    pub limited_ticks: u32,
    /// Ticks on which a failed self-test held the safe action.
    pub inhibited_ticks: u32,
}

/// A safety or fault event, logged at the tick it happened: an e-stop, a
/// stuck or failed sensor, a refused action, a failed self-test. A fault
/// that lasts several ticks is logged once, at its first tick; the ticks
/// are counted in [`Totals`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Entry number (see [`Record::seq`]).
    pub seq: u32,
    /// Episode of the tick.
    pub episode: u32,
    /// Step of the tick within the episode.
    pub t: u32,
    /// What happened: an [`event`] code.
    pub code: u8,
    /// Which element (observation or action dimension), 0 if none.
    pub index: u16,
    /// The value that caused it (the observation for an e-stop, the tick
    /// count for a stuck sensor), 0 if none.
    pub value: f32,
}

// ---------------------------------------------------------------------------
// Serialization (postcard). Every kind is a tuple, so its `f32` arrays are
// written element by element with no length (serde cannot derive for
// `[f32; N]` with a generic `N`, and the length is in the header anyway).

impl<const OBS: usize, const ACT: usize> Serialize for Record<OBS, ACT> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3 + OBS + ACT + 5)?;
        t.serialize_element(&self.seq)?;
        t.serialize_element(&self.episode)?;
        t.serialize_element(&self.t)?;
        for v in &self.obs {
            t.serialize_element(v)?;
        }
        for v in &self.action {
            t.serialize_element(v)?;
        }
        t.serialize_element(&self.reward)?;
        t.serialize_element(&self.terminated)?;
        t.serialize_element(&self.truncated)?;
        t.serialize_element(&self.log_prob)?;
        // Fixed 4 bytes LE (as in the blob header), not a varint.
        t.serialize_element(&self.policy_id.to_le_bytes())?;
        t.end()
    }
}

impl<const OBS: usize> Serialize for EpisodeEnd<OBS> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3 + OBS)?;
        t.serialize_element(&self.seq)?;
        t.serialize_element(&self.episode)?;
        t.serialize_element(&self.t)?;
        for v in &self.obs {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(7)?;
        t.serialize_element(&self.log_version)?;
        t.serialize_element(&self.policy_id.to_le_bytes())?;
        t.serialize_element(&self.plant)?;
        t.serialize_element(&self.obs_dim)?;
        t.serialize_element(&self.act_dim)?;
        t.serialize_element(&self.seed)?;
        t.serialize_element(&self.deterministic)?;
        t.end()
    }
}

impl Serialize for Dropped {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(2)?;
        t.serialize_element(&self.first_seq)?;
        t.serialize_element(&self.count)?;
        t.end()
    }
}

impl Serialize for Totals {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The safety counters are appended only when one is non-zero: a
        // run that used no safety feature writes the bytes it always did.
        let safety = self.safety != SafetyTotals::default();
        let mut t = s.serialize_tuple(if safety { 12 } else { 8 })?;
        t.serialize_element(&self.entries)?;
        t.serialize_element(&self.transitions)?;
        t.serialize_element(&self.episodes)?;
        t.serialize_element(&self.dropped)?;
        t.serialize_element(&self.nonfinite_obs)?;
        t.serialize_element(&self.sensor_errors)?;
        t.serialize_element(&self.actuator_errors)?;
        t.serialize_element(&self.return_sum)?;
        if safety {
            t.serialize_element(&self.safety.estop_ticks)?;
            t.serialize_element(&self.safety.stuck_ticks)?;
            t.serialize_element(&self.safety.limited_ticks)?;
            t.serialize_element(&self.safety.inhibited_ticks)?;
        }
        t.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(6)?;
        t.serialize_element(&self.seq)?;
        t.serialize_element(&self.episode)?;
        t.serialize_element(&self.t)?;
        t.serialize_element(&self.code)?;
        t.serialize_element(&self.index)?;
        t.serialize_element(&self.value)?;
        t.end()
    }
}

impl Serialize for crate::selftest::SelfTestReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(5)?;
        t.serialize_element(&self.vectors)?;
        t.serialize_element(&self.failed)?;
        t.serialize_element(&self.worst_index)?;
        t.serialize_element(&self.worst_error)?;
        t.serialize_element(&self.tolerance)?;
        t.end()
    }
}

/// A body: the kind's tag (postcard enum variant index, a varint) and its
/// fields.
struct Tagged<'a, T>(u32, &'static str, &'a T);

impl<T: Serialize> Serialize for Tagged<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_variant("Frame", self.0, self.1, self.2)
    }
}

/// The CRC-32C of `format`, as a static so a streaming digest can borrow it.
static CRC: crc::Crc<u32> = CRC32C;

/// A postcard flavor that feeds every byte to a CRC-32C digest and to the
/// inner flavor, then appends the CRC (u32 LE) before finalizing the inner
/// one. `CrcThen<Cobs<Slice>>` encodes a whole frame in one pass with no
/// scratch buffer.
struct CrcThen<B: Flavor> {
    inner: B,
    digest: crc::Digest<'static, u32>,
}

impl<B: Flavor> Flavor for CrcThen<B> {
    type Output = B::Output;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.digest.update(&[data]);
        self.inner.try_push(data)
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.digest.update(data);
        self.inner.try_extend(data)
    }

    fn finalize(mut self) -> postcard::Result<B::Output> {
        let crc = self.digest.finalize();
        self.inner.try_extend(&crc.to_le_bytes())?;
        self.inner.finalize()
    }
}

fn encode_tagged<T: Serialize>(
    tag: u32,
    name: &'static str,
    value: &T,
    out: &mut [u8],
) -> Result<usize, LogError> {
    // `Cobs` reserves the first code byte and writes the 0x00 delimiter in
    // `finalize`. The only error any of our types can produce is a full
    // buffer.
    let cobs = Cobs::try_new(Slice::new(out)).map_err(|_| LogError::BufferTooSmall)?;
    let flavor = CrcThen {
        inner: cobs,
        digest: CRC.digest(),
    };
    postcard::serialize_with_flavor(&Tagged(tag, name, value), flavor)
        .map(|used| used.len())
        .map_err(|_| LogError::BufferTooSmall)
}

/// Writes a [`Header`] frame into `out`; returns its length (delimiter
/// included).
pub fn encode_header(h: &Header, out: &mut [u8]) -> Result<usize, LogError> {
    encode_tagged(kind::HEADER, "Header", h, out)
}

/// Writes a `Transition` frame of `r` into `out`; returns its length.
pub fn encode_transition<const OBS: usize, const ACT: usize>(
    r: &Record<OBS, ACT>,
    out: &mut [u8],
) -> Result<usize, LogError> {
    encode_tagged(kind::TRANSITION, "Transition", r, out)
}

/// Writes a [`Dropped`] frame into `out`; returns its length.
pub fn encode_dropped(d: &Dropped, out: &mut [u8]) -> Result<usize, LogError> {
    encode_tagged(kind::DROPPED, "Dropped", d, out)
}

/// Writes an [`EpisodeEnd`] frame into `out`; returns its length.
pub fn encode_episode_end<const OBS: usize>(
    e: &EpisodeEnd<OBS>,
    out: &mut [u8],
) -> Result<usize, LogError> {
    encode_tagged(kind::EPISODE_END, "EpisodeEnd", e, out)
}

/// Writes an `End` frame with the run's [`Totals`] into `out`; returns its
/// length.
pub fn encode_end(t: &Totals, out: &mut [u8]) -> Result<usize, LogError> {
    encode_tagged(kind::END, "End", t, out)
}

/// Writes an [`Event`] frame into `out`; returns its length.
pub fn encode_event(e: &Event, out: &mut [u8]) -> Result<usize, LogError> {
    encode_tagged(kind::EVENT, "Event", e, out)
}

/// Writes a `SelfTest` frame (the boot self-test's result) into `out`;
/// returns its length.
pub fn encode_self_test(
    r: &crate::selftest::SelfTestReport,
    out: &mut [u8],
) -> Result<usize, LogError> {
    encode_tagged(kind::SELF_TEST, "SelfTest", r, out)
}

// ---------------------------------------------------------------------------
// Decoding.

/// `f32` values stored little-endian in a frame, borrowed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct F32s<'a>(&'a [u8]);

impl<'a> F32s<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len() / 4
    }
    /// No values.
    pub fn is_empty(&self) -> bool {
        self.0.len() < 4
    }
    /// The raw bytes (`4·len`).
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
    /// Value `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<f32> {
        let b = self
            .0
            .get(i.checked_mul(4)?..i.checked_mul(4)?.checked_add(4)?)?;
        Some(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// The values in order.
    pub fn iter(&self) -> impl Iterator<Item = f32> + 'a {
        crate::format::f32s(self.0)
    }
    /// The values as an array, if there are exactly `N`.
    pub fn to_array<const N: usize>(&self) -> Option<[f32; N]> {
        if self.len() != N || self.0.len() % 4 != 0 {
            return None;
        }
        let mut out = [0.0; N];
        for (o, v) in out.iter_mut().zip(self.iter()) {
            *o = v;
        }
        Some(out)
    }
}

/// A decoded `Transition` frame, its arrays borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordRef<'a> {
    /// See [`Record::seq`].
    pub seq: u32,
    /// See [`Record::episode`].
    pub episode: u32,
    /// See [`Record::t`].
    pub t: u32,
    /// `o_t`.
    pub obs: F32s<'a>,
    /// Unclipped `u_t`.
    pub action: F32s<'a>,
    /// `r_t`.
    pub reward: f32,
    /// Terminal state reached.
    pub terminated: bool,
    /// Time limit reached.
    pub truncated: bool,
    /// `log π(u_t|o_t)`.
    pub log_prob: f32,
    /// Policy id.
    pub policy_id: u32,
}

impl RecordRef<'_> {
    /// The record with compile-time dimensions, if they match.
    pub fn to_record<const OBS: usize, const ACT: usize>(&self) -> Option<Record<OBS, ACT>> {
        Some(Record {
            seq: self.seq,
            episode: self.episode,
            t: self.t,
            obs: self.obs.to_array()?,
            action: self.action.to_array()?,
            reward: self.reward,
            terminated: self.terminated,
            truncated: self.truncated,
            log_prob: self.log_prob,
            policy_id: self.policy_id,
        })
    }
}

/// A decoded [`EpisodeEnd`] frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeEndRef<'a> {
    /// See [`EpisodeEnd::seq`].
    pub seq: u32,
    /// Episode that ended.
    pub episode: u32,
    /// Steps it took.
    pub t: u32,
    /// Final observation `o_T`.
    pub obs: F32s<'a>,
}

/// One decoded frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Frame<'a> {
    /// Stream header.
    Header(Header),
    /// One control step.
    Transition(RecordRef<'a>),
    /// Entries the device dropped.
    Dropped(Dropped),
    /// Final observation of an episode.
    EpisodeEnd(EpisodeEndRef<'a>),
    /// Totals of the run.
    End(Totals),
    /// The boot self-test's result.
    SelfTest(crate::selftest::SelfTestReport),
    /// A safety or fault event.
    Event(Event),
}

/// Reads postcard values from the front of a body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take<T: serde::Deserialize<'a>>(&mut self) -> Result<T, LogError> {
        let (v, rest) = postcard::take_from_bytes(self.0).map_err(|_| LogError::Malformed)?;
        self.0 = rest;
        Ok(v)
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        if self.0.len() < n {
            return Err(LogError::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32_le(&mut self) -> Result<u32, LogError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f32s(&mut self, n: usize) -> Result<F32s<'a>, LogError> {
        Ok(F32s(
            self.bytes(n.checked_mul(4).ok_or(LogError::Malformed)?)?,
        ))
    }
    fn finish(self) -> Result<(), LogError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(LogError::Malformed)
        }
    }
}

/// Decodes one frame **in place** (the COBS bytes are overwritten by the
/// body) and checks its CRC. `frame` is the bytes between two delimiters;
/// one trailing `0x00` is allowed. `dims` are the stream's dimensions from
/// its latest [`Header`]: frames with arrays need them
/// ([`LogError::UnknownDims`] otherwise, reported only once the CRC showed
/// the frame intact).
///
/// Checks run in this order: [`Empty`](LogError::Empty),
/// [`TooLong`](LogError::TooLong), [`Cobs`](LogError::Cobs),
/// [`TooShort`](LogError::TooShort), [`BadChecksum`](LogError::BadChecksum),
/// then the schema ([`UnknownKind`](LogError::UnknownKind),
/// [`UnsupportedVersion`](LogError::UnsupportedVersion),
/// [`BadDims`](LogError::BadDims), [`UnknownDims`](LogError::UnknownDims),
/// [`Malformed`](LogError::Malformed)).
pub fn decode_frame(frame: &mut [u8], dims: Option<Dims>) -> Result<Frame<'_>, LogError> {
    let len = match frame.last() {
        Some(&DELIMITER) => frame.len() - 1,
        _ => frame.len(),
    };
    let frame = frame.get_mut(..len).ok_or(LogError::Empty)?;
    if frame.is_empty() {
        return Err(LogError::Empty);
    }
    if len >= MAX_FRAME_LEN {
        return Err(LogError::TooLong { len });
    }
    if frame.contains(&DELIMITER) {
        return Err(LogError::Cobs);
    }
    let n = cobs::decode_in_place(frame).map_err(|_| LogError::Cobs)?;
    let decoded: &[u8] = frame.get(..n).ok_or(LogError::Cobs)?;
    let body_len = n
        .checked_sub(4)
        .filter(|&b| b >= 1)
        .ok_or(LogError::TooShort { len: n })?;
    let (body, crc) = decoded.split_at(body_len);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = CRC32C.checksum(body);
    if stored != computed {
        return Err(LogError::BadChecksum { stored, computed });
    }
    parse_body(body, dims)
}

fn parse_body(body: &[u8], dims: Option<Dims>) -> Result<Frame<'_>, LogError> {
    let mut c = Cursor(body);
    let tag: u32 = c.take()?;
    let frame = match tag {
        kind::HEADER => {
            let log_version: u16 = c.take()?;
            if log_version != LOG_VERSION {
                return Err(LogError::UnsupportedVersion { found: log_version });
            }
            let h = Header {
                log_version,
                policy_id: c.u32_le()?,
                plant: c.take()?,
                obs_dim: c.take()?,
                act_dim: c.take()?,
                seed: c.take()?,
                deterministic: c.take()?,
            };
            let ok = |d: u16| d >= 1 && d as usize <= MAX_WIDTH;
            if !ok(h.obs_dim) || !ok(h.act_dim) {
                return Err(LogError::BadDims {
                    obs_dim: h.obs_dim,
                    act_dim: h.act_dim,
                });
            }
            Frame::Header(h)
        }
        kind::TRANSITION => {
            let d = dims.ok_or(LogError::UnknownDims)?;
            Frame::Transition(RecordRef {
                seq: c.take()?,
                episode: c.take()?,
                t: c.take()?,
                obs: c.f32s(d.obs)?,
                action: c.f32s(d.act)?,
                reward: c.take()?,
                terminated: c.take()?,
                truncated: c.take()?,
                log_prob: c.take()?,
                policy_id: c.u32_le()?,
            })
        }
        kind::DROPPED => Frame::Dropped(Dropped {
            first_seq: c.take()?,
            count: c.take()?,
        }),
        kind::EPISODE_END => {
            let d = dims.ok_or(LogError::UnknownDims)?;
            Frame::EpisodeEnd(EpisodeEndRef {
                seq: c.take()?,
                episode: c.take()?,
                t: c.take()?,
                obs: c.f32s(d.obs)?,
            })
        }
        kind::END => Frame::End(Totals {
            entries: c.take()?,
            transitions: c.take()?,
            episodes: c.take()?,
            dropped: c.take()?,
            nonfinite_obs: c.take()?,
            sensor_errors: c.take()?,
            actuator_errors: c.take()?,
            return_sum: c.take()?,
            // Appended fields: absent in streams written before them.
            safety: if c.0.is_empty() {
                SafetyTotals::default()
            } else {
                SafetyTotals {
                    estop_ticks: c.take()?,
                    stuck_ticks: c.take()?,
                    limited_ticks: c.take()?,
                    inhibited_ticks: c.take()?,
                }
            },
        }),
        kind::SELF_TEST => Frame::SelfTest(crate::selftest::SelfTestReport {
            vectors: c.take()?,
            failed: c.take()?,
            worst_index: c.take()?,
            worst_error: c.take()?,
            tolerance: c.take()?,
        }),
        kind::EVENT => Frame::Event(Event {
            seq: c.take()?,
            episode: c.take()?,
            t: c.take()?,
            code: c.take()?,
            index: c.take()?,
            value: c.take()?,
        }),
        tag => return Err(LogError::UnknownKind { tag }),
    };
    c.finish()?;
    Ok(frame)
}

// ---------------------------------------------------------------------------
// The bounded queue.

/// An entry of the device log: what [`Logger::push`] takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry<const OBS: usize, const ACT: usize> {
    /// One control step.
    Transition(Record<OBS, ACT>),
    /// The final observation of an episode.
    EpisodeEnd(EpisodeEnd<OBS>),
    /// A safety or fault event.
    Event(Event),
}

impl<const OBS: usize, const ACT: usize> Entry<OBS, ACT> {
    /// The entry number.
    pub fn seq(&self) -> u32 {
        match self {
            Entry::Transition(r) => r.seq,
            Entry::EpisodeEnd(e) => e.seq,
            Entry::Event(e) => e.seq,
        }
    }
    fn set_seq(&mut self, seq: u32) {
        match self {
            Entry::Transition(r) => r.seq = seq,
            Entry::EpisodeEnd(e) => e.seq = seq,
            Entry::Event(e) => e.seq = seq,
        }
    }
    fn encode(&self, out: &mut [u8]) -> Result<usize, LogError> {
        match self {
            Entry::Transition(r) => encode_transition(r, out),
            Entry::EpisodeEnd(e) => encode_episode_end(e, out),
            Entry::Event(e) => encode_event(e, out),
        }
    }
}

/// A queued entry and the run of drops that happened just before it.
#[derive(Debug, Clone, Copy)]
struct Slot<const OBS: usize, const ACT: usize> {
    gap: Option<Dropped>,
    entry: Entry<OBS, ACT>,
}

/// The device log: a queue of at most `CAP` entries waiting to be sent,
/// the entry counter and the drop accounting. See the [module docs](self)
/// for the drop rule.
///
/// `push` and `encode_next` both take `&mut self`: drain from the same
/// context that logs (the idle part of the control period), or behind a
/// critical section (e.g. an RTIC resource) when a UART interrupt drains.
#[derive(Debug)]
pub struct Logger<const OBS: usize, const ACT: usize, const CAP: usize> {
    queue: Deque<Slot<OBS, ACT>, CAP>,
    next_seq: u32,
    /// Drops not yet attached to a queued slot (they follow every queued one).
    pending: Option<Dropped>,
    dropped: u32,
}

impl<const OBS: usize, const ACT: usize, const CAP: usize> Default for Logger<OBS, ACT, CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const OBS: usize, const ACT: usize, const CAP: usize> Logger<OBS, ACT, CAP> {
    const CAP_OK: () = assert!(CAP >= 1, "a Logger needs room for at least one entry");

    /// The largest frame this logger writes: size `encode_next`'s buffer
    /// with it (`max_frame_len(OBS, ACT)`).
    pub const MAX_FRAME: usize = max_frame_len(OBS, ACT);

    /// An empty log; the first entry gets `seq` 0.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAP_OK;
        Logger {
            queue: Deque::new(),
            next_seq: 0,
            pending: None,
            dropped: 0,
        }
    }

    /// Assigns the next entry number to `entry` and queues it. When the
    /// queue is full the entry is dropped, counted, and handed back in
    /// `Err`; it will be reported by a [`Dropped`] frame. Never blocks.
    pub fn push(&mut self, mut entry: Entry<OBS, ACT>) -> Result<u32, Entry<OBS, ACT>> {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        entry.set_seq(seq);
        if self.queue.is_full() {
            self.dropped = self.dropped.saturating_add(1);
            match &mut self.pending {
                Some(run) => run.count = run.count.saturating_add(1),
                None => {
                    self.pending = Some(Dropped {
                        first_seq: seq,
                        count: 1,
                    })
                }
            }
            return Err(entry);
        }
        let slot = Slot {
            gap: self.pending.take(),
            entry,
        };
        // Not full (checked above): this cannot fail.
        self.queue
            .push_back(slot)
            .map(|()| seq)
            .map_err(|s| s.entry)
    }

    /// Encodes the next frame to send into `out` and returns its length,
    /// or `None` when nothing is waiting. The entry leaves the queue only
    /// once its frame is written; on [`LogError::BufferTooSmall`] nothing
    /// changes. A pending [`Dropped`] frame comes before the entry it
    /// precedes.
    pub fn encode_next(&mut self, out: &mut [u8]) -> Result<Option<usize>, LogError> {
        if let Some(slot) = self.queue.front_mut() {
            if let Some(gap) = slot.gap {
                let n = encode_dropped(&gap, out)?;
                slot.gap = None;
                return Ok(Some(n));
            }
            let n = slot.entry.encode(out)?;
            self.queue.pop_front();
            return Ok(Some(n));
        }
        if let Some(gap) = self.pending {
            let n = encode_dropped(&gap, out)?;
            self.pending = None;
            return Ok(Some(n));
        }
        Ok(None)
    }

    /// Frames are waiting to be encoded.
    pub fn has_frames(&self) -> bool {
        !self.queue.is_empty() || self.pending.is_some()
    }

    /// Entries queued.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// No entry queued (a [`Dropped`] frame may still be pending).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The entry number the next [`push`](Self::push) assigns: entries
    /// offered so far (mod 2³²).
    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Entries dropped so far.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }
}
