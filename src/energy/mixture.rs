//! Isotropic Gaussian mixtures with closed-form log Z.

use super::{RowEnergy, log_sum_exp};
use crate::error::{Error, Result, check_finite, check_positive};
use ndarray::Array2;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;

/// An isotropic Gaussian mixture energy
/// `F(y) = -log sum_k a_k exp(-|y - m_k|^2 / (2 s_k^2))`, built one of two ways:
///
/// - [`Mixture::from_weights`]: `a_k = w_k (2 pi s_k^2)^(-d/2)`, so that
///   `exp(-F) = sum_k w_k N(y; m_k, s_k^2 I)` and the weights are the
///   component probabilities (scikit-learn's `GaussianMixture` meaning);
///   `log Z = log sum_k w_k` (0 when they sum to 1). Model files' `weights`.
/// - [`Mixture::from_amplitudes`]: the amplitudes `a_k` as given, so that
///   `log Z = log sum_k a_k (2 pi s_k^2)^(d/2)` and component `k` holds mass
///   proportional to `a_k s_k^d`. The suite's `gmm-ring` and `gmm-far` are
///   written this way (SUITE.md); model files' `amplitudes`.
///
/// Evaluated with a log-sum-exp, so states far from every mode give large
/// finite energies, not `inf`.
#[derive(Clone, Debug)]
pub struct Mixture {
    /// Log amplitudes `log a_k`.
    log_w: Vec<f64>,
    means: Array2<f64>,
    std: Vec<f64>,
}

impl Mixture {
    /// Component probabilities `weights` (K, > 0; normalised Gaussian
    /// components), `means` (K x d), `std` (K, > 0).
    ///
    /// ```
    /// use boltz::{Energy, energy::Mixture};
    /// let m = Mixture::from_weights(vec![0.8, 0.2],
    ///     ndarray::array![[8.0, 8.0], [-8.0, -8.0]], vec![0.5, 1.0])?;
    /// assert!(m.log_z().unwrap().abs() < 1e-12);
    /// assert!((m.component_mass()[0] - 0.8).abs() < 1e-12);
    /// # Ok::<(), boltz::Error>(())
    /// ```
    pub fn from_weights(weights: Vec<f64>, means: Array2<f64>, std: Vec<f64>) -> Result<Self> {
        let mut m = Self::build("weights", weights, means, std)?;
        let d = m.means.ncols() as f64;
        for k in 0..m.log_w.len() {
            m.log_w[k] -= 0.5 * d * (2.0 * PI * m.std[k] * m.std[k]).ln();
        }
        if m.log_w.iter().any(|v| !v.is_finite()) {
            return Err(Error::param(
                "weights",
                "a component's density overflows (std too small for the dimension)",
            ));
        }
        Ok(m)
    }

    /// Amplitudes `a_k` (K, > 0; unnormalised components), `means` (K x d),
    /// `std` (K, > 0).
    pub fn from_amplitudes(
        amplitudes: Vec<f64>,
        means: Array2<f64>,
        std: Vec<f64>,
    ) -> Result<Self> {
        Self::build("amplitudes", amplitudes, means, std)
    }

    fn build(key: &str, w: Vec<f64>, means: Array2<f64>, std: Vec<f64>) -> Result<Self> {
        let k = w.len();
        if k == 0 || means.nrows() != k || std.len() != k || means.ncols() == 0 {
            return Err(Error::shape(
                "mixture",
                format!("{key} (K), means (K, d), std (K) with K = {k}"),
                format!("means {:?}, std ({})", means.shape(), std.len()),
            ));
        }
        check_finite(key, &w)?;
        for v in &w {
            check_positive(key, *v)?;
        }
        for s in &std {
            check_positive("std", *s)?;
        }
        if means.iter().any(|v| !v.is_finite()) {
            return Err(Error::param("means", "contains a non-finite number"));
        }
        Ok(Mixture {
            log_w: w.iter().map(|w| w.ln()).collect(),
            means,
            std,
        })
    }

    /// Number of components.
    pub fn n_components(&self) -> usize {
        self.log_w.len()
    }

    /// Component means (K x d).
    pub fn means(&self) -> &Array2<f64> {
        &self.means
    }

    /// Component standard deviations.
    pub fn stds(&self) -> &[f64] {
        &self.std
    }

    /// Probability mass of each component under `exp(-F)/Z`.
    pub fn component_mass(&self) -> Vec<f64> {
        let d = self.means.ncols() as f64;
        let lm: Vec<f64> = (0..self.log_w.len())
            .map(|k| self.log_w[k] + 0.5 * d * (2.0 * PI * self.std[k] * self.std[k]).ln())
            .collect();
        let lz = log_sum_exp(&lm);
        lm.iter().map(|v| (v - lz).exp()).collect()
    }

    /// One exact draw from `exp(-F)/Z`: a component by its mass, then its Gaussian.
    pub fn sample_exact<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let mass = self.component_mass();
        let u: f64 = rng.random();
        let mut acc = 0.0;
        let mut k = mass.len() - 1;
        for (i, m) in mass.iter().enumerate() {
            acc += m;
            if u < acc {
                k = i;
                break;
            }
        }
        for (j, o) in out.iter_mut().enumerate() {
            let z: f64 = StandardNormal.sample(rng);
            *o = self.means[[k, j]] + self.std[k] * z;
        }
    }

    /// Runs `f` on the component log-terms of `y`, in a stack buffer for
    /// up to 16 components (no allocation per call).
    fn with_terms<R>(&self, y: &[f64], f: impl FnOnce(&mut [f64]) -> R) -> R {
        let k = self.log_w.len();
        if k <= 16 {
            let mut buf = [0.0f64; 16];
            self.log_terms(y, &mut buf[..k]);
            f(&mut buf[..k])
        } else {
            let mut buf = vec![0.0; k];
            self.log_terms(y, &mut buf);
            f(&mut buf)
        }
    }

    fn log_terms(&self, y: &[f64], terms: &mut [f64]) {
        for (k, t) in terms.iter_mut().enumerate() {
            let m = self.means.row(k);
            let mut d2 = 0.0;
            for (a, b) in y.iter().zip(m.iter()) {
                d2 += (a - b) * (a - b);
            }
            *t = self.log_w[k] - d2 / (2.0 * self.std[k] * self.std[k]);
        }
    }
}

impl RowEnergy for Mixture {
    fn state_dim(&self) -> usize {
        self.means.ncols()
    }
    fn energy(&self, y: &[f64]) -> f64 {
        self.with_terms(y, |terms| -lse_in_place(terms))
    }
    fn energy_grad(&self, y: &[f64], grad: &mut [f64]) -> f64 {
        self.with_terms(y, |terms| {
            // terms become exp(t_k - max); r_k = terms_k / sum.
            let lse = lse_in_place(terms);
            let sum: f64 = terms.iter().sum();
            grad.iter_mut().for_each(|g| *g = 0.0);
            // dF/dy = sum_k r_k (y - m_k) / s_k^2, r_k the responsibilities.
            for k in 0..terms.len() {
                let r = terms[k] / sum;
                if r == 0.0 {
                    continue;
                }
                let c = r / (self.std[k] * self.std[k]);
                let m = self.means.row(k);
                for (j, g) in grad.iter_mut().enumerate() {
                    *g += c * (y[j] - m[j]);
                }
            }
            -lse
        })
    }
    fn energy_grad_rows(&self, y: &[f64], energy: &mut [f64], grad: &mut [f64]) {
        // Up to LANES rows at once, lane by lane the same operations in the
        // same order as `energy_grad` (so the same bits), vectorised across
        // the rows: the mixture's exponentials dominate and are independent
        // across rows.
        const LANES: usize = 8;
        let d = self.means.ncols();
        let k = self.log_w.len();
        if k > 16 {
            for ((row, e), g) in y
                .chunks_exact(d)
                .zip(energy.iter_mut())
                .zip(grad.chunks_exact_mut(d))
            {
                *e = self.energy_grad(row, g);
            }
            return;
        }
        let mut t = [[0.0f64; LANES]; 16];
        for ((yb, eb), gb) in y
            .chunks(d * LANES)
            .zip(energy.chunks_mut(LANES))
            .zip(grad.chunks_mut(d * LANES))
        {
            let n = eb.len();
            if n < LANES {
                for ((row, e), g) in yb
                    .chunks_exact(d)
                    .zip(eb.iter_mut())
                    .zip(gb.chunks_exact_mut(d))
                {
                    *e = self.energy_grad(row, g);
                }
                continue;
            }
            // log terms: log a_k - |y - m_k|^2 / (2 s_k^2), j in order.
            for (c, tc) in t.iter_mut().enumerate().take(k) {
                let m = self.means.row(c);
                let mut d2 = [0.0f64; LANES];
                for (j, mj) in m.iter().enumerate() {
                    for l in 0..LANES {
                        let a = yb[l * d + j] - mj;
                        d2[l] += a * a;
                    }
                }
                let s2 = 2.0 * self.std[c] * self.std[c];
                for l in 0..LANES {
                    tc[l] = self.log_w[c] - d2[l] / s2;
                }
            }
            let mut max = [f64::NEG_INFINITY; LANES];
            for tc in t.iter().take(k) {
                for l in 0..LANES {
                    max[l] = max[l].max(tc[l]);
                }
            }
            if max.iter().any(|m| !m.is_finite()) {
                for ((row, e), g) in yb
                    .chunks_exact(d)
                    .zip(eb.iter_mut())
                    .zip(gb.chunks_exact_mut(d))
                {
                    *e = self.energy_grad(row, g);
                }
                continue;
            }
            let mut sum = [0.0f64; LANES];
            for tc in t.iter_mut().take(k) {
                for l in 0..LANES {
                    tc[l] = super::exp_poly(tc[l] - max[l]);
                    sum[l] += tc[l];
                }
            }
            for l in 0..LANES {
                eb[l] = -(max[l] + sum[l].ln());
            }
            gb.iter_mut().for_each(|g| *g = 0.0);
            for (c, tc) in t.iter().enumerate().take(k) {
                let m = self.means.row(c);
                let s2 = self.std[c] * self.std[c];
                for l in 0..LANES {
                    let r = tc[l] / sum[l];
                    if r == 0.0 {
                        continue;
                    }
                    let cl = r / s2;
                    let (yl, gl) = (&yb[l * d..(l + 1) * d], &mut gb[l * d..(l + 1) * d]);
                    for ((g, yj), mj) in gl.iter_mut().zip(yl).zip(m.iter()) {
                        *g += cl * (yj - mj);
                    }
                }
            }
        }
    }
    fn known_log_z(&self) -> Option<f64> {
        let d = self.means.ncols() as f64;
        let lm: Vec<f64> = (0..self.log_w.len())
            .map(|k| self.log_w[k] + 0.5 * d * (2.0 * PI * self.std[k] * self.std[k]).ln())
            .collect();
        Some(log_sum_exp(&lm))
    }
}

/// `log sum_k exp(t_k)`, leaving `t_k` replaced by `exp(t_k - max t)` (one
/// exponential per term, shared with the responsibilities).
fn lse_in_place(t: &mut [f64]) -> f64 {
    let max = t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let mut sum = 0.0;
    for v in t.iter_mut() {
        *v = super::exp_poly(*v - max);
        sum += *v;
    }
    max + sum.ln()
}
