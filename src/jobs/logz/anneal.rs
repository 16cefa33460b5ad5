//! The AIS and SMC runs of the log Z job: the base and its pilot, the
//! forward pass in batches of contexts, the reverse pass where exact draws
//! exist and the warnings that compare them.

use super::{LogzJob, LogzReport, ShardWeights};
use crate::Energy;
use crate::ais::{self, AisConfig, AisProblem, Base};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::run::{Control, Observer};
use ndarray::Array2;
use std::path::Path;
use std::sync::Arc;

/// Where a run stands: its stop flag and checkpoints, and the checkpoint
/// it continues from.
#[derive(Clone, Copy)]
pub(super) struct Call<'a> {
    pub(super) control: &'a Control,
    pub(super) resume: Option<&'a Path>,
}

/// Forward AIS (in batches of contexts, with progress and stop), the
/// reverse pass where exact draws exist, and the warnings that compare them.
pub(super) fn run_ais(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    job: &LogzJob,
    cfg: &AisConfig,
    report: &mut LogzReport,
    at: Call<'_>,
    observer: &mut dyn Observer,
) -> Result<Option<ShardWeights>> {
    let control = at.control;
    let k = contexts.map_or(1, |c| c.nrows());
    let Setup {
        base,
        energy: problem_energy,
        cond,
        pilot,
    } = setup(model, contexts, job, cfg, control)?;
    if let Some(p) = &pilot {
        report.pilot_rhat = Some(p.rhat).filter(|r| r.is_finite());
    }
    let problem = match cond {
        Some((c, ctx)) => AisProblem::conditional(c, ctx.view(), cfg.particles, &base)?,
        None => AisProblem::new(problem_energy.clone(), &base)?,
    };
    let res = ais::ais_with(&problem, cfg, control, at.resume, observer)?;
    if !res.complete && res.contexts_done == 0 {
        // A stop in the pilot leaves nothing to resume (the pilot is run
        // again); one in the estimating pass leaves a checkpoint if asked.
        let annealed = res.betas.len() > 1;
        return Err(Error::Interrupted(format!(
            "AIS stopped before any context was done{}",
            match &control.checkpoint {
                Some(p) if annealed => format!(
                    "; state saved to {}: resume from that checkpoint",
                    p.display()
                ),
                _ if !annealed => " (in the pilot: nothing to resume)".into(),
                _ => String::new(),
            }
        )));
    }
    fill_forward(report, &res, cfg, control, k)?;
    if cfg.shard.is_some() {
        // A shard's estimates are its own particles'; the merge computes
        // the run's (and its warnings). No reverse pass in shards.
        let smc = cfg.resample_threshold.is_some() || cfg.is_smc();
        let log_z0 = crate::ais::start_log_z(problem_energy.as_ref(), &base);
        // The coverage check, on the pilot pass's particles: the same in
        // every shard, so the merge's (the first shard's) is the run's.
        report.warnings.extend(coverage_warnings(
            pilot.as_ref(),
            &res,
            problem_energy.as_ref(),
        ));
        return Ok(res.complete.then_some(ShardWeights {
            log_weights: res.log_weights,
            smc,
            log_z0,
            context_range: res.context_range,
            accepted: res.accepted,
            shared_evals: res.shared_evals,
        }));
    }
    if !res.complete {
        return Ok(None);
    }
    reverse_pass(model, &problem, job, cfg, report, k)?;
    report.warnings.extend(coverage_warnings(
        pilot.as_ref(),
        &res,
        problem_energy.as_ref(),
    ));
    if let Some(ex) = report.exact_log_z {
        let z = (report.log_z[0] - ex) / report.stderr[0];
        if z.abs() > 3.0 {
            report.warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::ExactValue, format!(
                "the estimate is {z:.1} standard errors from the exact log Z {ex:.6}: its error bar is too small (missed modes, too few temperatures or particles)"
            )));
        }
    }
    Ok(None)
}

/// The forward pass's estimates, counts, warnings and SMC figures into
/// `report` (of `k` contexts).
fn fill_forward(
    report: &mut LogzReport,
    res: &ais::AisResult,
    cfg: &AisConfig,
    control: &Control,
    k: usize,
) -> Result<()> {
    report.complete = res.complete;
    report.contexts_done = res.contexts_done;
    if !res.complete {
        report.warnings.push(crate::Warning::interrupted(
            format!(
                "log Z of {} of {k} contexts done, the others are NaN",
                res.contexts_done
            ),
            control.checkpoint.as_deref(),
        ));
    }
    report.log_z = res.estimates.iter().map(|e| e.log_z).collect();
    report.stderr = res.estimates.iter().map(|e| e.stderr).collect();
    report.ess = res.estimates.iter().map(|e| e.ess).collect();
    report.bootstrap_stderr = res.bootstrap_stderr.clone();
    report.repeats = res
        .repeats
        .iter()
        .map(|r| r.iter().map(|e| e.log_z).collect())
        .collect();
    report.acceptance = res.acceptance;
    report.divergences = res.divergences;
    report.energy_evals = res.energy_evals;
    report.warnings.extend(res.warnings.iter().cloned());
    if let Some(s) = &res.smc {
        let mut v = serde_json::to_value(s)
            .map_err(|e| Error::param("report", format!("cannot encode: {e}")))?;
        v["moves_per_temp"] = serde_json::json!(cfg.steps_per_temp);
        report.smc = Some(v);
    }
    Ok(())
}

/// Reverse AIS from exact draws (or the job's `reverse_from`): an upper
/// bound whose gap to the forward estimate shows mass the forward pass
/// missed, with the warnings that compare them.
fn reverse_pass(
    model: &Model,
    problem: &AisProblem,
    job: &LogzJob,
    cfg: &AisConfig,
    report: &mut LogzReport,
    k: usize,
) -> Result<()> {
    let exact_draws = || {
        (job.beta == 1.0)
            .then(|| ais::exact_draws(model, cfg.particles * k, job.seed))
            .flatten()
    };
    let reverse_samples = match &job.reverse_from {
        Some(r) => Some(r.clone()),
        None if job.reverse => {
            if job.beta != 1.0 {
                return Err(Error::param(
                    "reverse",
                    "exact draws are at beta 1: use `reverse_from` for other beta",
                ));
            }
            Some(exact_draws().ok_or_else(|| {
                Error::param("reverse", format!("no exact draws for model `{}`: give `reverse_from` with draws of the target", model.name))
            })?)
        }
        None if !job.no_reverse && !cfg.is_smc() => exact_draws(),
        None => None,
    };
    let Some(s) = reverse_samples else {
        return Ok(());
    };
    let rev = ais::reverse_ais(problem, cfg, s.view())?;
    let upper: Vec<f64> = rev.estimates.iter().map(|e| e.log_z).collect();
    let se_up: Vec<f64> = rev.estimates.iter().map(|e| e.stderr).collect();
    for i in 0..upper.len() {
        let gap = upper[i] - report.log_z[i];
        let se = (report.stderr[i].powi(2) + se_up[i].powi(2)).sqrt();
        let at = if k > 1 {
            format!("context {i}: ")
        } else {
            String::new()
        };
        if gap > 3.0 * se {
            report.warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::ForwardReverseGap, format!(
                "{at}forward and reverse AIS disagree: the gap {gap:.4} is {:.1} combined standard errors, so the forward estimate {:.4} misses mass (separated modes?) that its error bar does not show; log Z is likely between it and {:.4}",
                gap / se,
                report.log_z[i],
                upper[i]
            )));
        } else if gap < -3.0 * se {
            report.warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::ReverseBelow, format!(
                "{at}the reverse AIS upper bound {:.4} lies {:.1} combined standard errors below the forward estimate {:.4}: the reverse draws may not be draws of this target",
                upper[i],
                -gap / se,
                report.log_z[i]
            )));
        }
    }
    report.log_z_upper = Some(upper);
    report.stderr_upper = Some(se_up);
    report.energy_evals += rev.energy_evals;
    Ok(())
}

/// The warning when the pilot's over-dispersed chains settled in regions
/// the annealed particles of the run's pilot pass (256, run whole in every
/// shard) never reached ([`ais::Pilot::uncovered`]). It
/// replaces a warning on the pilot's R-hat alone, which fired on every
/// right SMC run of three suite targets (`results/issue27/warnings.md`).
fn coverage_warnings(
    pilot: Option<&ais::Pilot>,
    res: &ais::AisResult,
    energy: &dyn crate::Energy,
) -> Vec<crate::Warning> {
    let (Some(p), Some((x, lw))) = (pilot, &res.positions) else {
        return Vec::new();
    };
    let missed = p.uncovered(x.view(), lw, energy);
    let Some(&(c, dist)) = missed.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        return Vec::new();
    };
    vec![crate::warning::Warning::new(
        crate::warning::WarningKind::PilotRegionsMissed,
        format!(
            "{} of the pilot's {} chains, started {}, settled in regions none of the annealed particles reached (chain {c}: the nearest particle is {dist:.1} of its standard deviations away; pilot R-hat {:.2}): log Z misses the mass there without its error bar showing it; check with parallel tempering (method pt) or more moves per temperature",
            missed.len(),
            p.chain_means.nrows(),
            if p.from_data {
                "at the data"
            } else {
                "over-dispersed"
            },
            p.rhat
        ),
    )]
}

type CondSetup = Option<(Arc<dyn crate::ConditionalEnergy>, Array2<f64>)>;

/// What AIS anneals: the base, the energy (unconditional), for conditional
/// models the model and contexts, and the pilot that fitted the base.
pub(super) struct Setup {
    pub(super) base: Base,
    pub(super) energy: Arc<dyn Energy>,
    pub(super) cond: CondSetup,
    pub(super) pilot: Option<ais::Pilot>,
}

/// Most contexts the base's pilot pools (evenly spaced among all): the base
/// is one Gaussian for all contexts, and 8 chains of each of 64 contexts fit
/// it as well as 8 of each of thousands.
const PILOT_CONTEXTS: usize = 64;

/// The base, the energy to anneal, for conditional models the model and
/// contexts, and the pilot that fitted the base (if one did).
pub(super) fn setup(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    job: &LogzJob,
    cfg: &AisConfig,
    control: &Control,
) -> Result<Setup> {
    let unconditional = (model.x_dim() == 0)
        .then(|| model.energy(None))
        .transpose()?;
    if let Some(e) = unconditional.filter(|e| e.space() == crate::StateSpace::Binary) {
        let data = job.data.as_ref();
        let base = ais::default_base(
            e.as_ref(),
            cfg.beta,
            cfg.seed,
            data.as_ref().map(|d| d.view()),
        )?;
        return Ok(Setup {
            base,
            energy: e,
            cond: None,
            pilot: None,
        });
    }
    let cond = match (model.conditional(), contexts) {
        (Some(c), Some(ctx)) => Some((c, ctx.clone())),
        (Some(_), None) => {
            return Err(Error::param(
                "context",
                format!("model `{}` is conditional: give contexts", model.name),
            ));
        }
        (None, _) => None,
    };
    let energy: Arc<dyn Energy> = match &cond {
        Some((c, ctx)) => {
            // The pilot sees up to 64 contexts, 8 chains each.
            let chosen = crate::ais::evenly_spaced(ctx.nrows(), PILOT_CONTEXTS);
            let rows = Array2::from_shape_fn((chosen.len() * 8, ctx.ncols()), |(r, j)| {
                ctx[[chosen[r / 8], j]]
            });
            Arc::new(crate::Conditioned::new(c.clone(), rows)?)
        }
        None => model.energy(None)?,
    };
    if job.data.is_some() && (cond.is_some() || job.base_scale.is_some()) {
        return Err(Error::param(
            "data",
            "positives choose where the pilot that fits the base of an unconditional model starts; a conditional model's pilot runs one chain per context, and base_scale gives the base itself",
        ));
    }
    if let Some(s) = job.base_scale {
        let base = Base::gaussian(vec![job.base_mean; energy.dim()], vec![s; energy.dim()])?;
        return Ok(Setup {
            base,
            energy,
            cond,
            pilot: None,
        });
    }
    let pilot_control = Control {
        stop: control.stop.clone(),
        ..Control::default()
    };
    let starts = job.data.as_ref().map(|d| d.view());
    let pilot = ais::pilot_with(energy.as_ref(), cfg.beta, cfg.seed, starts, &pilot_control)?
        .ok_or_else(|| Error::Interrupted("stopped in the pilot that fits the AIS base".into()))?;
    Ok(Setup {
        base: pilot.base.clone(),
        energy,
        cond,
        pilot: Some(pilot),
    })
}
