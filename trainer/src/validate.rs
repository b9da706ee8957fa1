//! One validation layer for every hyperparameter and flag: `train`'s
//! configuration ([`TrainConfig::validate`](crate::config::TrainConfig::validate)),
//! `finetune`'s ([`FinetuneConfig::validate`](crate::finetune::FinetuneConfig::validate)),
//! `study`'s and the episode counts of `eval` and `simulate` all check
//! their values with these rules, before any file is written.
//!
//! A failed check is an [`Invalid`]: the key (`ppo.clip_coef`, or a flag
//! such as `--clip-coef`), the value as given, and what was expected. No
//! value reaches the numerical code unchecked, so nothing downstream can
//! panic on it (`f32::clamp` with a NaN or reversed bound, an allocation
//! of `num_envs × num_steps` that cannot succeed).

use std::fmt;

/// A value that fails its rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The key or flag.
    pub key: String,
    /// The value, as given.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

impl std::error::Error for Invalid {}

/// The checks of one configuration, in order; the first failure is kept.
#[derive(Debug, Default)]
pub struct Checks(Option<Invalid>);

impl Checks {
    /// No checks yet.
    pub fn new() -> Self {
        Checks(None)
    }

    fn check(
        &mut self,
        ok: bool,
        key: &str,
        value: impl fmt::Display,
        expected: &str,
    ) -> &mut Self {
        if self.0.is_none() && !ok {
            self.0 = Some(Invalid {
                key: key.to_string(),
                value: value.to_string(),
                expected: expected.to_string(),
            });
        }
        self
    }

    /// A finite number `> 0`.
    pub fn positive(&mut self, key: &str, v: f32) -> &mut Self {
        self.check(v.is_finite() && v > 0.0, key, v, "a finite number > 0")
    }

    /// A finite number `≥ 0`.
    pub fn non_negative(&mut self, key: &str, v: f32) -> &mut Self {
        self.check(v.is_finite() && v >= 0.0, key, v, "a finite number ≥ 0")
    }

    /// A number in `[lo, hi]` (finite).
    pub fn within(&mut self, key: &str, v: f32, lo: f32, hi: f32) -> &mut Self {
        let ok = v.is_finite() && (lo..=hi).contains(&v);
        self.check(ok, key, v, &format!("a number in [{lo}, {hi}]"))
    }

    /// A number in `(0, hi]` (finite).
    pub fn positive_at_most(&mut self, key: &str, v: f32, hi: f32) -> &mut Self {
        let ok = v.is_finite() && v > 0.0 && v <= hi;
        self.check(ok, key, v, &format!("a number in (0, {hi}]"))
    }

    /// An integer in `[lo, hi]`.
    pub fn count(&mut self, key: &str, v: u64, lo: u64, hi: u64) -> &mut Self {
        self.check(
            (lo..=hi).contains(&v),
            key,
            v,
            &format!("an integer in {lo}..={hi}"),
        )
    }

    /// A rule of its own: `ok`, else `key = value` expected `expected`.
    pub fn rule(
        &mut self,
        ok: bool,
        key: &str,
        value: impl fmt::Display,
        expected: &str,
    ) -> &mut Self {
        self.check(ok, key, value, expected)
    }

    /// The first failure, as an error.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        match self.0.take() {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    }
}
