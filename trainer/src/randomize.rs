//! Domain randomization: the `[randomize]` table of a run draws plant
//! parameters afresh for every training episode.
//!
//! ```toml
//! [randomize]
//! load_inertia = "0.7:1.3"        # × the default, uniform in [0.7, 1.3]
//! friction = "0.5:2:log"          # × the default, log-uniform
//! resistance = "2.5:3.5:abs"      # absolute ohms, uniform
//! ```
//!
//! `--set randomize.NAME=LO:HI[:abs][:log]` does the same from the command
//! line. Each key is a parameter of the plant by its name (`tinyppo plants`
//! lists them; an unknown name is an error that lists them too), each value
//! a range `LO:HI`:
//!
//! - by default a **multiplier** of the parameter's default value,
//!   `p = p₀·m` with `m ~ U[LO, HI]`; multipliers must be positive;
//! - with `abs`, the value itself: `p ~ U[LO, HI]`;
//! - with `log`, log-uniform instead: `ln m ~ U[ln LO, ln HI]` (needs
//!   `LO > 0`).
//!
//! `LO = HI` fixes the parameter. At every episode start the trainer draws
//! the parameters in name order, one `u ~ U[0, 1)` (24 bits) each, from the
//! run's seeded generator, before the plant's own reset: a run is still a
//! pure function of its seed (and resumes bit for bit: the parameters of
//! the episodes in flight are in the checkpoint).

use std::collections::BTreeMap;
use std::fmt;

use tinyppo_runtime::rng::{uniform01, DefaultRng};

use crate::env::Env;
use crate::validate::Invalid;

/// One `LO:HI[:abs][:log]` range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamRange {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// The ends are values, not multipliers of the default.
    pub abs: bool,
    /// Log-uniform instead of uniform.
    pub log: bool,
}

impl fmt::Display for ParamRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.lo, self.hi)?;
        if self.abs {
            f.write_str(":abs")?;
        }
        if self.log {
            f.write_str(":log")?;
        }
        Ok(())
    }
}

impl ParamRange {
    /// Parses `LO:HI[:abs][:log]`; the error says what was expected (it
    /// follows "expected" in the message).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':').map(str::trim);
        let num = |p: Option<&str>, what: &str| -> Result<f64, String> {
            let p = p.ok_or_else(|| format!("LO:HI[:abs][:log] ({what} is missing)"))?;
            let v: f64 = p
                .parse()
                .map_err(|_| format!("LO:HI[:abs][:log] ({what} {p:?} is not a number)"))?;
            if !v.is_finite() {
                return Err(format!("finite LO and HI ({what} {p} is not finite)"));
            }
            Ok(v)
        };
        let lo = num(parts.next(), "LO")?;
        let hi = num(parts.next(), "HI")?;
        let (mut abs, mut log) = (false, false);
        for flag in parts {
            match flag {
                "abs" if !abs => abs = true,
                "log" if !log => log = true,
                other => return Err(format!("the flags abs or log (unknown flag {other:?})")),
            }
        }
        if lo > hi {
            return Err(format!("LO ≤ HI (LO = {lo} is above HI = {hi})"));
        }
        if !abs && lo <= 0.0 {
            return Err(format!(
                "a positive multiplier (LO = {lo} is not; a multiplier must be positive, use :abs for values)"
            ));
        }
        if log && lo <= 0.0 {
            return Err(format!(
                "LO > 0 for :log (log-uniform needs LO > 0, LO = {lo})"
            ));
        }
        Ok(ParamRange { lo, hi, abs, log })
    }

    /// The value of a draw `u ∈ [0, 1)` for a parameter whose default is
    /// `default`.
    pub fn value(&self, default: f64, u: f64) -> f64 {
        let x = if self.log {
            (self.lo.ln() + (self.hi.ln() - self.lo.ln()) * u).exp()
        } else {
            self.lo + (self.hi - self.lo) * u
        };
        if self.abs {
            x
        } else {
            default * x
        }
    }
}

/// The resolved `[randomize]` table of a run for one plant.
#[derive(Debug, Clone, PartialEq)]
pub struct Randomizer {
    defaults: serde_json::Map<String, serde_json::Value>,
    /// `(name, default, range)`, in name order.
    draws: Vec<(String, f64, ParamRange)>,
}

impl Randomizer {
    /// Checks `table` (name → `LO:HI[:abs][:log]`) against the plant's
    /// default parameters (a JSON object, `RegisteredPlant::default_params`);
    /// the error names the key (`randomize.NAME`) and lists the plant's
    /// parameters for an unknown one.
    pub fn new(
        plant: &str,
        defaults: &serde_json::Value,
        table: &BTreeMap<String, String>,
    ) -> Result<Self, Invalid> {
        let obj = defaults.as_object().cloned().unwrap_or_default();
        let numeric: Vec<&String> = obj
            .iter()
            .filter(|(_, v)| v.is_f64())
            .map(|(k, _)| k)
            .collect();
        let mut draws = Vec::new();
        for (name, spec) in table {
            let key = format!("randomize.{name}");
            let invalid = |expected: String| Invalid {
                key: key.clone(),
                value: format!("{spec:?}"),
                expected,
            };
            let default = match obj.get(name) {
                // A draw is a real number: an integer field (a count, a
                // switch) cannot take it, and would silently keep its value.
                Some(v) if v.is_f64() => v.as_f64().unwrap_or_default(),
                Some(v) if v.is_number() => {
                    return Err(invalid(format!(
                        "a real-valued parameter of {plant} ({name} is an integer: draws are real numbers)"
                    )))
                }
                Some(_) => {
                    return Err(invalid(format!(
                        "a numeric parameter of {plant} ({name} is not a number)"
                    )))
                }
                None => {
                    let known = if numeric.is_empty() {
                        "it has none".to_string()
                    } else {
                        numeric
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    return Err(Invalid {
                        key,
                        value: format!("{spec:?}"),
                        expected: format!("a parameter of plant {plant}: {known}"),
                    });
                }
            };
            let range = ParamRange::parse(spec).map_err(invalid)?;
            for end in [range.lo, range.hi] {
                let v = range.value(default, if end == range.lo { 0.0 } else { 1.0 });
                if !(v.is_finite() && v.abs() <= f32::MAX as f64) {
                    return Err(invalid(format!("values that fit an f32 ({end} gives {v})")));
                }
            }
            draws.push((name.clone(), default, range));
        }
        Ok(Randomizer {
            defaults: obj,
            draws,
        })
    }

    /// Nothing to randomize.
    pub fn is_empty(&self) -> bool {
        self.draws.is_empty()
    }

    /// The table in canonical form (what the run's `config.toml` records).
    pub fn table(&self) -> BTreeMap<String, String> {
        self.draws
            .iter()
            .map(|(n, _, r)| (n.clone(), r.to_string()))
            .collect()
    }

    /// One draw of every randomized parameter, in name order: the plant's
    /// parameters as a JSON object.
    pub fn sample(&self, rng: &mut DefaultRng) -> serde_json::Value {
        let mut p = self.defaults.clone();
        for (name, default, range) in &self.draws {
            let u = uniform01(rng) as f64;
            p.insert(name.clone(), serde_json::json!(range.value(*default, u)));
        }
        serde_json::Value::Object(p)
    }
}

/// A training environment whose plant parameters are drawn anew at every
/// reset.
pub struct RandomizedEnv {
    inner: Box<dyn Env>,
    r: Randomizer,
}

impl RandomizedEnv {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Env>, r: Randomizer) -> Self {
        RandomizedEnv { inner, r }
    }
}

impl Env for RandomizedEnv {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn obs_dim(&self) -> usize {
        self.inner.obs_dim()
    }
    fn act_dim(&self) -> usize {
        self.inner.act_dim()
    }
    fn action_low(&self) -> Vec<f32> {
        self.inner.action_low()
    }
    fn action_high(&self) -> Vec<f32> {
        self.inner.action_high()
    }
    fn safe_action(&self) -> Vec<f32> {
        self.inner.safe_action()
    }
    fn max_episode_steps(&self) -> u32 {
        self.inner.max_episode_steps()
    }
    fn reset(&mut self, rng: &mut DefaultRng, obs: &mut [f32]) {
        let p = self.r.sample(rng);
        // Checked when the randomizer was built: every draw is a finite
        // number of a numeric field.
        let _ = self.inner.set_params(&p);
        self.inner.reset(rng, obs);
    }
    fn step(&mut self, action: &[f32], obs: &mut [f32]) -> (f32, bool, bool) {
        self.inner.step(action, obs)
    }
    fn save_state(&self) -> Option<Vec<u8>> {
        self.inner.save_state()
    }
    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.inner.load_state(bytes)
    }
    fn set_params(&mut self, params: &serde_json::Value) -> Result<(), String> {
        self.inner.set_params(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinyppo_runtime::rng::seeded;

    fn table(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ranges_parse_and_refuse() {
        let r = ParamRange::parse("0.7:1.3").unwrap();
        assert_eq!((r.lo, r.hi, r.abs, r.log), (0.7, 1.3, false, false));
        let r = ParamRange::parse("2:8:abs:log").unwrap();
        assert!(r.abs && r.log);
        assert_eq!(r.to_string(), "2:8:abs:log");
        for bad in [
            "1.3:0.7",
            "0:1",
            "-1:1",
            "nan:1",
            "1",
            "1:x",
            "0.5:2:lin",
            "-1:1:abs:log",
            "1:inf",
        ] {
            assert!(ParamRange::parse(bad).is_err(), "{bad}");
        }
        assert!(ParamRange::parse("-1:1:abs").is_ok());
    }

    #[test]
    fn unknown_names_list_the_parameters() {
        let d = serde_json::json!({"mass": 1.0, "length": 1.0});
        let e = Randomizer::new("rod", &d, &table(&[("masss", "0.7:1.3")])).unwrap_err();
        assert_eq!(e.key, "randomize.masss");
        assert!(
            e.expected.contains("mass, length") || e.expected.contains("length, mass"),
            "{e}"
        );
        let e = Randomizer::new("rod", &d, &table(&[("mass", "1.3:0.7")])).unwrap_err();
        assert!(e.expected.contains("above"), "{e}");
    }

    /// The draws follow the documented distributions: uniform multipliers
    /// (mean and variance of U[lo, hi]), log-uniform (mean of ln), absolute.
    #[test]
    fn draws_follow_the_documented_distribution() {
        let d = serde_json::json!({"a": 2.0, "b": 10.0, "c": 5.0});
        let r = Randomizer::new(
            "p",
            &d,
            &table(&[("a", "0.7:1.3"), ("b", "0.5:2:log"), ("c", "-1:3:abs")]),
        )
        .unwrap();
        let mut rng = seeded(17);
        let n = 20_000;
        let (mut a, mut b, mut c) = (vec![], vec![], vec![]);
        for _ in 0..n {
            let p = r.sample(&mut rng);
            a.push(p["a"].as_f64().unwrap() / 2.0);
            b.push((p["b"].as_f64().unwrap() / 10.0).ln());
            c.push(p["c"].as_f64().unwrap());
        }
        let stats = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64;
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            (m, var, lo, hi)
        };
        // U[lo, hi]: mean (lo+hi)/2, variance (hi−lo)²/12; 5σ of the mean.
        let check = |v: &[f64], lo: f64, hi: f64| {
            let (m, var, min, max) = stats(v);
            let sd = (hi - lo) / 12f64.sqrt();
            assert!(
                (m - (lo + hi) / 2.0).abs() < 5.0 * sd / (n as f64).sqrt(),
                "mean {m}"
            );
            assert!((var / (sd * sd) - 1.0).abs() < 0.05, "var {var}");
            assert!(min >= lo && max < hi + 1e-9, "[{min}, {max}]");
        };
        check(&a, 0.7, 1.3);
        check(&b, 0.5f64.ln(), 2f64.ln());
        check(&c, -1.0, 3.0);
        // Same seed, same draws.
        assert_eq!(r.sample(&mut seeded(3)), r.sample(&mut seeded(3)));
    }
}
