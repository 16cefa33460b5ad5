//! Warnings: what a result cannot show in its own figures (chains that
//! disagree, missed mass, a broken ladder), one type for every report.
//!
//! A [`Warning`] is a [`WarningKind`], for a program to act on, and a
//! message, for a person. JSON reports carry the messages in `warnings`
//! (strings) and the kinds, in the same order, in `warning_kinds`
//! ([`Warnings`] writes both); files the library reads back (shard files,
//! checkpoints) keep each warning whole.
//!
//! ```
//! use boltz::{Warning, WarningKind, Warnings};
//! let mut w = Warnings::default();
//! w.push(Warning::new(WarningKind::Rhat, "R-hat 1.2000 above 1.01"));
//! let v = serde_json::to_value(&w)?;
//! assert_eq!(v["warnings"][0], "R-hat 1.2000 above 1.01");
//! assert_eq!(v["warning_kinds"][0], "rhat");
//! assert!(w.has(WarningKind::Rhat));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::fmt;

/// Declares [`WarningKind`] and its [`WarningKind::ALL`] from one list of
/// variants.
macro_rules! warning_kinds {
    ($($(#[$doc:meta])* $kind:ident,)*) => {
        /// What a warning is about. The names (`kebab-case`, as in JSON's
        /// `warning_kinds`) are stable: scripts count warnings by them
        /// (`scripts/calibrate_warnings.py`).
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(rename_all = "kebab-case")]
        pub enum WarningKind {
            $($(#[$doc])* $kind,)*
        }

        impl WarningKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [WarningKind] = &[$(WarningKind::$kind,)*];
        }
    };
}

warning_kinds! {
    /// Chains disagree: R-hat above 1.01.
    Rhat,
    /// Too few effective draws: bulk ESS below 100.
    LowEss,
    /// Chains run off (a density not normalisable along some direction).
    Drift,
    /// Chains never moved after warm-up (every proposal rejected).
    Stuck,
    /// Transitions diverged (after warm-up, over 1% of them; in negatives,
    /// any).
    Divergences,
    /// The draws' energies do not match those of exact draws.
    ExactMismatch,
    /// A mean or variance lies far from the exact one in Monte Carlo
    /// errors (`compare`).
    MomentMismatch,
    /// The run was interrupted: its results cover the part done.
    Interrupted,
    /// Parallel tempering: no state made a round trip.
    NoRoundTrip,
    /// Parallel tempering: neighbouring replicas almost never swap.
    LowSwap,
    /// Negatives: the chains barely moved.
    Frozen,
    /// log Z: the AIS pilot's over-dispersed chains disagree.
    PilotDisagree,
    /// log Z: pilot chains settled where no annealed particle went.
    PilotRegionsMissed,
    /// log Z: a weight ESS under 10% of the particles.
    WeightEss,
    /// log Z: an estimate is not finite.
    NonFinite,
    /// log Z: forward and reverse AIS disagree.
    ForwardReverseGap,
    /// log Z: the reverse upper bound lies below the forward estimate.
    ReverseBelow,
    /// log Z: SMC's schedule reached its cap of temperatures.
    SmcCap,
    /// log Z merge: SMC shards with resampling merge as independent
    /// islands (the mean of their Z estimates).
    SmcIslands,
    /// log Z check: the estimators disagree.
    EstimatorsDisagree,
    /// log Z check: fewer than two estimators to hold against each other.
    EstimatorsTooFew,
    /// log Z check: an estimator lies further above the combination than
    /// an unbiased estimate of Z may.
    AboveABound,
    /// log Z check: the standard error stayed above its target.
    AboveTargetSe,
    /// An estimate lies far from the exact value, in standard errors.
    ExactValue,
    /// `energy`: values a model does not mean (a binary model's continuous
    /// extension), or not finite.
    EnergyValues,
    /// Negatives: PCD without a state file keeps no chains between calls.
    StateNotKept,
    /// `bench`: a check of what was timed failed.
    CheckFailed,
    /// Read from a file written before warnings had kinds.
    Other,
}

impl WarningKind {
    /// The kind's name, as in JSON (`"rhat"`, `"weight-ess"`, ...).
    pub fn name(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            _ => String::from("other"),
        }
    }
}

/// One warning: its kind and its message (a sentence saying what cannot
/// be trusted and what to do).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "Stored")]
pub struct Warning {
    /// What it is about.
    pub kind: WarningKind,
    /// What a person reads.
    pub message: String,
}

impl Warning {
    /// A warning of `kind` saying `message`.
    pub fn new(kind: WarningKind, message: impl Into<String>) -> Self {
        Warning {
            kind,
            message: message.into(),
        }
    }

    /// A run stopped before its end: `done` says what its results cover;
    /// `checkpoint`, where it can resume from (if it wrote one).
    pub fn interrupted(done: impl fmt::Display, checkpoint: Option<&std::path::Path>) -> Self {
        let resume = checkpoint.map_or(String::new(), |p| {
            format!("; resume from the checkpoint {}", p.display())
        });
        Warning::new(
            WarningKind::Interrupted,
            format!("interrupted: {done}{resume}"),
        )
    }

    /// The same warning with `prefix` before its message (`"shard 1/4: "`,
    /// `"context 3: "`).
    pub fn prefixed(&self, prefix: &str) -> Self {
        Warning::new(self.kind, format!("{prefix}{}", self.message))
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A warning as files hold it: whole, or (files written before warnings
/// had kinds) its message alone, read as [`WarningKind::Other`].
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Stored {
    Whole { kind: WarningKind, message: String },
    Message(String),
}

impl From<Stored> for Warning {
    fn from(s: Stored) -> Self {
        match s {
            Stored::Whole { kind, message } => Warning { kind, message },
            Stored::Message(message) => Warning {
                kind: WarningKind::Other,
                message,
            },
        }
    }
}

/// The warnings of a report, in the order found. As a report's field
/// (`#[serde(flatten)]`) it writes two keys: `warnings`, the messages, and
/// `warning_kinds`, their kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Warnings(pub Vec<Warning>);

impl Warnings {
    /// No warnings.
    pub fn new() -> Self {
        Warnings(Vec::new())
    }

    /// Whether a warning of `kind` is among them.
    pub fn has(&self, kind: WarningKind) -> bool {
        self.0.iter().any(|w| w.kind == kind)
    }

    /// The messages, in order.
    pub fn messages(&self) -> Vec<&str> {
        self.0.iter().map(|w| w.message.as_str()).collect()
    }

    /// The kinds, in order.
    pub fn kinds(&self) -> Vec<WarningKind> {
        self.0.iter().map(|w| w.kind).collect()
    }

    /// Writes `warnings` and `warning_kinds` into a JSON report object.
    pub fn write_into(&self, report: &mut serde_json::Value) {
        report["warnings"] = serde_json::json!(self.messages());
        report["warning_kinds"] = serde_json::json!(self.kinds());
    }
}

impl std::ops::Deref for Warnings {
    type Target = Vec<Warning>;
    fn deref(&self) -> &Vec<Warning> {
        &self.0
    }
}

impl std::ops::DerefMut for Warnings {
    fn deref_mut(&mut self) -> &mut Vec<Warning> {
        &mut self.0
    }
}

impl From<Vec<Warning>> for Warnings {
    fn from(v: Vec<Warning>) -> Self {
        Warnings(v)
    }
}

impl FromIterator<Warning> for Warnings {
    fn from_iter<I: IntoIterator<Item = Warning>>(it: I) -> Self {
        Warnings(it.into_iter().collect())
    }
}

impl IntoIterator for Warnings {
    type Item = Warning;
    type IntoIter = std::vec::IntoIter<Warning>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Warnings {
    type Item = &'a Warning;
    type IntoIter = std::slice::Iter<'a, Warning>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl serde::Serialize for Warnings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("warnings", &self.messages())?;
        m.serialize_entry("warning_kinds", &self.kinds())?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_reads_back_whole_and_a_bare_message_as_other() {
        let w = Warning::new(WarningKind::WeightEss, "weight ESS 3.0 of 100 particles");
        let s = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Warning>(&s).unwrap(), w);
        let old: Warning = serde_json::from_str("\"R-hat 1.2 above 1.01\"").unwrap();
        assert_eq!(old.kind, WarningKind::Other);
        assert_eq!(WarningKind::LowEss.name(), "low-ess");
    }

    #[test]
    fn every_kind_is_documented() {
        let docs = include_str!("../docs/WARNINGS.md");
        for k in WarningKind::ALL {
            assert!(
                docs.contains(&format!("| `{}` |", k.name())),
                "{k:?} not in docs/WARNINGS.md"
            );
        }
    }
}
