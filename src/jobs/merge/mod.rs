//! The merge of a sharded run ([`crate::shard`]): checks that the shard
//! files are the `M` shards of one run, then computes what the
//! one-process run reports. AIS streams: it reads one shard file at a time
//! and holds a few numbers per context, never the log-weights of the run
//! (each file is read once, or twice when the shards split particles: its
//! checks and the contexts' largest log-weights, then the sums of the
//! delta-method estimate, added in particle order: `log Z`, standard
//! error, ESS bit for bit the one-process run's). Annealed SMC cannot be merged
//! as one population: its shards are independent islands, and the merged
//! `Z` is the mean of theirs (unbiased). Sampling: the draws of all chains
//! in chain order, with the diagnostics of all chains.

use crate::ais::{AisConfig, Estimate, WeightSums, estimate, estimate_warnings, largest};
use crate::error::{Error, Result};
use crate::shard::{LogzFigures, ProbPoints, ShardFigures, ShardHeader};
use ndarray::{Array2, Array3};
use std::path::PathBuf;

mod sample;
use sample::merge_sample;
pub use sample::sample_shard;

/// What a merge returns.
pub struct MergeRun {
    /// `logz` or `sample`.
    pub kind: String,
    /// The merged report (the keys of the one-process run's report, with
    /// `shards` and `warnings`).
    pub report: serde_json::Value,
    /// Merged draws (sample), (chains, draws, dim).
    pub samples: Option<Array3<f64>>,
    /// Their energies (sample), (chains, draws).
    pub energies: Option<Array2<f64>>,
    /// `log P(y|x)` of prob shards: (contexts, points), or (points,) when
    /// paired or unconditional.
    pub log_prob: Option<ndarray::ArrayD<f64>>,
    /// The warnings (also in the report).
    pub warnings: crate::Warnings,
    /// Parallel tempering's figures of the merged chains (sample shards of
    /// `sampler pt`), as the one-process run's (no tuning).
    pub pt: Option<crate::pt::PtStats>,
}

/// A shard file: its path, header and values (a merge of draws keeps
/// them; a log Z merge reads them again a shard at a time, [`values`]).
pub(super) type ShardFile = (PathBuf, ShardHeader, Vec<f64>);

/// The values of a shard whose header was read and checked before: read
/// again, checked again, and refused if the file changed in between.
fn values(s: &ShardFile) -> Result<Vec<f64>> {
    let (h, data) = crate::shard::read_shard(&s.0)?;
    if h != s.1 {
        return Err(Error::checkpoint(
            &s.0,
            "it changed while it was being merged",
        ));
    }
    Ok(data)
}

/// Checks that `shards` are the shards of one run: one kind, one set of
/// settings, one count `M`, every index `0..M` exactly once. Returns them
/// in index order.
fn check_shards(mut shards: Vec<ShardFile>) -> Result<Vec<ShardFile>> {
    let Some((p0, h0, _)) = shards.first() else {
        return Err(Error::param("merge", "give the shard files to merge"));
    };
    let (p0, h0) = (p0.clone(), h0.clone());
    for (p, h, _) in &shards {
        let differs = |what: &str| {
            Error::param(
                "merge",
                format!(
                    "{} and {} are not shards of one run: their {what} differ",
                    p0.display(),
                    p.display()
                ),
            )
        };
        if h.kind() != h0.kind() {
            return Err(differs("kinds"));
        }
        if h.settings != h0.settings {
            return Err(differs("settings (model, seed, sizes, ...)"));
        }
        if h.shard.count != h0.shard.count {
            return Err(differs("shard counts"));
        }
        if (h.total, h.contexts, h.draws, h.dim, h.energies, h.smc)
            != (h0.total, h0.contexts, h0.draws, h0.dim, h0.energies, h0.smc)
            || h.context_range.is_some() != h0.context_range.is_some()
        {
            return Err(differs("sizes"));
        }
        if let (ShardFigures::Logz(f), ShardFigures::Logz(f0)) = (&h.figures, &h0.figures)
            && (f.prob != f0.prob
                || f.conditional != f0.conditional
                || f.exact_log_z.map(f64::to_bits) != f0.exact_log_z.map(f64::to_bits))
        {
            return Err(differs("points or exact values"));
        }
    }
    let m = h0.shard.count;
    shards.sort_by_key(|(_, h, _)| h.shard.index);
    for w in shards.windows(2) {
        if w[0].1.shard.index == w[1].1.shard.index {
            return Err(Error::param(
                "merge",
                format!(
                    "shard {}/{m} is given twice ({} and {})",
                    w[0].1.shard.index,
                    w[0].0.display(),
                    w[1].0.display()
                ),
            ));
        }
    }
    let have: Vec<usize> = shards.iter().map(|(_, h, _)| h.shard.index).collect();
    let missing: Vec<String> = (0..m)
        .filter(|i| !have.contains(i))
        .map(|i| format!("{i}/{m}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::param(
            "merge",
            format!(
                "shards missing: {} (rerun each from the same settings with `shard I/M`: a shard is a pure function of the seed)",
                missing.join(", ")
            ),
        ));
    }
    Ok(shards)
}

/// Merges the shard files at `paths` (any order). Each file is checked
/// as untrusted input ([`crate::shard::read_shard`]). A log Z merge holds
/// one shard's values at a time (memory flat in the number of shards); a
/// merge of draws holds them all (the merged draws and their rank-based
/// diagnostics need every draw), within the memory budget.
pub fn merge(paths: &[PathBuf]) -> Result<MergeRun> {
    let mut bytes = 0usize;
    let mut largest_file = 0usize;
    for p in paths {
        let len = std::fs::metadata(p)
            .map_err(|e| Error::checkpoint(p, e.to_string()))?
            .len();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        bytes = bytes.saturating_add(len);
        largest_file = largest_file.max(len);
    }
    crate::budget::check("merge", "one shard file", largest_file.checked_mul(2))?;
    // One reading of every file: a sample merge keeps the values; a log Z
    // merge checks each shard's as it goes and keeps only what the
    // estimates need ([`LogzScan`]).
    let mut shards: Vec<ShardFile> = Vec::with_capacity(paths.len());
    let mut scan: Option<LogzScan> = None;
    for p in paths {
        let (h, data) = crate::shard::read_shard(p)?;
        if shards.is_empty() && h.kind() != "logz" {
            // The shards' values, and as much again merged.
            crate::budget::check("merge", "the shards and their merge", bytes.checked_mul(2))?;
        }
        let keep = shards.first().map_or(h.kind(), |f| f.1.kind()) != "logz";
        if h.kind() == "logz" {
            let sc = match &mut scan {
                Some(sc) => sc,
                None => scan.insert(LogzScan::new(&h)),
            };
            sc.add(p, &h, &data)?;
        }
        shards.push((p.clone(), h, if keep { data } else { Vec::new() }));
    }
    let shards = check_shards(shards)?;
    match scan {
        Some(scan) if shards[0].1.kind() == "logz" => merge_logz(shards, scan),
        _ => merge_sample(shards),
    }
}

/// What a log Z merge gathers from each shard as it reads it, one at a
/// time: the shards' checks against the first one read, the points'
/// `-beta F` (the same in every shard) and, when the shards split
/// particles, each context's largest log-weight (the shift of the sums
/// added on a second reading, in particle order).
struct LogzScan {
    log_z0: f64,
    shared_evals: u64,
    neg_f: Option<Vec<f64>>,
    max: Vec<f64>,
}

impl LogzScan {
    fn new(h: &ShardHeader) -> Self {
        let f = logz_figures(h);
        let split_particles = h.context_range.is_none() && !h.smc;
        LogzScan {
            log_z0: f.log_z0,
            shared_evals: f.shared_evals,
            neg_f: None,
            max: vec![f64::NEG_INFINITY; if split_particles { h.contexts } else { 0 }],
        }
    }

    fn add(&mut self, p: &std::path::Path, h: &ShardHeader, data: &[f64]) -> Result<()> {
        check_figures(p, h, data, self.log_z0, self.shared_evals)?;
        let n_pts = logz_figures(h).points().unwrap_or(0);
        let tail = &data[data.len() - n_pts..];
        match &self.neg_f {
            None => self.neg_f = Some(tail.to_vec()),
            Some(t) if t[..] != tail[..] => {
                return Err(Error::param(
                    "merge",
                    "the shards' points or energies differ: they are not shards of one prob run",
                ));
            }
            Some(_) => {}
        }
        // Shards of another run's sizes are refused by `check_shards`.
        if !self.max.is_empty() && h.contexts == self.max.len() {
            let m = h.shard.range(h.total).len();
            for (g, top) in self.max.iter_mut().enumerate() {
                *top = top.max(largest(&data[g * m..(g + 1) * m]));
            }
        }
        Ok(())
    }
}

/// A logz shard's figures (checked to be a logz shard's by [`check_shards`]).
fn logz_figures(h: &ShardHeader) -> &LogzFigures {
    match &h.figures {
        ShardFigures::Logz(f) => f,
        ShardFigures::Sample(_) => unreachable!("checked: one kind"),
    }
}

fn merge_logz(shards: Vec<ShardFile>, scan: LogzScan) -> Result<MergeRun> {
    let h0 = shards[0].1.clone();
    let f0 = logz_figures(&h0);
    let (estimates, mut warnings) = if h0.context_range.is_some() {
        by_contexts(&shards)?
    } else if h0.smc {
        islands(&shards)
    } else {
        by_particles(&shards, f0.log_z0, &scan.max)?
    };
    let mut estimates = estimates;
    let n = h0.total;
    let mut config = AisConfig::new();
    config.particles = n;
    config.resample_threshold = h0.smc.then_some(0.5);
    warnings.extend(estimate_warnings(&mut estimates, &config, 0));
    // The pilot's warnings, the same in every shard (its own run).
    warnings.extend(f0.warnings.iter().cloned());
    let mut report = h0.report.clone();
    let figures = shards.iter().map(|(_, h, _)| logz_figures(h));
    let pick = |f: &dyn Fn(&Estimate) -> f64| -> serde_json::Value {
        let v: Vec<f64> = estimates.iter().map(f).collect();
        if f0.conditional {
            serde_json::json!(v)
        } else {
            serde_json::json!(v[0])
        }
    };
    report["log_z"] = pick(&|e| e.log_z);
    report["stderr"] = pick(&|e| e.stderr);
    report["ess"] = pick(&|e| e.ess);
    report["particles"] = serde_json::json!(n);
    // Shard files are written only for finished shards: every context is done.
    report["contexts_done"] = serde_json::json!(h0.contexts);
    // The work done, and the one-process run's count: the pilots every
    // shard ran whole counted once.
    let all = figures
        .clone()
        .fold(0u64, |a, f| a.saturating_add(f.energy_evals));
    let repeated = (shards.len() as u64 - 1).saturating_mul(f0.shared_evals);
    report["energy_evals"] = serde_json::json!(all.saturating_sub(repeated));
    report["energy_evals_all_shards"] = serde_json::json!(all);
    let mut accepted = crate::tally::Acceptance::default();
    for (_, h, _) in &shards {
        accepted.merge(&logz_figures(h).accepted);
    }
    report["acceptance"] = serde_json::json!(accepted.rate());
    report["divergences"] =
        serde_json::json!(figures.fold(0u64, |a, f| a.saturating_add(f.divergences)));
    if let (Some(ex), false) = (f0.exact_log_z, f0.conditional) {
        let e = &estimates[0];
        let z = (e.log_z - ex) / e.stderr;
        if z.abs() > 3.0 {
            warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::ExactValue, format!(
                "the estimate is {z:.1} standard errors from the exact log Z {ex:.6}: its error bar is too small (missed modes, too few temperatures or particles)"
            )));
        }
    }
    let log_prob = match (&f0.prob, &scan.neg_f) {
        (Some(p), Some(neg_f)) => Some(merge_log_prob(neg_f, p, &estimates)?),
        _ => None,
    };
    if let Some(obj) = report.as_object_mut() {
        obj.remove("shard");
    }
    report["shards"] = serde_json::json!(shards.len());
    let warnings = crate::Warnings::from(warnings);
    warnings.write_into(&mut report);
    Ok(MergeRun {
        kind: if log_prob.is_some() { "prob" } else { "logz" }.into(),
        report,
        samples: None,
        energies: None,
        log_prob,
        warnings,
        pt: None,
    })
}

/// Checks a log Z shard's figures against its log-weights: one `log Z_0`
/// for the run (`log_z0`, the first shard's), and without resampling its
/// own estimates are those its log-weights give. A shard edited in one
/// place but not the other is refused.
fn check_figures(
    p: &std::path::Path,
    h: &ShardHeader,
    data: &[f64],
    log_z0: f64,
    shared_evals: u64,
) -> Result<()> {
    let f = logz_figures(h);
    if f.shared_evals != shared_evals || f.shared_evals > f.energy_evals {
        return Err(Error::checkpoint(
            p,
            format!(
                "its pilots took {} evaluations where the other shards' took {shared_evals} (forged, or shards of different runs?)",
                f.shared_evals
            ),
        ));
    }
    if f.log_z0.to_bits() != log_z0.to_bits() {
        return Err(Error::checkpoint(
            p,
            format!(
                "its path starts at log Z {:?} where the other shards' starts at {log_z0:?} (forged, or shards of different runs?)",
                f.log_z0
            ),
        ));
    }
    if h.smc {
        return Ok(());
    }
    let per = if h.context_range.is_some() {
        h.total
    } else {
        h.shard.range(h.total).len()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    for g in 0..h.own_contexts() {
        let (lz, var, ess) = estimate(&data[g * per..(g + 1) * per]);
        let ok = close(f.log_z[g], log_z0 + lz)
            && close(f.stderr[g], var.sqrt())
            && (close(f.ess[g], ess) || f.ess[g].is_nan() && ess.is_nan());
        if !ok {
            return Err(Error::checkpoint(
                p,
                format!(
                    "its estimate of context {g} is not the one its log-weights give (forged or corrupt?)"
                ),
            ));
        }
    }
    Ok(())
}

/// What a merge of log Z shards computes: the estimates per context and
/// warnings.
type Merged = (Vec<Estimate>, Vec<crate::Warning>);

/// Shards of whole batches of contexts: each context's estimate is its
/// shard's, made as in the one-process run (whole batches, their own
/// pilots); the shards must tile the contexts in index order.
fn by_contexts(shards: &[ShardFile]) -> Result<Merged> {
    let (n, k) = (shards[0].1.total, shards[0].1.contexts);
    let mut est = Vec::with_capacity(k);
    let mut next = 0;
    for (p, h, _) in shards {
        let f = logz_figures(h);
        let (lo, hi) = h.context_range.expect("checked: one kind of split");
        if lo != next {
            return Err(Error::checkpoint(
                p,
                "its contexts do not follow the other shards' (shards of different runs?)",
            ));
        }
        next = hi;
        for g in 0..hi - lo {
            est.push(Estimate {
                log_z: f.log_z[g],
                stderr: f.stderr[g],
                ess: f.ess[g],
                n,
            });
        }
    }
    if next != k {
        return Err(Error::param(
            "merge",
            format!("the shards cover contexts 0..{next} of {k}"),
        ));
    }
    Ok((est, Vec::new()))
}

/// Annealed SMC's shards are islands: Z = mean of the shards' Z (each an
/// unbiased SMC estimate); its variance from theirs by the delta method.
fn islands(shards: &[ShardFile]) -> Merged {
    let (n, k) = (shards[0].1.total, shards[0].1.contexts);
    let m = shards.len() as f64;
    let est = (0..k)
        .map(|g| {
            let lz: Vec<f64> = shards
                .iter()
                .map(|(_, h, _)| logz_figures(h).log_z[g])
                .collect();
            let se: Vec<f64> = shards
                .iter()
                .map(|(_, h, _)| logz_figures(h).stderr[g])
                .collect();
            let log_z = crate::energy::log_sum_exp(&lz) - m.ln();
            let var = lz
                .iter()
                .zip(&se)
                .map(|(l, s)| ((l - log_z).exp() * s).powi(2))
                .sum::<f64>()
                / (m * m);
            Estimate {
                log_z,
                stderr: var.sqrt(),
                ess: f64::NAN,
                n,
            }
        })
        .collect::<Vec<_>>();
    let warning = crate::Warning::new(
        crate::WarningKind::SmcIslands,
        format!(
            "annealed SMC with resampling merges as {} independent islands: log Z is the log of the mean of their Z estimates (unbiased in Z), not one population's",
            shards.len()
        ),
    );
    (est, vec![warning])
}

/// Shards of every context's particles: the one-process run's
/// delta-method estimate, its sums added a shard at a time in particle
/// order from each context's largest log-weight `max`.
fn by_particles(shards: &[ShardFile], log_z0: f64, max: &[f64]) -> Result<Merged> {
    let n = shards[0].1.total;
    let mut sums: Vec<WeightSums> = max.iter().map(|&m| WeightSums::new(m)).collect();
    for s in shards {
        let data = values(s)?;
        let m = s.1.shard.range(n).len();
        for (g, sum) in sums.iter_mut().enumerate() {
            sum.add(&data[g * m..(g + 1) * m]);
        }
    }
    let est = sums
        .iter()
        .map(|sum| {
            let (lz, var, ess) = sum.finish();
            let mut log_z = log_z0;
            log_z += lz;
            Estimate {
                log_z,
                stderr: var.sqrt(),
                ess,
                n,
            }
        })
        .collect::<Vec<_>>();
    Ok((est, Vec::new()))
}

/// `log P(y|x)` of a prob run from its shards: `-beta F(x, y)` (the same
/// in every shard, checked) minus the merged log Z, the one-process run's
/// arithmetic.
fn merge_log_prob(
    neg_f: &[f64],
    p: &ProbPoints,
    estimates: &[Estimate],
) -> Result<ndarray::ArrayD<f64>> {
    let lz: Vec<f64> = estimates.iter().map(|e| e.log_z).collect();
    let v: Vec<f64> = neg_f
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let g = match (p.shape.len(), p.paired) {
                (2, _) => i / p.shape[1],
                (_, true) => i,
                _ => 0,
            };
            f - lz[g]
        })
        .collect();
    ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&p.shape), v)
        .map_err(|e| Error::Numerical(e.to_string()))
}

/// The shard file of a log Z (or, with `prob`, log P) job run with
/// `job.shard`: its log-weights, the path's `log Z_0`, `-beta F(x, y)` of the
/// points for prob, and `settings` (everything that shapes the run but the
/// shard; a merge requires them equal). `name` names the file in errors.
/// The file holds no wall time: a rerun shard is byte-identical.
pub fn logz_shard(
    run: &super::LogzRun,
    job: &super::LogzJob,
    settings: &str,
    prob: Option<(&ndarray::ArrayD<f64>, bool, usize)>,
    name: &std::path::Path,
) -> Result<Vec<u8>> {
    let shard = job
        .shard
        .ok_or_else(|| Error::param("shard", "this run is not a shard"))?;
    let w = run.shard.as_ref().ok_or_else(|| {
        Error::Interrupted("the shard was stopped: no shard file written (rerun it)".into())
    })?;
    let r = &run.report;
    let mut rep = super::logz::report_json(r)?;
    let mut data: Vec<f64> = w.log_weights.iter().copied().collect();
    let mut points = None;
    if let Some((lp, paired, n)) = prob {
        rep["points"] = serde_json::json!(n);
        rep["paired"] = serde_json::json!(paired);
        points = Some(ProbPoints {
            shape: lp.shape().to_vec(),
            paired,
        });
        data.extend(lp.iter().copied());
    }
    if let Some(obj) = rep.as_object_mut() {
        obj.remove("wall_s");
    }
    let figures = LogzFigures {
        log_z0: w.log_z0,
        log_z: r.log_z.clone(),
        stderr: r.stderr.clone(),
        ess: r.ess.clone(),
        acceptance: r.acceptance,
        accepted: w.accepted,
        shared_evals: w.shared_evals,
        divergences: r.divergences as u64,
        energy_evals: r.energy_evals,
        exact_log_z: r.exact_log_z,
        conditional: r.conditional,
        warnings: r.warnings.to_vec(),
        prob: points,
    };
    let header = ShardHeader {
        version: crate::shard::SHARD_VERSION,
        settings: settings.to_string(),
        shard,
        total: job.particles,
        contexts: run.contexts.as_ref().map_or(1, |c| c.nrows()),
        draws: 0,
        dim: 0,
        energies: false,
        smc: w.smc,
        context_range: w.context_range.clone().map(|r| (r.start, r.end)),
        figures: ShardFigures::Logz(figures),
        report: rep,
    };
    crate::shard::shard_bytes(name, &header, &data)
}
