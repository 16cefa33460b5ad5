//! Benchmarking samplers on any [`Energy`]: the table behind `boltz compare`.
//!
//! Each sampler runs with its warm-up adaptation on the same model, seed,
//! chains and draws; the table gives what a user chooses a sampler by:
//! bulk and tail ESS per second and per gradient evaluation, acceptance,
//! divergences, the worst R-hat and, where the model's moments are known
//! (suite targets, Gaussians, mixtures, funnels), the error of the
//! estimated means and variances. Timing covers the sampling run (warm-up
//! included), not the diagnostics.

use crate::diagnostics::{self, CoordSummary};
use crate::energy::Energy;
use crate::error::{Error, Result};
use crate::kernels::{KernelSpec, Mala};
use crate::run::Control;
use crate::sampler::{NoObserver, SampleConfig, sample};
use ndarray::{ArrayView3, Axis};

/// Settings shared by every sampler of a comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompareConfig {
    /// Chains per sampler.
    pub chains: usize,
    /// Warm-up steps (adaptation) per sampler.
    pub warmup: usize,
    /// Recorded draws per chain (>= 4).
    pub draws: usize,
    /// The seed, the same for every sampler.
    pub seed: u64,
    /// ULA's step; `None` = the step an unpreconditioned MALA warm-up
    /// adapts to on this model ([`ula_default_step`]).
    pub ula_step: Option<f64>,
    /// Inverse temperature: every sampler targets `exp(-beta F)`. The
    /// moments given to [`compare`] are those of beta 1: at another beta
    /// the error columns are left out.
    pub beta: f64,
    /// Settings every sampler is built with (each reads those its registry
    /// entry names; a step size is where each warm-up starts).
    pub kernel_settings: crate::kernels::KernelSettings,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            chains: 4,
            warmup: 1000,
            draws: 1000,
            seed: 0,
            ula_step: None,
            beta: 1.0,
            kernel_settings: Default::default(),
        }
    }
}

/// One sampler's row of the comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompareRow {
    /// The sampler's name (`mala`, `hmc`, ...).
    pub sampler: String,
    /// Wall-clock seconds of the run (warm-up included).
    pub wall_s: f64,
    /// Gradient evaluations (all chains, warm-up included).
    pub grad_evals: u64,
    /// Energy evaluations (with or without gradient).
    pub energy_evals: u64,
    /// Smallest bulk ESS over coordinates.
    pub ess_bulk_min: f64,
    /// Smallest tail ESS over coordinates.
    pub ess_tail_min: f64,
    /// `ess_bulk_min / wall_s`.
    pub ess_bulk_per_s: f64,
    /// `ess_tail_min / wall_s`.
    pub ess_tail_per_s: f64,
    /// `ess_bulk_min` per gradient evaluation (per energy evaluation for
    /// gradient-free samplers).
    pub ess_bulk_per_eval: f64,
    /// `ess_tail_min` per gradient (or energy) evaluation.
    pub ess_tail_per_eval: f64,
    /// Mean acceptance probability over chains (1 for ULA and Gibbs).
    pub acceptance: f64,
    /// Divergences during sampling (all chains).
    pub divergences: usize,
    /// The worst coordinate's rank-normalised split R-hat.
    pub rhat_max: f64,
    /// The step size used for sampling (median over chains; NaN for Gibbs).
    pub step_size: f64,
    /// Largest `|mean_hat - mean| / sd` over coordinates, where moments are known.
    pub mean_error: Option<f64>,
    /// Largest `|mean_hat - mean| / MCSE`: above ~4 the error is not Monte Carlo noise.
    pub mean_error_z: Option<f64>,
    /// Largest `|var_hat / var - 1|` over coordinates, where moments are known.
    pub var_error: Option<f64>,
    /// Largest `|var_hat - var|` in Monte Carlo standard errors of the
    /// variance (`sqrt((m4 - var_hat^2) / ESS_bulk)` per coordinate).
    pub var_error_z: Option<f64>,
    /// What [`crate::sampler::warnings`] says about the run (R-hat, ESS,
    /// drift, divergences), and where the moments are known a mean or
    /// variance further from them than Monte Carlo error allows
    /// ([`moment_z_limit`]). A sampler with a warning is not ranked.
    #[serde(flatten)]
    pub warnings: crate::Warnings,
}

/// The comparison: one row per sampler plus the settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompareReport {
    /// The model's name (as the caller gave it).
    pub model: String,
    /// Its dimension.
    pub dim: usize,
    /// The shared settings.
    pub config: CompareConfig,
    /// Worker threads used.
    pub threads: usize,
    /// Rows in the order the samplers were given.
    pub rows: Vec<CompareRow>,
    /// The samplers without warnings (their draws pass every check: R-hat,
    /// ESS, divergences, the known moments), fastest first by bulk ESS per
    /// second. A sampler whose draws fail a check is not ranked, however
    /// fast: its ESS measures how well it explores the wrong distribution.
    pub ranking: Vec<String>,
    /// Whether exact moments were available for the error columns.
    pub moments_known: bool,
}

/// Exact per-coordinate means and variances of the target, where known:
/// they turn on the error columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    /// Mean of each coordinate.
    pub mean: Vec<f64>,
    /// Variance of each coordinate.
    pub var: Vec<f64>,
}

/// ULA's default step on `energy`, ULA having no acceptance rate to tune
/// against: the step a MALA warm-up without a mass matrix adapts to
/// (`config`'s chains, seed, beta and warm-up length, at least 100 steps,
/// one shared step size), in ULA's own units (both unpreconditioned) and
/// set by the curvature where the chains are. A step borrowed from a
/// preconditioned MALA (its step times the smallest inverse mass) was too
/// large on multimodal targets, where the variance pooled over the modes
/// is not the curvature inside one (issue 33: 1.68 against MALA's 0.352 on
/// a three-component mixture, the draws' mean 17.9 standard errors off).
pub fn ula_default_step(energy: &dyn Energy, config: &SampleConfig) -> Result<f64> {
    let mut c = config.clone();
    c.draws = 1;
    c.warmup = config.warmup.max(100);
    c.shared_step_size = true;
    c.adapt_mass = false;
    c.adapt_step_size = true;
    c.record_energies = false;
    c.tuning = None;
    let o = sample(energy, &Mala::new(0.1)?, &c, None, &mut NoObserver)?;
    Ok(o.stats.step_size)
}

/// Errors of the draws' means and variances against the exact moments.
fn moment_errors(
    samples: ArrayView3<f64>,
    sums: &[CoordSummary],
    mean: &[f64],
    var: &[f64],
) -> MomentErrors {
    let mut e = MomentErrors::default();
    for (j, s) in sums.iter().enumerate() {
        let sd = var[j].sqrt();
        let err = (s.mean - mean[j]).abs();
        e.mean_sd = e.mean_sd.max(err / sd);
        e.mean_z = e.mean_z.max(err / s.mcse_mean);
        let col = samples.index_axis(Axis(2), j);
        let dev2 = col.mapv(|x| (x - s.mean) * (x - s.mean));
        let v = dev2.mean().unwrap_or(f64::NAN);
        let m4 = dev2.mapv(|d| d * d).mean().unwrap_or(f64::NAN);
        e.var_rel = e.var_rel.max((v / var[j] - 1.0).abs());
        // The variance estimate's Monte Carlo error: the sample variance of
        // (x - mean)^2 over the coordinate's bulk ESS.
        let se = ((m4 - v * v).max(0.0) / s.ess_bulk.max(1.0)).sqrt();
        if se > 0.0 {
            e.var_z = e.var_z.max((v - var[j]).abs() / se);
        }
    }
    e
}

/// The largest errors of a run's moments over coordinates.
#[derive(Clone, Copy, Debug, Default)]
struct MomentErrors {
    /// `|mean_hat - mean| / sd`.
    mean_sd: f64,
    /// `|mean_hat - mean| / MCSE`.
    mean_z: f64,
    /// `|var_hat / var - 1|`.
    var_rel: f64,
    /// `|var_hat - var|` in Monte Carlo standard errors.
    var_z: f64,
}

/// The z beyond which a moment error over `coordinates` coordinates is
/// not Monte Carlo noise: the two-sided normal quantile at 0.1% divided by
/// the coordinates (Bonferroni; 3.3 for one coordinate, 4.4 for 100).
pub fn moment_z_limit(coordinates: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    let p = 0.001 / (2.0 * coordinates.max(1) as f64);
    Normal::standard().inverse_cdf(1.0 - p)
}

/// The samplers without warnings, fastest first by bulk ESS per second.
fn ranking(rows: &[CompareRow]) -> Vec<String> {
    let mut ok: Vec<&CompareRow> = rows.iter().filter(|r| r.warnings.is_empty()).collect();
    ok.sort_by(|a, b| b.ess_bulk_per_s.total_cmp(&a.ess_bulk_per_s));
    ok.iter().map(|r| r.sampler.clone()).collect()
}

/// Runs every sampler (by [`KernelSpec`]) on `energy` with the same
/// chains, seed and warm-up, and gathers the table. `moments`, where known,
/// adds the errors of the estimated means and variances. `name` labels
/// the report.
///
/// ```
/// use boltz::compare::{CompareConfig, Moments, compare};
/// use boltz::kernels::KernelSpec;
/// use boltz::FnEnergy;
/// // A 2-D Gaussian with standard deviations 1 and 0.1, written by hand.
/// let e = FnEnergy::new(
///     2,
///     |y: &[f64]| 0.5 * (y[0] * y[0] + 100.0 * y[1] * y[1]),
///     |y: &[f64], g: &mut [f64]| {
///         (g[0], g[1]) = (y[0], 100.0 * y[1]);
///         0.5 * (y[0] * y[0] + 100.0 * y[1] * y[1])
///     },
/// );
/// let specs = [KernelSpec::new("mala")?, KernelSpec::new("hmc")?];
/// let config = CompareConfig { chains: 4, warmup: 300, draws: 300, ..Default::default() };
/// let moments = Moments { mean: vec![0.0, 0.0], var: vec![1.0, 0.01] };
/// let report = compare("my-gauss", &e, &specs, Some(&moments), &config)?;
/// assert_eq!(report.rows.len(), 2);
/// assert!(report.rows.iter().all(|r| r.rhat_max < 1.1));
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn compare(
    name: &str,
    energy: &dyn Energy,
    samplers: &[KernelSpec],
    moments: Option<&Moments>,
    config: &CompareConfig,
) -> Result<CompareReport> {
    compare_with(name, energy, samplers, moments, config, &Control::default())
}

/// [`compare`] with a stop flag: a stopped comparison is an
/// [`Error::Interrupted`] (its rows would compare unequal runs).
pub fn compare_with(
    name: &str,
    energy: &dyn Energy,
    samplers: &[KernelSpec],
    moments: Option<&Moments>,
    config: &CompareConfig,
    control: &Control,
) -> Result<CompareReport> {
    if samplers.is_empty() {
        return Err(Error::param("samplers", "name at least one sampler"));
    }
    if config.draws < 4 {
        return Err(Error::param("draws", "must be >= 4 for ESS and R-hat"));
    }
    for s in samplers {
        s.check(energy)?;
    }
    let mut cfg = SampleConfig::new();
    cfg.n_chains = config.chains;
    cfg.warmup = config.warmup;
    cfg.draws = config.draws;
    cfg.seed = config.seed;
    cfg.beta = config.beta;
    cfg.record_energies = false;
    cfg.validate(energy.dim())?;
    let moments = moments.filter(|m| {
        m.mean.len() == energy.dim() && m.var.len() == energy.dim() && config.beta == 1.0
    });
    // ULA has no acceptance rate to tune against: it takes the step an
    // unpreconditioned MALA warm-up adapts to.
    let mut ula_step = config.ula_step;
    if let Some(s) = ula_step {
        crate::error::check_positive("ULA step", s)?;
    }
    let mut rows = Vec::new();
    for spec in samplers {
        let is_ula = spec.name() == "ula";
        if is_ula && ula_step.is_none() && spec.settings.step_size.is_none() {
            ula_step = Some(ula_default_step(energy, &cfg)?);
        }
        let mut spec = spec.clone();
        if is_ula && spec.settings.step_size.is_none() {
            spec.settings.step_size = ula_step.or(Some(0.01));
        }
        let kernel = spec.build()?;
        let mut c = cfg.clone();
        c.adapt_step_size = kernel.target_accept().is_some() || kernel.chooses_step();
        let out = crate::sampler::sample_with(
            energy,
            kernel.as_ref(),
            &c,
            None,
            &mut NoObserver,
            control,
        )?;
        if !out.complete {
            return Err(Error::Interrupted(format!(
                "the comparison was stopped during {}",
                spec.name()
            )));
        }
        rows.push(row(
            energy,
            spec.name(),
            kernel.has_step_size(),
            kernel.grad_evals_per_step() > 0,
            &out,
            moments,
        )?);
    }
    Ok(CompareReport {
        model: name.to_string(),
        dim: energy.dim(),
        config: config.clone(),
        threads: rayon::current_num_threads(),
        ranking: ranking(&rows),
        rows,
        moments_known: moments.is_some(),
    })
}

/// One sampler's row from its run.
fn row(
    energy: &dyn Energy,
    name: &str,
    has_step: bool,
    uses_gradient: bool,
    out: &crate::sampler::SampleOutput,
    moments: Option<&Moments>,
) -> Result<CompareRow> {
    let sums = diagnostics::summarize(out.samples.view())?;
    let ov = diagnostics::overview(&sums);
    let mut warnings = crate::sampler::warnings(energy, out, Some(&ov), None)?;
    let s = &out.stats;
    let wall = s.wall_s;
    // Gradient-free samplers are charged per energy evaluation.
    let evals = if uses_gradient {
        s.grad_evals
    } else {
        s.energy_evals
    };
    let (mean_error, mean_error_z, var_error, var_error_z) = match moments {
        Some(m) => {
            let e = moment_errors(out.samples.view(), &sums, &m.mean, &m.var);
            let limit = moment_z_limit(m.mean.len());
            if e.mean_z > limit {
                warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::MomentMismatch, format!(
                    "a mean is {:.1} Monte Carlo standard errors from the exact one (more than {limit:.1}, the 0.1% bound over {} coordinates): the draws are biased (a step too large for an unadjusted kernel, modes not mixed) or not converged; not ranked",
                    e.mean_z,
                    m.mean.len()
                )));
            }
            if e.var_z > limit {
                warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::MomentMismatch, format!(
                    "a variance is {:.1} Monte Carlo standard errors from the exact one (relative error {:.3}, more than {limit:.1} se): the draws are biased or not converged; not ranked",
                    e.var_z, e.var_rel
                )));
            }
            (
                Some(e.mean_sd),
                Some(e.mean_z),
                Some(e.var_rel),
                Some(e.var_z),
            )
        }
        None => (None, None, None, None),
    };
    Ok(CompareRow {
        sampler: name.to_string(),
        wall_s: wall,
        grad_evals: s.grad_evals,
        energy_evals: s.energy_evals,
        ess_bulk_min: ov.ess_bulk_min,
        ess_tail_min: ov.ess_tail_min,
        ess_bulk_per_s: ov.ess_bulk_min / wall,
        ess_tail_per_s: ov.ess_tail_min / wall,
        ess_bulk_per_eval: ov.ess_bulk_min / evals.max(1) as f64,
        ess_tail_per_eval: ov.ess_tail_min / evals.max(1) as f64,
        acceptance: s.acceptance.iter().sum::<f64>() / s.acceptance.len().max(1) as f64,
        divergences: s.divergences.iter().sum(),
        rhat_max: ov.rhat_max,
        step_size: if has_step { s.step_size } else { f64::NAN },
        mean_error,
        mean_error_z,
        var_error,
        var_error_z,
        warnings,
    })
}

/// [`compare`] on a model (with `context` for a conditional one): the named
/// samplers (default `gibbs` for binary models, else `mala`, `hmc`, `rwm`,
/// `ula`), with the model's exact moments where it has them; `control`'s
/// stop flag ends it with [`Error::Interrupted`].
///
/// ```
/// let model = boltz::model::load("gauss-ill")?;
/// let config = boltz::CompareConfig { warmup: 200, draws: 200, ..Default::default() };
/// let report = boltz::compare::compare_model(&model, None, Some(&["mala".to_string()]), &config, &Default::default())?;
/// assert!(report.moments_known && report.rows.len() == 1);
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn compare_model(
    model: &crate::Model,
    context: Option<ndarray::Array2<f64>>,
    samplers: Option<&[String]>,
    config: &CompareConfig,
    control: &Control,
) -> Result<CompareReport> {
    let energy = model.energy(context)?;
    let defaults: Vec<String> = if energy.space() == crate::StateSpace::Binary {
        vec!["gibbs".into()]
    } else {
        ["mala", "hmc", "rwm", "ula"].map(String::from).to_vec()
    };
    let specs = samplers
        .unwrap_or(&defaults)
        .iter()
        .map(|s| KernelSpec::with_settings(s, config.kernel_settings.clone()))
        .collect::<Result<Vec<_>>>()?;
    crate::error::check_beta("beta", config.beta)?;
    let moments = model.moments().map(|(mean, var)| Moments { mean, var });
    compare_with(
        &model.name,
        energy.as_ref(),
        &specs,
        moments.as_ref(),
        config,
        control,
    )
}
