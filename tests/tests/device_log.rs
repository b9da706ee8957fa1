//! Device log frames (`runtime/src/log.rs`, `docs/FORMAT.md` "Log frames"):
//! round trips, golden bytes built from the spec with an independent CRC and
//! COBS, every rejection class, the drop rule of the bounded queue, and a
//! corruption test on a simulated log (flipped, deleted and inserted bytes:
//! intact frames still decode, damaged ones are counted, nothing wrong is
//! accepted).

use std::collections::{BTreeMap, HashSet};

use tinyppo_runtime::log::{
    self, decode_frame, encode_dropped, encode_end, encode_episode_end, encode_header,
    encode_transition, Dims, Dropped, Entry, EpisodeEnd, Frame, Header, LogError, Logger, Record,
    SafetyTotals, Totals, LOG_VERSION, MAX_FRAME_LEN,
};
use tinyppo_runtime::plants::Pendulum;
use tinyppo_runtime::sim::{run_simulated, RunConfig};
use tinyppo_runtime::{Activation, Policy};
use tinyppo_trainer::logs::{decode_stream, LogReader};

use crate::util::{crc32c_ref, Net, TestRng, Writer};

// ---------------------------------------------------------------------------
// Independent reference encoder (from the spec, not from the runtime).

/// COBS (Cheshire & Baker 1999) of `data`, without the delimiter: a code
/// byte `k` says "k−1 data bytes follow, then a zero (unless k = 0xFF or
/// this is the last block)".
fn cobs_ref(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    let (mut code_at, mut code) = (0, 1u8);
    for &b in data {
        if b == 0 {
            out[code_at] = code;
            code_at = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(b);
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out
}

/// A frame from a body: `COBS(body ‖ CRC-32C(body) LE) ‖ 00`.
fn frame_ref(body: &[u8]) -> Vec<u8> {
    let mut raw = body.to_vec();
    raw.extend_from_slice(&crc32c_ref(body).to_le_bytes());
    let mut f = cobs_ref(&raw);
    f.push(0);
    f
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn enc(f: impl FnOnce(&mut [u8]) -> Result<usize, LogError>) -> Vec<u8> {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let n = f(&mut buf).expect("encode");
    buf.truncate(n);
    buf
}

const DIMS: Option<Dims> = Some(Dims { obs: 3, act: 1 });

fn sample_record() -> Record<3, 1> {
    Record {
        seq: 70_000,
        episode: 3,
        t: 199,
        obs: [0.5, -0.0, f32::from_bits(0x7FC0_0001)],
        action: [-2.5],
        reward: -16.25,
        terminated: false,
        truncated: true,
        log_prob: -1.125,
        policy_id: 0xC3D4_4C01,
    }
}

fn sample_header() -> Header {
    Header {
        log_version: LOG_VERSION,
        policy_id: 0xDEAD_BEEF,
        plant: 0,
        obs_dim: 3,
        act_dim: 1,
        seed: u64::MAX,
        deterministic: true,
    }
}

// ---------------------------------------------------------------------------
// Round trips and framing.

#[test]
fn every_frame_kind_round_trips() {
    let h = sample_header();
    let mut f = enc(|b| encode_header(&h, b));
    assert_eq!(decode_frame(&mut f, None), Ok(Frame::Header(h)));

    let r = sample_record();
    let mut f = enc(|b| encode_transition(&r, b));
    match decode_frame(&mut f, DIMS).unwrap() {
        Frame::Transition(d) => {
            // Bit-exact, NaN payload and −0 included.
            let back = d.to_record::<3, 1>().unwrap();
            assert_eq!(back.obs.map(f32::to_bits), r.obs.map(f32::to_bits));
            assert_eq!(back.seq, r.seq);
            assert_eq!((back.reward, back.log_prob), (r.reward, r.log_prob));
            assert_eq!((back.terminated, back.truncated), (false, true));
            assert_eq!(back.policy_id, r.policy_id);
            assert_eq!(d.obs.len(), 3);
            assert_eq!(d.action.get(0), Some(-2.5));
            assert_eq!(d.action.get(1), None);
            assert!(d.to_record::<2, 2>().is_none());
        }
        other => panic!("{other:?}"),
    }

    let d = Dropped {
        first_seq: u32::MAX,
        count: 1,
    };
    let mut f = enc(|b| encode_dropped(&d, b));
    assert_eq!(decode_frame(&mut f, None), Ok(Frame::Dropped(d)));

    let e = EpisodeEnd {
        seq: 9,
        episode: 1,
        t: 200,
        obs: [1.0, 2.0, 3.0],
    };
    let mut f = enc(|b| encode_episode_end(&e, b));
    match decode_frame(&mut f, DIMS).unwrap() {
        Frame::EpisodeEnd(x) => {
            assert_eq!((x.seq, x.episode, x.t), (9, 1, 200));
            assert_eq!(x.obs.to_array::<3>(), Some([1.0, 2.0, 3.0]));
        }
        other => panic!("{other:?}"),
    }

    let t = Totals {
        entries: 402,
        transitions: 400,
        episodes: 2,
        dropped: 0,
        nonfinite_obs: 1,
        sensor_errors: 2,
        actuator_errors: 3,
        return_sum: -1234.5678,
        safety: SafetyTotals {
            estop_ticks: 40,
            stuck_ticks: 5,
            limited_ticks: 300,
            inhibited_ticks: 0,
        },
    };
    let mut f = enc(|b| encode_end(&t, b));
    assert_eq!(decode_frame(&mut f, None), Ok(Frame::End(t)));
}

/// An `End` frame written before the safety counters were appended (tag
/// 4, seven varints and the f64 return sum) still decodes, with zeros; one
/// with only some of the counters is malformed.
#[test]
fn end_frame_without_safety_counters_reads_as_zeros() {
    let old = (4u32, (3u32, 2u32, 1u32, 0u32, 7u32, 8u32, 9u32), -1.5f64);
    let body = postcard::to_allocvec(&old).unwrap();
    let want = Totals {
        entries: 3,
        transitions: 2,
        episodes: 1,
        dropped: 0,
        nonfinite_obs: 7,
        sensor_errors: 8,
        actuator_errors: 9,
        return_sum: -1.5,
        safety: SafetyTotals::default(),
    };
    assert_eq!(
        decode_frame(&mut frame_ref(&body), None),
        Ok(Frame::End(want))
    );
    let mut partial = body.clone();
    partial.extend_from_slice(&[5, 6]);
    assert_eq!(
        decode_frame(&mut frame_ref(&partial), None),
        Err(LogError::Malformed)
    );
}

#[test]
fn frames_have_one_zero_at_the_end_and_fit_the_bound() {
    // Worst case for COBS and varints: 256/256 dims, no zero byte in the
    // body, every varint at its longest.
    let nz = f32::from_bits(0x0101_0101);
    let r = Record::<256, 256> {
        seq: u32::MAX,
        episode: u32::MAX,
        t: u32::MAX,
        obs: [nz; 256],
        action: [nz; 256],
        reward: nz,
        terminated: true,
        truncated: true,
        log_prob: nz,
        policy_id: 0x0101_0101,
    };
    let f = enc(|b| encode_transition(&r, b));
    assert!(f.len() <= MAX_FRAME_LEN, "{} > {MAX_FRAME_LEN}", f.len());
    assert!(f.len() <= log::max_frame_len(256, 256));
    assert_eq!(*f.last().unwrap(), 0);
    assert!(!f[..f.len() - 1].contains(&0));
    // Too small a buffer is an error, never a panic, for every length.
    for n in 0..f.len() {
        let mut buf = vec![0u8; n];
        assert_eq!(
            encode_transition(&r, &mut buf),
            Err(LogError::BufferTooSmall),
            "{n}"
        );
    }
    let mut buf = vec![0u8; f.len()];
    assert_eq!(encode_transition(&r, &mut buf), Ok(f.len()));

    // Small dims: the bound of the logger holds for the sample record.
    let f = enc(|b| encode_transition(&sample_record(), b));
    assert!(f.len() <= Logger::<3, 1, 4>::MAX_FRAME);
    assert!(!f[..f.len() - 1].contains(&0));
}

// ---------------------------------------------------------------------------
// Golden bytes (docs/FORMAT.md, "Log frames", example).

/// The transition of the spec's example, as `Record<1, 1>`.
fn golden_record() -> Record<1, 1> {
    Record {
        seq: 5,
        episode: 0,
        t: 5,
        obs: [0.5],
        action: [-1.0],
        reward: -0.25,
        terminated: false,
        truncated: false,
        log_prob: -0.75,
        policy_id: 0xC3D4_4C01,
    }
}

#[test]
fn golden_transition_frame() {
    // The body written field by field from the spec's table.
    let mut w = Writer::default();
    w.varint(1) // tag: Transition
        .varint(5) // seq
        .varint(0) // episode
        .varint(5) // t
        .f32(0.5) // obs[0]
        .f32(-1.0) // action[0]
        .f32(-0.25) // reward
        .u8(0) // terminated
        .u8(0) // truncated
        .f32(-0.75); // log_prob
    w.0.extend_from_slice(&0xC3D4_4C01u32.to_le_bytes()); // policy_id, fixed LE
    let expected = frame_ref(&w.0);
    let got = enc(|b| encode_transition(&golden_record(), b));
    assert_eq!(hex(&got), hex(&expected));
    // The bytes printed in docs/FORMAT.md.
    let golden = "03 01 05 02 05 01 01 02 3f 01 03 80 bf 01 03 80 be 01 01 01 \
                  0b 40 bf 01 4c d4 c3 ca 72 92 4a 00";
    assert_eq!(
        hex(&got),
        golden.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    // The body is 26 bytes and its CRC is the one the doc names.
    assert_eq!(w.0.len(), 26);
    assert_eq!(crc32c_ref(&w.0), 0x4A92_72CA);
}

#[test]
fn golden_header_and_dropped_frames() {
    let h = Header {
        log_version: 1,
        policy_id: 0xC3D4_4C01,
        plant: 0,
        obs_dim: 3,
        act_dim: 1,
        seed: 300,
        deterministic: false,
    };
    let mut w = Writer::default();
    w.varint(0).varint(1);
    w.0.extend_from_slice(&0xC3D4_4C01u32.to_le_bytes());
    w.u8(0).varint(3).varint(1).varint(300).u8(0);
    assert_eq!(hex(&enc(|b| encode_header(&h, b))), hex(&frame_ref(&w.0)));
    // As printed in docs/FORMAT.md (CRC-32C 0x0250A663).
    assert_eq!(
        hex(&enc(|b| encode_header(&h, b))),
        "01 06 01 01 4c d4 c3 05 03 01 ac 02 05 63 a6 50 02 00"
    );

    let mut w = Writer::default();
    w.varint(2).varint(128).varint(3);
    let d = Dropped {
        first_seq: 128,
        count: 3,
    };
    assert_eq!(hex(&enc(|b| encode_dropped(&d, b))), hex(&frame_ref(&w.0)));
    assert_eq!(
        hex(&enc(|b| encode_dropped(&d, b))),
        "09 02 80 01 03 86 74 d5 7c 00"
    );
}

// ---------------------------------------------------------------------------
// Rejections.

/// A frame around an arbitrary body, with a correct CRC.
fn with_body(body: &[u8]) -> Vec<u8> {
    frame_ref(body)
}

#[test]
fn decoder_rejects_each_class() {
    let good = enc(|b| encode_transition(&sample_record(), b));

    assert_eq!(decode_frame(&mut [], DIMS), Err(LogError::Empty));
    assert_eq!(decode_frame(&mut [0], DIMS), Err(LogError::Empty));
    let mut long = vec![1u8; MAX_FRAME_LEN];
    assert!(matches!(
        decode_frame(&mut long, DIMS),
        Err(LogError::TooLong { .. })
    ));
    // A zero inside (two frames run together, or a flipped code byte).
    let mut z = good.clone();
    z[3] = 0;
    assert_eq!(decode_frame(&mut z, DIMS), Err(LogError::Cobs));
    // A code byte pointing past the end.
    assert_eq!(decode_frame(&mut [0x09, 1, 2], DIMS), Err(LogError::Cobs));
    // Decodes to fewer than tag + CRC.
    assert!(matches!(
        decode_frame(&mut [0x05, 1, 2, 3, 4], DIMS),
        Err(LogError::TooShort { len: 4 })
    ));
    // Any flipped bit in the body or CRC: BadChecksum (or Cobs if it
    // hits a code byte so that the structure breaks).
    for i in 0..good.len() - 1 {
        for bit in 0..8 {
            let mut f = good.clone();
            f[i] ^= 1 << bit;
            let r = decode_frame(&mut f, DIMS);
            assert!(
                matches!(
                    r,
                    Err(LogError::BadChecksum { .. })
                        | Err(LogError::Cobs)
                        | Err(LogError::TooShort { .. })
                ),
                "byte {i} bit {bit}: {r:?}"
            );
        }
    }
    // Truncated frame (delimiter present, bytes missing).
    let mut t = good[..good.len() - 3].to_vec();
    t.push(0);
    assert!(decode_frame(&mut t, DIMS).is_err());

    // Schema errors, with a correct CRC.
    assert_eq!(
        decode_frame(&mut with_body(&[9, 1, 2]), DIMS),
        Err(LogError::UnknownKind { tag: 9 })
    );
    let mut w = Writer::default();
    w.varint(0).varint(2).u8(1).u8(2).u8(3).u8(4);
    assert_eq!(
        decode_frame(&mut with_body(&w.0), DIMS),
        Err(LogError::UnsupportedVersion { found: 2 })
    );
    let header_body = |obs: u64, act: u64| {
        let mut w = Writer::default();
        w.varint(0)
            .varint(1)
            .u8(1)
            .u8(2)
            .u8(3)
            .u8(4)
            .u8(0)
            .varint(obs)
            .varint(act)
            .varint(0)
            .u8(0);
        w.0
    };
    assert_eq!(
        decode_frame(&mut with_body(&header_body(0, 1)), None),
        Err(LogError::BadDims {
            obs_dim: 0,
            act_dim: 1
        })
    );
    assert_eq!(
        decode_frame(&mut with_body(&header_body(3, 257)), None),
        Err(LogError::BadDims {
            obs_dim: 3,
            act_dim: 257
        })
    );
    assert!(matches!(
        decode_frame(&mut with_body(&header_body(256, 256)), None),
        Ok(Frame::Header(_))
    ));
    // A trailing byte after a valid header body.
    let mut hb = header_body(3, 1);
    hb.push(7);
    assert_eq!(
        decode_frame(&mut with_body(&hb), None),
        Err(LogError::Malformed)
    );
    // A bool that is not 0/1.
    let mut hb = header_body(3, 1);
    *hb.last_mut().unwrap() = 2;
    assert_eq!(
        decode_frame(&mut with_body(&hb), None),
        Err(LogError::Malformed)
    );
    // Arrays without dims, and with the wrong dims.
    let mut f = good.clone();
    assert_eq!(decode_frame(&mut f, None), Err(LogError::UnknownDims));
    let mut f = good.clone();
    assert_eq!(
        decode_frame(&mut f, Some(Dims { obs: 2, act: 1 })),
        Err(LogError::Malformed)
    );
    let mut f = good.clone();
    assert_eq!(
        decode_frame(&mut f, Some(Dims { obs: 4, act: 1 })),
        Err(LogError::Malformed)
    );
    // A dims-free frame decodes without dims.
    assert!(decode_frame(&mut good.clone(), DIMS).is_ok());
}

#[test]
fn decoder_never_panics_on_random_bytes() {
    let mut rng = TestRng::new(0xF4A3);
    let good = enc(|b| encode_transition(&sample_record(), b));
    for i in 0..20_000 {
        let n = rng.below(80);
        let mut f: Vec<u8> = if i % 2 == 0 {
            (0..n).map(|_| rng.below(256) as u8).collect()
        } else {
            // Mostly-valid frames with a few random bytes.
            let mut f = good.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(f.len());
                f[at] = rng.below(256) as u8;
            }
            f
        };
        let dims = if rng.below(2) == 0 { None } else { DIMS };
        let _ = decode_frame(&mut f, dims);
    }
}

// ---------------------------------------------------------------------------
// The queue and its drop rule.

fn rec(t: u32) -> Entry<1, 1> {
    Entry::Transition(Record {
        seq: 0,
        episode: 0,
        t,
        obs: [t as f32],
        action: [0.0],
        reward: 1.0,
        terminated: false,
        truncated: false,
        log_prob: 0.0,
        policy_id: 7,
    })
}

/// Drains `log` and returns what its frames say, as short strings.
fn drain<const CAP: usize>(log: &mut Logger<1, 1, CAP>) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    while let Some(n) = log.encode_next(&mut buf).unwrap() {
        let dims = Some(Dims { obs: 1, act: 1 });
        out.push(match decode_frame(&mut buf[..n], dims).unwrap() {
            Frame::Transition(r) => format!("T{}", r.seq),
            Frame::Dropped(d) => format!("D{}+{}", d.first_seq, d.count),
            Frame::EpisodeEnd(e) => format!("E{}", e.seq),
            other => panic!("{other:?}"),
        });
    }
    out
}

#[test]
fn full_queue_drops_the_newest_and_reports_the_gap_in_place() {
    let mut log = Logger::<1, 1, 2>::new();
    assert_eq!(log.push(rec(0)), Ok(0));
    assert_eq!(log.push(rec(1)), Ok(1));
    // Full: 2 and 3 are dropped and handed back with their seq.
    match log.push(rec(2)) {
        Err(Entry::Transition(r)) => assert_eq!(r.seq, 2),
        other => panic!("{other:?}"),
    }
    assert!(log.push(rec(3)).is_err());
    assert_eq!(log.dropped(), 2);
    // One frame out: room for 4, which carries the gap before it.
    let mut buf = [0u8; 64];
    assert!(log.encode_next(&mut buf).unwrap().is_some()); // T0
    assert_eq!(log.push(rec(4)), Ok(4));
    assert_eq!(drain(&mut log), ["T1", "D2+2", "T4"]);
    // Drops after everything queued: reported once the queue is empty.
    assert_eq!(log.push(rec(5)), Ok(5));
    assert_eq!(log.push(rec(6)), Ok(6));
    assert!(log.push(rec(7)).is_err());
    assert_eq!(drain(&mut log), ["T5", "T6", "D7+1"]);
    assert!(!log.has_frames());
    assert_eq!((log.next_seq(), log.dropped()), (8, 3));
    // A too-small buffer changes nothing.
    log.push(rec(8)).unwrap();
    assert_eq!(
        log.encode_next(&mut [0u8; 4]),
        Err(LogError::BufferTooSmall)
    );
    assert_eq!(drain(&mut log), ["T8"]);
}

#[test]
fn a_one_entry_queue_drained_every_k_ticks_accounts_for_every_seq() {
    // CAP = 1, drained every k pushes: every seq is either sent or inside
    // exactly one Dropped run.
    for k in 1..6 {
        let mut log = Logger::<1, 1, 1>::new();
        let mut frames = Vec::new();
        for i in 0..100 {
            let _ = log.push(rec(i));
            if i % k == k - 1 {
                frames.extend(drain(&mut log));
            }
        }
        frames.extend(drain(&mut log));
        let mut seen = vec![0u32; 100];
        let mut dropped = 0;
        for f in &frames {
            if let Some(s) = f.strip_prefix('T') {
                seen[s.parse::<usize>().unwrap()] += 1;
            } else if let Some(d) = f.strip_prefix('D') {
                let (a, c) = d.split_once('+').unwrap();
                let (a, c): (usize, usize) = (a.parse().unwrap(), c.parse().unwrap());
                dropped += c;
                for s in &mut seen[a..a + c] {
                    *s += 1;
                }
            }
        }
        assert!(seen.iter().all(|&c| c == 1), "k={k}: {frames:?}");
        assert_eq!(dropped as u32, log.dropped(), "k={k}");
        assert_eq!(dropped > 0, k > 1, "k={k}");
    }
}

// ---------------------------------------------------------------------------
// Corruption of a simulated log.

/// A two-episode pendulum log of a random policy.
fn simulated_log() -> Vec<u8> {
    let net = Net::random(
        &mut TestRng::new(11),
        3,
        1,
        &[8],
        Activation::Tanh,
        (-1.0, 0.0),
    );
    let blob = net.encode_int8();
    let policy = Policy::<3, 1, 8>::from_bytes(&blob).unwrap();
    let cfg = RunConfig {
        episodes: 2,
        seed: 5,
        deterministic: false,
    };
    let mut bytes = Vec::new();
    run_simulated::<_, 3, 1, 8, 4>(&policy, &mut Pendulum::new(), &cfg, &mut |f| {
        bytes.extend_from_slice(f)
    });
    bytes
}

/// `(start, end)` of every frame: bytes `start..end`, delimiter at `end`.
fn spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == 0 {
            out.push((start, i));
            start = i + 1;
        }
    }
    out
}

#[test]
fn corrupted_logs_lose_only_damaged_frames_and_accept_nothing_wrong() {
    let orig = simulated_log();
    let orig_spans = spans(&orig);
    assert_eq!(orig_spans.last().unwrap().1, orig.len() - 1);
    let originals: HashSet<&[u8]> = orig_spans.iter().map(|&(a, b)| &orig[a..b]).collect();
    let clean = decode_stream(&orig);
    assert_eq!(clean.frames_bad, 0);
    assert_eq!(clean.frames_ok as usize, orig_spans.len());
    let by_seq: BTreeMap<u32, _> = clean.transitions.iter().map(|t| (t.seq, t)).collect();
    assert_eq!(by_seq.len(), 400);

    let mut rng = TestRng::new(0xC0DE);
    let mut damaged_total = 0;
    for trial in 0..300 {
        // Up to 8 mutations at distinct positions (original coordinates).
        let k = 1 + rng.below(8);
        let mut muts: BTreeMap<usize, u8> = BTreeMap::new();
        while muts.len() < k {
            muts.insert(rng.below(orig.len()), rng.below(3) as u8);
        }
        let mut bytes = orig.clone();
        let mut touched = Vec::new();
        for (&p, &kind) in muts.iter().rev() {
            match kind {
                0 => {
                    bytes[p] ^= 1 << rng.below(8);
                    touched.push(p);
                }
                1 => {
                    bytes.remove(p);
                    touched.push(p);
                }
                _ => {
                    bytes.insert(p, rng.below(256) as u8);
                    touched.extend([p.saturating_sub(1), p]);
                }
            }
        }
        let log = decode_stream(&bytes);

        // Split the damaged stream as a reader does; every segment that
        // decodes is byte-identical to an original frame.
        let segs = spans(&bytes);
        let tail = bytes.len() - segs.last().map_or(0, |s| s.1 + 1);
        let mut ok = 0;
        let mut nonempty = 0;
        for &(a, b) in &segs {
            if a == b {
                continue;
            }
            nonempty += 1;
            let mut f = bytes[a..b].to_vec();
            if decode_frame(&mut f, DIMS).is_ok() {
                ok += 1;
                assert!(
                    originals.contains(&bytes[a..b]),
                    "trial {trial}: accepted a damaged frame"
                );
            }
        }
        // The reader counts every segment once: ok, or bad by cause.
        assert_eq!(
            log.frames_ok + log.frames_bad,
            (nonempty + usize::from(tail > 0)) as u64
        );
        assert_eq!(log.frames_ok, ok as u64, "trial {trial}");
        assert_eq!(log.bad.truncated, u64::from(tail > 0));
        assert_eq!(
            log.frames_bad,
            log.bad.cobs + log.bad.crc + log.bad.schema + log.bad.truncated
        );

        // Every decoded transition is the original one with that seq.
        for t in &log.transitions {
            assert_eq!(Some(&t), by_seq.get(&t.seq), "trial {trial}");
        }
        // Every frame whose bytes and both delimiters are untouched is
        // still decoded (transitions checked by seq).
        let decoded: HashSet<u32> = log.transitions.iter().map(|t| t.seq).collect();
        let mut untouched = 0;
        for &(a, b) in &orig_spans {
            let lo = a.saturating_sub(1);
            if touched.iter().any(|&p| (lo..=b).contains(&p)) {
                damaged_total += 1;
                continue;
            }
            untouched += 1;
            let mut f = orig[a..b].to_vec();
            if let Ok(Frame::Transition(r)) = decode_frame(&mut f, DIMS) {
                assert!(
                    decoded.contains(&r.seq),
                    "trial {trial}: lost intact seq {}",
                    r.seq
                );
            }
        }
        assert!(log.frames_ok as usize >= untouched, "trial {trial}");
        if muts.len() == 1 && *muts.values().next().unwrap() != 2 {
            // One flip or deletion damages at least one frame.
            assert!(log.frames_bad >= 1, "trial {trial}");
        }
    }
    assert!(damaged_total > 300);
}

#[test]
fn a_reader_without_the_first_header_recovers_from_the_next_one() {
    let orig = simulated_log();
    let s = spans(&orig);
    // Drop the first header frame entirely: transitions of episode 0 wait
    // for the header repeated before episode 1, then decode.
    let cut = &orig[s[0].1 + 1..];
    let log = decode_stream(cut);
    let full = decode_stream(&orig);
    assert_eq!(log.frames_bad, 0);
    assert_eq!(log.transitions.len(), full.transitions.len());
    assert_eq!(log.episode_returns(), full.episode_returns());

    // Fed in arbitrary chunks, a reader gets the same result.
    let mut r = LogReader::new();
    for c in orig.chunks(7) {
        r.push(c);
    }
    assert_eq!(r.finish(), full);

    // No header at all: every array frame is a schema error.
    let mut bytes = Vec::new();
    for &(a, b) in &s {
        let mut f = orig[a..b].to_vec();
        if !matches!(decode_frame(&mut f, None), Ok(Frame::Header(_))) {
            bytes.extend_from_slice(&orig[a..=b]);
        }
    }
    let log = decode_stream(&bytes);
    assert_eq!(log.bad.schema, 402);
    assert!(log.transitions.is_empty());
}
