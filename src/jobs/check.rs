//! Estimators that check each other (`method check`, the default where
//! there is no exact answer): independent estimates of log Z by AIS,
//! annealed SMC (twice) and (for one target) parallel tempering's stepping
//! stone, each with its own seed and pilot; their agreement by a
//! chi-square test, leaving out an estimator whose own figures say its
//! error bar cannot be trusted, and a bound no right combination breaks
//! (an unbiased estimate of Z far above it); and a budget that grows the
//! particles until they agree within a target standard error or the time
//! runs out.

use super::logz::{LogzJob, LogzReport, logz};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::run::{Control, Observer};
use crate::warning::{Warning, WarningKind};
use ndarray::Array2;
use statrs::distribution::{ChiSquared, ContinuousCDF};
use std::time::Instant;

/// Below this p-value (divided by the number of contexts) the estimates
/// disagree.
pub const AGREEMENT_P: f64 = 0.01;

/// An AIS estimate whose weight ESS is below this fraction of its
/// particles (where AIS warns) is left out of the test.
const AIS_MIN_ESS: f64 = 0.1;

/// Estimator `j` of a check with seed `s` runs with seed `s + j *
/// SEED_STRIDE` (the golden-ratio constant of SplitMix64).
const SEED_STRIDE: u64 = 0x9E37_79B9_7F4A_7C15;

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
    /// An estimate above the combination by more than chance allows
    /// ([`above_the_combination`]).
    above: Option<(&'static str, usize, f64, f64)>,
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
    // (name, method, seed offset): SMC twice, so that two estimates remain
    // to be held against each other where AIS's or PT's own figures
    // leave them out, and pilots that land in different regions show.
    let mut methods: Vec<(&str, &str, u64)> = vec![("ais", "ais", 0), ("smc", "smc", 1)];
    if model.conditional().is_none() {
        methods.push(("pt", "pt", 2));
    }
    methods.push(("smc2", "smc", 3));
    let mut runs = Vec::new();
    for (name, m, offset) in methods {
        // Each round doubles the particles (AIS, SMC) and PT's draws.
        let grow = particles / job.particles.max(1);
        let sub = LogzJob {
            method: Some(m.into()),
            particles,
            draws: job.draws.saturating_mul(grow.max(1)),
            // Independent estimates: each its own streams and its own
            // pilot (with one seed they would share the pilot, its base
            // and the regions it missed); offsets far apart, so that
            // checks with neighbouring seeds share no estimator's seed.
            seed: job.seed.wrapping_add(offset * SEED_STRIDE),
            // PT's reference must cover everywhere: it is fitted from
            // over-dispersed starts even where positives are given (from
            // them, on the separated-modes mixture, its error bar was a
            // quarter of its error and 3 checks of 20 were wrong).
            data: if m == "pt" { None } else { job.data.clone() },
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
        runs.push((name, r.report));
    }
    // An estimator that says itself that its error bar cannot be trusted
    // is reported, not tested: a PT run none of whose states crossed the
    // ladder, an AIS run whose weight ESS is under a tenth of its
    // particles in some context (a trained EBM's AIS estimates 20 nats
    // apart, each with ESS 2 of 1024, agreed with SMC's by chance).
    let excluded: Vec<Option<String>> = runs
        .iter()
        .map(|(m, r)| {
            let trips = r.pt.as_ref().and_then(|p| p["round_trips"].as_u64());
            let low_ess = r
                .ess
                .iter()
                .copied()
                .filter(|e| *m == "ais" && *e < AIS_MIN_ESS * particles as f64)
                .reduce(f64::min);
            if trips == Some(0) {
                Some("no state crossed its ladder (more replicas needed)".to_string())
            } else {
                low_ess.map(|e| {
                    format!("weight ESS {e:.1} of {particles} (< 10%): its error bar is unreliable")
                })
            }
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
        let (x2, pv) = chi_square(&est);
        let (c, se) = combine(&est);
        combined.push(c);
        stderr.push(se);
        chi2.push(x2);
        p.push(pv);
    }
    // Every estimator finite and no context below the (Bonferroni) bar.
    let all_finite = tested().all(|(_, r)| r.log_z.iter().all(|v| v.is_finite()));
    let agree = all_finite && p.iter().all(|v| *v >= AGREEMENT_P / k as f64);
    let above = above_the_combination(&runs, &combined, &stderr);
    Ok(Round {
        agree: agree && above.is_none(),
        runs,
        excluded,
        combined,
        stderr,
        chi2,
        p,
        above,
    })
}

/// Whether independent estimates `(log Z_j, se_j)` agree: the chi-square
/// of their differences from their inverse-variance mean against their
/// standard errors, and its p-value on `m - 1` degrees of freedom (NaN
/// with fewer than two estimates).
pub fn chi_square(est: &[(f64, f64)]) -> (f64, f64) {
    let w: f64 = est.iter().map(|(_, s)| 1.0 / (s * s)).sum();
    let c = est.iter().map(|(l, s)| l / (s * s)).sum::<f64>() / w;
    let x2: f64 = est.iter().map(|(l, s)| ((l - c) / s).powi(2)).sum();
    let p = match est.len() {
        0 | 1 => f64::NAN,
        m => ChiSquared::new((m - 1) as f64).map_or(f64::NAN, |d| 1.0 - d.cdf(x2)),
    };
    (x2, p)
}

/// The combined estimate of log Z and its standard error from the tested
/// estimates `(log Z_j, se_j)`: the mean of their `Z_j` (each estimates Z
/// without bias at the same particle count), as SMC combines its islands;
/// its standard error the larger of the estimators' own, propagated
/// (`sum r_j^2 se_j^2 / m^2`, `r_j = Z_j / Z_hat`), and the spread of the
/// `r_j` about 1. Not their inverse-variance mean: a run that misses the
/// heavy tail of its weights is both low and too sure (its error bar is
/// computed from the weights it has), so weighting by the reported error
/// bars leans on exactly the runs that missed mass (on the digits
/// mixture 3 checks of 5 were 3.7-6.0 of their standard errors low).
fn combine(est: &[(f64, f64)]) -> (f64, f64) {
    if est.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let (lz, var): (Vec<f64>, Vec<f64>) = est.iter().map(|(l, s)| (*l, s * s)).unzip();
    let (c, own, spread) = crate::ais::mean_of_z(&lz, &var);
    // max ignores the NaN spread of a single estimate.
    (c, own.max(spread).sqrt())
}

/// The first AIS or SMC estimate, tested or left out, that lies so far
/// above the combined estimate that the combination must miss mass:
/// (estimator, context, its log Z, how far above). Each of them estimates
/// Z without bias, so `log Z_hat > log Z + t` has probability at most
/// `e^-t` (Markov), however unreliable its error bar: an estimate more
/// than `ln(100 m k) + 3 se` above the combination, for `m` estimators
/// and `k` contexts, is found by a right combination in under 1% of runs.
/// (An estimate below the others is what a run that missed mass gives,
/// and is left to the chi-square.)
fn above_the_combination(
    runs: &[(&'static str, LogzReport)],
    combined: &[f64],
    stderr: &[f64],
) -> Option<(&'static str, usize, f64, f64)> {
    let t = (100.0 * runs.len() as f64 * combined.len() as f64).ln();
    runs.iter()
        .filter(|(m, _)| *m != "pt")
        .flat_map(|(m, r)| r.log_z.iter().enumerate().map(move |(g, l)| (*m, g, *l)))
        .find(|&(_, g, l)| {
            combined[g].is_finite() && l.is_finite() && l - combined[g] > t + 3.0 * stderr[g]
        })
        .map(|(m, g, l)| (m, g, l, l - combined[g]))
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
                "warnings": x.warnings.messages(),
                "warning_kinds": x.warnings.kinds(),
                "excluded": why,
            }),
        );
        // An estimator left out of the test keeps its warnings in its entry.
        if why.is_none() {
            report
                .warnings
                .extend(x.warnings.iter().map(|w| w.prefixed(&format!("{m}: "))));
        }
    }
    report.check = Some(serde_json::json!({
        "verdict": if r.agree {
            "agree"
        } else if r.above.is_some() {
            "below a bound"
        } else if r.excluded.iter().filter(|e| e.is_none()).count() < 2 {
            "too few"
        } else {
            "disagree"
        },
        "chi2": r.chi2,
        "p_value": r.p,
        "estimators": estimators,
        "rounds": rounds,
        "stopped": stopped,
        "target_se": job.target_se,
    }));
    if let Some(w) = verdict_warning(r, job, (particles, rounds, stopped)) {
        report.warnings.push(w);
    }
}

/// What a round's verdict warns about: estimators that disagree, too few
/// to compare, one above a bound, or a standard error above its target.
fn verdict_warning(
    r: &Round,
    job: &LogzJob,
    (particles, rounds, stopped): (usize, usize, &str),
) -> Option<Warning> {
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
        if let Some((m, g, l, d)) = r.above {
            let at = if r.p.len() > 1 {
                format!("context {g}: ")
            } else {
                String::new()
            };
            return Some(Warning::new(
                WarningKind::AboveABound,
                format!(
                    "{at}{m}'s estimate {l:.4} lies {d:.2} nats above the combined {:.4} +- {:.4}: an estimate of Z without bias exceeds the truth by t nats with probability at most e^-t, so the combination misses mass {m} found and no estimate is given; give the data the model was trained on (data) or raise the budget (target_se)",
                    r.combined[g], r.stderr[g]
                ),
            ));
        } else if list.len() < 2 {
            let left_out: Vec<String> = r
                .runs
                .iter()
                .zip(&r.excluded)
                .filter_map(|((m, _), e)| e.as_ref().map(|e| format!("{m}: {e}")))
                .collect();
            return Some(Warning::new(
                WarningKind::EstimatorsTooFew,
                format!(
                    "fewer than two estimators can be held against each other ({}), so no estimate is given: where its error bar cannot be trusted an estimate may miss mass; give the data the model was trained on (data), raise the budget (target_se) or compare their warnings",
                    left_out.join("; ")
                ),
            ));
        } else {
            return Some(Warning::new(
                WarningKind::EstimatorsDisagree,
                format!(
                    "{at}the estimators disagree ({}; chi-square {:.1} on {} degrees of freedom, p {:.1e}), so no estimate is given: at least one misses mass or has too small an error bar; raise the budget (target_se) or compare their warnings",
                    list.join(", "),
                    r.chi2[worst],
                    list.len() - 1,
                    r.p[worst]
                ),
            ));
        }
    } else if let Some(t) = job.target_se
        && r.stderr.iter().any(|s| *s > t)
    {
        return Some(Warning::new(
            WarningKind::AboveTargetSe,
            format!(
                "the estimators agree but the standard error {:.4} is above the target {t} ({stopped} after {rounds} rounds, {particles} particles)",
                r.stderr.iter().copied().fold(0.0, f64::max)
            ),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::combine;

    #[test]
    fn the_combination_is_the_mean_of_z_with_the_larger_error_bar() {
        // Seed 2 of the digits mixture (exact 0): SMC -0.92 +- 0.15 (a run
        // that missed the heavy tail: low and too sure) and -0.32 +- 0.31.
        // The inverse-variance mean was -0.81 +- 0.13 (6 se off); the mean
        // of Z is ln((e^-0.92 + e^-0.32) / 2), its spread the larger error.
        let (c, se) = combine(&[(-0.92, 0.15), (-0.32, 0.31)]);
        let want = (((-0.92f64).exp() + (-0.32f64).exp()) / 2.0).ln();
        assert!((c - want).abs() < 1e-12, "{c}");
        let r = [(-0.92 - c).exp(), (-0.32 - c).exp()];
        let spread = ((r[0] - 1.0).powi(2) + (r[1] - 1.0).powi(2)) / 2.0;
        assert!((se - spread.sqrt()).abs() < 1e-12, "{se}");
        assert!(c / se > -3.0);
        // Equal estimates: their own error bars, propagated.
        let (c, se) = combine(&[(1.0, 0.1), (1.0, 0.1), (1.0, 0.1)]);
        assert!((c - 1.0).abs() < 1e-12 && (se - 0.1 / 3f64.sqrt()).abs() < 1e-12);
        assert!(combine(&[]).0.is_nan());
    }
}
