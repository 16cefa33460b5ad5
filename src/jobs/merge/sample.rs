//! The merge of a sample run's shards: all chains' draws in chain order,
//! with the diagnostics and (parallel tempering) the ladders' figures of
//! all chains; and the shard file a sample job writes.

use super::{MergeRun, ShardFile};
use crate::error::{Error, Result};
use crate::shard::{SampleFigures, ShardFigures, ShardHeader};
use ndarray::{Array2, Array3};

/// A sample shard's figures.
fn sample_figures(h: &ShardHeader) -> &SampleFigures {
    match &h.figures {
        ShardFigures::Sample(f) => f,
        ShardFigures::Logz(_) => unreachable!("checked: one kind"),
    }
}

/// The merge of `shards`, checked to be the shards of one sample run, in
/// index order.
pub(super) fn merge_sample(shards: Vec<ShardFile>) -> Result<MergeRun> {
    let h0 = shards[0].1.clone();
    let (c, n, d) = (h0.total, h0.draws, h0.dim);
    let mut samples = Array3::zeros((c, n, d));
    let mut energies = h0.energies.then(|| Array2::zeros((c, n)));
    for (p, h, data) in &shards {
        let r = h.shard.range(c);
        let m = r.len();
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
    let ov = if n >= 4 {
        crate::diagnostics::overview(&crate::diagnostics::summarize(samples.view())?)
    } else {
        crate::diagnostics::Overview {
            ess_bulk_min: f64::NAN,
            ess_tail_min: f64::NAN,
            rhat_max: f64::NAN,
        }
    };
    let mut warnings = across_chains(&ov, !sample_figures(&h0).per_chain_context);
    let figures: Vec<&SampleFigures> = shards.iter().map(|(_, h, _)| sample_figures(h)).collect();
    for ((_, h, _), f) in shards.iter().zip(&figures) {
        // R-hat, ESS and tempering's warnings are the merged run's, above
        // and below.
        use crate::warning::WarningKind::{LowEss, LowSwap, NoRoundTrip, Rhat};
        for w in &f.warnings {
            if !matches!(w.kind, Rhat | LowEss | NoRoundTrip | LowSwap) {
                warnings.push(w.prefixed(&format!("shard {}/{}: ", h.shard.index, h.shard.count)));
            }
        }
    }
    let pt = match figures
        .iter()
        .map(|f| f.pt.clone())
        .collect::<Option<Vec<_>>>()
    {
        Some(parts) => Some(crate::pt::LadderTally::concat(&parts)?.stats()),
        None if figures.iter().any(|f| f.pt.is_some()) => {
            return Err(Error::param(
                "merge",
                "some shards ran parallel tempering and some did not",
            ));
        }
        None => None,
    };
    if let Some(p) = &pt {
        warnings.extend(crate::pt::warnings(p));
        report["pt"] = crate::pt::stats_json(p);
    }
    let sum = |get: &dyn Fn(&SampleFigures) -> u64| {
        figures.iter().fold(0u64, |a, f| a.saturating_add(get(f)))
    };
    let acc: Vec<f64> = figures
        .iter()
        .flat_map(|f| f.acceptance_per_chain.iter().copied())
        .collect();
    let div: Vec<u64> = figures
        .iter()
        .flat_map(|f| f.divergences_per_chain.iter().copied())
        .collect();
    report["chains"] = serde_json::json!(c);
    report["ess_bulk_min"] = serde_json::json!(ov.ess_bulk_min);
    report["ess_tail_min"] = serde_json::json!(ov.ess_tail_min);
    report["rhat_max"] = serde_json::json!(ov.rhat_max);
    report["acceptance"] = serde_json::json!(acc.iter().sum::<f64>() / acc.len().max(1) as f64);
    report["acceptance_per_chain"] = serde_json::json!(acc);
    report["divergences"] = serde_json::json!(div.iter().fold(0u64, |a, d| a.saturating_add(*d)));
    report["divergences_per_chain"] = serde_json::json!(div);
    report["warmup_divergences"] = serde_json::json!(sum(&|f| f.warmup_divergences));
    report["energy_evals"] = serde_json::json!(sum(&|f| f.energy_evals));
    if figures.iter().all(|f| f.grad_evals.is_some()) {
        report["grad_evals"] = serde_json::json!(sum(&|f| f.grad_evals.unwrap_or(0)));
    }
    if let Some(obj) = report.as_object_mut() {
        obj.remove("shard");
        obj.remove("step_size");
        obj.remove("exact_check");
    }
    report["shards"] = serde_json::json!(shards.len());
    warnings.write_into(&mut report);
    Ok(MergeRun {
        kind: "sample".into(),
        report,
        samples: Some(samples),
        energies,
        log_prob: None,
        warnings,
        pt,
    })
}

/// The merged run's R-hat and ESS warnings over all chains (`across`:
/// the chains target one law; with a context each they do not, and the
/// one-process run gives none either).
fn across_chains(ov: &crate::diagnostics::Overview, across: bool) -> crate::Warnings {
    let mut warnings = crate::Warnings::new();
    if across && ov.rhat_max > 1.01 {
        warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::Rhat, format!(
            "R-hat {:.4} above 1.01 over all chains: they disagree (caught in different modes, or not yet mixed); run longer or use a tempered sampler",
            ov.rhat_max
        )));
    }
    if across && ov.ess_bulk_min < 100.0 {
        warnings.push(crate::warning::Warning::new(crate::warning::WarningKind::LowEss, format!(
            "bulk ESS {:.1} below 100: means and quantiles of these draws are unreliable; run longer",
            ov.ess_bulk_min
        )));
    }
    warnings
}

/// The shard file of a sample job run with `job.shard`: its chains' draws
/// and energies, the report, and `settings` (as [`super::logz_shard`]).
pub fn sample_shard(
    run: &crate::jobs::SampleRun,
    job: &crate::jobs::SampleJob,
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
    let s = &out.stats;
    let figures = SampleFigures {
        acceptance_per_chain: s.acceptance.clone(),
        divergences_per_chain: s.divergences.iter().map(|&d| d as u64).collect(),
        warmup_divergences: s.warmup_divergences as u64,
        energy_evals: s.energy_evals,
        grad_evals: (!run.gradient_free).then_some(s.grad_evals),
        warnings: run.warnings.to_vec(),
        per_chain_context: run.per_chain_context,
        pt: run.pt_tally.clone(),
    };
    let mut report = run.report.clone();
    if let Some(obj) = report.as_object_mut() {
        // Times differ between runs; a shard file is the same bytes.
        for k in ["wall_s", "sampling_s", "diagnostics_s"] {
            obj.remove(k);
        }
    }
    let header = ShardHeader {
        version: crate::shard::SHARD_VERSION,
        settings: settings.to_string(),
        shard,
        total: job.chains,
        contexts: 1,
        draws: d,
        dim: k,
        energies: out.energies.is_some(),
        smc: false,
        context_range: None,
        figures: ShardFigures::Sample(figures),
        report,
    };
    crate::shard::shard_bytes(name, &header, &data)
}
