//! Shared by the fuzz targets: run whatever loads, and check the runtime's
//! guarantee (no panic; no non-finite action from a valid blob).

use tinyppo_runtime::history::ActionHistory;
use tinyppo_runtime::log::{decode_frame, Dims, Frame};
use tinyppo_runtime::safety::Guard;
use tinyppo_runtime::{rng, selftest, Blob, Policy};

#[allow(dead_code)] // Used by the blob targets only.
const OBS: [[f32; 3]; 4] = [
    [0.0, 0.0, 0.0],
    [1.0, -2.0, 3.0],
    [f32::MAX, -f32::MAX, 1e30],
    [-1e-40, 1e-40, -0.0],
];

#[allow(dead_code)]
fn run<const O: usize, const A: usize, const H: usize>(bytes: &[u8]) {
    let Ok(p) = Policy::<O, A, H>::from_bytes(bytes) else {
        return;
    };
    let mut r = rng::seeded(0);
    // With an action-history record the policy needs the history (the
    // `*_with` methods; the plain ones must refuse, not panic).
    let mut hist = ActionHistory::new(p.safe_action());
    // The safety layer on the same actions: within its limits, finite.
    let limits = p.limits();
    let mut guard = Guard::new(limits, p.safe_action());
    for obs in OBS {
        let obs: [f32; O] = core::array::from_fn(|i| obs[i % 3]);
        let step = p.act_with(&obs, &hist, &mut r).expect("finite observation");
        assert!(step
            .action
            .iter()
            .chain(&step.applied)
            .all(|v| v.is_finite()));
        assert!(step.log_prob.is_finite());
        assert!(p
            .mean_with(&obs, &hist)
            .unwrap()
            .iter()
            .all(|v| v.is_finite()));
        assert_eq!(p.act(&obs, &mut r).is_ok(), p.history_len() == 0);
        let _ = guard.check(&obs);
        let limited = guard.limit(&step.applied);
        for ((a, lo), hi) in limited
            .iter()
            .zip(&limits.action_low)
            .zip(&limits.action_high)
        {
            assert!(
                a.is_finite() && lo <= a && a <= hi,
                "{a} outside [{lo}, {hi}]"
            );
        }
        guard.applied(&limited);
        hist.push(step.applied);
    }
    // The self-test runs on any blob that loaded (pass or fail, no panic).
    if let Some(r) = selftest::run(&p) {
        assert!(r.failed <= r.vectors);
    }
    // The optional records this runtime knows read back.
    let blob = Blob::parse(bytes).expect("it loaded");
    let _ = blob.realism();
    if let Some(v) = blob.safety() {
        assert_eq!(tinyppo_runtime::safety::Limits::from_view(&v), p.limits());
    }
    assert_eq!(blob.self_test().is_some(), p.self_test().is_some());
    assert_eq!(blob.history().map_or(0, |h| h.len), p.history_len());
}

#[allow(dead_code)] // Used by the blob targets only.
pub fn check(bytes: &[u8]) {
    let Ok(blob) = Blob::parse(bytes) else { return };
    // Dispatch on the small shapes the seeds and their mutations have.
    match (blob.obs_dim, blob.act_dim) {
        (1, 1) => run::<1, 1, 256>(bytes),
        (2, 1) => run::<2, 1, 256>(bytes),
        (3, 1) => run::<3, 1, 256>(bytes),
        (3, 2) => run::<3, 2, 256>(bytes),
        _ => {}
    }
}

/// Frames `payload` as a blob of format `version` with a valid policy id
/// and CRC, so the fuzzer's bytes reach payload validation instead of the
/// checksum.
#[allow(dead_code)] // Used by the `payload` target only.
pub fn frame(version: u16, payload: &[u8]) -> Vec<u8> {
    use tinyppo_runtime::format::CRC32C;
    let mut b = b"TPPO".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&CRC32C.checksum(payload).to_le_bytes());
    b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    b.extend_from_slice(payload);
    let crc = CRC32C.checksum(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The dimensions a log decoder is told, from one byte: none (only a
/// header decodes), or one of a few small shapes.
#[allow(dead_code)] // Used by the log-frame targets.
pub fn dims(d: u8) -> Option<Dims> {
    match d % 4 {
        0 => None,
        1 => Some(Dims { obs: 3, act: 1 }),
        2 => Some(Dims { obs: 1, act: 1 }),
        _ => Some(Dims { obs: 4, act: 2 }),
    }
}

/// `body` as a log frame: CRC-32C appended, COBS-encoded, delimited.
#[allow(dead_code)] // Used by the `frame_body` target.
pub fn frame_log_body(body: &[u8]) -> Vec<u8> {
    use tinyppo_runtime::format::CRC32C;
    let mut raw = body.to_vec();
    raw.extend_from_slice(&CRC32C.checksum(body).to_le_bytes());
    let mut out = vec![0u8; cobs::max_encoding_length(raw.len()) + 1];
    let n = cobs::encode(&raw, &mut out);
    out.truncate(n);
    out.push(0);
    out
}

/// Decodes one frame; checks what a decoded frame promises (the arrays
/// have the dimensions given).
#[allow(dead_code)] // Used by the log-frame targets.
pub fn decode_checked(frame: &mut [u8], dims: Option<Dims>) {
    match decode_frame(frame, dims) {
        Ok(Frame::Transition(r)) => {
            let d = dims.expect("a transition needs dimensions");
            assert_eq!(r.obs.len(), d.obs);
            assert_eq!(r.action.len(), d.act);
        }
        Ok(Frame::EpisodeEnd(e)) => {
            let d = dims.expect("an episode end needs dimensions");
            assert_eq!(e.obs.len(), d.obs);
        }
        Ok(Frame::Header(h)) => {
            assert!(h.obs_dim >= 1 && h.act_dim >= 1);
        }
        Ok(_) | Err(_) => {}
    }
}
