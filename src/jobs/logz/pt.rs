//! log Z by parallel tempering (the log Z job's method `pt`).

use super::anneal::{Call, setup};
use super::{LogzJob, LogzReport};
use crate::ais::AisConfig;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::run::Observer;
use ndarray::Array2;

/// log Z by parallel tempering: the stepping-stone estimate of a PT run
/// from the AIS base (the same [`setup`]) to the target, with its batch-means
/// standard error, Lambda and round trips, checked against the exact value
/// where there is one.
pub(super) fn run_pt(
    model: &Model,
    contexts: Option<&Array2<f64>>,
    job: &LogzJob,
    cfg: &AisConfig,
    report: &mut LogzReport,
    at: Call<'_>,
    observer: &mut dyn Observer,
) -> Result<()> {
    let (control, resume) = (at.control, at.resume);
    if model.conditional().is_some() {
        return Err(Error::param(
            "method",
            "pt estimates the log Z of one target: use ais for conditional models (one log Z per context)",
        ));
    }
    let mut config = crate::sampler::SampleConfig::new();
    (
        config.n_chains,
        config.warmup,
        config.draws,
        config.thin,
        config.seed,
        config.beta,
        config.record_energies,
        config.adapt_step_size,
    ) = (
        job.chains,
        job.warmup,
        job.draws,
        1,
        job.seed,
        job.beta,
        false,
        job.kernel_settings.step_size.is_none(),
    );
    let settings = crate::pt::PtSettings::new(job.replicas);
    let energy = model.energy(None)?;
    crate::pt::validate(&config, &settings, energy.dim())?;
    let setup = setup(model, contexts, job, cfg, control)?;
    if let Some(p) = &setup.pilot {
        report.pilot_rhat = Some(p.rhat).filter(|r| r.is_finite());
    }
    // The pilot's base widened to the region its chains started from
    // (a base the user gives is used as it is).
    let base = match (&setup.pilot, job.base_scale) {
        (Some(_), None) => crate::pt::widen_reference(&setup.base)?,
        _ => setup.base.clone(),
    };
    let mut spec = cfg.kernel_spec(energy.as_ref());
    spec.settings.step_size = job.kernel_settings.step_size;
    let out = match resume {
        Some(path) => crate::pt::resume(
            energy.as_ref(),
            &base,
            &spec,
            (&config, &settings),
            path,
            observer,
            control,
        )?,
        None => crate::pt::sample(
            energy.as_ref(),
            &base,
            &spec,
            &config,
            &settings,
            None,
            observer,
            control,
        )?,
    };
    let p = &out.stats;
    report.complete = out.complete;
    report.log_z = vec![p.log_z];
    report.stderr = vec![p.log_z_stderr];
    report.ess = vec![f64::NAN];
    report.acceptance = p.acceptance.iter().sum::<f64>() / p.acceptance.len() as f64;
    report.divergences = p.divergences;
    report.energy_evals = p.energy_evals;
    let mut pt = crate::pt::stats_json(p);
    pt["chains"] = serde_json::json!(config.n_chains);
    pt["warmup"] = serde_json::json!(config.warmup);
    pt["draws"] = serde_json::json!(config.draws);
    report.pt = Some(pt);
    report.warnings.extend(crate::pt::warnings(p));
    if !out.complete {
        report.warnings.push(crate::Warning::interrupted(
            "the estimate uses the steps run so far",
            control.checkpoint.as_deref(),
        ));
        return Ok(());
    }
    if let Some(ex) = report.exact_log_z {
        let z = (p.log_z - ex) / p.log_z_stderr;
        if z.abs() > 3.0 {
            report.warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::ExactValue, format!(
                "the estimate is {z:.1} standard errors from the exact log Z {ex:.6}: its error bar is too small (too short a run, or chains that do not reach every mode)"
            )));
        }
    }
    Ok(())
}
