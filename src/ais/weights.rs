//! Weight arithmetic of AIS and SMC: the delta-method estimate, the
//! conditional ESS of an increment, systematic resampling, the bootstrap.

use crate::energy::log_sum_exp;
use crate::rng::ChainRng;
use rand::RngExt;

/// Conditional ESS of increments `inc` under normalised weights `logw`, in (0, 1].
pub(crate) fn cess(logw: &[f64], inc: &[f64]) -> f64 {
    let lw = log_sum_exp(logw);
    let a: Vec<f64> = logw.iter().zip(inc).map(|(w, u)| w - lw + u).collect();
    let b: Vec<f64> = logw
        .iter()
        .zip(inc)
        .map(|(w, u)| w - lw + 2.0 * u)
        .collect();
    (2.0 * log_sum_exp(&a) - log_sum_exp(&b)).exp()
}

/// Systematic resampling of `n` particles from log-weights: ancestor indices.
pub(crate) fn systematic(logw: &[f64], rng: &mut ChainRng) -> Vec<usize> {
    let n = logw.len();
    let lw = log_sum_exp(logw);
    let u0: f64 = rng.random::<f64>() / n as f64;
    let mut out = Vec::with_capacity(n);
    let mut cum = 0.0;
    let mut i = 0;
    for j in 0..n {
        let u = u0 + j as f64 / n as f64;
        while i < n - 1 && cum + (logw[i] - lw).exp() < u {
            cum += (logw[i] - lw).exp();
            i += 1;
        }
        out.push(i);
    }
    out
}

/// The delta-method estimate of one group's log-weights.
pub(crate) fn estimate(logw: &[f64]) -> (f64, f64, f64) {
    let n = logw.len() as f64;
    let lse = log_sum_exp(logw);
    let lse2 = log_sum_exp(&logw.iter().map(|w| 2.0 * w).collect::<Vec<_>>());
    let ess = (2.0 * lse - lse2).exp();
    let var = (1.0 / ess - 1.0 / n).max(0.0);
    (lse - n.ln(), var, ess)
}

/// Bootstrap standard error of `log mean(w)` from `b` resamples of the
/// log-weights `w`.
pub(crate) fn bootstrap_stderr(w: &[f64], b: usize, rng: &mut ChainRng) -> f64 {
    let n = w.len();
    let vals: Vec<f64> = (0..b)
        .map(|_| {
            let r: Vec<f64> = (0..n).map(|_| w[rng.random_range(0..n)]).collect();
            log_sum_exp(&r) - (n as f64).ln()
        })
        .collect();
    let m = vals.iter().sum::<f64>() / vals.len() as f64;
    (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (vals.len() as f64 - 1.0).max(1.0))
        .sqrt()
}
