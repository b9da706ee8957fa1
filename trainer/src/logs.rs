//! Host side of the device rollout log: decoding frame streams
//! (`tinyppo logs decode`) and simulating a policy through the device
//! control loop (`tinyppo simulate`).
//!
//! The frame format is the "Log frames" section of `docs/FORMAT.md`; the
//! frame codec is the runtime's ([`tinyppo_runtime::log::decode_frame`]),
//! so host and device cannot disagree about it.
//!
//! [`LogReader`] takes bytes in any chunks (a file, a serial port), splits
//! them at `0x00`, decodes every frame and never stops: a damaged frame is
//! counted by cause and the reader resynchronizes at the next delimiter.
//! Frames with arrays that arrive before any header (it was lost or
//! damaged) wait, CRC-checked, until a header gives the dimensions. The
//! result, [`DecodedLog`], keeps every transition with its stream, so an
//! off-policy learner can import them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use tinyppo_runtime::log::{
    decode_frame, Dims, Dropped, Event, Frame, Header, LogError, Totals, DELIMITER, MAX_FRAME_LEN,
};
use tinyppo_runtime::plants::Plant;
use tinyppo_runtime::selftest::SelfTestReport;
use tinyppo_runtime::sim::{self, RunConfig, RunStats};

use crate::registry::Registry;

/// Why a frame was not accepted, as `logs decode` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCause {
    /// Framing: invalid COBS, or longer than any valid frame (frames ran
    /// together after a lost delimiter).
    Cobs,
    /// The CRC-32C does not match (or the frame is too short to hold one).
    Crc,
    /// Intact, but not a valid frame: unknown kind, unsupported version,
    /// wrong field encoding, arrays that do not fit the header's
    /// dimensions, or arrays with no header in the whole stream.
    Schema,
    /// The stream ends inside a frame (no final delimiter).
    Truncated,
}

impl BadCause {
    /// The cause of a decoding error; `None` for an empty frame (which is
    /// not a frame at all).
    pub fn of(e: &LogError) -> Option<BadCause> {
        Some(match e {
            LogError::Empty => return None,
            LogError::Cobs | LogError::TooLong { .. } => BadCause::Cobs,
            LogError::TooShort { .. } | LogError::BadChecksum { .. } => BadCause::Crc,
            _ => BadCause::Schema,
        })
    }
}

/// Bad frames by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BadCounts {
    /// See [`BadCause::Cobs`].
    pub cobs: u64,
    /// See [`BadCause::Crc`].
    pub crc: u64,
    /// See [`BadCause::Schema`].
    pub schema: u64,
    /// See [`BadCause::Truncated`].
    pub truncated: u64,
}

impl BadCounts {
    fn add(&mut self, c: BadCause) {
        match c {
            BadCause::Cobs => self.cobs += 1,
            BadCause::Crc => self.crc += 1,
            BadCause::Schema => self.schema += 1,
            BadCause::Truncated => self.truncated += 1,
        }
    }
}

/// One decoded transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Index of its stream in [`DecodedLog::streams`].
    pub stream: usize,
    /// Entry number in the device log.
    pub seq: u32,
    /// Episode.
    pub episode: u32,
    /// Step within the episode.
    pub t: u32,
    /// Observation `o_t` (raw), then the unclipped action `u_t`, in one
    /// allocation (a decoded log holds millions of these).
    values: Box<[f32]>,
    /// `obs_dim`: where the action starts in `values`.
    obs_len: u16,
    /// Reward `r_t`.
    pub reward: f32,
    /// Terminal state reached.
    pub terminated: bool,
    /// Time limit reached.
    pub truncated: bool,
    /// Behaviour `log π(u_t|o_t)`.
    pub log_prob: f32,
    /// Policy that acted.
    pub policy_id: u32,
}

impl Transition {
    /// A transition with these fields (for tests and other readers).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        (stream, seq, episode, t): (usize, u32, u32, u32),
        obs: &[f32],
        action: &[f32],
        reward: f32,
        (terminated, truncated): (bool, bool),
        log_prob: f32,
        policy_id: u32,
    ) -> Self {
        Transition {
            stream,
            seq,
            episode,
            t,
            values: obs.iter().chain(action).copied().collect(),
            obs_len: u16::try_from(obs.len()).unwrap_or(u16::MAX),
            reward,
            terminated,
            truncated,
            log_prob,
            policy_id,
        }
    }
    /// Observation `o_t` (raw).
    pub fn obs(&self) -> &[f32] {
        &self.values[..usize::from(self.obs_len).min(self.values.len())]
    }
    /// Unclipped action `u_t`.
    pub fn action(&self) -> &[f32] {
        &self.values[usize::from(self.obs_len).min(self.values.len())..]
    }
    /// Mutable observation (tests that damage records).
    pub fn obs_mut(&mut self) -> &mut [f32] {
        let n = usize::from(self.obs_len).min(self.values.len());
        &mut self.values[..n]
    }
    /// Mutable action.
    pub fn action_mut(&mut self) -> &mut [f32] {
        let n = usize::from(self.obs_len).min(self.values.len());
        &mut self.values[n..]
    }
}

/// The final observation of an episode.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeEndObs {
    /// Stream index.
    pub stream: usize,
    /// Entry number.
    pub seq: u32,
    /// Episode that ended.
    pub episode: u32,
    /// Steps it took.
    pub t: u32,
    /// `o_T`.
    pub obs: Vec<f32>,
}

/// Everything decoded from one or more streams.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecodedLog {
    /// Frames decoded and accepted.
    pub frames_ok: u64,
    /// Frames rejected (the sum of [`bad`](Self::bad)).
    pub frames_bad: u64,
    /// Rejected frames by cause.
    pub bad: BadCounts,
    /// The header of each stream. A stream starts at a header that differs
    /// from the current one, or at any header after an `End` frame; each
    /// file starts afresh.
    pub streams: Vec<Header>,
    /// Transitions in stream order.
    pub transitions: Vec<Transition>,
    /// Final observations of episodes.
    pub episode_ends: Vec<EpisodeEndObs>,
    /// Drop reports (stream index, if a header came before them).
    pub drops: Vec<(Option<usize>, Dropped)>,
    /// Device totals from `End` frames.
    pub ends: Vec<(Option<usize>, Totals)>,
    /// Boot self-test results (stream index, report).
    pub self_tests: Vec<(Option<usize>, SelfTestReport)>,
    /// Safety and fault events (stream index, event).
    pub events: Vec<(Option<usize>, Event)>,
}

impl DecodedLog {
    /// Entries the device reported as dropped.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().map(|(_, d)| d.count as u64).sum()
    }

    /// Policy ids seen in headers and transitions.
    pub fn policy_ids(&self) -> BTreeSet<u32> {
        self.streams
            .iter()
            .map(|h| h.policy_id)
            .chain(self.transitions.iter().map(|t| t.policy_id))
            .collect()
    }

    /// Distinct `(stream, episode)` pairs with at least one transition.
    pub fn episodes_seen(&self) -> usize {
        self.transitions
            .iter()
            .map(|t| (t.stream, t.episode))
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Returns of the **complete** episodes, in the order they first
    /// appear: an episode is complete when its transitions have
    /// `t = 0, 1, …, T−1` exactly once each, only the last is terminated or
    /// truncated. The return is `Σ_t r_t` accumulated in f64 in `t` order
    /// (as `tinyppo eval` sums). Episodes with a dropped, lost or faulted
    /// step are left out.
    pub fn episode_returns(&self) -> Vec<f64> {
        self.complete_episodes()
            .iter()
            .map(|steps| {
                steps
                    .iter()
                    .fold(0.0f64, |acc, &i| acc + self.transitions[i].reward as f64)
            })
            .collect()
    }

    /// The complete episodes (see [`episode_returns`](Self::episode_returns)),
    /// in the order they first appear, each as the indices of its
    /// transitions in `t` order.
    pub fn complete_episodes(&self) -> Vec<Vec<usize>> {
        let mut order = Vec::new();
        let mut groups: BTreeMap<(usize, u32), Vec<usize>> = BTreeMap::new();
        for (i, t) in self.transitions.iter().enumerate() {
            let key = (t.stream, t.episode);
            groups
                .entry(key)
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(i);
        }
        let tr = &self.transitions;
        let mut out = Vec::new();
        for key in order {
            let mut steps = groups.remove(&key).unwrap_or_default();
            steps.sort_by_key(|&i| tr[i].t);
            let n = steps.len();
            let contiguous = steps
                .iter()
                .enumerate()
                .all(|(k, &i)| tr[i].t as usize == k);
            let done = |&&i: &&usize| tr[i].terminated || tr[i].truncated;
            let ends_once = steps.last().is_some_and(|i| done(&i))
                && !steps.iter().take(n.saturating_sub(1)).any(|i| done(&i));
            if contiguous && ends_once {
                out.push(steps);
            }
        }
        out
    }

    /// Mean of [`episode_returns`](Self::episode_returns), if any episode
    /// is complete.
    pub fn mean_return(&self) -> Option<f64> {
        let r = self.episode_returns();
        (!r.is_empty()).then(|| r.iter().sum::<f64>() / r.len() as f64)
    }

    /// Appends another log (e.g. of the next file), renumbering its streams.
    pub fn append(&mut self, other: DecodedLog) {
        let off = self.streams.len();
        self.frames_ok += other.frames_ok;
        self.frames_bad += other.frames_bad;
        self.bad.cobs += other.bad.cobs;
        self.bad.crc += other.bad.crc;
        self.bad.schema += other.bad.schema;
        self.bad.truncated += other.bad.truncated;
        self.streams.extend(other.streams);
        self.transitions
            .extend(other.transitions.into_iter().map(|mut t| {
                t.stream += off;
                t
            }));
        self.episode_ends
            .extend(other.episode_ends.into_iter().map(|mut e| {
                e.stream += off;
                e
            }));
        self.drops.extend(
            other
                .drops
                .into_iter()
                .map(|(s, d)| (s.map(|s| s + off), d)),
        );
        self.ends
            .extend(other.ends.into_iter().map(|(s, t)| (s.map(|s| s + off), t)));
        self.self_tests.extend(
            other
                .self_tests
                .into_iter()
                .map(|(s, r)| (s.map(|s| s + off), r)),
        );
        self.events.extend(
            other
                .events
                .into_iter()
                .map(|(s, e)| (s.map(|s| s + off), e)),
        );
    }

    /// The entry numbers of the events, per stream: what fills a gap in
    /// the transitions' `seq` that is not a loss (see
    /// [`only_events_between`](Self::only_events_between)).
    pub fn event_seqs(&self) -> std::collections::HashSet<(usize, u32)> {
        self.events
            .iter()
            .filter_map(|(s, e)| s.map(|s| (s, e.seq)))
            .collect()
    }

    /// Every entry number strictly between `a` and `b` (mod 2³²) in
    /// `stream` is an event of `events` (`event_seqs`): nothing was lost
    /// between them. True when `b = a + 1`.
    pub fn only_events_between(
        events: &std::collections::HashSet<(usize, u32)>,
        stream: usize,
        a: u32,
        b: u32,
    ) -> bool {
        let gap = b.wrapping_sub(a);
        // A fault lasts at most one event per tick: a gap far larger than
        // any run of events is a loss (and bounds this loop).
        (1..=1 << 16).contains(&gap)
            && (1..gap).all(|d| events.contains(&(stream, a.wrapping_add(d))))
    }

    /// Events by name (`event 0x80` for an application's code), in order
    /// of first appearance, with their counts.
    pub fn event_counts(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for (_, e) in &self.events {
            let name = event_name(e.code);
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => out.push((name, 1)),
            }
        }
        out
    }
}

/// The name of an event code (`event 0x80` for an application's own).
pub fn event_name(code: u8) -> String {
    match tinyppo_runtime::log::event::name(code) {
        Some(n) => n.to_string(),
        None => format!("event {code:#04x}"),
    }
}

/// Most frames kept while waiting for a header (the simulator repeats its
/// header every episode; a few hundred frames is typical).
const MAX_PENDING: usize = 1 << 16;

/// Incremental decoder of a frame stream. Feed bytes with
/// [`push`](Self::push), then call [`finish`](Self::finish).
#[derive(Debug, Default)]
pub struct LogReader {
    log: DecodedLog,
    /// Bytes since the last delimiter (at most `MAX_FRAME_LEN`).
    frame: Vec<u8>,
    /// The current frame outgrew `MAX_FRAME_LEN`: it is bad, whatever follows.
    overflow: bool,
    dims: Option<Dims>,
    stream: Option<usize>,
    /// The current stream had its `End` frame.
    ended: bool,
    /// Intact frames with arrays, waiting for a header.
    pending: Vec<Vec<u8>>,
}

impl LogReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == DELIMITER {
                self.end_frame();
            } else if self.frame.len() < MAX_FRAME_LEN {
                self.frame.push(b);
            } else {
                self.overflow = true;
            }
        }
    }

    /// What is decoded so far (frames of the bytes pushed up to the last
    /// delimiter; a frame still arriving is not counted yet).
    pub fn log(&self) -> &DecodedLog {
        &self.log
    }

    /// Ends the stream: a partial last frame counts as
    /// [`BadCause::Truncated`], frames still waiting for a header as
    /// [`BadCause::Schema`].
    pub fn finish(mut self) -> DecodedLog {
        if !self.frame.is_empty() || self.overflow {
            self.bad(BadCause::Truncated);
        }
        for _ in 0..self.pending.len() {
            self.bad(BadCause::Schema);
        }
        self.log
    }

    fn bad(&mut self, cause: BadCause) {
        self.log.frames_bad += 1;
        self.log.bad.add(cause);
    }

    fn end_frame(&mut self) {
        let raw = std::mem::take(&mut self.frame);
        if std::mem::take(&mut self.overflow) {
            self.bad(BadCause::Cobs);
            return;
        }
        if raw.is_empty() {
            return; // two delimiters in a row: not a frame
        }
        self.decode(raw);
    }

    fn decode(&mut self, raw: Vec<u8>) {
        let mut work = raw.clone();
        match decode_frame(&mut work, self.dims) {
            Ok(frame) => self.accept(frame),
            // Bounded, so a headerless capture of any length cannot grow
            // memory without limit: past the bound, a schema error at once.
            Err(LogError::UnknownDims) if self.pending.len() < MAX_PENDING => {
                self.pending.push(raw)
            }
            Err(LogError::UnknownDims) => self.bad(BadCause::Schema),
            Err(e) => {
                if let Some(cause) = BadCause::of(&e) {
                    self.bad(cause);
                }
            }
        }
    }

    fn accept(&mut self, frame: Frame<'_>) {
        self.log.frames_ok += 1;
        match frame {
            Frame::Header(h) => {
                let same = self.stream.and_then(|s| self.log.streams.get(s)) == Some(&h);
                if !same || self.ended {
                    self.log.streams.push(h);
                    self.stream = Some(self.log.streams.len() - 1);
                    self.ended = false;
                }
                self.dims = Some(h.dims());
                for raw in std::mem::take(&mut self.pending) {
                    self.decode(raw);
                }
            }
            Frame::Transition(r) => self.log.transitions.push(Transition {
                stream: self.stream.unwrap_or(0),
                seq: r.seq,
                episode: r.episode,
                t: r.t,
                values: r.obs.iter().chain(r.action.iter()).collect(),
                obs_len: u16::try_from(r.obs.len()).unwrap_or(u16::MAX),
                reward: r.reward,
                terminated: r.terminated,
                truncated: r.truncated,
                log_prob: r.log_prob,
                policy_id: r.policy_id,
            }),
            Frame::EpisodeEnd(e) => self.log.episode_ends.push(EpisodeEndObs {
                stream: self.stream.unwrap_or(0),
                seq: e.seq,
                episode: e.episode,
                t: e.t,
                obs: e.obs.iter().collect(),
            }),
            Frame::Dropped(d) => self.log.drops.push((self.stream, d)),
            Frame::End(t) => {
                self.log.ends.push((self.stream, t));
                self.ended = true;
            }
            Frame::SelfTest(r) => self.log.self_tests.push((self.stream, r)),
            Frame::Event(e) => self.log.events.push((self.stream, e)),
        }
    }
}

/// Decodes a whole stream held in memory.
pub fn decode_stream(bytes: &[u8]) -> DecodedLog {
    let mut r = LogReader::new();
    r.push(bytes);
    r.finish()
}

/// Decodes each file as its own stream and merges the results. Files are
/// read in 64 KiB chunks (a capture of any size is never held whole).
pub fn decode_files(paths: &[impl AsRef<Path>]) -> Result<DecodedLog> {
    use std::io::Read as _;
    let mut all = DecodedLog::default();
    for p in paths {
        let p = p.as_ref();
        let mut f =
            std::fs::File::open(p).with_context(|| format!("reading log {}", p.display()))?;
        let mut r = LogReader::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("reading log {}", p.display())),
            };
            r.push(&buf[..n]);
        }
        all.append(r.finish());
    }
    Ok(all)
}

/// The log's report as one JSON object (`tinyppo logs decode --json`);
/// plant codes are named through `registry`.
pub fn report_json(log: &DecodedLog, files: &[String], registry: &Registry) -> serde_json::Value {
    let headers: Vec<_> = log
        .streams
        .iter()
        .map(|h| {
            serde_json::json!({
                "log_version": h.log_version,
                "policy_id": format!("{:08x}", h.policy_id),
                "plant": h.plant,
                "plant_name": registry.by_code(h.plant).map(|p| p.name()),
                "obs_dim": h.obs_dim,
                "act_dim": h.act_dim,
                "seed": h.seed,
                "deterministic": h.deterministic,
            })
        })
        .collect();
    let totals: Vec<_> = log
        .ends
        .iter()
        .map(|(_, t)| {
            serde_json::json!({
                "entries": t.entries,
                "transitions": t.transitions,
                "episodes": t.episodes,
                "dropped": t.dropped,
                "nonfinite_obs": t.nonfinite_obs,
                "sensor_errors": t.sensor_errors,
                "actuator_errors": t.actuator_errors,
                "return_sum": t.return_sum,
                "estop_ticks": t.safety.estop_ticks,
                "stuck_ticks": t.safety.stuck_ticks,
                "limited_ticks": t.safety.limited_ticks,
                "inhibited_ticks": t.safety.inhibited_ticks,
            })
        })
        .collect();
    let self_tests: Vec<_> = log
        .self_tests
        .iter()
        .map(|(s, r)| {
            serde_json::json!({
                "stream": s,
                "passed": r.passed(),
                "vectors": r.vectors,
                "failed": r.failed,
                "worst_index": r.worst_index,
                "worst_error": json_f32(r.worst_error),
                "tolerance": r.tolerance,
            })
        })
        .collect();
    let events: Vec<_> = log
        .events
        .iter()
        .map(|(s, e)| {
            serde_json::json!({
                "stream": s,
                "seq": e.seq,
                "episode": e.episode,
                "t": e.t,
                "code": e.code,
                "name": event_name(e.code),
                "index": e.index,
                "value": json_f32(e.value),
            })
        })
        .collect();
    serde_json::json!({
        "files": files,
        "frames_ok": log.frames_ok,
        "frames_bad": log.frames_bad,
        "bad_by_cause": {
            "cobs": log.bad.cobs,
            "crc": log.bad.crc,
            "schema": log.bad.schema,
            "truncated": log.bad.truncated,
        },
        "transitions": log.transitions.len(),
        "episodes": log.episode_returns().len(),
        "episodes_seen": log.episodes_seen(),
        "mean_return": log.mean_return(),
        "dropped": log.dropped(),
        "policy_ids": log.policy_ids().iter().map(|id| format!("{id:08x}")).collect::<Vec<_>>(),
        "headers": headers,
        "device_totals": totals,
        "self_tests": self_tests,
        "events": events,
    })
}

/// An f32 as JSON: a number, or the string `"inf"`/`"nan"` (JSON has none).
fn json_f32(v: f32) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::json!(v.to_string())
    }
}

/// Runs `blob` on plant `P` through the device control loop
/// ([`sim::run_simulated`], hidden scratch 256, queue of 64 entries) and
/// returns the log stream and the statistics. The bytes are those a
/// firmware running the same call produces.
pub fn simulate_on<P: Plant<O, A>, const O: usize, const A: usize>(
    blob: &[u8],
    cfg: &RunConfig,
    plant: &mut P,
) -> Result<(Vec<u8>, RunStats)> {
    let policy = crate::evaluate::load_for::<P, O, A>(blob)?;
    let mut bytes = Vec::new();
    let stats = sim::run_simulated::<P, O, A, 256, 64>(&policy, plant, cfg, &mut |f| {
        bytes.extend_from_slice(f)
    });
    Ok((bytes, stats))
}
