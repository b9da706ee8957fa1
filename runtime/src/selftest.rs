//! The boot self-test: test vectors in the blob, checked on the device.
//!
//! `tinyppo export` evaluates the exported blob with this runtime on the
//! host (the same int8 or f32 code the device runs) on a few observations
//! and stores them with the mean actions it computed. At boot the
//! firmware's driver computes the same means and compares: the worst
//! absolute error over all vectors and action dimensions must be within
//! the stored tolerance. The result goes into the log (a `SelfTest` frame
//! after the first header); on failure the control loop applies only the
//! safe action for the whole run, counted
//! ([`SafetyTotals::inhibited_ticks`](crate::log::SafetyTotals)).
//!
//! What it catches that the blob's CRC (checked at boot too) does not: a
//! kernel that computes differently on the device (a compiler, a flag, a
//! hand-written assembly path), a runtime built with other settings, and
//! corruption of what the policy copied to RAM after the CRC was checked.
//!
//! For a policy with an action history the means are those at an
//! episode's first tick: every past action is the safe action.
//!
//! The record is **optional** (tag [`TAG`], `0x81`): a runtime that does
//! not know it skips it, and blobs without it load (no `SelfTest` frame).
//! Body (postcard, `docs/FORMAT.md`):
//!
//! ```text
//! count      u8     vectors, 1–8 (MAX_VECTORS)
//! tolerance  f32    largest accepted |μ_device − μ_stored|, > 0
//! obs        bytes  count·OBS f32 LE, finite
//! mean       bytes  count·ACT f32 LE, finite
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Field, FormatError};
use crate::format::{check_f32s, f32_array, f32s, F32Bytes};
use crate::history::ActionHistory;
use crate::policy::Policy;

/// The tag of the self-test record (optional: `0x80–0xFF`).
pub const TAG: u8 = 0x81;

/// Most vectors in a record.
pub const MAX_VECTORS: usize = 8;

/// A checked self-test record, borrowed from the blob.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelfTestView<'a> {
    /// Vectors, 1–8.
    pub count: usize,
    /// Largest accepted absolute error.
    pub tolerance: f32,
    /// `count·OBS` f32 LE observations.
    pub obs: &'a [u8],
    /// `count·ACT` f32 LE expected means.
    pub mean: &'a [u8],
}

#[derive(Deserialize)]
struct RawSelfTest<'a> {
    count: u8,
    tolerance: f32,
    obs: &'a [u8],
    mean: &'a [u8],
}

/// Checks a self-test record's body against the blob's dimensions.
pub fn parse_body(
    body: &[u8],
    obs_dim: usize,
    act_dim: usize,
) -> Result<SelfTestView<'_>, FormatError> {
    let raw: RawSelfTest<'_> = match postcard::take_from_bytes(body) {
        Ok((r, [])) => r,
        _ => return Err(FormatError::Malformed),
    };
    let count = raw.count as usize;
    if !(1..=MAX_VECTORS).contains(&count) {
        return Err(FormatError::BadWidth {
            field: Field::SelfTestCount,
            found: count,
            max: MAX_VECTORS,
        });
    }
    if !(raw.tolerance.is_finite() && raw.tolerance > 0.0) {
        return Err(FormatError::BadScale {
            field: Field::SelfTestTolerance,
            index: 0,
        });
    }
    check_f32s(Field::SelfTestObs, raw.obs, count * obs_dim, |_| true)?;
    check_f32s(Field::SelfTestMean, raw.mean, count * act_dim, |_| true)?;
    Ok(SelfTestView {
        count,
        tolerance: raw.tolerance,
        obs: raw.obs,
        mean: raw.mean,
    })
}

/// A self-test record to encode.
#[derive(Debug, Clone, Copy)]
pub struct SelfTestSpec<'a> {
    /// Largest accepted absolute error.
    pub tolerance: f32,
    /// Observations, vector after vector (`count·OBS`).
    pub obs: &'a [f32],
    /// Expected means, vector after vector (`count·ACT`).
    pub mean: &'a [f32],
}

#[derive(Serialize)]
struct SelfTestOut<'a> {
    count: u8,
    tolerance: f32,
    obs: F32Bytes<'a>,
    mean: F32Bytes<'a>,
}

/// Writes the body of a self-test record of `count` vectors into `out`;
/// its length, or `None` if `out` is too small ([`max_body_len`]).
pub fn encode_body(spec: &SelfTestSpec<'_>, count: u8, out: &mut [u8]) -> Option<usize> {
    let raw = SelfTestOut {
        count,
        tolerance: spec.tolerance,
        obs: F32Bytes(spec.obs),
        mean: F32Bytes(spec.mean),
    };
    postcard::to_slice(&raw, out).ok().map(|b| b.len())
}

/// The body length [`encode_body`] needs at most for `spec`.
pub fn max_body_len(spec: &SelfTestSpec<'_>) -> usize {
    1 + 4 + 2 * 5 + 4 * (spec.obs.len() + spec.mean.len())
}

/// The result of a self-test, as the `SelfTest` log frame carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SelfTestReport {
    /// Vectors checked.
    pub vectors: u8,
    /// Vectors whose error exceeded the tolerance.
    pub failed: u8,
    /// The vector with the largest error.
    pub worst_index: u8,
    /// The largest absolute error over all vectors and dimensions
    /// (`+∞` where the policy refused a vector).
    pub worst_error: f32,
    /// The stored tolerance.
    pub tolerance: f32,
}

impl SelfTestReport {
    /// Every vector was within the tolerance.
    pub fn passed(&self) -> bool {
        self.failed == 0
    }
}

/// Runs the blob's self-test vectors through `policy` (the mean action at
/// an episode's first tick). `None` if the blob has no self-test record.
/// Never panics.
pub fn run<const OBS: usize, const ACT: usize, const HID: usize>(
    policy: &Policy<'_, OBS, ACT, HID>,
) -> Option<SelfTestReport> {
    let v = policy.self_test()?;
    let history = ActionHistory::new(policy.safe_action());
    let mut report = SelfTestReport {
        vectors: v.count as u8,
        failed: 0,
        worst_index: 0,
        worst_error: 0.0,
        tolerance: v.tolerance,
    };
    let (obs, mean) = (v.obs.chunks_exact(4 * OBS), v.mean.chunks_exact(4 * ACT));
    for (i, (o, m)) in obs.zip(mean).enumerate() {
        let x: [f32; OBS] = f32_array(o);
        let err = match policy.mean_with(&x, &history) {
            Ok(mu) => mu
                .iter()
                .zip(f32s(m))
                .map(|(a, b)| libm::fabsf(a - b))
                .fold(0.0f32, |w, e| if e > w || e.is_nan() { e } else { w }),
            Err(_) => f32::INFINITY,
        };
        // A NaN error fails too (it is not within the tolerance).
        let within = matches!(
            err.partial_cmp(&v.tolerance),
            Some(core::cmp::Ordering::Less | core::cmp::Ordering::Equal)
        );
        if !within {
            report.failed = report.failed.saturating_add(1);
        }
        if err.is_nan() || err > report.worst_error {
            report.worst_error = err;
            report.worst_index = i as u8;
        }
    }
    Some(report)
}
