//! Gaussian mixtures with full covariances (scikit-learn's
//! `GaussianMixture(covariance_type="full")`), with closed-form log Z and
//! exact draws.

use super::gaussian::{solve_lower, solve_lower_t};
use super::{RowEnergy, log_sum_exp};
use crate::error::{Error, Result, check_finite, check_positive};
use ndarray::{Array2, Array3};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;

/// `F(y) = -log sum_k w_k N(y; m_k, S_k)`, each covariance given by the
/// Cholesky factor `U_k` of its precision, `S_k^-1 = U_k U_k^T` with `U_k`
/// upper triangular (scikit-learn's `precisions_cholesky_`), so that
/// `log N(y; m_k, S_k) = -d/2 log 2 pi + sum_j log U_k[j, j] - |(y - m_k)^T U_k|^2 / 2`.
/// `log Z = log sum_k w_k` (0 for component probabilities). Evaluated with
/// a log-sum-exp: states far from every mode give large finite energies.
///
/// ```
/// use boltz::{Energy, RowEnergy, energy::FullMixture};
/// // One component, precision diag(4, 1): log Z = log w = 0.
/// let u = ndarray::Array3::from_shape_vec((1, 2, 2), vec![2.0, 0.0, 0.0, 1.0])?;
/// let m = FullMixture::new(vec![1.0], ndarray::array![[0.0, 0.0]], u)?;
/// assert!(m.log_z().unwrap().abs() < 1e-12);
/// // exp(-F(0)) = N(0; 0, diag(1/4, 1)) = 2 / (2 pi).
/// assert!((RowEnergy::energy(&m, &[0.0, 0.0]) - std::f64::consts::PI.ln()).abs() < 1e-12);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct FullMixture {
    /// `log w_k - d/2 log 2 pi + sum_j log U_k[j, j]`.
    log_a: Vec<f64>,
    weights: Vec<f64>,
    means: Array2<f64>,
    /// `U_k`, (K, d, d), upper triangular.
    chol: Array3<f64>,
}

impl FullMixture {
    /// Component probabilities `weights` (K, > 0), `means` (K x d) and the
    /// precisions' Cholesky factors `precision_cholesky` (K x d x d, upper
    /// triangular with a positive diagonal; entries below it must be 0).
    pub fn new(
        weights: Vec<f64>,
        means: Array2<f64>,
        precision_cholesky: Array3<f64>,
    ) -> Result<Self> {
        let (k, d) = means.dim();
        if k == 0 || d == 0 || weights.len() != k || precision_cholesky.dim() != (k, d, d) {
            return Err(Error::shape(
                "mixture",
                format!(
                    "weights (K), means (K, d), precision_cholesky (K, d, d) with K = {k}, d = {d}"
                ),
                format!(
                    "weights ({}), precision_cholesky {:?}",
                    weights.len(),
                    precision_cholesky.shape()
                ),
            ));
        }
        check_finite("weights", &weights)?;
        for w in &weights {
            check_positive("weights", *w)?;
        }
        if means
            .iter()
            .chain(precision_cholesky.iter())
            .any(|v| !v.is_finite())
        {
            return Err(Error::param(
                "mixture",
                "means and precision_cholesky must be finite",
            ));
        }
        let mut log_a = Vec::with_capacity(k);
        for c in 0..k {
            let u = precision_cholesky.index_axis(ndarray::Axis(0), c);
            let mut logdet = 0.0;
            for i in 0..d {
                if u[[i, i]] <= 0.0 {
                    return Err(Error::param(
                        "precision_cholesky",
                        format!("component {c}: diagonal entry {i} must be > 0"),
                    ));
                }
                logdet += u[[i, i]].ln();
                if (0..i).any(|j| u[[i, j]] != 0.0) {
                    return Err(Error::param(
                        "precision_cholesky",
                        format!(
                            "component {c}: must be upper triangular (row {i} has entries below the diagonal)"
                        ),
                    ));
                }
            }
            log_a.push(weights[c].ln() - 0.5 * d as f64 * (2.0 * PI).ln() + logdet);
        }
        if log_a.iter().any(|v| !v.is_finite()) {
            return Err(Error::param(
                "precision_cholesky",
                "a component's density overflows",
            ));
        }
        Ok(FullMixture {
            log_a,
            weights,
            means,
            chol: precision_cholesky,
        })
    }

    /// Number of components.
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }

    /// Component means (K x d).
    pub fn means(&self) -> &Array2<f64> {
        &self.means
    }

    /// `log Z = log sum_k w_k`.
    pub fn exact_log_z(&self) -> f64 {
        log_sum_exp(&self.weights.iter().map(|w| w.ln()).collect::<Vec<_>>())
    }

    /// Mean and per-coordinate variance of `exp(-F)/Z`.
    pub fn moments(&self) -> (Vec<f64>, Vec<f64>) {
        let (k, d) = self.means.dim();
        let total: f64 = self.weights.iter().sum();
        let mut mean = vec![0.0; d];
        let mut second = vec![0.0; d];
        for c in 0..k {
            let p = self.weights[c] / total;
            let cov_diag = self.covariance_diagonal(c);
            for j in 0..d {
                let mu = self.means[[c, j]];
                mean[j] += p * mu;
                second[j] += p * (cov_diag[j] + mu * mu);
            }
        }
        let var = (0..d).map(|j| second[j] - mean[j] * mean[j]).collect();
        (mean, var)
    }

    /// The diagonal of component `c`'s covariance: `S = (U U^T)^-1 =
    /// W^T W` with `W = U^-1`, so `S_jj` is the squared norm of column `j`
    /// of `W`, which solves `U w = e_j` (back substitution).
    fn covariance_diagonal(&self, c: usize) -> Vec<f64> {
        let d = self.means.ncols();
        let u = self.chol.index_axis(ndarray::Axis(0), c);
        let mut diag = vec![0.0; d];
        let mut w = vec![0.0; d];
        for (j, dj) in diag.iter_mut().enumerate() {
            // U = L^T with L = U^T lower triangular.
            w.iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v = f64::from(u8::from(i == j)));
            solve_lower_t(u.t(), &mut w);
            *dj = w.iter().map(|v| v * v).sum();
        }
        diag
    }

    /// One exact draw: a component by its weight, then `m + U^-T z` with
    /// `z ~ N(0, I)` (forward substitution in `U^T x = z`).
    pub fn sample_exact<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) {
        let total: f64 = self.weights.iter().sum();
        let u: f64 = rng.random::<f64>() * total;
        let mut acc = 0.0;
        let mut k = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += w;
            if u < acc {
                k = i;
                break;
            }
        }
        for o in out.iter_mut() {
            *o = StandardNormal.sample(rng);
        }
        // U^T is lower triangular.
        solve_lower(self.chol.index_axis(ndarray::Axis(0), k).t(), out);
        for (j, o) in out.iter_mut().enumerate() {
            *o += self.means[[k, j]];
        }
    }

    /// Component `c`'s `t = (y - m_c)^T U_c` (length d) into `t`; returns
    /// its log term `log a_c - |t|^2 / 2`.
    fn term(&self, c: usize, y: &[f64], t: &mut [f64]) -> f64 {
        let u = self.chol.index_axis(ndarray::Axis(0), c);
        let m = self.means.row(c);
        let d = y.len();
        t.iter_mut().for_each(|v| *v = 0.0);
        for l in 0..d {
            let dl = y[l] - m[l];
            // Row l of U has entries in columns l..d.
            for (j, tj) in t.iter_mut().enumerate().skip(l) {
                *tj += dl * u[[l, j]];
            }
        }
        self.log_a[c] - 0.5 * t.iter().map(|v| v * v).sum::<f64>()
    }
}

/// Runs `f` on a scratch vector of length `d`: on the stack up to 128
/// coordinates (no allocation per evaluation).
fn with_scratch<R>(d: usize, f: impl FnOnce(&mut [f64]) -> R) -> R {
    if d <= 128 {
        f(&mut [0.0f64; 128][..d])
    } else {
        f(&mut vec![0.0; d])
    }
}

impl RowEnergy for FullMixture {
    fn state_dim(&self) -> usize {
        self.means.ncols()
    }

    fn known_log_z(&self) -> Option<f64> {
        Some(self.exact_log_z())
    }

    fn energy(&self, y: &[f64]) -> f64 {
        // A log-sum-exp over components in one pass (running maximum).
        with_scratch(y.len(), |t| {
            let (mut mx, mut sum) = (f64::NEG_INFINITY, 0.0);
            for c in 0..self.weights.len() {
                let v = self.term(c, y, t);
                if v > mx {
                    sum = sum * (mx - v).exp() + 1.0;
                    mx = v;
                } else if v > f64::NEG_INFINITY {
                    sum += (v - mx).exp();
                }
            }
            -(mx + sum.ln())
        })
    }

    fn energy_grad(&self, y: &[f64], grad: &mut [f64]) -> f64 {
        // dF/dy = sum_k r_k U_k t_k, t_k = U_k^T (y - m_k), r_k the
        // responsibilities: accumulated in one pass with the log-sum-exp's
        // running maximum, rescaling the sum when it grows.
        grad.iter_mut().for_each(|g| *g = 0.0);
        with_scratch(y.len(), |t| {
            let (mut mx, mut sum) = (f64::NEG_INFINITY, 0.0);
            for c in 0..self.weights.len() {
                let v = self.term(c, y, t);
                let w = if v > mx {
                    let scale = (mx - v).exp();
                    grad.iter_mut().for_each(|g| *g *= scale);
                    sum *= scale;
                    mx = v;
                    1.0
                } else if v > f64::NEG_INFINITY {
                    (v - mx).exp()
                } else {
                    0.0
                };
                if w == 0.0 {
                    continue;
                }
                sum += w;
                let u = self.chol.index_axis(ndarray::Axis(0), c);
                for (l, g) in grad.iter_mut().enumerate() {
                    let mut s = 0.0;
                    for (j, tj) in t.iter().enumerate().skip(l) {
                        s += u[[l, j]] * tj;
                    }
                    *g += w * s;
                }
            }
            grad.iter_mut().for_each(|g| *g /= sum);
            -(mx + sum.ln())
        })
    }
}
