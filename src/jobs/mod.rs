//! Jobs: what the fronts (the `boltz` command-line tool, the Python
//! package) run, with their defaults, checks, warnings and reports in one
//! place.
//!
//! A job takes a [`Model`](crate::Model) (a suite target, a model file or
//! any energy wrapped by [`Model::custom`](crate::Model::custom)), its
//! settings as plain values and a [`Control`](crate::run::Control), and
//! returns arrays and a JSON report whose keys are the CLI's. Fronts only
//! read inputs, write outputs and print.

pub mod logz;
pub mod merge;
pub mod negatives;
pub mod sample;

pub use logz::{LogzJob, LogzReport, LogzRun, logz, prob};
pub use merge::{MergeRun, merge};
pub use negatives::NegativesJob;
pub use sample::{SampleJob, SampleRun, sample};
