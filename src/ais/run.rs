//! Forward and reverse AIS runs: plan, estimating pass, warnings,
//! bootstrap and repeats.

use super::pass::{PassOutput, Plan, pass};
use super::plan::plan;
use super::weights::bootstrap_stderr;
use super::{AisConfig, AisProblem, AisResult, Estimate};
use crate::error::{Error, Result};
use crate::rng::aux_rng;
use crate::run::{Control, NoObserver, Observer, in_pool};
use ndarray::ArrayView2;
use std::path::Path;
use std::time::Instant;

/// Forward AIS: `log Z` of `exp(-beta F)` for each context, with error bars.
///
/// ```
/// use boltz::ais::{self, AisConfig, AisProblem, Base};
/// use std::sync::Arc;
/// // A 2-D Gaussian with standard deviations 1 and 2: log Z = log(2 pi * 2).
/// let energy = Arc::new(boltz::energy::DiagGaussian::new(vec![0.0; 2], vec![1.0, 2.0])?);
/// let base = Base::isotropic(2, 3.0)?;
/// let mut config = AisConfig::new();
/// (config.particles, config.temps) = (256, 200);
/// let result = ais::ais(&AisProblem::new(energy, &base)?, &config)?;
/// let e = &result.estimates[0];
/// assert!((e.log_z - (4.0 * std::f64::consts::PI).ln()).abs() < 5.0 * e.stderr + 0.01);
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn ais(problem: &AisProblem<'_>, config: &AisConfig) -> Result<AisResult> {
    ais_with(problem, config, &Control::default(), None, &mut NoObserver)
}

/// [`ais`] with checkpoints of the estimating pass, a stop flag, resume
/// from a checkpoint and an observer (one step per temperature). A resumed
/// run's result is bit-identical to an uninterrupted one (the pilot is
/// deterministic and simply run again). A stopped run returns the
/// estimates at the temperature reached, with `complete` false.
pub fn ais_with(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<AisResult> {
    in_pool(|| forward(problem, config, control, resume, observer))
}

/// Most memory an AIS run may hold, in bytes.
pub const MAX_AIS_BYTES: usize = 8 << 30;

/// Refuses runs whose particle state (about 8 arrays of particles x dim
/// f64: positions, proposals, gradients, momenta, cached components) would
/// not fit in [`MAX_AIS_BYTES`].
fn check_memory(problem: &AisProblem<'_>, config: &AisConfig) -> Result<()> {
    let bytes = problem
        .groups
        .checked_mul(config.particles)
        .and_then(|n| n.checked_mul(problem.energy.dim().max(1)))
        .and_then(|x| x.checked_mul(64));
    match bytes {
        Some(b) if b <= MAX_AIS_BYTES => Ok(()),
        _ => Err(Error::param(
            "particles",
            format!(
                "{} contexts x {} particles x {} dims would need more than {} GiB",
                problem.groups,
                config.particles,
                problem.energy.dim(),
                MAX_AIS_BYTES >> 30
            ),
        )),
    }
}

fn to_estimates(p: &PassOutput, particles: usize) -> Vec<Estimate> {
    (0..p.log_z.len())
        .map(|g| Estimate {
            log_z: p.log_z[g],
            stderr: p.var[g].sqrt(),
            ess: p.ess[g],
            n: particles,
        })
        .collect()
}

/// Warnings for estimates that cannot be trusted (and NaN error bars for
/// non-finite ones).
fn warnings(estimates: &mut [Estimate], config: &AisConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (g, e) in estimates.iter_mut().enumerate() {
        if !e.log_z.is_finite() {
            out.push(format!("context {g}: log Z is not finite (every weight -inf or NaN): the base does not cover the target, or the energy overflows"));
            e.stderr = f64::NAN;
        } else if e.ess < 0.1 * config.particles as f64 && config.resample_threshold.is_none() {
            out.push(format!("context {g}: weight ESS {:.1} of {} particles (< 10%): the error bar is unreliable and log Z is likely biased low; use more temperatures or particles", e.ess, config.particles));
        }
    }
    out
}

fn frozen(betas: &[f64], steps: &[f64]) -> Plan {
    Plan::Frozen {
        betas: betas.to_vec(),
        steps: steps.to_vec(),
    }
}

fn forward(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> Result<AisResult> {
    let start = Instant::now();
    config.validate()?;
    check_memory(problem, config)?;
    let (betas, steps, pilot_evals) = plan(problem, config)?;
    let main = pass(
        problem,
        config,
        config.particles,
        config.seed,
        frozen(&betas, &steps),
        None,
        Some((control, resume)),
        Some(observer),
    )?;
    let mut estimates = to_estimates(&main, config.particles);
    let warnings = warnings(&mut estimates, config);
    let bootstrap_stderr = (config.bootstrap > 0 && main.complete).then(|| {
        let mut rng = aux_rng(config.seed, 2);
        (0..problem.groups)
            .map(|g| {
                bootstrap_stderr(
                    &main.log_weights.row(g).to_vec(),
                    config.bootstrap,
                    &mut rng,
                )
            })
            .collect()
    });
    let mut repeats = Vec::new();
    let mut evals = pilot_evals + main.evals;
    for r in (1..=config.repeats).take_while(|_| main.complete) {
        let seed = config
            .seed
            .wrapping_add((r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let p = pass(
            problem,
            config,
            config.particles,
            seed,
            frozen(&betas, &steps),
            None,
            None,
            None,
        )?;
        evals += p.evals;
        repeats.push(to_estimates(&p, config.particles));
    }
    Ok(AisResult {
        estimates,
        bootstrap_stderr,
        repeats,
        log_weights: main.log_weights,
        betas: main.betas,
        step_sizes: main.steps,
        acceptance: main.acceptance,
        divergences: main.divergences,
        resamplings: main.resamplings,
        energy_evals: evals,
        wall_s: start.elapsed().as_secs_f64(),
        warnings,
        complete: main.complete,
    })
}

/// Reverse AIS from exact draws of the target (rows of `samples`, one
/// context's particles after another): anneals from b = 1 to the base and
/// returns an estimate of `-log Z` turned into a stochastic **upper** bound
/// on `log Z` (bidirectional Monte Carlo, Grosse, Ghahramani & Adams 2015):
/// `log Z_upper = -(logsumexp(log w_rev) - log N)`. The same temperatures
/// and steps as a forward run with `config` are used.
pub fn reverse_ais(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    samples: ArrayView2<f64>,
) -> Result<AisResult> {
    in_pool(|| reverse(problem, config, samples))
}

fn reverse(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    samples: ArrayView2<f64>,
) -> Result<AisResult> {
    let start = Instant::now();
    config.validate()?;
    check_memory(problem, config)?;
    let n = problem.groups * config.particles;
    if samples.dim() != (n, problem.energy.dim()) {
        return Err(Error::shape(
            "reverse AIS samples",
            format!("({n}, {})", problem.energy.dim()),
            format!("{:?}", samples.shape()),
        ));
    }
    let (betas, steps, pilot_evals) = plan(problem, config)?;
    // Reverse steps run at b_{T-1}, ..., b_1: the forward step used at
    // temperature k is steps[k - 1].
    let mut rev: Vec<f64> = steps.iter().rev().copied().collect();
    let shift = 1.min(rev.len());
    rev.rotate_left(shift);
    let p = pass(
        problem,
        config,
        config.particles,
        config.seed ^ 0x0123_4567_89AB_CDEF,
        frozen(&betas, &rev),
        Some(samples),
        None,
        None,
    )?;
    let log_z0 = super::path::make_path(problem.energy.as_ref(), problem.base, config, 1)?.log_z0();
    // The pass started its log Z at log Z0 (the forward start). In reverse,
    // mean(w) estimates Z0 / Z: log Z_upper = log Z0 - log mean(w).
    let estimates = (0..problem.groups)
        .map(|g| Estimate {
            log_z: 2.0 * log_z0 - p.log_z[g],
            stderr: p.var[g].sqrt(),
            ess: p.ess[g],
            n: config.particles,
        })
        .collect();
    Ok(AisResult {
        estimates,
        bootstrap_stderr: None,
        repeats: vec![],
        log_weights: p.log_weights,
        betas: p.betas,
        step_sizes: p.steps,
        acceptance: p.acceptance,
        divergences: p.divergences,
        resamplings: p.resamplings,
        energy_evals: pilot_evals + p.evals,
        wall_s: start.elapsed().as_secs_f64(),
        warnings: vec![],
        complete: p.complete,
    })
}
