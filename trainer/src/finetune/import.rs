//! Import of device logs for fine-tuning: from decoded transitions to
//! fragments of time-ordered steps ready for the estimators.
//!
//! - **Streams**: records of another plant or other dimensions, of
//!   deterministic (mean-action) streams — `μ` is a point mass there, no
//!   importance weight exists — and with non-finite fields are dropped.
//! - **Versions**: each record's policy id is mapped to a version through
//!   the run's index; lag = newest version − that version. Records more
//!   than `max_lag` versions old are dropped; unknown ids are reported and
//!   dropped unless `keep_unknown` (then their lag is `None`).
//! - **`log μ`**: where the blob of the record's policy is known, the
//!   runtime recomputes it (`Policy::<O, A, 256>::log_prob`) and the import
//!   counts mismatches with the logged value; the logged value is used.
//! - **Fragments**: consecutive steps `t, t+1, …` of one episode of one
//!   stream; a gap in `t` (dropped entries, lost frames, fault ticks,
//!   filtered records) ends one. The last step bootstraps from its
//!   successor: the `EpisodeEnd` observation after a truncation (or the
//!   next episode's first observation on hardware, if nothing was lost),
//!   the logged observation at `t + 1` after a cut; without one the step is
//!   dropped and its observation bootstraps the step before.
//!
//! Observations are normalized with the checkpoint's statistics **frozen**
//! for the fine-tune (updating them would change `π_prox` and `V` in the
//! middle of an update, and the exported blob carries them); rewards are
//! scaled like the trainer's, by the checkpoint's frozen return standard
//! deviation, so targets stay on the critic's scale.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use tinyppo_runtime::plants::code;
use tinyppo_runtime::Policy;

use super::FinetuneConfig;
use crate::algo::TrainState;
use crate::logs::{DecodedLog, Transition};
use crate::normalize::normalize_obs;
use crate::registry::RegisteredPlant;

/// Logged steps ready for learning, fragments laid end to end (row-major
/// arrays of `obs_dim`/`act_dim` columns).
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Observation width.
    pub obs_dim: usize,
    /// Action width.
    pub act_dim: usize,
    /// Normalized observations `x_t`.
    pub obs: Vec<f32>,
    /// Normalized successors `x_{t+1}` (a copy of `x_t` where terminated).
    pub next_obs: Vec<f32>,
    /// Unclipped actions `u_t`.
    pub actions: Vec<f32>,
    /// Scaled rewards.
    pub rewards: Vec<f32>,
    /// Terminal transitions.
    pub terminated: Vec<bool>,
    /// Last step of a fragment.
    pub ends: Vec<bool>,
    /// Logged behaviour `log μ(u_t|x_t)`.
    pub logp_mu: Vec<f32>,
    /// Versions behind the newest (`None`: unknown policy id, kept).
    pub lag: Vec<Option<u32>>,
    /// Returns of the complete episodes of the imported log (raw rewards).
    pub episode_returns: Vec<f64>,
}

impl Dataset {
    fn new(obs_dim: usize, act_dim: usize) -> Self {
        Dataset {
            obs_dim,
            act_dim,
            ..Dataset::default()
        }
    }

    /// Steps.
    pub fn len(&self) -> usize {
        self.rewards.len()
    }

    /// No steps.
    pub fn is_empty(&self) -> bool {
        self.rewards.is_empty()
    }

    /// Number of fragments.
    pub fn fragments(&self) -> usize {
        self.ends.iter().filter(|&&e| e).count()
    }

    /// Appends another dataset's fragments.
    pub fn extend(&mut self, o: &Dataset) {
        self.obs.extend_from_slice(&o.obs);
        self.next_obs.extend_from_slice(&o.next_obs);
        self.actions.extend_from_slice(&o.actions);
        self.rewards.extend_from_slice(&o.rewards);
        self.terminated.extend_from_slice(&o.terminated);
        self.ends.extend_from_slice(&o.ends);
        self.logp_mu.extend_from_slice(&o.logp_mu);
        self.lag.extend_from_slice(&o.lag);
        self.episode_returns.extend_from_slice(&o.episode_returns);
    }
}

/// What the import kept, dropped and found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportReport {
    /// Transitions decoded.
    pub records: usize,
    /// Steps in the dataset.
    pub used: usize,
    /// Fragments in the dataset.
    pub fragments: usize,
    /// Records older than `max_lag` versions, dropped.
    pub dropped_lag: usize,
    /// Records by policy id the index does not know (hex id → count).
    pub unknown: BTreeMap<String, usize>,
    /// Whether the unknown records were kept.
    pub unknown_kept: bool,
    /// Records of deterministic (mean-action) streams, dropped: `μ` is a
    /// point mass there and no importance weight exists.
    pub deterministic: usize,
    /// Records of streams of another plant or other dimensions, dropped.
    pub wrong_stream: usize,
    /// Records with a non-finite field, dropped.
    pub nonfinite: usize,
    /// Records with a finite but impossible field, dropped: an action
    /// beyond ±1e6, an observation or reward beyond ±1e9, a log-density
    /// outside ±1e4 (a device computes none of these; they would poison
    /// the losses).
    pub absurd: usize,
    /// Streams that repeat an earlier stream record for record (the same
    /// log given twice, or a copy of it), used once.
    pub duplicate_streams: usize,
    /// Their records, dropped.
    pub duplicate_stream_records: usize,
    /// Records repeating an `(episode, t)` already seen, dropped.
    pub duplicates: usize,
    /// Fragment ends whose successor observation is unknown, dropped.
    pub no_successor: usize,
    /// Steps by lag (known ids).
    pub lag_hist: BTreeMap<u32, usize>,
    /// Records whose `log μ` was recomputed from a known blob.
    pub compared: usize,
    /// Of those, records with `|logged − recomputed| > tolerance` (or that
    /// the runtime refused).
    pub mismatches: usize,
    /// Largest `|logged − recomputed log μ|`.
    pub max_abs_diff: f32,
    /// Records of known ids whose blob file is missing (not compared).
    pub blob_missing: usize,
    /// Records of an action-history policy whose last actions the log
    /// does not tell (a dropped or lost entry in their window), left out.
    pub history_unknown: usize,
}

impl ImportReport {
    /// Records of unknown ids.
    pub fn unknown_records(&self) -> usize {
        self.unknown.values().sum()
    }

    /// The lag histogram as `lag:count` pairs separated by spaces.
    pub fn lag_hist_string(&self) -> String {
        hist_string(&self.lag_hist)
    }
}

fn hist_string(h: &BTreeMap<u32, usize>) -> String {
    h.iter()
        .map(|(l, n)| format!("{l}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Everything [`import_log`] needs to know about the run.
pub struct ImportCtx<'a> {
    /// The run's plant.
    pub plant: RegisteredPlant,
    /// Observation width of the model.
    pub obs_dim: usize,
    /// Action width of the model.
    pub act_dim: usize,
    /// The newest version.
    pub current_version: u32,
    /// Policy id → version.
    pub versions: &'a BTreeMap<u32, u32>,
    /// Policy id → blob bytes, where the file is available.
    pub blobs: &'a BTreeMap<u32, Vec<u8>>,
    /// Keep records at most this many versions old.
    pub max_lag: u32,
    /// Keep records of unknown ids.
    pub keep_unknown: bool,
    /// `(mean, inv_std, clip)` of the observation normalization, if on.
    pub obs_norm: Option<(Vec<f32>, Vec<f32>, f32)>,
    /// `(std, clip)` of the reward scaling, if on.
    pub reward_scale: Option<(f32, f32)>,
    /// Mismatch tolerance of `log μ`.
    pub mu_tolerance: f32,
}

impl<'a> ImportCtx<'a> {
    /// The context of a run's state and index maps.
    pub fn of_state(
        plant: &RegisteredPlant,
        state: &TrainState,
        versions: &'a BTreeMap<u32, u32>,
        blobs: &'a BTreeMap<u32, Vec<u8>>,
        current_version: u32,
        fc: &FinetuneConfig,
    ) -> ImportCtx<'a> {
        let cfg = &state.cfg;
        let obs_norm = cfg.norm_obs.then(|| {
            let (m, s) = state.obs_rms.export();
            (m, s, cfg.obs_clip)
        });
        let reward_scale = cfg.norm_reward.then(|| {
            let var = state.reward_scaler.rms.var[0];
            ((var + 1e-8).sqrt() as f32, cfg.reward_clip)
        });
        ImportCtx {
            plant: plant.clone(),
            obs_dim: state.model.obs_dim(),
            act_dim: state.model.act_dim(),
            current_version,
            versions,
            blobs,
            max_lag: fc.max_lag,
            keep_unknown: fc.keep_unknown,
            obs_norm,
            reward_scale,
            mu_tolerance: fc.mu_tolerance,
        }
    }

    /// `x` normalized as the run's model sees it (the observation
    /// normalization, if on).
    pub fn normalized(&self, x: &[f32]) -> Vec<f32> {
        self.norm(x)
    }

    /// The reward scaling's standard deviation (1 without scaling): a
    /// critic's value times this is in reward units.
    pub fn reward_std(&self) -> f64 {
        self.reward_scale.map_or(1.0, |(s, _)| s as f64)
    }

    fn norm(&self, x: &[f32]) -> Vec<f32> {
        let mut v = x.to_vec();
        if let Some((m, s, c)) = &self.obs_norm {
            normalize_obs(&mut v, m, s, *c);
        }
        v
    }

    fn reward(&self, r: f32) -> f32 {
        match self.reward_scale {
            Some((std, clip)) => (r / std).clamp(-clip, clip),
            None => r,
        }
    }
}

/// `log μ(u|x)` of each `(x, u)` recomputed by the runtime from `blob`
/// (`Policy::<O, A, 256>::log_prob`); `None` where the runtime refuses.
/// Commands reach it through
/// [`RegisteredPlant::log_probs`](crate::registry::RegisteredPlant::log_probs).
pub fn runtime_log_probs<const O: usize, const A: usize>(
    blob: &[u8],
    items: &[(&[f32], &[f32])],
) -> Result<Vec<Option<f32>>> {
    let p = Policy::<O, A, 256>::from_bytes(blob).map_err(|e| anyhow::anyhow!("{e}"))?;
    // A history policy's inputs: the observation, then k past actions
    // (`crate::history::augment`).
    let k = p.history_len();
    Ok(items
        .iter()
        .map(|(x, a)| {
            if x.len() != O + k * A {
                return None;
            }
            let o: [f32; O] = x[..O].try_into().ok()?;
            let a: [f32; A] = (*a).try_into().ok()?;
            let h = crate::history::runtime_history::<A>(&x[O..], p.safe_action());
            p.log_prob_with(&o, &a, &h).ok()
        })
        .collect())
}

/// Imports a decoded log (module docs, step 1).
pub fn import_log(log: &DecodedLog, ctx: &ImportCtx) -> Result<(Dataset, ImportReport)> {
    let mut rep = ImportReport {
        records: log.transitions.len(),
        unknown_kept: ctx.keep_unknown,
        ..ImportReport::default()
    };
    let stream_ok: Vec<bool> = log
        .streams
        .iter()
        .map(|h| {
            // The run's plant, or a stream that names none (hardware).
            let plant_ok = h.plant == ctx.plant.code() || h.plant == code::UNSPECIFIED;
            plant_ok && h.obs_dim as usize == ctx.obs_dim && h.act_dim as usize == ctx.act_dim
        })
        .collect();
    let deterministic: Vec<bool> = log.streams.iter().map(|h| h.deterministic).collect();

    // Identical streams (a log given twice, or a copy): by content, each
    // stream's header and every record, bit for bit.
    let duplicate = duplicate_streams(log);
    for (s, &dup) in duplicate.iter().enumerate() {
        if dup {
            rep.duplicate_streams += 1;
            rep.duplicate_stream_records +=
                log.transitions.iter().filter(|t| t.stream == s).count();
        }
    }

    // Every decoded transition by (stream, episode, t): successors of kept
    // steps may themselves be filtered out.
    let tr = &log.transitions;
    let mut at: HashMap<(usize, u32, u32), usize> = HashMap::new();
    for (i, t) in tr.iter().enumerate() {
        at.entry((t.stream, t.episode, t.t)).or_insert(i);
    }
    let mut final_obs: HashMap<(usize, u32), (u32, &[f32])> = HashMap::new();
    for e in &log.episode_ends {
        final_obs.insert((e.stream, e.episode), (e.t, &e.obs));
    }
    let idx = Successors {
        at,
        final_obs,
        events: log.event_seqs(),
    };

    let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
    let mut kept: Vec<(usize, Option<u32>)> = Vec::new();
    for (i, t) in tr.iter().enumerate() {
        if duplicate.get(t.stream).copied().unwrap_or(false) {
            continue;
        }
        if !stream_ok.get(t.stream).copied().unwrap_or(false)
            || t.obs().len() != ctx.obs_dim
            || t.action().len() != ctx.act_dim
        {
            rep.wrong_stream += 1;
            continue;
        }
        if deterministic.get(t.stream).copied().unwrap_or(false) {
            rep.deterministic += 1;
            continue;
        }
        if !(finite(t.obs())
            && finite(t.action())
            && t.reward.is_finite()
            && t.log_prob.is_finite())
        {
            rep.nonfinite += 1;
            continue;
        }
        let within = |v: &[f32], m: f32| v.iter().all(|x| x.abs() <= m);
        if !(within(t.action(), 1e6)
            && within(t.obs(), 1e9)
            && t.reward.abs() <= 1e9
            && t.log_prob.abs() <= 1e4)
        {
            rep.absurd += 1;
            continue;
        }
        let lag = match ctx.versions.get(&t.policy_id) {
            Some(&v) => Some(ctx.current_version.saturating_sub(v)),
            None => {
                *rep.unknown
                    .entry(format!("{:08x}", t.policy_id))
                    .or_default() += 1;
                if !ctx.keep_unknown {
                    continue;
                }
                None
            }
        };
        if lag.is_some_and(|l| l > ctx.max_lag) {
            rep.dropped_lag += 1;
            continue;
        }
        kept.push((i, lag));
    }

    // Recompute log μ per known blob.
    let mut by_id: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for &(i, lag) in &kept {
        if lag.is_some() {
            by_id.entry(tr[i].policy_id).or_default().push(i);
        }
    }
    for (id, idx) in &by_id {
        let Some(blob) = ctx.blobs.get(id) else {
            rep.blob_missing += idx.len();
            continue;
        };
        // In chunks: the pairs of a whole log at once would be a copy of
        // its index.
        for chunk in idx.chunks(1 << 16) {
            let items: Vec<(&[f32], &[f32])> = chunk
                .iter()
                .map(|&i| (tr[i].obs(), tr[i].action()))
                .collect();
            let lps = ctx
                .plant
                .log_probs(blob, &items)
                .with_context(|| format!("loading the blob of policy {id:08x}"))?;
            for (&i, lp) in chunk.iter().zip(lps) {
                rep.compared += 1;
                match lp {
                    Some(lp) => {
                        let d = (lp - tr[i].log_prob).abs();
                        rep.max_abs_diff = rep.max_abs_diff.max(d);
                        if d > ctx.mu_tolerance {
                            rep.mismatches += 1;
                        }
                    }
                    None => rep.mismatches += 1,
                }
            }
        }
    }

    // Time order within each episode of each stream.
    kept.sort_by_key(|&(i, _)| (tr[i].stream, tr[i].episode, tr[i].t, tr[i].seq));
    let mut ds = Dataset::new(ctx.obs_dim, ctx.act_dim);
    ds.episode_returns = log.episode_returns();
    let mut frag: Vec<(usize, Option<u32>)> = Vec::new();
    let mut last_key = None;
    for &(i, lag) in &kept {
        let t = &tr[i];
        let key = (t.stream, t.episode, t.t);
        if last_key == Some(key) {
            rep.duplicates += 1;
            continue;
        }
        last_key = Some(key);
        if let Some(&(p, _)) = frag.last() {
            let p = &tr[p];
            let continues = p.stream == t.stream
                && p.episode == t.episode
                && p.t.wrapping_add(1) == t.t
                && !(p.terminated || p.truncated);
            if !continues {
                flush(&mut frag, tr, &idx, ctx, &mut ds, &mut rep);
            }
        }
        frag.push((i, lag));
    }
    flush(&mut frag, tr, &idx, ctx, &mut ds, &mut rep);
    rep.used = ds.len();
    rep.fragments = ds.fragments();
    Ok((ds, rep))
}

/// For each stream of `log`: it repeats an earlier stream exactly (header
/// and every transition, bit for bit).
fn duplicate_streams(log: &DecodedLog) -> Vec<bool> {
    use std::hash::{Hash, Hasher};
    let mut hashers: Vec<std::collections::hash_map::DefaultHasher> = log
        .streams
        .iter()
        .map(|h| {
            let mut s = std::collections::hash_map::DefaultHasher::new();
            (
                h.log_version,
                h.policy_id,
                h.plant,
                h.obs_dim,
                h.act_dim,
                h.seed,
                h.deterministic,
            )
                .hash(&mut s);
            s
        })
        .collect();
    let mut counts = vec![0usize; log.streams.len()];
    for t in &log.transitions {
        if let Some(h) = hashers.get_mut(t.stream) {
            counts[t.stream] += 1;
            (
                t.seq,
                t.episode,
                t.t,
                t.reward.to_bits(),
                t.terminated,
                t.truncated,
            )
                .hash(h);
            (t.log_prob.to_bits(), t.policy_id).hash(h);
            for v in t.obs().iter().chain(t.action()) {
                v.to_bits().hash(h);
            }
        }
    }
    let keys: Vec<(u64, usize)> = hashers.iter().map(|h| h.finish()).zip(counts).collect();
    keys.iter()
        .enumerate()
        .map(|(i, k)| k.1 > 0 && keys[..i].contains(k))
        .collect()
}

/// Where a transition's successor is: the record of each `(stream,
/// episode, t)`, each episode's final observation, and the entry numbers
/// of the events (which may sit between two records without a loss).
struct Successors<'l> {
    at: HashMap<(usize, u32, u32), usize>,
    final_obs: HashMap<(usize, u32), (u32, &'l [f32])>,
    events: std::collections::HashSet<(usize, u32)>,
}

/// The observation that follows transition `t`, if the log has it.
fn successor<'l>(t: &Transition, tr: &'l [Transition], idx: &Successors<'l>) -> Option<&'l [f32]> {
    let (at, final_obs) = (&idx.at, &idx.final_obs);
    let next_t = t.t.wrapping_add(1);
    let obs: &[f32] = if t.truncated {
        match final_obs.get(&(t.stream, t.episode)) {
            Some(&(end_t, obs)) if end_t == next_t => obs,
            // Hardware: the next episode starts where this one was cut, if
            // no entry was lost in between.
            _ => {
                let &j = at.get(&(t.stream, t.episode.wrapping_add(1), 0))?;
                // Only events (an e-stop, a fault) may come between.
                if !DecodedLog::only_events_between(&idx.events, t.stream, t.seq, tr[j].seq) {
                    return None;
                }
                tr[j].obs()
            }
        }
    } else {
        tr[*at.get(&(t.stream, t.episode, next_t))?].obs()
    };
    obs.iter().all(|x| x.is_finite()).then_some(obs)
}

/// Appends a fragment to the dataset (its last step bootstraps from its
/// successor; without one, the last step is dropped) and clears it.
fn flush(
    frag: &mut Vec<(usize, Option<u32>)>,
    tr: &[Transition],
    idx: &Successors<'_>,
    ctx: &ImportCtx,
    ds: &mut Dataset,
    rep: &mut ImportReport,
) {
    let last_next: Vec<f32> = loop {
        let Some(&(l, _)) = frag.last() else {
            return;
        };
        let t = &tr[l];
        if t.terminated {
            break t.obs().to_vec();
        }
        // (An episode end of a history policy whose last actions are not
        // known has a short observation: no successor either.)
        match successor(t, tr, idx) {
            Some(o) if o.len() == ctx.obs_dim => break o.to_vec(),
            _ => {
                rep.no_successor += 1;
                frag.pop();
            }
        }
    };
    let n = frag.len();
    for (k, &(i, lag)) in frag.iter().enumerate() {
        let t = &tr[i];
        ds.obs.extend(ctx.norm(t.obs()));
        let next = if k + 1 < n {
            tr[frag[k + 1].0].obs()
        } else {
            &last_next
        };
        ds.next_obs.extend(ctx.norm(next));
        ds.actions.extend_from_slice(t.action());
        ds.rewards.push(ctx.reward(t.reward));
        ds.terminated.push(t.terminated);
        ds.ends.push(k + 1 == n);
        ds.logp_mu.push(t.log_prob);
        ds.lag.push(lag);
        if let Some(l) = lag {
            *rep.lag_hist.entry(l).or_default() += 1;
        }
    }
    frag.clear();
}
