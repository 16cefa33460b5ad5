//! Warnings about a finished run that a user must not miss: chains that
//! disagree, chains that drift off, divergences, too few effective draws,
//! and draws whose energies do not match exact draws of the target.

use super::SampleOutput;
use crate::diagnostics::{self, Overview};
use crate::energy::Energy;
use crate::error::Result;
use crate::warning::{Warning, WarningKind, Warnings};
use ndarray::{Array1, ArrayView2, ArrayView3, s};

/// The p-value under which the energies of the draws and of exact draws
/// are said to differ (one false warning in 1000 well-mixed runs).
pub const EXACT_CHECK_P: f64 = 1e-3;

/// Warnings about `out`, a run on `energy`. `overview` is the run's
/// diagnostics summary (`None`: too few draws for diagnostics). `exact`:
/// exact draws of the target at the run's beta (rows of dimension
/// `energy.dim()`), for a two-sample Kolmogorov-Smirnov test of the draws'
/// energies against theirs, with the draws counted by their bulk ESS.
/// (Energies cannot tell apart modes of the same shape and weight: chains
/// caught in one of two mirror-image modes pass this check, and only R-hat
/// across chains from over-dispersed starts can see them.)
///
/// ```
/// use boltz::{energy::Mixture, kernels::Mala, sampler};
/// // Two modes far apart: the chains cannot cross, the check sees it.
/// let m = Mixture::from_weights(vec![0.3, 0.7], ndarray::array![[-10.0], [10.0]], vec![1.0, 2.0])?;
/// let mut cfg = sampler::SampleConfig::new();
/// cfg.init = boltz::init::Init::Uniform { lo: 9.0, hi: 11.0 };
/// // (A mass adapted from one chain's draws can send that chain across.)
/// cfg.adapt_mass = false;
/// let out = sampler::sample(&m, &Mala::new(0.5)?, &cfg, None, &mut sampler::NoObserver)?;
/// let mut rngs = boltz::rng::chain_rngs(1, 1000);
/// let exact = ndarray::Array2::from_shape_fn((1000, 1), |(i, _)| {
///     let mut y = [0.0]; m.sample_exact(&mut rngs[i], &mut y); y[0] });
/// let w = sampler::warnings(&m, &out, None, Some(exact.view()))?;
/// assert!(w.has(boltz::WarningKind::ExactMismatch));
/// # Ok::<(), boltz::Error>(())
/// ```
pub fn warnings(
    energy: &dyn Energy,
    out: &SampleOutput,
    overview: Option<&Overview>,
    exact: Option<ArrayView2<f64>>,
) -> Result<Warnings> {
    let mut w = Warnings::new();
    let per_chain_context = energy.fixed_rows().is_some();
    if let Some(ov) = overview
        && !per_chain_context
    {
        w.extend(diagnostic_warnings(ov));
    }
    if let Some(msg) = drift(out.samples.view()) {
        w.push(Warning::new(WarningKind::Drift, msg));
    }
    if energy.space() == crate::energy::StateSpace::Continuous
        && let Some(msg) = stuck(out)
    {
        w.push(Warning::new(WarningKind::Stuck, msg));
    }
    let (chains, draws, _) = out.samples.dim();
    let divergent: usize = out.stats.divergences.iter().sum();
    if divergent * 100 > chains * draws {
        w.push(Warning::new(WarningKind::Divergences, format!(
            "{divergent} divergent transitions after warm-up ({:.1}% of draws): the draws may be biased away from steep regions; lower the step size or raise the target acceptance",
            100.0 * divergent as f64 / (chains * draws) as f64
        )));
    }
    if let (Some(exact), Some(e)) = (exact, out.energies.as_ref())
        && draws >= 4
        && !per_chain_context
        && let Some(msg) = exact_check(energy, e.view(), exact)?
    {
        w.push(Warning::new(WarningKind::ExactMismatch, msg));
    }
    Ok(w)
}

/// What the diagnostics alone warn about: R-hat above 1.01 (chains that
/// disagree) and bulk ESS below 100 (too few effective draws). Used for
/// runs and for `boltz diagnose` on any array of draws.
pub fn diagnostic_warnings(ov: &Overview) -> Warnings {
    let mut w = Warnings::new();
    if ov.rhat_max > 1.01 {
        w.push(Warning::new(WarningKind::Rhat, format!(
            "R-hat {:.4} above 1.01: the chains disagree (caught in different modes, or not yet mixed); run longer, use more chains, or a tempered sampler",
            ov.rhat_max
        )));
    }
    if ov.ess_bulk_min < 100.0 {
        w.push(Warning::new(WarningKind::LowEss, format!(
            "bulk ESS {:.1} below 100: means and quantiles of these draws are unreliable; run longer",
            ov.ess_bulk_min
        )));
    }
    w
}

/// Energies of the draws against energies of exact draws: a two-sample
/// KS test with the draws counted by their bulk ESS.
fn exact_check(
    energy: &dyn Energy,
    draw_energies: ArrayView2<f64>,
    exact: ArrayView2<f64>,
) -> Result<Option<String>> {
    let mut ex = Array1::zeros(exact.nrows());
    energy.energy_batch(exact, ex.view_mut());
    let ours: Vec<f64> = draw_energies.iter().copied().collect();
    if ours.iter().chain(ex.iter()).any(|v| !v.is_finite()) {
        return Ok(None);
    }
    let (d, _) = diagnostics::ks_two_sample(&ours, ex.as_slice().expect("contiguous"));
    let ess = diagnostics::ess_bulk(draw_energies).clamp(1.0, ours.len() as f64);
    let m = ex.len() as f64;
    let ne = (ess * m / (ess + m)).sqrt();
    let p = diagnostics::kolmogorov_q((ne + 0.12 + 0.11 / ne) * d);
    Ok((p < EXACT_CHECK_P).then(|| {
        format!(
            "the draws' energies do not match exact draws of the target (KS D = {d:.3}, p = {p:.1e} with ESS {ess:.0}; mean energy {:.4} vs {:.4}): the chains miss part of the target (a mode?) or are biased",
            draw_energies.mean().unwrap_or(f64::NAN),
            ex.mean().unwrap_or(f64::NAN)
        )
    }))
}

/// Energies beyond this magnitude are resolved coarser than one nat in
/// float64 (2^53: one rounding step of the energy is 1 or more).
const ENERGY_RESOLVED: f64 = 9_007_199_254_740_992.0;

/// Chains that never moved after warm-up: 20 draws or more, every one
/// equal to the chain's first (every proposal rejected; on a continuous
/// space a chain that moves never repeats a point). Where such a chain's
/// energy is beyond [`ENERGY_RESOLVED`], the message says why no kernel
/// decides there: a Metropolis test is then decided by rounding (kernels
/// that choose their step from the energy error, as AutoStep's, find none).
fn stuck(out: &SampleOutput) -> Option<String> {
    let (c, n, _) = out.samples.dim();
    if n < 20 {
        return None;
    }
    let frozen: Vec<usize> = (0..c)
        .filter(|&i| {
            let first = out.samples.slice(s![i, 0, ..]);
            (1..n).all(|t| out.samples.slice(s![i, t, ..]) == first)
        })
        .collect();
    if frozen.is_empty() {
        return None;
    }
    let shown: Vec<String> = frozen.iter().take(8).map(usize::to_string).collect();
    let more = if frozen.len() > 8 { ", ..." } else { "" };
    let mut msg = format!(
        "{} of {c} chains never moved after warm-up (chain {}{more}: every draw is the chain's first, every proposal rejected), so their draws are one point each",
        frozen.len(),
        shown.join(", ")
    );
    let coarse: Vec<f64> = frozen
        .iter()
        .map(|&i| out.final_state.energy[i])
        .filter(|e| e.abs() > ENERGY_RESOLVED)
        .collect();
    if let Some(&e) = coarse.iter().max_by(|a, b| a.abs().total_cmp(&b.abs())) {
        msg.push_str(&format!(
            "; {} of them sit at energies up to {e:.3e}, where float64 resolves energy differences only to {:.1e} nats, so every Metropolis test there is decided by rounding: run a warm-up (it first moves chains above 2^53 downhill), start them elsewhere (init) or sample with nuts, whose trajectories go downhill from there",
            coarse.len(),
            e.abs() * f64::EPSILON
        ));
    } else {
        msg.push_str(": lower the step size or check the kernel's settings");
    }
    Some(msg)
}

/// Chains that run off: in every chain the mean norm of the last quarter of
/// the draws is over 100 and over 1.5 times that of the first quarter, or
/// the draws reach norms over 1e6 (the density may not be normalisable
/// along some direction: an `mlp` without `l2`, say).
fn drift(samples: ArrayView3<f64>) -> Option<String> {
    let (c, n, _) = samples.dim();
    if c == 0 || n < 8 {
        return None;
    }
    let q = n / 4;
    let mean_norm = |i: usize, a: usize, b: usize| {
        (a..b)
            .map(|t| {
                let r = samples.slice(s![i, t, ..]);
                r.dot(&r).sqrt()
            })
            .sum::<f64>()
            / (b - a) as f64
    };
    let growth: Vec<(f64, f64)> = (0..c)
        .map(|i| (mean_norm(i, 0, q), mean_norm(i, n - q, n)))
        .collect();
    let first = growth.iter().map(|g| g.0).sum::<f64>() / c as f64;
    let last = growth.iter().map(|g| g.1).sum::<f64>() / c as f64;
    let drifting = growth.iter().all(|&(a, b)| b > 100.0 && b > 1.5 * a);
    let far = last.is_nan() || last >= 1e6;
    (drifting || far).then(|| {
        format!(
            "the chains drift off (mean |y| {first:.3e} in the first quarter of the draws, {last:.3e} in the last): the density may not be normalisable (an mlp without l2?)"
        )
    })
}
