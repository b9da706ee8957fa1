//! Robustness sweeps: an exported blob evaluated through the runtime (int8
//! as on the device) on a grid of plant models, before the hardware is at
//! risk (`tinyppo eval --sweep NAME=LO:HI:N [--sweep ...]`).
//!
//! Each `--sweep NAME=LO:HI:N` is an axis of `N` evenly spaced values from
//! `LO` to `HI`; the grid is every combination (the first axis varies
//! slowest). What a value means depends on the name:
//!
//! | name | value | |
//! |---|---|---|
//! | a plant parameter (`tinyppo plants` lists them) | multiplier of its default, like `[randomize]`; with `:abs` (`NAME=LO:HI:N:abs`) the value itself | > 0 |
//! | `obs_noise`, `obs_resolution`, `rate_limit`, `deadzone` | multiplier of the base realism's setting (every dimension) | ≥ 0 |
//! | `obs_delay`, `action_delay` | ticks | integers 0–8 |
//! | `actuator_tau` (s), `smoothness` | the value itself | ≥ 0 |
//!
//! The *base* is the model every cell starts from: default parameters and
//! the realism the blob was exported with (or `--realism FILE`, or none
//! with `--no-realism`). Every cell runs the same episodes (same seed, so
//! the same initial states where the noise does not differ) and reports
//! the mean, standard deviation, worst and best episode return.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::realism::Realism;
use crate::registry::{Model, RegisteredPlant};
use crate::report::{self, XyLine, XyPanel};

/// What an axis changes.
#[derive(Debug, Clone)]
enum Knob {
    /// A plant parameter: `default·v`, or `v` with `abs`.
    Param { default: f64, abs: bool },
    /// A per-dimension realism setting, scaled by `v`.
    Scale(fn(&mut Realism) -> &mut Vec<f32>),
    /// A delay in ticks.
    Delay(fn(&mut Realism) -> &mut u8),
    /// A scalar realism setting, set to `v`.
    Set(fn(&mut Realism) -> &mut f32),
}

/// One swept quantity and its values.
#[derive(Debug, Clone)]
pub struct Axis {
    /// The name given (`load_inertia`, `obs_noise`, …).
    pub name: String,
    /// Its values, in order.
    pub values: Vec<f64>,
    /// The value of the base model (1 for a multiplier; the parameter's
    /// default with `:abs`; the base realism's delay or setting).
    pub nominal: f64,
    knob: Knob,
}

/// Most cells of one sweep.
pub const MAX_CELLS: usize = 100_000;

impl Axis {
    /// Parses `NAME=LO:HI:N[:abs]` for `plant`, whose sweep starts from
    /// `base`; the error quotes the flag and says what was expected.
    pub fn parse(spec: &str, plant: &RegisteredPlant, base: &Realism) -> Result<Axis> {
        let flag = format!("--sweep {spec}");
        let (name, range) = spec
            .split_once('=')
            .with_context(|| format!("{flag}: expected NAME=LO:HI:N"))?;
        let name = name.trim().to_string();
        let parts: Vec<&str> = range.split(':').map(str::trim).collect();
        let (nums, flags) = parts.split_at(parts.len().min(3));
        let [lo, hi, n] = nums else {
            bail!("{flag}: expected NAME=LO:HI:N (N values from LO to HI)");
        };
        let num = |s: &str, what: &str| -> Result<f64> {
            let v: f64 = s
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: {what} {s:?} is not a number"))?;
            if !v.is_finite() {
                bail!("{flag}: {what} {s} is not finite");
            }
            Ok(v)
        };
        let (lo, hi) = (num(lo, "LO")?, num(hi, "HI")?);
        let n: usize = n
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .with_context(|| format!("{flag}: N = {n:?}, expected a count of values 1–1000"))?;
        if lo > hi {
            bail!("{flag}: LO = {lo} is above HI = {hi}");
        }
        if n == 1 && lo != hi {
            bail!("{flag}: one value (N = 1) needs LO = HI");
        }
        let abs = match flags {
            [] => false,
            ["abs"] => true,
            other => bail!(
                "{flag}: unknown flag {:?} (only :abs, for a plant parameter)",
                other.join(":")
            ),
        };
        let values: Vec<f64> = (0..n)
            .map(|i| {
                if n == 1 {
                    lo
                } else {
                    lo + (hi - lo) * i as f64 / (n - 1) as f64
                }
            })
            .collect();
        let defaults = plant.default_params()?;
        let param = defaults.get(&name).and_then(|v| v.as_f64());
        let realism_knob = match name.as_str() {
            "obs_noise" => Some(Knob::Scale(|r| &mut r.obs_noise)),
            "obs_resolution" => Some(Knob::Scale(|r| &mut r.obs_resolution)),
            "rate_limit" => Some(Knob::Scale(|r| &mut r.rate_limit)),
            "deadzone" => Some(Knob::Scale(|r| &mut r.deadzone)),
            "obs_delay" => Some(Knob::Delay(|r| &mut r.obs_delay)),
            "action_delay" => Some(Knob::Delay(|r| &mut r.action_delay)),
            "actuator_tau" => Some(Knob::Set(|r| &mut r.actuator_tau)),
            "smoothness" => Some(Knob::Set(|r| &mut r.smoothness)),
            _ => None,
        };
        let knob = match (param, realism_knob) {
            (Some(_), Some(_)) => bail!(
                "{flag}: {name} is both a parameter of plant {} and a realism setting",
                plant.name()
            ),
            (Some(default), None) => {
                if !abs && lo <= 0.0 {
                    bail!("{flag}: a multiplier must be positive, LO = {lo} is not (use :abs for values)");
                }
                for &v in &values {
                    let x = if abs { v } else { default * v };
                    if !(x.is_finite() && x.abs() <= f32::MAX as f64) {
                        bail!("{flag}: {name} = {x} does not fit an f32");
                    }
                }
                Knob::Param { default, abs }
            }
            (None, Some(k)) => {
                if abs {
                    bail!("{flag}: :abs applies to plant parameters only");
                }
                if lo < 0.0 {
                    bail!("{flag}: {name} values must be ≥ 0, LO = {lo}");
                }
                match &k {
                    Knob::Scale(get) => {
                        let mut b = base.clone();
                        if get(&mut b).iter().all(|&x| x == 0.0) && hi > 0.0 {
                            bail!(
                                "{flag}: {name} is a multiplier of the base realism's, which is 0 \
                                 (give a base with --realism FILE, a TOML file with a [realism] table)"
                            );
                        }
                    }
                    Knob::Delay(_) => {
                        let limit = (tinyppo_runtime::realism::MAX_DELAY as u32)
                            .min(plant.max_episode_steps().saturating_sub(1));
                        if let Some(v) = values
                            .iter()
                            .find(|v| v.fract() != 0.0 || **v > limit as f64)
                        {
                            bail!("{flag}: {name} = {v}: expected whole ticks 0–{limit}");
                        }
                    }
                    _ => {}
                }
                k
            }
            (None, None) => {
                let params: Vec<String> = defaults
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(_, v)| v.is_number())
                            .map(|(k, _)| k.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                bail!(
                    "{flag}: unknown quantity {name:?}: expected a parameter of plant {} ({}) or \
                     one of obs_noise, obs_resolution, rate_limit, deadzone, obs_delay, \
                     action_delay, actuator_tau, smoothness",
                    plant.name(),
                    params.join(", ")
                );
            }
        };
        let nominal = match &knob {
            Knob::Param { default, abs: true } => *default,
            Knob::Param { abs: false, .. } | Knob::Scale(_) => 1.0,
            Knob::Delay(get) => *get(&mut base.clone()) as f64,
            Knob::Set(get) => *get(&mut base.clone()) as f64,
        };
        Ok(Axis {
            name,
            values,
            nominal,
            knob,
        })
    }

    /// What value `v` of this axis is, for a table header (`×` for a
    /// multiplier).
    fn unit(&self) -> &'static str {
        match self.knob {
            Knob::Param { abs: false, .. } | Knob::Scale(_) => " (×)",
            Knob::Delay(_) => " (ticks)",
            _ => "",
        }
    }
}

/// `v` with at most 4 decimals and no trailing zeros (`0.6`, `2`).
fn short(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// One cell of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The value of each axis.
    pub values: Vec<f64>,
    /// Mean episode return.
    pub mean: f64,
    /// Standard deviation of the episode returns.
    pub std: f64,
    /// Lowest episode return.
    pub worst: f64,
    /// Highest episode return.
    pub best: f64,
}

/// A finished sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// The axes.
    pub axes: Vec<Axis>,
    /// Every cell, the first axis varying slowest.
    pub cells: Vec<Cell>,
    /// Episodes per cell.
    pub episodes: usize,
}

/// The model of one cell: `base` with the axes' values applied.
fn model(axes: &[Axis], values: &[f64], base: &Realism) -> Model {
    let mut realism = base.clone();
    let mut params = serde_json::Map::new();
    for (a, &v) in axes.iter().zip(values) {
        match &a.knob {
            Knob::Param { default, abs } => {
                let x = if *abs { v } else { default * v };
                params.insert(a.name.clone(), serde_json::json!(x));
            }
            Knob::Scale(get) => get(&mut realism)
                .iter_mut()
                .for_each(|x| *x = (*x as f64 * v) as f32),
            Knob::Delay(get) => *get(&mut realism) = v as u8,
            Knob::Set(get) => *get(&mut realism) = v as f32,
        }
    }
    Model {
        realism: Some(realism),
        params: Some(serde_json::Value::Object(params)),
    }
}

impl Sweep {
    /// Evaluates `blob` on every cell of the grid of `axes` over `base`:
    /// `episodes` episodes per cell from `seed`, the mean action (or
    /// samples with `stochastic`), with a progress bar on a terminal.
    pub fn run(
        plant: &RegisteredPlant,
        blob: &[u8],
        base: &Realism,
        axes: Vec<Axis>,
        episodes: usize,
        seed: u64,
        stochastic: bool,
    ) -> Result<Sweep> {
        let total = axes
            .iter()
            .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
            .filter(|&n| n <= MAX_CELLS)
            .with_context(|| format!("the grid has more than {MAX_CELLS} cells"))?;
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("sweep {bar:40} {pos}/{len} cells, {eta} left")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let mut cells = Vec::with_capacity(total);
        for k in 0..total {
            let mut rest = k;
            let mut values = vec![0.0; axes.len()];
            for (a, v) in axes.iter().zip(values.iter_mut()).rev() {
                *v = a.values[rest % a.values.len()];
                rest /= a.values.len();
            }
            let m = model(&axes, &values, base);
            let rets = plant
                .eval_blob_on(blob, episodes, seed, stochastic, &m)
                .with_context(|| {
                    let at: Vec<String> = axes
                        .iter()
                        .zip(&values)
                        .map(|(a, v)| format!("{} = {v}", a.name))
                        .collect();
                    format!("evaluating the cell {}", at.join(", "))
                })?;
            let (mean, std) = crate::stats::mean_std(&rets);
            cells.push(Cell {
                values,
                mean,
                std,
                worst: rets.iter().copied().fold(f64::INFINITY, f64::min),
                best: rets.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            });
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(Sweep {
            axes,
            cells,
            episodes,
        })
    }

    /// The cell of the lowest mean return.
    pub fn worst_cell(&self) -> Option<&Cell> {
        self.cells.iter().min_by(|a, b| a.mean.total_cmp(&b.mean))
    }

    /// The grid as CSV: one column per axis, then the returns.
    pub fn csv(&self) -> String {
        let mut s = String::new();
        for a in &self.axes {
            let _ = write!(s, "{},", a.name);
        }
        s.push_str("mean_return,std_return,worst_return,best_return,episodes\n");
        for c in &self.cells {
            for v in &c.values {
                let _ = write!(s, "{v},");
            }
            let _ = writeln!(
                s,
                "{},{},{},{},{}",
                c.mean, c.std, c.worst, c.best, self.episodes
            );
        }
        s
    }

    /// The grid as a table for people.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let heads: Vec<String> = self
            .axes
            .iter()
            .map(|a| format!("{}{}", a.name, a.unit()))
            .collect();
        for h in &heads {
            let _ = write!(s, "{h:>w$}  ", w = h.len().max(8));
        }
        let _ = writeln!(s, "{:>10}  {:>8}  {:>10}", "mean", "std", "worst");
        for c in &self.cells {
            for (h, v) in heads.iter().zip(&c.values) {
                let _ = write!(s, "{:>w$}  ", short(*v), w = h.len().max(8));
            }
            let _ = writeln!(s, "{:>10.2}  {:>8.2}  {:>10.2}", c.mean, c.std, c.worst);
        }
        s
    }

    /// The grid as JSON: the axes and every cell with its returns.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "axes": self.axes.iter().map(|a| serde_json::json!({
                "name": a.name, "values": a.values, "nominal": a.nominal,
                "unit": a.unit().trim().trim_matches(|c| c == '(' || c == ')'),
            })).collect::<Vec<_>>(),
            "episodes": self.episodes,
            "cells": self.cells.iter().map(|c| serde_json::json!({
                "values": c.values, "mean_return": c.mean, "std_return": c.std,
                "worst_return": c.worst, "best_return": c.best,
            })).collect::<Vec<_>>(),
        })
    }

    /// Draws the sweep: a heat map of the mean return for two axes,
    /// otherwise one panel per axis with the mean return over the other
    /// axes' cells (band: their lowest and highest mean) and the worst
    /// episode.
    pub fn plot(&self, path: &Path, title: &str) -> Result<()> {
        if let [a, b] = &self.axes[..] {
            let ticks = |a: &Axis| a.values.iter().map(|&v| short(v)).collect::<Vec<_>>();
            let rows: Vec<Vec<f64>> = (0..b.values.len())
                .map(|j| {
                    (0..a.values.len())
                        .map(|i| self.cells[i * b.values.len() + j].mean)
                        .collect()
                })
                .collect();
            return report::heat_map(
                path,
                &format!("{title}: mean return"),
                (&format!("{}{}", a.name, a.unit()), &ticks(a)),
                (&format!("{}{}", b.name, b.unit()), &ticks(b)),
                &rows,
            );
        }
        let panels: Vec<XyPanel> = self
            .axes
            .iter()
            .enumerate()
            .map(|(k, a)| {
                let at = |v: f64| self.cells.iter().filter(move |c| c.values[k] == v);
                let mean: Vec<_> = a
                    .values
                    .iter()
                    .map(|&v| {
                        let ms: Vec<f64> = at(v).map(|c| c.mean).collect();
                        let m = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
                        let (lo, hi) = ms
                            .iter()
                            .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                        (v, lo, m, hi)
                    })
                    .collect();
                let worst: Vec<_> = a
                    .values
                    .iter()
                    .map(|&v| {
                        let w = at(v).map(|c| c.worst).fold(f64::INFINITY, f64::min);
                        (v, w, w, w)
                    })
                    .collect();
                XyPanel {
                    title: format!("{title}: {}", a.name),
                    x_label: format!("{}{}", a.name, a.unit()),
                    y_label: "return".into(),
                    lines: vec![
                        XyLine {
                            label: "mean return".into(),
                            points: mean,
                        },
                        XyLine {
                            label: "worst episode".into(),
                            points: worst,
                        },
                    ],
                }
            })
            .collect();
        report::xy_panels(path, &panels)
    }
}

/// One saved sweep (`sweep.json`, written by `tinyppo eval --sweep`) as
/// read back for [`compare_plot`].
#[derive(Debug, Clone)]
pub struct Saved {
    /// Plant name.
    pub env: String,
    /// `(name, values, nominal)` per axis.
    pub axes: Vec<(String, Vec<f64>, f64)>,
    /// `(values, mean return)` per cell.
    pub cells: Vec<(Vec<f64>, f64)>,
}

impl Saved {
    /// Reads `path` (a `sweep.json`, or a directory holding one); the
    /// error names the file and the field.
    pub fn read(path: &Path) -> Result<Saved> {
        let file = if path.is_dir() {
            path.join("sweep.json")
        } else {
            path.to_path_buf()
        };
        let src = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&src).with_context(|| format!("{}: not JSON", file.display()))?;
        let field = |what: &str| format!("{}: {what}", file.display());
        let nums = |v: &serde_json::Value, what: &str| -> Result<Vec<f64>> {
            v.as_array()
                .and_then(|a| a.iter().map(|x| x.as_f64()).collect::<Option<Vec<_>>>())
                .with_context(|| field(&format!("{what}: expected an array of numbers")))
        };
        let env = v["env"]
            .as_str()
            .with_context(|| field("\"env\": expected the plant's name"))?
            .to_string();
        let axes = v["axes"]
            .as_array()
            .with_context(|| field("\"axes\": expected an array"))?
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let name = a["name"]
                    .as_str()
                    .with_context(|| field(&format!("axes[{i}].name: expected a string")))?;
                let values = nums(&a["values"], &format!("axes[{i}].values"))?;
                let nominal = a["nominal"]
                    .as_f64()
                    .with_context(|| field(&format!("axes[{i}].nominal: expected a number")))?;
                Ok((name.to_string(), values, nominal))
            })
            .collect::<Result<Vec<_>>>()?;
        let cells = v["cells"]
            .as_array()
            .with_context(|| field("\"cells\": expected an array"))?
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let values = nums(&c["values"], &format!("cells[{i}].values"))?;
                if values.len() != axes.len() {
                    bail!(
                        "{}",
                        field(&format!(
                            "cells[{i}].values: {} values for {} axes",
                            values.len(),
                            axes.len()
                        ))
                    );
                }
                let mean = c["mean_return"].as_f64().with_context(|| {
                    field(&format!("cells[{i}].mean_return: expected a number"))
                })?;
                Ok((values, mean))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Saved { env, axes, cells })
    }

    /// The mean return along axis `k`, the other axes held at `at` (by
    /// name) or else at their nominal value (each at the grid value
    /// nearest it).
    fn curve(&self, k: usize, at: &[(String, f64)]) -> Vec<(f64, f64)> {
        let hold: Vec<f64> = self
            .axes
            .iter()
            .map(|(name, values, nominal)| {
                let want = at
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(*nominal, |(_, v)| *v);
                values
                    .iter()
                    .copied()
                    .min_by(|a, b| (a - want).abs().total_cmp(&(b - want).abs()))
                    .unwrap_or(want)
            })
            .collect();
        self.axes[k]
            .1
            .iter()
            .filter_map(|&x| {
                self.cells
                    .iter()
                    .find(|(vals, _)| {
                        vals.iter().zip(&hold).enumerate().all(|(j, (v, h))| {
                            if j == k {
                                *v == x
                            } else {
                                v == h
                            }
                        })
                    })
                    .map(|(_, m)| (x, *m))
            })
            .collect()
    }
}

/// Draws saved sweeps side by side for comparison: one panel per plant
/// and swept quantity (`names`, or every axis with more than one value),
/// one line per label — the median over that label's sweeps (e.g. one per
/// seed) with their lowest–highest band — the other axes held at `at` or
/// their nominal value.
pub fn compare_plot(
    path: &Path,
    sweeps: &[(String, Saved)],
    names: &[String],
    at: &[(String, f64)],
) -> Result<()> {
    let mut panels: Vec<XyPanel> = Vec::new();
    for (label, s) in sweeps {
        for (k, (name, values, _)) in s.axes.iter().enumerate() {
            if values.len() < 2 || !(names.is_empty() || names.contains(name)) {
                continue;
            }
            let title = format!("{}: {name}", s.env);
            let pi = match panels.iter().position(|p| p.title == title) {
                Some(i) => i,
                None => {
                    panels.push(XyPanel {
                        title: title.clone(),
                        x_label: name.clone(),
                        y_label: "mean return".into(),
                        lines: Vec::new(),
                    });
                    panels.len() - 1
                }
            };
            let curve = s.curve(k, at);
            let lines = &mut panels[pi].lines;
            let li = match lines.iter().position(|l| &l.label == label) {
                Some(i) => i,
                None => {
                    lines.push(XyLine {
                        label: label.clone(),
                        points: Vec::new(),
                    });
                    lines.len() - 1
                }
            };
            // Collect every sweep's value per x in `points` as (x, v, v, v);
            // folded into median and band below.
            lines[li]
                .points
                .extend(curve.into_iter().map(|(x, m)| (x, m, m, m)));
        }
    }
    if panels.is_empty() {
        bail!("no swept quantity to plot (every axis has a single value, or --axis matched none)");
    }
    for line in panels.iter_mut().flat_map(|p| p.lines.iter_mut()) {
        let mut xs: Vec<f64> = line.points.iter().map(|p| p.0).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        line.points = xs
            .into_iter()
            .map(|x| {
                let mut ys: Vec<f64> = line
                    .points
                    .iter()
                    .filter(|p| p.0 == x)
                    .map(|p| p.1)
                    .collect();
                ys.sort_by(f64::total_cmp);
                let n = ys.len();
                let med = if n % 2 == 1 {
                    ys[n / 2]
                } else {
                    (ys[n / 2 - 1] + ys[n / 2]) / 2.0
                };
                (x, ys[0], med, ys[n - 1])
            })
            .collect();
    }
    report::xy_panels(path, &panels)
}
