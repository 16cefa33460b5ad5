//! Reverse AIS from exact draws of the target: a stochastic upper bound
//! on log Z (bidirectional Monte Carlo).

use super::pass::pass;
use super::plan::plan;
use super::run::{check_memory, frozen, merge};
use super::{AisConfig, AisProblem, AisResult, Estimate};
use crate::error::{Error, Result};
use crate::run::in_pool;
use ndarray::ArrayView2;
use std::time::Instant;

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
    let n = problem.groups * config.particles;
    if samples.dim() != (n, problem.energy.dim()) {
        return Err(Error::shape(
            "reverse AIS samples",
            format!("({n}, {})", problem.energy.dim()),
            format!("{:?}", samples.shape()),
        ));
    }
    let batches = problem.batches();
    if batches.len() == 1 {
        return reverse_one(problem, config, samples);
    }
    let mut earlier = None;
    for range in batches {
        let sub = problem.batch(range.clone())?;
        let m = config.particles;
        let rows = samples.slice(ndarray::s![range.start * m..range.end * m, ..]);
        let r = reverse_one(&sub, config, rows)?;
        earlier = Some(merge(earlier, r, m));
    }
    let e = earlier.expect("at least one batch");
    let mut out = e
        .result
        .into_result(e.log_weights, problem.groups, config.particles);
    out.wall_s = start.elapsed().as_secs_f64();
    Ok(out)
}

fn reverse_one(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    samples: ArrayView2<f64>,
) -> Result<AisResult> {
    let start = Instant::now();
    check_memory(problem, config)?;
    let (betas, steps, pilot_evals, _) = plan(problem, config, None)?.expect("no stop flag");
    // Reverse steps run at b_{T-1}, ..., b_1: the forward step used at
    // temperature k is steps[k - 1].
    let mut rev: Vec<f64> = steps.iter().rev().copied().collect();
    let shift = 1.min(rev.len());
    rev.rotate_left(shift);
    let p = pass(
        problem,
        config,
        config.particles,
        crate::rng::PassSeed::ReverseAis.of(config.seed),
        frozen(&betas, &rev),
        Some(samples),
        None,
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
        positions: None,
        betas: p.betas,
        step_sizes: p.steps,
        acceptance: p.acceptance,
        accepted: p.accepted,
        divergences: p.divergences,
        resamplings: p.resamplings,
        smc: None,
        energy_evals: pilot_evals + p.evals,
        shared_evals: 0,
        wall_s: start.elapsed().as_secs_f64(),
        warnings: vec![],
        complete: p.complete,
        contexts_done: if p.complete { problem.groups } else { 0 },
        context_range: None,
    })
}
