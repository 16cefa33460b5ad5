//! Jobs: what the fronts (the `boltz` command-line tool, the Python
//! package) run, with their defaults, checks, warnings and reports in one
//! place.
//!
//! A job takes a [`Model`](crate::Model) (a suite target, a model file or
//! any energy wrapped by [`Model::custom`](crate::Model::custom)), its
//! settings as plain values and a [`Control`](crate::run::Control), and
//! returns arrays and a JSON report whose keys are the CLI's. Fronts only
//! read inputs, write outputs and print.

mod check;
pub mod diagnose;
pub mod logz;
pub mod merge;
pub mod negatives;
pub mod sample;

pub use check::chi_square;
pub use diagnose::{DiagnoseReport, diagnose};
pub use logz::{LogzJob, LogzReport, LogzRun, logz, prob};
pub use merge::{MergeRun, merge};
pub use negatives::NegativesJob;
pub use sample::{SampleJob, SampleRun, sample};

use crate::error::{Error, Result};

/// A job's settings from JSON (how the Python front sends them): missing
/// fields take the job's defaults ([`Default`]), a field no job of this
/// kind has is refused by name. The kernel's settings are flattened into
/// the jobs ([`crate::kernels::KernelSettings`]), which serde cannot check
/// for unknown fields itself, so the known names are read off the
/// serialised defaults.
///
/// ```
/// use boltz::jobs::{SampleJob, from_json};
/// let job: SampleJob = from_json("sample", r#"{"sampler": "nuts", "max_depth": 6}"#)?;
/// assert_eq!(job.kernel_settings.max_depth, 6);
/// assert!(from_json::<SampleJob>("sample", r#"{"max_dpeth": 6}"#).is_err());
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn from_json<T>(what: &str, json: &str) -> Result<T>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let bad = |e: String| Error::param(format!("{what} settings"), e);
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let known = serde_json::to_value(T::default()).map_err(|e| bad(e.to_string()))?;
    if let (Some(given), Some(known)) = (value.as_object(), known.as_object())
        && let Some(k) = given.keys().find(|k| !known.contains_key(*k))
    {
        let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
        names.sort_unstable();
        return Err(bad(format!(
            "unknown field `{k}` (known: {})",
            names.join(", ")
        )));
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// What a checkpoint, shard header or state file stores as the run's
/// settings, and what a resume, a merge or a later call must match: the
/// job serialised whole (every setting it has, the kernel's among them, by
/// construction: a setting added to a job or to
/// [`crate::kernels::KernelSettings`] is checked without a line more), the
/// model's fingerprint (its parameters) and, for each input file, a
/// fingerprint of its bytes (`inputs`: name, fingerprint).
pub fn run_settings<T: serde::Serialize>(
    job: &T,
    model: &crate::Model,
    inputs: &[(&str, String)],
) -> Result<String> {
    let inputs: serde_json::Map<String, serde_json::Value> = inputs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    let v = serde_json::json!({
        "model_fingerprint": model.fingerprint(),
        "inputs": inputs,
        "job": job,
    });
    serde_json::to_string(&v)
        .map_err(|e| Error::Numerical(format!("cannot encode the run's settings: {e}")))
}
