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
    let mut sums = WeightSums::new(largest(logw));
    sums.add(logw);
    sums.finish()
}

/// The largest of `logw` (`-inf` for none), the shift of [`WeightSums`].
pub(crate) fn largest(logw: &[f64]) -> f64 {
    logw.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The sums of [`estimate`] fed a piece at a time, in particle order (a
/// merge feeds them shard by shard, holding no log-weights): `sum exp(w -
/// m)` and `sum exp(2 w - 2 m)` from the group's largest log-weight `m`,
/// known first. The same arithmetic in the same order as the estimate of
/// the whole row, so the result is the same bits.
pub(crate) struct WeightSums {
    max: f64,
    s1: f64,
    s2: f64,
    n: usize,
}

impl WeightSums {
    /// Sums shifted by `max`, the largest log-weight of the whole group.
    pub(crate) fn new(max: f64) -> Self {
        WeightSums {
            max,
            s1: -0.0,
            s2: -0.0,
            n: 0,
        }
    }

    /// Adds the next log-weights of the group.
    pub(crate) fn add(&mut self, logw: &[f64]) {
        let m2 = 2.0 * self.max;
        if self.max.is_finite() {
            for &w in logw {
                self.s1 += (w - self.max).exp();
            }
        }
        if m2.is_finite() {
            for &w in logw {
                self.s2 += (2.0 * w - m2).exp();
            }
        }
        self.n += logw.len();
    }

    /// `(log mean w, variance of log mean w (delta method), ESS)`.
    pub(crate) fn finish(&self) -> (f64, f64, f64) {
        let lse_of = |m: f64, s: f64| if m.is_finite() { m + s.ln() } else { m };
        let n = self.n as f64;
        let lse = lse_of(self.max, self.s1);
        let lse2 = lse_of(2.0 * self.max, self.s2);
        let ess = (2.0 * lse - lse2).exp();
        let var = (1.0 / ess - 1.0 / n).max(0.0);
        (lse - n.ln(), var, ess)
    }
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

/// The Lee & Whiteley (2018) estimate of the relative variance of an SMC
/// estimate of Z, `Var(Z_hat) / Z^2`, from the final log-weights, each
/// particle's ancestor at the base (`eves`) and the number of resampling
/// events: `1 - (N / (N - 1))^(R + 1) (1 - sum_e S_e^2)`, where `S_e` is the
/// normalised weight of the particles descended from `e`. Without
/// resampling it is the unbiased `(N sum W^2 - 1) / (N - 1)`. Used as the
/// variance of `log Z_hat` (delta method; clamped at 0). Also returns the
/// number of distinct ancestors: when they are few, the genealogy has
/// collapsed and the estimate sees little of the variance from before.
pub(crate) fn lee_whiteley(logw: &[f64], eves: &[u32], resamplings: usize) -> (f64, usize) {
    let n = logw.len();
    if n < 2 {
        return (f64::NAN, n);
    }
    let lse = crate::energy::log_sum_exp(logw);
    let mut by_eve = std::collections::BTreeMap::<u32, f64>::new();
    for (w, e) in logw.iter().zip(eves) {
        *by_eve.entry(*e).or_insert(0.0) += (w - lse).exp();
    }
    let sum_sq: f64 = by_eve.values().map(|s| s * s).sum();
    let factor = (n as f64 / (n as f64 - 1.0)).powi(resamplings as i32 + 1);
    ((1.0 - factor * (1.0 - sum_sq)).max(0.0), by_eve.len())
}
