//! The diagnose job: R-hat, bulk and tail ESS and MCSE of every coordinate
//! of a (chains, draws, dim) array, their worst cases and the warnings (the
//! CLI's `diagnose` and Python's `boltz.diagnose`, one report for both).

use crate::diagnostics::{self, CoordSummary};
use crate::error::{Error, Result};
use ndarray::ArrayView3;

/// What the diagnose job reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DiagnoseReport {
    /// Chains.
    pub chains: usize,
    /// Draws per chain.
    pub draws: usize,
    /// Coordinates.
    pub dim: usize,
    /// Smallest bulk ESS over the coordinates that vary.
    pub ess_bulk_min: f64,
    /// Smallest tail ESS over the coordinates that vary.
    pub ess_tail_min: f64,
    /// Largest split R-hat over the coordinates that vary.
    pub rhat_max: f64,
    /// Every coordinate's summary (ArviZ's definitions).
    pub coordinates: Vec<CoordSummary>,
    /// Notes on how the figures were read (constant coordinates left out).
    pub notes: Vec<String>,
    /// Warnings: R-hat above 1.01, too few effective draws.
    #[serde(flatten)]
    pub warnings: crate::Warnings,
}

/// Diagnoses `samples` (chains, draws, dim): at least one chain of at
/// least four draws, every entry finite (a non-finite draw is refused,
/// not summarised into NaN figures).
///
/// ```
/// let x = ndarray::Array3::from_shape_fn((4, 100, 2), |(c, t, j)| ((c * 131 + t * 17 + j * 7) % 23) as f64);
/// let r = boltz::jobs::diagnose(x.view())?;
/// assert_eq!((r.chains, r.draws, r.dim, r.coordinates.len()), (4, 100, 2, 2));
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn diagnose(samples: ArrayView3<f64>) -> Result<DiagnoseReport> {
    diagnose_with(samples, None)
}

/// [`diagnose`] that stops between coordinates once `stop` is set
/// ([`Error::Interrupted`]).
pub fn diagnose_with(
    samples: ArrayView3<f64>,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<DiagnoseReport> {
    let (chains, draws, dim) = samples.dim();
    if chains < 1 || draws < 4 {
        return Err(Error::shape(
            "samples",
            "(chains >= 1, draws >= 4, dim)",
            format!("{:?}", samples.shape()),
        ));
    }
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        return Err(Error::param(
            "samples",
            format!(
                "contains non-finite values (first at chain {}, draw {})",
                i / (draws * dim.max(1)),
                (i / dim.max(1)) % draws
            ),
        ));
    }
    crate::budget::check(
        "samples",
        "the diagnostics' working copies",
        working_bytes(chains, draws, dim, 1),
    )?;
    let coordinates = diagnostics::summarize_with_stop(samples, stop)?;
    let ov = diagnostics::overview(&coordinates);
    let constant = coordinates.iter().filter(|s| s.constant).count();
    let mut notes = Vec::new();
    if constant > 0 {
        notes.push(format!(
            "{constant} constant coordinates (R-hat and ESS undefined) are left out of the worst-case figures"
        ));
    }
    Ok(DiagnoseReport {
        chains,
        draws,
        dim,
        ess_bulk_min: ov.ess_bulk_min,
        ess_tail_min: ov.ess_tail_min,
        rhat_max: ov.rhat_max,
        notes,
        warnings: crate::sampler::diagnostic_warnings(&ov),
        coordinates,
    })
}

/// The memory a diagnosis of a (chains, draws, dim) array needs, in bytes:
/// `copies` of the array (the samples themselves, and any copy a front
/// makes), and each coordinate in progress (one per thread at most) about
/// six times its own size (split chains, ranks, normal scores, the tail's
/// indicators). `None` when the sizes overflow.
pub fn working_bytes(chains: usize, draws: usize, dim: usize, copies: usize) -> Option<usize> {
    let in_flight = dim.min(rayon::current_num_threads().max(1));
    let per_value = dim
        .checked_mul(copies)?
        .checked_add(in_flight.checked_mul(6)?)?;
    crate::budget::bytes(&[chains, draws, per_value], 8)
}
