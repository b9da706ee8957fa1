//! Action history in training (`action_history = k`): the environment
//! appends the last `k` applied actions to every observation, as the
//! device's control loop does (`tinyppo_runtime::history`):
//!
//! ```text
//! x_t = [o_t, a_{t−1}, a_{t−2}, …, a_{t−k}]     a = the clipped action applied
//! ```
//!
//! with the plant's safe action before the episode's first tick. The
//! actor and critic take `x_t`; [`split`] cuts the first layer and the
//! observation normalization into the blob's part for `o_t` and the
//! history record's part for the rest.

use tinyppo_runtime::rng::DefaultRng;

use crate::env::Env;

/// A training environment whose observation carries the last `k` applied
/// actions.
pub struct HistoryEnv {
    inner: Box<dyn Env>,
    k: usize,
    low: Vec<f32>,
    high: Vec<f32>,
    safe: Vec<f32>,
    /// `k·act_dim` values, most recent action first.
    hist: Vec<f32>,
}

impl HistoryEnv {
    /// Wraps `inner` with a history of `k ≥ 1` actions.
    pub fn new(inner: Box<dyn Env>, k: usize) -> Self {
        let (low, high, safe) = (inner.action_low(), inner.action_high(), inner.safe_action());
        let hist = safe.repeat(k);
        HistoryEnv {
            inner,
            k,
            low,
            high,
            safe,
            hist,
        }
    }

    fn write(&self, obs: &mut [f32]) {
        let n = self.inner.obs_dim();
        obs[n..].copy_from_slice(&self.hist);
    }
}

impl Env for HistoryEnv {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn obs_dim(&self) -> usize {
        self.inner.obs_dim() + self.k * self.inner.act_dim()
    }
    fn act_dim(&self) -> usize {
        self.inner.act_dim()
    }
    fn action_low(&self) -> Vec<f32> {
        self.low.clone()
    }
    fn action_high(&self) -> Vec<f32> {
        self.high.clone()
    }
    fn safe_action(&self) -> Vec<f32> {
        self.safe.clone()
    }
    fn max_episode_steps(&self) -> u32 {
        self.inner.max_episode_steps()
    }
    fn reset(&mut self, rng: &mut DefaultRng, obs: &mut [f32]) {
        let n = self.inner.obs_dim();
        self.inner.reset(rng, &mut obs[..n]);
        self.hist = self.safe.repeat(self.k);
        self.write(obs);
    }
    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> (f32, bool, bool) {
        let n = self.inner.obs_dim();
        let out = self.inner.step(action, &mut obs[..n]);
        // What the device's loop remembers: the action clipped to the
        // bounds (the trainer's are already), the safe one if not finite.
        let a = self.act_dim();
        self.hist.rotate_right(a);
        applied_into(
            action,
            &self.low,
            &self.high,
            &self.safe,
            &mut self.hist[..a],
        );
        self.write(obs);
        out
    }
    /// The inner state, then the history (postcard).
    fn save_state(&self) -> Option<Vec<u8>> {
        let inner = self.inner.save_state()?;
        postcard::to_allocvec(&(inner, &self.hist)).ok()
    }
    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (inner, hist): (Vec<u8>, Vec<f32>) =
            postcard::from_bytes(bytes).map_err(|e| format!("action history: {e}"))?;
        if hist.len() != self.hist.len() {
            return Err(format!(
                "action history: {} values saved, {} expected",
                hist.len(),
                self.hist.len()
            ));
        }
        self.inner.load_state(&inner)?;
        self.hist = hist;
        Ok(())
    }
    fn set_params(&mut self, params: &serde_json::Value) -> Result<(), String> {
        self.inner.set_params(params)
    }
}

/// What the device's loop remembers of an action `u`: `u` clipped to
/// `[low, high]`, the safe action where it is not finite (or missing),
/// written into `out`.
fn applied_into(u: &[f32], low: &[f32], high: &[f32], safe: &[f32], out: &mut [f32]) {
    for (j, h) in out.iter_mut().enumerate() {
        let v = u.get(j).copied().unwrap_or(f32::NAN);
        *h = if v.is_finite() {
            v.clamp(low[j], high[j])
        } else {
            safe[j]
        };
    }
}

/// The model's input split for the blob: the observation's normalization
/// and first-layer columns, and the history's.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Normalization of `o_t` (`obs_dim` each).
    pub obs_mean: Vec<f32>,
    /// Inverse standard deviations of `o_t`.
    pub obs_inv_std: Vec<f32>,
    /// First-layer weights of `o_t`, `rows × obs_dim`, row-major.
    pub w_obs: Vec<f32>,
    /// Normalization of the history (`k·act_dim` each).
    pub hist_mean: Vec<f32>,
    /// Inverse standard deviations of the history.
    pub hist_inv_std: Vec<f32>,
    /// First-layer weights of the history, `rows × k·act_dim`.
    pub w_hist: Vec<f32>,
}

/// Splits a first layer `w0` (`rows × (obs_dim + h)`, row-major) and the
/// input normalization (`obs_dim + h` each) at column `obs_dim`.
pub fn split(w0: &[f32], rows: usize, obs_dim: usize, mean: &[f32], inv_std: &[f32]) -> Split {
    let cols = mean.len();
    let mut s = Split {
        obs_mean: mean[..obs_dim].to_vec(),
        obs_inv_std: inv_std[..obs_dim].to_vec(),
        w_obs: Vec::with_capacity(rows * obs_dim),
        hist_mean: mean[obs_dim..].to_vec(),
        hist_inv_std: inv_std[obs_dim..].to_vec(),
        w_hist: Vec::with_capacity(rows * (cols - obs_dim)),
    };
    for row in w0.chunks_exact(cols).take(rows) {
        s.w_obs.extend_from_slice(&row[..obs_dim]);
        s.w_hist.extend_from_slice(&row[obs_dim..]);
    }
    s
}

/// Rebuilds the inputs a history policy saw from a logged episode: for
/// each record `(t, obs, action)` of one episode in order, `obs` followed
/// by the clipped actions of ticks `t−1 … t−k` — the logged ones, the safe
/// action for ticks that are not in the log (fault ticks, and before the
/// start). `None` for a record whose window reaches a tick that a log gap
/// of unknown cause (`unknown(t)`, e.g. a dropped record) hides.
pub fn rebuild(
    records: &[(u32, &[f32], &[f32])],
    k: usize,
    low: &[f32],
    high: &[f32],
    safe: &[f32],
    unknown: impl Fn(u32) -> bool,
) -> Vec<Option<Vec<f32>>> {
    let a = safe.len();
    records
        .iter()
        .enumerate()
        .map(|(i, &(t, obs, _))| {
            let mut x = obs.to_vec();
            x.reserve(k * a);
            // Walk back through the earlier records of the episode.
            let mut j = i;
            for back in 1..=k as u32 {
                let Some(tick) = t.checked_sub(back) else {
                    x.extend_from_slice(safe);
                    continue;
                };
                while j > 0 && records[j - 1].0 > tick {
                    j -= 1;
                }
                if j > 0 && records[j - 1].0 == tick {
                    let at = x.len();
                    x.resize(at + a, 0.0);
                    applied_into(records[j - 1].2, low, high, safe, &mut x[at..]);
                } else if unknown(tick) {
                    return None;
                } else {
                    x.extend_from_slice(safe);
                }
            }
            Some(x)
        })
        .collect()
}

/// A decoded device log as a history policy's learner sees it: every
/// transition's (and episode end's) observation followed by the clipped
/// actions of its last `k` ticks, rebuilt from the log (module docs of
/// `tinyppo_runtime::control`: logged ticks give their action; a gap in
/// `t` with consecutive entry numbers is a fault tick, which applied the
/// safe action; a gap in the entry numbers hides what was applied, so the
/// records whose window reaches into it are left out). Returns the log and
/// how many records were left out.
pub fn augment(
    log: crate::logs::DecodedLog,
    k: usize,
    low: &[f32],
    high: &[f32],
    safe: &[f32],
) -> (crate::logs::DecodedLog, usize) {
    use std::collections::BTreeMap;

    use crate::logs::Transition;
    let mut log = log;
    let width = k * safe.len();
    // Records of each (stream, episode), in time order.
    let mut groups: BTreeMap<(usize, u32), Vec<usize>> = BTreeMap::new();
    for (i, t) in log.transitions.iter().enumerate() {
        groups.entry((t.stream, t.episode)).or_default().push(i);
    }
    let tr = &log.transitions;
    let events = log.event_seqs();
    let mut x: Vec<Option<Vec<f32>>> = vec![None; tr.len()];
    let mut end_hist: BTreeMap<(usize, u32), Vec<f32>> = BTreeMap::new();
    let ends: BTreeMap<(usize, u32), u32> = log
        .episode_ends
        .iter()
        .map(|e| ((e.stream, e.episode), e.t))
        .collect();
    for (key, mut idx) in groups {
        idx.sort_by_key(|&i| (tr[i].t, tr[i].seq));
        // A sentinel record at the episode's end tick gives the final
        // observation its history too.
        let end_t = ends.get(&key).copied();
        let mut recs: Vec<(u32, &[f32], &[f32])> = idx
            .iter()
            .map(|&i| (tr[i].t, tr[i].obs(), tr[i].action()))
            .collect();
        if let Some(t) = end_t {
            recs.push((t, &[], &[]));
        }
        let seqs: Vec<(u32, u32)> = idx.iter().map(|&i| (tr[i].t, tr[i].seq)).collect();
        let unknown = |tick: u32| {
            let prev = seqs.iter().rev().find(|(t, _)| *t < tick);
            let next = seqs.iter().find(|(t, _)| *t > tick);
            match (prev, next) {
                // Fault ticks log at most an event: entries between the two
                // records that are all events hide nothing.
                (Some(p), Some(n)) => {
                    !crate::logs::DecodedLog::only_events_between(&events, key.0, p.1, n.1)
                }
                // Before the first logged tick, or after the last one (an
                // episode end): nothing says they were fault ticks.
                _ => true,
            }
        };
        let rebuilt = rebuild(&recs, k, low, high, safe, unknown);
        for (j, r) in rebuilt.into_iter().enumerate() {
            match idx.get(j) {
                Some(&i) => x[i] = r,
                None => {
                    if let Some(h) = r {
                        end_hist.insert(key, h);
                    }
                }
            }
        }
    }
    let mut left_out = 0;
    let transitions: Vec<Transition> = tr
        .iter()
        .zip(x)
        .filter_map(|(t, x)| {
            let Some(x) = x else {
                left_out += 1;
                return None;
            };
            Some(Transition::new(
                (t.stream, t.seq, t.episode, t.t),
                &x,
                t.action(),
                t.reward,
                (t.terminated, t.truncated),
                t.log_prob,
                t.policy_id,
            ))
        })
        .collect();
    log.transitions = transitions;
    // An end whose history is unknown keeps a too-short observation: the
    // importer then treats its episode's last step as without successor.
    for e in &mut log.episode_ends {
        if let Some(h) = end_hist.get(&(e.stream, e.episode)) {
            e.obs.extend_from_slice(h);
        }
    }
    for h in &mut log.streams {
        h.obs_dim = h.obs_dim.saturating_add(width as u16);
    }
    (log, left_out)
}

/// The [`ActionHistory`](tinyppo_runtime::history::ActionHistory) whose
/// first `k` actions are `tail` (`k·A` values, most recent first).
pub fn runtime_history<const A: usize>(
    tail: &[f32],
    safe: [f32; A],
) -> tinyppo_runtime::history::ActionHistory<A> {
    let mut h = tinyppo_runtime::history::ActionHistory::new(safe);
    for a in tail.chunks_exact(A).rev() {
        let mut v = [0.0; A];
        v.copy_from_slice(a);
        h.push(v);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_rows_at_the_observation() {
        // 2 rows, 3 obs + 2 history columns.
        let w0 = [1., 2., 3., 4., 5., 6., 7., 8., 9., 10.];
        let s = split(&w0, 2, 3, &[0., 1., 2., 3., 4.], &[1., 1., 1., 2., 2.]);
        assert_eq!(s.w_obs, [1., 2., 3., 6., 7., 8.]);
        assert_eq!(s.w_hist, [4., 5., 9., 10.]);
        assert_eq!((s.obs_mean.len(), s.hist_mean), (3, vec![3., 4.]));
        assert_eq!(s.hist_inv_std, [2., 2.]);
    }

    #[test]
    fn rebuild_fills_gaps_with_the_safe_action_and_refuses_unknown_ones() {
        let o = [0.5f32];
        let (a0, a1, a3) = ([0.25f32], [3.0f32], [-0.5f32]);
        // t = 0, 1, then a fault tick at 2, then 3 and 4.
        let recs: Vec<(u32, &[f32], &[f32])> =
            vec![(0, &o, &a0), (1, &o, &a1), (3, &o, &a3), (4, &o, &a0)];
        let got = rebuild(&recs, 2, &[-1.0], &[1.0], &[0.0], |_| false);
        let got: Vec<Vec<f32>> = got.into_iter().map(Option::unwrap).collect();
        assert_eq!(got[0], [0.5, 0.0, 0.0]);
        assert_eq!(got[1], [0.5, 0.25, 0.0]);
        assert_eq!(got[2], [0.5, 0.0, 1.0]); // tick 2 safe, tick 1 clipped
        assert_eq!(got[3], [0.5, -0.5, 0.0]);
        // Tick 2 was a dropped record: the windows over it are unknown.
        let got = rebuild(&recs, 2, &[-1.0], &[1.0], &[0.0], |t| t == 2);
        assert_eq!(
            got.iter().map(Option::is_some).collect::<Vec<_>>(),
            [true, true, false, false]
        );
    }
}
