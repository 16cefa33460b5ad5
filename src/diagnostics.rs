//! Convergence diagnostics and the statistical tests used to check samplers.
//!
//! R-hat, bulk and tail ESS follow Vehtari, Gelman, Simpson, Carpenter &
//! Bürkner (2021), "Rank-normalization, folding, and localization: an
//! improved R-hat": chains are split in halves, draws rank-normalised, and
//! the autocorrelation sum truncated by Geyer's initial monotone sequence.
//! Inputs are (chains, draws) arrays of one scalar quantity, or (chains,
//! draws, dim) arrays summarised per coordinate.

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayView3, Axis, s};
use rayon::prelude::*;
use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Radix-2 complex FFT in place (`re`, `im` of a power-of-two length),
/// with the twiddle factors computed once per call.
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let (tw_re, tw_im): (Vec<f64>, Vec<f64>) = (0..n / 2)
        .map(|k| {
            let a = -2.0 * std::f64::consts::PI * k as f64 / n as f64;
            (a.cos(), a.sin())
        })
        .unzip();
    let mut len = 2;
    while len <= n {
        let stride = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (wr, wi) = (tw_re[k * stride], tw_im[k * stride]);
                let (a, b) = (start + k, start + k + len / 2);
                let (xr, xi) = (re[b] * wr - im[b] * wi, re[b] * wi + im[b] * wr);
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
        len <<= 1;
    }
}

/// The standard normal quantile function: Acklam's rational approximation
/// refined by one Halley step (relative error below 1e-14 on (0, 1)).
pub fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let plow = 0.02425;
    let x = if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    // One Halley step on Phi(x) - p.
    let e = 0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// Autocovariances of `x` at lags `0..n` (divided by `n`, the usual biased
/// estimator), by FFT in O(n log n).
pub fn autocovariance(x: ArrayView1<f64>) -> Vec<f64> {
    let n = x.len();
    if n == 0 {
        return vec![];
    }
    let mean = x.sum() / n as f64;
    let size = (2 * n).next_power_of_two();
    let mut re = vec![0.0; size];
    let mut im = vec![0.0; size];
    for (r, v) in re.iter_mut().zip(x.iter()) {
        *r = v - mean;
    }
    fft(&mut re, &mut im);
    for k in 0..size {
        re[k] = re[k] * re[k] + im[k] * im[k];
        im[k] = 0.0;
    }
    // Inverse FFT via conjugation.
    fft(&mut re, &mut im);
    (0..n).map(|t| re[t] / size as f64 / n as f64).collect()
}

/// Mean autocorrelation over chains at lags `0..=max_lag` of a (chains, draws) array.
pub fn autocorrelation(x: ArrayView2<f64>, max_lag: usize) -> Vec<f64> {
    let m = x.nrows() as f64;
    let mut out = vec![0.0; max_lag + 1];
    for row in x.rows() {
        let ac = autocovariance(row);
        let v = ac.first().copied().unwrap_or(0.0);
        for (o, a) in out.iter_mut().zip(ac.iter()) {
            *o += if v > 0.0 { a / v / m } else { 0.0 };
        }
    }
    out
}

/// Effective sample size of a (chains, draws) array, without splitting or
/// rank normalisation (Geyer's initial monotone sequence; Stan / ArviZ's `ess`).
pub fn ess(x: ArrayView2<f64>) -> f64 {
    let (m, n) = x.dim();
    if n < 4 || m == 0 {
        return f64::NAN;
    }
    if x.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let (lo, hi) = x
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if hi - lo < 1e-15 * (1.0 + hi.abs()) {
        return (m * n) as f64;
    }
    let acov: Vec<Vec<f64>> = x.rows().into_iter().map(autocovariance).collect();
    let nf = n as f64;
    let chain_mean: Vec<f64> = x.rows().into_iter().map(|r| r.sum() / nf).collect();
    let mean_var = acov.iter().map(|a| a[0]).sum::<f64>() / m as f64 * nf / (nf - 1.0);
    let mut var_plus = mean_var * (nf - 1.0) / nf;
    if m > 1 {
        let mu = chain_mean.iter().sum::<f64>() / m as f64;
        var_plus += chain_mean.iter().map(|c| (c - mu) * (c - mu)).sum::<f64>() / (m as f64 - 1.0);
    }
    if !(var_plus.is_finite() && var_plus > 0.0) {
        // Values so large that their variance overflows.
        return f64::NAN;
    }
    let rho =
        |t: usize| 1.0 - (mean_var - acov.iter().map(|a| a[t]).sum::<f64>() / m as f64) / var_plus;
    let mut rho_hat = vec![0.0; n];
    rho_hat[0] = 1.0;
    let mut rho_even = 1.0;
    let mut rho_odd = rho(1);
    rho_hat[1] = rho_odd;
    let mut t = 1;
    while t < n - 3 && rho_even + rho_odd > 0.0 {
        rho_even = rho(t + 1);
        rho_odd = rho(t + 2);
        if rho_even + rho_odd >= 0.0 {
            rho_hat[t + 1] = rho_even;
            rho_hat[t + 2] = rho_odd;
        }
        t += 2;
    }
    // -1 when the first pair of autocorrelations is already negative (an
    // alternating chain), as in ArviZ: then tau is its floor below.
    let max_t = t as isize - 2;
    let last = (max_t + 1) as usize;
    if rho_even > 0.0 {
        rho_hat[last] = rho_even;
    }
    // Initial monotone sequence.
    let mut t = 1;
    while t as isize + 2 <= max_t {
        if rho_hat[t + 1] + rho_hat[t + 2] > rho_hat[t - 1] + rho_hat[t] {
            rho_hat[t + 1] = (rho_hat[t - 1] + rho_hat[t]) / 2.0;
            rho_hat[t + 2] = rho_hat[t + 1];
        }
        t += 2;
    }
    let total = (m * n) as f64;
    let tau = -1.0 + 2.0 * rho_hat[..last].iter().sum::<f64>() + rho_hat[last];
    let tau = tau.max(1.0 / total.log10());
    total / tau
}

/// Splits each chain into its first and second half (dropping the middle
/// draw of odd lengths): (m, n) -> (2m, n/2).
pub fn split_chains(x: ArrayView2<f64>) -> Array2<f64> {
    let (m, n) = x.dim();
    let h = n / 2;
    let mut out = Array2::zeros((2 * m, h));
    for i in 0..m {
        out.row_mut(2 * i).assign(&x.slice(s![i, ..h]));
        out.row_mut(2 * i + 1).assign(&x.slice(s![i, n - h..]));
    }
    out
}

/// Rank-normalises all draws together: `z = Phi^{-1}((r - 3/8) / (S + 1/4))`
/// with average ranks for ties.
pub fn rank_normalize(x: ArrayView2<f64>) -> Array2<f64> {
    // Sort (value, index) pairs: contiguous, so much faster than sorting
    // indices through the values.
    let mut pairs: Vec<(f64, usize)> = x.iter().copied().zip(0..).collect();
    pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let s = pairs.len();
    let mut z = vec![0.0; s];
    let mut i = 0;
    while i < s {
        let mut j = i;
        while j + 1 < s && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        let q = normal_quantile((r - 0.375) / (s as f64 + 0.25));
        for p in &pairs[i..=j] {
            z[p.1] = q;
        }
        i = j + 1;
    }
    Array2::from_shape_vec(x.raw_dim(), z).expect("same shape")
}

fn rhat_basic(x: ArrayView2<f64>) -> f64 {
    let (m, n) = x.dim();
    if m < 2 || n < 2 {
        return f64::NAN;
    }
    let nf = n as f64;
    let means: Vec<f64> = x.rows().into_iter().map(|r| r.sum() / nf).collect();
    let vars: Vec<f64> = x
        .rows()
        .into_iter()
        .zip(&means)
        .map(|(r, mu)| r.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / (nf - 1.0))
        .collect();
    let mu = means.iter().sum::<f64>() / m as f64;
    let between = nf * means.iter().map(|c| (c - mu) * (c - mu)).sum::<f64>() / (m as f64 - 1.0);
    let within = vars.iter().sum::<f64>() / m as f64;
    ((between / within + nf - 1.0) / nf).sqrt()
}

/// Rank-normalised split R-hat: the larger of the bulk R-hat and the R-hat
/// of the folded draws `|x - median|`. Values above 1.01 suggest chains that
/// have not mixed.
pub fn rhat(x: ArrayView2<f64>) -> f64 {
    let split = split_chains(x);
    let z = rank_normalize(split.view());
    rhat_from_split(split.view(), z.view())
}

fn rhat_from_split(split: ArrayView2<f64>, z: ArrayView2<f64>) -> f64 {
    let bulk = rhat_basic(z);
    let med = median(split.iter().copied().collect());
    let folded = split.mapv(|v| (v - med).abs());
    let tail = rhat_basic(rank_normalize(folded.view()).view());
    bulk.max(tail)
}

/// Bulk ESS: the ESS of the rank-normalised split chains.
pub fn ess_bulk(x: ArrayView2<f64>) -> f64 {
    ess(rank_normalize(split_chains(x).view()).view())
}

/// Tail ESS: the smaller ESS of the indicators `x <= q05` and `x <= q95`.
pub fn ess_tail(x: ArrayView2<f64>) -> f64 {
    let split = split_chains(x);
    let mut v: Vec<f64> = split.iter().copied().collect();
    v.sort_unstable_by(f64::total_cmp);
    let q = |p: f64| quantile_sorted(&v, p);
    let (q05, q95) = (q(0.05), q(0.95));
    let e05 = ess(split.mapv(|x| f64::from(u8::from(x <= q05))).view());
    let e95 = ess(split.mapv(|x| f64::from(u8::from(x <= q95))).view());
    e05.min(e95)
}

/// ESS for the mean: split chains, no rank normalisation.
pub fn ess_mean(x: ArrayView2<f64>) -> f64 {
    ess(split_chains(x).view())
}

/// Monte Carlo standard error of the mean: `sd / sqrt(ess_mean)`.
pub fn mcse_mean(x: ArrayView2<f64>) -> f64 {
    let n = x.len() as f64;
    let mu = x.sum() / n;
    let sd = (x.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / (n - 1.0)).sqrt();
    sd / ess_mean(x).sqrt()
}

fn quantile_sorted(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = (v.len() - 1) as f64 * p;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    quantile_sorted(&v, 0.5)
}

/// Diagnostics of one coordinate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CoordSummary {
    /// Mean over all draws.
    pub mean: f64,
    /// Standard deviation over all draws.
    pub sd: f64,
    /// Monte Carlo standard error of the mean.
    pub mcse_mean: f64,
    /// Bulk effective sample size.
    pub ess_bulk: f64,
    /// Tail effective sample size.
    pub ess_tail: f64,
    /// Rank-normalised split R-hat (NaN for a constant coordinate, as ArviZ).
    pub rhat: f64,
    /// Every draw of every chain has the same value (a fixed or unused
    /// coordinate): R-hat and ESS are undefined (NaN) and [`overview`]
    /// leaves the coordinate out.
    pub constant: bool,
}

/// Summarises one (chains, draws) array.
pub fn summarize_scalar(x: ArrayView2<f64>) -> CoordSummary {
    let n = x.len() as f64;
    let mean = x.sum() / n;
    let sd = (x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt();
    // Split and rank-normalise once for R-hat and bulk ESS.
    let split = split_chains(x);
    let z = rank_normalize(split.view());
    CoordSummary {
        mean,
        sd,
        mcse_mean: sd / ess(split.view()).sqrt(),
        ess_bulk: ess(z.view()),
        ess_tail: ess_tail(x),
        rhat: rhat_from_split(split.view(), z.view()),
        constant: x.iter().all(|v| *v == x[[0, 0]]),
    }
}

/// Summaries of every coordinate of a (chains, draws, dim) array, computed
/// in parallel (each coordinate on its own, so results do not depend on threads).
pub fn summarize(samples: ArrayView3<f64>) -> Result<Vec<CoordSummary>> {
    summarize_with_stop(samples, None)
}

/// [`summarize`] that gives up between coordinates once `stop` is set
/// ([`Error::Interrupted`]), so a long diagnosis stops within one
/// coordinate's work.
pub fn summarize_with_stop(
    samples: ArrayView3<f64>,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<Vec<CoordSummary>> {
    let stopped = || stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed));
    let (m, n, _) = samples.dim();
    if m == 0 || n < 4 {
        return Err(Error::shape(
            "samples",
            "(chains >= 1, draws >= 4, dim)",
            format!("{:?}", samples.shape()),
        ));
    }
    let out: Option<Vec<CoordSummary>> = samples
        .axis_iter(Axis(2))
        .into_par_iter()
        .map(|c| (!stopped()).then(|| summarize_scalar(c)))
        .collect();
    match out {
        Some(v) if !stopped() => Ok(v),
        _ => Err(Error::Interrupted("the diagnosis was stopped".into())),
    }
}

/// Overall figures of a run: the worst coordinate for each diagnostic.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Overview {
    /// Smallest bulk ESS over coordinates.
    pub ess_bulk_min: f64,
    /// Smallest tail ESS over coordinates.
    pub ess_tail_min: f64,
    /// Largest R-hat over coordinates.
    pub rhat_max: f64,
}

/// The worst coordinate's bulk ESS, tail ESS and R-hat (NaN-aware: a NaN
/// wins), over the coordinates that are not constant; NaN when all are.
pub fn overview(summaries: &[CoordSummary]) -> Overview {
    let varying: Vec<&CoordSummary> = summaries.iter().filter(|s| !s.constant).collect();
    if varying.is_empty() {
        return Overview {
            ess_bulk_min: f64::NAN,
            ess_tail_min: f64::NAN,
            rhat_max: f64::NAN,
        };
    }
    let min = |f: fn(&CoordSummary) -> f64| {
        varying.iter().map(|s| f(s)).fold(f64::INFINITY, |a, b| {
            if b.is_nan() || a.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        })
    };
    let rhat_max = varying
        .iter()
        .map(|s| s.rhat)
        .fold(f64::NEG_INFINITY, |a, b| {
            if b.is_nan() || a.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        });
    Overview {
        ess_bulk_min: min(|s| s.ess_bulk),
        ess_tail_min: min(|s| s.ess_tail),
        rhat_max,
    }
}

/// Kolmogorov's limiting survival function `Q(lambda) = 2 sum_k (-1)^(k-1) exp(-2 k^2 lambda^2)`.
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut q = 0.0;
    for k in 1..=100 {
        let kf = k as f64;
        let term = (-2.0 * kf * kf * lambda * lambda).exp();
        q += if k % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    (2.0 * q).clamp(0.0, 1.0)
}

/// One-sample Kolmogorov-Smirnov test of `data` against the CDF `cdf`:
/// returns `(D, p-value)`, the p-value from Kolmogorov's distribution with
/// Stephens' small-sample correction. The draws must be independent.
pub fn ks_test<F: Fn(f64) -> f64>(data: &[f64], cdf: F) -> (f64, f64) {
    let mut v = data.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let mut d: f64 = 0.0;
    for (i, x) in v.iter().enumerate() {
        let f = cdf(*x);
        d = d.max(f - i as f64 / n).max((i + 1) as f64 / n - f);
    }
    let sn = n.sqrt();
    (d, kolmogorov_q((sn + 0.12 + 0.11 / sn) * d))
}

/// Two-sample Kolmogorov-Smirnov test: `(D, p-value)`.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    let ne = (na * nb / (na + nb)).sqrt();
    (d, kolmogorov_q((ne + 0.12 + 0.11 / ne) * d))
}

/// Pearson's chi-square test of observed counts against cell probabilities
/// (which should sum to 1). Adjacent cells are pooled until each expects at
/// least 5 counts. Returns `(statistic, degrees of freedom, p-value)`.
pub fn chi_square_test(observed: &[f64], probs: &[f64]) -> Result<(f64, usize, f64)> {
    if observed.len() != probs.len() || observed.is_empty() {
        return Err(Error::shape(
            "chi-square",
            "observed and probs of the same length",
            format!("{} and {}", observed.len(), probs.len()),
        ));
    }
    let total: f64 = observed.iter().sum();
    let mut cells: Vec<(f64, f64)> = Vec::new();
    let (mut o_acc, mut e_acc) = (0.0, 0.0);
    for (o, p) in observed.iter().zip(probs) {
        o_acc += o;
        e_acc += p * total;
        if e_acc >= 5.0 {
            cells.push((o_acc, e_acc));
            o_acc = 0.0;
            e_acc = 0.0;
        }
    }
    if e_acc > 0.0 || o_acc > 0.0 {
        match cells.last_mut() {
            Some(last) => {
                last.0 += o_acc;
                last.1 += e_acc;
            }
            None => cells.push((o_acc, e_acc)),
        }
    }
    if cells.len() < 2 {
        return Err(Error::param(
            "chi-square",
            "fewer than two cells with 5 expected counts",
        ));
    }
    let stat: f64 = cells.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    let dof = cells.len() - 1;
    let p = 1.0 - ChiSquared::new(dof as f64).expect("dof >= 1").cdf(stat);
    Ok((stat, dof, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_autocovariance_matches_direct_sum() {
        let x: Vec<f64> = (0..37).map(|i| ((i * 7919) % 101) as f64 / 10.0).collect();
        let a = autocovariance(ArrayView1::from(&x[..]));
        let n = x.len();
        let mu = x.iter().sum::<f64>() / n as f64;
        for t in [0, 1, 5, 36] {
            let direct: f64 = (0..n - t)
                .map(|i| (x[i] - mu) * (x[i + t] - mu))
                .sum::<f64>()
                / n as f64;
            assert!(
                (a[t] - direct).abs() < 1e-10,
                "lag {t}: {} vs {direct}",
                a[t]
            );
        }
    }

    #[test]
    fn normal_quantile_matches_statrs() {
        let normal = statrs::distribution::Normal::standard();
        for p in [
            1e-300,
            1e-12,
            1e-4,
            0.01,
            0.02425,
            0.2,
            0.5,
            0.77,
            0.975,
            1.0 - 1e-9,
        ] {
            let (a, b) = (normal_quantile(p), normal.inverse_cdf(p));
            assert!((a - b).abs() < 1e-9 * (1.0 + b.abs()), "p {p}: {a} vs {b}");
        }
    }

    #[test]
    fn ks_detects_a_shift_and_accepts_the_truth() {
        // Evenly spread quantiles of N(0,1): D is tiny.
        use statrs::distribution::Normal;
        let normal = Normal::standard();
        let data: Vec<f64> = (0..1000)
            .map(|i| normal.inverse_cdf((i as f64 + 0.5) / 1000.0))
            .collect();
        let (_, p) = ks_test(&data, |x| normal.cdf(x));
        assert!(p > 0.99);
        let (_, p) = ks_test(&data, |x| normal.cdf(x - 0.3));
        assert!(p < 1e-6);
        let shifted: Vec<f64> = data.iter().map(|x| x + 0.3).collect();
        assert!(ks_two_sample(&data, &shifted).1 < 1e-6);
        assert!(ks_two_sample(&data, &data).1 > 0.99);
    }

    #[test]
    fn chi_square_pools_small_cells() {
        let (stat, dof, p) =
            chi_square_test(&[50.0, 50.0, 0.0, 0.0], &[0.5, 0.49, 0.005, 0.005]).unwrap();
        assert_eq!(dof, 1);
        assert!(stat < 1.0 && p > 0.3);
    }
}
