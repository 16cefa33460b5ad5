//! The merge of a sharded run ([`crate::shard`]): checks that the shard
//! files are the `M` shards of one run, then computes what the
//! one-process run reports. AIS: every context's log-weights in particle
//! order, then the same delta-method estimate (`log Z`, standard error,
//! ESS: bit for bit the one-process run's). Annealed SMC cannot be merged
//! as one population: its shards are independent islands, and the merged
//! `Z` is the mean of theirs (unbiased). Sampling: the draws of all chains
//! in chain order, with the diagnostics of all chains.

use crate::ais::{AisConfig, Estimate, estimate, estimate_warnings};
use crate::error::{Error, Result};
use crate::shard::ShardHeader;
use ndarray::{Array2, Array3};
use std::path::PathBuf;

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
    /// Merged log-weights (logz without resampling), (contexts, particles).
    pub log_weights: Option<Array2<f64>>,
    /// `log P(y|x)` of prob shards: (contexts, points), or (points,) when
    /// paired or unconditional.
    pub log_prob: Option<ndarray::ArrayD<f64>>,
    /// The warnings (also in the report).
    pub warnings: Vec<String>,
}

/// Checks that `shards` are the shards of one run: one kind, one set of
/// settings, one count `M`, every index `0..M` exactly once. Returns them
/// in index order.
fn check_shards(
    mut shards: Vec<(PathBuf, ShardHeader, Vec<f64>)>,
) -> Result<Vec<(PathBuf, ShardHeader, Vec<f64>)>> {
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
        if h.kind != h0.kind {
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
        {
            return Err(differs("sizes"));
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

/// Merges the shard files at `paths` (any order).
pub fn merge(paths: &[PathBuf]) -> Result<MergeRun> {
    let mut shards = Vec::with_capacity(paths.len());
    for p in paths {
        let (h, data) = crate::shard::read_shard(p)?;
        shards.push((p.clone(), h, data));
    }
    let shards = check_shards(shards)?;
    match shards[0].1.kind.as_str() {
        "logz" => merge_logz(shards),
        "sample" => merge_sample(shards),
        other => Err(Error::param(
            "merge",
            format!("unknown shard kind `{other}`"),
        )),
    }
}

fn merge_logz(shards: Vec<(PathBuf, ShardHeader, Vec<f64>)>) -> Result<MergeRun> {
    let h0 = shards[0].1.clone();
    let (n, k) = (h0.total, h0.contexts);
    // prob shards: `-beta F(x, y)` follows the log-weights, the same in
    // every shard (checked).
    let points = h0.report["prob_shape"].as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_u64())
            .map(|v| v as usize)
            .collect::<Vec<_>>()
    });
    let n_pts: usize = points.as_ref().map_or(0, |s| s.iter().product());
    // Shards of whole batches of contexts tile 0..k in index order.
    let by_contexts = h0.context_range.is_some();
    let mut next = 0;
    for (p, h, data) in &shards {
        let rows = match h.context_range {
            Some((lo, hi)) if by_contexts && lo == next && lo < hi && hi <= k => {
                next = hi;
                (hi - lo) * n
            }
            None if !by_contexts => k * h.shard.range(n).len(),
            _ => {
                return Err(Error::checkpoint(
                    p,
                    "its contexts do not follow the other shards' (shards of different runs?)",
                ));
            }
        };
        if data.len() != rows + n_pts {
            return Err(Error::checkpoint(
                p,
                "its log-weights do not match its shard's particles",
            ));
        }
    }
    if by_contexts && next != k {
        return Err(Error::param(
            "merge",
            format!("the shards cover contexts 0..{next} of {k}"),
        ));
    }
    let num = |h: &ShardHeader, key: &str| h.report[key].as_f64().unwrap_or(f64::NAN);
    let log_z0 = num(&h0, "log_z0");
    let mut report = h0.report.clone();
    let mut warnings = Vec::new();
    let (estimates, log_weights) = if by_contexts {
        // Each context's estimate is its shard's, made as in the
        // one-process run (whole batches, their own pilots).
        let mut est = Vec::with_capacity(k);
        let mut lw = Array2::zeros((k, n));
        for (_, h, data) in &shards {
            let (lo, hi) = h.context_range.expect("checked");
            for g in 0..hi - lo {
                est.push(Estimate {
                    log_z: at(h, "log_z", g),
                    stderr: at(h, "stderr", g),
                    ess: at(h, "ess", g),
                    n,
                });
                lw.row_mut(lo + g)
                    .assign(&ndarray::ArrayView1::from(&data[g * n..(g + 1) * n]));
            }
        }
        (est, Some(lw))
    } else if h0.smc {
        // Islands: Z = mean of the shards' Z (each an unbiased SMC
        // estimate); its variance from theirs by the delta method.
        let m = shards.len() as f64;
        let est = (0..k)
            .map(|g| {
                let lz: Vec<f64> = shards.iter().map(|(_, h, _)| at(h, "log_z", g)).collect();
                let se: Vec<f64> = shards.iter().map(|(_, h, _)| at(h, "stderr", g)).collect();
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
        warnings.push(format!(
            "annealed SMC with resampling merges as {} independent islands: log Z is the log of the mean of their Z estimates (unbiased in Z), not one population's",
            shards.len()
        ));
        (est, None)
    } else {
        let mut lw = Array2::zeros((k, n));
        for (_, h, data) in &shards {
            let r = h.shard.range(n);
            let m = r.len();
            for g in 0..k {
                lw.row_mut(g)
                    .slice_mut(ndarray::s![r.clone()])
                    .assign(&ndarray::ArrayView1::from(&data[g * m..(g + 1) * m]));
            }
        }
        let est = (0..k)
            .map(|g| {
                let (lz, var, ess) = estimate(&lw.row(g).to_vec());
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
        (est, Some(lw))
    };
    let mut estimates = estimates;
    let mut config = AisConfig::new();
    config.particles = n;
    config.resample_threshold = h0.smc.then_some(0.5);
    warnings.extend(estimate_warnings(&mut estimates, &config, 0));
    // The pilot's warnings, the same in every shard (its own run).
    warnings.extend(
        h0.report["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(String::from)),
    );
    let conditional = report["conditional"].as_bool().unwrap_or(false);
    let pick = |f: &dyn Fn(&Estimate) -> f64| -> serde_json::Value {
        let v: Vec<f64> = estimates.iter().map(f).collect();
        if conditional {
            serde_json::json!(v)
        } else {
            serde_json::json!(v[0])
        }
    };
    report["log_z"] = pick(&|e| e.log_z);
    report["stderr"] = pick(&|e| e.stderr);
    report["ess"] = pick(&|e| e.ess);
    report["particles"] = serde_json::json!(n);
    report["energy_evals"] = serde_json::json!(
        shards
            .iter()
            .map(|(_, h, _)| h.report["energy_evals"].as_u64().unwrap_or(0))
            .sum::<u64>()
    );
    report["acceptance"] = serde_json::json!(
        shards
            .iter()
            .map(|(_, h, _)| num(h, "acceptance") * h.shard.range(n).len() as f64)
            .sum::<f64>()
            / n as f64
    );
    report["divergences"] = serde_json::json!(
        shards
            .iter()
            .map(|(_, h, _)| h.report["divergences"].as_u64().unwrap_or(0))
            .sum::<u64>()
    );
    report["wall_s"] = serde_json::json!(
        shards
            .iter()
            .map(|(_, h, _)| num(h, "wall_s"))
            .fold(0.0, f64::max)
    );
    if let (Some(ex), false) = (report["exact_log_z"].as_f64(), conditional) {
        let e = &estimates[0];
        let z = (e.log_z - ex) / e.stderr;
        if z.abs() > 3.0 {
            warnings.push(format!(
                "the estimate is {z:.1} standard errors from the exact log Z {ex:.6}: its error bar is too small (missed modes, too few temperatures or particles)"
            ));
        }
    }
    if let Some(obj) = report.as_object_mut() {
        obj.remove("log_z0");
        obj.remove("shard");
    }
    let log_prob = match &points {
        Some(shape) => {
            let tail = |d: &Vec<f64>| d[d.len() - n_pts..].to_vec();
            let neg_f = tail(&shards[0].2);
            if shards.iter().any(|(_, _, d)| tail(d) != neg_f) {
                return Err(Error::param(
                    "merge",
                    "the shards' points or energies differ: they are not shards of one prob run",
                ));
            }
            let lz: Vec<f64> = estimates.iter().map(|e| e.log_z).collect();
            let paired = report["paired"].as_bool().unwrap_or(false);
            // The same arithmetic as the one-process run: -beta F - log Z.
            let v: Vec<f64> = neg_f
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let g = match (shape.len(), paired) {
                        (2, _) => i / shape[1],
                        (_, true) => i,
                        _ => 0,
                    };
                    f - lz[g]
                })
                .collect();
            Some(
                ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v)
                    .map_err(|e| Error::Numerical(e.to_string()))?,
            )
        }
        None => None,
    };
    if let Some(obj) = report.as_object_mut() {
        obj.remove("prob_shape");
    }
    report["shards"] = serde_json::json!(shards.len());
    report["warnings"] = serde_json::json!(warnings);
    Ok(MergeRun {
        kind: if log_prob.is_some() { "prob" } else { "logz" }.into(),
        report,
        samples: None,
        energies: None,
        log_weights,
        log_prob,
        warnings,
    })
}

/// Entry `g` of a report's per-context value (a number for one context).
fn at(h: &ShardHeader, key: &str, g: usize) -> f64 {
    match &h.report[key] {
        serde_json::Value::Array(a) => a.get(g).and_then(|v| v.as_f64()),
        v => v.as_f64(),
    }
    .unwrap_or(f64::NAN)
}

fn merge_sample(shards: Vec<(PathBuf, ShardHeader, Vec<f64>)>) -> Result<MergeRun> {
    let h0 = shards[0].1.clone();
    let (c, n, d) = (h0.total, h0.draws, h0.dim);
    let mut samples = Array3::zeros((c, n, d));
    let mut energies = h0.energies.then(|| Array2::zeros((c, n)));
    for (p, h, data) in &shards {
        let r = h.shard.range(c);
        let m = r.len();
        let want = m * n * d + if h.energies { m * n } else { 0 };
        if data.len() != want {
            return Err(Error::checkpoint(
                p,
                "its draws do not match its shard's chains",
            ));
        }
        let s = ndarray::ArrayView3::from_shape((m, n, d), &data[..m * n * d])
            .map_err(|e| Error::checkpoint(p, e.to_string()))?;
        samples.slice_mut(ndarray::s![r.clone(), .., ..]).assign(&s);
        if let Some(e) = energies.as_mut() {
            let v = ndarray::ArrayView2::from_shape((m, n), &data[m * n * d..])
                .map_err(|e| Error::checkpoint(p, e.to_string()))?;
            e.slice_mut(ndarray::s![r, ..]).assign(&v);
        }
    }
    let mut report = h0.report.clone();
    let mut warnings = Vec::new();
    let ov = if n >= 4 {
        crate::diagnostics::overview(&crate::diagnostics::summarize(samples.view())?)
    } else {
        crate::diagnostics::Overview {
            ess_bulk_min: f64::NAN,
            ess_tail_min: f64::NAN,
            rhat_max: f64::NAN,
        }
    };
    if ov.rhat_max > 1.01 {
        warnings.push(format!(
            "R-hat {:.4} above 1.01 over all chains: they disagree (caught in different modes, or not yet mixed); run longer or use a tempered sampler",
            ov.rhat_max
        ));
    }
    if ov.ess_bulk_min < 100.0 {
        warnings.push(format!(
            "bulk ESS {:.1} below 100: means and quantiles of these draws are unreliable; run longer",
            ov.ess_bulk_min
        ));
    }
    for (_, h, _) in &shards {
        for w in h.report["warnings"].as_array().into_iter().flatten() {
            if let Some(w) = w.as_str()
                && !w.starts_with("R-hat")
                && !w.starts_with("bulk ESS")
            {
                warnings.push(format!("shard {}/{}: {w}", h.shard.index, h.shard.count));
            }
        }
    }
    let sum_u = |key: &str| -> u64 {
        shards
            .iter()
            .map(|(_, h, _)| h.report[key].as_u64().unwrap_or(0))
            .sum()
    };
    let cat = |key: &str| -> serde_json::Value {
        serde_json::json!(
            shards
                .iter()
                .flat_map(|(_, h, _)| h.report[key].as_array().cloned().unwrap_or_default())
                .collect::<Vec<_>>()
        )
    };
    report["chains"] = serde_json::json!(c);
    report["ess_bulk_min"] = serde_json::json!(ov.ess_bulk_min);
    report["ess_tail_min"] = serde_json::json!(ov.ess_tail_min);
    report["rhat_max"] = serde_json::json!(ov.rhat_max);
    report["acceptance_per_chain"] = cat("acceptance_per_chain");
    report["divergences_per_chain"] = cat("divergences_per_chain");
    let acc: Vec<f64> = report["acceptance_per_chain"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    report["acceptance"] = serde_json::json!(acc.iter().sum::<f64>() / acc.len().max(1) as f64);
    report["divergences"] = serde_json::json!(sum_u("divergences"));
    report["warmup_divergences"] = serde_json::json!(sum_u("warmup_divergences"));
    report["energy_evals"] = serde_json::json!(sum_u("energy_evals"));
    if report.get("grad_evals").is_some() {
        report["grad_evals"] = serde_json::json!(sum_u("grad_evals"));
    }
    if let Some(obj) = report.as_object_mut() {
        obj.remove("shard");
        obj.remove("step_size");
        obj.remove("exact_check");
    }
    report["shards"] = serde_json::json!(shards.len());
    report["warnings"] = serde_json::json!(warnings);
    Ok(MergeRun {
        kind: "sample".into(),
        report,
        samples: Some(samples),
        energies,
        log_weights: None,
        log_prob: None,
        warnings,
    })
}

/// The shard file of a log Z (or, with `prob`, log P) job run with
/// `job.shard`: its log-weights, the path's `log Z_0`, `-beta F(x, y)` of the
/// points for prob, and `settings` (everything that shapes the run but the
/// shard; a merge requires them equal). `name` names the file in errors.
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
    let mut rep = super::logz::report_json(&run.report)?;
    rep["log_z0"] = serde_json::json!(w.log_z0);
    let mut data: Vec<f64> = w.log_weights.iter().copied().collect();
    if let Some((lp, paired, points)) = prob {
        rep["prob_shape"] = serde_json::json!(lp.shape());
        rep["paired"] = serde_json::json!(paired);
        rep["points"] = serde_json::json!(points);
        data.extend(lp.iter().copied());
    }
    let header = ShardHeader {
        version: crate::shard::SHARD_VERSION,
        kind: "logz".into(),
        settings: settings.to_string(),
        shard,
        total: job.particles,
        contexts: run.contexts.as_ref().map_or(1, |c| c.nrows()),
        draws: 0,
        dim: 0,
        energies: false,
        smc: w.smc,
        context_range: w.context_range.clone().map(|r| (r.start, r.end)),
        report: rep,
    };
    crate::shard::shard_bytes(name, &header, &data)
}

/// The shard file of a sample job run with `job.shard`: its chains' draws
/// and energies, the report, and `settings` (as [`logz_shard`]).
pub fn sample_shard(
    run: &super::SampleRun,
    job: &super::SampleJob,
    settings: &str,
    name: &std::path::Path,
) -> Result<Vec<u8>> {
    let shard = job
        .shard
        .ok_or_else(|| Error::param("shard", "this run is not a shard"))?;
    let out = &run.output;
    if !out.complete {
        return Err(Error::Interrupted(
            "the shard was stopped: no shard file written (rerun it)".into(),
        ));
    }
    let (_, d, k) = out.samples.dim();
    let mut data: Vec<f64> = out.samples.iter().copied().collect();
    if let Some(e) = &out.energies {
        data.extend(e.iter().copied());
    }
    let header = ShardHeader {
        version: crate::shard::SHARD_VERSION,
        kind: "sample".into(),
        settings: settings.to_string(),
        shard,
        total: job.chains,
        contexts: 1,
        draws: d,
        dim: k,
        energies: out.energies.is_some(),
        smc: false,
        context_range: None,
        report: run.report.clone(),
    };
    crate::shard::shard_bytes(name, &header, &data)
}
