//! Estimators that check each other (`method check`): independent
//! estimates of log Z by AIS, annealed SMC and (for one target) parallel
//! tempering's stepping stone, their agreement by a chi-square test, and a
//! budget that grows the particles until they agree within a target
//! standard error or the time runs out.

use super::logz::{LogzJob, LogzReport, logz};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::run::{Control, Observer};
use ndarray::Array2;
use statrs::distribution::{ChiSquared, ContinuousCDF};
use std::time::Instant;

/// Below this p-value (divided by the number of contexts) the estimates
/// disagree.
pub const AGREEMENT_P: f64 = 0.01;

/// Most rounds of a budget run (particles doubled each round: 512 times
/// the first round's).
const MAX_ROUNDS: usize = 10;

/// What one round of the check found.
struct Round {
    /// Per method: its name and report.
    runs: Vec<(&'static str, LogzReport)>,
    /// Per method: why it was left out of the test (`None`: tested).
    excluded: Vec<Option<String>>,
    combined: Vec<f64>,
    stderr: Vec<f64>,
    chi2: Vec<f64>,
    p: Vec<f64>,
    agree: bool,
}

/// Runs the check of `job` (see the module docs) into `report`; returns
/// the contexts the estimates are for.
pub(crate) fn run_check(
    model: &Model,
    contexts: Option<Array2<f64>>,
    job: &LogzJob,
    report: &mut LogzReport,
    control: &Control,
    observer: &mut dyn Observer,
) -> Result<()> {
    if let Some(s) = job.target_se {
        crate::error::check_positive("target_se", s)?;
    }
    if let Some(s) = job.max_seconds {
        crate::error::check_positive("max_seconds", s)?;
    }
    if control.checkpoint.is_some() {
        return Err(Error::param(
            "checkpoint",
            "a check runs several estimators, each rerun whole if stopped: no checkpoints (run method ais or smc to checkpoint one)",
        ));
    }
    let start = Instant::now();
    let mut particles = job.particles;
    let mut round = 0;
    let (last, stopped) = loop {
        let round_start = Instant::now();
        let r = one_round(model, contexts.clone(), job, particles, control, observer)?;
        let stopped = if control.stopped() {
            Some("interrupted")
        } else {
            let se_ok = job
                .target_se
                .is_none_or(|t| r.stderr.iter().all(|s| *s <= t));
            let next = 2.0 * round_start.elapsed().as_secs_f64();
            if r.agree && se_ok {
                Some(if job.target_se.is_some() {
                    "target reached"
                } else {
                    "one round"
                })
            } else if job.target_se.is_none() {
                Some("one round")
            } else if job
                .max_seconds
                .is_some_and(|m| start.elapsed().as_secs_f64() + next > m)
            {
                Some("time cap")
            } else if round + 1 >= MAX_ROUNDS || particles.checked_mul(2).is_none() {
                Some("round cap")
            } else {
                None
            }
        };
        match stopped {
            Some(s) => break (r, s),
            None => {
                round += 1;
                particles *= 2;
            }
        }
    };
    fill(report, &last, job, particles, round + 1, stopped);
    Ok(())
}

/// One estimate by each method at `particles` particles.
fn one_round(
    model: &Model,
    contexts: Option<Array2<f64>>,
    job: &LogzJob,
    particles: usize,
    control: &Control,
    observer: &mut dyn Observer,
) -> Result<Round> {
    let mut methods = vec!["ais", "smc"];
    if model.conditional().is_none() {
        methods.push("pt");
    }
    let mut runs = Vec::new();
    for m in methods {
        // Each round doubles the particles (AIS, SMC) and PT's draws.
        let grow = particles / job.particles.max(1);
        let sub = LogzJob {
            method: Some(m.into()),
            particles,
            draws: job.draws.saturating_mul(grow.max(1)),
            no_reverse: true,
            target_se: None,
            max_seconds: None,
            ..job.clone()
        };
        let r = logz(model, contexts.clone(), &sub, control, None, observer)?;
        if !r.report.complete {
            return Err(Error::Interrupted(format!(
                "the check was stopped in its {m} estimate"
            )));
        }
        runs.push((m, r.report));
    }
    // A PT run none of whose states crossed the ladder says itself that
    // its stepping stone may miss mass: it is reported, not tested.
    let excluded: Vec<Option<String>> = runs
        .iter()
        .map(|(_, r)| {
            let trips = r.pt.as_ref().and_then(|p| p["round_trips"].as_u64());
            (trips == Some(0))
                .then(|| "no state crossed its ladder (more replicas needed)".to_string())
        })
        .collect();
    let tested = || {
        runs.iter()
            .zip(&excluded)
            .filter(|(_, e)| e.is_none())
            .map(|(r, _)| r)
    };
    let k = runs[0].1.log_z.len();
    let (mut combined, mut stderr, mut chi2, mut p) = (vec![], vec![], vec![], vec![]);
    for g in 0..k {
        let est: Vec<(f64, f64)> = tested()
            .map(|(_, r)| (r.log_z[g], r.stderr[g]))
            .filter(|(l, s)| l.is_finite() && s.is_finite() && *s > 0.0)
            .collect();
        let w: f64 = est.iter().map(|(_, s)| 1.0 / (s * s)).sum();
        let c = est.iter().map(|(l, s)| l / (s * s)).sum::<f64>() / w;
        let x2: f64 = est.iter().map(|(l, s)| ((l - c) / s).powi(2)).sum();
        let pv = if est.len() >= 2 {
            1.0 - ChiSquared::new((est.len() - 1) as f64)
                .expect("dof >= 1")
                .cdf(x2)
        } else {
            f64::NAN
        };
        combined.push(c);
        stderr.push(w.sqrt().recip());
        chi2.push(x2);
        p.push(pv);
    }
    // Every estimator finite and no context below the (Bonferroni) bar.
    let all_finite = tested().all(|(_, r)| r.log_z.iter().all(|v| v.is_finite()));
    let agree = all_finite && p.iter().all(|v| *v >= AGREEMENT_P / k as f64);
    Ok(Round {
        runs,
        excluded,
        combined,
        stderr,
        chi2,
        p,
        agree,
    })
}

/// The check's report: the combined estimate where the estimators agree
/// (NaN where they do not), each estimator's figures, the verdict.
fn fill(
    report: &mut LogzReport,
    r: &Round,
    job: &LogzJob,
    particles: usize,
    rounds: usize,
    stopped: &str,
) {
    let nan = vec![f64::NAN; r.combined.len()];
    (report.log_z, report.stderr) = if r.agree {
        (r.combined.clone(), r.stderr.clone())
    } else {
        (nan.clone(), nan.clone())
    };
    report.ess = nan;
    report.particles = particles;
    report.energy_evals = r.runs.iter().map(|(_, x)| x.energy_evals).sum();
    report.divergences = r.runs.iter().map(|(_, x)| x.divergences).sum();
    report.pilot_rhat = r.runs.iter().find_map(|(_, x)| x.pilot_rhat);
    let mut estimators = serde_json::Map::new();
    for ((m, x), why) in r.runs.iter().zip(&r.excluded) {
        estimators.insert(
            m.to_string(),
            serde_json::json!({
                "log_z": x.log_z,
                "stderr": x.stderr,
                "energy_evals": x.energy_evals,
                "wall_s": x.wall_s,
                "warnings": x.warnings,
                "excluded": why,
            }),
        );
        // An estimator left out of the test keeps its warnings in its entry.
        if why.is_none() {
            report
                .warnings
                .extend(x.warnings.iter().map(|w| format!("{m}: {w}")));
        }
    }
    report.check = Some(serde_json::json!({
        "verdict": if r.agree { "agree" } else { "disagree" },
        "chi2": r.chi2,
        "p_value": r.p,
        "estimators": estimators,
        "rounds": rounds,
        "stopped": stopped,
        "target_se": job.target_se,
    }));
    if !r.agree {
        let worst = (0..r.p.len())
            .min_by(|a, b| r.p[*a].total_cmp(&r.p[*b]))
            .unwrap_or(0);
        let list: Vec<String> = r
            .runs
            .iter()
            .zip(&r.excluded)
            .filter(|(_, e)| e.is_none())
            .map(|((m, x), _)| format!("{m} {:.4} +- {:.4}", x.log_z[worst], x.stderr[worst]))
            .collect();
        let at = if r.p.len() > 1 {
            format!("context {worst}: ")
        } else {
            String::new()
        };
        report.warnings.push(format!(
            "{at}the estimators disagree ({}; chi-square {:.1} on {} degrees of freedom, p {:.1e}), so no estimate is given: at least one misses mass or has too small an error bar; raise the budget (target_se) or compare their warnings",
            list.join(", "),
            r.chi2[worst],
            list.len().saturating_sub(1),
            r.p[worst]
        ));
    } else if let Some(t) = job.target_se
        && r.stderr.iter().any(|s| *s > t)
    {
        report.warnings.push(format!(
            "the estimators agree but the standard error {:.4} is above the target {t} ({stopped} after {rounds} rounds, {particles} particles)",
            r.stderr.iter().copied().fold(0.0, f64::max)
        ));
    }
}
