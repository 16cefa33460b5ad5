//! Annealed SMC with resample-move, run as independent islands.
//!
//! A pilot SMC pass ([`super::AisConfig::pilot_particles`] particles per
//! context, its own streams) chooses the temperatures as it runs, by
//! conditional ESS, and re-tunes the step at each
//! ([`super::ScheduleChoice::Smc`]). The islands then follow that schedule
//! and those steps: each is a population of `particles / islands`
//! particles per context (particle `i` keeps the stream `(seed, i)` it has
//! in the whole run) with its own resampling and moves. A schedule chosen
//! by the particles it weights biases `log Z` upwards by O(T / N) (on a 2-D
//! Gaussian with 32 particles an island: +0.05 nats, 12 standard errors of
//! the mean of 400 runs; with the pilot's schedule, none measurable); given
//! the pilot, the islands are independent and each `Z_i` unbiased. The
//! islands' estimates of Z are averaged: `log Z_hat = log mean_i Z_i`.
//! Its standard error is the larger of two estimates: the islands' Lee &
//! Whiteley (2018) genealogy variances, combined; and the spread of the
//! `Z_i` about their mean. The first sees the variance of each island's
//! weights but fails when a genealogy collapses or the weights are heavy
//! tailed; the second sees whatever makes whole runs differ (how well the
//! moves mix, the adapted schedule) but has only `islands - 1` degrees of
//! freedom. Both are reported ([`SmcSummary`]).

use super::pass::{PassOutput, Plan, pass};
use super::run::Shifted;
use super::saved::{Earlier, checkpoint_islands};
use super::{AisConfig, AisProblem, AisResult, Estimate};
use crate::energy::log_sum_exp;
use crate::error::{Error, Result};
use crate::run::{Control, Observer};
use crate::shard::Shard;
use std::path::Path;
use std::time::Instant;

/// What one island produced (kept in checkpoints of the later islands).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Island {
    log_z: Vec<f64>,
    var: Vec<f64>,
    ess: Vec<f64>,
    ancestors: Vec<usize>,
    accepted: crate::tally::Acceptance,
    divergences: usize,
    resamplings: usize,
    evals: u64,
    last_step: f64,
    /// Final log-weights, (contexts, the island's particles) row-major.
    log_weights: Vec<f64>,
}

impl Island {
    fn new(p: PassOutput) -> Self {
        Island {
            log_z: p.log_z,
            var: p.var,
            ess: p.ess,
            ancestors: p.ancestors,
            accepted: p.accepted,
            divergences: p.divergences,
            resamplings: p.resamplings,
            evals: p.evals,
            last_step: p.steps.last().copied().unwrap_or(f64::NAN),
            log_weights: p.log_weights.iter().copied().collect(),
        }
    }

    /// Whether every field is in range for `groups` contexts and `m` particles.
    pub(crate) fn fits(&self, groups: usize, m: usize) -> bool {
        let per = |v: &[f64]| v.len() == groups;
        per(&self.log_z)
            && per(&self.var)
            && per(&self.ess)
            && self.ancestors.len() == groups
            && self.ancestors.iter().all(|a| *a <= m)
            && self.log_weights.len() == groups * m
            && self.var.iter().all(|v| *v >= 0.0 || v.is_nan())
            && self.log_z.iter().all(|v| !v.is_infinite() || *v < 0.0)
            && self.accepted.is_valid()
    }
}

/// SMC's own figures, per context where a list has one entry per context.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SmcSummary {
    /// Independent islands.
    pub islands: usize,
    /// Temperatures the pilot chose (one entry per batch of contexts).
    pub temperatures: Vec<usize>,
    /// Resampling events, all islands and contexts.
    pub resamplings: usize,
    /// Distinct ancestors at the base of each context's final particles,
    /// summed over islands (few: collapsed genealogies).
    pub ancestors: Vec<usize>,
    /// Per context: the standard error from the islands' genealogies.
    pub stderr_genealogy: Vec<f64>,
    /// Per context: the standard error from the spread of the islands' Z
    /// (NaN for one island).
    pub stderr_islands: Vec<f64>,
    /// Each island's step size at its last temperature (the pilot's).
    pub final_steps: Vec<f64>,
    /// Whether the pilot's schedule reached the cap of temperatures (its
    /// last step then jumped to 1).
    pub capped: bool,
}

impl SmcSummary {
    /// Appends the summary of a later batch of contexts.
    pub(crate) fn extend(&mut self, other: SmcSummary) {
        self.islands = other.islands;
        self.temperatures.extend(other.temperatures);
        self.resamplings += other.resamplings;
        self.ancestors.extend(other.ancestors);
        self.stderr_genealogy.extend(other.stderr_genealogy);
        self.stderr_islands.extend(other.stderr_islands);
        self.final_steps.extend(other.final_steps);
        self.capped |= other.capped;
    }
}

/// Forward SMC on one batch of contexts: every island in turn (a
/// checkpoint keeps the finished islands), then their estimates combined.
pub(crate) fn forward_smc(
    problem: &AisProblem<'_>,
    config: &AisConfig,
    control: &Control,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
    earlier: Option<&Earlier>,
) -> Result<AisResult> {
    let start = Instant::now();
    let count = config.islands;
    let mut done = match resume {
        Some(p) => checkpoint_islands(p, control)?,
        None => Vec::new(),
    };
    let first = done.len();
    let groups = problem.contexts();
    let stop_only = Control {
        stop: control.stop.clone(),
        ..Control::default()
    };
    let pilot_n = config.pilot_particles.min(config.particles);
    let pilot = pass(
        &problem.with_particles(pilot_n)?,
        config,
        pilot_n,
        crate::rng::PassSeed::AisPilot.of(config.seed),
        Plan::Smc {
            first: 0,
            done: vec![],
            frozen: None,
        },
        None,
        Some((&stop_only, None)),
        None,
        None,
    )?;
    if !pilot.complete {
        // Nothing to resume in a pilot; a checkpoint keeps earlier batches.
        if control.checkpoint.is_some() && earlier.is_some() {
            super::saved::save_fresh(problem, config, control, earlier)?;
        }
        return Ok(super::run::unfinished(
            groups,
            config.particles,
            vec![0.0],
            start,
        ));
    }
    let schedule = (pilot.betas.clone(), pilot.steps.clone());
    for (i, island) in done.iter().enumerate() {
        let m = Shard { index: i, count }.range(config.particles).len();
        if i >= count || !island.fits(groups, m) {
            return Err(Error::checkpoint(
                resume.unwrap_or(Path::new("")),
                "its finished SMC islands do not fit this run; refusing a damaged or edited checkpoint",
            ));
        }
    }
    for i in first..count {
        let range = Shard { index: i, count }.range(config.particles);
        let sub = problem.with_particles(range.len())?;
        let plan = Plan::Smc {
            first: range.start,
            done: done.clone(),
            frozen: Some(schedule.clone()),
        };
        let mut obs = Shifted {
            inner: &mut *observer,
            offset: i * config.temps,
            total: count * config.temps,
            contexts: None,
        };
        let out = pass(
            &sub,
            config,
            range.len(),
            config.seed,
            plan,
            None,
            Some((control, resume.filter(|_| i == first))),
            Some(&mut obs),
            earlier,
        )?;
        if !out.complete {
            return Ok(super::run::unfinished(
                groups,
                config.particles,
                out.betas,
                start,
            ));
        }
        done.push(Island::new(out));
    }
    Ok(combine(&done, pilot, problem, config.particles, start))
}

/// Independent estimates `log Z_j` (variances `var_j` of each) of one Z
/// combined by the mean of their `Z_j`: `(log Z_hat, propagated variance,
/// spread variance)`, the second `sum r_j^2 var_j / m^2` and the third the
/// spread of the `r_j = Z_j / Z_hat` about 1 (NaN with fewer than two), both
/// of `log Z_hat`. SMC's islands and `method check`'s estimators combine so.
pub(crate) fn mean_of_z(log_z: &[f64], var: &[f64]) -> (f64, f64, f64) {
    let k = log_z.len() as f64;
    let c = log_sum_exp(log_z) - k.ln();
    let r: Vec<f64> = log_z.iter().map(|l| (l - c).exp()).collect();
    let own = r.iter().zip(var).map(|(r, v)| r * r * v).sum::<f64>() / (k * k);
    let spread = if log_z.len() > 1 {
        r.iter().map(|r| (r - 1.0) * (r - 1.0)).sum::<f64>() / ((k - 1.0) * k)
    } else {
        f64::NAN
    };
    (c, own, spread)
}

/// The islands' estimates of each context combined (see the module docs),
/// with the pilot's schedule, evaluations and (for one target) its final
/// particles, which the coverage check reads: the pilot is rerun on
/// resume, so they are the same bits.
fn combine(
    islands: &[Island],
    pilot: PassOutput,
    problem: &AisProblem<'_>,
    particles: usize,
    start: Instant,
) -> AisResult {
    let groups = problem.contexts();
    let mut summary = SmcSummary {
        islands: islands.len(),
        temperatures: vec![pilot.betas.len() - 1],
        resamplings: islands.iter().map(|i| i.resamplings).sum(),
        final_steps: islands.iter().map(|i| i.last_step).collect(),
        capped: pilot.capped,
        ..SmcSummary::default()
    };
    let mut estimates = Vec::with_capacity(groups);
    for g in 0..groups {
        let lz: Vec<f64> = islands.iter().map(|i| i.log_z[g]).collect();
        let var: Vec<f64> = islands.iter().map(|i| i.var[g]).collect();
        let (log_z, gen_var, spread_var) = mean_of_z(&lz, &var);
        summary.stderr_genealogy.push(gen_var.sqrt());
        summary.stderr_islands.push(spread_var.sqrt());
        summary
            .ancestors
            .push(islands.iter().map(|i| i.ancestors[g]).sum());
        estimates.push(Estimate {
            log_z,
            stderr: gen_var.max(spread_var).sqrt(),
            ess: islands.iter().map(|i| i.ess[g]).sum(),
            n: particles,
        });
    }
    // Final log-weights in particle order (island after island).
    let mut lw = ndarray::Array2::zeros((groups, particles));
    let mut col = 0;
    for i in islands {
        let m = i.log_weights.len() / groups.max(1);
        for g in 0..groups {
            for j in 0..m {
                lw[[g, col + j]] = i.log_weights[g * m + j];
            }
        }
        col += m;
    }
    let mut accepted = crate::tally::Acceptance::default();
    for i in islands {
        accepted.merge(&i.accepted);
    }
    AisResult {
        estimates,
        bootstrap_stderr: None,
        repeats: vec![],
        log_weights: lw,
        positions: problem
            .cond
            .is_none()
            .then(|| (pilot.positions, pilot.log_weights.iter().copied().collect())),
        betas: pilot.betas,
        step_sizes: summary.final_steps.clone(),
        acceptance: accepted.rate(),
        accepted,
        divergences: islands.iter().map(|i| i.divergences).sum(),
        resamplings: summary.resamplings,
        energy_evals: pilot.evals + islands.iter().map(|i| i.evals).sum::<u64>(),
        shared_evals: 0,
        wall_s: start.elapsed().as_secs_f64(),
        warnings: vec![],
        complete: true,
        contexts_done: groups,
        context_range: None,
        smc: Some(summary),
    }
}
